"""Conditional distributions of the prior, their constraint masks, and the exact log density.

The heads return numpyro distributions (Categorical, a von Mises mixture, a Gaussian mixture), so
training, sampling and MCMC use one and the same density. Constraints are logit masks built from
the Wyckoff tables of `cfmc.wyckoff`, as jit-friendly lookups.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from cfmc.wyckoff import lattice_tables, symmetrize_lattice, tables

from .exclusion import (
    ExclusionZone,
    holes,
    last_free_axis,
    log_hole_factor,
    log_normaliser,
    site_images,
)
from .model import CrystalFormer

LOG_TWO_PI = math.log(2.0 * math.pi)
DEG = math.pi / 180.0
LENGTH_OFFSET = 2.5  # typical cell length per atom^(1/3) in Angstrom: centres the initial head
ANGLE_OFFSET = 0.5 * math.pi


class Tables(NamedTuple):
    """Wyckoff and lattice lookups as numpy constants (embedded into traced functions)."""

    mult: np.ndarray  # (231, 28) int32
    valid: np.ndarray  # (231, 28) bool, False for the padding letter
    free: np.ndarray  # (231, 28, 3) bool
    dof0: np.ndarray  # (231, 28) bool: the position has no free coordinate
    op0: np.ndarray  # (231, 28, 3, 4) float32
    lattice_free: np.ndarray  # (231, 6) bool


@functools.lru_cache(maxsize=1)
def wyckoff_tables() -> Tables:
    t, lt = tables(), lattice_tables()
    mult = t.multiplicity.astype(np.int32)
    free = t.free.astype(bool)
    return Tables(
        mult=mult,
        valid=mult > 0,
        free=free,
        dof0=~free.any(-1),
        op0=t.op0.astype(np.float32),
        lattice_free=lt.free.astype(bool),
    )


class LogProbTerms(NamedTuple):
    """log p(C | g) and its factors; each field has the batch shape of the input."""

    total: jax.Array
    wyckoff: jax.Array
    species: jax.Array
    coords: jax.Array
    lattice: jax.Array


# --- masks ---------------------------------------------------------------------------------------


def letter_mask(g: jax.Array, prev: jax.Array, first: jax.Array) -> jax.Array:
    """Allowed letters (..., 28) of a site given the previous site's letter.

    Letters must exist in g, never decrease, a position without free coordinates is occupied once,
    the first site is real, and after a padding letter only padding follows.
    """
    t = wyckoff_tables()
    letters = jnp.arange(t.mult.shape[1])
    prev = jnp.asarray(prev)[..., None]
    g = jnp.asarray(g)[..., None]
    real_ok = (
        jnp.asarray(t.valid)[g, letters]
        & (letters >= prev)
        & ~((letters == prev) & jnp.asarray(t.dof0)[g, prev])
    )
    first = jnp.asarray(first)[..., None]
    open_ = real_ok | ((letters == 0) & ~first)
    return jnp.where((prev == 0) & ~first, letters == 0, open_)


def species_mask(w: jax.Array, allowed: jax.Array | None, num_species: int) -> jax.Array:
    """Allowed species (..., 119): 0 only on padding sites, never on real ones;
    `allowed` (119,) or (N, 119) further restricts the real ones."""
    z = jnp.arange(num_species)
    real = z > 0
    if allowed is not None:
        real = real & allowed
    pad = jnp.asarray(w)[..., None] == 0
    return jnp.where(pad, z == 0, real)


def _masked_logits(logits: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.where(mask, logits, -jnp.inf)


def _categorical(logits: jax.Array) -> dist.CategoricalLogits:
    # Masked logits are -inf, which argument validation would reject.
    return dist.Categorical(logits=logits, validate_args=False)


def satisfies_constraints(arrays) -> np.ndarray:
    """Host-side check (numpy, (B,) bool) that crystals obey the hard constraints of the prior:
    real sites first, letters of the group in non-decreasing order, positions without free
    coordinates once, species 1..118 on real sites."""
    t = wyckoff_tables()
    g = np.asarray(arrays.spacegroup)
    w, a, m = (np.asarray(f) for f in (arrays.wyckoff, arrays.species, arrays.mask))
    ok = (g >= 1) & (g <= 230) & m[:, 0]
    ok &= np.all(m[:, :-1] | ~m[:, 1:], axis=1)  # no real site after a padding one
    wr = np.where(m, w, 0)
    ok &= np.all(~m | ((w >= 1) & (w < t.mult.shape[1])), axis=1)
    wr = np.clip(wr, 0, t.mult.shape[1] - 1)
    gg = np.clip(g, 0, 230)[:, None]
    ok &= np.all(~m | t.valid[gg, wr], axis=1)
    prev, cur, both = wr[:, :-1], wr[:, 1:], m[:, :-1] & m[:, 1:]
    ok &= np.all(~both | (cur >= prev), axis=1)
    ok &= np.all(~both | ~((cur == prev) & t.dof0[gg, prev]), axis=1)
    ok &= np.all(~m | ((a >= 1) & (a <= 118)), axis=1)
    return ok


# --- heads -> distributions ----------------------------------------------------------------------


def coord_distribution(
    params: jax.Array, temperature: float = 1.0, kappa_min: float = 1e-2
) -> dist.MixtureSameFamily:
    """Mixture of Kx von Mises on the angle 2 pi (x - 1/2) in [-pi, pi); params (..., 3 Kx)."""
    logits, loc, kappa = jnp.split(params, 3, axis=-1)
    kappa = jax.nn.softplus(kappa) + kappa_min
    return dist.MixtureSameFamily(
        dist.Categorical(logits=logits / temperature, validate_args=False),
        dist.VonMises(loc, kappa / temperature, validate_args=False),
        validate_args=False,
    )


def coord_to_angle(x: jax.Array) -> jax.Array:
    return 2.0 * math.pi * (x - 0.5)


def angle_to_coord(theta: jax.Array) -> jax.Array:
    return jnp.mod(theta / (2.0 * math.pi) + 0.5, 1.0)


def coord_log_prob(params: jax.Array, x: jax.Array, kappa_min: float = 1e-2) -> jax.Array:
    """log density per unit fractional coordinate on [0, 1)."""
    return coord_distribution(params, kappa_min=kappa_min).log_prob(coord_to_angle(x)) + LOG_TWO_PI


def lattice_distribution(
    params: jax.Array, free: jax.Array, temperature: float = 1.0, sigma_min: float = 1e-3
) -> dist.MixtureSameFamily:
    """Mixture of Kl diagonal Gaussians over the normalised lattice (lengths / atoms^(1/3),
    angles in radians); only the `free` (..., 6) parameters enter the density."""
    kl = params.shape[-1] // 13
    logits = params[..., :kl]
    mu = params[..., kl : 7 * kl].reshape(*params.shape[:-1], kl, 6)
    sigma = params[..., 7 * kl :].reshape(*params.shape[:-1], kl, 6)
    offset = jnp.array([LENGTH_OFFSET] * 3 + [ANGLE_OFFSET] * 3, jnp.float32)
    mu = mu + offset
    sigma = (jax.nn.softplus(sigma) + sigma_min) * jnp.sqrt(temperature)
    component = (
        dist.Normal(mu, sigma, validate_args=False)
        .mask(jnp.asarray(free)[..., None, :])
        .to_event(1)
    )
    return dist.MixtureSameFamily(
        dist.Categorical(logits=logits / temperature, validate_args=False),
        component,
        validate_args=False,
    )


def lattice_scale(g: jax.Array, w: jax.Array) -> jax.Array:
    """Length scale atoms^(1/3), atoms = sum of the multiplicities of the sites (..., N)."""
    atoms = jnp.sum(jnp.asarray(wyckoff_tables().mult)[jnp.asarray(g)[..., None], w], axis=-1)
    return jnp.maximum(atoms, 1).astype(jnp.float32) ** (1.0 / 3.0)


def normalise_lattice(lattice: jax.Array, scale: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(a, b, c in Angstrom, angles in degrees) -> normalised units, and d(normalised)/d(lattice)
    per parameter (for the log-Jacobian)."""
    factor = jnp.concatenate(
        [
            jnp.broadcast_to(1.0 / scale[..., None], (*scale.shape, 3)),
            jnp.full((*scale.shape, 3), DEG),
        ],
        axis=-1,
    )
    return lattice * factor, factor


def lattice_log_prob(params: jax.Array, g, w, lattice, sigma_min: float) -> jax.Array:
    """log p(L | ...) of one crystal in Angstrom and degrees, over the free parameters only."""
    lat_free = jnp.asarray(wyckoff_tables().lattice_free)[g]
    lat_norm, factor = normalise_lattice(jnp.asarray(lattice, jnp.float32), lattice_scale(g, w))
    lp = lattice_distribution(params, lat_free, sigma_min=sigma_min).log_prob(lat_norm)
    return lp + jnp.sum(jnp.where(lat_free, jnp.log(factor), 0.0))


def exclusion_log_terms(zone: ExclusionZone, g, w, xyz, coord_params, cfg) -> jax.Array:
    """log h(u) - log Z of the exclusion zone (`priors.exclusion`) for every site of one crystal,
    placed at each site's last free coordinate: (N, 3), zero elsewhere."""
    t = wyckoff_tables()
    n = w.shape[0]
    free = jnp.asarray(t.free)[g, w]
    images, mask = site_images(g, w, xyz, w > 0)
    axis = last_free_axis(free)
    earlier = jnp.arange(n)[None, :] < jnp.arange(n)[:, None]  # (site, earlier site)

    def one(wi, site_xyz, ax, before, params):
        c, a, k = holes(zone, g, wi, site_xyz, ax, images, mask & before[:, None])
        return log_hole_factor(site_xyz[ax], c, a, k) - log_normaliser(
            params[ax], c, a, k, cfg.kappa_min
        )

    corr = jax.vmap(one)(w, xyz, axis, earlier, coord_params)
    at_axis = (jnp.arange(3) == axis[:, None]) & free & (w > 0)[:, None]
    return jnp.where(at_axis, corr[:, None], 0.0)


# --- one crystal ---------------------------------------------------------------------------------


class Heads(NamedTuple):
    """Raw head outputs of one crystal with N slots."""

    w_logits: jax.Array  # (N+1, 28): letters of slots 0..N (slot N is the appended padding)
    a_logits: jax.Array  # (N, 119)
    coord_params: jax.Array  # (N, 3, 3 Kx)
    lattice_params: jax.Array  # (13 Kl,) read at the first padding letter


def _heads(model: CrystalFormer, g, w, a, xyz, key) -> Heads:
    n = w.shape[0]
    mult = jnp.asarray(wyckoff_tables().mult)[g, w]
    h = model(model.embed(g, w, a, xyz, mult), key)
    sites = h[: 5 * n].reshape(n, 5, -1)
    w_h = jnp.concatenate([sites[:, 0], h[5 * n][None]], axis=0)
    num_real = jnp.sum(w > 0)
    return Heads(
        w_logits=model.w_head(w_h),
        a_logits=model.a_head(sites[:, 1]),
        coord_params=model.coord_head(sites[:, 2:5]),
        lattice_params=model.lattice_head(h[1 + 5 * num_real]),
    )


def _clean(g, w, a, xyz, mask):
    w = jnp.where(mask, w, 0).astype(jnp.int32)
    a = jnp.where(mask, a, 0).astype(jnp.int32)
    xyz = jnp.where(mask[:, None], xyz, 0.0).astype(jnp.float32)
    return jnp.asarray(g, jnp.int32), w, a, xyz


def _log_prob_one(model: CrystalFormer, g, w, a, xyz, lattice, mask, allowed, key) -> LogProbTerms:
    cfg = model.config
    t = wyckoff_tables()
    g, w, a, xyz = _clean(g, w, a, xyz, mask)
    n = w.shape[0]
    heads = _heads(model, g, w, a, xyz, key)

    slots = jnp.arange(n + 1)
    w_ext = jnp.concatenate([w, jnp.zeros((1,), jnp.int32)])
    prev = jnp.concatenate([jnp.zeros((1,), jnp.int32), w])
    w_lp = _categorical(_masked_logits(heads.w_logits, letter_mask(g, prev, slots == 0))).log_prob(
        w_ext
    )
    # Slot N is a choice (the padding that ends the crystal) only when N < max_sites.
    counted = slots < (n + 1 if n < cfg.max_sites else n)
    wyckoff = jnp.sum(jnp.where(counted, w_lp, 0.0))

    a_lp = _categorical(
        _masked_logits(heads.a_logits, species_mask(w, allowed, cfg.num_species))
    ).log_prob(a)
    species = jnp.sum(jnp.where(w > 0, a_lp, 0.0))

    free = jnp.asarray(t.free)[g, w]  # (N, 3)
    x_lp = coord_log_prob(heads.coord_params, xyz, cfg.kappa_min)
    if model.exclusion is not None:
        x_lp = x_lp + exclusion_log_terms(model.exclusion, g, w, xyz, heads.coord_params, cfg)
    coords = jnp.sum(jnp.where(free, x_lp, 0.0))

    lattice_lp = lattice_log_prob(heads.lattice_params, g, w, lattice, cfg.sigma_min)

    total = wyckoff + species + coords + lattice_lp
    return LogProbTerms(total, wyckoff, species, coords, lattice_lp)


# --- public, batched -----------------------------------------------------------------------------


def _cut_to_model(model: CrystalFormer, arrays, allowed=None):
    """Cut arrays with more slots than max_sites (static shapes); returns the cut fields, the
    allowed-species mask cut alike, and a flag for crystals with real sites beyond the cut (those
    have probability zero under the model)."""
    g, w, a, xyz, lat, mask = (jnp.asarray(f) for f in arrays)
    n = model.config.max_sites
    overflow = jnp.zeros(g.shape, bool)
    if w.shape[-1] > n:
        overflow = jnp.any(mask[..., n:], axis=-1)
        w, a, xyz, mask = w[..., :n], a[..., :n], xyz[..., :n, :], mask[..., :n]
        if allowed is not None:
            allowed = jnp.asarray(allowed, bool)
            if allowed.ndim >= 2:
                allowed = allowed[..., :n, :]
    return (g, w, a, xyz, lat, mask), allowed, overflow


def _allowed_axes(allowed, batched: bool):
    if allowed is None:
        return None, None
    allowed = jnp.asarray(allowed, bool)
    if batched and allowed.ndim == 3:
        return allowed, 0
    return allowed, None


CHUNK = 10  # crystals per vmapped chunk of a batched log_prob


@eqx.filter_jit
def log_prob(
    model: CrystalFormer, arrays, allowed_species=None, *, key: jax.Array | None = None
) -> LogProbTerms:
    """Exact log p(C | g) by term, for a batch of CrystalArrays (or one unbatched crystal).

    allowed_species: bool (119,), (N, 119) or (B, N, 119) element mask; chosen species outside it
    get log probability -inf. `key` switches dropout on (training only).
    """
    (g, w, a, xyz, lat, mask), allowed, overflow = _cut_to_model(model, arrays, allowed_species)
    batched = g.ndim == 1
    allowed, ax = _allowed_axes(allowed, batched)
    if not batched:
        terms = _log_prob_one(model, g, w, a, xyz, lat, mask, allowed, key)
    else:
        keys = None if key is None else jax.random.split(key, g.shape[0])
        per = (g, w, a, xyz, lat, mask, allowed if ax == 0 else None, keys)

        def one(xs):
            g1, w1, a1, x1, l1, m1, al1, k1 = xs
            return _log_prob_one(model, g1, w1, a1, x1, l1, m1, allowed if ax != 0 else al1, k1)

        # Small vmapped chunks in a loop keep each chunk's attention scores in cache: on a CPU
        # this is faster than one vmap over the whole batch (about 1.5x at 100 crystals).
        terms = jax.lax.map(one, per, batch_size=CHUNK)
    if w.shape[-1] < np.shape(arrays.wyckoff)[-1]:
        terms = LogProbTerms(*(jnp.where(overflow, -jnp.inf, t) for t in terms))
    return terms


def _species_log_probs_one(model, g, w, a, xyz, mask, allowed):
    g, w, a, xyz = _clean(g, w, a, xyz, mask)
    heads = _heads(model, g, w, a, xyz, None)
    logits = _masked_logits(heads.a_logits, species_mask(w, allowed, model.config.num_species))
    return jax.nn.log_softmax(logits, axis=-1)


@eqx.filter_jit
def species_log_probs(model: CrystalFormer, arrays, allowed_species=None) -> jax.Array:
    """log p(a_i = z | tokens before a_i) for every site and species: (B, N, 119), -inf where
    disallowed (padding sites, and slots beyond max_sites, put all mass on species 0)."""
    (g, w, a, xyz, _, mask), allowed, _ = _cut_to_model(model, arrays, allowed_species)
    batched = g.ndim == 1
    allowed, ax = _allowed_axes(allowed, batched)
    if not batched:
        out = _species_log_probs_one(model, g, w, a, xyz, mask, allowed)
    else:
        fn = jax.vmap(_species_log_probs_one, in_axes=(None, 0, 0, 0, 0, 0, ax))
        out = fn(model, g, w, a, xyz, mask, allowed)
    extra = np.shape(arrays.wyckoff)[-1] - w.shape[-1]
    if extra:
        pad_row = jnp.where(jnp.arange(out.shape[-1]) == 0, 0.0, -jnp.inf)
        out = jnp.concatenate(
            [out, jnp.broadcast_to(pad_row, (*out.shape[:-2], extra, out.shape[-1]))], axis=-2
        )
    return out


def _letter_log_probs_one(model, g, w, a, xyz, mask):
    g, w, a, xyz = _clean(g, w, a, xyz, mask)
    heads = _heads(model, g, w, a, xyz, None)
    n = w.shape[0]
    prev = jnp.concatenate([jnp.zeros((1,), jnp.int32), w])
    m = letter_mask(g, prev, jnp.arange(n + 1) == 0)
    if n == model.config.max_sites:  # the appended slot can only be padding
        m = m.at[n].set(jnp.arange(m.shape[-1]) == 0)
    return jax.nn.log_softmax(_masked_logits(heads.w_logits, m), axis=-1)


@eqx.filter_jit
def letter_log_probs(model: CrystalFormer, arrays) -> jax.Array:
    """log p(w_i = letter | tokens before w_i) for slots 0..N: (B, N+1, 28), -inf where
    disallowed; slot N is the padding letter that follows the last slot (N <= max_sites: arrays
    with more slots are cut to max_sites)."""
    (g, w, a, xyz, _, mask), _, _ = _cut_to_model(model, arrays)
    if g.ndim == 0:
        return _letter_log_probs_one(model, g, w, a, xyz, mask)
    return jax.vmap(_letter_log_probs_one, in_axes=(None, 0, 0, 0, 0, 0))(model, g, w, a, xyz, mask)


def _sample_lattice_one(model, key, g, w, a, xyz, mask, temperature):
    g, w, a, xyz = _clean(g, w, a, xyz, mask)
    heads = _heads(model, g, w, a, xyz, None)
    free = jnp.asarray(wyckoff_tables().lattice_free)[g]
    d = lattice_distribution(heads.lattice_params, free, temperature, model.config.sigma_min)
    norm = d.sample(key)
    _, factor = normalise_lattice(norm, lattice_scale(g, w))
    return symmetrize_lattice(g, norm / factor, xp=jnp)


@eqx.filter_jit
def sample_lattice(model: CrystalFormer, key: jax.Array, arrays, temperature: float = 1.0):
    """Draw lattices (B, 6) from p(L | g, sites), symmetrised for each crystal's space group."""
    (g, w, a, xyz, _, mask), _, _ = _cut_to_model(model, arrays)
    if g.ndim == 0:
        return _sample_lattice_one(model, key, g, w, a, xyz, mask, temperature)
    keys = jax.random.split(key, g.shape[0])
    fn = jax.vmap(_sample_lattice_one, in_axes=(None, 0, 0, 0, 0, 0, 0, None))
    return fn(model, keys, g, w, a, xyz, mask, temperature)
