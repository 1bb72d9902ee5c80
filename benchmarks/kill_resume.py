"""kill -9 and SIGINT at random points of small infill runs (tiny prior, each in its own
interpreter), each followed by `--resume`; counts the runs whose samples.csv, cif/ and trace
equal the uninterrupted run's with no stale files (temporaries, the lock).

    .venv/bin/python benchmarks/kill_resume.py --runs 20     # about 25 s per run on 2 cores
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# a child that turns SIGINT into KeyboardInterrupt even when started from a background job
# (where the shell ignores SIGINT and the child would inherit that)
CLI = ["-c", "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
       "from cfmc.cli import main; sys.exit(main())"]
TEMPLATE = "225-a-[?]-0-0-0-b-[?]-1/2-1/2-c-[?]-1/4-1/4-e-[?]-[?]-0-0"


def args(prior: Path, out: Path, seed: int, extra: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, *CLI, "infill", TEMPLATE, "--chains", "16", "--sweeps",
            "24", "--burn-in", "4", "--elements", "Ca", "Sr", "Ti", "Zr", "O", "F", "--top", "6",
            "--seed", str(seed), "--prior", str(prior), "--checkpoint-every", "2",
            "--no-progress", "--out", str(out), *extra]


def same_run(a: Path, b: Path) -> tuple[bool, str]:
    import arviz as az

    if (a / "samples.csv").read_bytes() != (b / "samples.csv").read_bytes():
        return False, "samples.csv differs"
    names = [sorted(p.name for p in (x / "cif").iterdir()) for x in (a, b)]
    if names[0] != names[1]:
        return False, "cif/ differs"
    ta, tb = az.from_netcdf(a / "trace.nc"), az.from_netcdf(b / "trace.nc")
    for name in ta.posterior.data_vars:
        if not np.array_equal(ta.posterior[name].values, tb.posterior[name].values):
            return False, f"trace {name} differs"
    stale = [p.name for p in b.rglob("*") if p.name.endswith(".tmp") or p.name == ".cfmc.lock"]
    return (not stale), f"stale files {stale}" if stale else "identical"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="of the interruption points")
    opts = parser.parse_args()
    import jax

    from cfmc import priors

    rng = random.Random(opts.seed)
    env = dict(os.environ, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    good = 0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        env["JAX_COMPILATION_CACHE_DIR"] = str(tmp / "jax_cache")
        prior = tmp / "tiny"
        config = priors.get_config("tiny").replace(init_scale=0.5)
        priors.save_prior(priors.CrystalFormer(config, jax.random.PRNGKey(0)), prior)
        refs = {}
        for seed in (0, 1):
            refs[seed] = tmp / f"ref{seed}"
            subprocess.run(args(prior, refs[seed], seed), env=env, check=True, cwd=ROOT,
                           stderr=subprocess.DEVNULL)
        for k in range(opts.runs):
            seed, sig = k % 2, (signal.SIGKILL, signal.SIGINT)[(k // 2) % 2]
            out = tmp / f"run{k}"
            p = subprocess.Popen(args(prior, out, seed), env=env, cwd=ROOT,
                                 stderr=subprocess.DEVNULL)
            while not (out / ".cfmc.lock").exists() and p.poll() is None:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 8.0))  # anywhere in start-up, burn-in or sampling
            p.send_signal(sig)
            rc = p.wait()
            ckpt = (out / "checkpoint.npz").exists()
            extra = ("--resume",) if ckpt else ("--force",)  # killed before the first checkpoint
            r = subprocess.run(args(prior, out, seed, extra), env=env, cwd=ROOT,
                               capture_output=True, text=True)
            ok, why = ((False, r.stderr.strip()[-200:]) if r.returncode
                       else same_run(refs[seed], out))
            good += ok
            print(f"run {k:2d} seed {seed} {sig.name:7s} rc {rc:4d} then {extra[0]:8s}: "
                  f"{'good' if ok else 'BAD'} ({why})", flush=True)
    print(f"\n{good} of {opts.runs} interrupted runs resumed to results identical to the "
          "uninterrupted run, with no stale files")
    return 0 if good == opts.runs else 1


if __name__ == "__main__":
    sys.exit(main())
