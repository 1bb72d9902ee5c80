"""Matplotlib without a display: the pyplot module on the Agg backend, and saving a figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cfmc.targets import finite_values


def pyplot():
    """matplotlib.pyplot on the Agg backend (plots are written to files, never shown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Lay out, write and close a figure; returns the path."""
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def _hist_pair(ax, before: np.ndarray, after: np.ndarray, label: str) -> None:
    both = np.concatenate([before, after])
    if not both.size:
        ax.text(0.5, 0.5, "no finite values", ha="center", transform=ax.transAxes)
        return
    lo, hi = np.percentile(both, [0.5, 99.5]) if both.size > 20 else (both.min(), both.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.linspace(lo, hi, 40)
    ax.hist(np.clip(before, lo, hi), bins=bins, alpha=0.55, density=True, color="0.5",
            label=f"unconditional (n={before.size})")
    ax.hist(np.clip(after, lo, hi), bins=bins, alpha=0.55, density=True, color="tab:red",
            label=f"conditioned (n={after.size})")
    ax.set_xlabel(label)
    ax.set_ylabel("density")


def property_histograms(unconditional: pd.DataFrame, conditioned: pd.DataFrame,
                        properties: Sequence[str], marks: Mapping[str, Sequence[float]],
                        path: str | Path) -> Path:
    """Fig. 9a: one panel per property, unconditional vs conditioned, targets as dashed lines."""
    plt = pyplot()

    n = max(len(properties), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.4), squeeze=False)
    for ax, name in zip(axes[0], properties, strict=False):
        _hist_pair(ax, finite_values(unconditional.get(name)),
                   finite_values(conditioned.get(name)), name)
        for v in marks.get(name, []):
            ax.axvline(v, color="k", ls="--", lw=1.2, label=f"target {v:g}")
        ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=110)


def log_prior_histogram(unconditional: pd.DataFrame, conditioned: pd.DataFrame,
                        path: str | Path) -> Path:
    """Fig. 9b: prior log-likelihood log p(C|g) of unconditional vs conditioned samples."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    _hist_pair(ax, finite_values(unconditional.get("log_prior")),
               finite_values(conditioned.get("log_prior")), "log p(C|g)")
    ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=110)
