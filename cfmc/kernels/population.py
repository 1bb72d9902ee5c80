"""Block proposals for templates from a weighted sample of fills: a class-conditional model.

The prior's autoregressive sampler is an expensive proposal (a decode step per token, every
time) and ignores the template's later fixed tokens, so its draws sit nats below the posterior.
A cheap and closer independence proposal is fitted, before the run, to a sample of fills
weighted towards the posterior (a pool of the prior's draws with importance weights pi / q):

- the blank elements split into *class* slots (the least diverse ones, e.g. the anion and the
  A-site cation of a perovskite) and *free* slots (the rest); a fill's class is its elements in
  the class slots;
- a proposal picks a class with its weight in the sample, draws each free slot's element from
  that class's weighted frequencies (smoothed towards the slot's overall frequencies), and the
  blank coordinates from a kernel density (wrapped normal, Silverman's bandwidth) around the
  class's members;
- a fraction `eps` of proposals instead draws every element from the smoothed overall
  frequencies of its slot and the coordinates around any member, so every allowed fill can be
  proposed and a crystal outside the sample keeps a proposal density of the order of its
  posterior density.

Free slots are independent given the class: for a template whose posterior couples, say, the
two B-site cations of a double perovskite mostly through the anion and the A site, that keeps
most of the posterior's correlation at the cost of a table lookup. The proposal is fixed while
it is used, so the i-SIR kernel (`kernels.isir`) with it leaves the posterior exactly invariant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cfmc.arrays import CrystalArrays, pad_axis
from cfmc.kernels.block import BlockDrawFn, BlockDraws
from cfmc.kernels.constraints import SiteConstraints
from cfmc.kernels.refit import SHARE, check_share, with_chains
from cfmc.kernels.wrapped import log_wrapped_normal, onto_positions

MAX_CLASSES = 256  # classes kept (by weight); fills of the others come from the overall part
MAX_CENTRES = 64  # coordinate kernel centres per class (the heaviest members)
MAX_GLOBAL_CENTRES = 256  # coordinate kernel centres of the overall part
CLASS_SHARE = 0.7  # a free slot's frequencies: this much its class's, the rest the overall ones


class PopulationFit(NamedTuple):
    """The fitted proposal (a pytree of arrays; K classes, F free slots, S slots, C coordinates)."""

    class_slots: jax.Array  # (S - F,) the slots (of S) that make a fill's class
    free_slots: jax.Array  # (F,) the others, independent given the class
    classes: jax.Array  # (K, S - F) elements of the class slots of each class
    class_log_weights: jax.Array  # (K,) normalised log weights of the classes
    free_log_probs: jax.Array  # (K, F, 119) log frequencies of the free slots' elements per class
    centres: jax.Array  # (K, G, C) coordinate kernel centres per class
    centre_log_weights: jax.Array  # (K, G) their normalised log weights (-inf: padding)
    log_marginals: jax.Array  # (S, 119) smoothed overall log frequencies of the elements per slot
    global_centres: jax.Array  # (G0, C) coordinate kernel centres of the overall part
    global_log_weights: jax.Array  # (G0,) their normalised log weights
    bandwidth: jax.Array  # (C,) standard deviation of the coordinate kernel


class PopulationProposal(NamedTuple):
    """A template's blanks in the proposal's terms, and the functions of the proposal."""

    species_slots: np.ndarray  # (S,) sites whose element is an independent blank
    tie: np.ndarray  # (N,) the site each site takes its element from
    coord_slots: np.ndarray  # (C, 2) (site, axis) of blank free coordinates
    allowed: np.ndarray  # (S, 119) allowed elements per independent blank slot
    draws: BlockDrawFn  # draws(key, position, constraints, site, tries, fit) -> BlockDraws
    fit: Callable[..., PopulationFit]  # fit(positions, log_weights=None) -> PopulationFit
    initial: PopulationFit | None = None  # the fit the run uses (None: fit the starts)
    # refit(fit, chains) -> the fit for the recorded sweeps (None: keep the fit; `pool_refit`)
    refit: Callable[[PopulationFit, CrystalArrays], PopulationFit] | None = None


def _normalised_log(w: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(w / w.sum()).astype(np.float32)


def _split_slots(diversity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class slots, free slots): the two most diverse slots are free (one of two; with one slot
    it is free and there is a single class)."""
    s = len(diversity)
    n_free = min(s, 2) if s != 2 else 1
    order = np.argsort(-diversity, kind="stable")
    return np.sort(order[n_free:]), np.sort(order[:n_free])


def population_proposal(template, num_sites: int, eps: float = 0.3) -> PopulationProposal:
    """The class-conditional proposal of a `cfmc.template.Template` with fixed Wyckoff letters,
    on positions of `num_sites` slots. eps: the weight of the overall (class-free) part."""
    from cfmc.priors.density import wyckoff_tables

    if not 0 < eps < 1:
        raise ValueError(f"eps must be in (0, 1), got {eps}")
    clamps = template.sampler_clamps(num_sites)
    fw, fa, fx = clamps["fixed_wyckoff"], clamps["fixed_species"], clamps["fixed_coords"]
    n = template.num_sites
    if np.any(fw[:n] < 0):
        raise ValueError("the population proposal needs a template with fixed Wyckoff letters")
    t = wyckoff_tables()
    g = int(template.spacegroup)
    tie = np.asarray(template.tie, np.int32)
    tie_full = np.arange(num_sites, dtype=np.int32)
    tie_full[:n] = tie
    species_slots = np.array([i for i in range(n) if fa[i] < 0 and tie[i] == i], np.int32)
    free = t.free[g, fw[:n]]  # (n, 3)
    coord_slots = np.array([(i, k) for i in range(n) for k in range(3)
                            if free[i, k] and np.isnan(fx[i, k])], np.int32).reshape(-1, 2)
    op0 = jnp.asarray(t.op0[g, np.concatenate([fw[:n], np.zeros(num_sites - n, int)])])
    real = np.arange(num_sites) < n
    allowed = np.asarray(clamps["allowed_species"], bool)[species_slots]
    n_slots = len(species_slots)
    log_allowed = jnp.asarray(np.where(allowed, 0.0, -np.inf), jnp.float32)
    eps_ = float(eps)

    def fit(positions: CrystalArrays, log_weights: np.ndarray | None = None) -> PopulationFit:
        """The proposal of a sample of fills, weighted by `log_weights` (None: equal); host side."""
        sp = np.asarray(positions.species)[:, species_slots].astype(np.int32)
        xs = np.asarray(positions.coords)[:, coord_slots[:, 0], coord_slots[:, 1]].astype(
            np.float64) if len(coord_slots) else np.zeros((sp.shape[0], 0))
        m = sp.shape[0]
        lw = np.zeros(m) if log_weights is None else np.asarray(log_weights, np.float64)
        lw = np.where(np.isfinite(lw), lw, -np.inf)
        if not np.isfinite(lw).any():
            raise ValueError("every member of the sample has zero weight")
        w = np.exp(lw - lw.max())
        w /= w.sum()
        n_eff = 1.0 / np.sum(w * w)  # Kish's effective sample size
        freq = np.zeros((n_slots, 119))
        for s in range(n_slots):
            freq[s] = np.bincount(sp[:, s], weights=w, minlength=119)[:119]
        # add-half smoothing over the allowed elements: every allowed fill stays proposable
        counts = np.where(allowed, freq * n_eff + 0.5, 0.0)
        marg = counts / counts.sum(1, keepdims=True)
        diversity = 1.0 - np.sum(freq * freq, axis=1)  # Gini-Simpson index of each slot
        cls, fr = _split_slots(diversity)
        if len(cls):
            keys, inverse = np.unique(sp[:, cls], axis=0, return_inverse=True)
            inverse = inverse.reshape(-1)
        else:  # one class: every fill
            keys, inverse = np.zeros((1, 0), np.int32), np.zeros(m, np.int64)
        cw = np.bincount(inverse, weights=w, minlength=len(keys))
        keep = np.argsort(-cw, kind="stable")[:MAX_CLASSES]
        keep = keep[cw[keep] > 0]
        k = len(keep)
        g_max = int(min(MAX_CENTRES, max(1, np.max(np.bincount(inverse)[keep]))))
        free_lp = np.zeros((k, len(fr), 119))
        centres = np.zeros((k, g_max, xs.shape[1]))
        centre_w = np.zeros((k, g_max))
        for j, c in enumerate(keep):
            members = np.flatnonzero(inverse == c)
            wm = w[members] / w[members].sum()
            for f, s in enumerate(fr):
                own = np.bincount(sp[members, s], weights=wm, minlength=119)[:119]
                free_lp[j, f] = CLASS_SHARE * own + (1 - CLASS_SHARE) * marg[s]
            top = members[np.argsort(-w[members], kind="stable")[:g_max]]
            centres[j, :len(top)] = xs[top]
            centre_w[j, :len(top)] = w[top] / w[top].sum()
        top = np.argsort(-w, kind="stable")[:MAX_GLOBAL_CENTRES]
        # weighted circular spread of each coordinate, Silverman's rule, within [1e-3, 0.05]
        ang = 2 * np.pi * xs
        r = np.hypot(w @ np.cos(ang), w @ np.sin(ang))
        sd = np.sqrt(-2 * np.log(np.clip(r, 1e-12, 1.0))) / (2 * np.pi)
        bw = np.clip(1.06 * sd * n_eff ** (-0.2), 1e-3, 0.05)
        # padded to MAX_CLASSES classes of MAX_CENTRES centres and MAX_GLOBAL_CENTRES (weight
        # zero, elements of no fill): every fit, the refit at the end of burn-in included, has
        # one shape and compiles once
        with np.errstate(divide="ignore"):
            centres = pad_axis(pad_axis(centres, MAX_CENTRES, 0.0, 1), MAX_CLASSES, 0.0)
            centre_lw = pad_axis(pad_axis(np.log(centre_w), MAX_CENTRES, -np.inf, 1), MAX_CLASSES,
                               -np.inf)
            centre_lw[k:, 0] = 0.0  # a padded class is never picked; its centres stay finite
            return PopulationFit(
                jnp.asarray(cls, jnp.int32), jnp.asarray(fr, jnp.int32),
                jnp.asarray(pad_axis(keys[keep].astype(np.int32), MAX_CLASSES, -1)),
                jnp.asarray(pad_axis(_normalised_log(cw[keep]), MAX_CLASSES, -np.inf)),
                jnp.asarray(pad_axis(np.log(free_lp), MAX_CLASSES, 0.0), jnp.float32),
                jnp.asarray(centres, jnp.float32), jnp.asarray(centre_lw, jnp.float32),
                jnp.asarray(np.log(marg), jnp.float32),
                jnp.asarray(pad_axis(xs[top], MAX_GLOBAL_CENTRES, 0.0), jnp.float32),
                jnp.asarray(pad_axis(_normalised_log(w[top]), MAX_GLOBAL_CENTRES, -np.inf),
                            jnp.float32), jnp.asarray(bw, jnp.float32))

    def log_kernel(xs: jax.Array, centres: jax.Array, bandwidth: jax.Array) -> jax.Array:
        """(..., G) log wrapped-normal kernel of the coordinates (C,) around each centre."""
        return jnp.sum(log_wrapped_normal(xs - centres, bandwidth), axis=-1)

    def log_q(pf: PopulationFit, sp: jax.Array, xs: jax.Array) -> jax.Array:
        """log density of one fill (S,), (C,) under the proposal."""
        fr = pf.free_slots
        hit = jnp.all(pf.classes == sp[pf.class_slots], axis=1)  # (K,) at most one matches
        j = jnp.argmax(hit)
        log_class = (pf.class_log_weights[j]
                     + jnp.sum(pf.free_log_probs[j, jnp.arange(fr.shape[0]), sp[fr]])
                     + jax.nn.logsumexp(pf.centre_log_weights[j]
                                        + log_kernel(xs, pf.centres[j], pf.bandwidth)))
        log_class = jnp.where(hit[j], log_class, -jnp.inf)
        log_all = (jnp.sum(pf.log_marginals[jnp.arange(n_slots), sp])
                   + jax.nn.logsumexp(pf.global_log_weights
                                      + log_kernel(xs, pf.global_centres, pf.bandwidth)))
        return jnp.logaddexp(jnp.log1p(-eps_) + log_class, jnp.log(eps_) + log_all)

    def one_draw(key, pf: PopulationFit):
        k_mix, k_class, k_free, k_centre, k_all, k_gc, k_jit = jax.random.split(key, 7)
        j = jax.random.categorical(k_class, pf.class_log_weights)
        sp_class = jnp.zeros(n_slots, jnp.int32).at[pf.class_slots].set(pf.classes[j])
        sp_class = sp_class.at[pf.free_slots].set(
            jax.random.categorical(k_free, pf.free_log_probs[j]).astype(jnp.int32))
        centre = pf.centres[j, jax.random.categorical(k_centre, pf.centre_log_weights[j])]
        overall = jax.random.uniform(k_mix) < eps_
        sp_all = jax.random.categorical(k_all, pf.log_marginals).astype(jnp.int32)
        centre_all = pf.global_centres[jax.random.categorical(k_gc, pf.global_log_weights)]
        sp = jnp.where(overall, sp_all, sp_class)
        centre = jnp.where(overall, centre_all, centre)
        xs = jnp.mod(centre + pf.bandwidth * jax.random.normal(k_jit, pf.bandwidth.shape), 1.0)
        return sp, jnp.where(xs >= 1.0, xs - 1.0, xs)

    def fill(position: CrystalArrays, sp: jax.Array, xs: jax.Array) -> CrystalArrays:
        species = position.species.at[species_slots].set(sp.astype(position.species.dtype))
        species = species[tie_full]
        coords = position.coords.at[coord_slots[:, 0], coord_slots[:, 1]].set(
            xs.astype(position.coords.dtype))
        # tied coordinates follow the free ones (the representative's op0)
        coords = jnp.where(real[:, None], onto_positions(op0, coords), coords)
        coords = coords.astype(position.coords.dtype)
        return position._replace(species=species, coords=coords)

    def draws(key, position: CrystalArrays, constraints: SiteConstraints, site, tries: int,
              pf: PopulationFit) -> BlockDraws:
        sp, xs = jax.vmap(one_draw, in_axes=(0, None))(jax.random.split(key, tries), pf)
        proposed = jax.vmap(fill, in_axes=(None, 0, 0))(position, sp, xs)
        lq = jax.vmap(log_q, in_axes=(None, 0, 0))(pf, sp, xs)
        cur_sp = position.species[species_slots].astype(jnp.int32)
        cur_x = position.coords[coord_slots[:, 0], coord_slots[:, 1]].astype(jnp.float32)
        lq0 = log_q(pf, cur_sp, cur_x)
        species = proposed.species
        ties = jnp.all(species[:, constraints.tie] == species, axis=1)
        pairs = constraints.differ
        differ = jnp.all(species[:, pairs[:, 0]] != species[:, pairs[:, 1]], axis=1)
        ok_species = jnp.all(jnp.isfinite(log_allowed[jnp.arange(sp.shape[1]), sp]), axis=1)
        valid = ties & differ & ok_species & jnp.isfinite(lq)
        return BlockDraws(proposed, lq, lq0, valid)

    return PopulationProposal(species_slots, tie_full, coord_slots, allowed, draws, fit)


def _weighed(draws: BlockDraws, posterior) -> tuple[CrystalArrays, np.ndarray]:
    """The fills of a batch of block draws (flattened) and their log importance weights
    log pi - log q under the posterior (-inf for invalid fills and failed conditioners)."""
    pool = CrystalArrays(*(np.asarray(f).reshape((-1,) + np.shape(f)[2:])
                           for f in draws.positions))
    log_q = np.asarray(draws.log_q, np.float64).reshape(-1)
    ok = np.asarray(draws.is_valid).reshape(-1) & np.isfinite(log_q)
    log_pi = np.asarray(posterior.prior_logdensity(pool), np.float64)  # what the chains target
    if posterior.has_conditioners:
        cond = posterior.conditioner_logdensity(pool)
        log_pi = log_pi + np.asarray(cond.logp, np.float64)
        ok &= ~np.asarray(cond.failed, bool)
    ok &= np.isfinite(log_pi)
    if not ok.any():
        raise ValueError(f"none of {ok.size} fills of the template has a finite posterior "
                         "density; check the template and its allowed elements")
    return pool, np.where(ok, log_pi - log_q, -np.inf)


def pool_fit(proposal: PopulationProposal, block_draws: BlockDrawFn, posterior, template,
             key: jax.Array, size: int, num_sites: int, alpha: float = 1.0,
             batch: int = 128, rounds: int = 1) -> tuple[PopulationFit, CrystalArrays, np.ndarray]:
    """Draw `size` fills of the template from the prior's block proposal (`block_draws`, e.g.
    `prior_block_draws`), weigh each by (pi / q)^alpha and fit the proposal to them; then, for
    each of `rounds` refinement rounds (population Monte Carlo), draw `size` fills from the fitted
    proposal itself, weigh them against it, and refit. Returns the fit, the last pool and its
    full log importance weights log pi - log q (for starts)."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if rounds < 0:
        raise ValueError(f"rounds must be 0 or more, got {rounds}")
    tries = max(1, -(-int(size) // batch))
    base = jax.tree.map(jnp.asarray, template.random_arrays(batch, np.random.default_rng(0),
                                                            num_sites))
    cons = jax.tree.map(jnp.asarray, template.constraints(num_sites).broadcast(batch))
    fn = jax.jit(jax.vmap(lambda k, p, c: block_draws(k, p, c, jnp.int32(0), tries)))
    pool, log_iw = _weighed(fn(jax.random.split(key, batch), base, cons), posterior)
    fit = proposal.fit(pool, alpha * log_iw)
    refine = jax.jit(jax.vmap(lambda k, p, c, f: proposal.draws(k, p, c, jnp.int32(0), tries, f),
                              in_axes=(0, 0, 0, None)))
    for r in range(rounds):
        keys = jax.random.split(jax.random.fold_in(key, r + 1), batch)
        pool, log_iw = _weighed(refine(keys, base, cons, fit), posterior)
        fit = proposal.fit(pool, alpha * log_iw)
    return fit, pool, log_iw


def pool_refit(proposal: PopulationProposal, pool: CrystalArrays, log_weights: np.ndarray,
               share: float = SHARE) -> Callable[[PopulationFit, CrystalArrays], PopulationFit]:
    """The proposal's `refit` at the end of burn-in: fitted again to its pool (`pool_fit`'s,
    with its log weights) and the chains' states, the chains holding `share` (`kernels.refit`)."""
    share = check_share(share)

    def refit(fit: PopulationFit, chains: CrystalArrays) -> PopulationFit:
        return proposal.fit(*with_chains(pool, log_weights, chains, share))

    return refit
