"""Validation NLL per crystal of a trained prior, total and by term, against the same model
untrained (the held-out split that training used: same data, same seed).

    python benchmarks/prior_validation.py [--prior PATH]
"""

from __future__ import annotations

import argparse


def main() -> None:
    import jax
    from cfmc.priors import CrystalFormer, load_prior
    from cfmc.priors.density import satisfies_constraints
    from cfmc.priors.evaluate import evaluate
    from cfmc.priors.train import TrainOptions, clean_dataset, split_indices

    from cfmc.data import load_dataset

    ap = argparse.ArgumentParser()
    ap.add_argument("--prior", default=None, help="checkpoint folder (default: the shipped prior)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the untrained model")
    args = ap.parse_args()
    trained = load_prior(args.prior)
    config = trained.config
    opts = TrainOptions()
    arrays, _ = clean_dataset(load_dataset(progress=False).arrays, config.max_sites)
    arrays = arrays.take(satisfies_constraints(arrays))
    _, val = split_indices(arrays.batch_size, opts.val_fraction, opts.split_seed)
    val_arrays = arrays.take(val)
    untrained = CrystalFormer(config, jax.random.PRNGKey(args.seed))
    print(f"validation crystals: {val_arrays.batch_size}")
    print(f"{'NLL per crystal':>16} {'total':>9} {'wyckoff':>9} {'species':>9} {'coords':>9} "
          f"{'lattice':>9}")
    for name, model in (("untrained", untrained), ("trained", trained)):
        nll, _ = evaluate(model, val_arrays)
        print(f"{name:>16} " + " ".join(f"{nll[k]:9.3f}" for k in
                                         ("total", "wyckoff", "species", "coords", "lattice")))


if __name__ == "__main__":
    main()
