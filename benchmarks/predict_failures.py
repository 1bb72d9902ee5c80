"""MEGNet failures and accuracy on mp20_biternary_val: the figures of issue 11's predictor fix.

    python benchmarks/predict_failures.py [--rows N] [--mae-rows 500] [--show 30]

Predicts formation energy and PBE band gap for every crystal (all 7,140 by default), then prints
failures by reason, the crystals that fail, and the MAE against the DFT columns on the first
`--mae-rows` and on all crystals, overall and on the crystals with an isolated atom (no
neighbour within the model's cutoff, found here with pymatgen, independently of the predictor),
split into bromides/iodides and the rest.
The old behaviour (a crystal with an isolated atom fails) is derived from the same run: other
crystals' predictions do not depend on it. Data from ../shared or $CFMC_SHARED; checkpoints
from $CFMC_MODELS, else the shared models folder. A few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import time
import warnings
from collections import Counter

import numpy as np
from cfmc.predictors import MEGNetBandGap, MEGNetFormationEnergy, MEGNetPredictor
from pymatgen.core import Structure

from cfmc.data import read_table, shared_dir

# DFT reference column of each predictor in mp20_biternary_val
REFERENCE = {"formation_energy": "formation_energy_per_atom", "band_gap": "band_gap"}


def reason_kind(error: str) -> str:
    """A failure reason without its crystal-specific details (atom names, distances)."""
    return re.sub(r"(: [A-Z][a-z]?\d.*| \(.*\))$", "", error)


def has_isolated_atom(structure: Structure, cutoff: float) -> bool:
    """Whether some atom has no neighbour within `cutoff` (A), periodic images included."""
    centers = structure.get_neighbor_list(cutoff)[0]
    return len(np.unique(centers)) < len(structure)


def mae(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> tuple[float, float, int]:
    """Mean absolute and mean signed error (pred - ref) over the masked crystals with a finite
    prediction, and their count."""
    ok = mask & np.isfinite(pred) & np.isfinite(ref)
    if not ok.any():
        return float("nan"), float("nan"), 0
    err = pred[ok] - ref[ok]
    return float(np.mean(np.abs(err))), float(np.mean(err)), int(ok.sum())


def errors_of(errors: dict[int, list[str]], name: str) -> list[str]:
    """The failure reasons of one predictor, without its name prefix."""
    prefix = f"{name}: "
    return [e[len(prefix) :] for errs in errors.values() for e in errs if e.startswith(prefix)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=None, help="first N crystals (default: all)")
    ap.add_argument("--mae-rows", type=int, default=500, help="MAE also on the first N")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--show", type=int, default=30, help="list at most this many failures")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)  # one isolated-atom warning per batch is noise here
    os.environ.setdefault("CFMC_MODELS", str(shared_dir() / "models"))

    table = read_table(shared_dir() / "data" / "mp20_biternary_val.csv.gz", args.rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen's CIF parser warns on every rounding fix
        structures = [Structure.from_str(c, fmt="cif") for c in table["cif"]]
    n = len(structures)
    first = np.arange(n) < args.mae_rows
    heavy = np.array([bool({"Br", "I"} & {e.symbol for e in s.composition}) for s in structures])
    print(f"{n} crystals of mp20_biternary_val")

    failed_any = np.zeros(n, dtype=bool)
    strict_any = np.zeros(n, dtype=bool)
    errors: dict[int, list[str]] = {}
    predictors: list[MEGNetPredictor] = [MEGNetFormationEnergy(), MEGNetBandGap()]
    for p in predictors:
        t = time.perf_counter()
        values, failed = np.full(n, np.nan), np.zeros(n, dtype=bool)
        for start in range(0, n, args.batch_size):
            res = p.predict(structures[start : start + args.batch_size])
            values[start : start + len(res)] = res.values
            failed[start : start + len(res)] = res.failed
            for i, e in enumerate(res.errors):
                if e is not None:
                    errors.setdefault(start + i, []).append(f"{p.name}: {e}")
        seconds = time.perf_counter() - t
        lonely = np.array([has_isolated_atom(s, p.cutoff) for s in structures]) & ~failed
        strict = failed | lonely  # the old behaviour: an isolated atom fails the crystal
        failed_any |= failed
        strict_any |= strict
        ref = table[REFERENCE[p.name]].to_numpy(float)
        kinds = Counter(reason_kind(e) for e in errors_of(errors, p.name))
        print(f"\n{p.name} ({p.units}, cutoff {p.cutoff:g} A, {n / seconds:.0f} crystals/s)")
        print(
            f"  failed {failed.sum()} ({100 * failed.mean():.2f} %); before the fix "
            f"{strict.sum()} ({100 * strict.mean():.2f} %)"
        )
        for kind, count in kinds.most_common():
            print(f"    {count:4d}  {kind}")
        print(f"  crystals with an isolated atom, now predicted: {lonely.sum()}")
        for label, mask in ((f"first {min(args.mae_rows, n)}", first), ("all", np.ones(n, bool))):
            now, _, k = mae(values, ref, mask)
            old, _, k_old = mae(values, ref, mask & ~strict)
            print(f"  MAE {label:>9s}: {now:.4f} over {k} (before the fix {old:.4f} over {k_old})")
        # bromides and iodides: the data's DFT values carry MP2020 anion corrections that the
        # 2018 training data lacked, so they sit below the predictions whether atoms are isolated
        for label, group in (("Br/I", heavy), ("other", ~heavy)):
            parts = []
            for kind, m in (("isolated atom", lonely), ("all connected", ~lonely)):
                err, bias, k = mae(values, ref, group & m)
                parts.append(f"{kind} MAE {err:.3f} bias {bias:+.3f} over {k}")
            print(f"  {label:>5s} crystals: " + "; ".join(parts))

    print(
        f"\ncrystals failing any predictor: {failed_any.sum()} of {n} "
        f"({100 * failed_any.mean():.2f} %); before the fix {strict_any.sum()} "
        f"({100 * strict_any.mean():.2f} %)"
    )
    for shown, (i, errs) in enumerate(sorted(errors.items())):
        if shown == args.show:
            print(f"  ... {len(errors) - shown} more")
            break
        print(
            f"  row {i} {table['material_id'][i]} {table['pretty_formula'][i]}: {'; '.join(errs)}"
        )


if __name__ == "__main__":
    main()
