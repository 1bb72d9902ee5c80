"""Template infill: fill the `[?]` blanks of a Wyckoff template by MCMC under the prior.

Element and coordinate sweeps run on the lattice-marginal prior (the lattice is the last
autoregressive factor); each recorded draw gets a lattice from the prior's conditional
p(L | sites). `lattice_moves=True` keeps the lattice in the chain instead. The run itself is the
one workflow of `cfmc.run`.

    from cfmc.infill import infill
    result = infill("225-a-[?]-0-0-0-b-[?]-1/2-1/2-c-[?]-1/4-1/4-e-[?]-[?]-0-0", "runs/a2bbx6",
                    differ=[(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)], chains=1000)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cfmc.kernels import ProposalFn, population_proposal, prior_block_draws, prior_block_proposal
from cfmc.kernels.population import PopulationProposal, pool_fit, pool_refit
from cfmc.posterior import Posterior
from cfmc.run import RunOptions, RunResult, run_chains
from cfmc.shards import check_workers, shard_pool
from cfmc.starts import template_start
from cfmc.sweep import SweepConfig
from cfmc.template import Template

POOL_KEY = 7  # the pool proposal's draws: fold_in(PRNGKey(seed), POOL_KEY)


def infill(
    template: str,
    out: str | Path,
    chains: int = 1000,
    sweeps: int = 50,
    burn_in: int | None = 20,
    until_rhat: float | None = None,
    min_ess: float | None = None,
    elements: Sequence[str] | None = None,
    site_elements: Mapping[int, Sequence[str]] | None = None,
    ties: Sequence[Sequence[int]] = (),
    differ: Sequence[Sequence[int]] = (),
    allow_radioactive: bool = False,
    species_proposal: str = "prior",
    block: bool = False,
    block_tries: int = 1,
    block_proposal: str = "prior",
    pool_size: int = 4096,
    pool_rounds: int = 1,
    ladder: Sequence[float] = (1.0,),
    init: str = "uniform",
    lattice_moves: bool = False,
    temperature: float = 1.0,
    anneal: float | None = None,
    seed: int = 0,
    top: int = 100,
    prior: Any = None,
    conditioners: Sequence[Callable] = (),
    checkpoint_every: int = 5,
    progress: bool = True,
    force: bool = False,
    resume: bool = False,
    workers: int | None = None,
    ray_address: str | None = None,
    chunk: int | None = None,
    devices: int | None = None,
    screen: Mapping[str, Any] | None = None,
) -> RunResult:
    """Fill the blanks of `template` and write the run directory `out`.

    burn_in None: decided by the chains' log densities; until_rhat / min_ess: stop once mixed
    (`sweeps` caps the run); elements / site_elements (site index from 0) / ties / differ
    restrict the blanks (see `Template.parse`); block: add a block move (all blanks redrawn)
    to every sweep; block_proposal: its proposal, 'prior' (the prior's sampler) or 'pool' (a
    pool of `pool_size` prior fills weighted towards the posterior, refined by `pool_rounds`
    rounds of draws from the fitted proposal itself, drawn once; cheap);
    block_tries: proposals per block move (1: Metropolis-Hastings, more: i-SIR); ladder:
    temperatures of replica exchange (multiples of `temperature`; the output is the
    temperature-1 replica); init: 'uniform' blanks, 'prior' draws with the template clamped,
    or 'pool' (importance resampling of the pool); anneal: start temperature
    annealed down to `temperature` over burn-in; top: keep the N best distinct final crystals
    (0: all); prior: a CrystalFormer or checkpoint path (None: shipped); conditioners: extra
    log-likelihood terms (lattice-free ones unless `lattice_moves`); resume: continue the run
    saved in `out`, which must have been started with the same settings (sweeps may grow).
    workers / ray_address: split the chains over this many Ray workers (a local cluster
    unless an address is given, e.g. 'auto'; `cfmc.shards`); chunk: chains per vectorised
    chunk (fixed: the chains do not depend on how they are batched or sharded); devices:
    local JAX devices the chains are split over (None: all). screen: at the end, screen the
    kept candidates into `out`/screen (stability, S.U.N.; options of
    `cfmc.stability.workflow.screen_run`, {} for the defaults; None: no screen).
    """

    from cfmc.priors import load_prior

    check_workers(workers, ray_address)
    if block_proposal not in ("prior", "pool"):
        raise ValueError(f"block_proposal must be 'prior' or 'pool', got '{block_proposal}'")
    if pool_size < 1 or pool_rounds < 0:
        raise ValueError(f"pool_size must be at least 1 and pool_rounds at least 0, got "
                         f"{pool_size} and {pool_rounds}")
    if init == "pool" and not (block and block_proposal == "pool"):
        raise ValueError("init 'pool' starts from the pool of the pool block proposal: use it "
                         "with block=True, block_proposal='pool'")

    options = RunOptions(chains, sweeps, burn_in, seed, top, anneal, checkpoint_every, progress,
                         until_rhat, min_ess)
    parsed = Template.parse(
        template, elements=elements, site_elements=site_elements, ties=ties, differ=differ,
        exclude_radioactive=not allow_radioactive,
    )
    settings = {
        "template": str(template), "chains": chains, "sweeps": sweeps, "burn_in": burn_in,
        "until_rhat": until_rhat, "min_ess": min_ess,
        "elements": list(elements) if elements else None,
        "site_elements": {int(k): list(v) for k, v in (site_elements or {}).items()},
        "tie": [list(t) for t in ties], "differ": [list(d) for d in differ],
        "allow_radioactive": allow_radioactive, "species_proposal": species_proposal,
        "block": block, "block_tries": block_tries, "block_proposal": block_proposal,
        "pool_size": pool_size, "pool_rounds": pool_rounds, "ladder": list(ladder), "init": init,
        "lattice_moves": lattice_moves, "temperature": temperature,
        "anneal": anneal, "seed": seed, "top": top, "chunk": chunk,
        "prior": None if prior is None or not isinstance(prior, str | Path) else str(prior),
    }
    model = load_prior(prior)
    if parsed.num_sites > model.config.max_sites:
        raise ValueError(f"template has {parsed.num_sites} sites; this prior models at most "
                         f"{model.config.max_sites}")
    # the prior is autoregressive and appends its own padding slot, so slots after the template's
    # sites change nothing but cost time: the arrays carry exactly the template's sites
    max_sites = parsed.num_sites
    build = functools.partial(
        build_posterior, prior if prior is None or not isinstance(prior, str | Path)
        else Path(prior).resolve(), tuple(conditioners), temperature, lattice_moves,
        block and block_proposal, parsed)
    posterior, proposal = build(model)
    config = SweepConfig(lattice=lattice_moves, species_proposal=species_proposal, block=block,
                         block_tries=block_tries, ladder=tuple(ladder), chunk=chunk,
                         devices=devices)
    if isinstance(proposal, PopulationProposal):  # the pool: drawn once, on the driver
        fitted, pool, log_iw = pool_fit(
            proposal, prior_block_draws(model, **parsed.sampler_clamps(model.config.max_sites)),
            posterior, parsed, jax.random.fold_in(jax.random.PRNGKey(seed), POOL_KEY),
            pool_size, max_sites, rounds=pool_rounds)
        proposal = proposal._replace(initial=fitted,
                                     refit=pool_refit(proposal, pool, log_iw))

    def start(key: jax.Array):
        if init == "pool":  # importance resampling of the pool: starts close to the posterior
            idx = np.asarray(jax.random.categorical(
                key, jnp.asarray(log_iw - np.max(log_iw), jnp.float32), shape=(chains,)))
            return pool.take(idx), {"init": "pool", "pool": int(len(log_iw)),
                                    "distinct_starts": int(np.unique(idx).size)}
        return template_start(posterior, key, parsed, chains, init, seed, max_sites,
                              lattice=lattice_moves)

    with shard_pool(workers, ray_address, build) as shards:
        return run_chains(out, posterior, parsed.constraints(max_sites), config, start,
                          options, settings, "infill", force=force, resume=resume,
                          block=proposal, shards=shards, screen=screen)


def build_posterior(prior: Any, conditioners: tuple[Callable, ...], temperature: float,
                    lattice_moves: bool, block: str | bool, template: Template, model: Any = None
                    ) -> tuple[Posterior, ProposalFn | PopulationProposal | None]:
    """The posterior of an infill run and its block proposal (`block`: 'prior', 'pool' (not yet
    fitted) or False for none); `model`: the prior already loaded (else loaded from `prior`, as
    a shard's worker does)."""
    from cfmc.priors import load_prior

    model = load_prior(prior) if model is None else model
    posterior = Posterior(model, conditioners, temperature=temperature,
                          marginalize_lattice=not lattice_moves)
    if block == "pool":
        return posterior, population_proposal(template, template.num_sites)
    proposal = (prior_block_proposal(model, **template.sampler_clamps(model.config.max_sites))
                if block else None)
    return posterior, proposal
