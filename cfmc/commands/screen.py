"""`cfmc screen RUN_DIR|CSV`: relax candidates, E_hull against an offline hull, S.U.N. flags."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `cfmc screen`."""
    parser.add_argument("source", help="a run folder (its samples.csv) or a CSV with `cif`")
    parser.add_argument("--out", default=None,
                        help="output folder (default: SOURCE_FOLDER/screen for a run folder, "
                             "CSV_STEM_screen beside a CSV)")
    parser.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    parser.add_argument("--cache", default=None,
                        help="hull cache folder (default $CFMC_HULL_CACHE or ~/.cache/cfmc/hull)")
    parser.add_argument("--scale", choices=("potential", "mp"), default="potential",
                        help="energies of known phases: the potential's (one scale, default) or "
                             "MP's formation energies")
    parser.add_argument("--fix-symmetry", action="store_true",
                        help="keep each candidate's space group during relaxation")
    parser.add_argument("--fmax", type=float, default=0.05, help="force threshold (eV/A)")
    parser.add_argument("--steps", type=int, default=300, help="most optimizer steps")
    parser.add_argument("--workers", type=_positive, default=None, metavar="N",
                        help="processes that build the missing reference hull and relax the "
                             "candidates (default: min(2, CPUs); 1: this process only)")
    parser.add_argument("--ternary-oxidation", action="store_true",
                        help="also generate ternaries at the cations' further oxidation states "
                             "(K3MoF6 at Mo3+, say): a more complete hull, at about half as much "
                             "cold-cache time again")
    parser.add_argument("--no-intermetallics", action="store_true",
                        help="leave the generated intermetallic ternaries (Heusler, TiNiSi, ... "
                             "types) out of the hull of metal systems: faster, less complete")
    parser.add_argument("--no-plots", action="store_true", help="skip the hull plots")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def default_out(source: str) -> Path:
    """Where results go when --out is not given."""
    path = Path(source)
    return path / "screen" if path.is_dir() else path.with_name(path.name.split(".")[0] + "_screen")


def run(args: argparse.Namespace) -> int:
    from cfmc.stability import screen

    out = Path(args.out) if args.out else default_out(args.source)
    screen(args.source, out, force=args.force, cache=args.cache, scale=args.scale,
           fix_symmetry=args.fix_symmetry, fmax=args.fmax, steps=args.steps,
           plots=not args.no_plots, progress=not args.no_progress, workers=args.workers,
           ternary_oxidation=args.ternary_oxidation, intermetallics=not args.no_intermetallics)
    summary = json.loads((out / "screen_summary.json").read_text())
    keys = ("n_input", "n_screened", "n_failed", "n_stable", "n_novel", "n_unique", "n_sun",
            "sun_rate", "seconds_total")
    print(json.dumps({k: summary[k] for k in keys}))
    print(f"wrote {out / 'screened.csv'} and {out / 'screen_summary.json'}")
    print(summary["estimate"])
    return 0
