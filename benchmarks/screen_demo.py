"""The stability screen on the `make demo` candidates: hull completeness and wall time.

Screens the run twice, first with an empty hull cache (cold), then again with the cache it built
(warm), and reports: candidates whose decomposition includes a pure element, the lowest E_hull
(none should sit more than 0.3 eV/atom below its hull), S.U.N. counts, and both wall and CPU
times (CPU of this process and of the screen's worker processes together), with the machine's
load average before and after each pass.

    python benchmarks/screen_demo.py [--run runs/demo] [--out runs/bench/screen_demo] [--workers N]
        [--ternary-oxidation]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the screen's workers)."""
    import resource

    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def main() -> None:
    from cfmc.stability import screen

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo", help="run folder or samples CSV")
    ap.add_argument("--out", default="runs/bench/screen_demo")
    ap.add_argument("--warm-only", action="store_true", help="reuse the cache, one timed run")
    ap.add_argument("--workers", type=int, default=None,
                    help="worker processes of the screen (default: min(2, CPUs))")
    ap.add_argument("--ternary-oxidation", action="store_true",
                    help="the hull with ternaries at further oxidation states too")
    args = ap.parse_args()
    if not Path(args.run).exists():
        print(f"no run at {args.run}: make demo first (or pass --run)")
        return
    out = Path(args.out)
    cache = out / "hull_cache"
    report: dict = {"run": str(args.run)}
    passes = ["warm"] if args.warm_only else ["cold", "warm"]
    if not args.warm_only and cache.exists():
        shutil.rmtree(cache)
    for name in passes:
        report[f"load_before_{name}"] = [round(x, 2) for x in os.getloadavg()]
        t, c = time.perf_counter(), cpu_seconds()
        res = screen(args.run, out / name, force=True, cache=cache, workers=args.workers,
                     ternary_oxidation=args.ternary_oxidation)
        report[f"seconds_{name}"] = round(time.perf_counter() - t, 1)
        report[f"cpu_seconds_{name}"] = round(cpu_seconds() - c, 1)
        report[f"load_after_{name}"] = [round(x, 2) for x in os.getloadavg()]
        summary = json.loads((out / name / "screen_summary.json").read_text())
        report[f"hull_build_{name}"] = summary.get("hull_build")
        report["workers"] = summary.get("workers")
        (out / "report.json").write_text(json.dumps(report, indent=1))
    ok = res[res["status"] == "ok"]
    report.update({
        "n_input": len(res), "n_screened": len(ok), "n_failed": int((res["status"] != "ok").sum()),
        "n_decomposes_to_element": int(ok["decomposes_to_element"].sum()),
        "e_hull_min": float(ok["e_hull"].min()),
        "n_below_hull_by_more_than_0.3": int((ok["e_hull"] < -0.3).sum()),
        "n_below_hull": int((ok["e_hull"] < 0).sum()),
        "e_hull_median": float(ok["e_hull"].median()),
        "n_stable": int(ok["stable"].sum()), "n_novel": int(ok["novel"].sum()),
        "n_unique": int(ok["unique"].sum()), "n_sun": int(ok["sun"].sum()),
        "relax_converged": int(ok["converged"].sum()),
        "symmetry_kept": int(ok["symmetry_kept"].sum()),
        "volume_change_range": [float(ok["volume_change"].min()),
                                float(ok["volume_change"].max())],
    })
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
