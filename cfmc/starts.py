"""Starting crystals for the chains: uniform template fills, the prior's own draws (template
fields clamped), and the best distinct draws of a prior pool. Starting points only shorten
burn-in; the chains' stationary distribution is the posterior whatever they start from."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from cfmc.arrays import CrystalArrays, concatenate
from cfmc.kernels import is_valid_cell
from cfmc.posterior import Posterior
from cfmc.template import Template

MAX_POOL_ROUNDS = 4  # rounds of prior sampling to find crystals with finite posterior density


def _jax(arrays: CrystalArrays) -> CrystalArrays:
    return CrystalArrays(*(jnp.asarray(f) for f in arrays))


def _where(ok: np.ndarray, a: CrystalArrays, b: CrystalArrays) -> CrystalArrays:
    return CrystalArrays(*(np.where(ok.reshape((-1,) + (1,) * (np.ndim(f) - 1)), f, g)
                           for f, g in zip(a, b, strict=True)))


def prior_draws(posterior: Posterior, key: jax.Array, num: int, spacegroup: int,
                template: Template | None, allowed: np.ndarray | None, max_sites: int
                ) -> CrystalArrays:
    """`num` crystals from the prior's sampler, template fields clamped (blanks under the
    template's allow-lists) or elements from `allowed`, cut to `max_sites` slots."""
    sample = posterior.prior.sample
    if sample is None:
        raise ValueError("this prior has no sampler; start from uniform template fills")
    full = max(posterior.prior.max_sites or max_sites, max_sites)  # the sampler fills its slots
    if template is not None:
        clamps = template.sampler_clamps(full)
    else:
        clamps = {"allowed_species": allowed}
    arrays = sample(key, spacegroup, num, **clamps)
    return CrystalArrays(*(
        np.asarray(f)[:, :max_sites] if np.ndim(f) > 1 and k != "lattice" else np.asarray(f)
        for k, f in zip(CrystalArrays._fields, arrays, strict=True)
    ))


def template_start(posterior: Posterior, key: jax.Array, template: Template, chains: int,
                   init: str, seed: int, max_sites: int, lattice: bool
                   ) -> tuple[CrystalArrays, dict[str, Any]]:
    """Infill starts: `init` 'uniform' fills the blanks uniformly, 'prior' draws them from the
    prior with the template clamped (uniform fills where the sampler breaks an allow-list).
    With `lattice`, the cell comes from p(L | sites) where that cell is valid."""
    if init not in ("uniform", "prior"):
        raise ValueError(f"init must be 'uniform' or 'prior', got '{init}'")
    rng = np.random.default_rng(seed)
    replaced = 0
    if init == "prior":
        arrays = prior_draws(posterior, key, chains, template.spacegroup, template, None,
                             max_sites)
        ok = template.check_arrays(arrays)
        replaced = int((~ok).sum())
        if replaced:  # chains the sampler could not fill within the allow-lists
            arrays = _where(ok, arrays, template.random_arrays(chains, rng, max_sites))
    else:
        arrays = template.random_arrays(chains, rng, max_sites)
    if lattice and posterior.prior.sample_lattice is not None:
        lat = np.asarray(posterior.prior.sample_lattice(key, _jax(arrays)))
        good = np.asarray(is_valid_cell(jnp.asarray(lat)))
        arrays = arrays._replace(
            lattice=np.where(good[:, None], lat, arrays.lattice).astype(np.float32))
    return arrays, {"init": init, "uniform_fills": replaced if init == "prior" else chains}


class Pool(NamedTuple):
    """A pool of prior samples with finite posterior density and the chains' starts."""

    arrays: CrystalArrays  # one crystal per chain
    table: pd.DataFrame  # the pool: formula, string, start, log_prior, log_likelihood, properties
    drawn: int  # prior samples drawn in all
    rejected: int  # of those, with zero posterior density (failed prediction, bad cell, ...)
    repeated: int  # chains that had to start from a repeated sample
    members: CrystalArrays | None = None  # the pool itself, one crystal per row of `table`

    def info(self) -> dict[str, int]:
        return {"prior_samples_drawn": self.drawn, "zero_density": self.rejected,
                "pool": int(len(self.table)), "repeated_starts": self.repeated}


def _pool_draws(posterior: Posterior, key: jax.Array, num: int, spacegroup: int,
                template: Template | None, allowed: np.ndarray, max_sites: int,
                rng: np.random.Generator) -> tuple[CrystalArrays, np.ndarray]:
    """Prior draws (or uniform template fills with a lattice from p(L | sites) when the prior
    has no sampler) and which of them keep the template with a valid cell."""
    if posterior.prior.sample is not None:
        arrays = prior_draws(posterior, key, num, spacegroup, template, allowed, max_sites)
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


def pool_start(posterior: Posterior, key: jax.Array, chains: int, spacegroup: int,
               template: Template | None, allowed: np.ndarray, max_sites: int, seed: int,
               pool: int = 1) -> Pool:
    """Prior samples until `pool * chains` of them have finite posterior density (a valid cell, a
    finite prior, every prediction made); they are the unconditional sample, and the chains start
    from the `chains` distinct ones of highest posterior density. The batch size stays fixed, so
    nothing recompiles between rounds."""
    from cfmc.crystal import from_arrays

    rng = np.random.default_rng(seed)
    good: list[CrystalArrays] = []
    rows: list[pd.DataFrame] = []
    have = drawn = rejected = 0
    target = chains * max(int(pool), 1)
    num = max(int(np.ceil(target * 1.25)), 8)
    for r in range(MAX_POOL_ROUNDS):
        want = target - have
        arrays, ok = _pool_draws(posterior, jax.random.fold_in(key, r), num, spacegroup,
                                 template, allowed, max_sites, rng)
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
    order = np.argsort(-(table["log_prior"].to_numpy() + table["log_likelihood"].to_numpy()),
                       kind="stable")
    distinct = order[~table["string"].iloc[order].duplicated().to_numpy()][:chains]
    table.insert(2, "start", np.isin(np.arange(len(table)), distinct))
    repeated = chains - distinct.size
    starts = np.resize(distinct, chains) if repeated else distinct
    return Pool(arrays.take(starts), table, drawn, rejected, repeated, arrays)
