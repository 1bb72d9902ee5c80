"""A guard in front of the conditioners: crystals that cannot be physical get log-likelihood
-inf without reaching the predictors (graph predictors on a collapsed cell build enormous
neighbour lists)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from cfmc.crystal import Crystal


@dataclasses.dataclass(frozen=True, eq=False)
class _Prebuilt(Crystal):
    """A Crystal carrying its already built Structure (built once per proposal, not per term)."""

    structure: Any = None

    def to_structure(self):
        return self.structure.copy()


class PhysicalGuard:
    """Wraps a conditioner so crystals that cannot be physical get log-likelihood -inf without
    reaching the predictors: a cell that does not build, atoms closer than `min_distance`
    Angstrom, less than `min_volume_per_atom` cubic Angstrom per atom, or more than `max_atoms`
    atoms in the conventional cell. (Graph predictors on a collapsed cell build enormous
    neighbour lists.) The crystals passed on carry their
    built structure, so the terms do not rebuild it."""

    def __init__(self, conditioner: Any, min_distance: float = 0.5,
                 min_volume_per_atom: float = 2.0, max_atoms: int = 256,
                 name: str = "target") -> None:
        self.conditioner = conditioner
        self.min_distance = float(min_distance)
        self.min_volume_per_atom = float(min_volume_per_atom)
        self.max_atoms = int(max_atoms)
        self.name = name

    def physical(self, crystal: Any) -> Any:
        """The crystal with its structure attached, or None when it cannot be physical."""
        from cfmc.chemistry import min_distance

        if crystal.num_atoms > self.max_atoms:
            return None
        try:
            s = crystal.to_structure()
        except Exception:  # pymatgen raises several types for a degenerate cell
            return None
        if not np.isfinite(s.volume) or s.volume < self.min_volume_per_atom * len(s):
            return None
        if min_distance(s) < self.min_distance:
            return None
        return _Prebuilt(crystal.spacegroup, crystal.wyckoff, crystal.species, crystal.coords,
                         crystal.lattice, crystal.properties, structure=s)

    def __call__(self, crystals: Sequence[Any]) -> Any:
        from cfmc.predictors.conditioners import ConditionResult

        checked = [self.physical(c) for c in crystals]
        n = len(checked)
        idx = np.array([i for i, c in enumerate(checked) if c is not None], int)
        logp = np.full(n, -np.inf)
        failed = np.zeros(n, bool)
        terms: dict[str, np.ndarray] = {}
        values: dict[str, np.ndarray] = {}
        errors: list[str | None] = ["not physical" if c is None else None for c in checked]
        if idx.size:
            inner = self.conditioner([checked[i] for i in idx])
            logp[idx] = np.asarray(getattr(inner, "logp", inner), float).reshape(-1)
            failed[idx] = np.asarray(getattr(inner, "failed", np.zeros(idx.size, bool)), bool)
            for k, v in (getattr(inner, "terms", None) or {}).items():
                terms[k] = np.full(n, -np.inf)
                terms[k][idx] = v
            for k, v in (getattr(inner, "values", None) or {}).items():
                values[k] = np.full(n, np.nan)
                values[k][idx] = v
            for j, e in zip(idx, getattr(inner, "errors", None) or [None] * idx.size,
                            strict=True):
                errors[j] = e
        return ConditionResult(logp, terms, values, failed, tuple(errors))
