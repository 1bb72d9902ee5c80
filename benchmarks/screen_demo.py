"""The stability screen on the `make demo` candidates: hull completeness and wall time.

Screens the run twice, first with an empty hull cache (cold), then again with the cache it built
(warm), and reports: candidates whose decomposition includes a pure element, the lowest E_hull
(none should sit more than 0.3 eV/atom below its hull), S.U.N. counts, and both wall times.

    python benchmarks/screen_demo.py [--run runs/demo] [--out runs/bench/screen_demo]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path


def main() -> None:
    from cfmc.stability import screen

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo", help="run folder or samples CSV")
    ap.add_argument("--out", default="runs/bench/screen_demo")
    ap.add_argument("--warm-only", action="store_true", help="reuse the cache, one timed run")
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
        t, c = time.perf_counter(), time.process_time()
        res = screen(args.run, out / name, force=True, cache=cache)
        report[f"seconds_{name}"] = round(time.perf_counter() - t, 1)
        report[f"cpu_seconds_{name}"] = round(time.process_time() - c, 1)
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
