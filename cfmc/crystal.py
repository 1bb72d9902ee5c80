"""`Crystal`: a crystal as its space group and symmetry-inequivalent sites (paper section 2.1).

Each site carries a Wyckoff letter, an element and the first orbit representative of the
International Tables (standard setting of pyxtal/spglib, conventional cell). Sites are ordered by
Wyckoff letter, ties broken by the lexicographic order of the fractional coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from cfmc import validate
from cfmc import wyckoff as wy
from cfmc.arrays import CrystalArrays

_COORD_TOL = 1e-4  # a point is on a Wyckoff position when op0 moves it less than this
_DENOMINATORS = (1, 2, 3, 4, 6, 8, 12, 24)


@dataclass(frozen=True, eq=False)
class Crystal:
    """A crystal of space group `spacegroup` given by its symmetry-inequivalent sites."""

    spacegroup: int
    wyckoff: tuple[str, ...]
    species: tuple[str, ...]
    coords: np.ndarray  # (n, 3) representative fractional coordinates in [0, 1)
    lattice: np.ndarray | None = None  # (6,) a, b, c [Angstrom], alpha, beta, gamma [degrees]
    properties: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n = len(self.wyckoff)
        if len(self.species) != n or np.shape(self.coords) != (n, 3):
            raise ValueError(
                f"inconsistent site data: {n} letters, {len(self.species)} species, "
                f"coords of shape {np.shape(self.coords)}"
            )

    @property
    def num_sites(self) -> int:
        return len(self.wyckoff)

    @property
    def num_atoms(self) -> int:
        """Atoms in the conventional cell."""
        return sum(wy.multiplicity(self.spacegroup, w) for w in self.wyckoff)

    @property
    def formula(self) -> str:
        """Reduced formula of the conventional cell (pymatgen's)."""
        return self.composition.reduced_formula

    @property
    def composition(self):
        from pymatgen.core import Composition

        counts: dict[str, int] = {}
        for w, s in zip(self.wyckoff, self.species, strict=True):
            counts[s] = counts.get(s, 0) + wy.multiplicity(self.spacegroup, w)
        return Composition(counts)

    # ---------------------------------------------------------------- constructors

    @classmethod
    def from_structure(cls, structure, symprec: float = 0.1) -> Crystal:
        """Symmetrise and standardise a pymatgen Structure, then read off its Wyckoff sites."""
        return _from_structure(structure, symprec)

    @classmethod
    def from_string(cls, text: str, lattice: Sequence[float] | None = None) -> Crystal:
        """Parse the paper's string, e.g. `167-a-C-0-0-1/4-b-Ca-0-0-0-e-O-0.257-0-1/4`: a
        template without blanks (one parser, `cfmc.template`)."""
        from cfmc.template import Template

        return Template.parse(text, exclude_radioactive=False).to_crystal(lattice)

    @classmethod
    def from_cif(cls, cif: str | Path, symprec: float = 0.1) -> Crystal:
        """Read a CIF (file path or CIF text) through pymatgen."""
        from pymatgen.core import Structure

        text = str(cif)
        if "\n" not in text and "data_" not in text and not Path(text).is_file():
            raise FileNotFoundError(f"no such CIF file: {text}")
        try:
            if "\n" not in text and Path(text).exists():
                structure = Structure.from_file(text)
            else:
                structure = Structure.from_str(text, fmt="cif")
        except Exception as e:  # pymatgen raises many types for a broken CIF
            raise ValueError(f"malformed CIF: {e}") from e
        return cls.from_structure(structure, symprec)

    # ---------------------------------------------------------------- conversions

    def to_structure(self):
        """Expand every site with its Wyckoff position's operations into the conventional cell."""
        from pymatgen.core import Lattice, Structure

        if self.lattice is None:
            raise ValueError("this crystal has no lattice; give one to build a structure")
        lattice = Lattice.from_parameters(*validate.lattice(np.asarray(self.lattice, float)))
        species: list[str] = []
        frac: list[np.ndarray] = []
        for w, s, x in zip(self.wyckoff, self.species, self.coords, strict=True):
            pts = wy.orbit(self.spacegroup, w, x)
            species += [s] * len(pts)
            frac.append(pts)
        return Structure(lattice, species, np.concatenate(frac) if frac else np.zeros((0, 3)))

    def to_string(self) -> str:
        """The paper's string; exact fractions print as fractions."""
        parts = [str(self.spacegroup)]
        for w, s, x in zip(self.wyckoff, self.species, self.coords, strict=True):
            parts += [w, s] + [format_coordinate(v) for v in x]
        return "-".join(parts)

    def to_cif(self, path: str | Path | None = None, symprec: float | None = None) -> str:
        """CIF text of the conventional cell: by default in the crystal's own space group and
        Wyckoff sites (`cfmc.cif`, no symmetry search); with `symprec`, pymatgen's CifWriter
        in the group spglib finds at that tolerance (a supergroup where the cell has more
        symmetry than its group says)."""
        if symprec is None:
            from cfmc.cif import symmetric_cif

            for w, x in zip(self.wyckoff, self.coords, strict=True):
                wy.orbit(self.spacegroup, w, x)  # every site on its Wyckoff position
            text = symmetric_cif(self)
        else:
            from pymatgen.io.cif import CifWriter

            structure = self.to_structure()
            try:
                text = str(CifWriter(structure, symprec=symprec))
            except Exception:  # symmetry finding can fail on odd cells; P1 is always valid
                text = str(CifWriter(structure))
        if path is not None:
            Path(path).write_text(text)
        return text

    def with_lattice(self, lattice: Sequence[float]) -> Crystal:
        return Crystal(self.spacegroup, self.wyckoff, self.species, self.coords,
                       wy.symmetrize_lattice(self.spacegroup, validate.lattice(lattice)),
                       self.properties)

    def __repr__(self) -> str:
        lat = "" if self.lattice is None else " L=" + ",".join(f"{v:.3f}" for v in self.lattice)
        return f"Crystal({self.formula}, {self.to_string()}{lat})"


# -------------------------------------------------------------------- formatting and parsing


def format_coordinate(v: float) -> str:
    """A coordinate as an exact fraction when it is one (to 1e-8), else a short decimal."""
    v = float(v)
    for d in _DENOMINATORS:
        n = round(v * d)
        if abs(v * d - n) < 1e-8 * d:
            return str(Fraction(n, d)) if n else "0"
    return f"{v:.7f}".rstrip("0")


def _wrap(x: np.ndarray) -> np.ndarray:
    x = np.mod(x, 1.0)
    x[np.isclose(x, 1.0, atol=1e-9)] = 0.0
    return x


def _dataset(cell, symprec: float, hall_number: int = 0):
    """spglib's symmetry dataset, or None where it finds none."""
    import warnings

    import spglib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return spglib.get_symmetry_dataset(cell, symprec=symprec, hall_number=hall_number)
        except spglib.error.SpglibError:
            return None


def _from_structure(structure, symprec: float) -> Crystal:
    symprec = validate.symprec(symprec)
    if not structure.is_ordered:
        raise ValueError("disordered structure (partial occupancies) cannot be represented")
    from pymatgen.core.periodic_table import DummySpecies

    for sp in structure.species:
        if isinstance(sp, DummySpecies) or not 1 <= getattr(sp, "Z", 0) <= 118:
            raise ValueError(f"unknown element '{sp}' in the structure")
    check_distinct_atoms(structure)
    cell = (
        np.asarray(structure.lattice.matrix),
        np.asarray(structure.frac_coords),
        np.array([sp.Z for sp in structure.species]),
    )
    ds = _dataset(cell, symprec)
    if ds is None:
        raise ValueError(f"symmetry not found (spglib, symprec={symprec})")
    g = int(ds.number)
    hall = int(wy.tables().hall_number[g])
    ds = _dataset(cell, symprec, hall)
    if ds is None or int(ds.number) != g:
        raise ValueError(f"symmetry not found in the standard setting of group {g}")
    std = (
        np.asarray(ds.std_lattice),
        _wrap(np.asarray(ds.std_positions)),
        np.asarray(ds.std_types),
    )
    # orbits in the standard cell; its positions are idealised, so a tight tolerance suffices
    orb = _dataset(std, min(symprec, 1e-3), hall)
    if orb is None or int(orb.number) != g:
        orb = _dataset(std, symprec, hall)
    if orb is None or int(orb.number) != g:
        raise ValueError(f"symmetry of the standardised cell differs from group {g}")
    equiv = np.asarray(orb.equivalent_atoms)
    t = wy.tables()
    sites = []
    for rep_atom in np.unique(equiv):
        members = std[1][equiv == rep_atom]
        letter, x = _assign_position(g, members, t)
        z = int(std[2][rep_atom])
        sites.append((wy.letter_index(letter), tuple(np.round(x, 8)), letter, z, x))
    sites.sort(key=lambda s: (s[0], s[1]))
    from pymatgen.core.periodic_table import Element

    lattice = _lattice_parameters(std[0])
    return Crystal(
        g,
        tuple(s[2] for s in sites),
        tuple(Element.from_Z(s[3]).symbol for s in sites),
        np.array([s[4] for s in sites]).reshape(-1, 3),
        wy.symmetrize_lattice(g, lattice),
    )


def check_distinct_atoms(structure, tol: float = 0.1) -> None:
    """Refuse a structure with two atoms on one point (closer than `tol` Angstrom), naming them;
    spglib would merge them into a crystal that is not the structure given."""
    if len(structure) < 2:
        return
    if not np.all(np.isfinite(structure.lattice.matrix)) or structure.volume <= 1e-6:
        raise ValueError(f"structure lattice {structure.lattice.abc} has no finite volume")
    d = np.asarray(structure.distance_matrix)
    np.fill_diagonal(d, np.inf)
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    if d[i, j] < tol:
        raise ValueError(
            f"atoms {i} ({structure[i].species_string}) and {j} ({structure[j].species_string}) "
            f"are {d[i, j]:.3f} A apart: two atoms on one point")


def _assign_position(g: int, members: np.ndarray, t: wy.WyckoffTables) -> tuple[str, np.ndarray]:
    """Wyckoff letter and first representative of one orbit, given all its atoms in the cell."""
    m = len(members)
    letters = [w for w in range(1, t.num_letters[g] + 1) if t.multiplicity[g, w] == m]
    ops = t.general_ops[g, : t.num_ops[g]]
    # every image of every member under the group: the representative is among them
    images = np.einsum("oij,mj->moi", ops[:, :, :3], members) + ops[None, :, :, 3]
    images = _wrap(images.reshape(-1, 3))
    best = (np.inf, None, None)
    for w in letters:
        a = t.op0[g, w]
        proj = images @ a[:, :3].T + a[:, 3]
        d = proj - images
        d -= np.rint(d)
        err = np.max(np.abs(d), axis=1)
        ok = err < max(_COORD_TOL, err.min() + 1e-9)
        if err.min() < best[0]:
            cands = _wrap(proj[ok])
            order = np.lexsort(np.round(cands, 6).T[::-1])
            best = (err.min(), wy.index_letter(w), cands[order[0]])
    if best[1] is None or best[0] > 0.05:
        raise ValueError(f"no Wyckoff position of group {g} fits an orbit of {m} atoms")
    return best[1], best[2]


def _lattice_parameters(matrix: np.ndarray) -> np.ndarray:
    a, b, c = (float(np.linalg.norm(v)) for v in matrix)

    def angle(u, v):
        cos = np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v)
        return math.degrees(math.acos(float(np.clip(cos, -1.0, 1.0))))

    return np.array([a, b, c, angle(matrix[1], matrix[2]), angle(matrix[0], matrix[2]),
                     angle(matrix[0], matrix[1])])


# -------------------------------------------------------------------- arrays


def to_arrays(crystals: Sequence[Crystal], max_sites: int) -> CrystalArrays:
    """Pad a list of crystals into `CrystalArrays` with `max_sites` site slots."""
    b = len(crystals)
    out = CrystalArrays(
        np.zeros(b, np.int32),
        np.zeros((b, max_sites), np.int32),
        np.zeros((b, max_sites), np.int32),
        np.zeros((b, max_sites, 3), np.float32),
        np.full((b, 6), np.nan, np.float32),
        np.zeros((b, max_sites), bool),
    )
    from pymatgen.core.periodic_table import Element

    for i, c in enumerate(crystals):
        n = c.num_sites
        if n > max_sites:
            raise ValueError(f"crystal {i} has {n} sites, more than max_sites={max_sites}")
        out.spacegroup[i] = c.spacegroup
        out.wyckoff[i, :n] = [wy.letter_index(w) for w in c.wyckoff]
        out.species[i, :n] = [Element(s).Z for s in c.species]
        out.coords[i, :n] = c.coords
        if c.lattice is not None:
            out.lattice[i] = c.lattice
        out.mask[i, :n] = True
    return out


def from_arrays(arrays: CrystalArrays) -> list[Crystal]:
    """Inverse of `to_arrays` (coordinates snapped exactly onto their Wyckoff positions)."""
    from pymatgen.core.periodic_table import Element

    a = CrystalArrays(*(np.asarray(f) for f in arrays))
    out = []
    t = wy.tables()
    for i in range(a.batch_size):
        g = int(a.spacegroup[i])
        sel = a.mask[i]
        ws = a.wyckoff[i][sel]
        xs = np.asarray(a.coords[i][sel], np.float64)
        coords = np.array(
            [_wrap(t.op0[g, w][:, :3] @ x + t.op0[g, w][:, 3]) for w, x in zip(ws, xs, strict=True)]
        ).reshape(-1, 3)
        lat = np.asarray(a.lattice[i], np.float64)
        out.append(
            Crystal(
                g,
                tuple(wy.index_letter(int(w)) for w in ws),
                tuple(Element.from_Z(int(z)).symbol for z in a.species[i][sel]),
                coords,
                wy.symmetrize_lattice(g, lat) if np.all(np.isfinite(lat)) else None,
            )
        )
    return out
