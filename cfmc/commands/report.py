"""`cfmc report RUN_DIR`: (re)build RUN_DIR/report.html, one self-contained page, from the files of
a run directory alone."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory (holds summary.json)")
    p.add_argument("--out", default=None, help="write the page here instead of RUN_DIR/report.html")
    p.add_argument("--max-pictures", type=int, default=None, metavar="N",
                   help="draw the cells of the first N candidates only (default 300)")


def run(args: argparse.Namespace) -> int:
    from cfmc.report import MAX_PICTURES, write_report

    limit = MAX_PICTURES if args.max_pictures is None else args.max_pictures
    if limit < 0:
        raise ValueError("--max-pictures must not be negative")
    try:
        path = write_report(args.run_dir, args.out, max_pictures=limit)
    except (IsADirectoryError, PermissionError, NotADirectoryError) as e:
        print(f"cfmc report: error: cannot write the report: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({Path(path).stat().st_size / 1e6:.1f} MB)")
    return 0
