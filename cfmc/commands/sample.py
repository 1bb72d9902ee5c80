"""`cfmc sample`: draw crystals of one space group from the prior; CSV plus one CIF per sample."""

from __future__ import annotations

import argparse
from pathlib import Path

from cfmc.commands.common import add_worker_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spacegroup", type=int, required=True, help="space group number 1..230")
    parser.add_argument("--num", type=int, default=1000, help="crystals to draw")
    parser.add_argument("--elements", nargs="+", default=None, help="allowed element symbols")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus filter on species")
    parser.add_argument("--prior", default=None, help="checkpoint directory (default: shipped)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--force", action="store_true", help="write into a non-empty OUT")
    parser.add_argument(
        "--valid-only",
        action="store_true",
        help="redraw crystals that are not structurally valid (atoms closer than 0.5 A, site "
        "collisions): samples the prior restricted to valid crystals",
    )
    parser.add_argument("--max-rounds", type=int, default=20, help="redraw rounds (--valid-only)")
    parser.add_argument("--resume", action="store_true",
                        help="complete an interrupted draw into OUT (same settings)")
    add_worker_arguments(parser)
    parser.add_argument("--chunk", type=int, default=256, metavar="N",
                        help="crystals per unit of work (drawn together, checkpointed, one Ray "
                        "task); the crystals are the same however the chunks are spread")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from cfmc.prior_samples import sample_prior

    res = sample_prior(
        args.spacegroup, args.out, num=args.num, elements=args.elements,
        temperature=args.temperature, top_p=args.top_p, prior=args.prior, seed=args.seed,
        valid_only=args.valid_only, max_rounds=args.max_rounds, force=args.force,
        resume=args.resume, workers=args.workers, ray_address=args.ray_address,
        chunk=args.chunk, progress=not args.no_progress,
    )
    out = Path(args.out)
    print(
        f"{args.num} crystals of space group {args.spacegroup} in {out / 'samples.csv'}; "
        f"mean log p {res.mean_log_prob:.3f}; {args.num - res.failed} CIF files in {out / 'cif'}"
        + (f"; {res.failed} without a valid structure (see the error column)"
           if res.failed else "")
        + f"; {res.valid} structurally valid"
        + (f" ({res.redrawn} redrawn)" if args.valid_only else "")
    )
    return 0
