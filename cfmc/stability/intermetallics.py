"""Competing ternary phases of intermetallic systems, made from the training mix's own types.

Systems with no hard anion (H, N, O, chalcogens, halogens: metals with metalloids, B, C, Si, P,
As, ...) have competing ternaries the mix often lacks (Heusler, TiNiSi, ThCr2Si2 types, ...).
Charge balance does not choose their stoichiometries, so each of the mix's most frequent
ternary stoichiometries among such systems gives one type (its most frequent space group and
size), decorated with a new system's elements in the order of electronegativity of the type's
own sites (Mn, Co, Si of Co2MnSi map to the new system's least, middle and most electronegative
element), its volume scaled by atomic radii, then relaxed like the other generated phases.
"""

from __future__ import annotations

import os
from pathlib import Path

from pymatgen.core import Composition, Element, Structure

from cfmc.stability.known import parse_cif
from cfmc.stability.prototypes import (
    TernaryPrototype,
    _en,
    cached_library,
    most_frequent_types,
    substitute,
)

INTERMETALLIC_VERSION = 1
HARD_ANIONS = frozenset({"H", "N", "O", "S", "Se", "Te", "F", "Cl", "Br", "I"})


def has_hard_anion(system: str) -> bool:
    """Whether a chemical system ('Co-Mn-Si') holds H, N, O, a chalcogen or a halogen."""
    return any(e in HARD_ANIONS for e in system.split("-"))


def is_intermetallic_ternary(system: str) -> bool:
    """A system of three elements, at least one a metal, none a hard anion: the systems that
    get generated intermetallic ternaries."""
    els = system.split("-")
    return (len(els) == 3 and not has_hard_anion(system)
            and any(Element(e).is_metal for e in els))


def en_order(elements) -> tuple[str, ...]:
    """Element symbols from least to most electronegative (ties by symbol)."""
    return tuple(sorted(elements, key=lambda s: (_en(s), s)))


def intermetallic_library(cache: str | os.PathLike, n_stoich: int = 12, max_atoms: int = 12
                          ) -> list[TernaryPrototype]:
    """One type (most frequent space group and size, primitive cell of at most `max_atoms`
    atoms) for each of the `n_stoich` most frequent stoichiometries, in electronegativity order,
    of the training mix's intermetallic ternaries (cached as JSON)."""
    path = Path(cache) / (f"intermetallic-prototypes-v{INTERMETALLIC_VERSION}-{n_stoich}-"
                          f"{max_atoms}.json")
    return cached_library(path, lambda: most_frequent_types(
        _order, n_stoich, max_atoms, rank=lambda kv: (-len(kv[1]), kv[0]),
        pick=lambda m: (m[0].e_hull_mp if m[0].e_hull_mp == m[0].e_hull_mp else 9, len(m[1]),
                        m[0].material_id)))


def _order(comp: Composition, system: str) -> tuple[str, ...] | None:
    """An intermetallic ternary's elements in electronegativity order, else None."""
    return en_order(el.symbol for el in comp.elements) if is_intermetallic_ternary(system) else None


def intermetallic_candidates(system: str, cache: str | os.PathLike,
                             skip: set[str] = frozenset()) -> list[tuple[str, Structure]]:
    """(type key, decorated structure) for an intermetallic ternary system: each library type
    decorated in electronegativity order, kept when its reduced formula is not in `skip` (the
    system's known phases); one structure per formula (the most frequent type)."""
    if not is_intermetallic_ternary(system):
        return []
    targets = en_order(system.split("-"))
    out, seen = [], set(skip)
    for proto in intermetallic_library(cache):
        formula = Composition(dict(zip(targets, proto.stoich, strict=True))).reduced_formula
        if formula not in seen:
            seen.add(formula)
            out.append((f"im:{proto.key}", decorate(proto, targets)))
    return out


def decorate(proto: TernaryPrototype, targets: tuple[str, str, str]) -> Structure:
    """The type's structure with its elements replaced, in electronegativity order, by
    `targets` (`prototypes.substitute`)."""
    s = parse_cif(proto.cif)
    return substitute(s, en_order(el.symbol for el in s.composition.elements), targets)


__all__ = ["HARD_ANIONS", "decorate", "en_order", "has_hard_anion", "intermetallic_candidates",
           "intermetallic_library", "is_intermetallic_ternary"]
