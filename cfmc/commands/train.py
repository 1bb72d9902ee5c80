"""`cfmc train`: fit the CrystalFormer prior to crystal CSV files (default: the shared mix)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


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
    from cfmc.priors.config import enable_compilation_cache

    enable_compilation_cache()
    from cfmc.data import load_dataset
    from cfmc.priors.config import PriorConfig, get_config
    from cfmc.priors.train import TrainOptions, train

    out = Path(args.out)
    if args.init is not None and args.resume:
        raise ValueError(
            "--init starts a new run from given weights; it cannot be combined with --resume"
        )
    if args.fourier_features is not None and args.init is None:
        raise ValueError("--fourier-features widens the checkpoint given by --init")
    if args.exclusion_zone and args.init is None:
        raise ValueError(
            "--exclusion-zone extends the checkpoint given by --init (for a new model, use a "
            "config with exclusion=True)"
        )
    init_model = None
    if args.resume:
        cfg_file = out / "last" / "config.json"
        if not cfg_file.exists():
            raise FileNotFoundError(f"nothing to resume: no checkpoint at {out / 'last'}")
        config = PriorConfig.from_dict(json.loads(cfg_file.read_text()))
    elif out.exists() and any(out.iterdir()) and not args.force:
        raise FileExistsError(
            f"{out} is not empty: pass --resume to continue that run or --force to start afresh"
        )
    elif args.init is None:
        config = get_config(args.config)
    else:  # the checkpoint's weights fix its config
        from cfmc.priors.io import load_prior

        init_model = load_prior(None if args.init == "default" else args.init)
        if args.fourier_features is not None:
            from cfmc.priors.model import with_fourier_features

            init_model = with_fourier_features(init_model, args.fourier_features)
        if args.exclusion_zone:
            from cfmc.priors.model import with_exclusion_zone

            init_model = with_exclusion_zone(init_model)
        config = init_model.config
        print(f"starting from the weights of {args.init} (config {config})")
    options = TrainOptions(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        clip_norm=args.clip_norm,
        val_fraction=args.val_fraction,
        seed=args.seed,
        max_minutes=args.max_minutes,
        checkpoint_minutes=args.checkpoint_minutes,
        progress=not args.no_progress,
        trainable=args.trainable,
    )
    data = load_dataset(
        args.csv or None,
        max_sites=config.max_sites,
        limit=args.limit,
        progress=not args.no_progress,
    )
    print(f"data: {len(data)} crystals converted, skipped: {data.skip_counts() or 'none'}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "data_skipped.csv").write_text(data.skipped.to_csv(index=False))
    result = train(data.arrays, config, out, options, resume=args.resume, model=init_model)
    if result.log:
        best = min(result.log, key=lambda r: r["val_total"])
        print(
            f"best validation NLL {best['val_total']:.3f} per crystal at epoch {best['epoch']}; "
            f"prior saved in {out / 'best'}"
        )
    return 0
