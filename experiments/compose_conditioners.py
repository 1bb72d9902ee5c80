"""Add your own term to the posterior: MEGNet targets plus a charge-balance conditioner.

    python experiments/compose_conditioners.py [--quick] [--prior DIR] [--out DIR]

A conditioner is any function from a list of crystals to log-likelihoods; `+` adds it to the
others. Here charge-unbalanced compositions (by SMACT, `cfmc.chemistry.charge_balanced`) pay a
log-likelihood penalty of 5 on top of the Gaussian band-gap and formation-energy terms.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from cfmc.predictors import FunctionConditioner, Gaussian, get_predictor

from cfmc.chemistry import charge_balanced
from cfmc.design import design


def charge_balance(crystals) -> np.ndarray:
    """log p(balanced | C): 0 when SMACT balances the composition, -5 when it does not."""
    return np.array([0.0 if charge_balanced(c.composition) else -5.0 for c in crystals])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny run for tests")
    p.add_argument("--prior", default=None, help="prior checkpoint (default: the shipped one)")
    p.add_argument("--force", action="store_true", help="overwrite an earlier run in --out")
    p.add_argument("--out", default="runs/experiments/compose_conditioners")
    args = p.parse_args(argv)
    chains, sweeps = (4, 2) if args.quick else (32, 16)

    target = (
        Gaussian(get_predictor("band_gap"), 2.0)
        + Gaussian(get_predictor("formation_energy"), -3.0)
        + FunctionConditioner(charge_balance, name="charge_balance", uses_lattice=False)
    )
    result = design(target, args.out, spacegroup=225, prior=args.prior, chains=chains,
                    sweeps=sweeps, burn_in=sweeps // 2, force=args.force, progress=not args.quick)

    for label, df in (("prior samples", result.unconditional), ("conditioned", result.conditioned)):
        balanced = np.mean([charge_balanced(f) for f in df["formula"]])
        print(f"{label:>14}: {100 * balanced:5.1f}% charge balanced, median band gap "
              f"{df['band_gap'].median():.2f} eV, formation energy "
              f"{df['formation_energy'].median():.2f} eV/atom")
    print(result.samples[["formula", "band_gap", "formation_energy", "log_posterior"]].head(10))
    return 0


if __name__ == "__main__":
    sys.exit(main())
