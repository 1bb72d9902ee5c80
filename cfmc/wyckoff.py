"""Wyckoff-position tables for the 230 space groups, built from pyxtal's database.

Letters are indexed 1..27 ('a'..'z', then 'A' as in group 47); index 0 is the padding letter 'X'.
Everything is in the standard ITA setting used by pyxtal (origin choice 2 where there are two,
hexagonal axes for rhombohedral groups), the setting cfmc stores crystals in.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

LETTERS = "abcdefghijklmnopqrstuvwxyzA"
PAD_LETTER = "X"
NUM_LETTERS = len(LETTERS)  # 27; tables carry NUM_LETTERS + 1 entries (index 0 pads)
MAX_MULTIPLICITY = 192
NUM_SPACEGROUPS = 230


def letter_index(letter: str) -> int:
    """Index 1..27 of a Wyckoff letter; 0 for the padding letter 'X'."""
    if letter == PAD_LETTER:
        return 0
    i = LETTERS.find(letter)
    if i < 0 or len(letter) != 1:
        raise ValueError(f"'{letter}' is not a Wyckoff letter (a-z, A)")
    return i + 1


def index_letter(index: int) -> str:
    """Inverse of `letter_index`."""
    return PAD_LETTER if index == 0 else LETTERS[index - 1]


class WyckoffTables(NamedTuple):
    """Dense per-(group, letter) tables; the first axis is the space-group number (row 0 unused)."""

    num_letters: np.ndarray  # (231,) int: letters in the group
    multiplicity: np.ndarray  # (231, 28) int, 0 where the letter does not exist
    free: np.ndarray  # (231, 28, 3) bool: which of x, y, z is a free parameter
    op0: np.ndarray  # (231, 28, 3, 4) first ITA representative as an affine map of (x, y, z)
    general_ops: np.ndarray  # (231, 192, 3, 4) operations of the general position
    num_ops: np.ndarray  # (231,) int: order of the general position (= its multiplicity)
    hall_number: np.ndarray  # (231,) int: spglib Hall number of pyxtal's setting


def _cache_path() -> Path:
    from importlib.metadata import version

    root = Path(os.environ.get("CFMC_CACHE", Path.home() / ".cache" / "cfmc"))
    return root / f"wyckoff-pyxtal-{version('pyxtal')}.npz"


def _build() -> WyckoffTables:
    from pyxtal.symmetry import Group

    num_letters = np.zeros(231, np.int32)
    mult = np.zeros((231, NUM_LETTERS + 1), np.int32)
    free = np.zeros((231, NUM_LETTERS + 1, 3), bool)
    op0 = np.zeros((231, NUM_LETTERS + 1, 3, 4), np.float64)
    gops = np.zeros((231, MAX_MULTIPLICITY, 3, 4), np.float64)
    nops = np.zeros(231, np.int32)
    hall = np.zeros(231, np.int32)
    for g in range(1, NUM_SPACEGROUPS + 1):
        group = Group(g)
        hall[g] = group.hall_number
        wps = group.Wyckoff_positions  # pyxtal lists the general position first
        num_letters[g] = len(wps)
        for wp in wps:
            w = letter_index(wp.letter)
            affine = np.asarray(wp.ops[0].affine_matrix)[:3]
            mult[g, w] = wp.multiplicity
            op0[g, w] = affine
            # A coordinate is free when the representative depends on it; in every ITA entry the
            # free coordinate then appears as itself (x, 2x, z: x and z free, y follows).
            free[g, w] = np.any(np.abs(affine[:, :3]) > 1e-8, axis=0)
        ops = [np.asarray(op.affine_matrix)[:3] for op in wps[0].ops]
        nops[g] = len(ops)
        gops[g, : len(ops)] = ops
    return WyckoffTables(num_letters, mult, free, op0, gops, nops, hall)


@functools.lru_cache(maxsize=1)
def tables() -> WyckoffTables:
    """The Wyckoff tables, built from pyxtal once and cached on disk (keyed by pyxtal version)."""
    path = _cache_path()
    if path.exists():
        try:
            with np.load(path) as f:
                return WyckoffTables(**{k: f[k] for k in WyckoffTables._fields})
        except Exception:  # a damaged cache is rebuilt, never trusted
            pass
    t = _build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **t._asdict())
        tmp.replace(path)
    except OSError:
        pass
    return t


def check_spacegroup(g: int) -> int:
    """Validate a space-group number and return it as int."""
    if not isinstance(g, int | np.integer) or not 1 <= int(g) <= NUM_SPACEGROUPS:
        raise ValueError(f"space group must be an integer 1..230, got {g!r}")
    return int(g)


def check_letter(g: int, letter: str) -> int:
    """Index of `letter` in group g; a clear error if the group has no such Wyckoff position."""
    g = check_spacegroup(g)
    w = letter_index(letter) if letter != PAD_LETTER else -1
    if w <= 0 or tables().multiplicity[g, w] == 0:
        valid = "".join(LETTERS[: tables().num_letters[g]])
        raise ValueError(f"Wyckoff letter '{letter}' is not in space group {g} (letters: {valid})")
    return w


def multiplicity(g: int, letter: str) -> int:
    """Number of atoms the Wyckoff position generates in the conventional cell."""
    return int(tables().multiplicity[g, check_letter(g, letter)])


def free_coords(g: int, letter: str) -> np.ndarray:
    """Boolean mask over (x, y, z): which representative coordinates are free parameters."""
    return tables().free[g, check_letter(g, letter)].copy()


def representative(g: int, letter: str, xyz) -> np.ndarray:
    """Apply the position's first operation: the free parts of `xyz` kept, the rest fixed."""
    a = tables().op0[g, check_letter(g, letter)]
    return a[:, :3] @ np.asarray(xyz, float) + a[:, 3]


def project(g: int, letter: str, xyz, tol: float = 1e-3) -> np.ndarray:
    """Symmetry projection of an arbitrary point onto the position's first representative.

    The point is moved by every operation of the group; the image closest to the representative's
    own subspace is projected onto it and wrapped into [0, 1).
    """
    t = tables()
    w = check_letter(g, letter)
    ops = t.general_ops[g, : t.num_ops[g]]
    p = np.asarray(xyz, float)
    images = ops[:, :, :3] @ p + ops[:, :, 3]
    a = t.op0[g, w]
    proj = images @ a[:, :3].T + a[:, 3]
    d = proj - images
    d -= np.rint(d)
    best = int(np.argmin(np.sum(d * d, axis=1)))
    return np.mod(proj[best], 1.0)


def first_images(pts: np.ndarray, tol: float = 1e-4) -> np.ndarray:
    """Mask (n,) of the images that are not a repeat (mod 1) of an earlier one in the list."""
    d = pts[:, None, :] - pts[None, :, :]
    d -= np.rint(d)
    same = np.all(np.abs(d) < tol, axis=-1)
    return ~np.any(np.tril(same, k=-1), axis=1)


def orbit(g: int, letter: str, xyz, tol: float = 1e-4) -> np.ndarray:
    """All symmetry-equivalent positions of a representative in the conventional cell, in [0, 1)."""
    t = tables()
    w = check_letter(g, letter)
    ops = t.general_ops[g, : t.num_ops[g]]
    pts = np.mod(ops[:, :, :3] @ np.asarray(xyz, float) + ops[:, :, 3], 1.0)
    res = pts[first_images(pts, tol)]
    m = t.multiplicity[g, w]
    if len(res) != m:
        raise ValueError(
            f"point {np.round(xyz, 5).tolist()} gives {len(res)} images, not the multiplicity {m} "
            f"of {m}{letter} in group {g}: it does not lie on that Wyckoff position"
        )
    return res


# Crystal systems by space-group number; lattice parameters are (a, b, c, alpha, beta, gamma).
CRYSTAL_SYSTEMS = (
    ("triclinic", 1, 2),
    ("monoclinic", 3, 15),
    ("orthorhombic", 16, 74),
    ("tetragonal", 75, 142),
    ("trigonal", 143, 167),
    ("hexagonal", 168, 194),
    ("cubic", 195, 230),
)


def crystal_system(g: int) -> str:
    g = check_spacegroup(g)
    for name, lo, hi in CRYSTAL_SYSTEMS:
        if lo <= g <= hi:
            return name
    raise AssertionError(g)


# For each crystal system: where each of (a, b, c, alpha, beta, gamma) comes from, as the index of
# the free parameter it copies, or -1 for a fixed angle whose value is in the second tuple.
_LATTICE_RULES = {
    "triclinic": ((0, 1, 2, 3, 4, 5), (0, 0, 0, 0, 0, 0)),
    "monoclinic": ((0, 1, 2, -1, 4, -1), (0, 0, 0, 90, 0, 90)),
    "orthorhombic": ((0, 1, 2, -1, -1, -1), (0, 0, 0, 90, 90, 90)),
    "tetragonal": ((0, 0, 2, -1, -1, -1), (0, 0, 0, 90, 90, 90)),
    "trigonal": ((0, 0, 2, -1, -1, -1), (0, 0, 0, 90, 90, 120)),
    "hexagonal": ((0, 0, 2, -1, -1, -1), (0, 0, 0, 90, 90, 120)),
    "cubic": ((0, 0, 0, -1, -1, -1), (0, 0, 0, 90, 90, 90)),
}


class LatticeTables(NamedTuple):
    """(231, 6) tables; symmetrised L = where(source >= 0, L[source], value)."""

    free: np.ndarray  # bool: the parameter is free (it is its own source)
    source: np.ndarray  # int: index of the free parameter it copies, -1 if fixed
    value: np.ndarray  # float: the fixed angle in degrees where source == -1


@functools.lru_cache(maxsize=1)
def lattice_tables() -> LatticeTables:
    """Lattice symmetrisation rules per space group (monoclinic: unique axis b)."""
    source = np.zeros((231, 6), np.int32)
    value = np.zeros((231, 6), np.float64)
    for g in range(1, 231):
        src, val = _LATTICE_RULES[crystal_system(g)]
        source[g], value[g] = src, val
    free = source == np.arange(6)
    free[0] = False
    return LatticeTables(free, source, value)


def lattice_free_mask(g: int) -> np.ndarray:
    """Which of (a, b, c, alpha, beta, gamma) are free parameters in the conventional cell."""
    return lattice_tables().free[check_spacegroup(g)].copy()


def symmetrize_lattice(g, lattice, xp=np):
    """Impose the crystal system on (a, b, c, alpha, beta, gamma): tied lengths copy the free one,
    fixed angles become 90 or 120 degrees (hexagonal axes for trigonal groups). numpy for one
    group by default; `xp=jax.numpy` inside jitted code, with g and lattice batched alike."""
    t = lattice_tables()
    if xp is np:
        g = check_spacegroup(g)
        lattice = np.asarray(lattice, float)
    src = xp.asarray(t.source)[g]
    copied = xp.take_along_axis(lattice, xp.maximum(src, 0), axis=-1)
    return xp.where(src >= 0, copied, xp.asarray(t.value, lattice.dtype)[g])
