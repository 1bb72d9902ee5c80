"""Conversion throughput: CIF text -> Crystal (symmetrise, standardise, Wyckoff sites).

    python benchmarks/bench_data.py [--rows 400]
"""

from __future__ import annotations

import argparse
import os
import time

from cfmc.data import convert_cifs, read_table, shared_dir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=400)
    args = ap.parse_args()
    cifs = read_table(shared_dir() / "data" / "mp20_biternary_val.csv.gz", args.rows)["cif"]
    cifs = cifs.tolist()
    cores = os.cpu_count() or 1
    convert_cifs(cifs[:5], n_jobs=1, progress=False)  # imports and table loading, not timed
    for jobs in sorted({1, cores}):
        t = time.perf_counter()
        res = convert_cifs(cifs, n_jobs=jobs, progress=False)
        dt = time.perf_counter() - t
        ok = sum(c is not None for c, _ in res)
        print(f"conversion, {jobs} process(es): {len(cifs) / dt:7.1f} crystals/s "
              f"({ok}/{len(cifs)} converted, {dt:.1f} s)")


if __name__ == "__main__":
    main()
