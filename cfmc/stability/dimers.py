"""Competing binaries with anion pairs: peroxides (O2)2- and persulfides (S2)2-, made from the
training mix's own binary structure types that hold bonded anion pairs.

A crystal whose cations sit in states too high for its oxygen (Ba2LiIrO6 needs Ir7+, say)
gives off oxygen against a hull of plain oxides alone; on MP's hull the excess oxygen goes into
peroxides such as Li2O2 and BaO2 instead. Peroxides are made here for cations whose lowest common
state is +1 or +2 (alkali, alkaline-earth, d10 and similar cations; a peroxide of a cation in a
higher state oxidises it): M2(X2) for M+, M(X2) for M2+, decorated on the mix's most frequent
binary types with bonded anion pairs (the CaC2 type for AB2, the Na2O2 type for AB, ...).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pymatgen.core import Composition, Element, Structure

from cfmc.stability.cache import entry_lock, write_atomic
from cfmc.stability.known import parse_cif, read_known
from cfmc.stability.prototypes import Prototype, _stoich, decorate, is_anion
from cfmc.stability.relax import spacegroup_number

DIMER_VERSION = 1
CHALCOGENS = ("O", "S", "Se", "Te")  # anions that form (X2)2- pairs in known ionic crystals
_PAIR_ELEMENTS = ("C", "N", "O", "P", "S", "Se", "Te")  # pair types of the library
_BOND = 1.3  # an X-X distance below 1.3 x twice X's atomic radius counts as a bonded pair


def anion_pair_distance(structure: Structure, anion: str) -> float:
    """The shortest distance between two `anion` sites (periodic images included; inf if none
    within 3 A)."""
    best = float("inf")
    for site in structure:
        if site.specie.symbol != anion:
            continue
        for n in structure.get_neighbors(site, 3.0):
            if n.specie.symbol == anion:
                best = min(best, n.nn_distance)
    return best


def has_anion_pairs(structure: Structure, anion: str) -> bool:
    """Whether `anion` sites form bonded pairs (O-O 1.2-1.5 A in peroxides and superoxides;
    plain oxides have O-O of 2.4 A and more)."""
    r = Element(anion).atomic_radius or 1.0
    return anion_pair_distance(structure, anion) < _BOND * 2 * float(r)


def dimer_library(cache: str | os.PathLike, per_stoich: int = 2, max_atoms: int = 12
                  ) -> dict[tuple[int, int], list[Prototype]]:
    """The `per_stoich` most frequent (stoichiometry, space group, size) types among the mix's
    binaries of a cation and a C, N, O, P, S, Se or Te whose anions form bonded pairs (cached as
    JSON)."""
    path = Path(cache) / f"dimer-prototypes-v{DIMER_VERSION}-{per_stoich}-{max_atoms}.json"
    if not path.exists():
        with entry_lock(path):
            if not path.exists():
                write_atomic(path, json.dumps(_build(per_stoich, max_atoms)))
    lib: dict[tuple[int, int], list[Prototype]] = {}
    for p in json.loads(path.read_text()):
        proto = Prototype(p["key"], tuple(p["stoich"]), p["count"], p["material_id"], p["cif"])
        lib.setdefault(proto.stoich, []).append(proto)
    return lib


def _build(per_stoich: int, max_atoms: int) -> list[dict]:
    known = read_known()
    binaries = known[(known["chemsys"].str.count("-") == 1) & (known["natoms"] <= max_atoms)]
    groups: dict[str, list] = {}
    for row in binaries.itertuples():
        els = row.chemsys.split("-")
        anions = [e for e in els if e in _PAIR_ELEMENTS and is_anion(e)]
        if len(anions) != 1 or any(is_anion(e) for e in els if e != anions[0]):
            continue  # one anion and one cation (not AsP, say)
        s = parse_cif(row.cif)
        if not has_anion_pairs(s, anions[0]):
            continue
        stoich, _ = _stoich(Composition(row.formula))
        groups.setdefault(f"{stoich[0]}:{stoich[1]}-{spacegroup_number(s)}-{row.natoms}",
                          []).append(row)
    out: list[dict] = []
    per: dict[tuple, int] = {}
    for key, rows in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        stoich = tuple(int(v) for v in key.split("-")[0].split(":"))
        if per.get(stoich, 0) >= per_stoich:
            continue
        per[stoich] = per.get(stoich, 0) + 1
        best = min(rows, key=lambda r: (r.e_hull_mp if r.e_hull_mp == r.e_hull_mp else 9,
                                        r.natoms, r.material_id))
        out.append({"key": f"pair-{key}", "stoich": stoich, "count": len(rows),
                    "material_id": best.material_id, "cif": best.cif})
    return out


def peroxide_stoichiometry(cation: str, anion: str) -> tuple[int, int] | None:
    """(n_cation, n_anion) of the cation's peroxide-like binary, or None: M2X2 (1:1) for a
    cation whose lowest common state is +1, MX2 for +2, where X is a chalcogen."""
    if anion not in CHALCOGENS:
        return None
    positive = sorted(q for q in Element(cation).common_oxidation_states if q > 0)
    if not positive or positive[0] > 2 or is_anion(cation):
        return None
    return (1, 1) if positive[0] == 1 else (1, 2)


def dimer_candidates(a: str, b: str, cache: str | os.PathLike, skip: set[str] = frozenset()
                     ) -> list[tuple[str, Structure]]:
    """(prototype key, decorated structure) of the pair's peroxide-like binary on the pair types
    of its stoichiometry, unless its reduced formula is in `skip` (the mix holds it)."""
    (_, _), (x, y) = _stoich(Composition({a: 1, b: 1}))
    stoich = peroxide_stoichiometry(x, y)
    if stoich is None:
        return []
    formula = Composition({x: stoich[0], y: stoich[1]}).reduced_formula
    if formula in skip:
        return []
    return [(p.key, decorate(p, x, y)) for p in dimer_library(cache).get(stoich, [])]


__all__ = ["CHALCOGENS", "anion_pair_distance", "dimer_candidates", "dimer_library",
           "has_anion_pairs", "peroxide_stoichiometry"]
