"""`cfmc predict`: predict properties of the crystals in a CSV (CIF text in column `cif`)."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

# DFT reference column for each registered property, when a dataset has one
REFERENCE_COLUMNS = {"band_gap": "band_gap", "formation_energy": "formation_energy_per_atom"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `cfmc predict`."""
    parser.add_argument("--data", required=True, help="CSV (.csv or .csv.gz) with a `cif` column")
    parser.add_argument(
        "--predictor",
        action="append",
        required=True,
        help="property to predict (repeatable): band_gap, formation_energy, density",
    )
    parser.add_argument("--limit", type=int, default=None, help="use only the first N rows")
    parser.add_argument("--out", required=True, help="output CSV: input columns + predictions")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out")
    parser.add_argument("--batch-size", type=int, default=128, help="structures per call")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _parse(cifs: list[str], progress: bool) -> tuple[list, list[str | None]]:
    from pymatgen.core import Structure
    from tqdm import tqdm

    structures: list = []
    errors: list[str | None] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen's CIF parser warns on every rounding fix
        for cif in tqdm(cifs, desc="parse CIF", disable=not progress, unit="crystal"):
            try:
                if not isinstance(cif, str) or not cif.strip():
                    raise ValueError("empty cif")
                structures.append(Structure.from_str(cif, fmt="cif"))
                errors.append(None)
            except Exception as e:
                structures.append(None)
                errors.append(f"cif: {type(e).__name__}: {e}"[:300])
    return structures, errors


def run(args: argparse.Namespace) -> int:
    """Read the CSV, predict each property, write the table and print MAE and failures."""
    from tqdm import tqdm

    from cfmc.data import read_table
    from cfmc.predictors import get_predictor
    from cfmc.validate import integer

    data, out = Path(args.data), Path(args.out)
    if not data.is_file():
        raise FileNotFoundError(f"no such data file: {data}")
    integer(args.batch_size, "--batch-size", 1)
    if out.exists() and not args.force:
        raise FileExistsError(f"{out} exists; pass --force to overwrite it")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    names = list(dict.fromkeys(args.predictor))
    predictors = [get_predictor(n) for n in names]

    table = read_table(data, args.limit)  # names a missing `cif` column or a truncated file
    progress = not args.no_progress and sys.stderr.isatty()
    structures, errors = _parse(table["cif"].tolist(), progress)
    good = [i for i, s in enumerate(structures) if s is not None]

    step = args.batch_size
    for p in predictors:
        values = np.full(len(table), np.nan)
        with tqdm(total=len(good), desc=p.name, disable=not progress, unit="crystal") as bar:
            for start in range(0, len(good), step):
                idx = good[start : start + step]
                res = p.predict([structures[i] for i in idx])
                values[idx] = res.values
                for i, e in zip(idx, res.errors, strict=True):
                    if e is not None:  # name the predictor: the reasons of two can read alike
                        e = f"{p.name}: {e}"
                        errors[i] = f"{errors[i]}; {e}" if errors[i] else e
                bar.update(len(idx))
        table[f"{p.name}_pred"] = values

    table["predict_error"] = errors
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)

    n_failed = sum(e is not None for e in errors)
    print(f"{len(table)} crystals, {n_failed} failed; wrote {out}")
    for p in predictors:
        ref = REFERENCE_COLUMNS.get(p.name)
        if ref and ref in table.columns:
            pred = table[f"{p.name}_pred"].to_numpy(float)
            dft = pd.to_numeric(table[ref], errors="coerce").to_numpy(float)
            ok = np.isfinite(pred) & np.isfinite(dft)
            if ok.any():
                mae = float(np.mean(np.abs(pred[ok] - dft[ok])))
                print(f"{p.name}: MAE {mae:.4f} {p.units} vs `{ref}` over {int(ok.sum())} crystals")
    shown = 0
    for i, e in enumerate(errors):
        if e is not None and shown == 50:
            print(f"  ... more failures in the `predict_error` column of {out}")
            break
        if e is not None:
            shown += 1
            label = next(
                (str(table.at[i, c]) for c in ("material_id", "pretty_formula") if c in table),
                "",
            )
            print(f"  failed row {i} {label}: {e}")
    return 0
