"""What the kernels may change at each site: element allow-lists, ties, differ pairs, free
coordinates and free lattice parameters. Built from a template or for free design."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cfmc import wyckoff
from cfmc.arrays import NUM_SPECIES, CrystalArrays


class SiteConstraints(NamedTuple):
    """What the kernels may change at each site of one crystal (batch axes lead when batched).

    species_move: (N,) bool, the site leads its tie group and has a blank element to move
    allowed:      (N, 119) bool, elements the site may take (intersected over its tie group)
    tie:          (N,) int, index of the site whose element this one copies (itself if untied)
    coord_move:   (N, 3) bool, coordinates that are free in the Wyckoff position and blank
    differ:       (K, 2) int, pairs of sites whose elements must differ
    lattice_move: (6,) bool, free lattice parameters the lattice move may change
    """

    species_move: np.ndarray
    allowed: np.ndarray
    tie: np.ndarray
    coord_move: np.ndarray
    differ: np.ndarray
    lattice_move: np.ndarray

    def broadcast(self, batch: int) -> SiteConstraints:
        """Repeat the constraints for `batch` chains (leading axis)."""
        return SiteConstraints(*(np.broadcast_to(f, (batch,) + f.shape).copy() for f in self))


def free_constraints(arrays: CrystalArrays, allowed: np.ndarray) -> SiteConstraints:
    """Per-chain constraints for free design, valid whatever letters the chains take (block moves
    change letters and the number of sites): every real site's element may change within
    `allowed` (119,), every coordinate that is free in its site's current Wyckoff position moves
    (the coordinate kernel intersects with the position's free coordinates), and so do the free
    lattice parameters of the chain's space group. Padding sites never move (masked)."""
    a = CrystalArrays(*(np.asarray(f) for f in arrays))
    b, n = a.mask.shape
    species_move = np.ones((b, n), bool)
    allow = np.broadcast_to(np.asarray(allowed, bool), (b, n, NUM_SPECIES)).copy()
    allow[:, :, 0] = False
    tie = np.broadcast_to(np.arange(n, dtype=np.int32), (b, n)).copy()
    coord_move = np.ones((b, n, 3), bool)
    differ = np.zeros((b, 0, 2), np.int32)
    lattice_move = np.stack([wyckoff.lattice_free_mask(int(x)) for x in a.spacegroup])
    return SiteConstraints(species_move, allow, tie, coord_move, differ, lattice_move)
