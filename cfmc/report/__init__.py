"""The run report: one self-contained HTML page per run directory that answers at a glance what
was asked, whether the chains mixed, what came out and what the best candidates look like.

    from cfmc.report import render_report, write_report
    write_report("runs/demo")                      # runs/demo/report.html
    from IPython.display import HTML
    HTML(render_report("runs/demo"))               # the same page inside a notebook

The page needs no network: CSS and JS are inline, plots and cell pictures are base64 data URIs.
Modules: `rundir` reads the files, `figures` computes the headline numbers, `cells` draws the
conventional cells, `page` writes the HTML.
"""

from __future__ import annotations

import os
from pathlib import Path

from cfmc.report.rundir import RunDir

__all__ = ["render_report", "write_report", "REPORT"]

REPORT = "report.html"
MAX_PICTURES = 300  # candidates beyond this are listed without a cell picture (about 20 ms each)


def render_report(run_dir: str | Path, max_pictures: int = MAX_PICTURES) -> str:
    """The report of `run_dir` as one HTML string (a full document; `IPython.display.HTML`
    shows it in a notebook). Raises FileNotFoundError when the directory or its summary.json is
    missing, ValueError when summary.json is not a JSON object."""
    from cfmc.report.cells import CellPainter
    from cfmc.report.page import page

    return page(RunDir.load(run_dir), max_pictures, CellPainter)


def write_report(run_dir: str | Path, path: str | Path | None = None,
                 max_pictures: int = MAX_PICTURES) -> Path:
    """Write the report to `path` (default `run_dir/report.html`) atomically: a temporary file
    in the same folder replaces it, so a reader never sees half a page."""
    text = render_report(run_dir, max_pictures)
    path = Path(run_dir) / REPORT if path is None else Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
