"""Fractional-coordinate helpers shared by the fitted block proposals: the wrapped normal kernel
and the projection of coordinates onto their Wyckoff positions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

LOG_2PI = float(np.log(2 * np.pi))


def log_wrapped_normal(d: jax.Array, bandwidth: jax.Array | float) -> jax.Array:
    """Elementwise log density on [0, 1) of a normal of standard deviation `bandwidth` wrapped
    around the circle, at offsets `d` in (-1, 1) from its centre (images at -1, 0 and +1)."""
    bw = jnp.asarray(bandwidth)
    z = (d[..., None] + jnp.array([-1.0, 0.0, 1.0])) / bw[..., None]
    return jax.nn.logsumexp(-0.5 * z * z, axis=-1) - 0.5 * LOG_2PI - jnp.log(bw)


def onto_positions(ops: jax.Array, coords: jax.Array) -> jax.Array:
    """Coordinates (..., 3) mapped by their positions' first representative `ops` (..., 3, 4)
    and wrapped into [0, 1): tied coordinates follow the free ones."""
    x = jnp.mod(jnp.einsum("...ij,...j->...i", ops[..., :3], coords) + ops[..., 3], 1.0)
    return jnp.where(x >= 1.0, x - 1.0, x)
