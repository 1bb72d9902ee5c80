"""Conditioners: log p(y|C) terms built from predictors, added to the prior's log density.

    target = Gaussian(MEGNetBandGap(), 3.0) + AtMost(MEGNetFormationEnergy(), -0.5)
    result = target(crystals)          # result.logp (B,), -inf where a prediction failed

A conditioner is called on a batch of crystals and returns a `ConditionResult`. They add
with `+` (a plain function `f(crystals) -> (B,) log-likelihood` adds too), and `w * c`
scales a term's weight.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from .base import Predictor

_LOG_2PI = math.log(2.0 * math.pi)


class ConditionResult(NamedTuple):
    """Log-likelihood of a batch of crystals under one or more conditioners.

    `logp` is the weighted total (-inf for failed crystals); `terms` maps each conditioner's
    name to its weighted term, so `logp == sum(terms.values())`; `values` maps property name to
    predicted values (NaN where that prediction failed); `errors` holds each crystal's failure
    reasons joined by '; ' (None when it did not fail).
    """

    logp: np.ndarray
    terms: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    failed: np.ndarray
    errors: tuple[str | None, ...]


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    """log(1 / (1 + exp(-x))), stable for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    return -np.logaddexp(0.0, -x)


class Conditioner:
    """Base class: subclasses implement `_evaluate(crystals) -> ConditionResult` (unweighted).

    `weight` multiplies the term; `name` labels it in `ConditionResult.terms`.
    """

    name: str = "condition"
    weight: float = 1.0

    @property
    def predictors(self) -> list[Predictor]:
        """The predictors this conditioner calls."""
        return []

    @property
    def uses_lattice(self) -> bool:
        """Whether the term depends on the lattice (the sampler then keeps lattice moves on)."""
        return True

    def __call__(self, crystals: Sequence[Any]) -> ConditionResult:
        """log p(y|C) for each crystal, weighted; failed crystals get -inf."""
        raise NotImplementedError

    def __add__(self, other: Conditioner | Callable) -> ConditionerSum:
        return ConditionerSum([self, as_conditioner(other)])

    def __radd__(self, other: Conditioner | Callable) -> ConditionerSum:
        if isinstance(other, int | float) and other == 0:  # sum([...]) starts from 0
            return ConditionerSum([self])
        return ConditionerSum([as_conditioner(other), self])

    def __rmul__(self, w: float) -> Conditioner:
        return self.scaled(w)

    __mul__ = __rmul__

    def scaled(self, w: float) -> Conditioner:
        """A copy whose weight is multiplied by `w`."""
        new = copy.copy(self)
        new.weight = self.weight * float(w)
        return new


class PropertyConditioner(Conditioner):
    """A conditioner on one predicted property: subclasses give `loglik(values)`."""

    kind = "property"

    def __init__(self, predictor: Predictor, weight: float = 1.0, name: str | None = None):
        if not isinstance(predictor, Predictor):
            raise TypeError(
                f"{type(self).__name__} needs a Predictor, got {type(predictor).__name__}; "
                "wrap a plain function with FunctionPredictor(f, name=...)"
            )
        self.predictor = predictor
        self.weight = float(weight)
        self.name = name or f"{predictor.name}:{self.kind}"

    @property
    def predictors(self) -> list[Predictor]:
        return [self.predictor]

    @property
    def uses_lattice(self) -> bool:
        return bool(getattr(self.predictor, "uses_lattice", True))

    def loglik(self, values: np.ndarray) -> np.ndarray:
        """Unweighted log p(y|C) given the predicted values (all finite)."""
        raise NotImplementedError

    def __call__(self, crystals: Sequence[Any]) -> ConditionResult:
        pred = self.predictor.predict(crystals)
        failed = pred.failed
        term = np.full(len(pred), -np.inf)
        ok = ~failed
        if ok.any():
            term[ok] = self.weight * self.loglik(pred.values[ok])
        errors = tuple(None if e is None else f"{self.predictor.name}: {e}" for e in pred.errors)
        return ConditionResult(
            logp=term.copy(),
            terms={self.name: term},
            values={self.predictor.name: pred.values},
            failed=failed,
            errors=errors,
        )


class Gaussian(PropertyConditioner):
    """y ~ Normal(target, sigma): sigma defaults to the predictor's typical error."""

    kind = "gaussian"

    def __init__(
        self,
        predictor: Predictor,
        target: float,
        sigma: float | None = None,
        weight: float = 1.0,
        name: str | None = None,
    ):
        super().__init__(predictor, weight, name)
        self.target = float(target)
        self.sigma = float(predictor.typical_error if sigma is None else sigma)
        if not self.sigma > 0:
            raise ValueError(f"Gaussian on {predictor.name}: sigma must be > 0, got {self.sigma}")

    def loglik(self, values: np.ndarray) -> np.ndarray:
        z = (values - self.target) / self.sigma
        return -0.5 * z * z - math.log(self.sigma) - 0.5 * _LOG_2PI


class _Soft(PropertyConditioner):
    """Shared set-up of the soft bounds: `width` defaults to the predictor's typical error."""

    def __init__(self, predictor: Predictor, width: float | None, weight: float, name: str | None):
        super().__init__(predictor, weight, name)
        self.width = float(predictor.typical_error if width is None else width)
        if not self.width > 0:
            raise ValueError(f"{type(self).__name__} on {predictor.name}: width must be > 0")


class _Bound(_Soft):
    """A one-sided soft bound; `sign` +1 keeps y above the bound, -1 below it."""

    sign = 1.0

    def __init__(
        self,
        predictor: Predictor,
        bound: float,
        width: float | None = None,
        weight: float = 1.0,
        name: str | None = None,
    ):
        super().__init__(predictor, width, weight, name)
        self.bound = float(bound)

    def loglik(self, values: np.ndarray) -> np.ndarray:
        return log_sigmoid(self.sign * (values - self.bound) / self.width)


class AtLeast(_Bound):
    """Soft y >= bound: log sigmoid((y - bound) / width); ~0 well above, linear well below."""

    kind = "at_least"
    sign = 1.0


class AtMost(_Bound):
    """Soft y <= bound: log sigmoid((bound - y) / width)."""

    kind = "at_most"
    sign = -1.0


class Between(_Soft):
    """Soft low <= y <= high: the sum of the two soft edges."""

    kind = "between"

    def __init__(
        self,
        predictor: Predictor,
        low: float,
        high: float,
        width: float | None = None,
        weight: float = 1.0,
        name: str | None = None,
    ):
        super().__init__(predictor, width, weight, name)
        if not low < high:
            raise ValueError(f"Between on {predictor.name}: need low < high, got {low}, {high}")
        self.low, self.high = float(low), float(high)

    def loglik(self, values: np.ndarray) -> np.ndarray:
        return log_sigmoid((values - self.low) / self.width) + log_sigmoid(
            (self.high - values) / self.width
        )


class FunctionConditioner(Conditioner):
    """A user's own term: `fn(crystals) -> (B,)` log-likelihood; NaN or an error means failed."""

    def __init__(
        self,
        fn: Callable[[Sequence[Any]], Any],
        name: str | None = None,
        weight: float = 1.0,
        uses_lattice: bool = True,
        predictors: Sequence[Predictor] = (),
    ):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "custom")
        self.weight = float(weight)
        self._uses_lattice = uses_lattice
        self._predictors = list(predictors)

    @property
    def predictors(self) -> list[Predictor]:
        return list(self._predictors)

    @property
    def uses_lattice(self) -> bool:
        return self._uses_lattice

    def __call__(self, crystals: Sequence[Any]) -> ConditionResult:
        crystals = list(crystals)
        n = len(crystals)
        errors: list[str | None] = [None] * n
        try:
            raw = np.asarray(self.fn(crystals), dtype=np.float64).reshape(-1)
            if raw.shape[0] != n:
                raise ValueError(f"returned {raw.shape[0]} values for {n} crystals")
        except Exception as e:
            msg = f"{self.name} raised {type(e).__name__}: {e}"[:300]
            term = np.full(n, -np.inf)
            return ConditionResult(term.copy(), {self.name: term}, {}, np.ones(n, bool), (msg,) * n)
        failed = np.isnan(raw) | (raw == np.inf)  # -inf is a valid 'impossible', not a failure
        for i in np.flatnonzero(failed):
            errors[i] = f"{self.name} returned {raw[i]}"
        term = np.where(failed, -np.inf, self.weight * np.where(failed, 0.0, raw))
        return ConditionResult(term.copy(), {self.name: term}, {}, failed, tuple(errors))


def as_conditioner(obj: Conditioner | Callable) -> Conditioner:
    """A Conditioner as is; a plain callable over crystals as a `FunctionConditioner`."""
    if isinstance(obj, Conditioner):
        return obj
    if isinstance(obj, Predictor):
        raise TypeError(
            f"predictor {obj.name!r} is not a conditioner: wrap it, e.g. Gaussian(p, target)"
        )
    if callable(obj):
        return FunctionConditioner(obj)
    raise TypeError(f"cannot use {type(obj).__name__} as a conditioner")


class ConditionerSum(Conditioner):
    """The sum of several conditioners' terms; a crystal fails if any part fails."""

    name = "sum"

    def __init__(self, parts: Sequence[Conditioner | Callable]):
        flat: list[Conditioner] = []
        for p in parts:
            c = as_conditioner(p)
            flat.extend(c.parts if isinstance(c, ConditionerSum) and c.weight == 1.0 else [c])
        if not flat:
            raise ValueError("ConditionerSum needs at least one conditioner")
        self.parts = flat
        self.weight = 1.0

    @property
    def predictors(self) -> list[Predictor]:
        out: list[Predictor] = []
        for c in self.parts:
            out.extend(p for p in c.predictors if not any(p is q for q in out))
        return out

    @property
    def uses_lattice(self) -> bool:
        return any(c.uses_lattice for c in self.parts)

    def __call__(self, crystals: Sequence[Any]) -> ConditionResult:
        crystals = list(crystals)
        n = len(crystals)
        logp = np.zeros(n)
        terms: dict[str, np.ndarray] = {}
        values: dict[str, np.ndarray] = {}
        failed = np.zeros(n, dtype=bool)
        errors: list[list[str]] = [[] for _ in range(n)]
        for c in self.parts:
            r = c(crystals)
            for k, t in r.terms.items():
                key, j = k, 2
                while key in terms:  # two terms with one name: keep both
                    key, j = f"{k}#{j}", j + 1
                terms[key] = np.where(np.isneginf(t), -np.inf, self.weight * t)
            values.update(r.values)
            failed |= r.failed
            for i, e in enumerate(r.errors):
                if e is not None and e not in errors[i]:
                    errors[i].append(e)
        for t in terms.values():
            logp = logp + t
        logp[failed] = -np.inf
        return ConditionResult(
            logp, terms, values, failed, tuple("; ".join(e) if e else None for e in errors)
        )
