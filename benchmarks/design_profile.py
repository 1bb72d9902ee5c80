"""Where the time of a design run goes: prior model, predictors, host transfer, compilation.

Runs `cfmc.design.design` on the Fig. 9 posterior (space group 225, Gaussian targets band gap 2 eV
and formation energy -3 eV/atom of width 0.3, MEGNet through matgl, delayed acceptance, as
experiments/bandgap_eform_design.py) with timers wrapped around the stages of the run and the
host-side parts of every move, and prints a table of inclusive seconds per item (nested items
indented; an item's seconds include those of the items under it).

    python benchmarks/design_profile.py [--chains 32] [--sweeps 4] [--pool 16]
                                        [--cache DIR | --no-cache]

Compilation comes from jax.monitoring (tracing, lowering and XLA compiling, persistent-cache
hits included) and is also charged to the stage it happened in. "device -> host reads" times
`numpy.asarray` of JAX arrays, which includes waiting for the dispatched computation to finish.
By default the persistent compilation cache is a fresh temporary folder (a first run); give
`--cache DIR` twice to see a second run.
"""

from __future__ import annotations

import argparse
import collections
import functools
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jax

TARGETS = {"band_gap": 2.0, "formation_energy": -3.0}
SIGMAS = {"band_gap": 0.3, "formation_energy": 0.3}
COMPILE_EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "tracing",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lowering",
    "/jax/core/compile/backend_compile_duration": "XLA compiling (or cache load)",
}

seconds: dict[str, float] = collections.defaultdict(float)
calls: dict[str, int] = collections.defaultdict(int)
stage = ["set-up"]


def _timed(name: str, fn: Callable, is_stage: bool = False) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        before = stage[0]
        if is_stage:
            stage[0] = name
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds[name] += time.perf_counter() - t0
            calls[name] += 1
            stage[0] = before

    return wrapper


def _patch(owner, attr: str, name: str, is_stage: bool = False) -> None:
    setattr(owner, attr, _timed(name, getattr(owner, attr), is_stage))


def _on_event(event: str, duration: float, **kwargs) -> None:
    label = COMPILE_EVENTS.get(event)
    if label is not None:
        seconds[f"compile: {label}"] += duration
        calls[f"compile: {label}"] += 1
        seconds[f"compile in {stage[0]}"] += duration


def instrument() -> None:
    """Wrap the stages of a design run and the host-side parts of its moves with timers."""
    import spglib
    from cfmc.predictors import megnet
    from jax._src.array import ArrayImpl

    import cfmc.crystal
    import cfmc.design
    import cfmc.kernels.base
    import cfmc.run
    from cfmc import priors
    from cfmc.guard import PhysicalGuard
    from cfmc.posterior import Posterior
    from cfmc.record import Recorder
    from cfmc.sweep import Sampler

    jax.monitoring.register_event_duration_secs_listener(_on_event)
    _patch(priors, "load_prior", "load prior", True)
    _patch(cfmc.design, "pool_start", "start: prior pool, its predictions, best starts", True)
    _patch(Sampler, "init", "chain init", True)
    _patch(Sampler, "sweep", "sweeps", True)
    _patch(Recorder, "__call__", "recording draws", True)
    _patch(cfmc.run, "write_outputs", "outputs (CSV, trace, CIF, plots)", True)
    _patch(cfmc.run, "write_report_safely", "report.html", True)
    _patch(cfmc.design, "_figures", "Fig. 9 panels", True)
    _patch(cfmc.kernels.base, "_host_conditioners", "host conditioners inside moves")
    _patch(Posterior, "conditioner_logdensity", "conditioners (every call)")
    _patch(cfmc.crystal, "from_arrays", "crystals from arrays")
    _patch(PhysicalGuard, "physical", "physical guard (builds the structure)")
    _patch(cfmc.crystal.Crystal, "to_structure", "structure building")
    _patch(megnet.MEGNetPredictor, "_predict_batch", "MEGNet batches")
    _patch(megnet.MEGNetPredictor, "_graph", "graph construction")
    _patch(spglib, "get_symmetry_dataset", "spglib")
    _patch(ArrayImpl, "__array__", "device -> host reads")


ROWS = [
    ("load prior", 0),
    ("start: prior pool, its predictions, best starts", 0),
    ("compile in start: prior pool, its predictions, best starts", 1),
    ("chain init", 0),
    ("compile in chain init", 1),
    ("sweeps", 0),
    ("compile in sweeps", 1),
    ("host conditioners inside moves", 1),
    ("prior model and kernels (sweeps less the two above)", 1),
    ("recording draws", 0),
    ("compile in recording draws", 1),
    ("outputs (CSV, trace, CIF, plots)", 0),
    ("compile in outputs (CSV, trace, CIF, plots)", 1),
    ("Fig. 9 panels", 0),
    ("report.html", 0),
    ("conditioners (every call)", 0),
    ("crystals from arrays", 1),
    ("physical guard (builds the structure)", 1),
    ("structure building", 2),
    ("MEGNet batches", 1),
    ("graph construction", 2),
    ("MEGNet forward and batching (batches less graphs)", 2),
    ("spglib", 0),
    ("device -> host reads", 0),
    ("compile: tracing", 0),
    ("compile: lowering", 0),
    ("compile: XLA compiling (or cache load)", 0),
    ("compile (all)", 0),
]


def main(argv: list[str] | None = None) -> int:
    """Run one profiled design run and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chains", type=int, default=32)
    p.add_argument("--sweeps", type=int, default=4)
    p.add_argument("--burn-in", type=int, default=2)
    p.add_argument("--pool", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=None, help="persistent compilation cache folder")
    p.add_argument("--no-cache", action="store_true", help="no persistent compilation cache")
    p.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    args = p.parse_args(argv)

    from cfmc import priors
    from cfmc.design import design
    from cfmc.targets import gaussian_targets

    tmp = tempfile.TemporaryDirectory()
    if not args.no_cache:
        priors.config.enable_compilation_cache(args.cache or str(Path(tmp.name) / "jax"))
    instrument()
    out = args.out or str(Path(tmp.name) / "run")
    t0 = time.perf_counter()
    design(gaussian_targets(TARGETS, SIGMAS), out, spacegroup=225,
                    chains=args.chains, sweeps=args.sweeps, burn_in=args.burn_in, pool=args.pool,
                    seed=args.seed, delayed_acceptance=True, force=True, progress=False)
    wall = time.perf_counter() - t0
    seconds["prior model and kernels (sweeps less the two above)"] = (
        seconds["sweeps"] - seconds["compile in sweeps"]
        - seconds["host conditioners inside moves"])
    seconds["MEGNet forward and batching (batches less graphs)"] = (
        seconds["MEGNet batches"] - seconds["graph construction"])
    seconds["compile (all)"] = sum(v for k, v in seconds.items() if k.startswith("compile: "))
    calls["compile (all)"] = calls["compile: XLA compiling (or cache load)"]

    print(f"design run: {args.chains} chains x {args.sweeps} sweeps, pool {args.pool}, "
          f"delayed acceptance; jax {jax.__version__} on {jax.devices()[0].platform}; "
          f"cache: {'off' if args.no_cache else args.cache or 'fresh'}")
    print(f"{'item':<58}{'seconds':>9}{'share':>7}{'calls':>9}")
    for name, depth in ROWS:
        s = seconds.get(name, 0.0)
        n = calls.get(name)
        print(f"{'  ' * depth + name:<58}{s:9.2f}{s / wall:7.0%}{n if n else '':>9}")
    print(f"{'wall':<58}{wall:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
