"""MCMC throughput of the sweep engine with the reference-size CrystalFormer prior.

Prints chain-site updates per second (one site of one chain visited with all its kernels) and
kernel moves per second at 100 and 1000 chains, and the overhead of a sweep over the bare batched
prior evaluations it needs (the same number of jitted log-density / conditional calls on the same
batch size and site slots, nothing else). Two array layouts: `tmpl` carries only the template's
sites (as `cfmc infill` does), `max` pads them to the prior's 20 slots (as design runs carry);
site moves evaluate padded arrays cut after the last real site (`Posterior.site_slots`).

    python benchmarks/bench_mcmc.py [--chains 100 1000] [--sweeps 3] [--proposal uniform prior]
                                    [--slots tmpl max]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from cfmc.posterior import Posterior, chunked, trim_sites
from cfmc.sweep import Sampler, SweepConfig
from cfmc.template import Template

TEMPLATE = "225-a-[?]-0-0-0-b-[?]-1/2-1/2-c-[?]-1/4-1/4-e-[?]-[?]-0-0"
TARGETS = {100: 765.0, 1000: 458.0}  # chain-site updates per second, template's sites
PADDED_TARGET = 700.0  # padded to 20 slots: 3x the reference code (178-236 /s, 225-229 /s)


def reference_prior():
    from cfmc import priors

    config = priors.get_config("reference")
    return priors.CrystalFormer(config.replace(dropout_rate=0.0, attn_dropout_rate=0.0),
                                jax.random.PRNGKey(0))


def _block(x):
    return jax.block_until_ready(x)


def bench(model, chains: int, sweeps: int, proposal: str, full: bool) -> dict[str, float]:
    """One configuration; `full` pads the arrays to the prior's max_sites instead of carrying
    only the template's sites (as `cfmc infill` does)."""
    template = Template.parse(TEMPLATE)
    n = model.config.max_sites if full else template.num_sites
    posterior = Posterior(model, marginalize_lattice=True)
    sampler = Sampler(posterior, template.constraints(n), SweepConfig(species_proposal=proposal))
    state = sampler.init(template.random_arrays(chains, np.random.default_rng(0), n))
    key = jax.random.PRNGKey(1)
    state, _ = sampler.run_one(key, 0, state)  # compile
    _block(state.log_prior)
    t0 = time.perf_counter()
    for i in range(1, sweeps + 1):
        state, _ = sampler.run_one(key, i, state)
    _block(state.log_prior)
    sweep_s = (time.perf_counter() - t0) / sweeps

    # the moves site by site (the element scan, `SweepConfig.species_scan`, visits the same
    # sites in one step)
    moves = Sampler(posterior, template.constraints(n),
                    SweepConfig(species_proposal=proposal, species_scan=False)).schedule()
    sites = len({s for k, s in moves if k != "lattice"})
    n_species = sum(k == "species" for k, _ in moves)
    # the bare evaluations a sweep needs: one log density per move, plus with the prior-informed
    # proposal one conditional per species move, or one for the whole scan
    n_cond = (1 if sampler.scan else n_species) if proposal == "prior" else 0
    chunk = sampler.config.chunk_size  # the engine's chunking, so only the engine is compared
    prior_fn = jax.jit(chunked(posterior.prior_part, chunk))
    cond_fn = jax.jit(chunked(posterior.prior.species_log_probs, chunk))
    pos = trim_sites(state.position, posterior.site_slots(state.position.mask))
    _block(prior_fn(pos))
    _block(cond_fn(pos))
    reps = max(3, sweeps)
    t0 = time.perf_counter()
    for _ in range(reps):
        _block(prior_fn(pos))
    t_logp = (time.perf_counter() - t0) / reps
    t0 = time.perf_counter()
    for _ in range(reps):
        _block(cond_fn(pos))
    t_cond = (time.perf_counter() - t0) / reps
    bare = len(moves) * t_logp + n_cond * t_cond
    return {
        "chains": chains,
        "sweep_s": sweep_s,
        "site_updates_per_s": chains * sites / sweep_s,
        "moves_per_s": chains * len(moves) / sweep_s,
        "bare_s": bare,
        "overhead": sweep_s / bare,
        "slots_evaluated": int(pos.mask.shape[-1]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chains", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--sweeps", type=int, default=3)
    p.add_argument("--proposal", nargs="+", default=["uniform", "prior"],
                   choices=["uniform", "prior"])
    p.add_argument("--slots", nargs="+", default=["tmpl", "max"], choices=["tmpl", "max"],
                   help="arrays with the template's sites, or padded to the prior's max_sites")
    args = p.parse_args()
    model = reference_prior()
    print(f"prior: reference config ({model.config.max_sites} site slots at most); template "
          f"{TEMPLATE}; jax {jax.__version__} on {jax.devices()[0].platform}", flush=True)
    print(f"{'proposal':>8} {'slots':>5} {'cut':>4} {'chains':>6} {'sweep s':>8} "
          f"{'site upd/s':>11} {'moves/s':>9} {'bare s':>8} {'overhead':>8} {'target':>9}",
          flush=True)
    for slots in args.slots:
        full = slots == "max"
        for proposal in args.proposal:
            for chains in args.chains:
                r = bench(model, chains, args.sweeps, proposal, full)
                target = PADDED_TARGET if full else TARGETS.get(chains)
                mark = "" if target is None else (
                    f"{target:.0f} {'ok' if r['site_updates_per_s'] >= target else 'MISS'}"
                )
                print(f"{proposal:>8} {slots:>5} {r['slots_evaluated']:>4} {chains:>6} "
                      f"{r['sweep_s']:8.3f} {r['site_updates_per_s']:11.0f} "
                      f"{r['moves_per_s']:9.0f} {r['bare_s']:8.3f} {r['overhead']:8.2f}x "
                      f"{mark:>9}", flush=True)


if __name__ == "__main__":
    main()
