"""The known crystals of the training mix, indexed by chemical system (no CIF parsing up front).

The formula is read from each CIF's `_chemical_formula_sum` line, so indexing ~20k crystals takes
seconds; structures are parsed only for the systems a screen needs.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import pandas as pd
from pymatgen.core import Composition, Structure

from cfmc.data import default_training_files

_FORMULA = re.compile(r"_chemical_formula_sum\s+'?([^'\n]+)'?")
_EHULL_COLUMNS = ("e_above_hull", "energy_above_hull")


def chemsys(elements: Iterable[str]) -> str:
    """Canonical chemical-system key: sorted element symbols joined by '-'."""
    return "-".join(sorted(set(map(str, elements))))


def _formula_of(cif: str) -> str | None:
    m = _FORMULA.search(cif)
    return m.group(1).strip() if m else None


def read_known(files: Sequence[str | Path] | None = None) -> pd.DataFrame:
    """One row per known crystal (de-duplicated by material_id, first file wins): material_id,
    formula (reduced), chemsys, natoms, e_form (MP, eV/atom), e_hull_mp, file, cif."""
    files = tuple(str(f) for f in (files or default_training_files()))
    return _read_known(files).copy()


@lru_cache(maxsize=4)
def _read_known(files: tuple[str, ...]) -> pd.DataFrame:
    parts = []
    for f in files:
        t = pd.read_csv(f)
        ehull = next((c for c in _EHULL_COLUMNS if c in t.columns), None)
        parts.append(pd.DataFrame({
            "material_id": t["material_id"].astype(str) if "material_id" in t else
            [f"{Path(f).name}:{i}" for i in range(len(t))],
            "e_form": t.get("formation_energy_per_atom", pd.Series(float("nan"), index=t.index)),
            "e_hull_mp": t[ehull] if ehull else float("nan"),
            "file": Path(f).name,
            "cif": t["cif"],
        }))
    table = pd.concat(parts, ignore_index=True).drop_duplicates("material_id")
    comps = [Composition(_formula_of(c) or "") for c in table["cif"]]
    table["formula"] = [c.reduced_formula for c in comps]
    table["chemsys"] = [chemsys(e.symbol for e in c.elements) for c in comps]
    table["natoms"] = [int(round(c.num_atoms)) for c in comps]
    table = table[table["natoms"] > 0]
    return table.reset_index(drop=True)


def subsystems(system: str) -> list[str]:
    """Every non-empty chemical subsystem of `system` ('Ba-O' -> ['Ba', 'O', 'Ba-O'])."""
    from itertools import combinations

    els = system.split("-")
    return [chemsys(c) for n in range(1, len(els) + 1) for c in combinations(els, n)]


def parse_cif(cif: str) -> Structure:
    """A pymatgen Structure from CIF text, without pymatgen's CIF warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Structure.from_str(cif, fmt="cif")
