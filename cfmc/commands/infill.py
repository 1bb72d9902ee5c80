"""`cfmc infill TEMPLATE`: fill the `[?]` blanks of a Wyckoff template by MCMC under the prior.
Parses the options and calls `cfmc.infill.infill`."""

from __future__ import annotations

import argparse

from cfmc.commands.common import (
    add_run_arguments,
    add_screen_arguments,
    report,
    screen_options,
    site_elements,
    site_pairs,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("template", help="e.g. '225-a-[?]-0-0-0-b-[?]-1/2-1/2-1/2-e-O-[?]-0-0'")
    p.add_argument("--chains", type=int, default=1000)
    p.add_argument("--elements", nargs="+", metavar="EL", help="allowed elements for blanks")
    p.add_argument("--site-elements", action="append", default=[], metavar="I:EL,EL",
                   help="allow-list for site I (0-based); repeatable")
    p.add_argument("--tie", action="append", default=[], metavar="I,J",
                   help="sites that hold the same element; repeatable")
    p.add_argument("--differ", action="append", default=[], metavar="I,J",
                   help="two sites whose elements must differ; repeatable")
    p.add_argument("--species-proposal", choices=("uniform", "prior"), default="prior")
    p.add_argument("--init", choices=("uniform", "prior", "pool"), default="uniform",
                   help="initial states: uniform over the blanks, the prior's sampler with the "
                   "template clamped, or importance resampling of the pool block proposal's "
                   "pool (with --block-proposal pool)")
    p.add_argument("--pool-size", type=int, default=4096,
                   help="draws in the pool of --block-proposal pool")
    p.add_argument("--pool-rounds", type=int, default=1, metavar="R",
                   help="refinement rounds of the pool proposal: draw --pool-size fills from "
                   "the fitted proposal, weigh them against it and refit (0: fit the prior's "
                   "draws only)")
    p.add_argument("--lattice-moves", action="store_true",
                   help="move the lattice in the chain instead of drawing it after burn-in")
    p.add_argument("--anneal", type=float, default=None, metavar="T0",
                   help="anneal from T0 to --temperature over the burn-in")
    p.add_argument("--top", type=int, default=100,
                   help="keep the N best distinct final crystals (0: all chains)")
    p.add_argument("--checkpoint-every", type=int, default=5, metavar="SWEEPS")
    p.add_argument("--resume", action="store_true",
                   help="continue the run saved in --out (same settings; --sweeps may grow)")
    add_screen_arguments(p)
    add_run_arguments(p, sweeps=50, burn="20", block=False)


def run(args: argparse.Namespace) -> int:
    from cfmc.infill import infill

    result = infill(
        args.template, args.out, chains=args.chains, sweeps=args.sweeps, burn_in=args.burn_in,
        until_rhat=args.until_rhat, min_ess=args.min_ess, block=args.block,
        block_tries=args.block_tries, block_proposal=args.block_proposal,
        pool_size=args.pool_size, pool_rounds=args.pool_rounds, ladder=args.ladder,
        elements=args.elements, site_elements=site_elements(args.site_elements),
        ties=site_pairs(args.tie, "tie"), differ=site_pairs(args.differ, "differ"),
        allow_radioactive=args.allow_radioactive, species_proposal=args.species_proposal,
        init=args.init, lattice_moves=args.lattice_moves, temperature=args.temperature,
        anneal=args.anneal, seed=args.seed, top=args.top, prior=args.prior,
        checkpoint_every=args.checkpoint_every, progress=not args.no_progress, force=args.force,
        resume=args.resume,
        workers=args.workers, ray_address=args.ray_address, chunk=args.chunk,
        devices=args.devices, screen=screen_options(args),
    )
    report(result.out, result.summary, len(result.samples))
    return 0
