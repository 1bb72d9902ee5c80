"""The sweep engine: many chains, Metropolis-within-Gibbs over sites.

A sweep visits the sites in sequence order and applies the chosen kernels at each (element
substitution, coordinate shift), then the lattice move. Every move is the one Metropolis-Hastings
step of `cfmc.kernels.build_kernel_stages`, vmapped over the chains (in chunks) and jitted: one
program without conditioners; with host-side conditioners two (propose, then accept) around one
batched host call of the conditioners per move, so no program holds a host callback and the
persistent compilation cache keeps them all. Each chain's
keys derive from (sweep key, move, chain index) alone. Everything that changes during a run
(chains, step sizes, counts) lives in the `SamplerState` NamedTuple. On a machine with several
accelerators the chains of every move are split over the local devices (`SweepConfig.devices`,
`jax.shard_map`); each device runs the chunks the one-device program would.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cfmc.arrays import CrystalArrays
from cfmc.kernels import (
    CrystalState,
    ProposalFn,
    SiteConstraints,
    Target,
    build_isir_stages,
    build_kernel_stages,
    compose_kernel,
    conditioned,
    coords,
    host_answer,
    lattice,
    species,
)
from cfmc.kernels.crystal_pool import CrystalPoolProposal
from cfmc.kernels.population import PopulationProposal
from cfmc.posterior import Posterior, restore_sites, trim_sites

KERNELS = ("block", "species", "coords", "lattice")
STAT_FIELDS = ("proposed", "accepted", "invalid", "predictor_calls", "predictor_failures",
               "calls_saved")


EVERY_SITE = 1 << 30  # the "site" of a move that visits every site (`SweepConfig.species_scan`)


@dataclasses.dataclass
class SweepConfig:
    """Which kernels run and how they are tuned.

    species_proposal: 'uniform' or 'prior' (the prior's conditional, Hastings-corrected).
    Step sizes adapt during burn-in towards target_acceptance, then stay frozen.
    """

    species: bool = True
    coords: bool = True
    lattice: bool = False
    block: bool = False  # one prior block move per sweep (needs a block proposal)
    # proposals per block move: 1 is Metropolis-Hastings, more run i-SIR (`kernels.isir`), which
    # moves to one of them (or stays) in proportion to its importance weight
    block_tries: int = 1
    # replica exchange: a copy of every chain at each of these temperatures (multiples of the
    # posterior's), neighbours swapped after every sweep; (1.0,) is plain MCMC
    ladder: tuple[float, ...] = (1.0,)
    species_proposal: str = "uniform"
    # with the prior proposal and no host conditioners: a sweep's substitutions in one step,
    # last site first, from one evaluation of the conditionals (`kernels.species.prior_scan`)
    species_scan: bool = True
    delayed_acceptance: bool = False
    coord_step: float = 0.1  # von Mises random walk, fractional units
    lattice_step: float = 0.2  # Angstrom (angles: ANGLE_SCALE degrees per unit)
    target_acceptance: float = 0.3
    adapt_rate: float = 1.0
    chunk_size: int = 128  # chains evaluated together inside one jitted move
    # a fixed chunk: every chain runs in a vectorised chunk of exactly this many (the batch
    # padded with copies), so a chain's floats do not depend on how the chains are batched,
    # chunked or sharded (None: min(chunk_size, chains), or all chains with conditioners)
    chunk: int | None = None
    # local JAX devices the chains are split over in every move (None: all of them)
    devices: int | None = None

    def __post_init__(self) -> None:
        if self.species_proposal not in ("uniform", "prior"):
            raise ValueError(
                f"species_proposal must be 'uniform' or 'prior', got '{self.species_proposal}'"
            )
        if int(self.block_tries) < 1:
            raise ValueError(f"block_tries must be at least 1, got {self.block_tries}")
        if not 0 < self.target_acceptance < 1:
            raise ValueError(f"target_acceptance must be in (0, 1), got {self.target_acceptance}")
        ladder = tuple(float(t) for t in self.ladder)
        if not ladder or ladder[0] != 1.0 or np.any(np.diff(ladder) <= 0):
            raise ValueError(f"ladder must start at 1 and increase, got {self.ladder}")
        if self.chunk is not None and self.chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {self.chunk}")
        if self.devices is not None and not 1 <= self.devices <= jax.local_device_count():
            raise ValueError(f"devices must be 1..{jax.local_device_count()} (the local JAX "
                             f"devices), got {self.devices}")
        self.ladder = ladder


class SamplerState(NamedTuple):
    """All chains (a batched `CrystalState`), the step sizes, and the kernel counts so far."""

    chains: CrystalState  # replica after replica: K * B chains, the first B at temperature 1
    chain_ids: np.ndarray  # (K * B,) global chain index: each chain's keys derive from it
    step_sizes: dict[str, float]
    stats: dict[str, dict[str, int]]  # counts per kernel since the start of the run
    chain_acceptance: np.ndarray  # (K * B,) fraction of the last sweep's proposals accepted
    swaps: dict[str, list[int]]  # replica exchange: (proposed, accepted) per neighbour pair
    replicas: int = 1
    block_fit: Any = None  # the pool block proposal's fit (refitted once, at the end of burn-in)

    def cold(self) -> SamplerState:
        """The chains at temperature 1 (what a run records); the state itself without replicas."""
        if self.replicas == 1:
            return self
        b = len(self.chain_ids) // self.replicas
        return self._replace(chains=jax.tree.map(lambda x: x[:b], self.chains),
                             chain_ids=self.chain_ids[:b],
                             chain_acceptance=self.chain_acceptance[:b], replicas=1)

    @property
    def position(self) -> CrystalArrays:
        return self.chains.position

    @property
    def log_prior(self) -> np.ndarray:
        """(B,) prior part the chains target (lattice term left out if marginal)."""
        return np.asarray(self.chains.log_prior)

    @property
    def log_likelihood(self) -> np.ndarray:
        """(B,) weighted conditioner sum (0 without conditioners)."""
        return np.asarray(self.chains.log_likelihood)

    @property
    def values(self) -> dict[str, np.ndarray]:
        """Predicted properties and `loglik_<term>` of the current crystals."""
        return {k: np.asarray(v) for k, v in self.chains.values.items()}

    @property
    def logdensity(self) -> np.ndarray:
        """Untempered log posterior (up to a constant)."""
        return np.asarray(self.chains.logdensity, np.float64)


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


class Sampler:
    """Runs sweeps of the configured kernels over a batch of chains of one posterior."""

    def __init__(
        self,
        posterior: Posterior,
        constraints: SiteConstraints,
        config: SweepConfig | None = None,
        block: ProposalFn | PopulationProposal | CrystalPoolProposal | None = None,
    ) -> None:
        """block: the proposal of the block move (`kernels.prior_block_proposal`, or
        `kernels.population_proposal`, fitted to a weighted pool of fills, or
        `kernels.crystal_pool_proposal` in free design), run first in every sweep when
        `config.block`."""
        self.posterior = posterior
        self.config = config or SweepConfig()
        if self.config.block and block is None:
            raise ValueError("config.block needs a block proposal (kernels.prior_block_proposal)")
        self.constraints = SiteConstraints(*(np.asarray(f) for f in constraints))
        if self.config.species_proposal == "prior" and posterior.prior.species_log_probs is None:
            raise ValueError("the prior-informed species proposal needs species_log_probs")
        self._cons_cache: tuple[int, SiteConstraints] | None = None
        proposals = {
            "species": (
                species.uniform_proposal()
                if self.config.species_proposal == "uniform"
                else species.prior_proposal(posterior.prior.species_log_probs)
            ),
            "coords": coords.vonmises_proposal(),
            "lattice": lattice.gaussian_proposal(),
        }
        if block is not None:
            proposals["block"] = block

        def prior_one(position: CrystalArrays) -> jax.Array:
            return posterior.prior_part(jax.tree.map(lambda x: x[None], position))[0]

        host = None
        if posterior.has_conditioners:
            def host(arrays: CrystalArrays):
                return conditioned(posterior.conditioner_logdensity(arrays))
        self.target = Target(prior_one, host)
        cond = host is not None
        da = self.config.delayed_acceptance
        stages = {k: build_kernel_stages(p, da, cond)
                  for k, p in proposals.items() if k != "block" or callable(p)}
        fitted = (PopulationProposal, CrystalPoolProposal)
        self.population = block if isinstance(block, fitted) else None
        tries = int(self.config.block_tries)
        if self.population is not None:  # always i-SIR (its proposals depend on its fit)
            stages["block"] = build_isir_stages(self.population.draws, tries, cond)
        elif block is not None and tries > 1:
            draws = getattr(block, "draws", None)
            if draws is None:
                raise ValueError("block_tries > 1 needs a block proposal with `draws` "
                                 "(kernels.prior_block_proposal)")
            stages["block"] = build_isir_stages(draws, tries, cond)
        self.stages = stages
        if cond:  # two callback-free programs per move around one batched host call
            self._moves = {k: self._make_split_move(st) for k, st in stages.items()}
        else:  # one program per move
            self._moves = {k: jax.jit(self._make_step(compose_kernel(lambda c, st=st: st)))
                           for k, st in stages.items()}
        self.scan = self.config.species_scan and self.config.species_proposal == "prior" and (
            not cond)
        if self.scan:
            self._moves["species"] = jax.jit(self._make_step(
                species.prior_scan(posterior.prior.species_log_probs)))

    # ------------------------------------------------------------------ schedule

    def _batched_constraints(self, batch: int) -> SiteConstraints:
        if self._cons_cache is not None and self._cons_cache[0] == batch:
            return self._cons_cache[1]
        c = self.constraints
        k = len(self.config.ladder)
        if c.species_move.ndim == 1:
            c = c.broadcast(batch)
        elif k > 1 and c.species_move.shape[0] * k == batch:  # per chain: every replica alike
            c = SiteConstraints(*(np.concatenate([f] * k) for f in c))
        if c.species_move.shape[0] != batch:
            raise ValueError(f"constraints are for {c.species_move.shape[0]} chains, not {batch}")
        self._cons_cache = (batch, SiteConstraints(*(jnp.asarray(f) for f in c)))
        return self._cons_cache[1]

    def _cut_constraints(self, cons: SiteConstraints, n: int) -> SiteConstraints:
        """Batched constraints of the first `n` site slots (kept for the last cut used)."""
        if n == cons.species_move.shape[-1]:
            return cons
        cached = getattr(self, "_cut_cache", None)
        if cached is not None and cached[0] is cons and cached[1] == n:
            return cached[2]
        cut = cons._replace(species_move=cons.species_move[..., :n],
                            allowed=cons.allowed[..., :n, :], tie=cons.tie[..., :n],
                            coord_move=cons.coord_move[..., :n, :])
        self._cut_cache = (cons, n, cut)
        return cut

    def schedule(self, mask: np.ndarray | None = None) -> list[tuple[str, int]]:
        """The moves of one sweep, (kernel, site) in sequence order; sites with nothing to move
        in any chain (or, given the chains' site `mask`, real in none) are skipped; the block
        move comes first, the lattice move last; with `species_scan` one ("species",
        EVERY_SITE) move replaces the per-site substitutions."""
        c = self.constraints
        sp = c.species_move.reshape(-1, c.species_move.shape[-1]).any(0)
        co = c.coord_move.reshape(-1, *c.coord_move.shape[-2:]).any(-1).any(0)
        if mask is not None:
            real = np.asarray(mask).reshape(-1, sp.shape[0]).any(0)
            sp, co = sp & real, co & real
        moves = [("block", 0)] if self.config.block else []
        if self.scan and self.config.species and sp.any():
            moves.append(("species", EVERY_SITE))
        for i in range(sp.shape[0]):
            if self.config.species and sp[i] and not self.scan:
                moves.append(("species", i))
            if self.config.coords and co[i]:
                moves.append(("coords", i))
        if self.config.lattice and np.any(c.lattice_move):
            moves.append(("lattice", 0))
        return moves

    # ------------------------------------------------------------------ the jitted move

    def _chunked(self, fn: Callable, move_key, chain_ids, *per_chain):
        """`fn(key, *chain_args)` over the chains in chunks of one fixed shape, the chains split
        over the local devices first (`split_over_devices`); each chain's key is
        fold_in(move_key, its id)."""

        def local(move_key, chain_ids, *per_chain):
            b = chain_ids.shape[0]
            keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(move_key, chain_ids)
            # chunks of chains: one huge batch runs slower per chain on CPU (cache misses); with
            # conditioners one chunk unless fixed (the host predicts every chunk in one call)
            fixed = self.config.chunk
            size = fixed or (b if self.target.conditioners is not None
                             else min(self.config.chunk_size, b))
            # every chunk the same shape (no remainder of another shape): the batch is padded
            # with copies of its first chain, whose results are dropped
            pad = -b % size
            args = (keys, *per_chain)
            if pad:
                args = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[:1], pad, 0)]),
                                    args)
            out = jax.lax.map(lambda a: fn(*a), args, batch_size=size)
            return jax.tree.map(lambda x: x[:b], out) if pad else out

        return split_over_devices(local, self.config.devices)(move_key, chain_ids, *per_chain)

    def _count(self, info) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]:
        ok = info.is_active & info.is_valid
        counts = {
            "proposed": info.is_active.sum(),
            "accepted": info.is_accepted.sum(),
            "invalid": (info.is_active & ~info.is_valid).sum(),
            "predictor_calls": info.is_evaluated.sum(),
            "predictor_failures": (info.is_evaluated & info.is_failed).sum(),
            "calls_saved": ((ok & ~info.is_evaluated).sum() if self.target.conditioners
                            is not None else jnp.int32(0)),
        }
        # per chain (a scan's info has one entry per site: summed)
        return counts, *(jnp.sum(x.reshape(x.shape[0], -1), axis=1)
                         for x in (info.is_active, info.is_accepted))

    def _make_step(self, kernel: Callable) -> Callable:
        """One move of every chain as one program (no conditioners)."""
        target = self.target

        def step(move_key, chain_ids, chains, constraints, site, step_size, betas):
            def one(key, chain, cons, beta):
                return kernel(key, chain, target, cons, site, step_size, beta)

            new, info = self._chunked(one, move_key, chain_ids, chains, constraints, betas)
            return (new, *self._count(info))

        return step

    def _make_split_move(self, stages) -> Callable:
        """One move of every chain with host conditioners: a jitted program proposes (prior
        terms, stage one of delayed acceptance), the host evaluates the conditioners on the
        proposals that need them in one batched call, a second jitted program accepts. Neither
        program has a host callback, so both are kept by the persistent compilation cache."""
        prior, host = self.target.prior, self.target.conditioners

        @jax.jit
        def propose(move_key, chain_ids, chains, constraints, site, step_size, betas):
            def one(key, chain, cons, beta):
                return stages.propose(key, chain, prior, cons, site, step_size, beta)

            return self._chunked(one, move_key, chain_ids, chains, constraints, betas)

        @jax.jit
        def finish(chains, pending, answer, betas):
            new, info = jax.vmap(stages.accept)(chains, pending, answer, betas)
            return (new, *self._count(info))

        accept_chunk = jax.jit(jax.vmap(stages.accept))

        devices = self.config.devices or jax.local_device_count()

        def move(move_key, chain_ids, chains, constraints, site, step_size, betas):
            # with a fixed chunk, one call per `devices` chunks: every device runs one chunk
            b = chain_ids.shape[0]
            size = None if self.config.chunk is None else self.config.chunk * devices
            if size is None or size == b:
                pending, ask = propose(move_key, chain_ids, chains, constraints, site,
                                       step_size, betas)
                answer = host_answer(host, tuple(chains.values), ask)
                return finish(chains, pending, answer, betas)
            # a fixed chunk: the programs run on one chunk at a time (the batch padded on the
            # host with copies of its first chain), so every process with that chunk, a Ray
            # shard's worker too, runs (and loads from the cache) the same two programs
            pad = -b % size

            def padded(tree):
                tree = jax.device_get(tree)
                return jax.tree.map(lambda x: np.concatenate([x, np.repeat(x[:1], pad, 0)]),
                                    tree) if pad else tree

            args = padded((chain_ids, chains, constraints, betas))
            cuts = [slice(lo, lo + size) for lo in range(0, b + pad, size)]
            parts = [jax.tree.map(lambda x, c=c: x[c], args) for c in cuts]
            proposed = [propose(move_key, ids, ch, cons, site, step_size, bt)
                        for ids, ch, cons, bt in parts]
            asks = jax.device_get([ask for _, ask in proposed])
            ask = jax.tree.map(lambda *x: np.concatenate(x)[:b], *asks)
            answer = padded(host_answer(host, tuple(chains.values), ask))
            done = [accept_chunk(ch, pend, jax.tree.map(lambda x, c=c: x[c], answer), bt)
                    for (_, ch, _, bt), (pend, _), c in zip(parts, proposed, cuts, strict=True)]
            new, info = jax.tree.map(lambda *x: np.concatenate(x)[:b], *jax.device_get(done))
            return (jax.tree.map(jnp.asarray, new), *self._count(info))

        return move

    # ------------------------------------------------------------------ chains

    def init(self, positions: CrystalArrays, chain_ids: np.ndarray | None = None,
             replicated: bool = False) -> SamplerState:
        """Evaluate the posterior at the initial crystals; every one must have finite density.
        With a temperature ladder every replica starts from the same crystals, unless the
        positions already hold every replica (`replicated`, e.g. from a checkpoint)."""
        pos = CrystalArrays(*(jnp.asarray(f) for f in positions))
        b = int(pos.spacegroup.shape[0])
        lp = np.asarray(self.posterior.prior_logdensity(pos), np.float32)
        if self.target.conditioners is not None:
            cond = self.target.conditioners(CrystalArrays(*(np.asarray(f) for f in positions)))
            ll, values = np.asarray(cond.logp, np.float32), cond.values
        else:
            ll, values = np.zeros(b, np.float32), {}
        bad = ~np.isfinite(lp) | ~np.isfinite(ll)
        if bad.any():
            raise ValueError(
                f"{int(bad.sum())} of {bad.size} initial crystals have zero posterior density "
                f"(first: chain {int(np.flatnonzero(bad)[0])}); start from valid crystals"
            )
        chains = CrystalState(pos, jnp.asarray(lp + ll), jnp.asarray(lp), jnp.asarray(ll),
                              {k: jnp.asarray(v, jnp.float32) for k, v in values.items()})
        k = len(self.config.ladder)
        if replicated:
            b //= k
        ids = np.arange(b) if chain_ids is None else np.asarray(chain_ids)
        if k > 1:  # chain ids replica after replica
            if not replicated:
                chains = jax.tree.map(lambda x: jnp.concatenate([x] * k), chains)
            ids = np.concatenate([ids + r * b for r in range(k)])
        steps = {"coords": self.config.coord_step, "lattice": self.config.lattice_step}
        pairs = {self._pair_name(r): [0, 0] for r in range(k - 1)}
        fit = None
        if self.population is not None:  # the proposal's own pool, else the starting crystals
            fit = self.population.initial
            if fit is None:
                fit = self.population.fit(CrystalArrays(*(f[:b] for f in chains.position)))
        return SamplerState(chains, ids.astype(np.int32), steps, new_stats(),
                            np.full(b * k, np.nan), pairs, k, fit)

    def _pair_name(self, r: int) -> str:
        t = self.config.ladder
        return f"T{t[r]:g}<->T{t[r + 1]:g}"

    def run_one(
        self, key: jax.Array, index: int, state: SamplerState, temperature: float | None = None
    ) -> tuple[SamplerState, dict[str, dict[str, int]]]:
        """Sweep number `index` with the key derived from the run's base key."""
        return self.sweep(jax.random.fold_in(key, index), state, temperature)

    def sweep(
        self, key: jax.Array, state: SamplerState, temperature: float | None = None
    ) -> tuple[SamplerState, dict[str, dict[str, int]]]:
        """One pass of the schedule; returns the new state and this sweep's counts per kernel."""
        t = self.posterior.temperature if temperature is None else float(temperature)
        b = len(state.chain_ids)
        per_replica = b // state.replicas
        beta = jnp.asarray(np.repeat([1.0 / (t * r) for r in self.config.ladder], per_replica),
                           jnp.float32)
        chains = state.chains
        cons = self._batched_constraints(b)
        ids = jnp.asarray(state.chain_ids)
        done: list = []
        counts_per_chain = [jnp.zeros(b, jnp.int32), jnp.zeros(b, jnp.int32)]

        def apply(moves: list[tuple[str, int]], chains: CrystalState,
                  cons: SiteConstraints = cons) -> CrystalState:
            for kind, site in moves:
                step = (state.block_fit if kind == "block" and state.block_fit is not None
                        else jnp.float32(state.step_sizes.get(kind, 0.0)))
                chains, counts, active, acc = self._moves[kind](
                    move_key(key, kind, site), ids, chains, cons, jnp.int32(site), step, beta
                )
                done.append((kind, counts))
                counts_per_chain[0] = counts_per_chain[0] + active
                counts_per_chain[1] = counts_per_chain[1] + acc
            return chains

        first = 0
        if self.config.block:  # block moves may add sites: the site moves follow the new masks
            chains = apply(self.schedule()[:1], chains)
            first = 1
        mask = np.asarray(chains.position.mask)
        # site moves see the arrays cut after the last real site (same densities, fewer tokens)
        n = self.posterior.site_slots(mask, self.constraints.differ)
        cut = chains._replace(position=trim_sites(chains.position, n))
        cut = apply(self.schedule(mask)[first:], cut, self._cut_constraints(cons, n))
        chains = cut._replace(position=restore_sites(cut.position, chains.position))
        proposed, accepted = counts_per_chain
        # device arrays are read back once per sweep, so moves are dispatched without waiting
        done, proposed, accepted = jax.device_get((done, proposed, accepted))
        stats = new_stats()
        for kind, counts in done:
            add_stats(stats, {kind: counts})
        total = add_stats({k: dict(v) for k, v in state.stats.items()}, stats)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = accepted / proposed
        state = state._replace(chains=chains, stats=total, chain_acceptance=rate)
        if state.replicas > 1:
            state = self._exchange(jax.random.fold_in(key, 1 << 20), state, t)
        return state, stats

    def _exchange(self, key: jax.Array, state: SamplerState, temperature: float
                  ) -> SamplerState:
        """Replica exchange between neighbours (pairs (0,1), (2,3), ... or (1,2), (3,4), ..., one
        of the two at random): chain j of replicas r and r+1 swap crystals with probability
        min(1, exp((beta_r - beta_r+1) (log pi(x_r+1) - log pi(x_r))))."""
        k = state.replicas
        b = len(state.chain_ids) // k
        betas = np.array([1.0 / (temperature * r) for r in self.config.ladder])
        k_first, k_u = jax.random.split(key)
        first = int(jax.random.bernoulli(k_first)) if k > 2 else 0
        ld = np.asarray(state.chains.logdensity, np.float64).reshape(k, b)
        # one uniform per chain from its own id: a chain's swaps do not depend on the batch
        ids = jnp.asarray(np.asarray(state.chain_ids).reshape(k, b))
        u = np.asarray(jax.vmap(jax.vmap(
            lambda i: jax.random.uniform(jax.random.fold_in(k_u, i))))(ids), np.float64)
        order = np.arange(k * b)
        swaps = {name: list(v) for name, v in state.swaps.items()}
        for r in range(int(first), k - 1, 2):
            with np.errstate(invalid="ignore"):
                log_a = (betas[r] - betas[r + 1]) * (ld[r + 1] - ld[r])
            do = np.log(u[r]) < np.nan_to_num(log_a, nan=-np.inf)
            lo, hi = r * b + np.flatnonzero(do), (r + 1) * b + np.flatnonzero(do)
            order[lo], order[hi] = hi, lo
            counts = swaps[self._pair_name(r)]
            counts[0] += b
            counts[1] += int(do.sum())
        idx = jnp.asarray(order)
        return state._replace(chains=jax.tree.map(lambda x: x[idx], state.chains), swaps=swaps)

    def end_burn_in(self, state: SamplerState) -> SamplerState:
        """The state for the recorded sweeps: the pool block proposal refitted to its pool and
        the chains at temperature 1 where it refits (`kernels.refit`), else `state` itself."""
        refit = getattr(self.population, "refit", None)
        if refit is None or state.block_fit is None:
            return state
        return state._replace(block_fit=refit(state.block_fit, state.cold().position))

    def adapt(self, state: SamplerState, stats: dict[str, dict[str, int]], iteration: int
              ) -> SamplerState:
        """Robbins-Monro step on log step size towards the target acceptance (burn-in only)."""
        rate = self.config.adapt_rate / np.sqrt(iteration + 1.0)
        steps = dict(state.step_sizes)
        for kind in ("coords", "lattice"):
            d = stats[kind]
            if d["proposed"]:
                acc = d["accepted"] / d["proposed"]
                step = steps[kind] * np.exp(rate * (acc - self.config.target_acceptance))
                hi = 0.5 if kind == "coords" else 5.0
                steps[kind] = float(np.clip(step, 1e-4, hi))
        return state._replace(step_sizes=steps)


def split_over_devices(local: Callable, devices: int | None) -> Callable:
    """`local(move_key, chain_ids, *per_chain)` (per-chain arguments and results with a leading
    chain axis; anything else closed over) with the chains split over `devices` local devices
    (None: all), each device running `local` on its share (the batch padded with copies of its
    first chain, whose results are dropped); with one device, `local` itself. Used inside jit."""
    n = jax.local_device_count() if devices is None else devices
    if n == 1:
        return local
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.array(jax.local_devices()[:n]), ("chains",))

    def split(move_key, chain_ids, *per_chain):
        b = chain_ids.shape[0]
        pad = -b % n
        args = (chain_ids, *per_chain)
        if pad:
            args = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[:1], pad, 0)]), args)
        mapped = jax.shard_map(local, mesh=mesh, check_vma=False,
                               in_specs=(P(),) + (P("chains"),) * len(args),
                               out_specs=P("chains"))
        out = mapped(move_key, *args)
        return jax.tree.map(lambda x: x[:b], out) if pad else out

    return split


def move_key(key: jax.Array, kind: str, site: int) -> jax.Array:
    """The key of move (kind, site) of a sweep: the same whichever moves a batch skips (a
    batch with no chain that has a site skips its moves)."""
    return jax.random.fold_in(jax.random.fold_in(key, zlib.crc32(kind.encode()) & 0x7FFFFFFF),
                              site)


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
    state: SamplerState,
    key: jax.Array,
    sweeps: int,
    burn_in: int | Callable[[], int],
    start: int = 0,
    temperature: Callable[[int], float] | None = None,
    on_sweep: Callable[[int, SamplerState, dict], Mapping[str, Any] | None] | None = None,
    progress: bool = True,
    desc: str = "sweeps",
) -> SamplerState:
    """Sweeps `start..sweeps-1`; sweep i uses key fold_in(key, i), so a resumed run repeats an
    uninterrupted one. Step sizes adapt while i < burn_in (a number, or a function giving the
    current one when burn-in is decided as the run goes). A tqdm bar shows acceptance per kernel
    and the mean log posterior; `on_sweep(i, state, stats)` runs after each sweep and may return
    more fields for the bar, `stop: True` to end the run there, and `state` to go on from (a
    state changed at the end of burn-in, `Sampler.end_burn_in`)."""
    from tqdm.auto import tqdm

    bar = tqdm(range(start, sweeps), initial=start, total=sweeps, desc=desc, disable=not progress,
               dynamic_ncols=True)
    for i in bar:
        t = temperature(i) if temperature is not None else None
        state, stats = sampler.run_one(key, i, state, t)
        if i < (burn_in() if callable(burn_in) else burn_in):
            state = sampler.adapt(state, stats, i)
        acc = acceptance(stats)
        post = {k[:4]: f"{v:.2f}" for k, v in acc.items() if np.isfinite(v)}
        finite = state.logdensity[np.isfinite(state.logdensity)]
        post["logp"] = f"{finite.mean():.2f}" if finite.size else "nan"
        if t is not None:
            post["T"] = f"{t:.2f}"
        extra = dict(on_sweep(i, state, stats) or {}) if on_sweep is not None else {}
        stop = extra.pop("stop", False)
        state = extra.pop("state", state)
        bar.set_postfix({**post, **extra}, refresh=False)
        if stop:
            break
    bar.close()
    return state
