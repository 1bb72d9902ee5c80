"""Regression check of moves with host conditioners against an earlier checkout of cfmc.

    python benchmarks/regression_design.py --old-tree ../cfmc-old [--chains 8 --sweeps 3]

Runs the same seeded runs in this tree and, in a subprocess with PYTHONPATH pointing at
`--old-tree`, in the old one, and compares them field by field:

1. `cfmc.design.design` on the Fig. 9 posterior (space group 225, MEGNet band gap 2 eV and
   formation energy -3 eV/atom, width 0.3, the shipped prior), with and without delayed
   acceptance: every variable of trace.nc and every column of chains.csv.
2. The sweep engine on a tiny random prior and a four-site template with a cheap
   lattice-dependent conditioner: plain MH, delayed acceptance, the prior block move (MH and
   i-SIR with 3 tries) and replica exchange, chunks of 5: the final chains (crystals, log
   densities, values) and the kernel counts; and two runs without conditioners (one program per
   move), the prior-informed element move (site by site) in chunks of 5 and the i-SIR block
   move.

Discrete fields must be equal; floats within `--rtol` / `--atol` (same machine, same shapes:
expected bit for bit). Prints the largest float difference per case and PASS / FAIL.

Recorded for the split of conditioned moves into two programs (against 4fc41ac, the last commit
with one program per move calling the predictors through jax.pure_callback): the eight engine
cases at 12 chains x 4 sweeps and both design cases at 8 chains x 3 sweeps, every field bit for
bit equal (max |new - old| = 0), PASS.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SNIPPET = r"""
import json, sys
import jax, numpy as np

out_file, chains, sweeps, seed, what = sys.argv[1], *(int(v) for v in sys.argv[2:5]), sys.argv[5]
res = {}
if what == "design":
    import arviz as az
    import pandas as pd
    from cfmc.design import design
    from cfmc.targets import gaussian_targets

    tmp = sys.argv[6]
    for da in (True, False):
        out = f"{tmp}/design_da{int(da)}"
        design(gaussian_targets({"band_gap": 2.0, "formation_energy": -3.0},
                                {"band_gap": 0.3, "formation_energy": 0.3}),
               out, spacegroup=225, chains=chains, sweeps=sweeps, burn_in=1, pool=2, seed=seed,
               delayed_acceptance=da, force=True, progress=False)
        post = az.from_netcdf(f"{out}/trace.nc").posterior
        for v in post.data_vars:
            res[f"da{int(da)}/trace/{v}"] = np.asarray(post[v].values)
        table = pd.read_csv(f"{out}/chains.csv")
        for c in table.columns:
            res[f"da{int(da)}/chains/{c}"] = table[c].to_numpy()
else:
    from cfmc import priors
    from cfmc.kernels import prior_block_proposal
    from cfmc.posterior import Posterior
    from cfmc.sweep import Sampler, SweepConfig
    from cfmc.template import Template

    model = priors.CrystalFormer(priors.get_config("tiny").replace(init_scale=0.5),
                                 jax.random.PRNGKey(0))
    t = Template.parse("225-a-[?]-0-0-0-b-[?]-1/2-1/2-c-[?]-1/4-1/4-e-[?]-[?]-0-0",
                       elements=["Ca", "Sr", "Ti", "Zr", "O", "F"])
    n = 4

    def volume(crystals):  # cell volume per site near 20 A^3 (from the lattice parameters)
        out = []
        for c in crystals:
            lat = np.asarray(c.lattice, float)
            cos = np.cos(np.deg2rad(lat[3:]))
            v = np.prod(lat[:3]) * np.sqrt(max(1 - np.sum(cos**2) + 2 * np.prod(cos), 0.0))
            out.append(-((v / len(c.species) - 20.0) ** 2) / 200.0)
        return np.array(out)

    block = prior_block_proposal(model, **t.sampler_clamps(model.config.max_sites))
    # the per-site element move where this tree also has the scan (compared bit for bit; the
    # scan's own check is statistical: tests/kernels/test_kernels.py, regression_engine.py)
    sites = ({"species_scan": False} if "species_scan" in SweepConfig.__dataclass_fields__
             else {})
    cases = {"plain": SweepConfig(lattice=True, chunk=5),
             "delayed": SweepConfig(lattice=True, delayed_acceptance=True, chunk=5),
             "prior": SweepConfig(lattice=True, species_proposal="prior", chunk=5),
             "block": SweepConfig(lattice=True, block=True, chunk=5),
             "isir": SweepConfig(lattice=True, block=True, block_tries=3, chunk=5),
             "ladder": SweepConfig(lattice=True, ladder=(1.0, 2.0), chunk=5),
             "prior-only": SweepConfig(species_proposal="prior", chunk=5, **sites),
             "prior-only-block": SweepConfig(block=True, block_tries=3)}
    for name, cfg in cases.items():
        conds = [] if name.startswith("prior-only") else [volume]
        post = Posterior(model, conditioners=conds, marginalize_lattice=not conds)
        sampler = Sampler(post, t.constraints(n), cfg, block=block if cfg.block else None)
        x = t.random_arrays(chains, np.random.default_rng(seed), n)
        state = sampler.init(x)
        key = jax.random.PRNGKey(seed)
        for i in range(sweeps):
            state, _ = sampler.sweep(jax.random.fold_in(key, i), state)
        c = jax.device_get(state.chains)
        for f, v in zip(c.position._fields, c.position):
            res[f"{name}/position/{f}"] = np.asarray(v)
        for f in ("logdensity", "log_prior", "log_likelihood"):
            res[f"{name}/{f}"] = np.asarray(getattr(c, f))
        for k, v in c.values.items():
            res[f"{name}/values/{k}"] = np.asarray(v)
        for kind, d in state.stats.items():
            res[f"{name}/stats/{kind}"] = np.array([d[k] for k in sorted(d)])
np.savez(out_file, **{k: np.asarray(v) for k, v in res.items()})
"""


def run(tree: Path | None, what: str, chains: int, sweeps: int, seed: int, tmp: str) -> dict:
    """Run the snippet in this tree (None) or in `tree`; its arrays by name."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree) + os.pathsep + env.get("PYTHONPATH", "")
    tag = "old" if tree is not None else "new"
    out = Path(tmp) / f"{what}_{tag}.npz"
    work = Path(tmp) / f"{what}_{tag}"
    work.mkdir(exist_ok=True)
    res = subprocess.run([sys.executable, "-c", SNIPPET, str(out), str(chains), str(sweeps),
                          str(seed), what, str(work)], env=env, capture_output=True, text=True,
                         cwd=tree or Path.cwd())
    if res.returncode:
        raise RuntimeError(f"{what} in {tree or 'this tree'} failed:\n{res.stderr[-3000:]}")
    with np.load(out, allow_pickle=True) as f:
        return {k: f[k] for k in f.files}


def compare(new: dict, old: dict, rtol: float, atol: float) -> bool:
    """Print the per-case comparison; True when every field agrees."""
    ok = new.keys() == old.keys()
    if not ok:
        print(f"fields differ: only new {sorted(new.keys() - old.keys())}, "
              f"only old {sorted(old.keys() - new.keys())}")
    cases: dict[str, list[float]] = {}
    for k in sorted(new.keys() & old.keys()):
        a, b = new[k], old[k]
        case = k.split("/")[0]
        worst = cases.setdefault(case, [0.0, 0.0])
        if a.shape != b.shape:
            print(f"{k}: shapes {a.shape} and {b.shape}")
            ok = False
            continue
        if a.dtype.kind in "fc":
            same_nan = np.array_equal(np.isnan(a), np.isnan(b))
            fin = np.isfinite(a) & np.isfinite(b)
            close = same_nan and np.array_equal(a[~fin & ~np.isnan(a)], b[~fin & ~np.isnan(b)]) \
                and np.allclose(a[fin], b[fin], rtol=rtol, atol=atol)
            if fin.any():
                worst[0] = max(worst[0], float(np.max(np.abs(a[fin] - b[fin]))))
            worst[1] += 0 if np.array_equal(a, b, equal_nan=True) else 1
        else:
            close = np.array_equal(a, b)
            worst[1] += 0 if close else 1
        if not close:
            print(f"{k}: differs")
            ok = False
    print(f"{'case':<18}{'max |new - old|':>16}{'fields not bit-equal':>22}")
    for case, (diff, unequal) in cases.items():
        print(f"{case:<18}{diff:>16.3g}{int(unequal):>22}")
    return ok


def main(argv: list[str] | None = None) -> int:
    """Run both trees and compare."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old-tree", type=Path, required=True, help="checkout of the earlier cfmc")
    p.add_argument("--chains", type=int, default=8)
    p.add_argument("--sweeps", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="+", default=["engine", "design"],
                   choices=["engine", "design"])
    p.add_argument("--rtol", type=float, default=1e-5)
    p.add_argument("--atol", type=float, default=1e-5)
    args = p.parse_args(argv)
    good = True
    with tempfile.TemporaryDirectory() as tmp:
        for what in args.only:
            new = run(None, what, args.chains, args.sweeps, args.seed, tmp)
            old = run(args.old_tree.resolve(), what, args.chains, args.sweeps, args.seed, tmp)
            print(f"== {what}: {args.chains} chains x {args.sweeps} sweeps, seed {args.seed}")
            good &= compare(new, old, args.rtol, args.atol)
    print("PASS" if good else "FAIL")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
