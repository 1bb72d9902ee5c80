"""Double perovskites A2BB'X6 by template infill, compared with pymatgen's ionic substitution.

    python experiments/double_perovskite.py [--quick] [--prior DIR] [--out DIR]

cfmc: `cfmc infill` of the Fm-3m template below (A on 8c, B on 4a, B' on 4b, X on 24e with its x
free; all four elements differ) with its default sampler settings; the distinct final crystals
are ranked by log posterior, one per composition, and the best `--keep` compositions that are not
in the training data are kept. pymatgen: `SubstitutionPredictor` (Hautier et al.'s ionic
substitution probabilities) on an oxidation-state decorated prototype double perovskite of the
same Wyckoff pattern from MPTS-52, each predicted substitution applied with
`SubstitutionTransformation` and its volume rescaled by `DLSVolumePredictor`.

Both sets get the same checks: number of distinct compositions, how many are not in the training
mix, fraction charge balanced (`cfmc.chemistry.charge_balanced`), MEGNet formation energy and band
gap quartiles. Writes candidates.csv, metrics.json and double_perovskite.png under --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

TEMPLATE = "225-a-[?]-0-0-0-b-[?]-1/2-1/2-c-[?]-1/4-1/4-e-[?]-[?]-0-0"
PATTERN = ("a", "b", "c", "e")
DIFFER = ["0,1", "0,2", "0,3", "1,2", "1,3", "2,3"]
PROTOTYPE = "mp-7251"  # Ba2YNbO6, a stable (E_hull = 0) Fm-3m double perovskite in MPTS-52
PROTOTYPE_FILES = ("mpts52_val.csv.gz", "mpts52_test.csv.gz")


def training_compositions(limit: int | None = None) -> set[str]:
    """Reduced formulas of the default training mix (`cfmc.data.load_dataset()`); `limit` reads
    only the first rows of each file (quick mode: a fresh machine has no conversion cache)."""
    from pymatgen.core import Composition

    from cfmc import wyckoff
    from cfmc.data import load_dataset
    from cfmc.template import element_symbols

    a = load_dataset(limit=limit, progress=False).arrays
    mult = wyckoff.tables().multiplicity
    symbols = element_symbols()
    out = set()
    for g, w, z, m in zip(a.spacegroup, a.wyckoff, a.species, a.mask, strict=True):
        counts: dict[str, int] = {}
        for wi, zi in zip(w[m], z[m], strict=True):
            counts[symbols[zi]] = counts.get(symbols[zi], 0) + int(mult[g, wi])
        out.add(Composition(counts).reduced_formula)
    return out


def prototype_structure(material_id: str):
    """The prototype's Structure (from the MPTS-52 files) and its Wyckoff string."""
    from pymatgen.core import Structure

    from cfmc.crystal import Crystal
    from cfmc.data import read_table, shared_dir

    for name in PROTOTYPE_FILES:
        table = read_table(shared_dir() / "data" / name)
        rows = table[table["material_id"] == material_id]
        if len(rows):
            structure = Structure.from_str(rows.iloc[0]["cif"], fmt="cif")
            crystal = Crystal.from_structure(structure)
            if crystal.spacegroup != 225 or crystal.wyckoff != PATTERN:
                raise ValueError(
                    f"{material_id} is {crystal.to_string()}, not an A2BB'X6 of pattern "
                    f"225-{'-'.join(PATTERN)}"
                )
            return structure, crystal.to_string()
    raise ValueError(f"prototype {material_id} not found in {', '.join(PROTOTYPE_FILES)}")


def pymatgen_candidates(structure, threshold: float) -> pd.DataFrame:
    """Ionic substitutions of the prototype with joint probability above `threshold`: one row per
    distinct composition (its most probable substitution), with a structure as CIF."""
    from pymatgen.analysis.structure_prediction.substitution_probability import (
        SubstitutionPredictor,
    )
    from pymatgen.analysis.structure_prediction.volume_predictor import DLSVolumePredictor
    from pymatgen.transformations.standard_transformations import SubstitutionTransformation

    decorated = structure.copy()
    decorated.add_oxidation_state_by_guess()
    predictions = SubstitutionPredictor(threshold=threshold).composition_prediction(
        decorated.composition, to_this_composition=False
    )
    rows, seen = [], set()
    volume = DLSVolumePredictor()
    for p in sorted(predictions, key=lambda d: -d["probability"]):
        subs = {str(k): str(v) for k, v in p["substitutions"].items() if k != v}
        if not subs:
            continue
        new = SubstitutionTransformation(subs).apply_transformation(decorated)
        new.remove_oxidation_states()
        formula = new.composition.reduced_formula
        if formula in seen:
            continue
        seen.add(formula)
        try:
            new = volume.get_predicted_structure(new)
        except Exception as e:  # DLS has no radius for some ions: keep the prototype's volume
            warnings.warn(f"DLSVolumePredictor failed for {formula}: {e}", stacklevel=1)
        rows.append({"formula": formula, "score": float(p["probability"]),
                     "cif": new.to(fmt="cif")})
    return pd.DataFrame(rows, columns=["formula", "score", "cif"])


def cfmc_candidates(out: Path, args: argparse.Namespace) -> pd.DataFrame:
    """`cfmc infill` of the template; one row per distinct composition, best log posterior first."""
    from cfmc.cli import main

    argv = ["infill", TEMPLATE, "--out", str(out), "--top", str(args.top), "--seed", str(args.seed),
            "--force"] + (["--no-progress"] if args.quick else [])
    for pair in DIFFER:
        argv += ["--differ", pair]
    if args.prior:
        argv += ["--prior", args.prior]
    for opt in ("chains", "sweeps", "burn_in"):
        v = getattr(args, opt)
        if v is not None:
            argv += [f"--{opt.replace('_', '-')}", str(v)]
    if main(argv) != 0:
        raise RuntimeError(f"cfmc infill failed (arguments: {' '.join(argv)})")
    samples = pd.read_csv(out / "samples.csv")
    samples = samples[samples["cif"].fillna("").str.len() > 0]
    samples = samples.drop_duplicates("formula", keep="first").reset_index(drop=True)
    return pd.DataFrame({"formula": samples["formula"], "score": samples["log_posterior"],
                         "cif": samples["cif"]})


def annotate(df: pd.DataFrame, known: set[str]) -> pd.DataFrame:
    """Add: new (not in the training mix), quaternary, charge_balanced."""
    from pymatgen.core import Composition

    from cfmc.chemistry import charge_balanced

    df = df.copy()
    df["new"] = np.array([f not in known for f in df["formula"]], bool)
    df["quaternary"] = np.array([len(Composition(f).elements) == 4 for f in df["formula"]], bool)
    df["charge_balanced"] = np.array([charge_balanced(f) for f in df["formula"]], bool)
    return df


def predict(df: pd.DataFrame) -> pd.DataFrame:
    """MEGNet formation energy and band gap of each candidate's structure."""
    from cfmc.predictors import get_predictor
    from pymatgen.core import Structure

    df = df.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structures = [Structure.from_str(c, fmt="cif") for c in df["cif"]]
    for name in ("formation_energy", "band_gap"):
        df[name] = get_predictor(name).predict(structures).values if structures else []
    return df


def summarise(df: pd.DataFrame) -> dict:
    """Counts, charge-balanced fraction and property quartiles of a candidate set."""
    out = {"candidates": int(len(df)), "distinct_compositions": int(df["formula"].nunique()),
           "new": int(df["new"].sum()), "quaternary": int(df["quaternary"].sum()),
           "charge_balanced_fraction": float(df["charge_balanced"].mean()) if len(df) else None}
    for name in ("formation_energy", "band_gap"):
        v = np.asarray(df.get(name, []), float)
        v = v[np.isfinite(v)]
        out[name] = {"n": int(v.size), **({f"q{q}": float(np.percentile(v, q))
                                            for q in (25, 50, 75)} if v.size else {})}
    return out


def plot(sets: dict[str, pd.DataFrame], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, name, unit in zip(axes, ("formation_energy", "band_gap"), ("eV/atom", "eV"),
                              strict=True):
        for label, df in sets.items():
            v = np.asarray(df[name], float) if name in df else np.zeros(0)
            v = v[np.isfinite(v)]
            if v.size:
                ax.hist(v, bins=25, alpha=0.55, label=f"{label} (n={v.size})")
        ax.set_xlabel(f"MEGNet {name.replace('_', ' ')} ({unit})")
        ax.set_ylabel("candidates")
        ax.legend(fontsize=8)
    fig.suptitle("new A2BB'X6 candidates (Fm-3m)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny run for tests (seconds to minutes)")
    p.add_argument("--prior", default=None, help="prior checkpoint (default: the shipped one)")
    p.add_argument("--out", default="runs/experiments/double_perovskite")
    p.add_argument("--keep", type=int, default=100, help="new compositions kept from cfmc")
    p.add_argument("--top", type=int, default=0,
                   help="distinct infill crystals written out (0: all; fewer is faster)")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.01, 0.001],
                   help="SubstitutionPredictor probability thresholds")
    p.add_argument("--prototype", default=PROTOTYPE, help="material_id of the prototype")
    p.add_argument("--chains", type=int, default=None, help="infill chains (default: infill's)")
    p.add_argument("--sweeps", type=int, default=None)
    p.add_argument("--burn-in", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="overwrite an earlier run in --out")
    args = p.parse_args(argv)
    if args.quick:
        args.chains, args.sweeps, args.burn_in = args.chains or 24, args.sweeps or 3, 1
        args.keep, args.thresholds = min(args.keep, 10), [0.01]
    out = Path(args.out)
    if (out / "metrics.json").exists() and not args.force:
        raise SystemExit(f"{out} holds an earlier run; pass --force to overwrite it")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    known = training_compositions(200 if args.quick else None)
    structure, proto = prototype_structure(args.prototype)

    t = time.time()
    cfmc_all = annotate(cfmc_candidates(out / "infill", args), known)
    cfmc_seconds = time.time() - t
    cfmc_new = cfmc_all.loc[cfmc_all["new"] & cfmc_all["quaternary"]].head(args.keep)
    sets = {"cfmc": predict(cfmc_new)}
    pmg_seconds = {}
    for thr in args.thresholds:
        t = time.time()
        cands = annotate(pymatgen_candidates(structure, thr), known)
        pmg_seconds[thr] = time.time() - t
        sets[f"pymatgen p>{thr:g}"] = predict(cands.loc[cands["new"]])

    metrics = {
        "template": TEMPLATE, "prototype": {"material_id": args.prototype, "string": proto,
                                            "formula": structure.composition.reduced_formula},
        "training_compositions": len(known),
        "cfmc_all": {"distinct_compositions": int(len(cfmc_all)),
                     "new_quaternary": int((cfmc_all["new"] & cfmc_all["quaternary"]).sum()),
                     "seconds": cfmc_seconds},
        "sets": {k: summarise(v) for k, v in sets.items()},
        "pymatgen_seconds": {f"{k:g}": v for k, v in pmg_seconds.items()},
        "settings": vars(args),
    }
    cf = metrics["sets"]["cfmc"]
    checks: dict[str, bool | None] = {
        "cfmc_new_at_least_100": metrics["cfmc_all"]["new_quaternary"] >= 100
    }
    for thr in args.thresholds:  # None: pymatgen proposed nothing to compare with
        pm = metrics["sets"][f"pymatgen p>{thr:g}"]
        checks[f"more_new_than_pymatgen_p{thr:g}"] = cf["new"] > pm["new"]
        checks[f"higher_charge_balanced_than_pymatgen_p{thr:g}"] = (
            None if pm["charge_balanced_fraction"] is None
            else (cf["charge_balanced_fraction"] or 0) > pm["charge_balanced_fraction"]
        )
    metrics["checks"] = checks
    metrics["seconds"] = time.time() - t0
    frames = [df.assign(method=k) for k, df in sets.items()]
    pd.concat(frames, ignore_index=True).to_csv(out / "candidates.csv", index=False)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    plot(sets, out / "double_perovskite.png")

    print(f"prototype {args.prototype} {metrics['prototype']['formula']}; cfmc infill found "
          f"{metrics['cfmc_all']['distinct_compositions']} distinct compositions, "
          f"{metrics['cfmc_all']['new_quaternary']} new A2BB'X6")
    print(f"{'set':<20}{'n':>5}{'new':>6}{'balanced':>10}{'Ef q25':>9}{'Ef q50':>9}{'Ef q75':>9}"
          f"{'Eg q50':>9}")
    for k, m in metrics["sets"].items():
        ef, eg = m["formation_energy"], m["band_gap"]
        bal = m["charge_balanced_fraction"]
        print(f"{k:<20}{m['candidates']:>5}{m['new']:>6}"
              f"{'-' if bal is None else f'{100 * bal:.1f}%':>10}"
              + "".join(f"{ef.get(q, float('nan')):>9.2f}" for q in ("q25", "q50", "q75"))
              + f"{eg.get('q50', float('nan')):>9.2f}")
    print("checks:", ", ".join(f"{k}={v}" for k, v in metrics["checks"].items()))
    print(f"wrote {out} in {metrics['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
