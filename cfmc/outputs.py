"""The one writer of a run directory: chains.csv, samples.csv with one CIF per kept crystal,
trace.nc, summary.json, trace.png and burn_in.png (file formats in `cfmc.runio`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cfmc import runio
from cfmc.diagnostics import burn_in_plot, convergence, kernel_summary, package_versions, trace_plot
from cfmc.record import Draw, Recorder

COLUMNS = {
    "log_posterior": "untempered log density the chains target (lattice term left out when the "
    "lattice is marginalised)",
    "log_prior": "full log p(C|g), lattice term included",
    "prior_<term>": "each term of log p(C|g)",
    "log_likelihood": "sum_k w_k log p(y_k|C) (runs with conditioners)",
    "loglik_<name>": "each conditioner's weighted log-likelihood term",
}


def chain_table(draw: Draw, crystals: list) -> pd.DataFrame:
    """One row per chain of a recorded draw: formula, string and every column."""
    table = pd.DataFrame({"chain": np.arange(len(crystals)),
                          "formula": [c.formula for c in crystals],
                          "string": [c.to_string() for c in crystals]})
    for k, v in draw.columns.items():
        table[k] = np.asarray(v)
    return table


def write_outputs(
    out: Path, recorder: Recorder, summary: Mapping[str, Any], top: int, burn_in: int,
    trace_names: list[str], extras: Callable[[pd.DataFrame], Mapping[str, Any]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Write every output of a run from its recorder; `extras(chains)` (a front door's own
    files, e.g. design's histograms) returns entries added to the summary. Returns (chains,
    samples, summary)."""
    from cfmc.crystal import from_arrays

    summary = dict(summary)
    summary["kernels_burn_in"] = kernel_summary(recorder.burn_stats)
    summary["kernels"] = kernel_summary(recorder.sample_stats)
    summary["predictor_failures"] = sum(
        d["predictor_failures"] for d in (*recorder.burn_stats.values(),
                                          *recorder.sample_stats.values()))
    summary["draws"] = recorder.trace.draws
    summary["versions"] = package_versions()
    summary["columns"] = COLUMNS
    if recorder.curve:
        summary["mean_log_density_by_sweep"] = recorder.curve
        burn_in_plot(recorder.curve, burn_in, out / "burn_in.png")
    if recorder.trace.draws:
        summary["convergence"] = convergence(recorder.trace)
        seconds = float(summary.get("seconds") or 0.0)
        # the headline figure of an MCMC run: ESS per second of the whole run (compiling,
        # burn-in and recording included)
        summary["ess_per_second"] = {
            k: (v["ess_bulk"] / seconds if seconds > 0 else float("nan"))
            for k, v in summary["convergence"].items()}
        acc = ({"acceptance": np.stack(recorder.acceptance, axis=1)}
               if recorder.acceptance else {})
        runio.write_trace(out, recorder.trace.to_inference_data(acc))
        names = [n for n in trace_names if n in recorder.trace.columns]
        trace_plot(recorder.trace, out / "trace.png", names)
    chains = samples = pd.DataFrame()
    if recorder.last is not None:
        draw = recorder.last
        crystals = from_arrays(draw.positions)  # once: the chains table and samples share them
        chains = chain_table(draw, crystals)
        runio.write_table(out, "chains.csv", chains)
        keep = runio.select_top(crystals, draw.log_posterior, top or None)
        columns = {k: np.asarray(v)[keep] for k, v in draw.columns.items()}
        samples = runio.write_samples(out, [crystals[i] for i in keep], keep, columns)
        summary["kept"] = len(keep)
        summary["distinct_formulas"] = len({crystals[i].formula for i in keep})
    if extras is not None:
        summary.update(extras(chains))
    runio.write_summary(out, summary)
    return chains, samples, summary
