"""`cfmc design`: sample crystals of a space group conditioned on target properties.

    cfmc design --spacegroup 225 --target band_gap=2.0 --target formation_energy=-3.0 \
        --chains 256 --sweeps 40 --out runs/fig9

Each `--target NAME=VALUE` adds a Gaussian term around VALUE for the registered predictor NAME
(width: `--sigma NAME=S`, else the predictor's typical error). Parses the options and calls
`cfmc.design.design`.
"""

from __future__ import annotations

import argparse

from cfmc.commands.common import add_run_arguments, add_screen_arguments, report, screen_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spacegroup", type=int, help="space group number 1-230")
    p.add_argument("--template", help="Wyckoff template with [?] blanks (sets the space group)")
    p.add_argument("--elements", nargs="+", metavar="EL", help="elements the sites may take")
    p.add_argument("--target", action="append", default=[], metavar="NAME=VALUE", required=True,
                   help="target property value, e.g. band_gap=2.0; repeatable")
    p.add_argument("--sigma", action="append", default=[], metavar="NAME=S",
                   help="width of a target's Gaussian (default: the predictor's typical error)")
    p.add_argument("--chains", type=int, default=256)
    p.add_argument("--pool", type=int, default=4,
                   help="draw POOL x chains prior samples (the unconditional reference) and start "
                        "the chains from the best distinct ones")
    p.add_argument("--species-proposal", choices=("uniform", "prior"), default="prior")
    p.add_argument("--delayed-acceptance", action="store_true",
                   help="screen proposals by the prior before calling the predictors")
    p.add_argument("--top", type=int, default=0,
                   help="keep the N best distinct final crystals in samples.csv (0: all)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run saved in --out (same settings; --sweeps may grow)")
    add_screen_arguments(p)
    add_run_arguments(p, sweeps=40, burn="20", block=False)


def run(args: argparse.Namespace) -> int:
    from cfmc import runio
    from cfmc.design import design
    from cfmc.targets import gaussian_targets, parse_assignments
    from cfmc.validate import real

    if args.spacegroup is None and args.template is None:
        raise ValueError("give --spacegroup or --template")
    targets = parse_assignments(args.target, "--target")
    sigmas = parse_assignments(args.sigma, "--sigma")
    for name, sigma in sigmas.items():
        real(sigma, f"--sigma {name}", 0.0, low_open=True)
    if not args.force:  # refuse before loading the predictors
        runio.prepare(args.out, resume=args.resume)
    result = design(
        gaussian_targets(targets, sigmas), args.out, spacegroup=args.spacegroup,
        template=args.template, prior=args.prior, chains=args.chains, sweeps=args.sweeps,
        burn_in=args.burn_in,
        until_rhat=args.until_rhat, min_ess=args.min_ess, block=args.block,
        block_proposal=args.block_proposal, block_tries=args.block_tries, ladder=args.ladder,
        pool=args.pool,
        seed=args.seed, elements=args.elements,
        allow_radioactive=args.allow_radioactive, species_proposal=args.species_proposal,
        delayed_acceptance=args.delayed_acceptance, temperature=args.temperature,
        top=args.top, force=args.force, resume=args.resume, progress=not args.no_progress,
        settings={"targets": targets, "sigmas": sigmas, "prior": args.prior},
        workers=args.workers, ray_address=args.ray_address, chunk=args.chunk,
        devices=args.devices, screen=screen_options(args),
    )
    for name, m in result.summary["metrics"].items():
        print(f"{name}: target {m['target']:g}, mean |y - target| "
              f"{m['mean_abs_distance_unconditional']:.3f} (prior samples) -> "
              f"{m['mean_abs_distance_conditioned']:.3f} (conditioned)")
    report(result.out, result.summary, len(result.samples))
    return 0
