"""S.U.N. rate of prior samples against PyXtal random crystals, both through the same screen.

For each space group (default 225 and 62): `--n` crystals drawn from the prior
(`cfmc.prior_samples.sample_prior`, seeded) and `--n` PyXtal random crystals of the same group whose
compositions are those of training-mix crystals drawn at random (seeded; the formula unit repeated
1-4 times until PyXtal finds Wyckoff positions for it, at most `--max-atoms` atoms in the
conventional cell). Both sets go through `cfmc.stability.screen` with the same settings and hull
cache; S.U.N. = stable (machine-learned E_hull <= 0.1 eV/atom), unique within its set, novel
against the training mix. A crystal that cannot be built or relaxed counts as not S.U.N.

    python benchmarks/sun_rate.py [--n 200] [--groups 225 62] [--out runs/bench/sun_rate]
        [--cache DIR] [--ternary-oxidation] [--resume] [--rehull EARLIER_OUT]

With `--resume` a run picks up where an interrupted one stopped: the drawn sets are read back
(`prior_<g>/samples.csv`, `pyxtal_<g>.csv`), finished screens (`screen_<set>_<g>/screened.csv`)
are read instead of run again, and the hull cache keeps every entry already built.

With `--rehull EARLIER_OUT` the screens are not run again: each crystal of EARLIER_OUT's screens
keeps its relaxation (energy, structure, uniqueness, novelty), and its formation energy, E_hull,
decomposition, stable and S.U.N. flags are placed again against today's hull (after a change of
the hull; the missing hull entries are built first).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


def pyxtal_random(group: int, n: int, seed: int, max_atoms: int, tries: int = 20
                  ) -> pd.DataFrame:
    """`n` PyXtal random crystals of `group` with training-mix compositions (see the module
    docstring); columns formula, source_material_id, cif."""
    from pymatgen.core import Composition
    from pyxtal import pyxtal

    from cfmc.stability.known import read_known

    known = read_known()
    rng = np.random.default_rng(seed)
    rows = []
    order = rng.permutation(len(known))
    for i in order:
        if len(rows) >= n:
            break
        comp = Composition(known["formula"].iloc[i])
        species = [el.symbol for el in comp.elements]
        unit = [int(round(comp[el])) for el in species]
        for z in range(1, 5):
            counts = [c * z for c in unit]
            if sum(counts) > max_atoms:
                break
            crystal = pyxtal()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    crystal.from_random(3, group, species, counts, max_count=tries,
                                        random_state=int(rng.integers(2**31)))
            except Exception:  # incompatible with the group's Wyckoff positions: next size
                continue
            if crystal.valid:
                s = crystal.to_pymatgen()
                rows.append({"formula": s.composition.reduced_formula,
                             "source_material_id": known["material_id"].iloc[i],
                             "cif": s.to(fmt="cif")})
                break
    return pd.DataFrame(rows, columns=["formula", "source_material_id", "cif"])


def rehull_screen(earlier: Path, out: Path, cache: str | None, ternary_oxidation: bool
                  ) -> pd.DataFrame:
    """An earlier screen's screened.csv with its hull-dependent columns placed again against
    today's hull (`cfmc.stability.workflow.place_on_hull`; `--rehull`), written to
    `out`/screened.csv."""
    from cfmc.stability.build import build_hull
    from cfmc.stability.hull import ReferenceHull
    from cfmc.stability.workflow import place_on_hull

    res = pd.read_csv(earlier / "screened.csv")
    hull = ReferenceHull(cache=cache, ternary_oxidation=ternary_oxidation)
    ok = res["status"] == "ok"
    build_hull(hull, set(res.loc[ok, "chemsys"]))
    for i in res.index[ok]:
        for k, v in place_on_hull(res.at[i, "formula"], res.at[i, "energy_per_atom"],
                                  hull).items():
            res.at[i, k] = v
        res.at[i, "sun"] = bool(res.at[i, "stable"] and res.at[i, "unique"]
                                and res.at[i, "novel"])
    out.mkdir(parents=True, exist_ok=True)
    res.to_csv(out / "screened.csv", index=False)
    return res


def main() -> None:
    from cfmc.prior_samples import sample_prior
    from cfmc.stability import screen

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="crystals per group and method")
    ap.add_argument("--groups", type=int, nargs="+", default=[225, 62])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-atoms", type=int, default=20)
    ap.add_argument("--prior", default=None, help="prior checkpoint (default: shipped)")
    ap.add_argument("--cache", default=None, help="hull cache folder (default: the screen's)")
    ap.add_argument("--out", default="runs/bench/sun_rate")
    ap.add_argument("--ternary-oxidation", action="store_true",
                    help="the hull with ternaries at further oxidation states too")
    ap.add_argument("--resume", action="store_true", help="reuse the sets and screens on disk")
    ap.add_argument("--rehull", default=None, metavar="EARLIER_OUT",
                    help="re-place the relaxations of an earlier run's screens against today's "
                         "hull instead of screening again")
    args = ap.parse_args()
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.resume:
        raise SystemExit(f"{out} exists and is not empty: pass --resume, or another --out")
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"n_per_group_and_method": args.n, "seed": args.seed,
                    "estimate": "machine-learned E_hull (CHGNet, offline hull); see "
                                "experiments/README.md for its calibration", "results": {}}
    old = out / "report.json"
    if args.resume and old.exists():
        report = json.loads(old.read_text())
    report["ternary_oxidation"] = args.ternary_oxidation  # the hull the screens use
    for g in args.groups:
        t = time.perf_counter()
        drawn, pyx = out / f"prior_{g}" / "samples.csv", out / f"pyxtal_{g}.csv"
        if args.resume and drawn.exists():
            prior = pd.read_csv(drawn)
        else:
            prior = sample_prior(g, out / f"prior_{g}", num=args.n, prior=args.prior,
                                 seed=args.seed, force=True).table
        prior = prior.assign(cif=prior["cif"].fillna("") if "cif" in prior else "")
        if args.resume and pyx.exists():
            random = pd.read_csv(pyx)
        else:
            random = pyxtal_random(g, args.n, args.seed + g, args.max_atoms)
            random.to_csv(pyx, index=False)
        report.setdefault(f"seconds_sampling_{g}", round(time.perf_counter() - t, 1))
        for method, table in (("prior", prior), ("pyxtal", random)):
            t = time.perf_counter()
            done = out / f"screen_{method}_{g}" / "screened.csv"
            if args.resume and done.exists() and f"{method} {g}" in report["results"]:
                continue
            if args.rehull:
                res = rehull_screen(Path(args.rehull) / f"screen_{method}_{g}",
                                    out / f"screen_{method}_{g}", args.cache,
                                    args.ternary_oxidation)
            else:
                res = screen(table, out / f"screen_{method}_{g}", force=True, cache=args.cache,
                             ternary_oxidation=args.ternary_oxidation)
            ok = res[res["status"] == "ok"]
            n = len(res)
            report["results"][f"{method} {g}"] = {
                "n": n, "screened": len(ok), "failed": n - len(ok),
                "stable": int(ok["stable"].sum()) if len(ok) else 0,
                "novel": int(ok["novel"].sum()) if len(ok) else 0,
                "unique": int(ok["unique"].sum()) if len(ok) else 0,
                "sun": int(ok["sun"].sum()) if len(ok) else 0,
                "sun_rate": float(ok["sun"].sum() / n) if n else None,
                "e_hull_median": float(ok["e_hull"].median()) if len(ok) else None,
                "decomposes_to_element": int(ok["decomposes_to_element"].astype(bool).sum()),
                "seconds": round(time.perf_counter() - t, 1)}
            (out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
