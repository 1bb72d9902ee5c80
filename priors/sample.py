"""Autoregressive sampling with a key/value cache: one token per transformer step, jitted, batched.

A `lax.scan` runs over the site slots; each iteration feeds the five tokens of one site (letter,
species, x, y, z), one at a time, through the cached transformer and draws the next token from the
masked conditional. The log probability of every choice under the untempered conditionals is
recorded, so a sample's recorded log p equals `log_prob` of the result.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from cfmc.arrays import NUM_SPECIES, CrystalArrays
from cfmc.wyckoff import symmetrize_lattice

from .density import (
    LogProbTerms,
    angle_to_coord,
    coord_distribution,
    coord_log_prob,
    lattice_distribution,
    lattice_log_prob,
    lattice_scale,
    letter_mask,
    normalise_lattice,
    species_mask,
    wyckoff_tables,
)
from .exclusion import holes, last_free_axis, log_hole_factor, log_normaliser, site_images
from .model import CrystalFormer


def _top_p(logits: jax.Array, top_p: jax.Array) -> jax.Array:
    """Nucleus filter: keep the most probable choices whose mass reaches top_p."""
    probs = jax.nn.softmax(logits)
    sorted_p = jnp.sort(probs)[::-1]
    before = jnp.cumsum(sorted_p) - sorted_p  # mass of strictly more probable choices
    threshold = jnp.min(jnp.where(before < top_p, sorted_p, jnp.inf))
    return jnp.where((probs >= threshold) | (top_p >= 1.0), logits, -jnp.inf)


def _choose(key, logits, mask, fixed, temperature, top_p=None):
    """Draw from masked logits (tempered) unless `fixed` >= 0; log p under the untempered ones."""
    masked = jnp.where(mask, logits, -jnp.inf)
    tempered = masked / temperature
    if top_p is not None:
        tempered = _top_p(tempered, top_p)
    drawn = jax.random.categorical(key, tempered)
    choice = jnp.where(fixed >= 0, fixed, drawn).astype(jnp.int32)
    return choice, jax.nn.log_softmax(masked)[choice]


def _draw_mixture(key, params, temperature, kappa_min):
    """A draw from the von Mises mixture: the component first, then only that von Mises (the
    mixture's own sampler would draw every component by rejection sampling)."""
    d = coord_distribution(params, temperature, kappa_min)
    k1, k2 = jax.random.split(key)
    comp = d.mixing_distribution.sample(k1)
    vm = d.component_distribution
    return dist.VonMises(vm.loc[comp], vm.concentration[comp], validate_args=False).sample(k2)


def draw_excluded(key, params, temperature, kappa_min, centres, weights, kappa):
    """A draw from f h / Z (`priors.exclusion`) by rejection: candidates from the tempered
    mixture f, each accepted with probability h(u), the first accepted one kept."""
    tries = 8

    def step(state):
        key, _, _, it = state
        key, k1, k2 = jax.random.split(key, 3)
        cand = jax.vmap(lambda k: _draw_mixture(k, params, temperature, kappa_min))(
            jax.random.split(k1, tries)
        )
        log_h = log_hole_factor(angle_to_coord(cand), centres, weights, kappa)
        accept = jnp.log(jax.random.uniform(k2, (tries,))) < log_h
        return key, cand[jnp.argmax(accept)], jnp.any(accept), it + 1

    # The acceptance rate is the mass of f h, small only when f sits inside deep holes; the cap
    # (8000 candidates) keeps the last candidate in that practically impossible case.
    init = (key, jnp.float32(0.0), jnp.bool_(False), jnp.int32(0))
    return jax.lax.while_loop(lambda s: ~s[2] & (s[3] < 1000), step, init)[1]


class TokenLogProbs(NamedTuple):
    """Untempered log p of each token a draw chose (under the masks): letters per slot, the
    appended padding letter included (N + 1,), species per site (N,), free coordinates (N, 3);
    zero for tokens that carry no choice (padding sites, fixed coordinates of a position)."""

    wyckoff: jax.Array
    species: jax.Array
    coords: jax.Array


def sample_one(
    model: CrystalFormer, key, g, allowed, fixed_w, fixed_a, fixed_x, temperature, top_p,
    fixed_lattice=None, num_slots: int | None = None,
) -> tuple[CrystalArrays, LogProbTerms, TokenLogProbs]:
    """One crystal from the KV-cached autoregressive sampler (pure JAX; vmap for many).

    allowed: (N, 119) species masks; fixed_w / fixed_a (-1: draw) and fixed_x (NaN: draw) clamp
    tokens, which are then scored instead of drawn, so with every token clamped this evaluates the
    per-token log densities of a given crystal (teacher forcing); fixed_lattice (6,) clamps the
    lattice where not NaN (its log density is then that of the given one). num_slots (static)
    decodes only the first slots, for crystals known to end there (a template's sites, its
    padding letter forced): the same densities at a fraction of the cost."""
    cfg = model.config
    n_model = cfg.max_sites
    n = n_model if num_slots is None else int(num_slots)
    t = wyckoff_tables()
    mult, free, op0 = (jnp.asarray(x) for x in (t.mult, t.free, t.op0))
    cache = model.init_cache()
    n_layers = len(model.blocks)

    def decode(x, cache, start, local, pos):
        h, kvs = model.step(x, cache, start, local, pos)
        for layer, kv in zip(local, kvs, strict=True):
            layer.append(kv)
        return h

    local = [[] for _ in range(n_layers)]
    h = decode(model.embed_start(g), cache, jnp.int32(0), local, jnp.int32(0))
    cache = model.write_cache(cache, local, jnp.int32(0))
    key, k0 = jax.random.split(key)
    w0, lp_w0 = _choose(k0, model.w_head(h), letter_mask(g, 0, True), fixed_w[0], temperature)
    fixed_w_next = jnp.concatenate([fixed_w[1:], jnp.zeros((1,), jnp.int32)])

    zone = model.exclusion
    # Images of the sites placed so far (the zone's holes); nothing to carry without a zone.
    ops_n = (
        site_images(g, jnp.zeros((n,), jnp.int32), jnp.zeros((n, 3)), jnp.zeros((n,), bool))
        if zone is not None
        else (jnp.zeros((0,)), jnp.zeros((0,), bool))
    )

    def site(carry, i):
        cache, w, prev, key, lat_h, acc, images, img_mask = carry
        keys = jax.random.split(key, 6)
        pos = 1 + 5 * i
        local = [[] for _ in range(n_layers)]
        h = decode(model.embed_letter(g, w, mult[g, w]), cache, pos, local, pos)
        lat_h = jnp.where((w == 0) & (prev != 0), h, lat_h)  # the first padding letter
        a, lp_a = _choose(
            keys[0],
            model.a_head(h),
            species_mask(w, allowed[i], cfg.num_species),
            fixed_a[i],
            temperature,
            top_p,
        )
        h = decode(model.embed_species(g, a), cache, pos, local, pos + 1)
        xyz = jnp.zeros(3, jnp.float32)
        lp_x = jnp.zeros(3, jnp.float32)
        axis = last_free_axis(free[g, w])
        for k in range(3):
            params = model.coord_head(h)
            if zone is None:
                drawn = _draw_mixture(keys[1 + k], params, temperature, cfg.kappa_min)
            else:
                # Holes only at the site's last free coordinate (zero weights elsewhere).
                hc, hw, hk = holes(zone, g, w, xyz, axis, images, img_mask)
                hw = jnp.where(axis == k, hw, 0.0)
                drawn = draw_excluded(keys[1 + k], params, temperature, cfg.kappa_min, hc, hw, hk)
            drawn = angle_to_coord(drawn)
            drawn = jnp.where(jnp.isnan(fixed_x[i, k]), drawn, jnp.mod(fixed_x[i, k], 1.0))
            tied = jnp.mod(op0[g, w, k, :3] @ xyz + op0[g, w, k, 3], 1.0)
            val = jnp.where(free[g, w, k], drawn, tied)
            val = jnp.where(val >= 1.0, val - 1.0, val)
            lp = coord_log_prob(params, val, cfg.kappa_min)
            if zone is not None:
                lp += log_hole_factor(val, hc, hw, hk) - log_normaliser(
                    params, hc, hw, hk, cfg.kappa_min
                )
            lp_x = lp_x.at[k].set(jnp.where(free[g, w, k], lp, 0.0))
            xyz = xyz.at[k].set(val)
            h = decode(model.embed_coord(g, val, k), cache, pos, local, pos + 2 + k)
        cache = model.write_cache(cache, local, pos)
        if zone is not None:
            new_images, new_mask = site_images(g, w[None], xyz[None], (w > 0)[None])
            images = images.at[i].set(new_images[0])
            img_mask = img_mask.at[i].set(new_mask[0])
        # The last slot's successor is the appended padding letter: forced.
        mask_next = jnp.where(i + 1 < n_model, letter_mask(g, w, False),
                              jnp.arange(cfg.num_letters) == 0)
        w_next, lp_w = _choose(keys[4], model.w_head(h), mask_next, fixed_w_next[i], temperature)
        lp_a = jnp.where(w > 0, lp_a, 0.0)
        acc = acc + jnp.stack([lp_w, lp_a, lp_x.sum()])
        return (cache, w_next, w, keys[5], lat_h, acc, images, img_mask), (w, a, xyz, lp_w, lp_a,
                                                                           lp_x)

    acc0 = jnp.stack([lp_w0, jnp.float32(0.0), jnp.float32(0.0)])
    lat0 = jnp.zeros(cfg.model_size, jnp.float32)
    init = (cache, w0, jnp.int32(0), key, lat0, acc0, ops_n[0], ops_n[1])
    (cache, w_last, prev, key, lat_h, acc, _, _), (w, a, xyz, lp_ws, lp_as, lp_xs) = (
        jax.lax.scan(site, init, jnp.arange(n)))
    last = jnp.int32(1 + 5 * n)
    local = [[] for _ in range(n_layers)]
    h = decode(model.embed_letter(g, w_last, mult[g, w_last]), cache, last, local, last)
    lat_h = jnp.where(prev != 0, h, lat_h)  # all slots real: the appended letter is the first pad

    # Project onto the Wyckoff positions (the representative's op0), wrapped into [0, 1).
    xyz = jnp.mod(jnp.einsum("nij,nj->ni", op0[g, w, :, :3], xyz) + op0[g, w, :, 3], 1.0)
    xyz = jnp.where(xyz >= 1.0, xyz - 1.0, xyz)

    params = model.lattice_head(lat_h)
    lat_free = jnp.asarray(t.lattice_free)[g]
    norm = lattice_distribution(params, lat_free, temperature, cfg.sigma_min).sample(key)
    _, factor = normalise_lattice(norm, lattice_scale(g, w))
    lattice = symmetrize_lattice(g, norm / factor, xp=jnp)
    if fixed_lattice is not None:  # NaN entries: drawn
        fixed_lattice = jnp.asarray(fixed_lattice, lattice.dtype)
        lattice = jnp.where(jnp.isnan(fixed_lattice), lattice, fixed_lattice)
    lp_l = lattice_log_prob(params, g, w, lattice, cfg.sigma_min)

    arrays = CrystalArrays(g, w, a, xyz, lattice, w > 0)
    terms = LogProbTerms(acc.sum() + lp_l, acc[0], acc[1], acc[2], lp_l)
    tokens = TokenLogProbs(jnp.concatenate([lp_w0[None], lp_ws]), lp_as, lp_xs)
    return arrays, terms, tokens


@eqx.filter_jit
def _sample_batch(model, keys, g, allowed, fixed_w, fixed_a, fixed_x, temperature, top_p):
    fn = jax.vmap(sample_one, in_axes=(None, 0, 0, None, None, None, None, None, None))
    arrays, terms, _ = fn(model, keys, g, allowed, fixed_w, fixed_a, fixed_x, temperature, top_p)
    return arrays, terms


def _template(value, n: int, fill, dtype, shape, name: str) -> np.ndarray:
    if value is None:
        return np.full(shape, fill, dtype)
    v = np.asarray(value, dtype)
    if v.shape[0] > n or v.shape[1:] != shape[1:]:
        raise ValueError(f"{name} must have shape {shape} (or fewer sites), got {v.shape}")
    out = np.full(shape, fill, dtype)
    out[: v.shape[0]] = v
    return out


def sample_with_log_prob(
    model: CrystalFormer,
    key: jax.Array,
    spacegroup,
    num: int,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    allowed_species=None,
    fixed_wyckoff=None,
    fixed_species=None,
    fixed_coords=None,
    chunk: int = 256,
    keys: jax.Array | None = None,
    batch: int | None = None,
) -> tuple[CrystalArrays, LogProbTerms]:
    """`sample`, also returning the log p recorded while sampling (untempered conditionals).

    keys: one key per crystal (num, ...) in place of `key` (crystal i depends on keys[i] alone);
    batch: the compiled batch (default min(num, chunk)), every batch padded to it, so a crystal
    comes out the same whatever else is drawn beside it.
    """
    n = model.config.max_sites
    g = np.broadcast_to(np.asarray(spacegroup, np.int32), (num,))
    if np.any((g < 1) | (g > 230)):
        raise ValueError(f"space groups must be 1..230, got {np.unique(g)[:5].tolist()}")
    if temperature <= 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature > 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
    allowed = np.ones((n, NUM_SPECIES), bool)
    if allowed_species is not None:
        allowed = np.broadcast_to(np.asarray(allowed_species, bool), (n, NUM_SPECIES))
        if not np.all(allowed[:, 1:].any(-1)):
            raise ValueError("allowed_species leaves no element for some site")
    fw = _template(fixed_wyckoff, n, -1, np.int32, (n,), "fixed_wyckoff")
    fa = _template(fixed_species, n, -1, np.int32, (n,), "fixed_species")
    fx = _template(fixed_coords, n, np.nan, np.float32, (n, 3), "fixed_coords")
    if keys is None:
        keys = jax.random.split(key, num)
    elif len(keys) != num:
        raise ValueError(f"keys must hold one key per crystal ({num}), got {len(keys)}")
    batch = batch or min(num, chunk)
    outs = []
    for i in range(0, num, batch):
        stop = min(i + batch, num)
        size = stop - i
        # Pad the last batch to the full size so one compiled shape serves all batches.
        sel = np.concatenate([np.arange(i, stop), np.full(batch - size, i)])
        out = _sample_batch(
            model,
            keys[sel],
            jnp.asarray(g[sel]),
            jnp.asarray(allowed),
            jnp.asarray(fw),
            jnp.asarray(fa),
            jnp.asarray(fx),
            jnp.float32(temperature),
            jnp.float32(top_p),
        )
        outs.append(jax.tree_util.tree_map(lambda x, size=size: x[:size], out))
    arrays = CrystalArrays(*(jnp.concatenate(f) for f in zip(*(o[0] for o in outs), strict=True)))
    terms = LogProbTerms(*(jnp.concatenate(f) for f in zip(*(o[1] for o in outs), strict=True)))
    return arrays, terms


def sample(
    model: CrystalFormer,
    key: jax.Array,
    spacegroup,
    num: int,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    allowed_species=None,
    fixed_wyckoff=None,
    fixed_species=None,
    fixed_coords=None,
) -> CrystalArrays:
    """Draw `num` crystals of `spacegroup` (an int or (num,) ints) from the prior.

    temperature scales the letter/species/mixture logits (1/T), the von Mises concentrations (1/T)
    and the lattice widths (sqrt T); top_p is a nucleus filter on the species. allowed_species:
    bool (119,) or (N, 119). fixed_*: per-site templates (N,), (N,), (N, 3) whose entries other than
    -1 (NaN for coordinates) are clamped; coordinates end on their Wyckoff positions in [0, 1) and
    the lattice is symmetrised for the group.
    """
    arrays, _ = sample_with_log_prob(
        model,
        key,
        spacegroup,
        num,
        temperature=temperature,
        top_p=top_p,
        allowed_species=allowed_species,
        fixed_wyckoff=fixed_wyckoff,
        fixed_species=fixed_species,
        fixed_coords=fixed_coords,
    )
    return arrays


__all__ = ["TokenLogProbs", "sample", "sample_one", "sample_with_log_prob"]
