"""When a run has mixed: burn-in decided by the chains' own log densities, and the stop rule on
R-hat and bulk ESS of the traced scalars."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping

import numpy as np


class BurnIn:
    """Ends burn-in at the first sweep after which the chains' log density no longer rises: the
    per-chain mean over the last `window` sweeps is not significantly above (z < `z`) the mean
    over the `window` sweeps before, with at least `min_sweeps` and at most `max_sweeps` sweeps
    of burn-in. Many chains make the test sensitive, so it errs towards longer burn-in."""

    def __init__(self, window: int = 5, min_sweeps: int = 10, max_sweeps: int | None = None,
                 z: float = 2.0) -> None:
        self.window, self.min_sweeps, self.max_sweeps, self.z = window, min_sweeps, max_sweeps, z
        self.history: deque[np.ndarray] = deque(maxlen=2 * window)
        self.last_z = math.nan

    def update(self, index: int, logdensity: np.ndarray) -> bool:
        """Record sweep `index`; True when burn-in ends after it."""
        self.history.append(np.asarray(logdensity, float))
        done = index + 1
        if self.max_sweeps is not None and done >= self.max_sweeps:
            return True
        if done < self.min_sweeps or len(self.history) < 2 * self.window:
            return False
        h = np.stack(self.history)
        d = h[self.window:].mean(0) - h[: self.window].mean(0)
        d = d[np.isfinite(d)]
        if d.size < 2:
            return False
        se = d.std(ddof=1) / math.sqrt(d.size)
        self.last_z = float(d.mean() / se) if se > 0 else (0.0 if d.mean() <= 0 else math.inf)
        return self.last_z < self.z


def worst(convergence: Mapping[str, Mapping[str, float]]) -> tuple[float, float]:
    """(largest R-hat, smallest bulk ESS) over the traced scalars where they are defined."""
    rhat = [v["rhat"] for v in convergence.values() if math.isfinite(v.get("rhat", math.nan))]
    ess = [v["ess_bulk"] for v in convergence.values()
           if math.isfinite(v.get("ess_bulk", math.nan))]
    return (max(rhat) if rhat else math.nan), (min(ess) if ess else math.nan)


def has_mixed(convergence: Mapping[str, Mapping[str, float]], until_rhat: float | None,
              min_ess: float | None) -> bool:
    """Every traced scalar has R-hat <= until_rhat and bulk ESS >= min_ess (None: no bound)."""
    rhat, ess = worst(convergence)
    if until_rhat is not None and not rhat <= until_rhat:
        return False
    return min_ess is None or ess >= min_ess


def stationary_rhat(tau: float, draws: int) -> float:
    """The split R-hat that chains already at equilibrium show after `draws` draws each, given
    their integrated autocorrelation time `tau` (in draws): sqrt(1 + (tau - 1) / (draws / 2)),
    first order in tau / draws. A measured R-hat near it says the chains are converged but
    short; one well above it says they have not converged."""
    if draws < 2 or not math.isfinite(tau):
        return math.nan
    return math.sqrt(1.0 + max(tau - 1.0, 0.0) / (draws / 2.0))


def draws_for_rhat(tau: float, target: float = 1.01) -> float:
    """Draws per chain after which equilibrium chains with autocorrelation time `tau` reach
    split R-hat `target` (inverse of `stationary_rhat`)."""
    if not math.isfinite(tau) or target <= 1.0:
        return math.nan
    return math.ceil(2.0 * max(tau - 1.0, 0.0) / (target**2 - 1.0))
