"""Regression check of the sweep engine against an earlier checkout of cfmc.

    python benchmarks/regression_engine.py --old-tree ../cfmc-old [--chains 3000 --sweeps 30]
    python benchmarks/regression_engine.py --compare-runs runs/demo-old runs/demo

1. Enumerable target: the two-site template 221-a-[?]-b-[?] over {Na, K, Cl, Br} under a fixed
   tiny random prior (16 states, exact probabilities by enumeration), with and without a cheap
   conditioner (plain MH and delayed acceptance). The same script snippet runs in this tree and,
   in a subprocess with PYTHONPATH pointing at `--old-tree`, in the old one (both engines expose
   `Sampler(posterior, constraints, config).init / .sweep`). Prints the chi-square p-value of each
   engine against the exact distribution and of the two engines against each other
   (contingency table).
2. Two run directories of the same infill (e.g. `make demo` before and after a change): distinct
   formulas, the share spglib finds in the template's group, charge balanced (SMACT), not in the
   training mix, formulas in common, and wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy import stats

SNIPPET = r"""
import itertools, json, sys
import jax, numpy as np
from cfmc import priors
from cfmc.posterior import Posterior
from cfmc.sweep import Sampler, SweepConfig
from cfmc.template import Template

chains, sweeps, seed = (int(v) for v in sys.argv[1:4])
model = priors.CrystalFormer(priors.get_config("tiny").replace(init_scale=0.5),
                             jax.random.PRNGKey(0))
t = Template.parse("221-a-[?]-0-0-0-b-[?]-1/2-1/2-1/2", elements=["Na", "K", "Cl", "Br"])
bonus = {"Na": 1.5, "K": -1.0, "Cl": 0.5, "Br": 0.0}

def cheap(crystals):
    return np.array([bonus[c.species[0]] - bonus[c.species[1]] for c in crystals])

out = {}
for name, conds, cfg in (("prior/uniform", [], SweepConfig(species_proposal="uniform")),
                         ("prior/prior", [], SweepConfig(species_proposal="prior")),
                         ("cheap/plain", [cheap], SweepConfig()),
                         ("cheap/delayed", [cheap], SweepConfig(delayed_acceptance=True))):
    sampler = Sampler(Posterior(model, conditioners=conds, marginalize_lattice=True),
                      t.constraints(2), cfg)
    state = sampler.init(t.random_arrays(chains, np.random.default_rng(seed), 2))
    key = jax.random.PRNGKey(seed)
    for i in range(sweeps):
        state, _ = sampler.sweep(jax.random.fold_in(key, i), state)
    sp = np.asarray(state.position.species)[:, :2]
    out[name] = sp.tolist()
x = t.random_arrays(16, np.random.default_rng(0), 2)
states = np.array(list(itertools.product([11, 19, 17, 35], repeat=2)), np.int32)
x = x._replace(species=states)
out["states"] = states.tolist()
out["logp"] = np.asarray(Posterior(model, marginalize_lattice=True).prior_logdensity(x)).tolist()
symbol = {11: "Na", 19: "K", 17: "Cl", 35: "Br"}
out["like"] = [bonus[symbol[a]] - bonus[symbol[b]] for a, b in states.tolist()]
json.dump(out, sys.stdout)
"""


def run_engine(tree: Path | None, chains: int, sweeps: int, seed: int) -> dict:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree) + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run([sys.executable, "-c", SNIPPET, str(chains), str(sweeps), str(seed)],
                         env=env, capture_output=True, text=True, cwd=tree or Path.cwd())
    if res.returncode:
        raise RuntimeError(f"engine in {tree or 'this tree'} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout)


def counts(species: list, states: np.ndarray) -> np.ndarray:
    index = {tuple(s): k for k, s in enumerate(states.tolist())}
    return np.bincount([index[tuple(s)] for s in species], minlength=len(states))


def chi2_exact(c: np.ndarray, probs: np.ndarray) -> float:
    expected = probs / probs.sum() * c.sum()
    small = expected < 5  # pool rare states so the approximation holds
    return float(stats.chisquare(np.append(c[~small], c[small].sum()),
                                 np.append(expected[~small], expected[small].sum())).pvalue)


def chi2_two(a: np.ndarray, b: np.ndarray) -> float:
    keep = (a + b) >= 10
    table = np.stack([np.append(a[keep], a[~keep].sum()), np.append(b[keep], b[~keep].sum())])
    table = table[:, table.sum(0) > 0]
    return float(stats.chi2_contingency(table)[1])


def compare_engines(old_tree: Path, chains: int, sweeps: int, seed: int) -> None:
    new = run_engine(None, chains, sweeps, seed)
    old = run_engine(old_tree, chains, sweeps, seed)
    states = np.array(new["states"])
    logp, like = np.array(new["logp"], float), np.array(new["like"], float)
    print(f"enumerable target, {chains} chains x {sweeps} sweeps, seed {seed}: chi-square p")
    print(f"{'kernel/target':<16}{'new vs exact':>14}{'old vs exact':>14}{'new vs old':>12}")
    for name in ("prior/uniform", "prior/prior", "cheap/plain", "cheap/delayed"):
        target = logp + (like if name.startswith("cheap") else 0.0)
        probs = np.exp(target - target.max())
        a, b = counts(new[name], states), counts(old[name], states)
        print(f"{name:<16}{chi2_exact(a, probs):>14.3f}{chi2_exact(b, probs):>14.3f}"
              f"{chi2_two(a, b):>12.3f}")


def known_formulas() -> set[str]:
    """Reduced formulas of the default training mix (from each CIF's _chemical_formula_sum)."""
    from pymatgen.core import Composition

    from cfmc.data import DEFAULT_TRAINING_FILES, read_table, shared_dir

    pattern = re.compile(r"_chemical_formula_sum\s+'?([^'\n]+)'?")
    out = set()
    for name in DEFAULT_TRAINING_FILES:
        for cif in read_table(shared_dir() / "data" / name)["cif"]:
            m = pattern.search(cif)
            if m:
                out.add(Composition(m.group(1)).reduced_formula)
    return out


def run_figures(run: Path, known: set[str]) -> dict:
    import pandas as pd
    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from cfmc.chemistry import charge_balanced

    samples = pd.read_csv(run / "samples.csv")
    summary = json.loads((run / "summary.json").read_text())
    groups = [SpacegroupAnalyzer(Structure.from_str(c, fmt="cif"), symprec=0.1)
              .get_space_group_number() for c in samples["cif"]]
    formulas = set(samples["formula"])
    conv = summary.get("convergence", {}).get("log_posterior", {})
    return {"candidates": len(samples), "distinct_formulas": len(formulas),
            "in_group": int(np.sum(np.array(groups) == int(samples["spacegroup"].iloc[0]))),
            "charge_balanced": int(sum(charge_balanced(f) for f in samples["formula"])),
            "new": int(sum(f not in known for f in formulas)), "formulas": formulas,
            "seconds": summary.get("seconds"), "rhat": conv.get("rhat"),
            "ess_bulk": conv.get("ess_bulk")}


def compare_runs(old: Path, new: Path) -> None:
    known = known_formulas()
    a, b = run_figures(old, known), run_figures(new, known)
    print(f"{'':<22}{str(old):>24}{str(new):>24}")
    for k in ("candidates", "distinct_formulas", "in_group", "charge_balanced", "new",
              "seconds", "rhat", "ess_bulk"):
        fa, fb = a[k], b[k]
        fmt = (lambda v: f"{v:.3g}") if isinstance(fa, float) else str
        print(f"{k:<22}{fmt(fa):>24}{fmt(fb):>24}")
    print(f"formulas in common: {len(a['formulas'] & b['formulas'])}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old-tree", type=Path, help="checkout of the earlier cfmc")
    p.add_argument("--compare-runs", nargs=2, type=Path, metavar=("OLD", "NEW"))
    p.add_argument("--chains", type=int, default=3000)
    p.add_argument("--sweeps", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.old_tree is None and args.compare_runs is None:
        p.error("give --old-tree and/or --compare-runs")
    if args.old_tree is not None:
        compare_engines(args.old_tree.resolve(), args.chains, args.sweeps, args.seed)
    if args.compare_runs is not None:
        compare_runs(*args.compare_runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
