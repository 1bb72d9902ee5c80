"""`cfmc infill TEMPLATE`: fill the `[?]` blanks of a Wyckoff template by MCMC under the prior.

Element and coordinate sweeps run on the lattice-marginal prior (the lattice is the last
autoregressive factor); after burn-in each draw gets a lattice from the prior's conditional
p(L | sites). `--lattice-moves` keeps the lattice in the chain instead.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cfmc import runio
from cfmc.arrays import CrystalArrays
from cfmc.diagnostics import (
    Trace,
    burn_in_plot,
    convergence,
    kernel_summary,
    package_versions,
    trace_plot,
)
from cfmc.posterior import Posterior
from cfmc.sweep import ChainState, Sampler, SweepConfig, add_stats, annealing, new_stats, run_sweeps
from cfmc.template import Template

SETTINGS = ("template", "chains", "sweeps", "burn_in", "elements", "site_elements", "tie",
            "differ", "allow_radioactive", "species_proposal", "init", "lattice_moves",
            "temperature", "anneal", "seed", "top", "prior")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("template", help="e.g. '225-a-[?]-0-0-0-b-[?]-1/2-1/2-1/2-e-O-[?]-0-0'")
    p.add_argument("--chains", type=int, default=1000)
    p.add_argument("--sweeps", type=int, default=50, help="total sweeps, burn-in included")
    p.add_argument("--burn-in", type=int, default=20)
    p.add_argument("--elements", nargs="+", metavar="EL", help="allowed elements for blanks")
    p.add_argument("--site-elements", action="append", default=[], metavar="I:EL,EL",
                   help="allow-list for site I (0-based); repeatable")
    p.add_argument("--tie", action="append", default=[], metavar="I,J",
                   help="sites that hold the same element; repeatable")
    p.add_argument("--differ", action="append", default=[], metavar="I,J",
                   help="two sites whose elements must differ; repeatable")
    p.add_argument("--allow-radioactive", action="store_true",
                   help="allow Tc, Pm and Z >= 84 (excluded by default)")
    p.add_argument("--species-proposal", choices=("uniform", "prior"), default="prior")
    p.add_argument("--init", choices=("uniform", "prior"), default="uniform",
                   help="initial states: uniform over the blanks, or the prior's sampler "
                   "with the template clamped")
    p.add_argument("--lattice-moves", action="store_true",
                   help="move the lattice in the chain instead of drawing it after burn-in")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--anneal", type=float, default=None, metavar="T0",
                   help="anneal from T0 to --temperature over the burn-in")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=100,
                   help="keep the N best distinct final crystals (0: all chains)")
    p.add_argument("--prior", default=None, help="prior checkpoint directory (default: shipped)")
    p.add_argument("--checkpoint-every", type=int, default=5, metavar="SWEEPS")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--force", action="store_true", help="overwrite the outputs in --out")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--out", required=True, help="run directory")


def _pairs(items: list[str], what: str) -> list[tuple[int, ...]]:
    out = []
    for s in items:
        try:
            out.append(tuple(int(v) for v in s.split(",")))
        except ValueError:
            raise ValueError(f"--{what} '{s}': expected comma-separated site indices") from None
    return out


def _site_elements(items: list[str]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for s in items:
        site, sep, els = s.partition(":")
        if not sep or not site.strip().isdigit():
            raise ValueError(f"--site-elements '{s}': expected I:EL,EL")
        out[int(site)] = [e for e in els.split(",") if e]
    return out


def build_template(args: argparse.Namespace) -> Template:
    return Template.parse(
        args.template,
        elements=args.elements,
        site_elements=_site_elements(args.site_elements),
        ties=_pairs(args.tie, "tie"),
        differ=_pairs(args.differ, "differ"),
        exclude_radioactive=not args.allow_radioactive,
    )


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in SETTINGS}


def _initial(args, template: Template, posterior: Posterior, max_sites: int, key) -> CrystalArrays:
    rng = np.random.default_rng(args.seed)
    if args.init == "prior":
        sample = posterior.prior.sample
        if sample is None:
            raise ValueError("--init prior: this prior has no sampler; use --init uniform")
        full = posterior.prior.max_sites or max_sites  # the sampler fills all its slots
        w, a, x = template.fixed_arrays(full)
        allowed = np.ones((full, template.allowed.shape[1]), bool)
        allowed[: template.num_sites] = template.allowed
        arrays = sample(key, template.spacegroup, args.chains, allowed_species=allowed,
                        fixed_wyckoff=w, fixed_species=a, fixed_coords=x)
        arrays = CrystalArrays(*(
            np.asarray(f)[:, :max_sites] if np.ndim(f) > 1 and k != "lattice" else np.asarray(f)
            for k, f in zip(CrystalArrays._fields, arrays, strict=True)
        ))
        ok = template.check_arrays(arrays)
        if not ok.all():  # chains the sampler could not fill within the allow-lists
            fill = template.random_arrays(args.chains, rng, max_sites)
            arrays = CrystalArrays(*(
                np.where(ok.reshape((-1,) + (1,) * (np.ndim(f) - 1)), f, g)
                for f, g in zip(arrays, fill, strict=True)
            ))
    else:
        arrays = template.random_arrays(args.chains, rng, max_sites)
    if args.lattice_moves and posterior.prior.sample_lattice is not None:
        lat = np.asarray(posterior.prior.sample_lattice(key, _jax(arrays)))
        from cfmc.kernels import is_valid_cell

        good = np.asarray(is_valid_cell(jnp.asarray(lat)))
        arrays = arrays._replace(
            lattice=np.where(good[:, None], lat, arrays.lattice).astype(np.float32)
        )
    return arrays


def _jax(arrays: CrystalArrays) -> CrystalArrays:
    return CrystalArrays(*(jnp.asarray(f) for f in arrays))


class _Recorder:
    """Draws after burn-in: a lattice from p(L | sites) when marginal, all terms, the trace."""

    def __init__(self, posterior: Posterior, sampler: Sampler, burn_in: int, key, marginal: bool):
        self.posterior, self.sampler, self.burn_in, self.key = posterior, sampler, burn_in, key
        self.marginal = marginal
        self.trace = Trace()
        self.acceptance: list[np.ndarray] = []
        self.burn_stats, self.sample_stats = new_stats(), new_stats()
        self.last: tuple[CrystalArrays, Any, np.ndarray] | None = None
        self.failures = 0
        self.curve: list[list[float]] = []  # (sweep, mean log prior, mean log posterior)
        if marginal and posterior.prior.sample_lattice is not None:
            self._lattice = jax.jit(posterior.prior.sample_lattice)
        else:
            self._lattice = None

    def crystals_of(self, state: ChainState, index: int) -> CrystalArrays:
        pos = CrystalArrays(*(np.asarray(f) for f in state.position))
        if self._lattice is not None:
            lat = np.asarray(self._lattice(jax.random.fold_in(self.key, index), state.position))
            pos = pos._replace(lattice=lat.astype(np.float32))
        return pos

    def draw(self, index: int, state: ChainState):
        """The crystals of sweep `index` with their terms; kept as the latest draw."""
        pos = self.crystals_of(state, index)
        terms = self.posterior(pos)
        target = np.asarray(state.log_prior) + state.log_likelihood
        self.last = (pos, terms, target)
        return terms, target

    def __call__(self, index: int, state: ChainState, stats: dict) -> None:
        means = [float(np.mean(state.log_prior)), float(np.mean(state.logdensity))]
        self.curve.append([index, *means])
        if index < self.burn_in:
            add_stats(self.burn_stats, stats)
            return
        add_stats(self.sample_stats, stats)
        terms, target = self.draw(index, state)
        row = {"log_posterior": target, "log_prior": terms.log_prior}
        row.update({f"prior_{k}": v for k, v in terms.prior_terms.items() if k != "total"})
        row.update({f"loglik_{k}": v for k, v in terms.conditioner_terms.items()})
        row.update(terms.values)
        self.trace.append(row)
        self.acceptance.append(self.sampler.chain_acceptance)
        self.failures += int(terms.failed.sum())


def run(args: argparse.Namespace) -> int:
    from cfmc.priors import load_prior

    out = runio.prepare(args.out, force=args.force, resume=args.resume)
    saved: dict[str, np.ndarray] = {}
    if args.resume:
        saved, meta = runio.load_checkpoint(out)
        requested_sweeps = args.sweeps
        for k, v in meta["settings"].items():
            setattr(args, k, v)
        args.sweeps = max(requested_sweeps, meta["settings"]["sweeps"])
    if args.burn_in < 0 or args.sweeps <= args.burn_in:
        raise ValueError(f"--sweeps ({args.sweeps}) must exceed --burn-in ({args.burn_in})")
    if args.chains < 1:
        raise ValueError("--chains must be at least 1")
    template = build_template(args)
    model = load_prior(args.prior)
    if template.num_sites > model.config.max_sites:
        raise ValueError(f"template has {template.num_sites} sites; this prior models at most "
                         f"{model.config.max_sites}")
    # the prior is autoregressive and appends its own padding slot, so slots after the template's
    # sites change nothing but cost time: the arrays carry exactly the template's sites
    max_sites = template.num_sites
    posterior = Posterior(model, temperature=args.temperature,
                          marginalize_lattice=not args.lattice_moves)
    config = SweepConfig(lattice=args.lattice_moves, species_proposal=args.species_proposal)
    sampler = Sampler(posterior, template.constraints(max_sites), config)
    key = jax.random.PRNGKey(args.seed)
    k_init, k_run, k_lat = jax.random.split(key, 3)
    start = 0
    if saved:
        state = sampler.init(runio.unpack_arrays("state", saved))
        start = int(meta["next_sweep"])
        sampler.step_sizes = dict(meta["step_sizes"])
    else:
        state = sampler.init(_initial(args, template, posterior, max_sites, k_init))
    recorder = _Recorder(posterior, sampler, args.burn_in, k_lat, marginal=not args.lattice_moves)
    if saved:
        recorder.trace = Trace.from_arrays(
            {k[6:]: v for k, v in saved.items() if k.startswith("trace.")}
        )
        recorder.acceptance = list(saved.get("acceptance", np.zeros((0, args.chains))))
        recorder.burn_stats = meta["burn_stats"]
        recorder.sample_stats = meta["sample_stats"]
        recorder.failures = meta.get("failures", 0)
        recorder.curve = meta.get("curve", [])
        if start > args.burn_in:
            recorder.draw(start - 1, state)  # the saved draw's crystals, for the outputs
    temperature = (
        annealing(args.anneal, args.temperature, args.burn_in) if args.anneal else None
    )
    progress = {"next": start, "state": state, "t0": time.time()}

    def on_sweep(i: int, st: ChainState, stats: dict) -> None:
        recorder(i, st, stats)
        progress.update(next=i + 1, state=st)
        if (i + 1) % max(args.checkpoint_every, 1) == 0:
            _checkpoint(out, args, sampler, recorder, st, i + 1)

    status = "complete"
    try:
        state = run_sweeps(sampler, state, k_run, args.sweeps, args.burn_in, start=start,
                           temperature=temperature, on_sweep=on_sweep,
                           progress=not args.no_progress, desc="infill")
    except BaseException:
        status = "interrupted"
        raise
    finally:
        _checkpoint(out, args, sampler, recorder, progress["state"], progress["next"])
        _write_outputs(out, args, template, sampler, recorder, status,
                       time.time() - progress["t0"])
    _report(out)
    return 0


def _report(out: Path) -> None:
    """One closing paragraph: where the results are, how many, and the acceptance rates."""
    summary = json.loads((out / "summary.json").read_text())
    rates = ", ".join(f"{k} {v['acceptance']:.2f}" for k, v in summary["kernels"].items()
                      if v.get("proposed"))
    samples = out / "samples.csv"
    n = 0
    if samples.exists():
        with open(samples, newline="") as f:
            n = sum(1 for _ in csv.reader(f)) - 1  # CIF text spans lines inside quoted fields
    print(f"{summary['status']}: {n} candidates in {out}/samples.csv "
          f"({summary['seconds']:.0f} s; acceptance {rates})")


def _checkpoint(out: Path, args, sampler: Sampler, recorder: _Recorder, state: ChainState,
                next_sweep: int) -> None:
    arrays = runio.pack_arrays("state", CrystalArrays(*(np.asarray(f) for f in state.position)))
    arrays.update({f"trace.{k}": v for k, v in recorder.trace.arrays().items()})
    if recorder.acceptance:
        arrays["acceptance"] = np.stack(recorder.acceptance)
    meta = {
        "settings": _settings(args), "next_sweep": next_sweep, "step_sizes": sampler.step_sizes,
        "burn_stats": recorder.burn_stats, "sample_stats": recorder.sample_stats,
        "failures": recorder.failures, "curve": recorder.curve,
    }
    runio.save_checkpoint(out, arrays, meta)


def _write_outputs(out: Path, args, template: Template, sampler: Sampler, recorder: _Recorder,
                   status: str, seconds: float) -> None:
    from cfmc.crystal import from_arrays

    summary: dict[str, Any] = {
        "command": "infill",
        "status": status,
        "template": str(template),
        "settings": _settings(args),
        "seed": args.seed,
        "seconds": seconds,
        "step_sizes": sampler.step_sizes,
        "schedule": [f"{k}@{s}" for k, s in sampler.schedule()],
        "kernels_burn_in": kernel_summary(recorder.burn_stats),
        "kernels": kernel_summary(recorder.sample_stats),
        "predictor_failures": recorder.failures
        + sum(d["predictor_failures"] for d in recorder.sample_stats.values()),
        "draws": recorder.trace.draws,
        "versions": package_versions(),
        "columns": {
            "log_posterior": "untempered log density the chains target (lattice marginalised "
            "unless --lattice-moves)",
            "log_prior": "full log p(C|g) including the lattice term of the drawn lattice",
        },
    }
    if recorder.curve:
        summary["mean_log_density_by_sweep"] = recorder.curve
        burn_in_plot(recorder.curve, args.burn_in, out / "burn_in.png")
    if recorder.trace.draws:
        summary["convergence"] = convergence(recorder.trace)
        acc = {"acceptance": np.stack(recorder.acceptance, axis=1)} if recorder.acceptance else {}
        runio.write_trace(out, recorder.trace.to_inference_data(acc))
        names = ["log_posterior", "log_prior"] + [
            n for n in recorder.trace.columns if n.startswith("prior_")
        ]
        trace_plot(recorder.trace, out / "trace.png", names)
    if recorder.last is not None:
        pos, terms, target = recorder.last
        crystals = from_arrays(pos)
        keep = runio.select_top(crystals, target, args.top or None)
        columns = {"log_prior": terms.log_prior[keep], "log_posterior": target[keep]}
        columns.update({f"prior_{k}": v[keep] for k, v in terms.prior_terms.items()
                        if k != "total"})
        columns.update({k: v[keep] for k, v in terms.values.items()})
        runio.write_samples(out, [crystals[i] for i in keep], keep, columns)
        summary["kept"] = len(keep)
        summary["distinct_formulas"] = len({crystals[i].formula for i in keep})
    runio.write_summary(out, summary)
