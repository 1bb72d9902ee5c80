"""Predictor throughput: MEGNet band gap and formation energy, batched vs one structure per call.

    python benchmarks/bench_predictors.py [--rows 200] [--threads N] [--repeat 3]

Structures come from mp20_biternary_val (../shared or $CFMC_SHARED); checkpoints from
$CFMC_MODELS, else $CFMC_SHARED/models or ../shared/models. The cache is off, so every call
builds the graphs and runs the model. Reports the best of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

from cfmc.predictors import MEGNetBandGap, MEGNetFormationEnergy
from cfmc.predictors.megnet import set_torch_threads
from pymatgen.core import Structure

from cfmc.data import read_table, shared_dir


def best_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: cfmc's)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("CFMC_MODELS", str(shared_dir() / "models"))
    cifs = read_table(shared_dir() / "data" / "mp20_biternary_val.csv.gz", args.rows)["cif"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structures = [Structure.from_str(c, fmt="cif") for c in cifs]
    threads = set_torch_threads(args.threads)
    print(f"{len(structures)} structures, torch threads {threads}, batch size {args.batch_size}")
    for cls in (MEGNetFormationEnergy, MEGNetBandGap):
        p = cls(batch_size=args.batch_size, threads=threads, cache_size=0)
        p.predict(structures[:4])  # warm-up
        batched = best_time(lambda p=p: p.predict(structures), args.repeat)
        single = best_time(lambda p=p: [p.predict([s]) for s in structures], args.repeat)
        n = len(structures)
        print(
            f"{p.name:17s} batched {n / batched:7.1f} structures/s   "
            f"one at a time {n / single:7.1f} structures/s   (x{single / batched:.1f})"
        )


if __name__ == "__main__":
    main()
