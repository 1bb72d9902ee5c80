"""Block move from the prior itself: redraw the blanks of the sites from `site` on (all of them for
site 0) from the prior's own autoregressive conditionals (the KV-cached sampler, fixed tokens
forced, blanks under the template's masks), and accept with the exact Hastings ratio
q(x | x') / q(x' | x).

Given the tokens kept (the template's fixed ones and the current crystal's before `site`), the
proposal does not depend on the rest of the current state, so q(x' | x) is the product of the
conditionals of the drawn tokens and q(x | x') the same product for the current crystal's tokens,
scored by teacher forcing through the same sampler. Fixed tokens after a blank enter only through
the target density. Without a template the Wyckoff letters are redrawn too, so the number of
sites may change (a trans-dimensional move, exact because both directions are scored by the same
autoregressive density); with the prior alone as target and the whole sequence as the block, the
ratio is one and every proposal is accepted.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cfmc.arrays import CrystalArrays
from cfmc.kernels.base import Proposal, ProposalFn
from cfmc.kernels.lattice import is_valid_cell


class BlockDraws(NamedTuple):
    """`tries` block proposals of one chain and the proposal density of its current crystal."""

    positions: CrystalArrays  # (tries, ...) proposed crystals
    log_q: jax.Array  # (tries,) log q(x'_k | kept tokens)
    log_q_current: jax.Array  # () log q(x | kept tokens)
    is_valid: jax.Array  # (tries,) the proposal keeps the ties, differ pairs and a valid cell


# draws(key, position, constraints, site, tries, params): params are the proposal's tuned
# parameters (a pytree; unused by the prior's block)
BlockDrawFn = Callable[..., BlockDraws]


def prior_block_draws(model, fixed_wyckoff: np.ndarray | None = None,
                      fixed_species: np.ndarray | None = None,
                      fixed_coords: np.ndarray | None = None,
                      allowed_species: np.ndarray | None = None,
                      lattice: bool = False) -> BlockDrawFn:
    """draws(key, position, constraints, site, tries) -> BlockDraws: `tries` independent redraws
    of the blanks from `site` on and the current crystal scored by teacher forcing, all in one
    vmapped call of the KV-cached sampler. Arguments as `prior_block_proposal`."""
    from cfmc.priors.sample import sample_one

    n_model = int(model.config.max_sites)
    fw = jnp.asarray(np.full(n_model, -1) if fixed_wyckoff is None else fixed_wyckoff, jnp.int32)
    fa = jnp.asarray(np.full(n_model, -1) if fixed_species is None else fixed_species, jnp.int32)
    fx = jnp.asarray(np.full((n_model, 3), np.nan) if fixed_coords is None else fixed_coords,
                     jnp.float32)
    allow = jnp.broadcast_to(jnp.asarray(
        np.ones(119, bool) if allowed_species is None else allowed_species, bool), (n_model, 119))
    one = jnp.float32(1.0)
    slots = jnp.arange(n_model)

    def pad(v: jax.Array, fill) -> jax.Array:
        extra = n_model - v.shape[0]
        return jnp.concatenate([v, jnp.full((extra,) + v.shape[1:], fill, v.dtype)])

    def draws(key, position, constraints, site, tries: int, params=None) -> BlockDraws:
        n = position.species.shape[0]
        g = position.spacegroup
        cur_w = pad(position.wyckoff.astype(jnp.int32), 0)
        cur_a = pad(position.species.astype(jnp.int32), 0)
        cur_x = pad(position.coords.astype(jnp.float32), 0.0)
        keep = slots < site  # the current crystal's tokens before `site` stay
        w = jnp.where(keep & (fw < 0), cur_w, fw)
        a = jnp.where(keep[:, None] & (fa < 0)[:, None], cur_a[:, None], fa[:, None])[:, 0]
        x = jnp.where(keep[:, None] & jnp.isnan(fx), cur_x, fx)
        if n < n_model:  # the positions hold n slots: the letter after them is padding
            w = w.at[n].set(0)
        # the draws and the scoring of the current crystal (the last row) in one program
        rows = tries + 1
        keys = jax.random.split(key, rows)

        def stack(new, cur):
            return jnp.concatenate([jnp.broadcast_to(new, (tries,) + new.shape), cur[None]])

        lat = stack(jnp.full(6, jnp.nan, jnp.float32), position.lattice.astype(jnp.float32))
        sampler = functools.partial(sample_one, num_slots=n)  # slots past n hold padding
        out, terms, tokens = jax.vmap(
            sampler, in_axes=(None, 0, None, None, 0, 0, 0, None, None, 0)
        )(model, keys, g, allow, stack(w, cur_w), stack(a, cur_a), stack(x, cur_x), one, one,
          lat)
        blank_w = jnp.concatenate([w < 0, jnp.zeros(1, bool)])[: n + 1]  # last pad forced
        blank_a, blank_x = a[:n] < 0, jnp.isnan(x[:n])
        log_q = (jnp.sum(jnp.where(blank_w, tokens.wyckoff[:, : n + 1], 0.0), axis=1)
                 + jnp.sum(jnp.where(blank_a, tokens.species, 0.0), axis=1)
                 + jnp.sum(jnp.where(blank_x, tokens.coords, 0.0), axis=(1, 2))
                 + (terms.lattice if lattice else 0.0))
        species = out.species[:tries, :n].astype(position.species.dtype)
        proposed = CrystalArrays(
            spacegroup=jnp.broadcast_to(position.spacegroup, (tries,)),
            wyckoff=out.wyckoff[:tries, :n].astype(position.wyckoff.dtype), species=species,
            coords=out.coords[:tries, :n].astype(position.coords.dtype), mask=out.mask[:tries, :n],
            lattice=(out.lattice[:tries].astype(position.lattice.dtype) if lattice
                     else jnp.broadcast_to(position.lattice, (tries, 6))))
        ties = jnp.all(species[:, constraints.tie] == species, axis=1)
        pairs = constraints.differ
        differ = jnp.all(species[:, pairs[:, 0]] != species[:, pairs[:, 1]], axis=1)
        valid = ties & differ & jnp.isfinite(log_q[:tries]) & jnp.isfinite(log_q[tries])
        if lattice:  # a drawn cell must be a cell (a kept one is the chain's business)
            valid &= jax.vmap(is_valid_cell)(proposed.lattice)
        return BlockDraws(proposed, log_q[:tries], log_q[tries], valid)

    return draws


def prior_block_proposal(model, fixed_wyckoff: np.ndarray | None = None,
                         fixed_species: np.ndarray | None = None,
                         fixed_coords: np.ndarray | None = None,
                         allowed_species: np.ndarray | None = None,
                         lattice: bool = False) -> ProposalFn:
    """The block proposal of a template (or of free design when the fixed_* are None), for the
    Metropolis-Hastings step; its `draws` attribute gives many proposals at once (for
    `isir_kernel`).

    fixed_*: the template in the sampler's form over the model's slots (letters -1, species -1
    and coordinates NaN mark blanks; padding letters after the template's sites), e.g.
    `**template.sampler_clamps(N)`; allowed_species: (N, 119) or (119,) species masks.
    Positions may carry fewer slots than the model (infill keeps exactly the template's sites):
    the proposal then ends with them, and the sampler decodes only those slots. lattice: redraw
    the lattice too, from p(L | the new sites) (for targets that keep the lattice in the
    chain); else it stays.
    """
    draws = prior_block_draws(model, fixed_wyckoff, fixed_species, fixed_coords,
                              allowed_species, lattice)

    def propose(key, position, constraints, site, step_size) -> Proposal:
        d = draws(key, position, constraints, site, 1)
        proposed = jax.tree.map(lambda v: v[0], d.positions)
        log_q_ratio = d.log_q_current - d.log_q[0]
        return Proposal(proposed, log_q_ratio, d.is_valid[0], jnp.bool_(True))

    propose.draws = draws
    return propose
