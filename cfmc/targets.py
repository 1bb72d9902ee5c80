"""Property targets: `NAME=VALUE` options, Gaussian terms around targets, what to mark on
histograms, and the distance of samples to their targets (the paper's Fig. 9 metric)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd


def parse_assignments(items: Sequence[str], option: str) -> dict[str, float]:
    """`["band_gap=2.0", ...]` -> `{"band_gap": 2.0}`; errors name the option and the item."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"{option} '{item}': expected NAME=VALUE, e.g. band_gap=2.0")
        try:
            out[name] = float(value)
        except ValueError:
            raise ValueError(f"{option} '{item}': '{value}' is not a number") from None
        if not math.isfinite(out[name]):
            raise ValueError(f"{option} '{item}': expected a finite number")
    return out


def gaussian_targets(
    targets: Mapping[str, float], sigmas: Mapping[str, float] | None = None
) -> Any:
    """The sum of `Gaussian(get_predictor(name), target, sigma)` terms; sigma defaults to each
    predictor's typical error."""
    from cfmc.predictors import Gaussian, get_predictor

    if not targets:
        raise ValueError("no targets: give at least one, e.g. band_gap=2.0")
    sigmas = dict(sigmas or {})
    unknown = set(sigmas) - set(targets)
    if unknown:
        raise ValueError(f"sigma given for {sorted(unknown)} without a target")
    parts = [Gaussian(get_predictor(k), v, sigmas.get(k)) for k, v in targets.items()]
    return parts[0] if len(parts) == 1 else sum(parts[1:], parts[0])


def conditioner_parts(conditioner: Any) -> list[Any]:
    """The terms of a conditioner sum (or the conditioner alone), for per-term bookkeeping."""
    return list(getattr(conditioner, "parts", None) or [conditioner])


def target_marks(conditioner: Any) -> dict[str, list[float]]:
    """Property name -> values to mark on its histogram: Gaussian targets, bounds."""
    marks: dict[str, list[float]] = {}
    for c in conditioner_parts(conditioner):
        p = getattr(c, "predictor", None)
        if p is None:
            continue
        vals = [getattr(c, a) for a in ("target", "bound", "low", "high") if hasattr(c, a)]
        marks.setdefault(p.name, []).extend(float(v) for v in vals)
    return marks


def gaussian_target_values(conditioner: Any) -> dict[str, float]:
    """Property name -> the target of its Gaussian term (what `metrics` measures distance to)."""
    return {
        c.predictor.name: float(c.target)
        for c in conditioner_parts(conditioner)
        if hasattr(c, "predictor") and hasattr(c, "target")
    }


def distance_metrics(
    unconditional: pd.DataFrame, conditioned: pd.DataFrame, targets: Mapping[str, float],
    starts: pd.DataFrame | None = None,
) -> dict[str, dict[str, float]]:
    """Per property: mean absolute distance to the target of unconditional and conditioned
    samples, their ratio, and the medians (finite predictions only); with `starts`, also that of
    the chains' starting points (what selection from the prior pool did before any move)."""
    out = {}
    for name, t in targets.items():
        u = finite_values(unconditional.get(name))
        c = finite_values(conditioned.get(name))
        du = float(np.mean(np.abs(u - t))) if u.size else float("nan")
        dc = float(np.mean(np.abs(c - t))) if c.size else float("nan")
        out[name] = {
            "target": float(t),
            "mean_abs_distance_unconditional": du,
            "mean_abs_distance_conditioned": dc,
            "ratio": dc / du if du > 0 else float("nan"),
            "median_unconditional": float(np.median(u)) if u.size else float("nan"),
            "median_conditioned": float(np.median(c)) if c.size else float("nan"),
            "n_unconditional": int(u.size),
            "n_conditioned": int(c.size),
        }
        if starts is not None:
            st = finite_values(starts.get(name))
            out[name]["mean_abs_distance_start"] = (
                float(np.mean(np.abs(st - t))) if st.size else float("nan"))
    return out


def finite_values(col: pd.Series | None) -> np.ndarray:
    """The finite entries of a column (none when the column is missing)."""
    if col is None:
        return np.zeros(0)
    a = np.asarray(col, float)
    return a[np.isfinite(a)]
