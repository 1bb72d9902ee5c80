"""Chain diagnostics: traced scalars per draw and chain, ArviZ InferenceData, R-hat/ESS, plots."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cfmc.plotting import pyplot, save_figure
from cfmc.sweep import acceptance

MAX_PLOTTED_CHAINS = 16


class Trace:
    """Scalars per draw for every chain: log prior, log posterior, each term and property."""

    def __init__(self) -> None:
        self.columns: dict[str, list[np.ndarray]] = {}
        self.draws = 0

    def append(self, scalars: Mapping[str, np.ndarray]) -> None:
        """Add one draw; every value is a (chains,) array. A name missing from earlier draws is
        back-filled with NaN."""
        for name, v in scalars.items():
            col = self.columns.setdefault(name, [])
            v = np.asarray(v, np.float64).reshape(-1)
            while len(col) < self.draws:
                col.append(np.full(v.shape, np.nan))
            col.append(v)
        self.draws += 1
        for col in self.columns.values():
            if len(col) < self.draws:
                col.append(np.full(col[-1].shape, np.nan))

    def arrays(self) -> dict[str, np.ndarray]:
        """name -> (chains, draws)."""
        return {k: np.stack(v, axis=1) for k, v in self.columns.items()}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Trace:
        """Rebuild from `arrays()` (for resuming)."""
        t = cls()
        for k, a in arrays.items():
            t.columns[k] = [np.asarray(a)[:, d] for d in range(np.shape(a)[1])]
            t.draws = max(t.draws, np.shape(a)[1])
        return t

    def to_inference_data(self, acceptance_per_chain: Mapping[str, np.ndarray] | None = None):
        """ArviZ InferenceData: traced scalars in `posterior`, per-draw acceptance (and other
        sampler statistics) in `sample_stats`."""
        import warnings

        import arviz as az

        stats = {k: np.asarray(v) for k, v in (acceptance_per_chain or {}).items()}
        with warnings.catch_warnings():  # many chains and few draws is normal here
            warnings.filterwarnings("ignore", message="More chains")
            return az.from_dict(posterior=self.arrays(), sample_stats=stats or None)


def convergence(trace: Trace) -> dict[str, dict[str, float]]:
    """R-hat (rank-normalised) and bulk/tail ESS of every traced scalar (NaN when undefined),
    with the autocorrelation time they imply (draws x chains / bulk ESS), the R-hat that
    chains at equilibrium would show with it, and the draws per chain that would bring those
    to R-hat 1.01 (`cfmc.mixing.stationary_rhat`)."""
    import arviz as az

    from cfmc.mixing import draws_for_rhat, stationary_rhat

    out: dict[str, dict[str, float]] = {}
    for name, a in trace.arrays().items():
        entry = {"rhat": math.nan, "ess_bulk": math.nan, "ess_tail": math.nan,
                 "autocorrelation_time": math.nan, "rhat_if_stationary": math.nan,
                 "draws_for_rhat_1.01": math.nan}
        finite = np.isfinite(a).all() and a.shape[1] >= 4 and np.ptp(a) > 0
        if finite:
            entry["rhat"] = float(az.rhat(a)) if a.shape[0] > 1 else math.nan
            entry["ess_bulk"] = float(az.ess(a, method="bulk"))
            entry["ess_tail"] = float(az.ess(a, method="tail"))
            if entry["ess_bulk"] > 0:
                tau = a.size / entry["ess_bulk"]
                entry["autocorrelation_time"] = tau
                entry["rhat_if_stationary"] = stationary_rhat(tau, a.shape[1])
                entry["draws_for_rhat_1.01"] = draws_for_rhat(tau, 1.01)
        out[name] = entry
    return out


def kernel_summary(stats: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, Any]]:
    """Counts and acceptance rate per kernel (kernels that never proposed are left out)."""
    acc = acceptance(stats)
    return {
        k: dict(d) | {"acceptance": acc[k]} for k, d in stats.items() if d.get("proposed", 0) > 0
    }


def trace_plot(trace: Trace, path: str | Path, names: list[str] | None = None) -> Path:
    """Trace lines of a few chains and a histogram over all chains, one row per scalar."""
    plt = pyplot()

    arrays = trace.arrays()
    names = [n for n in (names or list(arrays)) if n in arrays]
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 2.2 * max(len(names), 1)), squeeze=False)
    for row, name in zip(axes, names, strict=True):
        a = arrays[name]
        for c in range(min(a.shape[0], MAX_PLOTTED_CHAINS)):
            row[0].plot(a[c], lw=0.8, alpha=0.7)
        row[0].set_ylabel(name, fontsize=8)
        row[0].set_xlabel("draw")
        finite = a[np.isfinite(a)]
        if finite.size:
            row[1].hist(finite, bins=50, color="0.4")
        row[1].set_xlabel(name)
    return save_figure(fig, path, dpi=100)


def package_versions() -> dict[str, str]:
    """Versions of the packages a run depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("cfmc", "jax", "equinox", "numpyro", "blackjax", "arviz", "numpy", "pymatgen",
                 "pyxtal", "spglib", "matgl", "torch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def burn_in_plot(curve: list[list[float]], burn_in: int, path: str | Path) -> Path:
    """Mean log prior and log posterior over all chains after every sweep, burn-in included,
    so one can see them rise during burn-in and level off."""
    plt = pyplot()

    a = np.asarray(curve, float).reshape(-1, 3)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(a[:, 0] + 1, a[:, 1], label="mean log prior (target part)")
    ax.plot(a[:, 0] + 1, a[:, 2], "--", label="mean log posterior")
    ax.axvline(burn_in + 0.5, color="0.5", lw=0.8, ls=":", label="end of burn-in")
    ax.set_xlabel("sweep")
    ax.set_ylabel("nats")
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=100)
