"""Novelty (against known crystals of the same reduced formula) and uniqueness (among candidates)
by pymatgen's StructureMatcher with its default tolerances."""

from __future__ import annotations

from functools import lru_cache

from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from cfmc.stability.known import parse_cif, read_known


@lru_cache(maxsize=1)
def _matcher() -> StructureMatcher:
    return StructureMatcher()


@lru_cache(maxsize=4096)
def _known_of(formula: str) -> tuple[tuple[str, Structure], ...]:
    known = read_known()
    rows = known[known["formula"] == formula]
    return tuple((r.material_id, parse_cif(r.cif)) for r in rows.itertuples())


def match_known(structure: Structure) -> str | None:
    """material_id of a training-mix crystal that matches `structure`, else None (novel)."""
    for mid, other in _known_of(structure.composition.reduced_formula):
        if _matcher().fit(structure, other):
            return mid
    return None


class UniqueTracker:
    """Remembers the structures seen so far; `first_match` tells which earlier one is the same."""

    def __init__(self) -> None:
        self._seen: dict[str, list[tuple[int, Structure]]] = {}

    def first_match(self, index: int, structure: Structure) -> int | None:
        """Index of an earlier equal structure (not unique), or None after recording this one."""
        same = self._seen.setdefault(structure.composition.reduced_formula, [])
        for j, other in same:
            if _matcher().fit(structure, other):
                return j
        same.append((index, structure))
        return None
