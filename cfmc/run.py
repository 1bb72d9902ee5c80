"""One run workflow for every sampling command: start, sweeps, recording, checkpoint and resume,
outputs. `cfmc.infill` and `cfmc.design` are thin front doors that build the posterior, the
constraints and the starting crystals and hand them to `run_chains`.

Sweep i uses the key fold_in(run key, i) and each chain's keys derive from its index, so a run
resumed from a checkpoint repeats the uninterrupted one exactly. An interrupt (or any error)
still writes the outputs of the last completed sweep, with status 'interrupted', before it
propagates.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from cfmc import runio
from cfmc.arrays import CrystalArrays
from cfmc.diagnostics import convergence
from cfmc.kernels import ProposalFn, SiteConstraints
from cfmc.mixing import BurnIn, has_mixed, worst
from cfmc.outputs import write_outputs
from cfmc.posterior import Posterior
from cfmc.record import Recorder
from cfmc.rundir_lock import guarded_run
from cfmc.shards import ShardedSampler, ShardPool
from cfmc.sweep import EVERY_SITE, Sampler, SamplerState, SweepConfig, annealing, run_sweeps

# key -> (one crystal per chain, what the start did, for the summary)
Start = Callable[[jax.Array], tuple[CrystalArrays, dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How long a run is and what it keeps.

    sweeps counts burn-in and caps the run; burn_in None: decided by the chains' log densities
    (`cfmc.mixing.BurnIn`, at most half the sweeps); `until_rhat` / `min_ess`: stop once every
    traced scalar has R-hat at most / bulk ESS at least these (checked every `check_every`
    recorded draws); `top` keeps the N best distinct final crystals in samples.csv (0: all
    distinct ones); `anneal` (T0) anneals from T0 to the posterior's temperature over burn-in.
    """

    chains: int
    sweeps: int
    burn_in: int | None
    seed: int = 0
    top: int = 100
    anneal: float | None = None
    checkpoint_every: int = 5
    progress: bool = True
    until_rhat: float | None = None
    min_ess: float | None = None
    check_every: int = 5

    def __post_init__(self) -> None:
        if self.chains < 1:
            raise ValueError(f"chains must be at least 1, got {self.chains}")
        if self.burn_in is None:
            if self.sweeps < 2:
                raise ValueError(f"sweeps must be at least 2, got {self.sweeps}")
            if self.anneal is not None:
                raise ValueError("annealing needs a fixed burn-in to anneal over")
        elif self.burn_in < 0 or self.sweeps <= self.burn_in:
            raise ValueError(f"sweeps ({self.sweeps}) must exceed burn-in ({self.burn_in})")
        if self.until_rhat is not None and not (math.isfinite(self.until_rhat)
                                                and self.until_rhat > 1):
            raise ValueError(f"until_rhat must be a number above 1, got {self.until_rhat}")
        if self.min_ess is not None and not (math.isfinite(self.min_ess) and self.min_ess > 0):
            raise ValueError(f"min_ess must be positive, got {self.min_ess}")
        if self.check_every < 1:
            raise ValueError(f"check_every must be at least 1, got {self.check_every}")
        if self.top < 0:
            raise ValueError(f"top must be 0 (all) or positive, got {self.top}")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be at least 1, got {self.checkpoint_every}")
        if self.anneal is not None and not (math.isfinite(self.anneal) and self.anneal > 0):
            raise ValueError(f"anneal must be a positive start temperature, got {self.anneal}")


class RunResult(NamedTuple):
    """What a run produced (also on disk under `out`).

    chains: one row per chain at the last draw; samples: samples.csv (the distinct final
    crystals ranked by log posterior); summary: summary.json.
    """

    out: Path
    chains: pd.DataFrame
    samples: pd.DataFrame
    summary: dict[str, Any]


def check_resume(out: Path, settings: Mapping[str, Any]) -> None:
    """Refuse to resume a run saved with other settings (sweeps may grow), naming them."""
    saved = runio.saved_settings(out)
    wanted = runio.jsonable(dict(settings))
    differ = [k for k in sorted(set(saved) | set(wanted))
              if k != "sweeps" and saved.get(k) != wanted.get(k)]
    if differ:
        detail = "; ".join(f"{k}: saved {saved.get(k)!r}, requested {wanted.get(k)!r}"
                           for k in differ)
        raise ValueError(f"cannot resume {out} with other settings ({detail})")


def start_key(seed: int) -> jax.Array:
    """The key `run_chains` hands to `start` (for front doors that draw the starts first)."""
    return jax.random.split(jax.random.PRNGKey(seed), 3)[0]


@guarded_run  # validated numbers and --out, the directory locked for the run (cfmc.rundir_lock)
def run_chains(
    out: str | Path,
    posterior: Posterior,
    constraints: SiteConstraints | Callable[[CrystalArrays], SiteConstraints],
    config: SweepConfig,
    start: Start,
    options: RunOptions,
    settings: Mapping[str, Any],
    command: str,
    force: bool = False,
    resume: bool = False,
    extras: Callable[[pd.DataFrame], Mapping[str, Any]] | None = None,
    on_sweep: Callable[[int, SamplerState, dict], None] | None = None,
    block: ProposalFn | None = None,
    shards: ShardPool | None = None,
    screen: Mapping[str, Any] | None = None,
) -> RunResult:
    """Run the chains of one posterior into the run directory `out` and write its outputs.

    constraints: fixed, or a function of the starting crystals (free design); settings: what
    the summary and the checkpoint record (a resume must request the same); extras(chains): the
    front door's own outputs, merged into the summary; block: the proposal of the block move
    (with `config.block`); shards: run the sweeps in these Ray workers (`cfmc.shards`), the
    chains split between them, everything else here; screen: once the run is complete, screen
    its kept candidates into `out`/screen (`cfmc.stability.workflow.screen_run`, these its
    options; {} for the defaults) and add the counts to summary.json under "screen".
    """
    out = runio.prepare(out, force=force, resume=resume)
    settings = dict(settings)
    if resume:
        check_resume(out, settings)
    k_init, k_run, k_lat = jax.random.split(jax.random.PRNGKey(options.seed), 3)
    t0 = time.time()
    saved: dict[str, np.ndarray] = {}
    if resume:
        saved, meta = runio.load_checkpoint(out)
        positions, start_info, first = runio.unpack_arrays("state", saved), meta["start"], int(
            meta["next_sweep"])
        t0 -= float(meta.get("seconds", 0.0))
    else:
        positions, start_info = start(k_init)
        first = 0
    cons = constraints(positions) if callable(constraints) else constraints
    sampler = (Sampler(posterior, cons, config, block) if shards is None
               else shards.sampler(posterior, cons, config, block, options.chains))
    state = sampler.init(positions, replicated=resume)
    fit_type = type(state.block_fit)
    if resume and state.block_fit is not None and f"block_fit.{fit_type._fields[0]}" in saved:
        state = state._replace(block_fit=fit_type(  # the proposal as fitted
            *(jnp.asarray(saved[f"block_fit.{f}"]) for f in fit_type._fields)))
    auto = BurnIn(max_sweeps=options.sweeps // 2) if options.burn_in is None else None
    recorder = Recorder(posterior, options.sweeps if auto else options.burn_in, k_lat)
    if resume:
        state = state._replace(step_sizes=dict(meta["step_sizes"]))
        if auto is not None and meta.get("burn_in") is not None:
            recorder.burn_in = int(meta["burn_in"])
        elif auto is not None:
            auto.history.extend(saved.get("burn_in.history", []))
        recorder.restore(saved, meta, first, state.cold())
        state = state._replace(swaps=meta.get("swaps", state.swaps))
    temperature = (annealing(options.anneal, posterior.temperature, options.burn_in)
                   if options.anneal else None)
    mixing: dict[str, Any] = {"until_rhat": options.until_rhat, "min_ess": options.min_ess}
    summary = {"command": command, "status": "running", "settings": settings,
               "seed": options.seed, "start": start_info, "conditioners": list(posterior.names),
               "schedule": [k if s == EVERY_SITE else f"{k}@{s}"
                            for k, s in sampler.schedule(np.asarray(positions.mask))]}
    progress = {"next": first, "state": state}

    def decided() -> bool:
        return auto is None or recorder.burn_in < options.sweeps

    def checkpoint(st: SamplerState, next_sweep: int) -> None:
        arrays, meta = recorder.state()
        arrays.update(runio.pack_arrays(
            "state", CrystalArrays(*(np.asarray(f) for f in st.position))))
        if st.block_fit is not None:
            arrays.update({f"block_fit.{k}": np.asarray(v)
                           for k, v in st.block_fit._asdict().items()})
        if not decided() and auto.history:
            arrays["burn_in.history"] = np.stack(auto.history)
        meta.update(settings=settings, next_sweep=next_sweep, step_sizes=st.step_sizes,
                    swaps=st.swaps,
                    start=start_info, seconds=time.time() - t0,
                    burn_in=recorder.burn_in if decided() else None)
        runio.save_checkpoint(out, arrays, meta)

    def after_sweep(i: int, full: SamplerState, stats: dict) -> dict[str, Any]:
        st = full.cold()  # the chains at temperature 1 are the output
        if not decided() and auto.update(i, st.logdensity):
            recorder.burn_in = i + 1
        recorder(i, st, stats)
        refitted = decided() and i + 1 == recorder.burn_in
        if refitted:  # before the checkpoint, so a resumed run goes on with the same proposal
            full = sampler.end_burn_in(full)
        progress.update(next=i + 1, state=full)
        if (i + 1) % options.checkpoint_every == 0:
            checkpoint(full, i + 1)
        if on_sweep is not None:
            on_sweep(i, st, stats)
        draws = recorder.trace.draws
        go_on = {"state": full} if refitted else {}  # run_sweeps continues from the refit
        if draws < 4 or draws % options.check_every:
            return go_on
        conv = convergence(recorder.trace)
        rhat, ess = worst(conv)
        seconds = time.time() - t0
        mixing.update(sweep=i + 1, rhat=rhat, ess_bulk=ess, ess_per_second=ess / seconds)
        stop = (options.until_rhat is not None or options.min_ess is not None) and has_mixed(
            conv, options.until_rhat, options.min_ess)
        mixing["reached"] = bool(stop)
        return {**go_on, "Rhat": f"{rhat:.3f}", "ESS": f"{ess:.0f}",
                "ESS/s": f"{ess / seconds:.1f}", "stop": stop}

    status = "complete"
    try:
        run_sweeps(sampler, state, k_run, options.sweeps, lambda: recorder.burn_in,
                   start=first, temperature=temperature, on_sweep=after_sweep,
                   progress=options.progress, desc=command)
    except BaseException:
        status = "interrupted"
        raise
    finally:
        if isinstance(sampler, ShardedSampler):
            sampler.close()
            summary["sharding"] = sampler.summary()
        checkpoint(progress["state"], progress["next"])
        summary.update(status=status, seconds=time.time() - t0, sweeps=progress["next"],
                       burn_in=recorder.burn_in if decided() else None,
                       burn_in_rule="fixed" if auto is None else "auto", mixing=mixing,
                       ladder=list(config.ladder),
                       swap_rates={k: (a / p if p else None)
                                   for k, (p, a) in progress["state"].swaps.items()},
                       step_sizes=progress["state"].step_sizes)
        names = ["log_posterior", "log_prior", "log_likelihood",
                 *[n for n in recorder.trace.columns if n.startswith("prior_")],
                 *[n for n in recorder.trace.columns
                   if not n.startswith(("log", "prior_"))]]
        chains, samples, summary = write_outputs(out, recorder, summary, options.top,
                                                 recorder.burn_in, names, extras)
        if status != "complete" or screen is None:
            write_report_safely(out)
    if screen is not None:  # the kept candidates, after the run's own outputs are on disk
        from cfmc.stability.workflow import screen_run

        try:
            summary["screen"] = screen_run(out, dict(screen), progress=options.progress)
        finally:
            if "screen" not in summary:
                summary["screen"] = {"status": "failed"}
            runio.write_summary(out, summary)
            write_report_safely(out)
    return RunResult(out, chains, samples, summary)


def write_report_safely(out: Path) -> None:
    """report.html of the run; a report that cannot be built is logged, never fails the run
    (`cfmc report RUN_DIR` rebuilds it from the files)."""
    from cfmc.report import write_report

    try:
        write_report(out)
    except Exception as e:  # the run's results are on disk whatever the page does
        logging.getLogger(__name__).warning("report.html not written: %s", e)
