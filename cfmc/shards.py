"""Many chains on many machines: a run's chains split into shards, one Ray actor per shard.

Each actor builds the posterior once (the prior and the predictors load in the worker) and runs
the sweep engine of `cfmc.sweep` on its chains; the driver keeps the one run workflow of
`cfmc.run` (start, recording, checkpoints, outputs) and sees a `ShardedSampler`, a `Sampler`
whose sweep is done by the shards. The shards sweep in lockstep: every sweep the driver ships
each shard its chains (a few kB), gets them back, and adds the kernel counts, so step-size
adaptation, automatic burn-in, the stop rule and replica exchange see all chains exactly as in
one process. Every move of a chain draws its keys from (seed, sweep, move, chain index) and runs
in a chunk of the same fixed shape (`SweepConfig.chunk`), so the shards give bit for bit the
chains that one process with that chunk gives.

A shard's sweep is a pure function of what the driver sends, so a lost worker is replaced and
the sweep retried (Ray restarts the actor and retries the call; the driver also recreates an
actor Ray gave up on), never dropped. `--workers N` without an address starts a local Ray
cluster of N CPUs; `--ray-address auto` (or `ray://...`, `HOST:PORT`) joins a running one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import numpy as np

from cfmc.kernels import ProposalFn, SiteConstraints
from cfmc.posterior import Posterior
from cfmc.sweep import Sampler, SamplerState, SweepConfig, add_stats, new_stats

INSTALL = "pip install 'cfmc[ray]'"
RETRIES = 3  # per shard and sweep, after Ray's own actor restarts and call retries

# () -> (posterior, block proposal or None): what a worker runs, rebuilt in the worker
Build = Callable[[], tuple[Posterior, ProposalFn | None]]


def require_ray() -> Any:
    """The ray module, or a ValueError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ValueError(f"--workers and --ray-address need Ray: {INSTALL}") from None
    return ray


def check_workers(workers: int | None, ray_address: str | None) -> int | None:
    """Validate `workers` / `ray_address` (Ray must be installed when either is given);
    returns the number of shards (None: one process)."""
    if workers is None and ray_address is None:
        return None
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    require_ray()
    return workers


def split(chains: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous chain ranges [lo, hi) of `shards` shards (as even as possible, none empty)."""
    shards = max(1, min(shards, chains))
    edges = np.linspace(0, chains, shards + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def shard_chunk(chains: int, shards: int, replicas: int, chunk_size: int) -> int:
    """The fixed chunk of a sharded run: one shard's chains (all replicas), at most
    `chunk_size` (a one-process run with this `SweepConfig.chunk` gives the same chains)."""
    return min(math.ceil(chains / max(1, min(shards, chains))) * replicas, chunk_size)


class ShardWorker:
    """One shard in a Ray worker: the posterior and the jitted moves, built once."""

    def __init__(self, build: Build, constraints: SiteConstraints, config: SweepConfig,
                 cache_dir: str | None = None) -> None:
        t0 = time.time()
        if cache_dir:  # the driver's compilation cache: a worker loads what it compiled
            from cfmc.priors.config import enable_compilation_cache

            enable_compilation_cache(cache_dir)
        posterior, block = build()
        self.sampler = Sampler(posterior, constraints, config, block)
        self.startup = time.time() - t0  # reported with the first sweep

    def sweep(self, key: np.ndarray, chains: Any, chain_ids: np.ndarray,
              step_sizes: dict[str, float], replicas: int, temperature: float | None,
              block_fit: Any = None) -> dict[str, Any]:
        """One sweep of these chains; returns them with this sweep's counts and swaps."""
        t0 = time.time()
        n = len(chain_ids)
        state = SamplerState(jax.tree.map(jax.numpy.asarray, chains),
                             np.asarray(chain_ids, np.int32), dict(step_sizes), new_stats(),
                             np.full(n, np.nan),
                             {self.sampler._pair_name(r): [0, 0] for r in range(replicas - 1)},
                             replicas,
                             None if block_fit is None else jax.tree.map(jax.numpy.asarray,
                                                                         block_fit))
        state, stats = self.sampler.sweep(jax.numpy.asarray(key), state, temperature)
        startup, self.startup = self.startup, 0.0
        return {"chains": jax.device_get(state.chains), "acceptance": state.chain_acceptance,
                "stats": stats, "swaps": state.swaps, "seconds": time.time() - t0,
                "startup": startup, "pid": os.getpid()}

    def pid(self) -> int:
        """The worker's process id."""
        return os.getpid()


@dataclasses.dataclass
class ShardTiming:
    """What one shard did (for summary.json)."""

    chains: list[int]  # [lo, hi)
    seconds: float = 0.0  # sweeping, in the worker (the first sweep compiles)
    startup: float = 0.0  # building the posterior in the worker (each start)
    sweeps: int = 0
    retries: int = 0  # sweeps sent again after the worker was lost
    restarts: int = 0  # worker processes replaced
    pid: int | None = None


class ShardedSampler(Sampler):
    """A `Sampler` whose sweeps run in Ray actors, one per shard of the chains; start-up,
    adaptation and the schedule stay with the driver."""

    def __init__(self, pool: ShardPool, posterior: Posterior, constraints: SiteConstraints,
                 config: SweepConfig, block: ProposalFn | None, chains: int) -> None:
        """chains: the run's number of chains (each shard gets a contiguous range)."""
        super().__init__(posterior, constraints, config, block)
        self.pool = pool
        self.ranges = split(chains, pool.workers)
        self.chains_total = chains
        self.timings = [ShardTiming(list(r)) for r in self.ranges]
        # driver time beyond the slowest shard's (shipping, merging; a Ray worker's process
        # start before its first sweep too)
        self.merge_seconds = 0.0
        full = self.constraints
        per_chain = full.species_move.ndim > 1
        self._cons = [SiteConstraints(*(f[lo:hi] for f in full)) if per_chain else full
                      for lo, hi in self.ranges]
        self.actors = [self._actor(s) for s in range(len(self.ranges))]

    def _actor(self, s: int) -> Any:
        return self.pool.actor_class.remote(self.pool.build, self._cons[s], self.config,
                                            jax.config.jax_compilation_cache_dir)

    def sweep(self, key: jax.Array, state: SamplerState, temperature: float | None = None
              ) -> tuple[SamplerState, dict[str, dict[str, int]]]:
        """One sweep of every shard (in parallel); merged as if one process swept them all."""
        ray = self.pool.ray
        t0 = time.time()
        k = state.replicas
        b = len(state.chain_ids) // k
        key = np.asarray(key)
        idx = [np.concatenate([r * b + np.arange(lo, hi) for r in range(k)])
               for lo, hi in self.ranges]
        host = jax.device_get(state.chains)
        block_fit = jax.device_get(state.block_fit)  # the pool proposal's fit, if any

        def submit(s: int) -> Any:
            part = jax.tree.map(lambda x: np.asarray(x)[idx[s]], host)
            return self.actors[s].sweep.remote(key, part, state.chain_ids[idx[s]],
                                               state.step_sizes, k, temperature, block_fit)

        futures = [submit(s) for s in range(len(self.ranges))]
        results = []
        for s, fut in enumerate(futures):
            for attempt in range(RETRIES + 1):
                try:
                    results.append(ray.get(fut))
                    break
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
                    if attempt == RETRIES:
                        raise
                    self.timings[s].retries += 1
                    with contextlib.suppress(Exception):
                        ray.kill(self.actors[s], no_restart=True)
                    self.actors[s] = self._actor(s)
                    fut = submit(s)
        order = np.argsort(np.concatenate(idx), kind="stable")
        chains = jax.tree.map(lambda *xs: np.concatenate(xs)[order],
                              *[r["chains"] for r in results])
        acceptance = np.concatenate([r["acceptance"] for r in results])[order]
        stats = new_stats()
        swaps = {name: list(v) for name, v in state.swaps.items()}
        for s, r in enumerate(results):
            add_stats(stats, r["stats"])
            for name, (p, a) in r["swaps"].items():
                swaps[name][0] += p
                swaps[name][1] += a
            t = self.timings[s]
            t.seconds += r["seconds"]
            t.startup += r["startup"]
            t.sweeps += 1
            if t.pid is not None and r["pid"] != t.pid:
                t.restarts += 1
            t.pid = r["pid"]
        total = add_stats({kk: dict(v) for kk, v in state.stats.items()}, stats)
        state = state._replace(chains=jax.tree.map(jax.numpy.asarray, chains), stats=total,
                               chain_acceptance=acceptance, swaps=swaps)
        busy = max(r["seconds"] + r["startup"] for r in results)
        self.merge_seconds += max(0.0, time.time() - t0 - busy)
        return state, stats

    def summary(self) -> dict[str, Any]:
        """Per-shard timings and the driver's merge overhead, for summary.json."""
        return {"workers": len(self.ranges), "address": self.pool.address,
                "chunk": self.config.chunk, "merge_seconds": self.merge_seconds,
                "shards": [dataclasses.asdict(t) for t in self.timings]}

    def close(self) -> None:
        """Stop the shard actors."""
        for a in self.actors:
            with contextlib.suppress(Exception):
                self.pool.ray.kill(a, no_restart=True)
        self.actors = []


@dataclasses.dataclass
class ShardPool:
    """A connection to a Ray cluster and how its workers build the posterior."""

    ray: Any
    workers: int
    build: Build
    address: str | None
    actor_class: Any

    def sampler(self, posterior: Posterior, constraints: SiteConstraints, config: SweepConfig,
                block: ProposalFn | None, chains: int) -> ShardedSampler:
        """A sampler over `chains` chains whose sweeps run in this pool's workers; the chunk
        is fixed (`shard_chunk`) unless `config.chunk` is set."""
        if config.chunk is None:
            config = dataclasses.replace(config, chunk=shard_chunk(
                chains, self.workers, len(config.ladder), config.chunk_size))
        return ShardedSampler(self, posterior, constraints, config, block, chains)


def cluster_cpus(ray: Any) -> int:
    """CPUs of the connected cluster (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


@contextlib.contextmanager
def ray_session(workers: int | None, ray_address: str | None) -> Iterator[Any]:
    """The ray module, connected: without an address a local Ray cluster of `workers` CPUs is
    started (and stopped after); a Ray already initialised in this process is used as it is."""
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        if ray_address is None:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        else:
            ray.init(address=ray_address, log_to_driver=False, configure_logging=False)
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


@contextlib.contextmanager
def shard_pool(workers: int | None, ray_address: str | None, build: Build
               ) -> Iterator[ShardPool | None]:
    """A pool of `workers` shards (None: one per CPU of the cluster at `ray_address`), or None
    when neither is given (see `ray_session`)."""
    if workers is None and ray_address is None:
        yield None
        return
    with ray_session(workers, ray_address) as ray:
        actor_class = ray.remote(num_cpus=1, max_restarts=RETRIES,
                                 max_task_retries=RETRIES)(ShardWorker)
        yield ShardPool(ray, workers or cluster_cpus(ray), build, ray_address, actor_class)


class TaskTiming(NamedTuple):
    """One task of `run_tasks`: where and how long it ran."""

    task: int
    seconds: float
    pid: int
    retries: int


def run_tasks(ray: Any, workers: int, make_worker: Callable[[], Any], tasks: list[Any],
              on_done: Callable[[int, Any], None]) -> list[TaskTiming]:
    """Run `tasks` over `workers` Ray actors (`make_worker()` creates one; its `run(task)`
    returns (result, seconds, pid)), as many in flight as there are actors; `on_done(i, result)`
    is called in the driver as each finishes (in any order), so finished work is saved while
    the rest runs. A task whose actor died is sent again to a fresh actor, never dropped."""
    actors = [make_worker() for _ in range(min(workers, len(tasks)))]
    todo = list(range(len(tasks)))[::-1]
    retries = [0] * len(tasks)
    flying: dict[Any, tuple[int, int]] = {}  # future -> (task, actor)
    timings: list[TaskTiming] = []

    def submit(actor: int) -> None:
        if todo:
            i = todo.pop()
            flying[actors[actor].run.remote(tasks[i])] = (i, actor)

    for a in range(len(actors)):
        submit(a)
    while flying:
        [fut], _ = ray.wait(list(flying), num_returns=1)
        i, a = flying.pop(fut)
        try:
            result, seconds, pid = ray.get(fut)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
            retries[i] += 1
            if retries[i] > RETRIES:
                raise
            with contextlib.suppress(Exception):
                ray.kill(actors[a], no_restart=True)
            actors[a] = make_worker()
            todo.append(i)
            submit(a)
            continue
        on_done(i, result)
        timings.append(TaskTiming(i, seconds, pid, retries[i]))
        submit(a)
    for actor in actors:
        with contextlib.suppress(Exception):
            ray.kill(actor, no_restart=True)
    return sorted(timings)
