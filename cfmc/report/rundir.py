"""What a run directory holds, read defensively: runs of `infill`, `design`, `sample` and `screen`
write different files and keys, and an interrupted run may lack some of them."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# plots a run may write, in the order the report shows them, with their captions
KNOWN_PLOTS = {
    "trace.png": "Traces of a few chains (left) and the histogram over all chains (right)",
    "burn_in.png": "Mean log density over all chains after every sweep, burn-in included",
    "log_posterior.png": "Log posterior",
    "properties.png": "Predicted properties: conditioned chains against prior samples",
    "log_prior.png": "Log prior: conditioned chains against prior samples",
}
CONVERGENCE_PLOTS = ("trace.png", "burn_in.png", "log_posterior.png")
DESIGN_PLOTS = ("properties.png", "log_prior.png")


@dataclass
class RunDir:
    """The files of one run: summary (dict), samples table (or None), plots (name -> path)."""

    path: Path
    summary: dict[str, Any]
    samples: Any = None  # pandas.DataFrame
    plots: dict[str, Path] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # files that exist but could not be read

    @classmethod
    def load(cls, path: str | Path) -> RunDir:
        """Read a run directory; FileNotFoundError/ValueError when it is not one."""
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is not a directory")
        summary_path = path / "summary.json"
        if not summary_path.is_file():
            raise FileNotFoundError(f"{path} has no summary.json: not a cfmc run directory")
        try:
            summary = json.loads(summary_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{summary_path} is not valid JSON: {e}") from None
        if not isinstance(summary, dict):
            raise ValueError(f"{summary_path} does not hold a JSON object")
        run = cls(path, summary)
        csv = path / "samples.csv"
        if csv.is_file():
            import pandas as pd

            try:
                run.samples = pd.read_csv(csv, keep_default_na=False, na_values=[""])
            except (ValueError, pd.errors.ParserError) as e:
                run.problems.append(f"samples.csv could not be read: {e}")
        names = list(KNOWN_PLOTS) + sorted(p.name for p in path.glob("*.png")
                                           if p.name not in KNOWN_PLOTS)
        run.plots = {n: path / n for n in names if (path / n).is_file()}
        return run

    def cif_file(self, row: dict[str, Any]) -> Path | None:
        """The CIF file a samples.csv row was written to (`runio.write_samples` names them
        RANK_FORMULA_chainCHAIN.cif, `cfmc sample` sample_INDEX.cif), if it is there."""
        folder = self.path / "cif"
        names = []
        try:
            if "rank" in row and "chain" in row:
                names.append(f"{int(row['rank']):04d}_{row.get('formula', '')}"
                             f"_chain{int(row['chain'])}.cif")
            if "index" in row:
                names.append(f"sample_{int(row['index']):05d}.cif")
        except (TypeError, ValueError):  # a blank or non-integer rank
            return None
        return next((folder / n for n in names if (folder / n).is_file()), None)


def number(x: Any) -> float:
    """A float from a JSON value (None, "inf", strings of numbers); NaN when it is none."""
    if isinstance(x, bool):
        return float(x)
    if isinstance(x, int | float):
        return float(x)
    if isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            return math.nan
    return math.nan
