"""Property-conditioned design: sample log p(C|g) + sum_k w_k log p(y_k|C) for one space group.

Chains start from the best distinct of a pool of prior samples of the group (or of a template with
`[?]` blanks), which also serve as the unconditional reference; element, coordinate and lattice
moves then run on the posterior through the one run workflow (`cfmc.run`); the lattice stays in
the chain because property predictors depend on it. Besides the common outputs, the run directory
holds `unconditional.csv` and the two panels of the paper's Fig. 9: property histograms with the
targets marked, and prior log-likelihoods.

    from cfmc.design import design
    from cfmc.targets import gaussian_targets
    result = design(gaussian_targets({"band_gap": 2.0, "formation_energy": -3.0}),
                    "runs/fig9", spacegroup=225, chains=256)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import pandas as pd

from cfmc import wyckoff
from cfmc.chemistry import element_mask
from cfmc.guard import PhysicalGuard
from cfmc.kernels import (
    CrystalPoolProposal,
    ProposalFn,
    crystal_pool_proposal,
    free_constraints,
    prior_block_proposal,
)
from cfmc.plotting import log_prior_histogram, property_histograms
from cfmc.posterior import Posterior
from cfmc.run import RunOptions, RunResult, run_chains, start_key
from cfmc.shards import check_workers, shard_pool
from cfmc.starts import pool_start
from cfmc.sweep import SweepConfig
from cfmc.targets import distance_metrics, gaussian_target_values, target_marks
from cfmc.template import Template


class DesignResult(NamedTuple):
    """What a design run produced (also on disk under `out`).

    unconditional: one row per prior sample (log_prior and each predicted property)
    conditioned: one row per chain at the last draw (log_prior, log_posterior, properties)
    samples: samples.csv (distinct final crystals ranked by log posterior)
    summary: summary.json, including `metrics` (distance to target, before and after)
    """

    out: Path
    unconditional: pd.DataFrame
    conditioned: pd.DataFrame
    samples: pd.DataFrame
    summary: dict[str, Any]


def _figures(out: Path, conditioner: Any, unconditional: pd.DataFrame,
             conditioned: pd.DataFrame) -> dict[str, Any]:
    """Fig. 9 panels and the distance-to-target metrics of a finished (or interrupted) run."""
    targets = gaussian_target_values(conditioner)
    properties = [k for k in conditioned if k in unconditional
                  and k not in ("formula", "string", "log_prior", "log_likelihood")]
    property_histograms(unconditional, conditioned, properties, target_marks(conditioner),
                        out / "properties.png")
    log_prior_histogram(unconditional, conditioned, out / "log_prior.png")
    starts = unconditional.loc[unconditional["start"]]
    return {"targets": targets,
            "metrics": distance_metrics(unconditional, conditioned, targets, starts)}


def design(
    conditioner: Any,
    out: str | Path,
    spacegroup: int | None = None,
    template: str | Template | None = None,
    prior: Any = None,
    chains: int = 256,
    sweeps: int = 40,
    burn_in: int | None = 20,
    until_rhat: float | None = None,
    min_ess: float | None = None,
    seed: int = 0,
    elements: Sequence[str] | None = None,
    allow_radioactive: bool = False,
    species_proposal: str = "prior",
    block: bool = False,
    block_proposal: str = "prior",
    block_tries: int = 1,
    ladder: Sequence[float] = (1.0,),
    delayed_acceptance: bool = False,
    temperature: float = 1.0,
    top: int = 0,
    min_distance: float = 0.5,
    min_volume_per_atom: float = 2.0,
    pool: int = 4,
    force: bool = False,
    resume: bool = False,
    progress: bool = True,
    checkpoint_every: int = 5,
    settings: Mapping[str, Any] | None = None,
    on_sweep: Callable | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
    chunk: int | None = None,
    devices: int | None = None,
    screen: Mapping[str, Any] | None = None,
) -> DesignResult:
    """Sample the posterior prior x conditioner for one space group and write the run directory.

    conditioner: a `cfmc.predictors` conditioner (sums allowed) or any callable over a list of
    crystals returning log-likelihoods; prior: a CrystalFormer, a checkpoint path, or None for
    the shipped one; template: optional `[?]` template fixing part of the crystal (its space
    group wins; `spacegroup`, if also given, must agree). `top` keeps the N best distinct final
    crystals in samples.csv (0: all distinct ones). Crystals with atoms closer than
    `min_distance` or less than `min_volume_per_atom` get zero density (`PhysicalGuard`).
    burn_in None: decided by the chains' log densities; until_rhat / min_ess: stop once mixed
    (`sweeps` caps the run). `block` adds the prior block move to every sweep (a template's
    blanks, or, in free design, the whole sequence: letters and the number of sites change).
    `block_proposal` 'pool' proposes instead from the prior samples drawn for the starts, weighted
    by likelihood (`kernels.crystal_pool_proposal`; free design only); `block_tries` > 1 runs
    i-SIR over that many proposals per block move (always so with the pool).
    `ladder`: temperatures of replica exchange (multiples of `temperature`, the output is the
    temperature-1 replica). `resume` continues the run saved in `out` (same settings and
    conditioner). workers / ray_address: split the chains over this many Ray workers (a local
    cluster unless an address is given, e.g. 'auto'; `cfmc.shards`; the prior pool is drawn
    once, here); chunk: chains per vectorised chunk (fixed: the chains do not depend on how
    they are batched or sharded); devices: local JAX devices the chains are split over
    (None: all). screen: at the end, screen the kept candidates into
    `out`/screen (options of `cfmc.stability.workflow.screen_run`; None: no screen).
    """

    check_workers(workers, ray_address)
    if block_proposal not in ("prior", "pool"):
        raise ValueError(f"block_proposal must be 'prior' or 'pool', got '{block_proposal}'")
    if block_proposal == "pool" and template is not None:
        raise ValueError("the pool block proposal of design is for free design; a template's "
                         "blanks have their own (`cfmc infill --block-proposal pool`)")

    options = RunOptions(chains, sweeps, burn_in, seed, top, None, checkpoint_every, progress,
                         until_rhat, min_ess)
    allowed = element_mask(elements, exclude_radioactive=not allow_radioactive)
    if isinstance(template, str):
        template = Template.parse(template, elements=elements,
                                  exclude_radioactive=not allow_radioactive)
    if template is not None:
        if spacegroup is not None and int(spacegroup) != template.spacegroup:
            raise ValueError(
                f"space group {spacegroup} disagrees with the template's {template.spacegroup}"
            )
        spacegroup = template.spacegroup
    if spacegroup is None:
        raise ValueError("give a space group or a template")
    spacegroup = wyckoff.check_spacegroup(int(spacegroup))
    run_settings = {
        "spacegroup": spacegroup, "template": None if template is None else str(template),
        "chains": chains, "sweeps": sweeps, "burn_in": burn_in, "until_rhat": until_rhat,
        "min_ess": min_ess, "seed": seed,
        "elements": list(elements) if elements else None, "allow_radioactive": allow_radioactive,
        "species_proposal": species_proposal, "block": block,
        "block_proposal": block_proposal, "block_tries": block_tries, "ladder": list(ladder),
        "delayed_acceptance": delayed_acceptance,
        "temperature": temperature, "top": top, "min_distance": min_distance,
        "min_volume_per_atom": min_volume_per_atom, "pool": pool, "chunk": chunk,
        **dict(settings or {}),
    }
    from cfmc.priors import load_prior

    model = load_prior(prior)
    max_sites = int(model.config.max_sites)
    clamps = (template.sampler_clamps(max_sites) if template is not None
              else {"allowed_species": allowed})
    build = functools.partial(
        build_posterior, prior if prior is None or not isinstance(prior, str | Path)
        else Path(prior).resolve(), conditioner, min_distance, min_volume_per_atom,
        temperature, clamps if block else None, block_proposal == "pool" and spacegroup)
    posterior, proposal = build(model)
    out = Path(out)
    drawn = None
    if isinstance(proposal, CrystalPoolProposal) and not resume:
        # the pool is the proposal's too: drawn before the run, with the key the run gives
        # `start`, so the chains are those of a run without the pool block
        drawn = pool_start(posterior, start_key(seed), chains, spacegroup, template, allowed,
                           max_sites, seed, pool)
        lp, ll = (drawn.table[k].to_numpy() for k in ("log_prior", "log_likelihood"))
        proposal = proposal._replace(initial=proposal.fit(
            drawn.members, (lp + ll) / temperature - lp))  # importance weights pi / prior

    def start(key: jax.Array):
        found = drawn if drawn is not None else pool_start(
            posterior, key, chains, spacegroup, template, allowed, max_sites, seed, pool)
        found.table.to_csv(out / "unconditional.csv", index=False)
        return found.arrays, found.info()

    def extras(conditioned: pd.DataFrame) -> dict[str, Any]:
        return _figures(out, conditioner, pd.read_csv(out / "unconditional.csv"), conditioned)

    constraints = (template.constraints(max_sites) if template is not None
                   else (lambda arrays: free_constraints(arrays, allowed)))
    config = SweepConfig(lattice=True, species_proposal=species_proposal, block=block,
                         block_tries=block_tries, ladder=tuple(ladder),
                         delayed_acceptance=delayed_acceptance, chunk=chunk,
                         devices=devices)
    with shard_pool(workers, ray_address, build) as shards:
        result: RunResult = run_chains(out, posterior, constraints, config, start, options,
                                       run_settings, "design", force=force, resume=resume,
                                       extras=extras, on_sweep=on_sweep, block=proposal,
                                       shards=shards, screen=screen)
    return DesignResult(result.out, pd.read_csv(out / "unconditional.csv"), result.chains,
                        result.samples, result.summary)


def build_posterior(prior: Any, conditioner: Any, min_distance: float,
                    min_volume_per_atom: float, temperature: float,
                    block_clamps: Mapping[str, Any] | None, pool_group: int | bool = False,
                    model: Any = None
                    ) -> tuple[Posterior, ProposalFn | CrystalPoolProposal | None]:
    """The posterior of a design run and its block proposal (None without `block_clamps`; the
    crystal pool proposal of space group `pool_group`, not yet fitted, when that is set);
    `model`: the prior already loaded (else loaded from `prior`, as a shard's worker does)."""
    from cfmc.priors import load_prior

    model = load_prior(prior) if model is None else model
    guard = PhysicalGuard(conditioner, min_distance, min_volume_per_atom)
    posterior = Posterior(model, [guard], temperature=temperature, marginalize_lattice=False)
    if block_clamps is not None and pool_group:
        return posterior, crystal_pool_proposal(int(pool_group),
                                                allowed=block_clamps.get("allowed_species"))
    proposal = (prior_block_proposal(model, **block_clamps, lattice=True)
                if block_clamps is not None else None)
    return posterior, proposal
