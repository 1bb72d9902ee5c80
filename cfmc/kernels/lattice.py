"""Lattice move: a Gaussian random walk on the free lattice parameters, symmetrised for the crystal
system; impossible cells (non-positive lengths, angles outside (0, 180), non-positive volume) are
rejected. Symmetric."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from cfmc import wyckoff
from cfmc.arrays import CrystalArrays
from cfmc.kernels.base import Proposal, ProposalFn, as_top_level
from cfmc.kernels.constraints import SiteConstraints

ANGLE_SCALE = 5.0  # degrees of angle step per Angstrom of length step


def volume_factor(lattice: jax.Array) -> jax.Array:
    """V / (abc) squared: 1 - cos^2 a - cos^2 b - cos^2 g + 2 cos a cos b cos g (> 0 for a cell)."""
    ca, cb, cg = (jnp.cos(jnp.deg2rad(lattice[..., k])) for k in (3, 4, 5))
    return 1 - ca**2 - cb**2 - cg**2 + 2 * ca * cb * cg


def is_valid_cell(lattice: jax.Array) -> jax.Array:
    lengths, angles = lattice[..., :3], lattice[..., 3:]
    return (
        jnp.all(lengths > 0, axis=-1)
        & jnp.all((angles > 0) & (angles < 180), axis=-1)
        & (volume_factor(lattice) > 1e-6)
    )


def gaussian_proposal() -> ProposalFn:
    """Lengths move by N(0, step^2) Angstrom, angles by N(0, (ANGLE_SCALE step)^2) degrees; the
    site argument is ignored."""
    scale = jnp.array([1.0, 1.0, 1.0, ANGLE_SCALE, ANGLE_SCALE, ANGLE_SCALE])

    def propose(key, position, constraints, site, step_size) -> Proposal:
        lat = position.lattice
        move = constraints.lattice_move
        active = jnp.any(move)
        noise = jax.random.normal(key, (6,)) * scale * step_size
        new = jnp.where(move, lat + noise, lat)
        new = wyckoff.symmetrize_lattice(position.spacegroup, new, xp=jnp)
        new = jnp.where(active, new, lat).astype(lat.dtype)
        valid = active & is_valid_cell(new)
        return Proposal(position._replace(lattice=new), jnp.zeros(()), valid, active)

    return propose


def lattice_move(
    logdensity_fn: Callable[[CrystalArrays], jax.Array],
    constraints: SiteConstraints,
    step_size: float = 0.1,
):
    """blackjax-style kernel for one chain."""
    return as_top_level(gaussian_proposal(), logdensity_fn, constraints, 0, step_size)
