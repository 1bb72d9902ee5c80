"""Coordinate shift of one site: a von Mises random walk on its free coordinates, projected onto
the Wyckoff position (first ITA representative) and wrapped into [0, 1). Symmetric."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import VonMises

from cfmc import wyckoff
from cfmc.arrays import CrystalArrays
from cfmc.kernels.base import Proposal, ProposalFn, as_top_level
from cfmc.kernels.constraints import SiteConstraints


@functools.lru_cache(maxsize=1)
def _op0() -> np.ndarray:
    return wyckoff.tables().op0.astype(np.float32)


def concentration(step_size: jax.Array) -> jax.Array:
    """von Mises concentration for a step of `step_size` (standard deviation in fractional
    units, small-step limit): kappa = 1 / (2 pi step)^2."""
    return 1.0 / jnp.square(2 * jnp.pi * jnp.maximum(step_size, 1e-4))


def vonmises_proposal() -> ProposalFn:
    """Shift the free, movable coordinates of the site by von Mises noise."""
    op0 = jnp.asarray(_op0())
    free = jnp.asarray(wyckoff.tables().free)

    def propose(key, position, constraints, site, step_size) -> Proposal:
        move = constraints.coord_move[site] & free[position.spacegroup, position.wyckoff[site]]
        active = position.mask[site] & jnp.any(move)
        noise = VonMises(0.0, concentration(step_size)).sample(key, (3,)) / (2 * jnp.pi)
        x = position.coords[site]
        shifted = jnp.where(move, x + noise, x)
        a = op0[position.spacegroup, position.wyckoff[site]]
        rep = jnp.mod(a[:, :3] @ shifted + a[:, 3], 1.0)
        rep = jnp.where(rep >= 1.0, 0.0, rep)  # float rounding of mod
        new = jnp.where(active, rep, x).astype(position.coords.dtype)
        coords = position.coords.at[site].set(new)
        return Proposal(position._replace(coords=coords), jnp.zeros(()), active, active)

    return propose


def coordinate_shift(
    logdensity_fn: Callable[[CrystalArrays], jax.Array],
    constraints: SiteConstraints,
    site: int,
    step_size: float = 0.1,
):
    """blackjax-style kernel for one chain."""
    return as_top_level(vonmises_proposal(), logdensity_fn, constraints, site, step_size)
