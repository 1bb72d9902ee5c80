"""Block proposals from a weighted pool of template fills, for templates.

The prior's autoregressive sampler is an expensive proposal (a decode step per token, every
time) and ignores the template's later fixed tokens, so its draws sit nats below the posterior.
A pool of its draws, drawn once before the run and reweighted towards the posterior, is a cheap
and much closer one: a proposal picks a pool member with probability proportional to its weight
(the importance weight pi / q of the draw raised to a power alpha in [0, 1]: 0 keeps the prior's
pool, 1 is an importance-resampling estimate of the posterior), takes its fill of the template's
blanks and jitters its blank coordinates by a wrapped normal of Silverman's bandwidth; a fraction
`eps` of proposals instead draws each blank element independently from the smoothed weighted
marginals of its site and the coordinates from another member's, so every allowed fill can be
proposed and a crystal outside the pool (the posterior spreads over far more compositions than
any pool holds) keeps a proposal density of the same order as its posterior density. The
proposal is fixed for the whole run, so the i-SIR kernel (`kernels.isir`) with it leaves the
posterior exactly invariant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cfmc.arrays import CrystalArrays
from cfmc.kernels.block import BlockDrawFn, BlockDraws
from cfmc.kernels.constraints import SiteConstraints

LOG_2PI = float(np.log(2 * np.pi))


class PopulationFit(NamedTuple):
    """The fitted proposal: the population's fills and the smoothing (a pytree of arrays)."""

    species: jax.Array  # (M, S) elements of the independent blank species slots, per member
    coords: jax.Array  # (M, C) blank free coordinates, per member
    log_weights: jax.Array  # (M,) normalised log weights of the members
    log_marginals: jax.Array  # (S, 119) smoothed log frequencies of the elements per slot
    bandwidth: jax.Array  # (C,) standard deviation of the coordinate jitter


class PopulationProposal(NamedTuple):
    """A template's blanks in the proposal's terms, and the functions of the proposal."""

    species_slots: np.ndarray  # (S,) sites whose element is an independent blank
    tie: np.ndarray  # (N,) the site each site takes its element from
    coord_slots: np.ndarray  # (C, 2) (site, axis) of blank free coordinates
    allowed: np.ndarray  # (S, 119) allowed elements per independent blank slot
    draws: BlockDrawFn  # draws(key, position, constraints, site, tries, fit) -> BlockDraws
    fit: Callable[..., PopulationFit]  # fit(positions, log_weights=None) -> PopulationFit
    initial: PopulationFit | None = None  # the fit the run uses (None: fit the starts)


def population_proposal(template, num_sites: int, eps: float = 0.5) -> PopulationProposal:
    """The population proposal of a `cfmc.template.Template` with fixed Wyckoff letters, on
    positions of `num_sites` slots. eps: the weight of the per-site marginal draws."""
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
    log_allowed = jnp.asarray(np.where(allowed, 0.0, -np.inf), jnp.float32)
    eps_ = float(eps)

    def fit(positions: CrystalArrays, log_weights: np.ndarray | None = None) -> PopulationFit:
        """The proposal of a pool of fills, weighted by `log_weights` (None: equal); host side."""
        sp = np.asarray(positions.species)[:, species_slots].astype(np.int32)
        xs = np.asarray(positions.coords)[:, coord_slots[:, 0], coord_slots[:, 1]].astype(
            np.float32) if len(coord_slots) else np.zeros((sp.shape[0], 0), np.float32)
        m = sp.shape[0]
        lw = np.zeros(m) if log_weights is None else np.asarray(log_weights, np.float64)
        lw = np.where(np.isfinite(lw), lw, -np.inf)
        if not np.isfinite(lw).any():
            raise ValueError("every member of the pool has zero weight")
        w = np.exp(lw - lw.max())
        w /= w.sum()
        n_eff = 1.0 / np.sum(w * w)  # Kish's effective pool size
        counts = np.zeros((len(species_slots), 119))
        for s in range(len(species_slots)):
            counts[s] = np.bincount(sp[:, s], weights=w, minlength=119)[:119] * n_eff
        # add-half smoothing over the allowed elements: every allowed fill stays proposable
        counts = np.where(allowed, counts + 0.5, 0.0)
        with np.errstate(divide="ignore"):
            log_marg = np.log(counts / counts.sum(1, keepdims=True)).astype(np.float32)
        # weighted circular spread of each coordinate, Silverman's rule, within [1e-3, 0.05]
        ang = 2 * np.pi * xs
        r = np.hypot(w @ np.cos(ang), w @ np.sin(ang))
        sd = np.sqrt(-2 * np.log(np.clip(r, 1e-12, 1.0))) / (2 * np.pi)
        bw = np.clip(1.06 * sd * n_eff ** (-0.2), 1e-3, 0.05).astype(np.float32)
        with np.errstate(divide="ignore"):
            log_w = np.log(w).astype(np.float32)
        return PopulationFit(jnp.asarray(sp), jnp.asarray(xs), jnp.asarray(log_w),
                             jnp.asarray(log_marg), jnp.asarray(bw))

    def log_q(pf: PopulationFit, sp: jax.Array, xs: jax.Array) -> jax.Array:
        """log density of one fill (S,), (C,) under the proposal."""
        same = jnp.all(pf.species == sp, axis=1)  # (M,)
        d = xs - pf.coords  # (M, C), wrapped normal: the images at -1, 0 and +1
        shifts = jnp.array([-1.0, 0.0, 1.0])
        z = (d[..., None] + shifts) / pf.bandwidth[:, None]
        log_k = jax.nn.logsumexp(-0.5 * z * z, axis=-1) - 0.5 * LOG_2PI - jnp.log(pf.bandwidth)
        log_k = jnp.sum(log_k, axis=1)  # (M,) the coordinates' kernel around each member
        log_pool = jax.nn.logsumexp(jnp.where(same, pf.log_weights + log_k, -jnp.inf))
        # the independent part: elements from the marginals, coordinates from their own mixture
        log_marg = (jnp.sum(jnp.take_along_axis(pf.log_marginals, sp[:, None], axis=1))
                    + jax.nn.logsumexp(pf.log_weights + log_k))
        return jnp.logaddexp(jnp.log1p(-eps_) + log_pool, jnp.log(eps_) + log_marg)

    def one_draw(key, pf: PopulationFit):
        k_mix, k_member, k_other, k_jit, k_sp = jax.random.split(key, 5)
        j = jax.random.categorical(k_member, pf.log_weights)
        j_other = jax.random.categorical(k_other, pf.log_weights)  # coordinates' own member
        marginal = jax.random.uniform(k_mix) < eps_
        sp = jnp.where(marginal, jax.random.categorical(k_sp, pf.log_marginals), pf.species[j])
        centre = pf.coords[jnp.where(marginal, j_other, j)]
        xs = jnp.mod(centre + pf.bandwidth * jax.random.normal(k_jit, pf.bandwidth.shape), 1.0)
        return sp.astype(jnp.int32), jnp.where(xs >= 1.0, xs - 1.0, xs)

    def fill(position: CrystalArrays, sp: jax.Array, xs: jax.Array) -> CrystalArrays:
        species = position.species.at[species_slots].set(sp.astype(position.species.dtype))
        species = species[tie_full]
        coords = position.coords.at[coord_slots[:, 0], coord_slots[:, 1]].set(
            xs.astype(position.coords.dtype))
        # tied coordinates follow the free ones (the representative's op0)
        proj = jnp.mod(jnp.einsum("nij,nj->ni", op0[:, :, :3], coords) + op0[:, :, 3], 1.0)
        proj = jnp.where(proj >= 1.0, proj - 1.0, proj)
        coords = jnp.where(real[:, None], proj, coords).astype(position.coords.dtype)
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


def pool_fit(proposal: PopulationProposal, block_draws: BlockDrawFn, posterior, template,
             key: jax.Array, size: int, num_sites: int, alpha: float = 1.0,
             batch: int = 128) -> tuple[PopulationFit, CrystalArrays, np.ndarray]:
    """Draw `size` fills of the template from the prior's block proposal (`block_draws`, e.g.
    `prior_block_draws`), weigh each by (pi / q)^alpha and fit the proposal to them. Returns the
    fit, the pool and the pool's full log importance weights log pi - log q (for starts)."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    tries = max(1, -(-int(size) // batch))
    base = template.random_arrays(batch, np.random.default_rng(0), num_sites)
    cons = jax.tree.map(jnp.asarray, template.constraints(num_sites).broadcast(batch))
    fn = jax.jit(jax.vmap(lambda k, p, c: block_draws(k, p, c, jnp.int32(0), tries)))
    d = fn(jax.random.split(key, batch), jax.tree.map(jnp.asarray, base), cons)
    pool = CrystalArrays(*(np.asarray(f).reshape((-1,) + np.shape(f)[2:]) for f in d.positions))
    log_q = np.asarray(d.log_q, np.float64).reshape(-1)
    ok = np.asarray(d.is_valid).reshape(-1) & np.isfinite(log_q)
    log_pi = np.asarray(posterior.prior_logdensity(pool), np.float64)  # what the chains target
    if posterior.has_conditioners:
        cond = posterior.conditioner_logdensity(pool)
        log_pi = log_pi + np.asarray(cond.logp, np.float64)
        ok &= ~np.asarray(cond.failed, bool)
    ok &= np.isfinite(log_pi)
    log_iw = np.where(ok, log_pi - log_q, -np.inf)
    if not ok.any():
        raise ValueError(f"none of {ok.size} prior fills of the template has a finite posterior "
                         "density; check the template and its allowed elements")
    return proposal.fit(pool, alpha * log_iw), pool, log_iw
