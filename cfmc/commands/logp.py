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
    from cfmc.priors.evaluate import score_file

    out = Path(args.out)
    if out.exists() and not args.force:
        raise FileExistsError(f"{out} exists (pass --force to overwrite)")
    scored = score_file(args.data, args.prior, args.batch_size, args.limit)
    out.parent.mkdir(parents=True, exist_ok=True)
    scored.table.to_csv(out, index=False)
    print(f"{scored.scored} crystals scored, {sum(scored.skip_counts.values())} rows not scored",
          end="")
    if scored.skip_counts:
        print(f" ({', '.join(f'{k}: {v}' for k, v in scored.skip_counts.items())})")
    else:
        print()
    if scored.nll:
        nll = scored.nll
        print(
            f"mean NLL per crystal: {nll['total']:.3f} (wyckoff {nll['wyckoff']:.3f}, species "
            f"{nll['species']:.3f}, coords {nll['coords']:.3f}, lattice {nll['lattice']:.3f})"
        )
    print(f"written {out}")
    return 0
