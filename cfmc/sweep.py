"""The sweep engine: many chains, Metropolis-within-Gibbs over sites, host-side conditioners.

A sweep visits the sites in sequence order and applies the chosen kernels at each (element
substitution, coordinate shift), then the lattice move. Each move proposes for all chains at once
(jitted, vmapped); the prior part of the proposals is evaluated in the same jitted call, the
conditioners once for the batch on the host. Non-finite conditioner values reject the proposal
and are counted. With delayed acceptance (Christen & Fox 2005) a proposal is first screened by the
prior ratio times the q ratio and only survivors reach the conditioners; the second stage accepts
with the conditioner ratio, which keeps the chain exact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cfmc.arrays import CrystalArrays
from cfmc.kernels import accept, coords, lattice, log_acceptance, species
from cfmc.posterior import Posterior
from cfmc.template import SiteConstraints

KERNELS = ("species", "coords", "lattice")
STAT_FIELDS = ("proposed", "accepted", "invalid", "predictor_calls", "predictor_failures",
               "calls_saved")


@dataclasses.dataclass
class SweepConfig:
    """Which kernels run and how they are tuned.

    species_proposal: 'uniform' or 'prior' (the prior's conditional, Hastings-corrected).
    Step sizes adapt during burn-in towards target_acceptance, then stay frozen.
    """

    species: bool = True
    coords: bool = True
    lattice: bool = False
    species_proposal: str = "uniform"
    delayed_acceptance: bool = False
    coord_step: float = 0.1  # von Mises random walk, fractional units
    lattice_step: float = 0.2  # Angstrom (angles: ANGLE_SCALE degrees per unit)
    target_acceptance: float = 0.3
    adapt_rate: float = 1.0
    chunk_size: int = 128  # chains evaluated together inside one jitted move

    def __post_init__(self) -> None:
        if self.species_proposal not in ("uniform", "prior"):
            raise ValueError(
                f"species_proposal must be 'uniform' or 'prior', got '{self.species_proposal}'"
            )
        if not 0 < self.target_acceptance < 1:
            raise ValueError(f"target_acceptance must be in (0, 1), got {self.target_acceptance}")


class ChainState(NamedTuple):
    """All chains: crystals (batched arrays) and the untempered parts of their log posterior."""

    position: CrystalArrays
    log_prior: jax.Array  # (B,) prior part the chains target (lattice term left out if marginal)
    log_likelihood: np.ndarray  # (B,) weighted conditioner sum (0 without conditioners)
    values: dict[str, np.ndarray]  # predicted properties of the current crystals

    @property
    def logdensity(self) -> np.ndarray:
        """Untempered log posterior (up to a constant)."""
        return np.asarray(self.log_prior) + self.log_likelihood


def new_stats() -> dict[str, dict[str, int]]:
    return {k: dict.fromkeys(STAT_FIELDS, 0) for k in KERNELS}


def add_stats(total: dict, part: dict) -> dict:
    for k, d in part.items():
        for f, v in d.items():
            total.setdefault(k, dict.fromkeys(STAT_FIELDS, 0))[f] += int(v)
    return total


def acceptance(stats: dict) -> dict[str, float]:
    """Accepted / proposed per kernel (NaN where nothing was proposed)."""
    return {
        k: (d["accepted"] / d["proposed"] if d["proposed"] else float("nan"))
        for k, d in stats.items()
    }


def _where(mask, new, old):
    def pick(a, b):
        m = jnp.reshape(mask, mask.shape + (1,) * (a.ndim - mask.ndim))
        return jnp.where(m, a, b)

    return jax.tree.map(pick, new, old)


class Sampler:
    """Runs sweeps of the configured kernels over a batch of chains of one posterior."""

    def __init__(
        self,
        posterior: Posterior,
        constraints: SiteConstraints,
        config: SweepConfig | None = None,
    ) -> None:
        self.posterior = posterior
        self.config = config or SweepConfig()
        self.constraints = SiteConstraints(*(np.asarray(f) for f in constraints))
        if self.config.species_proposal == "prior" and posterior.prior.species_log_probs is None:
            raise ValueError("the prior-informed species proposal needs species_log_probs")
        self.step_sizes = {"coords": self.config.coord_step, "lattice": self.config.lattice_step}
        self.stats = new_stats()
        self._cons_cache: tuple[int, SiteConstraints] | None = None
        self._chain_proposed = self._chain_accepted = np.zeros(0, np.int64)
        sp = (
            species.uniform_proposal()
            if self.config.species_proposal == "uniform"
            else species.prior_proposal(posterior.prior.species_log_probs)
        )
        self._proposals = {
            "species": sp,
            "coords": coords.vonmises_proposal(),
            "lattice": lattice.gaussian_proposal(),
        }
        self._jit_propose = {k: jax.jit(self._make_propose(k)) for k in KERNELS}
        self._jit_fused = {k: jax.jit(self._make_fused(k)) for k in KERNELS}
        self._jit_decide = jax.jit(jax.vmap(lambda k, la: accept(k, la, False, True)[1]))
        self._jit_where = jax.jit(_where)

    # ------------------------------------------------------------------ schedule

    def _batched_constraints(self, batch: int) -> SiteConstraints:
        if self._cons_cache is not None and self._cons_cache[0] == batch:
            return self._cons_cache[1]
        c = self.constraints
        if c.species_move.ndim == 1:
            c = c.broadcast(batch)
        if c.species_move.shape[0] != batch:
            raise ValueError(f"constraints are for {c.species_move.shape[0]} chains, not {batch}")
        self._cons_cache = (batch, SiteConstraints(*(jnp.asarray(f) for f in c)))
        return self._cons_cache[1]

    def schedule(self) -> list[tuple[str, int]]:
        """The moves of one sweep, (kernel, site) in sequence order; sites with nothing to move
        in any chain are skipped; the lattice move comes last."""
        c = self.constraints
        sp = c.species_move.reshape(-1, c.species_move.shape[-1]).any(0)
        co = c.coord_move.reshape(-1, *c.coord_move.shape[-2:]).any(-1).any(0)
        moves = []
        for i in range(sp.shape[0]):
            if self.config.species and sp[i]:
                moves.append(("species", i))
            if self.config.coords and co[i]:
                moves.append(("coords", i))
        if self.config.lattice and np.any(c.lattice_move):
            moves.append(("lattice", 0))
        return moves

    # ------------------------------------------------------------------ jitted pieces

    def _make_propose(self, kind: str) -> Callable:
        propose = self._proposals[kind]

        def fn(key, positions, constraints, site, step):
            b = positions.spacegroup.shape[0]
            keys = jax.random.split(key, b)

            def one(args):
                prop = propose(*args, site, step)
                batched = jax.tree.map(lambda x: x[None], prop.position)
                return prop, self.posterior.prior_part(batched)[0]

            # chunks of chains: one huge batch runs slower per chain on CPU (cache misses)
            return jax.lax.map(one, (keys, positions, constraints),
                               batch_size=min(self.config.chunk_size, b))

        return fn

    def _make_fused(self, kind: str) -> Callable:
        propose = self._make_propose(kind)

        def fn(key, positions, log_prior, constraints, site, step, beta):
            k1, k2 = jax.random.split(key)
            prop, lp = propose(k1, positions, constraints, site, step)
            ok = prop.is_valid & prop.is_active
            log_alpha = log_acceptance(beta * (lp - log_prior) + prop.log_q_ratio, ok)
            keys = jax.random.split(k2, lp.shape[0])
            (new_pos, new_lp), do_accept, _ = jax.vmap(accept)(
                keys, log_alpha, (positions, log_prior), (prop.position, lp)
            )
            return new_pos, new_lp, do_accept, prop.is_active, prop.is_valid

        return fn

    # ------------------------------------------------------------------ chains

    def init(self, positions: CrystalArrays) -> ChainState:
        """Evaluate the posterior at the initial crystals; every one must have finite density."""
        pos = CrystalArrays(*(jnp.asarray(f) for f in positions))
        lp = jnp.asarray(self.posterior.prior_logdensity(pos))
        cond = self.posterior.conditioner_logdensity(positions)
        bad = ~np.isfinite(np.asarray(lp)) | ~np.isfinite(cond.logp)
        if bad.any():
            raise ValueError(
                f"{int(bad.sum())} of {bad.size} initial crystals have zero posterior density "
                f"(first: chain {int(np.flatnonzero(bad)[0])}); start from valid crystals"
            )
        return ChainState(pos, lp, cond.logp, cond.values)

    def move(
        self, key: jax.Array, state: ChainState, kind: str, site: int, beta: float
    ) -> tuple[ChainState, dict[str, int]]:
        """One kernel at one site for every chain."""
        b = state.position.spacegroup.shape[0]
        cons = self._batched_constraints(b)
        step = jnp.float32(self.step_sizes.get(kind, 0.0))
        st = dict.fromkeys(STAT_FIELDS, 0)
        if not self.posterior.has_conditioners:
            pos, lp, acc, active, valid = self._jit_fused[kind](
                key, state.position, state.log_prior, cons, jnp.int32(site), step, jnp.float32(beta)
            )
            # device arrays: read back once per sweep, so moves are dispatched without waiting
            self._chain_counts(active, acc)
            st.update(proposed=active.sum(), accepted=acc.sum(), invalid=(active & ~valid).sum())
            return state._replace(position=pos, log_prior=lp), st
        k_prop, k1, k2 = jax.random.split(key, 3)
        prop, lp_new = self._jit_propose[kind](k_prop, state.position, cons, jnp.int32(site), step)
        active = np.asarray(prop.is_active)
        ok = active & np.asarray(prop.is_valid)
        d_prior = np.asarray(lp_new) - np.asarray(state.log_prior)
        log_q = np.asarray(prop.log_q_ratio)
        if self.config.delayed_acceptance:
            la1 = np.where(ok, beta * d_prior + log_q, -np.inf)
            need = ok & np.asarray(self._jit_decide(jax.random.split(k1, b), jnp.asarray(la1)))
        else:
            need = ok
        idx = np.flatnonzero(need)
        ll_new = np.full(b, -np.inf)
        cond = self.posterior.conditioner_logdensity(
            CrystalArrays(*(np.asarray(f)[idx] for f in prop.position))
        )
        ll_new[idx] = cond.logp
        d_like = ll_new - state.log_likelihood
        with np.errstate(invalid="ignore"):
            if self.config.delayed_acceptance:
                la2 = np.where(need, beta * d_like, -np.inf)
            else:
                la2 = np.where(need, beta * (d_prior + d_like) + log_q, -np.inf)
        la2 = np.where(np.isnan(la2), -np.inf, la2)
        acc = need & np.asarray(self._jit_decide(jax.random.split(k2, b), jnp.asarray(la2)))
        acc_j = jnp.asarray(acc)
        pos = self._jit_where(acc_j, prop.position, state.position)
        lp = jnp.where(acc_j, lp_new, state.log_prior)
        ll = np.where(acc, ll_new, state.log_likelihood)
        values = {k: v.copy() for k, v in state.values.items()}
        for k, v in cond.values.items():
            cur = values.setdefault(k, np.full(b, np.nan))
            new = np.full(b, np.nan)
            new[idx] = v
            values[k] = np.where(acc, new, cur)
        self._chain_counts(active, acc)
        st.update(
            proposed=int(active.sum()),
            accepted=int(acc.sum()),
            invalid=int((active & ~ok).sum()),
            predictor_calls=int(idx.size),
            predictor_failures=int(cond.failed.sum()),
            calls_saved=int(ok.sum() - idx.size),
        )
        return ChainState(pos, lp, ll, values), st

    def run_one(
        self, key: jax.Array, index: int, state: ChainState, temperature: float | None = None
    ) -> tuple[ChainState, dict[str, dict[str, int]]]:
        """Sweep number `index` with the key derived from the run's base key."""
        return self.sweep(jax.random.fold_in(key, index), state, temperature)

    def sweep(
        self, key: jax.Array, state: ChainState, temperature: float | None = None
    ) -> tuple[ChainState, dict[str, dict[str, int]]]:
        """One pass of the schedule; returns the new state and this sweep's counts per kernel."""
        t = self.posterior.temperature if temperature is None else float(temperature)
        beta = 1.0 / t
        stats = new_stats()
        b = state.position.spacegroup.shape[0]
        self._chain_proposed = np.zeros(b, np.int32)
        self._chain_accepted = np.zeros(b, np.int32)
        moves = self.schedule()
        keys = jax.random.split(key, max(len(moves), 1))
        done = []
        for k, (kind, site) in zip(keys, moves, strict=False):
            state, st = self.move(k, state, kind, site, beta)
            done.append((kind, st))
        for kind, st in jax.device_get(done):
            add_stats(stats, {kind: st})
        self._chain_proposed, self._chain_accepted = jax.device_get(
            (self._chain_proposed, self._chain_accepted)
        )
        add_stats(self.stats, stats)
        return state, stats

    def _chain_counts(self, active, accepted) -> None:
        self._chain_proposed = self._chain_proposed + active.astype(np.int32)
        self._chain_accepted = self._chain_accepted + accepted.astype(np.int32)

    @property
    def chain_acceptance(self) -> np.ndarray:
        """(B,) fraction of the last sweep's proposals each chain accepted (NaN: none made)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._chain_accepted / self._chain_proposed

    def adapt(self, stats: dict[str, dict[str, int]], iteration: int) -> None:
        """Robbins-Monro step on log step size towards the target acceptance (burn-in only)."""
        rate = self.config.adapt_rate / np.sqrt(iteration + 1.0)
        for kind in ("coords", "lattice"):
            d = stats[kind]
            if d["proposed"]:
                acc = d["accepted"] / d["proposed"]
                step = self.step_sizes[kind] * np.exp(rate * (acc - self.config.target_acceptance))
                hi = 0.5 if kind == "coords" else 5.0
                self.step_sizes[kind] = float(np.clip(step, 1e-4, hi))


def annealing(start: float, end: float, sweeps: int) -> Callable[[int], float]:
    """Temperature per sweep: geometric from `start` to `end` over `sweeps`, then `end`."""
    if start <= 0 or end <= 0:
        raise ValueError("annealing temperatures must be positive")

    def temperature(i: int) -> float:
        if sweeps <= 1 or i >= sweeps - 1:
            return end
        return float(start * (end / start) ** (i / (sweeps - 1)))

    return temperature


def run_sweeps(
    sampler: Sampler,
    state: ChainState,
    key: jax.Array,
    sweeps: int,
    burn_in: int,
    start: int = 0,
    temperature: Callable[[int], float] | None = None,
    on_sweep: Callable[[int, ChainState, dict], None] | None = None,
    progress: bool = True,
    desc: str = "sweeps",
) -> ChainState:
    """Sweeps `start..sweeps-1`; sweep i uses key fold_in(key, i), so a resumed run repeats an
    uninterrupted one. Step sizes adapt while i < burn_in. A tqdm bar shows acceptance per
    kernel and the mean log posterior; `on_sweep(i, state, stats)` runs after each sweep."""
    from tqdm.auto import tqdm

    bar = tqdm(range(start, sweeps), initial=start, total=sweeps, desc=desc, disable=not progress,
               dynamic_ncols=True)
    for i in bar:
        t = temperature(i) if temperature is not None else None
        state, stats = sampler.run_one(key, i, state, t)
        if i < burn_in:
            sampler.adapt(stats, i)
        acc = acceptance(stats)
        post = {k[:4]: f"{v:.2f}" for k, v in acc.items() if np.isfinite(v)}
        finite = state.logdensity[np.isfinite(state.logdensity)]
        post["logp"] = f"{finite.mean():.2f}" if finite.size else "nan"
        if t is not None:
            post["T"] = f"{t:.2f}"
        bar.set_postfix(post, refresh=False)
        if on_sweep is not None:
            on_sweep(i, state, stats)
    bar.close()
    return state
