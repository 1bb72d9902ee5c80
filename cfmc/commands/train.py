"""`cfmc train`: fit the CrystalFormer prior to crystal CSV files (default: the shared mix)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("csv", nargs="*", help="CSV files, CDVAE layout (default: shared mix)")
    parser.add_argument("--config", default="default", help="named prior config (default: default)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--warmup-steps", type=int, default=200)
    parser.add_argument("--clip-norm", type=float, default=1.0)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0, help="initialisation and batch order")
    parser.add_argument("--out", required=True, help="run directory")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last")
    parser.add_argument(
        "--init",
        default=None,
        metavar="PRIOR",
        help="start from this prior checkpoint's weights and config (fine-tuning or a longer "
        "schedule); 'default' is the shipped prior",
    )
    parser.add_argument("--force", action="store_true", help="start afresh in a used OUT")
    parser.add_argument(
        "--fourier-features",
        type=int,
        default=None,
        metavar="NF",
        help="with --init: widen the coordinate features to NF frequencies (new ones start at "
        "zero weight, so the starting density is the checkpoint's)",
    )
    parser.add_argument(
        "--exclusion-zone",
        action="store_true",
        help="with --init: add the exclusion zone around earlier atoms (priors/exclusion.py) to "
        "the checkpoint's coordinate density, to be trained with it",
    )
    parser.add_argument(
        "--trainable",
        choices=("all", "exclusion"),
        default="all",
        help="what training updates: every weight, or only the exclusion zone's three scalars "
        "(the transformer fixed, no dropout)",
    )
    parser.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget")
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
    parser.add_argument("--limit", type=int, default=None, help="rows read per file")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from cfmc.priors.train import TrainOptions
    from cfmc.priors.workflow import train_prior

    options = TrainOptions(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
        clip_norm=args.clip_norm, val_fraction=args.val_fraction, seed=args.seed,
        max_minutes=args.max_minutes, checkpoint_minutes=args.checkpoint_minutes,
        progress=not args.no_progress, trainable=args.trainable,
    )
    result = train_prior(
        args.csv or None, args.out, options, config=args.config, init=args.init,
        fourier_features=args.fourier_features, exclusion_zone=args.exclusion_zone,
        resume=args.resume, force=args.force, limit=args.limit,
    )
    if result.log:
        best = min(result.log, key=lambda r: r["val_total"])
        print(
            f"best validation NLL {best['val_total']:.3f} per crystal at epoch {best['epoch']}; "
            f"prior saved in {args.out}/best"
        )
    return 0
