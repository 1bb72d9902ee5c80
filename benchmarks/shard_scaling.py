"""Sharded runs of the Fig. 9 design posterior (MEGNet band gap 2 eV, formation energy -3 eV/atom
in space group 225): one process, 1 and 2 local Ray workers, and 2 workers with one worker killed
mid-run.

    python benchmarks/shard_scaling.py [--chains 64] [--sweeps 10] [--out runs/bench/shards]

Prints the wall time of each run, the speed-up of 2 workers over 1, chain-sweeps and chains per
hour per worker, the driver's merge overhead, and whether every sharded run (the killed one
included) is bit-identical to the one-process run with the same chunk. The machine's CPU count
bounds the speed-up.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import arviz as az
import numpy as np

from cfmc import shards
from cfmc.design import design
from cfmc.targets import gaussian_targets

TARGETS = {"band_gap": 2.0, "formation_energy": -3.0}
SIGMAS = {"band_gap": 0.3, "formation_energy": 0.3}


def identical(a: Path, b: Path) -> bool:
    """Same trace (every variable, bit for bit) and the same final chains."""
    ta, tb = az.from_netcdf(a / "trace.nc"), az.from_netcdf(b / "trace.nc")
    same = all(np.array_equal(ta.posterior[v].values, tb.posterior[v].values)
               for v in ta.posterior.data_vars)
    ca, cb = (np.genfromtxt(p / "chains.csv", delimiter=",", dtype=str) for p in (a, b))
    return same and np.array_equal(ca, cb)


def max_difference(a: Path, b: Path) -> float:
    """Largest absolute difference of any traced variable."""
    ta, tb = az.from_netcdf(a / "trace.nc"), az.from_netcdf(b / "trace.nc")
    return max(float(np.nanmax(np.abs(ta.posterior[v].values - tb.posterior[v].values)))
               for v in ta.posterior.data_vars)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chains", type=int, default=64)
    p.add_argument("--sweeps", type=int, default=10)
    p.add_argument("--burn-in", type=int, default=5)
    p.add_argument("--pool", type=int, default=4)
    p.add_argument("--kill-after", type=int, default=4, help="sweep after which a worker dies")
    p.add_argument("--out", default="runs/bench/shards")
    args = p.parse_args(argv)
    out = Path(args.out)
    chunk = shards.shard_chunk(args.chains, 2, 1, 128)
    common = dict(spacegroup=225, chains=args.chains, sweeps=args.sweeps, burn_in=args.burn_in,
                  pool=args.pool, seed=0, delayed_acceptance=True, force=True, progress=False,
                  chunk=chunk)

    def run(name: str, **kw) -> dict:
        t0 = time.time()
        r = design(gaussian_targets(TARGETS, SIGMAS), out / name, **common, **kw)
        wall = time.time() - t0
        print(f"{name}: {wall:.1f} s wall, {r.summary['seconds']:.1f} s in run_chains",
              flush=True)
        return {"wall": wall, "summary": r.summary}

    results = {"one_process": run("one_process")}
    for w in (1, 2):
        results[f"workers{w}"] = run(f"workers{w}", workers=w)

    original = shards.ShardedSampler.sweep
    seen = {"sweeps": 0}

    def sweep_then_kill(self, key, state, temperature=None):
        new = original(self, key, state, temperature)
        seen["sweeps"] += 1
        if seen["sweeps"] == args.kill_after:
            os.kill(self.timings[-1].pid, signal.SIGKILL)  # the last shard's worker dies
        return new

    shards.ShardedSampler.sweep = sweep_then_kill
    try:
        results["workers2_killed"] = run("workers2_killed", workers=2)
    finally:
        shards.ShardedSampler.sweep = original

    one, w1, w2 = (results[k]["summary"] for k in ("one_process", "workers1", "workers2"))
    chain_sweeps = args.chains * args.sweeps
    print(f"\n{args.chains} chains x {args.sweeps} sweeps (burn-in {args.burn_in}), chunk "
          f"{chunk}, {os.cpu_count()} CPUs")
    for k, r in results.items():
        s = r["summary"]
        sh = s.get("sharding")
        line = f"{k:<16} {s['seconds']:7.1f} s"
        if sh:
            n = sh["workers"]
            line += (f"  chain-sweeps/h/worker {chain_sweeps / s['seconds'] * 3600 / n:8.0f}"
                     f"  chains/h/worker {args.chains / s['seconds'] * 3600 / n:6.0f}"
                     f"  merge {sh['merge_seconds']:.2f} s"
                     f"  shard s {[round(t['seconds'], 1) for t in sh['shards']]}"
                     f"  startup s {[round(t['startup'], 1) for t in sh['shards']]}"
                     f"  restarts {[t['restarts'] for t in sh['shards']]}")
        print(line)
    print(f"speed-up 2 workers / 1 worker: {w1['seconds'] / w2['seconds']:.2f} "
          f"(ceiling on this machine: {os.cpu_count()} CPUs)")
    print(f"speed-up 2 workers / one process: {one['seconds'] / w2['seconds']:.2f}")
    for k in ("workers1", "workers2", "workers2_killed"):
        same = identical(out / "one_process", out / k)
        diff = ("" if same else
                f" (max |difference| {max_difference(out / 'one_process', out / k):.2e})")
        print(f"{k} bit-identical to one process: {same}{diff}")
    killed = results["workers2_killed"]["summary"]
    complete = killed["status"] == "complete" and killed["draws"] == args.sweeps - args.burn_in
    print(f"killed run complete: {complete}, restarts "
          f"{[t['restarts'] for t in killed['sharding']['shards']]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
