"""Double perovskites A2BB'X6 by template infill, compared with pymatgen's ionic substitution.

    python experiments/double_perovskite.py [--quick] [--baseline-only] [--prototype ID]
        [--thresholds P ...] [--prior DIR] [--out DIR]

cfmc: `cfmc.infill.infill` of the Fm-3m template below (A on 8c, B on 4a, B' on 4b, X on 24e
with its x free; all four elements differ) with its default sampler settings; the distinct final
crystals are ranked by log posterior, one per composition, and the best `--keep` charge-balanced
compositions that are not in the training data are kept (the table also shows every new sampled
composition, before that filter). Neither method uses radioactive elements unless
`--allow-radioactive` is given. pymatgen: `SubstitutionPredictor` (Hautier et al.'s ionic
substitution probabilities) on every prototype of the training mix that fits the template (space
group 225, sites a, b, c, e with four distinct elements), each oxidation-state decorated by guess;
each predicted substitution is applied with `SubstitutionTransformation` to its own prototype and
its volume rescaled by `DLSVolumePredictor`. The predictions of all prototypes are joined, one row
per reduced formula (the most probable substitution), and those not in the training mix are kept.

Both sets get the same checks: number of distinct compositions, how many are not in the training
mix, fraction charge balanced (`cfmc.chemistry.charge_balanced`), MEGNet formation energy and band
gap quartiles. With `--screen`, both sets also go through the same stability screen
(`cfmc.stability.screen`: CHGNet relaxation, E_hull against the offline reference hull, novelty
against the training mix, uniqueness within the set; the best `--screen-limit` of each set by its
own score) and the table gains their S.U.N. counts (a machine-learned estimate, see the
calibration in experiments/README.md); each set's screen is written to screen_<set>/. Writes
candidates.csv, prototypes.csv, metrics.json, table.md and double_perovskite.png under --out.
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
QUICK_ROWS = 200  # quick mode reads only the first rows of each training file


def load_training(limit: int | None = None):
    """The default training mix (`cfmc.data.load_dataset()`; `limit` reads only the first rows of
    each file: quick mode, a fresh machine has no conversion cache), the reduced formulas of its
    crystals, and the rows that fit the template (prototypes for the ionic substitution)."""
    from pymatgen.core import Composition

    from cfmc import wyckoff
    from cfmc.chemistry import element_symbols
    from cfmc.data import load_dataset
    from cfmc.template import Template

    data = load_dataset(limit=limit, progress=False)
    a = data.arrays
    mult = wyckoff.tables().multiplicity
    symbols = element_symbols()
    formulas = []
    for g, w, z, m in zip(a.spacegroup, a.wyckoff, a.species, a.mask, strict=True):
        counts: dict[str, int] = {}
        for wi, zi in zip(w[m], z[m], strict=True):
            counts[symbols[zi]] = counts.get(symbols[zi], 0) + int(mult[g, wi])
        formulas.append(Composition(counts).reduced_formula)
    # the template's letters, fixed coordinates and differ pairs; any element (radioactive too)
    differ = [tuple(int(i) for i in pair.split(",")) for pair in DIFFER]
    template = Template.parse(TEMPLATE, differ=differ, exclude_radioactive=False)
    assert template.letters == PATTERN
    fits = template.check_arrays(a)
    protos = data.table.loc[fits, ["file", "row", "material_id"]].copy()
    protos["formula"] = [formulas[i] for i in np.flatnonzero(fits)]
    return set(formulas), protos.reset_index(drop=True)


def radioactive(formula: str) -> bool:
    """Whether a formula holds an element of `cfmc.chemistry.RADIOACTIVE`."""
    from pymatgen.core import Composition

    from cfmc.chemistry import RADIOACTIVE

    return any(el.Z in RADIOACTIVE for el in Composition(formula).elements)


def decorate(structure):
    """The structure with pymatgen's guessed oxidation states (`add_oxidation_state_by_guess`;
    where that gives a zero or fractional state, the best guess over all known oxidation states),
    or None with the reason when neither gives integer nonzero states."""
    def ok(s):
        return all(float(sp.oxi_state).is_integer() and sp.oxi_state != 0
                   for sp in s.composition.elements)

    s = structure.copy()
    s.add_oxidation_state_by_guess()
    if ok(s):
        return s, None
    first = ", ".join(str(sp) for sp in s.composition.elements)
    guesses = structure.composition.oxi_state_guesses(all_oxi_states=True)
    if guesses:
        s = structure.copy()
        s.add_oxidation_state_by_element(dict(guesses[0]))
        if ok(s):
            return s, None
    return None, f"no integer nonzero oxidation states (guess: {first})"


def prototype_structures(protos: pd.DataFrame) -> tuple[pd.DataFrame, list]:
    """Read each prototype's CIF from its training file and decorate it; adds the columns
    `species` (the decorated species) and `skipped` (why it is left out, else empty)."""
    from pymatgen.core import Structure

    from cfmc.data import read_table, shared_dir

    tables: dict[str, pd.DataFrame] = {}
    structures, species, skipped = [], [], []
    for f, r in zip(protos["file"], protos["row"], strict=True):
        if f not in tables:
            tables[f] = read_table(shared_dir() / "data" / f)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s, why = decorate(Structure.from_str(tables[f].iloc[int(r)]["cif"], fmt="cif"))
        structures.append(s)
        species.append(" ".join(str(sp) for sp in s.composition.elements) if s else "")
        skipped.append(why or "")
    return protos.assign(species=species, skipped=skipped), structures


def pymatgen_candidates(protos: pd.DataFrame, structures: list, threshold: float,
                        known: set[str], allow_radioactive: bool = False
                        ) -> tuple[pd.DataFrame, dict]:
    """Ionic substitutions of every prototype with joint probability above `threshold`, joined
    over prototypes: one row per distinct reduced formula (its most probable substitution, on its
    own prototype), other than the prototypes themselves; `new` marks formulas not in the training
    mix, and only new ones get a DLS-rescaled structure (as CIF); formulas with radioactive
    elements are dropped before that unless `allow_radioactive`. Also returns per-prototype
    prediction counts and the prototypes the predictor rejected (species it has no data for)."""
    from pymatgen.analysis.structure_prediction.substitution_probability import (
        SubstitutionPredictor,
    )
    from pymatgen.analysis.structure_prediction.volume_predictor import DLSVolumePredictor
    from pymatgen.transformations.standard_transformations import SubstitutionTransformation

    predictor = SubstitutionPredictor(threshold=threshold)  # one table load per threshold
    raw, counts, rejected = [], {}, {}
    for mid, s, why in zip(protos["material_id"], structures, protos["skipped"], strict=True):
        if s is None or why:
            continue
        try:
            predictions = predictor.composition_prediction(s.composition,
                                                           to_this_composition=False)
        except ValueError as e:  # a species missing from the probability table
            rejected[mid] = str(e)
            continue
        counts[mid] = len(predictions)
        for p in predictions:
            subs = {str(k): str(v) for k, v in p["substitutions"].items() if k != v}
            if subs:
                raw.append((float(p["probability"]), mid, s, subs))
    raw.sort(key=lambda t: -t[0])
    rows, structs, seen = [], [], set()
    for prob, mid, s, subs in raw:
        new = SubstitutionTransformation(subs).apply_transformation(s)
        new.remove_oxidation_states()
        formula = new.composition.reduced_formula
        if formula in seen or (not allow_radioactive and radioactive(formula)):
            continue
        seen.add(formula)
        rows.append({"formula": formula, "score": prob, "prototype": mid,
                     "substitutions": " ".join(f"{k}->{v}" for k, v in sorted(subs.items())),
                     "new": formula not in known})
        structs.append(new)
    volume, failed = DLSVolumePredictor(), []
    for row, new in zip(rows, structs, strict=True):
        row["volume_rescaled"] = False
        if not row["new"]:
            row["cif"] = ""
            continue
        try:
            new = volume.get_predicted_structure(new)
            row["volume_rescaled"] = True
        except Exception as e:  # DLS has no radius for some ions: keep the prototype's volume
            failed.append(f"{row['formula']} ({e})")
        row["cif"] = new.to(fmt="cif")
    if failed:
        warnings.warn(f"p>{threshold:g}: DLSVolumePredictor failed for {len(failed)} new "
                      f"compositions, which keep their prototype's volume: "
                      f"{'; '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}", stacklevel=1)
    columns = ["formula", "score", "prototype", "substitutions", "new", "volume_rescaled", "cif"]
    info = {"predictions": int(len(raw)), "per_prototype": counts, "rejected": rejected,
            "dls_failed": len(failed)}
    return pd.DataFrame(rows, columns=columns), info


def run_infill(out: Path, args: argparse.Namespace) -> None:
    """`cfmc.infill.infill` of the template into `out` (its defaults unless overridden)."""
    from cfmc.infill import infill

    sizes = {k: getattr(args, k) for k in ("chains", "sweeps", "burn_in")
             if getattr(args, k) is not None}
    infill(TEMPLATE, out, differ=[tuple(int(i) for i in p.split(",")) for p in DIFFER],
           top=args.top, seed=args.seed, prior=args.prior,
           allow_radioactive=args.allow_radioactive, progress=not args.quick, force=True, **sizes)


def cfmc_candidates(out: Path) -> pd.DataFrame:
    """The infill run in `out`: one row per distinct composition, best log posterior first."""
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


def slug(name: str) -> str:
    """A folder name for a candidate set ('pymatgen p>0.01' -> 'pymatgen_p0.01')."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name.replace(">", "")
                   ).replace("__", "_")


def screen_sets(sets: dict[str, pd.DataFrame], out: Path, limit: int, cache: str | None,
                names: list[str]) -> dict:
    """Screen the best `limit` candidates (by score) of each named set the same way, into
    out/screen_<set>; returns the S.U.N. counts per set and marks the rows in `sets`."""
    from cfmc.stability import screen

    results = {}
    for name in names:
        df = sets[name] = sets[name].copy()
        chosen = df.sort_values("score", ascending=False).head(limit) if len(df) else df
        if len(chosen):
            res = screen(chosen.reset_index(drop=True), out / f"screen_{slug(name)}", force=True,
                         cache=cache, progress=False)
            summary = json.loads((out / f"screen_{slug(name)}" / "screen_summary.json"
                                  ).read_text())
            res.index = chosen.index
            for col in ("e_hull", "stable", "novel", "unique", "sun", "status"):
                if col in res:
                    df.loc[chosen.index, f"screen_{col}"] = res[col]
        else:
            summary = {k: 0 for k in ("n_input", "n_screened", "n_failed", "n_stable",
                                      "n_novel", "n_unique", "n_sun")}
            summary.update(e_hull_median=None, seconds_total=0.0)
        keys = ("n_input", "n_screened", "n_failed", "n_stable", "n_novel", "n_unique", "n_sun",
                "sun_rate", "e_hull_median", "n_decomposes_to_element", "seconds_total")
        results[name] = {k: summary.get(k) for k in keys}
        results[name]["screened_of"] = int(len(df))
    return results


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


def table(metrics: dict) -> list[list[str]]:
    """The comparison table: header row, then one row per candidate set."""
    screened = metrics.get("screen", {}).get("sets", {})
    rows = [["set", "all", "new", "quaternary", "balanced", "Ef q25", "Ef q50", "Ef q75",
             "Eg q50"] + (["screened", "stable", "novel", "S.U.N."] if screened else [])]
    for k, m in metrics["sets"].items():
        ef, eg, bal = m["formation_energy"], m["band_gap"], m["charge_balanced_fraction"]
        row = ([k, str(m["all"]), str(m["new"]), str(m["quaternary"]),
                "-" if bal is None else f"{100 * bal:.1f}%"]
               + [f"{ef[q]:.2f}" if q in ef else "-" for q in ("q25", "q50", "q75")]
               + [f"{eg['q50']:.2f}" if "q50" in eg else "-"])
        if screened:
            sc = screened.get(k)
            row += ([f"{sc['n_screened']}/{sc['n_input']}", str(sc["n_stable"]),
                     str(sc["n_novel"]), str(sc["n_sun"])] if sc else ["-"] * 4)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help=f"tiny run for tests: first {QUICK_ROWS} rows of each training file (its "
                        "prototypes and known formulas), a short infill, threshold 0.01 only")
    p.add_argument("--baseline-only", action="store_true",
                   help="skip cfmc infill; compare with an earlier infill in OUT/infill if any")
    p.add_argument("--prior", default=None, help="prior checkpoint (default: the shipped one)")
    p.add_argument("--out", default="runs/experiments/double_perovskite")
    p.add_argument("--keep", type=int, default=100, help="new compositions kept from cfmc")
    p.add_argument("--keep-unbalanced", action="store_true",
                   help="keep cfmc's best new compositions whether or not they are charge "
                        "balanced (default: only charge-balanced ones are kept)")
    p.add_argument("--allow-radioactive", action="store_true",
                   help="let both methods use radioactive elements (Tc, Pm, Po and beyond); by "
                        "default neither does, as cfmc's infill excludes them")
    p.add_argument("--top", type=int, default=0,
                   help="distinct infill crystals written out (0: all; fewer is faster)")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.01, 0.001],
                   help="SubstitutionPredictor probability thresholds")
    p.add_argument("--prototype", default=None,
                   help="material_id of the one prototype to use (default: every crystal of the "
                        "training mix that fits the template)")
    p.add_argument("--chains", type=int, default=None, help="infill chains (default: infill's)")
    p.add_argument("--sweeps", type=int, default=None)
    p.add_argument("--burn-in", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--screen", action="store_true",
                   help="screen cfmc's kept candidates and each pymatgen set the same way "
                        "(CHGNet relaxation, offline hull, S.U.N.)")
    p.add_argument("--screen-limit", type=int, default=100,
                   help="screen at most this many candidates of each set (best score first)")
    p.add_argument("--hull-cache", default=None, help="hull cache folder of --screen")
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
    known, protos = load_training(QUICK_ROWS if args.quick else None)
    matches = len(protos)
    if args.prototype:
        protos = protos[protos["material_id"] == args.prototype].reset_index(drop=True)
        if protos.empty:
            raise SystemExit(f"{args.prototype} is not a crystal of the training mix that fits "
                             f"{TEMPLATE}{' (quick: first rows only)' if args.quick else ''}")
    if not args.allow_radioactive:
        protos = protos[~protos["formula"].map(radioactive)].reset_index(drop=True)
    protos, structures = prototype_structures(protos)

    sets, metrics_sets_all = {}, {}
    cfmc_all, cfmc_seconds = None, None
    if not args.baseline_only:
        t = time.time()
        run_infill(out / "infill", args)
        cfmc_seconds = time.time() - t
    if (out / "infill" / "samples.csv").exists():
        cfmc_all = annotate(cfmc_candidates(out / "infill"), known)
        cfmc_new = cfmc_all.loc[cfmc_all["new"] & cfmc_all["quaternary"]]
        # every new composition sampled (before the charge-balance filter), then the kept ones
        sets["cfmc, all new"] = predict(cfmc_new)
        metrics_sets_all["cfmc, all new"] = int(len(cfmc_all))
        kept = cfmc_new if args.keep_unbalanced else cfmc_new.loc[cfmc_new["charge_balanced"]]
        sets["cfmc"] = sets["cfmc, all new"].loc[kept.index[: args.keep]]
        metrics_sets_all["cfmc"] = int(len(cfmc_all))
    else:
        print(f"--baseline-only and no earlier infill in {out / 'infill'}: pymatgen side only")
    pmg, per_prototype = {}, []
    for thr in args.thresholds:
        t = time.time()
        cands, info = pymatgen_candidates(protos, structures, thr, known, args.allow_radioactive)
        cands = annotate(cands, known)
        per_prototype.append(info["per_prototype"])
        key = f"pymatgen p>{thr:g}"
        sets[key] = predict(cands.loc[cands["new"]])
        metrics_sets_all[key] = int(len(cands))
        protos[f"predictions_p{thr:g}"] = [info["per_prototype"].get(m, 0)
                                           for m in protos["material_id"]]
        pmg[f"{thr:g}"] = {"predictions": info["predictions"],
                           "prototypes_used": len(info["per_prototype"]),
                           "rejected_by_predictor": info["rejected"],
                           "distinct_compositions": int(len(cands)), "new": int(cands["new"].sum()),
                           "dls_failed": info["dls_failed"], "seconds": time.time() - t}
    screened = None
    if args.screen:
        t = time.time()
        names = [k for k in sets if k != "cfmc, all new"]
        screened = {"limit": args.screen_limit, "estimate": "machine-learned (CHGNet + "
                    "offline hull); see the calibration in experiments/README.md",
                    "sets": screen_sets(sets, out, args.screen_limit, args.hull_cache, names)}
        screened["seconds"] = time.time() - t
    used = sorted(set().union(*(set(v) for v in per_prototype)))
    skipped = {m: w for m, w in zip(protos["material_id"], protos["skipped"], strict=True) if w}
    for v in pmg.values():
        skipped.update({m: f"SubstitutionPredictor: {w}"
                        for m, w in v["rejected_by_predictor"].items()})

    metrics = {
        "template": TEMPLATE,
        "prototypes": {"matches": matches, "selected": int(len(protos)), "used": len(used),
                       "skipped": skipped, "material_ids": used},
        "training_compositions": len(known),
        "pymatgen": pmg,
        "sets": {k: {"all": metrics_sets_all[k], **summarise(v)} for k, v in sets.items()},
        "settings": vars(args),
    }
    if screened is not None:
        metrics["screen"] = screened
    checks: dict[str, bool | None] = {}
    if cfmc_all is not None:
        metrics["cfmc_all"] = {
            "distinct_compositions": int(len(cfmc_all)),
            "new_quaternary": int((cfmc_all["new"] & cfmc_all["quaternary"]).sum()),
            "seconds": cfmc_seconds}
        cf = metrics["sets"]["cfmc"]
        checks["cfmc_new_at_least_100"] = metrics["cfmc_all"]["new_quaternary"] >= 100
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
    protos.to_csv(out / "prototypes.csv", index=False)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    rows = table(metrics)
    (out / "table.md").write_text("\n".join(
        ["| " + " | ".join(r) + " |" for r in rows[:1]] + ["|" + "---|" * len(rows[0])]
        + ["| " + " | ".join(r) + " |" for r in rows[1:]]) + "\n")
    plot(sets, out / "double_perovskite.png")

    print(f"prototypes: {len(used)} used of {matches} training crystals fitting the template"
          f"{f' (restricted to {args.prototype})' if args.prototype else ''}; "
          f"{len(skipped)} skipped")
    if cfmc_all is not None:
        print(f"cfmc infill found {metrics['cfmc_all']['distinct_compositions']} distinct "
              f"compositions, {metrics['cfmc_all']['new_quaternary']} new A2BB'X6")
    for k, v in pmg.items():
        print(f"pymatgen p>{k}: {v['predictions']} substitutions, {v['distinct_compositions']} "
              f"distinct compositions, {v['new']} new ({v['seconds']:.0f} s)")
    widths = [max(len(r[i]) for r in rows) + 2 for i in range(len(rows[0]))]
    for r in rows:
        print(r[0].ljust(widths[0]) + "".join(c.rjust(w) for c, w in zip(r[1:], widths[1:],
                                                                          strict=True)))
    if screened is not None:
        for k, v in screened["sets"].items():
            print(f"screen {k}: {v['n_sun']} S.U.N. of {v['n_input']} screened "
                  f"({v['n_stable']} stable, {v['n_novel']} novel, {v['n_failed']} failed; "
                  f"machine-learned E_hull)")
    print("checks:", ", ".join(f"{k}={v}" for k, v in checks.items()) or "none (no cfmc run)")
    print(f"wrote {out} in {metrics['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
