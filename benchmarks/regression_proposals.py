"""Regression check of the fitted block proposals (template pool and crystal pool) against an
earlier checkout of cfmc: the same seeded draws, their log densities and validity, field by field.

    python benchmarks/regression_proposals.py --old-tree ../cfmc-old

No prior is needed: both proposals are fitted to random fills of the double perovskite template
with random weights. Discrete fields must be equal, floats bit for bit (same machine, same
shapes). Prints the largest difference per field and PASS / FAIL.

Recorded for the shared wrapped-normal kernel and Wyckoff projection (`cfmc.kernels.wrapped`),
against 6d7630c: every field bit for bit equal, PASS.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TEMPLATE = "225-a-[?]-0-0-0-b-[?]-1/2-1/2-c-[?]-1/4-1/4-e-[?]-[?]-0-0"
ELEMENTS = ["Cs", "K", "Na", "Rb", "Al", "Ga", "In", "Sc", "F", "Cl"]


def draws(path: Path) -> None:
    """Write both proposals' draws to `path` (.npz), with this interpreter's cfmc."""
    import jax
    import jax.numpy as jnp

    from cfmc.chemistry import element_mask
    from cfmc.kernels import crystal_pool_proposal, free_constraints, population_proposal
    from cfmc.template import Template

    t = Template.parse(TEMPLATE, elements=ELEMENTS)
    x = t.random_arrays(300, np.random.default_rng(0), 4)
    x = x._replace(lattice=np.tile(np.array([10.0, 10, 10, 90, 90, 90], np.float32), (300, 1)))
    w = np.random.default_rng(1).normal(size=300)
    pos = jax.tree.map(lambda v: jnp.asarray(v[0]), x)
    pp = population_proposal(t, 4)
    d = pp.draws(jax.random.PRNGKey(3), pos, jax.tree.map(jnp.asarray, t.constraints(4)), 0, 64,
                 pp.fit(x, w))
    out = {"pool.coords": d.positions.coords, "pool.species": d.positions.species,
           "pool.log_q": d.log_q, "pool.log_q_current": d.log_q_current}
    cp = crystal_pool_proposal(225, allowed=element_mask())
    cons = jax.tree.map(lambda v: jnp.asarray(v[0]), free_constraints(x, element_mask()))
    d = cp.draws(jax.random.PRNGKey(4), pos, cons, 0, 64, cp.fit(x, w))
    out.update({"crystal.coords": d.positions.coords, "crystal.species": d.positions.species,
                "crystal.lattice": d.positions.lattice, "crystal.log_q": d.log_q,
                "crystal.log_q_current": d.log_q_current, "crystal.valid": d.is_valid})
    np.savez(path, **{k: np.asarray(v) for k, v in out.items()})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old-tree", type=Path, help="checkout of the earlier cfmc")
    p.add_argument("--write", type=Path, help=argparse.SUPPRESS)  # the subprocess's output
    args = p.parse_args(argv)
    if args.write is not None:
        draws(args.write)
        return 0
    if args.old_tree is None:
        p.error("--old-tree is required")
    with tempfile.TemporaryDirectory() as tmp:
        old, new = Path(tmp) / "old.npz", Path(tmp) / "new.npz"
        env = {**os.environ, "PYTHONPATH": str(args.old_tree.resolve())}
        subprocess.run([sys.executable, __file__, "--write", str(old)], check=True, env=env,
                       cwd=args.old_tree)
        draws(new)
        a, b = np.load(old), np.load(new)
        ok = set(a.files) == set(b.files)
        for k in sorted(a.files):
            same = np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f")
            diff = np.nanmax(np.abs(a[k].astype(float) - b[k].astype(float)))
            print(f"{k:<24}{diff:>12.3g}  {'equal' if same else 'DIFFERS'}")
            ok &= same
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
