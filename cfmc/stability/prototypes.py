"""Competing binary phases the training mix lacks, made from its own binary structure types.

A prototype is a frequent (stoichiometry, space group, size) type among the mix's binaries; it is
decorated with a new element pair by substitution at the pair's charge-balanced stoichiometries
(intermetallic pairs without any known binary: AB, AB2, A2B), its volume scaled by atomic radii,
then relaxed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from math import gcd
from pathlib import Path

from pymatgen.core import Composition, Element, Structure

from cfmc.stability.known import parse_cif, read_known
from cfmc.stability.relax import spacegroup_number

PROTOTYPE_VERSION = 1
INTERMETALLIC = ((1, 1), (1, 2), (2, 1))


@dataclass(frozen=True)
class Prototype:
    """A binary structure type: A is the less electronegative element of its representative."""

    key: str  # e.g. 'AB2-225-3'
    stoich: tuple[int, int]
    count: int  # how many binaries of the mix share it
    material_id: str  # the representative crystal
    cif: str


def _en(symbol: str) -> float:
    x = Element(symbol).X
    return x if x == x else 0.0  # NaN for noble gases


def _stoich(comp: Composition) -> tuple[tuple[int, int], tuple[str, str]]:
    a, b = sorted((el.symbol for el in comp.elements), key=lambda s: (_en(s), s))
    na, nb = int(round(comp[a])), int(round(comp[b]))
    g = gcd(na, nb)
    return (na // g, nb // g), (a, b)


def prototype_library(cache: str | os.PathLike, per_stoich: int = 2, max_atoms: int = 10
                      ) -> dict[tuple[int, int], list[Prototype]]:
    """The `per_stoich` most frequent binary types per stoichiometry (cached as JSON)."""
    path = Path(cache) / f"prototypes-v{PROTOTYPE_VERSION}-{per_stoich}-{max_atoms}.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(_build_library(per_stoich, max_atoms)))
        tmp.replace(path)
    return _load_library(str(path))


@lru_cache(maxsize=4)
def _load_library(path: str) -> dict[tuple[int, int], list[Prototype]]:
    lib: dict[tuple[int, int], list[Prototype]] = {}
    for p in json.loads(Path(path).read_text()):
        proto = Prototype(p["key"], tuple(p["stoich"]), p["count"], p["material_id"], p["cif"])
        lib.setdefault(proto.stoich, []).append(proto)
    return lib


def _build_library(per_stoich: int, max_atoms: int) -> list[dict]:
    known = read_known()
    binaries = known[(known["chemsys"].str.count("-") == 1) & (known["natoms"] <= max_atoms)]
    groups: dict[str, list] = {}
    for row in binaries.itertuples():
        stoich, _ = _stoich(Composition(row.formula))
        sg = spacegroup_number(parse_cif(row.cif))
        key = f"{stoich[0]}:{stoich[1]}-{sg}-{row.natoms}"
        groups.setdefault(key, []).append(row)
    out: list[dict] = []
    per: dict[tuple, int] = {}
    for key, rows in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        stoich = tuple(int(v) for v in key.split("-")[0].split(":"))
        if per.get(stoich, 0) >= per_stoich:
            continue
        per[stoich] = per.get(stoich, 0) + 1
        best = min(rows, key=lambda r: (r.e_hull_mp if r.e_hull_mp == r.e_hull_mp else 9, r.natoms))
        out.append({"key": key, "stoich": stoich, "count": len(rows),
                    "material_id": best.material_id, "cif": best.cif})
    return out


def stoichiometries(a: str, b: str) -> list[tuple[tuple[int, int], tuple[str, str]]]:
    """Charge-balanced (n_cation, n_anion) for an ionic pair (the cation's two lowest common
    oxidation states, the anion's negative ones), else the intermetallic set; each
    with the element order (A, B) to put on the prototype's (A, B)."""
    (_, _), (x, y) = _stoich(Composition({a: 1, b: 1}))
    pos = sorted(q for q in Element(x).common_oxidation_states if q > 0)[:2]  # lowest two
    neg = [q for q in Element(y).common_oxidation_states if q < 0]
    if pos and neg and Element(y).is_metal is False:
        out = set()
        for qx in pos:
            for qy in neg:
                g = gcd(qx, -qy)
                out.add((-qy // g, qx // g))
        return [(s, (x, y)) for s in sorted(out)]
    return [(s, (x, y)) for s in INTERMETALLIC]


def is_anion(symbol: str) -> bool:
    """A non-metal with a negative common oxidation state (O, N, F, Cl, S, H, ...)."""
    el = Element(symbol)
    return el.is_metal is False and any(q < 0 for q in el.common_oxidation_states)


def is_intermetallic(a: str, b: str) -> bool:
    """Whether the pair gets the intermetallic stoichiometries (no charge-balanced ones)."""
    return [s for s, _ in stoichiometries(a, b)] == list(INTERMETALLIC)


def _radius(symbol: str) -> float:
    el = Element(symbol)
    r = el.atomic_radius or el.atomic_radius_calculated or 1.5
    return float(r)


def decorate(proto: Prototype, a: str, b: str) -> Structure:
    """The prototype with its A, B replaced by `a`, `b`, volume scaled by atomic radii cubed."""
    s = parse_cif(proto.cif)
    _, (pa, pb) = _stoich(s.composition)
    old = sum(_radius(site.specie.symbol) ** 3 for site in s)
    s.replace_species({Element(pa): Element(a), Element(pb): Element(b)})
    new = sum(_radius(site.specie.symbol) ** 3 for site in s)
    s.scale_lattice(s.volume * new / old)
    return s


def candidates_for_pair(a: str, b: str, cache: str | os.PathLike, skip: set[str] = frozenset()
                        ) -> list[tuple[str, Structure]]:
    """(prototype key, decorated structure) for the pair, leaving out reduced formulas in `skip`
    (those the training mix already holds)."""
    lib = prototype_library(cache)
    pairs = stoichiometries(a, b)
    intermetallic = is_intermetallic(a, b)
    if intermetallic and skip:
        return []  # a metal pair with known binaries: not the hull's weak spot, and costly
    per = 1 if intermetallic else 2
    out = []
    for stoich, (x, y) in pairs:
        formula = Composition({x: stoich[0], y: stoich[1]}).reduced_formula
        if formula in skip:
            continue
        for proto in lib.get(stoich, [])[:per]:
            out.append((proto.key, decorate(proto, x, y)))
    return out
