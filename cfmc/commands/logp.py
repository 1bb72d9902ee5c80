"""`cfmc logp`: the prior's log probability of each crystal in a dataset, by term."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="CSV (CDVAE layout, CIF in column `cif`)")
    parser.add_argument("--prior", default=None, help="checkpoint directory (default: shipped)")
    parser.add_argument("--out", required=True, help="output CSV")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--limit", type=int, default=None, help="rows to read")
    parser.add_argument("--force", action="store_true", help="overwrite OUT")


def run(args: argparse.Namespace) -> int:
    from cfmc.priors.config import enable_compilation_cache

    enable_compilation_cache()
    import numpy as np

    from cfmc.data import load_dataset, read_table
    from cfmc.priors import load_prior
    from cfmc.priors.train import log_prob_many

    out = Path(args.out)
    if out.exists() and not args.force:
        raise FileExistsError(f"{out} exists (pass --force to overwrite)")
    model = load_prior(args.prior)
    data = load_dataset(args.data, max_sites=model.config.max_sites, dedupe=None, limit=args.limit)
    terms = log_prob_many(model, data.arrays, args.batch_size)
    # every input row, in order, with its own columns; rows that could not be scored keep NaN
    # and say why (a crystal with more sites than the model holds has probability zero: -inf)
    table = read_table(args.data, limit=args.limit)
    names = ("logp", "logp_wyckoff", "logp_species", "logp_coords", "logp_lattice")
    scores = np.full((len(table), len(names)), np.nan)
    scores[data.table["row"].to_numpy()] = np.stack(list(terms), axis=1)
    error = np.full(len(table), "", dtype=object)
    for row, reason in zip(data.skipped["row"], data.skipped["reason"], strict=True):
        error[int(row)] = reason
        if str(reason).startswith("too many sites"):
            scores[int(row)] = -np.inf
    for j, name in enumerate(names):
        table[name] = scores[:, j]
    table["logp_error"] = error
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(f"{len(terms.total)} crystals scored, {len(data.skipped)} rows not scored", end="")
    counts = data.skip_counts() if len(data.skipped) else {}
    print(f" ({', '.join(f'{k}: {v}' for k, v in counts.items())})" if counts else "")
    if len(terms.total):
        nll = {k: -np.mean(v) for k, v in zip(terms._fields, terms, strict=True)}
        print(
            f"mean NLL per crystal: {nll['total']:.3f} (wyckoff {nll['wyckoff']:.3f}, species "
            f"{nll['species']:.3f}, coords {nll['coords']:.3f}, lattice {nll['lattice']:.3f})"
        )
    print(f"written {out}")
    return 0
