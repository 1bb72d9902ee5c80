"""`cfmc data stats FILE...`: counts, skips by reason, space-group and site-count histograms."""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from cfmc.arrays import DEFAULT_MAX_SITES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    stats = sub.add_parser("stats", help="summarise one or more CSV files in the CDVAE layout")
    stats.add_argument("files", nargs="+", help="CSV(.gz) files with a 'cif' column")
    stats.add_argument("--max-sites", type=int, default=DEFAULT_MAX_SITES)
    stats.add_argument("--symprec", type=float, default=0.1)
    stats.add_argument("--limit", type=int, default=None, help="read only the first N rows")
    stats.add_argument("--jobs", type=int, default=None, help="worker processes (default: all)")
    stats.add_argument("--skips", type=str, default=None, help="write skipped rows to this CSV")


def _histogram(title: str, counts: Counter, width: int = 40, top: int | None = None) -> None:
    print(f"\n{title}")
    items = counts.most_common(top) if top else sorted(counts.items())
    peak = max(counts.values()) if counts else 1
    for key, n in items:
        print(f"  {key:>6} {n:>6} {'#' * max(1, round(width * n / peak))}")


def run(args: argparse.Namespace) -> int:
    from cfmc.data import load_dataset

    ds = load_dataset(args.files, args.max_sites, args.symprec, dedupe=None, limit=args.limit,
                      n_jobs=args.jobs)
    total = len(ds) + len(ds.skipped)
    print(f"rows read: {total}   converted: {len(ds)}   skipped: {len(ds.skipped)} "
          f"({100 * len(ds.skipped) / max(total, 1):.2f} %)")
    for kind, n in ds.skip_counts().items():
        print(f"  skipped, {kind}: {n}")
    if "material_id" in ds.table.columns:
        print(f"distinct material_id: {ds.table['material_id'].nunique()}")
    a = ds.arrays
    _histogram("space groups (20 most common)", Counter(a.spacegroup.tolist()), top=20)
    print(f"  ... {len(set(a.spacegroup.tolist()))} space groups in all")
    _histogram("sites per crystal", Counter(a.mask.sum(1).tolist()))
    from cfmc import wyckoff as wy

    atoms = wy.tables().multiplicity[a.spacegroup[:, None], a.wyckoff] * a.mask
    _histogram("atoms per conventional cell", Counter(atoms.sum(1).tolist()))
    print(f"\nmean sites {a.mask.sum(1).mean():.2f}, mean atoms {np.mean(atoms.sum(1)):.2f}")
    if args.skips:
        ds.skipped.to_csv(args.skips, index=False)
        print(f"skipped rows written to {args.skips}")
    return 0
