"""The one recorder of a run: a trace row per chain and draw after burn-in, kernel counts, the mean
log density per sweep, and the latest draw (the crystals the outputs are written from).

With the lattice marginalised, each recorded draw gets a lattice from the prior's conditional
p(L | sites) (the lattice is the last autoregressive factor, so this is an exact draw of the
joint). Trace variables, the columns of samples.csv and chains.csv share these names:

    log_posterior   untempered log density the chains target
    log_prior       full log p(C|g), lattice term included
    prior_<term>    each term of the prior (wyckoff, species, coords, lattice)
    log_likelihood  sum_k w_k log p(y_k|C) (runs with conditioners)
    loglik_<name>   each conditioner's weighted term
    <property>      each predicted property
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from cfmc.arrays import CrystalArrays
from cfmc.diagnostics import Trace
from cfmc.posterior import Posterior
from cfmc.sweep import SamplerState, add_stats, new_stats


class Draw(NamedTuple):
    """The crystals of one recorded sweep with every per-chain column."""

    index: int
    positions: CrystalArrays
    columns: dict[str, np.ndarray]

    @property
    def log_posterior(self) -> np.ndarray:
        return self.columns["log_posterior"]


class Recorder:
    """Collects what the outputs need, sweep by sweep; `state()`/`restore()` for checkpoints."""

    def __init__(self, posterior: Posterior, burn_in: int, key: jax.Array) -> None:
        self.posterior, self.burn_in, self.key = posterior, burn_in, key
        self.trace = Trace()
        self.acceptance: list[np.ndarray] = []
        self.burn_stats, self.sample_stats = new_stats(), new_stats()
        self.curve: list[list[float]] = []  # (sweep, mean prior part, mean log posterior)
        self.last: Draw | None = None
        sample_lattice = posterior.prior.sample_lattice
        self._lattice = (jax.jit(sample_lattice)
                         if posterior.marginalize_lattice and sample_lattice is not None else None)

    def draw(self, index: int, state: SamplerState) -> Draw:
        """The crystals of sweep `index` (a lattice drawn when marginal) with all columns."""
        pos = CrystalArrays(*(np.asarray(f) for f in state.position))
        if self._lattice is not None:
            lat = self._lattice(jax.random.fold_in(self.key, index), state.position)
            pos = pos._replace(lattice=np.asarray(lat, np.float32))
        terms = self.posterior.prior_terms(pos)
        columns = {"log_posterior": state.logdensity, "log_prior": terms["total"]}
        columns.update({f"prior_{k}": v for k, v in terms.items() if k != "total"})
        if self.posterior.has_conditioners:
            columns["log_likelihood"] = state.log_likelihood
        columns.update(state.values)
        self.last = Draw(index, pos, columns)
        return self.last

    def __call__(self, index: int, state: SamplerState, stats: dict) -> None:
        finite = state.logdensity[np.isfinite(state.logdensity)]
        self.curve.append([index, float(np.mean(state.log_prior)),
                           float(finite.mean()) if finite.size else float("nan")])
        if index < self.burn_in:
            add_stats(self.burn_stats, stats)
            return
        add_stats(self.sample_stats, stats)
        self.trace.append(self.draw(index, state).columns)
        self.acceptance.append(np.asarray(state.chain_acceptance, float))

    # ------------------------------------------------------------------ checkpoints

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays and JSON metadata to checkpoint."""
        arrays = {f"trace.{k}": v for k, v in self.trace.arrays().items()}
        if self.acceptance:
            arrays["acceptance"] = np.stack(self.acceptance)
        meta = {"burn_stats": self.burn_stats, "sample_stats": self.sample_stats,
                "curve": self.curve}
        return arrays, meta

    def restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], next_sweep: int,
                state: SamplerState) -> None:
        """Inverse of `state()`; redraws the last recorded draw for the outputs."""
        self.trace = Trace.from_arrays(
            {k[6:]: v for k, v in arrays.items() if k.startswith("trace.")})
        self.acceptance = list(arrays.get("acceptance", []))
        self.burn_stats, self.sample_stats = meta["burn_stats"], meta["sample_stats"]
        self.curve = meta.get("curve", [])
        if next_sweep > self.burn_in:
            self.draw(next_sweep - 1, state)
