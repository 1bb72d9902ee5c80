"""An exclusion zone around placed atoms, built into the coordinate density, exactly normalised.

A site's last free coordinate u is drawn from the von Mises mixture f(u) of the transformer times
a hole factor

    h(u) = prod_p (1 - a_p b_p(u)),   b_p(u) = exp(kappa_h (cos 2 pi (u - c_p) - 1)),

one hole per nearby image p of an earlier site (the NUM_HOLES nearest): centred at the image's
coordinate c_p along u, of depth a_p = A exp(-(d_p^2 / s^2)^2 / 2), d_p the fractional distance
of the site to the image in the other coordinates when u = c_p (flat-topped: holes keep nearly
their full depth out to d ~ s, where a Gaussian would already be shallow). With A < 1, h > 0. A
product of von Mises-shaped bumps is von Mises-shaped, and so is its product with a von Mises
component, so expanding the product over subsets of holes gives the normaliser Z = integral of
f h in closed form (Bessel functions), and log p(u) = log f(u) + log h(u) - log Z is an exact
density. Sampling draws from f and accepts with probability h(u). The site's own images (which
move with u) compete for the same holes: one meets the site where its offset along u vanishes.
A, kappa_h and s are three trained scalars.

Why: the transformer alone puts a few percent of its samples' atoms a few hundredths of the cell
from an atom it has just placed, which no training crystal does.
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from cfmc.wyckoff import first_images, tables

MAX_DEPTH = 0.995  # A < 1 keeps every factor of h(u) above 1 - A > 0
NUM_HOLES = 4  # nearest images that carve holes, per site (2^4 terms in the normaliser)


class ExclusionZone(eqx.Module):
    """Three scalars: depth A (sigmoid, scaled to MAX_DEPTH), bump concentration kappa_h and the
    fractional width s of the weight in the other coordinates (both log-parametrised)."""

    depth_logit: jax.Array
    log_kappa: jax.Array
    log_width: jax.Array

    # Defaults: about where maximum likelihood on the training mix puts them (broad, deep holes).
    def __init__(self, depth: float = 0.95, kappa: float = 2.5, width: float = 0.14):
        p = depth / MAX_DEPTH
        self.depth_logit = jnp.asarray(math.log(p / (1.0 - p)), jnp.float32)
        self.log_kappa = jnp.asarray(math.log(kappa), jnp.float32)
        self.log_width = jnp.asarray(math.log(width), jnp.float32)

    @property
    def depth(self) -> jax.Array:
        return MAX_DEPTH * jax.nn.sigmoid(self.depth_logit)

    @property
    def kappa(self) -> jax.Array:
        return jnp.exp(self.log_kappa)

    @property
    def width(self) -> jax.Array:
        return jnp.exp(self.log_width)


@functools.lru_cache(maxsize=1)
def orbit_tables() -> tuple[np.ndarray, np.ndarray]:
    """The group operations (231, 192, 3, 4) and, per (group, letter), which of them give the
    distinct images of a generic point of the position (231, 28, 192): each atom counted once."""
    t = tables()
    ops = t.general_ops.astype(np.float32)
    distinct = np.zeros(t.multiplicity.shape + (ops.shape[1],), bool)
    rng = np.random.default_rng(0)
    for g in range(1, 231):
        n = t.num_ops[g]
        for w in np.nonzero(t.multiplicity[g])[0]:
            if w == 0:
                continue
            point = t.op0[g, w, :, :3] @ rng.uniform(0.1, 0.9, 3) + t.op0[g, w, :, 3]
            pts = ops[g, :n, :, :3].astype(np.float64) @ point + ops[g, :n, :, 3]
            distinct[g, w, :n] = first_images(pts, 1e-6)
    return ops, distinct


def site_images(g: jax.Array, w: jax.Array, xyz: jax.Array, real: jax.Array):
    """Images (N, 192, 3) of every site of one crystal and a mask (N, 192) of the distinct ones
    of real sites."""
    ops, distinct = (jnp.asarray(x) for x in orbit_tables())
    op = ops[g]  # (192, 3, 4)
    images = jnp.einsum("oij,nj->noi", op[:, :, :3], xyz) + op[:, :, 3]
    return images, distinct[g, w] & real[:, None]


def last_free_axis(free: jax.Array) -> jax.Array:
    """Index of the last free coordinate (the one that carries the holes); 0 when none is free."""
    return 2 - jnp.argmax(free[..., ::-1], axis=-1)


MAX_SELF_CENTRES = 4  # solutions u of D u + c = 0 (mod 1) kept per operation (|D| <= 4 here)


def holes(
    zone: ExclusionZone,
    g: jax.Array,
    w: jax.Array,
    xyz: jax.Array,
    axis: jax.Array,
    images: jax.Array,
    mask: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Centres (M,) along coordinate `axis`, depths (M,) and concentrations (M,) of one site's
    holes: the NUM_HOLES nearest among the images of earlier atoms and the site's own images.

    xyz are the site's coordinates (those before `axis` are used; later ones follow from the
    representative op0 of (g, w)); images (J, O, 3) and mask (J, O) are the images of the earlier
    sites (`site_images`). An image of
    the site itself under an operation moves with u: it meets the site where D u + c = 0 (mod 1),
    D = d(image - site)/du along the axis, |D| points of collision whose bumps are |D| times
    narrower (concentration kappa_h D^2). Depth: A exp(-(d^2 / s^2)^2 / 2), d the fractional
    distance of site and image when u sits at the centre.
    """
    ops, distinct = (jnp.asarray(x) for x in orbit_tables())
    op0 = jnp.asarray(tables().op0.astype(np.float32))[g, w]
    onehot = jnp.arange(3) == axis

    def position(u):  # the site at coordinate u along the axis, (..., 3)
        s = jnp.where(onehot, jnp.asarray(u)[..., None], xyz)
        return s @ op0[:, :3].T + op0[:, 3]

    def dist2(diff):
        diff = diff - jnp.round(diff)
        return jnp.sum(jnp.square(diff), axis=-1)

    # Earlier atoms: the hole sits at the image's own coordinate.
    centre = images[..., axis]  # (J, O)
    # position(u) = position(0) + u e is affine, e = op0's column of the axis.
    step = op0[:, :3] @ onehot.astype(jnp.float32)
    diff = (position(0.0) - images) + centre[..., None] * step
    centre, d2 = centre.reshape(-1), jnp.where(mask, dist2(diff), jnp.inf).reshape(-1)

    # The site's own images: diff(u) = (R - I) r(u) + t is affine in u.
    rot = ops[g][:, :, :3] - jnp.eye(3)  # (O, 3, 3)
    tr = ops[g][:, :, 3]
    base = jnp.einsum("oij,j->oi", rot, position(0.0)) + tr  # diff at u = 0
    slope = jnp.einsum("oij,j->oi", rot, step)
    big_d = jnp.round(slope[:, axis])  # (O,) integer D
    n = jnp.arange(MAX_SELF_CENTRES, dtype=jnp.float32)
    safe = jnp.where(big_d == 0, 1.0, big_d)
    u_self = jnp.mod((n[None, :] - base[:, axis, None]) / safe[:, None], 1.0)  # (O, C)
    ok_self = (
        distinct[g, w][:, None] & (big_d[:, None] != 0) & (n[None, :] < jnp.abs(big_d)[:, None])
    )
    d2_self = jnp.where(
        ok_self, dist2(base[:, None, :] + u_self[..., None] * slope[:, None, :]), jnp.inf
    )

    centres = jnp.concatenate([centre, u_self.reshape(-1)])
    kappas = zone.kappa * jnp.concatenate(
        [jnp.ones_like(centre), jnp.repeat(jnp.square(big_d), MAX_SELF_CENTRES)]
    )
    d2 = jnp.concatenate([d2, d2_self.reshape(-1)])
    ok = jnp.isfinite(d2)
    # Hole depths need no gradient with respect to the coordinates (they are data). Masked
    # candidates score far below any real one (d^2 <= 3/4), finite so that gradients are too.
    score = jnp.where(ok, -jax.lax.stop_gradient(d2), -1e3)
    top, idx = jax.lax.top_k(score, NUM_HOLES)
    depth = jnp.where(top > -10.0, jnp.exp(-0.5 * jnp.square(top / jnp.square(zone.width))), 0.0)
    return centres[idx], zone.depth * depth, kappas[idx]


def _bump_log(u: jax.Array, centres: jax.Array, kappa: jax.Array) -> jax.Array:
    return kappa * (jnp.cos(2.0 * math.pi * (u - centres)) - 1.0)


def log_hole_factor(u, centres, weights, kappa) -> jax.Array:
    """log h(u) = sum_p log(1 - a_p b_p(u)), u a scalar or (...,) against (M,) holes."""
    u = jnp.asarray(u)[..., None]
    return jnp.sum(jnp.log1p(-weights * jnp.exp(_bump_log(u, centres, kappa))), axis=-1)


@functools.lru_cache(maxsize=4)
def _subsets(m: int) -> np.ndarray:
    return ((np.arange(2**m)[:, None] >> np.arange(m)) & 1).astype(np.float32)  # (2^M, M)


def log_normaliser(params: jax.Array, centres, weights, kappa, kappa_min: float) -> jax.Array:
    """log Z, Z the integral over [0, 1) of f h, f the von Mises mixture with params (3 Kx,).

    h = prod_p (1 - a_p b_p) expands into signed products of bumps over subsets S of the holes;
    a product of von Mises-shaped bumps is one (resultant R_S e^(i phi_S) = kappa_h sum_S
    e^(i theta_p)), and its overlap with a von Mises component is a ratio of Bessel functions.
    """
    logits, loc, conc = jnp.split(params, 3, axis=-1)
    conc = jax.nn.softplus(conc) + kappa_min
    pi = jax.nn.softmax(logits)
    subsets = jnp.asarray(_subsets(centres.shape[-1]))
    theta = 2.0 * math.pi * (centres - 0.5)  # the mixture lives on the angle 2 pi (x - 1/2)
    res_c = subsets @ (kappa * jnp.cos(theta))  # (S,)
    res_s = subsets @ (kappa * jnp.sin(theta))
    size = subsets @ (kappa * jnp.ones_like(theta))
    # r - kappa_k from r^2 - kappa_k^2 = 2 kappa_k (X cos mu + Y sin mu) + X^2 + Y^2: no float32
    # cancellation when kappa_k is in the thousands (a sharp component).
    cross = jnp.cos(loc)[:, None] * res_c + jnp.sin(loc)[:, None] * res_s  # (Kx, S)
    excess = 2.0 * conc[:, None] * cross + jnp.square(res_c) + jnp.square(res_s)
    r = jnp.sqrt(jnp.maximum(jnp.square(conc[:, None]) + excess, 1e-12))
    r_minus = excess / (r + conc[:, None])
    overlap = jnp.exp(
        r_minus - size
        + jnp.log(jax.scipy.special.i0e(r))
        - jnp.log(jax.scipy.special.i0e(conc))[:, None]
    )
    coef = jnp.prod(jnp.where(subsets > 0, -weights, 1.0), axis=-1)  # (S,)
    z = jnp.sum(coef * (pi @ overlap))
    # h >= prod(1 - a_p) bounds Z from below; the bound only guards against round-off.
    return jnp.log(jnp.maximum(z, jnp.prod(1.0 - weights)))
