"""Batches of padded crystal arrays for the prior: slot counts, length buckets, cuts and pads.

Crystals are grouped by how many site slots they need (real sites plus the padding letter that
ends them), and each batch is cut to its bucket's slot count. The density is exact under this cut:
the padding letter of slot N is scored whenever N < max_sites, and every later slot is a forced pad
of probability one.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from cfmc.arrays import CrystalArrays


def slots_needed(arrays: CrystalArrays, max_sites: int) -> np.ndarray:
    """Site slots each crystal needs: its real sites plus the padding letter that ends it."""
    n = np.asarray(arrays.mask).sum(-1)
    return np.minimum(n + 1, max_sites)


def cut_sites(arrays: CrystalArrays, n: int) -> CrystalArrays:
    """Keep the first n site slots."""
    g, w, a, x, lat, m = arrays
    return CrystalArrays(g, w[:, :n], a[:, :n], x[:, :n], lat, m[:, :n])


def assign_buckets(
    arrays: CrystalArrays, max_sites: int, edges: tuple[int, ...], min_size: int
) -> dict[int, np.ndarray]:
    """Indices per bucket (slot count); buckets smaller than `min_size` merge into the next one."""
    sizes = sorted({e for e in edges if e < max_sites} | {max_sites})
    need = slots_needed(arrays, max_sites)
    which = np.searchsorted(sizes, need)
    out: dict[int, np.ndarray] = {}
    carry = np.zeros(0, np.int64)
    for k, size in enumerate(sizes):
        idx = np.concatenate([carry, np.nonzero(which == k)[0]])
        if len(idx) < min_size and k < len(sizes) - 1:
            carry = idx
            continue
        carry = np.zeros(0, np.int64)
        if len(idx):
            out[size] = idx
    return out


def device_batch(arrays: CrystalArrays, idx: np.ndarray, size: int) -> CrystalArrays:
    """The crystals `idx` cut to `size` slots, as device arrays (one static shape per bucket)."""
    return CrystalArrays(*(jnp.asarray(f) for f in cut_sites(arrays.take(idx), size)))


def fit_slots(arrays: CrystalArrays, max_sites: int) -> tuple[CrystalArrays, np.ndarray]:
    """Arrays with exactly max_sites slots (padded or cut) and a flag for crystals that had real
    sites beyond the cut (their log p is set to -inf by `log_prob`; training drops them)."""
    arrays = CrystalArrays(*(np.asarray(f) for f in arrays))
    n_slots = arrays.max_sites
    overflow = np.zeros(arrays.batch_size, bool)
    if n_slots > max_sites:
        overflow = arrays.mask[:, max_sites:].any(-1)
        arrays = cut_sites(arrays, max_sites)
    elif n_slots < max_sites:
        pad = max_sites - n_slots
        g, w, a, x, lat, m = arrays
        arrays = CrystalArrays(
            g,
            np.pad(w, ((0, 0), (0, pad))),
            np.pad(a, ((0, 0), (0, pad))),
            np.pad(x, ((0, 0), (0, pad), (0, 0))),
            lat,
            np.pad(m, ((0, 0), (0, pad))),
        )
    return arrays, overflow
