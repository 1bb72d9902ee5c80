"""Wyckoff templates with `[?]` blanks: what infill may change and what stays fixed.

A template is the paper's string with blanks, e.g. a double perovskite
`225-a-[?]-0-0-0-b-[?]-1/2-1/2-c-[?]-1/4-1/4-e-[?]-[?]-0-0`: space group, then per site a Wyckoff
letter, an element or `[?]`, and x y z (a number, a fraction or `[?]`). Blank elements take values
from per-site or global allow-lists; tied sites share one element; `differ` pairs must not.
Everything given in the template is fixed for the whole run.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction

import numpy as np

from cfmc import validate, wyckoff
from cfmc.arrays import NUM_SPECIES, CrystalArrays
from cfmc.chemistry import atomic_number, element_mask
from cfmc.kernels.constraints import SiteConstraints

BLANK = "[?]"
COORD_TOL = 1e-3
MAX_COORD = 1e6  # fractional coordinates are taken modulo 1; larger ones lose every digit
OVERLAP_TOL = 1e-4  # two atoms closer than this (fractional) sit on one point (as wyckoff.orbit)


def _parse_number(text: str, field: str) -> float:
    try:
        value = float(Fraction(text)) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError, OverflowError):
        raise ValueError(f"{field}: '{text}' is not a number, a fraction or {BLANK}") from None
    if not math.isfinite(value) or abs(value) > MAX_COORD:
        raise ValueError(f"{field}: '{text}' is not a finite fractional coordinate (a number or "
                         f"fraction of size at most {MAX_COORD:g}, or {BLANK})")
    return value


@dataclasses.dataclass(frozen=True)
class TemplateSite:
    """One site: Wyckoff letter, element symbol (None = blank), coordinates (None = blank)."""

    letter: str
    element: str | None
    coords: tuple[float | None, float | None, float | None]


@dataclasses.dataclass(frozen=True)
class Template:
    """A parsed, validated template plus the allow-lists, ties and differ pairs."""

    spacegroup: int
    sites: tuple[TemplateSite, ...]
    allowed: np.ndarray  # (n, 119) bool per site, already intersected over tie groups
    tie: tuple[int, ...]  # per site: index of the first site of its tie group
    differ: tuple[tuple[int, int], ...]

    @property
    def num_sites(self) -> int:
        return len(self.sites)

    @property
    def letters(self) -> tuple[str, ...]:
        return tuple(s.letter for s in self.sites)

    @classmethod
    def parse(
        cls,
        text: str,
        elements: Iterable[str] | None = None,
        site_elements: Mapping[int, Iterable[str]] | None = None,
        ties: Iterable[Sequence[int]] = (),
        differ: Iterable[Sequence[int]] = (),
        exclude_radioactive: bool = True,
    ) -> Template:
        """Parse and validate `text`.

        elements: global allow-list for blank elements; site_elements: per-site allow-lists (site
        index from 0); ties: groups of sites that must hold the same element; differ: pairs of sites
        whose elements must differ; exclude_radioactive drops Tc, Pm and Z >= 84 from every list.
        """
        g, sites = _parse_sites(validate.text(text, "template"))
        _check_overlaps(g, sites)
        n = len(sites)
        base = element_mask(exclude_radioactive=exclude_radioactive)
        if elements is not None:
            base = base & element_mask(elements, exclude_radioactive=False)
        allowed = np.zeros((n, NUM_SPECIES), bool)
        for i, s in enumerate(sites):
            if s.element is not None:
                allowed[i, atomic_number(s.element)] = True
            else:
                allowed[i] = base
        for i, els in (site_elements or {}).items():
            if not 0 <= int(i) < n:
                raise ValueError(f"site_elements: site {i} out of range (template has {n} sites)")
            allowed[int(i)] &= element_mask(els, exclude_radioactive=False,
                                            option=f"site_elements {i}")
        tie = list(range(n))
        for group in ties:
            group = sorted(int(i) for i in group)
            for i in group:
                if not 0 <= i < n:
                    raise ValueError(f"ties: site {i} out of range (template has {n} sites)")
            leader = min(tie[i] for i in group)
            members = {j for j in range(n) if tie[j] in {tie[i] for i in group}}
            for j in members:
                tie[j] = leader
        for leader in set(tie):
            members = [j for j in range(n) if tie[j] == leader]
            joint = np.logical_and.reduce(allowed[members], axis=0)
            allowed[members] = joint
        pairs = []
        for pair in differ:
            if len(pair) != 2:
                raise ValueError(f"differ: {tuple(pair)} is not a pair of sites")
            i, j = (int(k) for k in pair)
            if not (0 <= i < n and 0 <= j < n) or i == j:
                raise ValueError(f"differ: ({i}, {j}) must name two different sites of {n}")
            if tie[i] == tie[j]:
                raise ValueError(f"differ: sites {i} and {j} are tied, they cannot differ")
            pairs.append((i, j))
        for i in range(n):
            if not allowed[i].any():
                raise ValueError(
                    f"site {i} ({sites[i].letter}): no element is allowed (allow-lists, ties and "
                    "the radioactive exclusion leave nothing)"
                )
        t = cls(g, tuple(sites), allowed, tuple(tie), tuple(pairs))
        for i, j in pairs:
            only = np.flatnonzero(allowed[i])
            if only.size == 1 and np.array_equal(allowed[i], allowed[j]):
                from pymatgen.core.periodic_table import Element

                raise ValueError(
                    f"differ ({i}, {j}): both sites can only hold {Element.from_Z(only[0])}, so "
                    "they cannot differ (widen their allow-lists or drop the pair)")
        return t

    def constraints(self, max_sites: int) -> SiteConstraints:
        """Kernel constraints of this template padded to `max_sites` sites."""
        n = self.num_sites
        if n > max_sites:
            raise ValueError(f"template has {n} sites, more than max_sites={max_sites}")
        species_move = np.zeros(max_sites, bool)
        allowed = np.zeros((max_sites, NUM_SPECIES), bool)
        allowed[:, 0] = True  # padding keeps its pad species
        tie = np.arange(max_sites, dtype=np.int32)
        coord_move = np.zeros((max_sites, 3), bool)
        for i, s in enumerate(self.sites):
            allowed[i] = self.allowed[i]
            tie[i] = self.tie[i]
            species_move[i] = self.tie[i] == i and self.allowed[i].sum() > 1
            free = wyckoff.free_coords(self.spacegroup, s.letter)
            coord_move[i] = free & np.array([c is None for c in s.coords])
        differ = np.array(self.differ, np.int32).reshape(-1, 2)
        lattice_move = wyckoff.lattice_free_mask(self.spacegroup)
        return SiteConstraints(species_move, allowed, tie, coord_move, differ, lattice_move)

    def fixed_arrays(self, max_sites: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(wyckoff (N,), species (N,) with -1 = blank, coords (N, 3) with NaN = blank): the
        clamped fields in the form the prior's sampler takes."""
        w = np.zeros(max_sites, np.int32)
        a = np.zeros(max_sites, np.int32)
        x = np.zeros((max_sites, 3))
        for i, s in enumerate(self.sites):
            w[i] = wyckoff.letter_index(s.letter)
            a[i] = -1 if s.element is None else atomic_number(s.element)
            x[i] = [np.nan if c is None else c for c in s.coords]
        return w, a, x

    def sampler_clamps(self, max_sites: int) -> dict[str, np.ndarray]:
        """The template in the form the prior's sampler takes over `max_sites` slots: fixed
        letters (padding after the template's sites), species (-1: blank) and coordinates (NaN:
        blank), and per-slot species masks."""
        w, a, x = self.fixed_arrays(max_sites)
        allowed = np.ones((max_sites, NUM_SPECIES), bool)
        allowed[: self.num_sites] = self.allowed
        return {"fixed_wyckoff": w, "fixed_species": a, "fixed_coords": x,
                "allowed_species": allowed}

    def random_arrays(
        self, num: int, rng: np.random.Generator, max_sites: int, lattice: np.ndarray | None = None
    ) -> CrystalArrays:
        """`num` crystals filling the blanks uniformly (elements from the allow-lists, free
        coordinates in [0, 1)), with ties and differ pairs satisfied."""
        n = self.num_sites
        w, fixed_a, fixed_x = self.fixed_arrays(max_sites)
        species = np.zeros((num, max_sites), np.int32)
        coords = np.zeros((num, max_sites, 3))
        for b in range(num):
            for _ in range(1000):
                a = fixed_a[:n].copy()
                for i in range(n):
                    if self.tie[i] == i and a[i] < 0:
                        a[i] = rng.choice(np.flatnonzero(self.allowed[i]))
                a = a[list(self.tie)]
                if all(a[i] != a[j] for i, j in self.differ):
                    break
            else:
                raise ValueError("could not draw elements satisfying the differ pairs")
            species[b, :n] = a
            for i, s in enumerate(self.sites):
                xyz = np.where(np.isnan(fixed_x[i]), rng.random(3), fixed_x[i])
                coords[b, i] = np.mod(wyckoff.representative(self.spacegroup, s.letter, xyz), 1.0)
        mask = np.zeros((num, max_sites), bool)
        mask[:, :n] = True
        if lattice is None:
            lattice = self.default_lattice()
        lat = np.broadcast_to(np.asarray(lattice, float), (num, 6)).copy()
        return CrystalArrays(
            np.full(num, self.spacegroup, np.int32),
            np.broadcast_to(w, (num, max_sites)).astype(np.int32),
            species,
            coords.astype(np.float32),
            lat.astype(np.float32),
            mask,
        )

    def default_lattice(self, volume_per_atom: float = 20.0) -> np.ndarray:
        """A plausible cell for the crystal system with about `volume_per_atom` A^3 per atom; a
        starting point only (infill marginalises the lattice or moves it)."""
        atoms = sum(wyckoff.multiplicity(self.spacegroup, s.letter) for s in self.sites)
        side = (atoms * volume_per_atom) ** (1 / 3)
        lat = np.array([side, side, side, 90.0, 90.0, 90.0])
        return wyckoff.symmetrize_lattice(self.spacegroup, lat)

    def check_arrays(self, arrays: CrystalArrays) -> np.ndarray:
        """(B,) bool: each crystal keeps the template's letters and fixed fields, its ties and
        differ pairs hold, and blank elements come from the allow-lists."""
        n = self.num_sites
        w, fa, fx = self.fixed_arrays(arrays.max_sites)
        sp = np.asarray(arrays.species)
        x = np.asarray(arrays.coords, float)
        ok = np.all(np.asarray(arrays.wyckoff) == w, axis=1)
        ok &= np.all(np.asarray(arrays.mask)[:, :n], axis=1) & ~np.any(arrays.mask[:, n:], axis=1)
        ok &= np.asarray(arrays.spacegroup) == self.spacegroup
        for i in range(n):
            ok &= self.allowed[i][sp[:, i]]
            ok &= sp[:, i] == sp[:, self.tie[i]]
            known = ~np.isnan(fx[i])
            d = x[:, i, known] - fx[i, known]
            ok &= np.all(np.abs(d - np.rint(d)) < COORD_TOL, axis=1)
        for i, j in self.differ:
            ok &= sp[:, i] != sp[:, j]
        return ok

    @property
    def blanks(self) -> int:
        """Number of `[?]` fields (elements and coordinates)."""
        return sum((s.element is None) + sum(c is None for c in s.coords) for s in self.sites)

    def to_crystal(self, lattice=None):
        """The `Crystal` of a template without blanks (a crystal string), with `lattice` if
        given (symmetrised for the crystal system)."""
        from cfmc.crystal import Crystal

        if self.blanks:
            raise ValueError(f"{self} has {self.blanks} blank fields ({BLANK}); a crystal "
                             "string fixes every element and coordinate")
        coords = np.array([wyckoff.representative(self.spacegroup, s.letter, s.coords)
                           for s in self.sites]).reshape(-1, 3)
        coords = np.mod(coords, 1.0)
        coords[np.isclose(coords, 1.0, atol=1e-9)] = 0.0
        lat = None if lattice is None else wyckoff.symmetrize_lattice(
            self.spacegroup, validate.lattice(lattice))
        return Crystal(self.spacegroup, self.letters, tuple(s.element for s in self.sites),
                       coords, lat)

    def __str__(self) -> str:
        parts = [str(self.spacegroup)]
        for s in self.sites:
            parts += [s.letter, s.element or BLANK]
            parts += [BLANK if c is None else f"{c:.6g}" for c in s.coords]
        return "-".join(parts)


_EXPONENT = re.compile(r"^-?(\d+\.?\d*|\.\d+)[eE]$")


def _is_letter(token: str) -> bool:
    return len(token) == 1 and (token.islower() or token == "A")


def _split_sites(tokens: list[str]) -> list[tuple[str, str | None, list[str]]]:
    """Group the fields after the space group into (letter, element, coordinate fields)."""
    merged: list[str] = []
    i = 0
    while i < len(tokens):  # a leading minus (e.g. `-1/4`) splits off an empty field
        if _EXPONENT.match(tokens[i]) and i + 1 < len(tokens) and tokens[i + 1][:1].isdigit():
            merged.append(tokens[i] + "-" + tokens[i + 1])  # `1e-3` split at its minus
            i += 2
        elif tokens[i] == "" and i + 1 < len(tokens):
            merged.append("-" + tokens[i + 1])
            i += 2
        else:
            merged.append(tokens[i])
            i += 1
    if not merged:
        raise ValueError("template has no sites after the space group")
    groups: list[tuple[str, str | None, list[str]]] = []
    for tok in merged:
        if _is_letter(tok) and (not groups or groups[-1][1] is not None):
            groups.append((tok, None, []))
        elif not groups:
            raise ValueError(f"site 0: '{tok}' is not a Wyckoff letter")
        elif groups[-1][1] is None:
            groups[-1] = (groups[-1][0], tok, [])
        else:
            groups[-1][2].append(tok)
    return groups


def _parse_sites(text: str) -> tuple[int, list[TemplateSite]]:
    fields = [f.strip() for f in text.strip().split("-")]
    if len(fields) > 1 and not fields[0] and fields[1]:  # `-5-a-...`: a negative space group
        raise ValueError(f"space group: '-{fields[1]}' is not an integer 1..230")
    if not fields or not fields[0]:
        raise ValueError("template is empty")
    try:
        g = int(fields[0])
    except ValueError:
        raise ValueError(f"space group: '{fields[0]}' is not an integer") from None
    g = wyckoff.check_spacegroup(g)
    groups = _split_sites(fields[1:])
    t = wyckoff.tables()
    sites: list[TemplateSite] = []
    prev = 0
    seen_fixed: set[str] = set()
    for k, (letter, elem, xyz_text) in enumerate(groups):
        where = f"site {k} ({letter})"
        if elem is None:
            raise ValueError(f"{where}: missing element (an element symbol or {BLANK})")
        try:
            w = wyckoff.check_letter(g, letter)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        if w < prev:
            raise ValueError(
                f"{where}: letters out of order ('{letter}' after "
                f"'{wyckoff.index_letter(prev)}'; sites are listed in Wyckoff letter order)"
            )
        prev = w
        if elem == BLANK:
            element = None
        else:
            try:
                atomic_number(elem)
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
            element = elem
        if len(xyz_text) > 3:
            raise ValueError(f"{where}: {len(xyz_text)} coordinates given, expected 3 (x y z)")
        given = [
            None if c == BLANK else _parse_number(c, f"{where} coordinate {'xyz'[j]}")
            for j, c in enumerate(xyz_text)
        ]
        free = t.free[g, w]
        op = t.op0[g, w]
        for j in range(len(given), 3):
            # trailing coordinates may be left out only where the position fixes them
            if free[j] or np.any(np.abs(op[j, :3]) > 1e-8):
                raise ValueError(
                    f"{where}: {len(given)} coordinates given, expected 3 (x y z; only trailing "
                    f"constants of the Wyckoff position may be left out, and "
                    f"{'xyz'[j]} is not one)"
                )
            given.append(op[j, 3])
            xyz_text.append(str(op[j, 3]))
        coords: list[float | None] = [None, None, None]
        for j in range(3):
            if free[j] and given[j] is not None:
                coords[j] = float(np.mod(given[j], 1.0))
        for j in range(3):
            if free[j]:
                continue
            depends = np.abs(op[j, :3]) > 1e-8
            if not depends.any():  # a constant of the Wyckoff position
                if given[j] is None:
                    raise ValueError(
                        f"{where}: coordinate {'xyz'[j]} is fixed by Wyckoff position {letter} "
                        f"(= {op[j, 3]:.6g}) and cannot be {BLANK}"
                    )
                value = op[j, 3]
            elif any(coords[k] is None for k in np.flatnonzero(depends)):
                if given[j] is not None:
                    raise ValueError(
                        f"{where}: coordinate {'xyz'[j]} follows from a blank free coordinate "
                        f"of Wyckoff position {letter}; write it as {BLANK}"
                    )
                continue
            else:
                value = op[j, :3] @ np.array([c or 0.0 for c in coords]) + op[j, 3]
                if given[j] is None:
                    coords[j] = float(np.mod(value, 1.0))
                    continue
            d = given[j] - value
            if abs(d - round(d)) > COORD_TOL:
                raise ValueError(
                    f"{where}: coordinate {'xyz'[j]} = {xyz_text[j]} is inconsistent with Wyckoff "
                    f"position {letter} of group {g} (expected {np.mod(value, 1.0):.6g})"
                )
            coords[j] = float(np.mod(value, 1.0))
        if not free.any():
            if letter in seen_fixed:
                raise ValueError(
                    f"{where}: Wyckoff position {letter} has no free coordinate and is already "
                    "occupied"
                )
            seen_fixed.add(letter)
        sites.append(TemplateSite(letter, element, tuple(coords)))
    return g, sites


def _check_overlaps(g: int, sites: list[TemplateSite]) -> None:
    """Refuse fully given sites that put two atoms on one point: an orbit folding onto itself
    (a free coordinate at a special value) or two sites' orbits sharing a point."""
    orbits: list[tuple[int, np.ndarray]] = []
    for k, s in enumerate(sites):
        if any(c is None for c in s.coords):
            continue
        try:
            pts = np.mod(wyckoff.orbit(g, s.letter, np.array(s.coords, float)), 1.0)
            d = pts[:, None, :] - pts[None, :, :]
            d = np.abs(d - np.rint(d)).max(axis=-1)
            np.fill_diagonal(d, np.inf)
            folded = d.min() < OVERLAP_TOL
        except ValueError:  # fewer distinct images than the multiplicity
            folded = True
        if folded:
            raise ValueError(
                f"site {k} ({s.letter}): coordinates {_coords_text(s)} put two atoms of the orbit "
                f"on one point (a special position: use its own Wyckoff letter)")
        for j, other in orbits:
            d = pts[:, None, :] - other[None, :, :]
            if np.abs(d - np.rint(d)).max(axis=-1).min() < OVERLAP_TOL:
                raise ValueError(
                    f"sites {j} ({sites[j].letter}) and {k} ({s.letter}) put atoms on one point "
                    f"({_coords_text(sites[j])} and {_coords_text(s)})")
        orbits.append((k, pts))


def _coords_text(site: TemplateSite) -> str:
    return "(" + ", ".join(f"{c:.6g}" for c in site.coords) + ")"
