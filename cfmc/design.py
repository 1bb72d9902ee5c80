"""Property-conditioned design: sample log p(C|g) + sum_k w_k log p(y_k|C) for one space group.

Chains start from prior samples of the group (or of a template with `[?]` blanks), which also
serve as the unconditional reference; element, coordinate and lattice moves then run on the
posterior (the lattice stays in the chain because property predictors depend on it). The run
directory holds what `cfmc.runio` writes plus `unconditional.csv` and the two panels of the
paper's Fig. 9: property histograms with the targets marked, and prior log-likelihoods.

    from cfmc.design import design, gaussian_targets
    result = design(gaussian_targets({"band_gap": 2.0, "formation_energy": -3.0}),
                    "runs/fig9", spacegroup=225, chains=256)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from cfmc import runio, wyckoff
from cfmc.arrays import NUM_SPECIES, CrystalArrays, concatenate
from cfmc.crystal import Crystal
from cfmc.diagnostics import Trace, convergence, kernel_summary, package_versions, trace_plot
from cfmc.plotting import pyplot, save_figure
from cfmc.posterior import Posterior
from cfmc.sweep import ChainState, Sampler, SweepConfig, add_stats, new_stats, run_sweeps
from cfmc.template import SiteConstraints, Template, atomic_number, default_allowed

# files this workflow writes besides runio's; removed with `force` so none survive from an old run
DESIGN_OUTPUTS = ("unconditional.csv", "properties.png", "log_prior.png", "chains.csv")
MAX_INIT_ROUNDS = 4  # rounds of prior sampling to find chains with finite posterior density


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


# ---------------------------------------------------------------------------- targets


def parse_assignments(items: Sequence[str], option: str) -> dict[str, float]:
    """`["band_gap=2.0", ...]` -> `{"band_gap": 2.0}`; errors name the option and the item."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"{option} '{item}': expected NAME=VALUE, e.g. band_gap=2.0")
        try:
            out[name] = float(value)
        except ValueError:
            raise ValueError(f"{option} '{item}': '{value}' is not a number") from None
    return out


def gaussian_targets(
    targets: Mapping[str, float], sigmas: Mapping[str, float] | None = None
) -> Any:
    """The sum of `Gaussian(get_predictor(name), target, sigma)` terms; sigma defaults to each
    predictor's typical error."""
    from cfmc.predictors import Gaussian, get_predictor

    if not targets:
        raise ValueError("no targets: give at least one, e.g. band_gap=2.0")
    sigmas = dict(sigmas or {})
    unknown = set(sigmas) - set(targets)
    if unknown:
        raise ValueError(f"sigma given for {sorted(unknown)} without a target")
    parts = [Gaussian(get_predictor(k), v, sigmas.get(k)) for k, v in targets.items()]
    return parts[0] if len(parts) == 1 else sum(parts[1:], parts[0])


def conditioner_parts(conditioner: Any) -> list[Any]:
    """The terms of a conditioner sum (or the conditioner alone), for per-term bookkeeping."""
    return list(getattr(conditioner, "parts", None) or [conditioner])


def target_marks(conditioner: Any) -> dict[str, list[float]]:
    """Property name -> values to mark on its histogram: Gaussian targets, bounds."""
    marks: dict[str, list[float]] = {}
    for c in conditioner_parts(conditioner):
        p = getattr(c, "predictor", None)
        if p is None:
            continue
        vals = [getattr(c, a) for a in ("target", "bound", "low", "high") if hasattr(c, a)]
        marks.setdefault(p.name, []).extend(float(v) for v in vals)
    return marks


def gaussian_target_values(conditioner: Any) -> dict[str, float]:
    """Property name -> the target of its Gaussian term (what `metrics` measures distance to)."""
    return {
        c.predictor.name: float(c.target)
        for c in conditioner_parts(conditioner)
        if hasattr(c, "predictor") and hasattr(c, "target")
    }


def distance_metrics(
    unconditional: pd.DataFrame, conditioned: pd.DataFrame, targets: Mapping[str, float],
    starts: pd.DataFrame | None = None,
) -> dict[str, dict[str, float]]:
    """Per property: mean absolute distance to the target of unconditional and conditioned
    samples, their ratio, and the medians (finite predictions only); with `starts`, also that of
    the chains' starting points (what selection from the prior pool did before any move)."""
    out = {}
    for name, t in targets.items():
        u = _finite(unconditional.get(name))
        c = _finite(conditioned.get(name))
        du = float(np.mean(np.abs(u - t))) if u.size else float("nan")
        dc = float(np.mean(np.abs(c - t))) if c.size else float("nan")
        out[name] = {
            "target": float(t),
            "mean_abs_distance_unconditional": du,
            "mean_abs_distance_conditioned": dc,
            "ratio": dc / du if du > 0 else float("nan"),
            "median_unconditional": float(np.median(u)) if u.size else float("nan"),
            "median_conditioned": float(np.median(c)) if c.size else float("nan"),
            "n_unconditional": int(u.size),
            "n_conditioned": int(c.size),
        }
        if starts is not None:
            st = _finite(starts.get(name))
            out[name]["mean_abs_distance_start"] = (
                float(np.mean(np.abs(st - t))) if st.size else float("nan"))
    return out


def _finite(col: pd.Series | None) -> np.ndarray:
    if col is None:
        return np.zeros(0)
    a = np.asarray(col, float)
    return a[np.isfinite(a)]


def build_structure(crystal: Any):
    """The conventional-cell Structure of a Crystal, with a vectorised orbit expansion.

    Same result as `Crystal.to_structure` (same site order), much faster for groups with many
    operations; raises ValueError when a site is not on its Wyckoff position or the cell is bad.
    """
    from pymatgen.core import Lattice, Structure

    lat = np.asarray(crystal.lattice, float) if crystal.lattice is not None else None
    if lat is None or not np.all(np.isfinite(lat)):
        raise ValueError("this crystal has no finite lattice")
    t = wyckoff.tables()
    g = int(crystal.spacegroup)
    ops = t.general_ops[g, : t.num_ops[g]]
    species: list[str] = []
    frac: list[np.ndarray] = []
    for w, el, x in zip(crystal.wyckoff, crystal.species, np.asarray(crystal.coords, float),
                        strict=True):
        pts = np.mod(ops[:, :, :3] @ x + ops[:, :, 3], 1.0)
        d = pts[:, None, :] - pts[None, :, :]
        d -= np.rint(d)
        same = np.all(np.abs(d) < 1e-4, axis=-1)
        first = np.argmax(same, axis=1)  # first image equal to each image
        orbit = pts[first == np.arange(len(pts))]
        m = t.multiplicity[g, wyckoff.letter_index(w)]
        if len(orbit) != m:
            raise ValueError(f"site {w} {el} gives {len(orbit)} images, not its multiplicity {m}")
        species += [el] * len(orbit)
        frac.append(orbit)
    lattice = Lattice.from_parameters(*lat)
    return Structure(lattice, species, np.concatenate(frac) if frac else np.zeros((0, 3)))


@dataclasses.dataclass(frozen=True, eq=False)
class _Prebuilt(Crystal):
    """A Crystal carrying its already built Structure (built once per proposal, not per term)."""

    structure: Any = None

    def to_structure(self):
        return self.structure.copy()


class PhysicalGuard:
    """Wraps a conditioner so crystals that cannot be physical get log-likelihood -inf without
    reaching the predictors: a cell that does not build, atoms closer than `min_distance`
    Angstrom, less than `min_volume_per_atom` cubic Angstrom per atom, or more than `max_atoms`
    atoms in the conventional cell. (Graph predictors on a collapsed cell build enormous
    neighbour lists.) The crystals passed on carry their
    built structure, so the terms do not rebuild it."""

    def __init__(self, conditioner: Any, min_distance: float = 0.5,
                 min_volume_per_atom: float = 2.0, max_atoms: int = 256,
                 name: str = "target") -> None:
        self.conditioner = conditioner
        self.min_distance = float(min_distance)
        self.min_volume_per_atom = float(min_volume_per_atom)
        self.max_atoms = int(max_atoms)
        self.name = name

    def physical(self, crystal: Any) -> Any:
        """The crystal with its structure attached, or None when it cannot be physical."""
        from cfmc.chemistry import min_distance

        if crystal.num_atoms > self.max_atoms:
            return None
        try:
            s = build_structure(crystal)
        except Exception:  # pymatgen raises several types for a degenerate cell
            return None
        if not np.isfinite(s.volume) or s.volume < self.min_volume_per_atom * len(s):
            return None
        if min_distance(s) < self.min_distance:
            return None
        return _Prebuilt(crystal.spacegroup, crystal.wyckoff, crystal.species, crystal.coords,
                         crystal.lattice, crystal.properties, structure=s)

    def __call__(self, crystals: Sequence[Any]) -> Any:
        from cfmc.predictors import ConditionResult

        checked = [self.physical(c) for c in crystals]
        n = len(checked)
        idx = np.array([i for i, c in enumerate(checked) if c is not None], int)
        logp = np.full(n, -np.inf)
        failed = np.zeros(n, bool)
        terms: dict[str, np.ndarray] = {}
        values: dict[str, np.ndarray] = {}
        errors: list[str | None] = ["not physical" if c is None else None for c in checked]
        if idx.size:
            inner = self.conditioner([checked[i] for i in idx])
            logp[idx] = np.asarray(getattr(inner, "logp", inner), float).reshape(-1)
            failed[idx] = np.asarray(getattr(inner, "failed", np.zeros(idx.size, bool)), bool)
            for k, v in (getattr(inner, "terms", None) or {}).items():
                terms[k] = np.full(n, -np.inf)
                terms[k][idx] = v
            for k, v in (getattr(inner, "values", None) or {}).items():
                values[k] = np.full(n, np.nan)
                values[k][idx] = v
            for j, e in zip(idx, getattr(inner, "errors", None) or [None] * idx.size,
                            strict=True):
                errors[j] = e
        return ConditionResult(logp, terms, values, failed, tuple(errors))


# ---------------------------------------------------------------------------- constraints


def allowed_mask(elements: Sequence[str] | None, exclude_radioactive: bool = True) -> np.ndarray:
    """(119,) bool: the elements a site may take (all but the radioactive ones by default)."""
    m = default_allowed(exclude_radioactive)
    if elements:
        pick = np.zeros(NUM_SPECIES, bool)
        pick[[atomic_number(e) for e in elements]] = True
        m &= pick
        if not m.any():
            raise ValueError(f"--elements {' '.join(elements)}: none of them is allowed")
    return m


def design_constraints(arrays: CrystalArrays, allowed: np.ndarray) -> SiteConstraints:
    """Per-chain constraints for free design: every real site's element may change (within
    `allowed`), every free coordinate of its Wyckoff position moves, and so do the free lattice
    parameters. The Wyckoff letters stay those of the starting crystal."""
    a = CrystalArrays(*(np.asarray(f) for f in arrays))
    b, n = a.mask.shape
    t = wyckoff.tables()
    g = a.spacegroup.astype(int)
    species_move = a.mask.copy()
    allow = np.zeros((b, n, NUM_SPECIES), bool)
    allow[:, :, 0] = ~a.mask  # padding keeps its pad species
    allow[a.mask] = allowed
    tie = np.broadcast_to(np.arange(n, dtype=np.int32), (b, n)).copy()
    coord_move = t.free[g[:, None], a.wyckoff] & a.mask[:, :, None]
    differ = np.zeros((b, 0, 2), np.int32)
    lattice_move = np.stack([wyckoff.lattice_free_mask(int(x)) for x in g])
    return SiteConstraints(species_move, allow, tie, coord_move, differ, lattice_move)


# ---------------------------------------------------------------------------- start


class _Start(NamedTuple):
    arrays: CrystalArrays  # one crystal per chain
    unconditional: pd.DataFrame  # the prior samples with finite posterior density; `start` marks
    # the chains' starting points
    drawn: int  # prior samples drawn in all
    rejected: int  # of those, with zero posterior density (failed prediction, bad cell, ...);
    # draws beyond the pool that were not needed count in neither
    repeated: int  # chains that had to start from a repeated sample


def _draw(posterior: Posterior, key, num: int, spacegroup: int, template: Template | None,
          allowed: np.ndarray, max_sites: int, rng: np.random.Generator
          ) -> tuple[CrystalArrays, np.ndarray]:
    """`num` crystals from the prior's sampler (template fields clamped), else uniform template
    fills with a lattice from p(L | sites); and which of them keep the template with a valid
    cell. The batch size stays `num`, so nothing recompiles between rounds."""
    from cfmc.kernels import is_valid_cell

    sample = posterior.prior.sample
    if sample is not None:
        if template is not None:
            w, a, x = template.fixed_arrays(max_sites)
            per_site = np.ones((max_sites, NUM_SPECIES), bool)
            per_site[: template.num_sites] = template.allowed
            clamps = {"fixed_wyckoff": w, "fixed_species": a, "fixed_coords": x,
                      "allowed_species": per_site}
        else:
            clamps = {"allowed_species": allowed}
        arrays = CrystalArrays(*(np.asarray(f) for f in sample(key, spacegroup, num, **clamps)))
    elif template is None:
        raise ValueError(
            "this prior has no sampler, so free design cannot start from prior samples; give a "
            "template (its blanks are then filled uniformly)"
        )
    else:
        arrays = template.random_arrays(num, rng, max_sites)
        if posterior.prior.sample_lattice is not None:
            lat = np.asarray(posterior.prior.sample_lattice(key, _jax(arrays)))
            arrays = arrays._replace(lattice=lat.astype(np.float32))
    ok = np.array(is_valid_cell(jnp.asarray(arrays.lattice)), bool)
    if template is not None:
        ok &= template.check_arrays(arrays)
    return arrays, ok


def _start(posterior: Posterior, key, chains: int, spacegroup: int, template: Template | None,
           allowed: np.ndarray, max_sites: int, seed: int, pool: int = 1) -> _Start:
    """Prior samples until `pool * chains` of them have finite posterior density (a valid cell, a
    finite prior, every prediction made); they are the unconditional sample, and the chains start
    from the `chains` distinct ones of highest posterior density. Starting points only shorten
    burn-in: the chains' stationary distribution is the posterior whatever they start from."""
    from cfmc.crystal import from_arrays

    rng = np.random.default_rng(seed)
    good: list[CrystalArrays] = []
    rows: list[pd.DataFrame] = []
    have = drawn = rejected = 0
    target = chains * max(int(pool), 1)
    num = max(int(np.ceil(target * 1.25)), 8)
    for r in range(MAX_INIT_ROUNDS):
        want = target - have
        arrays, ok = _draw(posterior, jax.random.fold_in(key, r), num, spacegroup, template,
                           allowed, max_sites, rng)
        drawn += num
        terms = posterior(arrays)
        ok = ok & np.isfinite(terms.log_prior) & ~terms.failed & np.isfinite(terms.log_likelihood)
        rejected += int((~ok).sum())
        idx = np.flatnonzero(ok)[:want]
        if idx.size:
            good.append(arrays.take(idx))
            frame = {"log_prior": terms.log_prior[idx], "log_likelihood": terms.log_likelihood[idx]}
            frame.update({k: np.asarray(v)[idx] for k, v in terms.values.items()})
            rows.append(pd.DataFrame(frame))
            have += idx.size
        if have >= target:
            break
    if not have:
        where = f"template {template}" if template is not None else f"space group {spacegroup}"
        raise ValueError(
            f"none of {drawn} prior samples of {where} has a finite posterior density (no valid "
            "cell, or a predictor failed on every one); check the prior and the allowed elements"
        )
    arrays = concatenate(good)
    table = pd.concat(rows, ignore_index=True)
    crystals = from_arrays(arrays)
    table.insert(0, "formula", [c.formula for c in crystals])
    table.insert(1, "string", [c.to_string() for c in crystals])
    # the best distinct samples by log posterior start the chains
    order = np.argsort(-(table["log_prior"].to_numpy() + table["log_likelihood"].to_numpy()),
                       kind="stable")
    distinct = order[~table["string"].iloc[order].duplicated().to_numpy()][:chains]
    table.insert(2, "start", np.isin(np.arange(len(table)), distinct))
    repeated = chains - distinct.size
    starts = np.resize(distinct, chains) if repeated else distinct
    return _Start(arrays.take(starts), table, drawn, rejected, repeated)


def _jax(arrays: CrystalArrays) -> CrystalArrays:
    return CrystalArrays(*(jnp.asarray(f) for f in arrays))


# ---------------------------------------------------------------------------- recording


class _Recorder:
    """Trace of every draw after burn-in, kernel counts, and the latest chain state."""

    def __init__(self, posterior: Posterior, sampler: Sampler, burn_in: int):
        self.posterior, self.sampler, self.burn_in = posterior, sampler, burn_in
        self.trace = Trace()
        self.acceptance: list[np.ndarray] = []
        self.burn_stats, self.sample_stats = new_stats(), new_stats()
        self.state: ChainState | None = None
        self._terms = jax.jit(posterior.prior.log_prob)

    def prior_terms(self, position: CrystalArrays) -> dict[str, np.ndarray]:
        pt = self._terms(position)
        return {k: np.asarray(getattr(pt, k)) for k in getattr(pt, "_fields", ("total",))}

    def __call__(self, index: int, state: ChainState, stats: dict) -> None:
        self.state = state
        if index < self.burn_in:
            add_stats(self.burn_stats, stats)
            return
        add_stats(self.sample_stats, stats)
        terms = self.prior_terms(state.position)
        row = {"log_posterior": state.logdensity, "log_prior": terms["total"],
               "loglik": state.log_likelihood}
        row.update({f"prior_{k}": v for k, v in terms.items() if k != "total"})
        row.update(state.values)
        self.trace.append(row)
        self.acceptance.append(self.sampler.chain_acceptance)


# ---------------------------------------------------------------------------- the workflow


def _load_prior(prior: Any):
    if prior is None or isinstance(prior, str | Path):
        from cfmc.priors import load_prior

        return load_prior(prior)
    return prior


def design(
    conditioner: Any,
    out: str | Path,
    spacegroup: int | None = None,
    template: str | Template | None = None,
    prior: Any = None,
    chains: int = 256,
    sweeps: int = 40,
    burn_in: int = 20,
    seed: int = 0,
    elements: Sequence[str] | None = None,
    allow_radioactive: bool = False,
    species_proposal: str = "prior",
    delayed_acceptance: bool = False,
    temperature: float = 1.0,
    top: int = 0,
    min_distance: float = 0.5,
    min_volume_per_atom: float = 2.0,
    pool: int = 4,
    force: bool = False,
    progress: bool = True,
    settings: Mapping[str, Any] | None = None,
    on_sweep: Callable[[int, ChainState, dict], None] | None = None,
) -> DesignResult:
    """Sample the posterior prior x conditioner for one space group and write the run directory.

    conditioner: a `cfmc.predictors` conditioner (sums allowed) or any callable over a list of
    crystals returning log-likelihoods; prior: a CrystalFormer, a checkpoint path, or None for
    the shipped one; template: optional `[?]` template fixing part of the crystal (its space
    group wins; `spacegroup`, if also given, must agree). `top` keeps the N best distinct final
    crystals in samples.csv (0: all distinct ones). Crystals with atoms closer than
    `min_distance` or less than `min_volume_per_atom` get zero density (`PhysicalGuard`). An
    interrupt still writes the outputs of the last completed sweep (status 'interrupted') before
    it propagates.
    """
    if chains < 1:
        raise ValueError(f"chains must be at least 1, got {chains}")
    if burn_in < 0 or sweeps <= burn_in:
        raise ValueError(f"sweeps ({sweeps}) must exceed burn-in ({burn_in})")
    allowed = allowed_mask(elements, exclude_radioactive=not allow_radioactive)
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
    out = runio.prepare(out, force=force)
    if force:
        for name in DESIGN_OUTPUTS:
            (out / name).unlink(missing_ok=True)

    model = _load_prior(prior)
    max_sites = int(model.config.max_sites)
    guard = PhysicalGuard(conditioner, min_distance, min_volume_per_atom)
    posterior = Posterior(model, [guard], temperature=temperature, marginalize_lattice=False)
    key = jax.random.PRNGKey(seed)
    k_init, k_run = jax.random.split(key)
    t0 = time.time()
    start = _start(posterior, k_init, chains, spacegroup, template, allowed, max_sites, seed,
                   pool)
    start.unconditional.to_csv(out / "unconditional.csv", index=False)
    if template is not None:
        constraints = template.constraints(max_sites)
    else:
        constraints = design_constraints(start.arrays, allowed)
    config = SweepConfig(lattice=True, species_proposal=species_proposal,
                         delayed_acceptance=delayed_acceptance)
    sampler = Sampler(posterior, constraints, config)
    state = sampler.init(start.arrays)
    recorder = _Recorder(posterior, sampler, burn_in)
    recorder.state = state
    run_settings = {
        "spacegroup": spacegroup, "template": None if template is None else str(template),
        "chains": chains, "sweeps": sweeps, "burn_in": burn_in, "seed": seed,
        "elements": list(elements) if elements else None, "allow_radioactive": allow_radioactive,
        "species_proposal": species_proposal, "delayed_acceptance": delayed_acceptance,
        "temperature": temperature, "top": top, "min_distance": min_distance,
        "min_volume_per_atom": min_volume_per_atom, "pool": pool, **dict(settings or {}),
    }

    def record(i: int, st: ChainState, stats: dict) -> None:
        recorder(i, st, stats)
        if on_sweep is not None:
            on_sweep(i, st, stats)

    status = "complete"
    try:
        run_sweeps(sampler, state, k_run, sweeps, burn_in, on_sweep=record, progress=progress,
                   desc="design")
    except BaseException:
        status = "interrupted"
        raise
    finally:
        result = _write_outputs(out, conditioner, posterior, sampler, recorder, start, top,
                                run_settings, status, time.time() - t0)
    return result


def _write_outputs(out: Path, conditioner, posterior: Posterior, sampler: Sampler,
                   recorder: _Recorder, start: _Start, top: int, settings: dict, status: str,
                   seconds: float) -> DesignResult:
    from cfmc.crystal import from_arrays

    state = recorder.state
    pos = CrystalArrays(*(np.asarray(f) for f in state.position))
    crystals = from_arrays(pos)
    prior_terms = recorder.prior_terms(_jax(pos))
    target = state.logdensity
    conditioned = pd.DataFrame({
        "chain": np.arange(len(crystals)),
        "formula": [c.formula for c in crystals],
        "string": [c.to_string() for c in crystals],
        "log_prior": prior_terms["total"],
        "log_likelihood": state.log_likelihood,
        "log_posterior": target,
        **{k: np.asarray(v) for k, v in state.values.items()},
    })
    conditioned.to_csv(out / "chains.csv", index=False)
    keep = runio.select_top(crystals, target, top or None)
    columns = {"log_prior": prior_terms["total"][keep], "log_posterior": target[keep],
               "log_likelihood": state.log_likelihood[keep]}
    columns.update({f"prior_{k}": v[keep] for k, v in prior_terms.items() if k != "total"})
    columns.update({k: np.asarray(v)[keep] for k, v in state.values.items()})
    runio.write_samples(out, [crystals[i] for i in keep], keep, columns)
    targets = gaussian_target_values(conditioner)
    summary: dict[str, Any] = {
        "command": "design",
        "status": status,
        "settings": settings,
        "seed": settings.get("seed"),
        "seconds": seconds,
        "conditioners": list(posterior.names),
        "targets": targets,
        "start": {"prior_samples_drawn": start.drawn, "zero_density": start.rejected,
                  "pool": int(len(start.unconditional)), "repeated_starts": start.repeated},
        "step_sizes": sampler.step_sizes,
        "schedule": [f"{k}@{s}" for k, s in sampler.schedule()],
        "kernels_burn_in": kernel_summary(recorder.burn_stats),
        "kernels": kernel_summary(recorder.sample_stats),
        "draws": recorder.trace.draws,
        "kept": len(keep),
        "distinct_formulas": len({crystals[i].formula for i in keep}),
        "metrics": distance_metrics(start.unconditional, conditioned, targets,
                                    start.unconditional.loc[start.unconditional["start"]]),
        "versions": package_versions(),
        "columns": {
            "log_posterior": "untempered log p(C|g) + sum_k w_k log p(y_k|C) (lattice included)",
            "log_prior": "log p(C|g) including the lattice term",
        },
    }
    if recorder.trace.draws:
        summary["convergence"] = convergence(recorder.trace)
        acc = {"acceptance": np.stack(recorder.acceptance, axis=1)} if recorder.acceptance else {}
        runio.write_trace(out, recorder.trace.to_inference_data(acc))
        names = ["log_posterior", "log_prior", "loglik", *state.values]
        trace_plot(recorder.trace, out / "trace.png", names)
    runio.write_summary(out, summary)
    marks = target_marks(conditioner)
    properties = [k for k in state.values if k in start.unconditional or k in conditioned]
    property_histograms(start.unconditional, conditioned, properties, marks,
                        out / "properties.png")
    log_prior_histogram(start.unconditional, conditioned, out / "log_prior.png")
    samples = pd.read_csv(out / "samples.csv")
    return DesignResult(out, start.unconditional, conditioned, samples, summary)


# ---------------------------------------------------------------------------- plots


def _hist_pair(ax, before: np.ndarray, after: np.ndarray, label: str) -> None:
    both = np.concatenate([before, after])
    if not both.size:
        ax.text(0.5, 0.5, "no finite values", ha="center", transform=ax.transAxes)
        return
    lo, hi = np.percentile(both, [0.5, 99.5]) if both.size > 20 else (both.min(), both.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.linspace(lo, hi, 40)
    ax.hist(np.clip(before, lo, hi), bins=bins, alpha=0.55, density=True, color="0.5",
            label=f"unconditional (n={before.size})")
    ax.hist(np.clip(after, lo, hi), bins=bins, alpha=0.55, density=True, color="tab:red",
            label=f"conditioned (n={after.size})")
    ax.set_xlabel(label)
    ax.set_ylabel("density")


def property_histograms(unconditional: pd.DataFrame, conditioned: pd.DataFrame,
                        properties: Sequence[str], marks: Mapping[str, Sequence[float]],
                        path: str | Path) -> Path:
    """Fig. 9a: one panel per property, unconditional vs conditioned, targets as dashed lines."""
    plt = pyplot()

    n = max(len(properties), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.4), squeeze=False)
    for ax, name in zip(axes[0], properties, strict=False):
        _hist_pair(ax, _finite(unconditional.get(name)), _finite(conditioned.get(name)), name)
        for v in marks.get(name, []):
            ax.axvline(v, color="k", ls="--", lw=1.2, label=f"target {v:g}")
        ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=110)


def log_prior_histogram(unconditional: pd.DataFrame, conditioned: pd.DataFrame,
                        path: str | Path) -> Path:
    """Fig. 9b: prior log-likelihood log p(C|g) of unconditional vs conditioned samples."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    _hist_pair(ax, _finite(unconditional.get("log_prior")), _finite(conditioned.get("log_prior")),
               "log p(C|g)")
    ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=110)
