"""Predictors: map a batch of crystals to one property value each, reporting failures.

A predictor never crashes on a bad crystal and never hands on a silent NaN: every crystal
gets either a finite value or a failure reason. Results are cached by a canonical key of
the crystal, so the repeated proposals of an MCMC run are computed once.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from pymatgen.core import Structure

# Rounding of the cache key: fractional coordinates to 1e-6, lattice lengths to 1e-5 Angstrom
# and angles to 1e-4 degree, far below any change a property predictor can resolve.
COORD_DECIMALS = 6
LENGTH_DECIMALS = 5
ANGLE_DECIMALS = 4


class PredictionResult(NamedTuple):
    """Values of one property for a batch of crystals.

    `values[i]` is finite when `errors[i] is None`; otherwise it is NaN and `errors[i]` says
    why the crystal failed (bad structure, graph with no edges, non-finite output, ...).
    """

    values: np.ndarray  # (B,) float64
    errors: tuple[str | None, ...]  # (B,) failure reason or None

    @property
    def failed(self) -> np.ndarray:
        """(B,) bool: which crystals have no value."""
        return np.array([e is not None for e in self.errors], dtype=bool)

    def __len__(self) -> int:
        return len(self.errors)


def to_structure(crystal: Any) -> Structure:
    """A pymatgen Structure from a Structure or from anything with `.to_structure()`."""
    if isinstance(crystal, Structure):
        return crystal
    if hasattr(crystal, "to_structure"):
        return crystal.to_structure()
    raise TypeError(
        f"expected a pymatgen Structure or a cfmc Crystal, got {type(crystal).__name__}"
    )


def _wrap_round(x: np.ndarray, decimals: int) -> np.ndarray:
    # round then wrap, so 0.9999999 and 0.0 give the same key; +0.0 turns -0.0 into 0.0
    return np.mod(np.round(np.asarray(x, dtype=np.float64), decimals), 1.0) + 0.0


def structure_key(structure: Structure) -> str:
    """Canonical hash of a structure: species, rounded wrapped coordinates, lattice parameters.

    Independent of site order and of the orientation of the cell.
    """
    lat = structure.lattice
    lengths = np.round(np.asarray(lat.abc, dtype=np.float64), LENGTH_DECIMALS) + 0.0
    angles = np.round(np.asarray(lat.angles, dtype=np.float64), ANGLE_DECIMALS) + 0.0
    coords = _wrap_round(structure.frac_coords, COORD_DECIMALS)
    sites = sorted(
        (str(site.species), tuple(c)) for site, c in zip(structure, coords.tolist(), strict=True)
    )
    text = repr((tuple(lengths.tolist()), tuple(angles.tolist()), sites))
    return "s:" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def crystal_key(crystal: Any) -> str:
    """Canonical hash of a crystal: a Structure, or a Crystal by its Wyckoff description.

    A Crystal is keyed by (space group, Wyckoff letters, species, rounded representative
    coordinates, rounded lattice) without building its structure, which is the cheap path
    in MCMC where most proposals repeat.
    """
    if isinstance(crystal, Structure):
        return structure_key(crystal)
    fields = ("spacegroup", "wyckoff", "species", "coords", "lattice")
    if all(hasattr(crystal, f) for f in fields):
        raw = crystal.lattice
        lattice = np.full(6, np.nan) if raw is None else np.asarray(raw, np.float64).reshape(6)
        text = repr(
            (
                int(crystal.spacegroup),
                tuple(crystal.wyckoff),
                tuple(crystal.species),
                tuple(_wrap_round(np.asarray(crystal.coords).reshape(-1), COORD_DECIMALS).tolist()),
                tuple((np.round(lattice[:3], LENGTH_DECIMALS) + 0.0).tolist()),
                tuple((np.round(lattice[3:], ANGLE_DECIMALS) + 0.0).tolist()),
            )
        )
        return "c:" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    return structure_key(to_structure(crystal))


def _short(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}"[:300] if msg else type(exc).__name__


class Predictor:
    """A property predictor over batches of crystals (Structures or Crystals).

    Subclasses set `name`, `units`, `typical_error` and implement `_predict_batch`, which
    gets pymatgen Structures and returns one float (or failure reason) each, or raises. The base
    class converts inputs, caches by crystal, isolates a failing crystal in a batch that
    raises, and turns non-finite outputs into reported failures.
    """

    name: str = "property"
    units: str = ""
    typical_error: float = 1.0
    uses_lattice: bool = True

    def __init__(self, cache_size: int = 100_000) -> None:
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self.cache_hits = 0
        self.cache_misses = 0

    # -- to implement ------------------------------------------------------------------
    def _predict_batch(self, structures: list[Structure]) -> Sequence[float | str] | np.ndarray:
        """One value per structure, or a string saying why that structure failed.

        May raise; the base class then retries the structures one by one.
        """
        raise NotImplementedError

    # -- public ------------------------------------------------------------------------
    def predict(self, crystals: Sequence[Any] | Structure | Any) -> PredictionResult:
        """Predict the property for each crystal; failures are reported per crystal."""
        if isinstance(crystals, Structure) or hasattr(crystals, "to_structure"):
            crystals = [crystals]
        crystals = list(crystals)
        n = len(crystals)
        values = np.full(n, np.nan, dtype=np.float64)
        errors: list[str | None] = [None] * n

        keys: list[str | None] = [None] * n
        todo: dict[str, list[int]] = {}  # key -> indices of the batch that need it
        for i, c in enumerate(crystals):
            try:
                keys[i] = crystal_key(c)
            except Exception as e:  # any bad input becomes a reported failure
                errors[i] = f"invalid crystal: {_short(e)}"
                continue
            hit = self._cache.get(keys[i])
            if hit is not None:
                self._cache.move_to_end(keys[i])
                self.cache_hits += 1
                values[i], errors[i] = hit
            else:
                todo.setdefault(keys[i], []).append(i)

        if todo:
            self.cache_misses += len(todo)
            results = self._compute([crystals[idx[0]] for idx in todo.values()])
            for (key, idx), (v, err) in zip(todo.items(), results, strict=True):
                self._store(key, v, err)
                for i in idx:
                    values[i], errors[i] = v, err
        return PredictionResult(values, tuple(errors))

    __call__ = predict

    def clear_cache(self) -> None:
        """Forget cached results (and reset the hit/miss counters)."""
        self._cache.clear()
        self.cache_hits = self.cache_misses = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, units={self.units!r})"

    # -- internals ---------------------------------------------------------------------
    def _store(self, key: str, value: float, error: str | None) -> None:
        if self.cache_size <= 0:
            return
        self._cache[key] = (value, error)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _compute(self, crystals: list[Any]) -> list[tuple[float, str | None]]:
        out: list[tuple[float, str | None]] = [(math.nan, None)] * len(crystals)
        good: list[int] = []
        structures: list[Structure] = []
        for i, c in enumerate(crystals):
            try:
                structures.append(to_structure(c))
                good.append(i)
            except Exception as e:
                out[i] = (math.nan, f"could not build structure: {_short(e)}")
        if not structures:
            return out
        try:
            batch = self._finite(self._predict_batch(structures), len(structures))
        except Exception as e:
            if len(structures) == 1:
                batch = [(math.nan, f"{self.name} prediction raised {_short(e)}")]
            else:  # find the crystal(s) that raise, one at a time
                batch = self._one_by_one(structures)
        for i, r in zip(good, batch, strict=True):
            out[i] = r
        return out

    def _one_by_one(self, structures: list[Structure]) -> list[tuple[float, str | None]]:
        batch: list[tuple[float, str | None]] = []
        for s in structures:
            try:
                batch.extend(self._finite(self._predict_batch([s]), 1))
            except Exception as e:
                batch.append((math.nan, f"{self.name} prediction raised {_short(e)}"))
        return batch

    def _finite(
        self, raw: Sequence[float | str] | np.ndarray, n: int
    ) -> list[tuple[float, str | None]]:
        items = list(raw) if not isinstance(raw, np.ndarray) else raw.reshape(-1).tolist()
        if len(items) != n:
            raise ValueError(f"{self.name}: expected {n} values, got {len(items)}")
        out: list[tuple[float, str | None]] = []
        for v in items:
            if isinstance(v, str):
                out.append((math.nan, v))
                continue
            v = float(v)
            if math.isfinite(v):
                out.append((v, None))
            else:
                out.append((math.nan, f"{self.name} is {v} (non-finite output)"))
        return out


class FunctionPredictor(Predictor):
    """A predictor from a plain function `f(structure) -> float` (or a batched one).

    >>> density = FunctionPredictor(lambda s: s.density, name="density", units="g/cm3")
    """

    def __init__(
        self,
        fn: Callable[[Structure], float] | Callable[[list[Structure]], Sequence[float]],
        name: str | None = None,
        units: str = "",
        typical_error: float = 1.0,
        batched: bool = False,
        uses_lattice: bool = True,
        cache_size: int = 100_000,
    ) -> None:
        super().__init__(cache_size=cache_size)
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "property")
        self.units = units
        self.typical_error = float(typical_error)
        self.batched = batched
        self.uses_lattice = uses_lattice

    def _predict_batch(self, structures: list[Structure]) -> Sequence[float | str] | np.ndarray:
        if self.batched:
            return self.fn(structures)  # type: ignore[arg-type]
        return [float(self.fn(s)) for s in structures]  # type: ignore[arg-type]

    def _compute(self, crystals: list[Any]) -> list[tuple[float, str | None]]:
        if self.batched:
            return super()._compute(crystals)
        # per-structure functions: one call per crystal, so one failure costs no retry
        out = []
        for c in crystals:
            out.extend(super()._compute([c]))
        return out


def predictor(
    name: str | None = None,
    units: str = "",
    typical_error: float = 1.0,
    batched: bool = False,
    uses_lattice: bool = True,
) -> Callable[[Callable], FunctionPredictor]:
    """Decorator: turn `f(structure) -> float` into a `FunctionPredictor`.

    >>> @predictor(units="g/cm3")
    ... def density(s):
    ...     return s.density
    """

    def wrap(fn: Callable) -> FunctionPredictor:
        return FunctionPredictor(
            fn,
            name=name,
            units=units,
            typical_error=typical_error,
            batched=batched,
            uses_lattice=uses_lattice,
        )

    return wrap
