"""Padded array form of a batch of crystals: the pytree the prior and the kernels work on."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

DEFAULT_MAX_SITES = 20  # real sites; MP-20 crystals (<= 20 atoms) never need more. The prior
# appends one padding slot, so its sequence has 21 sites as in the paper.
NUM_SPECIES = 119  # index 0 pads, 1..118 are atomic numbers


class CrystalArrays(NamedTuple):
    """A batch of crystals as padded arrays; leading axes are batch axes.

    spacegroup: (...,) int32, 1..230
    wyckoff:    (..., N) int32, letter index 1..27 ('a'..'z', 'A'), 0 pads
    species:    (..., N) int32, atomic number 1..118, 0 pads
    coords:     (..., N, 3) float32, representative fractional coordinates in [0, 1), 0 on pads
    lattice:    (..., 6) float32, a, b, c in Angstrom and alpha, beta, gamma in degrees
    mask:       (..., N) bool, True on real sites (sites come first, padding after)
    """

    spacegroup: np.ndarray
    wyckoff: np.ndarray
    species: np.ndarray
    coords: np.ndarray
    lattice: np.ndarray
    mask: np.ndarray

    @property
    def max_sites(self) -> int:
        return int(self.wyckoff.shape[-1])

    @property
    def batch_size(self) -> int:
        return int(np.shape(self.spacegroup)[0]) if np.ndim(self.spacegroup) else 1

    def take(self, index) -> CrystalArrays:
        """Select along the batch axis (an int, slice, boolean or index array) in every field."""
        return CrystalArrays(*(np.asarray(f)[index] for f in self))


def concatenate(batches: list[CrystalArrays]) -> CrystalArrays:
    """Join batches along the first axis."""
    fields = zip(*batches, strict=True)
    return CrystalArrays(*(np.concatenate([np.asarray(f) for f in field]) for field in fields))


def pad_axis(v: np.ndarray, size: int, fill: float, axis: int = 0) -> np.ndarray:
    """`v` padded with `fill` to length `size` along `axis` (fitted proposals keep one shape)."""
    widths = [(0, 0)] * v.ndim
    widths[axis] = (0, size - v.shape[axis])
    return np.pad(v, widths, constant_values=np.asarray(fill, v.dtype))
