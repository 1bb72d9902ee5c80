"""Options and messages shared by the sampling commands (`infill`, `design`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def burn_in(text: str) -> int | None:
    """`--burn-in`: a number of sweeps, or 'auto' (decided by the chains' log densities)."""
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of sweeps or 'auto', got '{text}'") from None


def add_worker_arguments(p: argparse.ArgumentParser) -> None:
    """--workers and --ray-address (Ray, an optional extra)."""
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="split the work over N Ray workers (a local Ray cluster unless "
                   "--ray-address; needs pip install 'cfmc[ray]')")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="run the workers on the Ray cluster at ADDR ('auto': the one this "
                   "machine joined with `ray start`)")


def add_run_arguments(p: argparse.ArgumentParser, sweeps: int, burn: str,
                      block: bool) -> None:
    """Options every sampling run takes (with the command's defaults)."""
    p.add_argument("--sweeps", type=int, default=sweeps,
                   help="total sweeps, burn-in included (the cap with --until-rhat)")
    p.add_argument("--burn-in", type=burn_in, default=burn, metavar="N|auto",
                   help=f"burn-in sweeps, or 'auto': until the chains' log density stops rising "
                   f"(default {burn})")
    p.add_argument("--until-rhat", type=float, default=None, metavar="R",
                   help="stop once every traced scalar has R-hat <= R (e.g. 1.01)")
    p.add_argument("--min-ess", type=float, default=None, metavar="N",
                   help="... and bulk ESS >= N (e.g. 400)")
    p.add_argument("--ladder", type=float, nargs="+", default=[1.0], metavar="T",
                   help="replica exchange over these temperatures (first 1, increasing; "
                   "multiples of --temperature); the output is the temperature-1 replica")
    p.add_argument("--block", action=argparse.BooleanOptionalAction, default=block,
                   help="a prior block move in every sweep (redraws all blanks, or in free "
                   "design the whole sequence, from the prior's conditionals; exact)")
    p.add_argument("--block-proposal", choices=("prior", "pool"), default="prior",
                   help="the block move's proposal: the prior's sampler, or a pool of its draws "
                   "weighted towards the posterior (cheap; drawn once, before the run; in "
                   "design the prior samples drawn for the starts)")
    p.add_argument("--block-tries", type=int, default=1, metavar="K",
                   help="proposals per block move: 1 is Metropolis-Hastings, more run i-SIR "
                   "(moves to one of them in proportion to its importance weight)")
    p.add_argument("--allow-radioactive", action="store_true",
                   help="allow Tc, Pm and Z >= 84 (excluded by default)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prior", default=None, help="prior checkpoint directory (default: shipped)")
    add_worker_arguments(p)
    p.add_argument("--chunk", type=int, default=None, metavar="N",
                   help="chains per vectorised chunk (fixed: the chains are the same however "
                   "they are batched or sharded; a sharded run uses one shard's chains)")
    p.add_argument("--devices", type=int, default=None, metavar="N",
                   help="split the chains of every move over N local JAX devices (default: "
                   "all; several GPUs, say)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--force", action="store_true", help="overwrite the outputs in --out")
    p.add_argument("--out", required=True, help="run directory")


def add_screen_arguments(p: argparse.ArgumentParser) -> None:
    """`--screen` and its options: the stability screen of the kept candidates at the end."""
    p.add_argument("--screen", action="store_true",
                   help="at the end, relax the kept candidates and estimate E_hull and S.U.N. "
                   "(machine-learned; written to OUT/screen, counts in summary.json)")
    p.add_argument("--hull-cache", default=None, metavar="DIR",
                   help="hull cache folder of --screen (default $CFMC_HULL_CACHE or "
                   "~/.cache/cfmc/hull)")
    p.add_argument("--screen-steps", type=int, default=300, metavar="N",
                   help="most relaxation steps per candidate in --screen")
    p.add_argument("--screen-fix-symmetry", action="store_true",
                   help="keep each candidate's space group while relaxing in --screen")


def screen_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The `screen` argument of the library front doors (None without --screen)."""
    if not args.screen:
        return None
    options: dict[str, Any] = {"steps": args.screen_steps,
                               "fix_symmetry": args.screen_fix_symmetry}
    if args.hull_cache:
        options["cache"] = args.hull_cache
    return options


def site_pairs(items: list[str], option: str) -> list[tuple[int, ...]]:
    """`["0,1", ...]` -> `[(0, 1), ...]`; errors name the option and the item."""
    out = []
    for s in items:
        try:
            out.append(tuple(int(v) for v in s.split(",")))
        except ValueError:
            raise ValueError(f"--{option} '{s}': expected comma-separated site indices") from None
    return out


def site_elements(items: list[str]) -> dict[int, list[str]]:
    """`["1:Ba,Sr", ...]` -> `{1: ["Ba", "Sr"]}`."""
    out: dict[int, list[str]] = {}
    for s in items:
        site, sep, els = s.partition(":")
        if not sep or not site.strip().isdigit():
            raise ValueError(f"--site-elements '{s}': expected I:EL,EL")
        out[int(site)] = [e for e in els.split(",") if e]
    return out


def report(out: Path, summary: dict[str, Any], candidates: int) -> None:
    """One closing line: where the results are, how many, and the acceptance rates."""
    rates = ", ".join(f"{k} {v['acceptance']:.2f}" for k, v in summary["kernels"].items()
                      if v.get("proposed"))
    print(f"{summary['status']}: {candidates} candidates in {out}/samples.csv "
          f"({summary['seconds']:.0f} s; acceptance {rates})")
    screened = summary.get("screen")
    if screened and "n_sun" in screened:
        print(f"screen: {screened['n_sun']} S.U.N. of {screened['n_input']} "
              f"({screened['n_stable']} stable, {screened['n_failed']} failed) in "
              f"{out}/{screened['folder']}; {screened['estimate']}")
