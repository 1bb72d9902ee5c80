"""Mixing of the samplers, side by side: R-hat and bulk ESS of the log posterior, wall time and
ESS per second, for the double perovskite infill (default 1000 chains) with the earlier default
moves and with the current defaults, and optionally for the Fig. 9 design posterior (band gap
2 eV and formation energy -3 eV/atom, MEGNet in the loop).

    python benchmarks/convergence.py [--chains 1000] [--sweeps 50] [--max-sweeps 400]
        [--tries 8] [--until-rhat 1.01] [--design | --design-only] [--out DIR]
        [--baseline-run DIR] [--resume]

The earlier defaults run --sweeps sweeps; the current ones run until every traced scalar has
split R-hat at most --until-rhat (checked every 5 recorded draws), at most --max-sweeps.
The design runs (`--design`, or `--design-only` without the infill ones) compare site moves
alone (20 sweeps of burn-in) with the crystal pool block move (--tries proposals, i-SIR) plus
site moves (burn-in decided by the chains), --design-sweeps each (40, as Fig. 9), the second
stopping early at --design-until-rhat if given; each reports R-hat of the log posterior and of
its Wyckoff term, and the distance-to-target ratios.

Every run is a real run directory under --out (summary.json, trace.nc, report.html); with
--resume the runs saved there continue from their checkpoints (the caps may grow, the other
settings must be the same), so a long design run can go on over several sessions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

TEMPLATE = "225-a-[?]-0-0-0-b-[?]-1/2-1/2-c-[?]-1/4-1/4-e-[?]-[?]-0-0"
DIFFER = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]


def infill_settings(chains: int, sweeps: int, tries: int, until_rhat: float,
                    max_sweeps: int) -> dict[str, dict]:
    """The earlier defaults (site moves from a uniform start, 20 sweeps of burn-in) and the
    current ones (`make demo`: the pool block move by i-SIR with `tries` proposals, starts
    resampled from the refined pool, burn-in decided by the chains, run until mixed)."""
    return {
        "site moves (earlier default)": {"chains": chains, "sweeps": sweeps, "burn_in": 20},
        f"pool block x{tries} + site moves": {
            "chains": chains, "sweeps": max_sweeps, "burn_in": None, "block": True,
            "block_proposal": "pool", "block_tries": tries, "init": "pool",
            "until_rhat": until_rhat},
    }


def row(name: str, summary: dict, seconds: float) -> dict:
    conv = summary.get("convergence", {})
    worst_rhat = max((v["rhat"] for v in conv.values() if v["rhat"] == v["rhat"]), default=None)
    lp = conv.get("log_posterior", {})
    ess = lp.get("ess_bulk", float("nan"))
    return {"run": name, "rhat_log_posterior": lp.get("rhat"), "rhat_worst": worst_rhat,
            "ess_bulk_log_posterior": ess, "seconds": seconds, "ess_per_second": ess / seconds,
            "burn_in": summary.get("burn_in"), "sweeps": summary.get("sweeps"),
            "acceptance": {k: round(v["acceptance"], 3) for k, v in summary["kernels"].items()
                           if v.get("proposed")},
            "rhat_wyckoff": conv.get("prior_wyckoff", {}).get("rhat")}


def saved_row(name: str, run_dir: Path) -> dict:
    """The row of a run already on disk (its own seconds; distance ratios of a design run)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    r = row(f"{name}, {run_dir}", summary, summary["seconds"])
    if "metrics" in summary:
        r["distance_ratio"] = {n: m["ratio"] for n, m in summary["metrics"].items()}
    return r


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chains", type=int, default=1000)
    p.add_argument("--sweeps", type=int, default=50)
    p.add_argument("--design", action="store_true", help="also the Fig. 9 design posterior")
    p.add_argument("--design-only", action="store_true", help="only the Fig. 9 design posterior")
    p.add_argument("--design-chains", type=int, default=256)
    p.add_argument("--design-sweeps", type=int, default=40,
                   help="sweeps of the design runs (the cap with --design-until-rhat)")
    p.add_argument("--design-until-rhat", type=float, default=None, metavar="R",
                   help="stop the pool-block design run once every traced scalar has R-hat <= R")
    p.add_argument("--max-sweeps", type=int, default=400,
                   help="cap of the current defaults' run (it stops once mixed)")
    p.add_argument("--until-rhat", type=float, default=1.01)
    p.add_argument("--tries", type=int, default=8, help="proposals per pool block move")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/bench_convergence"))
    p.add_argument("--baseline-run", type=Path, default=None,
                   help="an existing run directory of the earlier defaults (e.g. `make demo` "
                   "before the change) to report instead of running them again")
    p.add_argument("--design-baseline-run", type=Path, default=None,
                   help="an existing run directory of the design site-moves run to report "
                   "instead of running it again")
    p.add_argument("--resume", action="store_true",
                   help="continue the runs saved in --out instead of starting them again")
    args = p.parse_args(argv)
    from cfmc.infill import infill

    again = {"force": not args.resume, "resume": args.resume}

    def seconds(summary: dict, t0: float) -> float:
        # a resumed run: the summary's seconds, which add up the sessions it ran in
        return summary["seconds"] if args.resume else time.time() - t0

    rows = []
    settings = infill_settings(args.chains, args.sweeps, args.tries, args.until_rhat,
                               args.max_sweeps)
    for k, (name, opts) in enumerate(settings.items()):
        if args.design_only:
            break
        if k == 0 and args.baseline_run is not None:
            rows.append(saved_row(name, args.baseline_run))
            print(json.dumps(rows[-1]), flush=True)
            continue
        t0 = time.time()
        res = infill(TEMPLATE, args.out / f"infill{k}", differ=DIFFER, seed=args.seed,
                     progress=False, **again, **opts)
        rows.append(row(name, res.summary, seconds(res.summary, t0)))
        print(json.dumps(rows[-1]), flush=True)
    if args.design or args.design_only:
        from cfmc.design import design
        from cfmc.targets import gaussian_targets

        target = {"band_gap": 2.0, "formation_energy": -3.0}
        sigmas = {"band_gap": 0.3, "formation_energy": 0.3}
        for k, (name, opts) in enumerate({
            "design, site moves (earlier default)": {"burn_in": 20},
            f"design, pool block x{args.tries} + site moves": {
                "burn_in": None, "block": True, "block_proposal": "pool",
                "block_tries": args.tries, "until_rhat": args.design_until_rhat},
        }.items()):
            if k == 0 and args.design_baseline_run is not None:
                rows.append(saved_row(name, args.design_baseline_run))
                print(json.dumps(rows[-1]), flush=True)
                continue
            t0 = time.time()
            res = design(gaussian_targets(target, sigmas), args.out / f"design{k}",
                         spacegroup=225, chains=args.design_chains, sweeps=args.design_sweeps,
                         pool=16,
                         delayed_acceptance=True, seed=args.seed, progress=False, **again,
                         **opts)
            r = row(name, res.summary, seconds(res.summary, t0))
            r["distance_ratio"] = {n: m["ratio"] for n, m in res.summary["metrics"].items()}
            rows.append(r)
            print(json.dumps(r), flush=True)
    print(f"\n{'run':<44}{'R-hat':>8}{'Wyckoff':>8}{'worst':>8}{'ESS':>8}{'s':>8}{'ESS/s':>8}")
    for r in rows:
        print(f"{r['run']:<44}{r['rhat_log_posterior']:>8.3f}{r['rhat_wyckoff'] or 0:>8.3f}"
              f"{r['rhat_worst'] or 0:>8.3f}{r['ess_bulk_log_posterior']:>8.0f}"
              f"{r['seconds']:>8.0f}{r['ess_per_second']:>8.2f}")
    (args.out / "convergence.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
