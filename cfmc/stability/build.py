"""Worker processes of the screen: the reference hull of many chemical systems, and the
candidates' relaxations, computed at once.

A screen needs the hull of every candidate's system; generating and relaxing the competing
phases of a new system takes seconds to minutes, systems are independent, and so are the
candidates' relaxations. They run in a process pool of a `spawn` context (CHGNet's torch, and JAX
where a run has it, are already started in the calling process, so it is never forked). Hull
entries go first (the training mix's phases, then the generated ones, slowest first), then the
relaxations. Each worker writes hull entries to the on-disk cache itself
(`ReferenceHull.system_entries`, safe under concurrency); the caller reads them from disk.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed

from pymatgen.core import Structure

from cfmc.stability.hull import ReferenceHull

# relative cost of one entry of each kind (generated phases are relaxed, known ones are single
# points), used only to start the slow ones first
_COST = {"known": 1, "prototypes": 4, "metals": 6, "oxidation": 6, "peroxide": 3, "ternary": 10,
         "ternary_oxidation": 10, "intermetallic": 10}


def default_workers() -> int:
    """min(2, CPUs this process may use)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(2, n))


def missing_entries(hull: ReferenceHull, systems: Iterable[str]) -> list[tuple[str, str]]:
    """The (subsystem, kind) entries the hulls of `systems` read that are not cached yet, each
    once: training-mix phases first, then generated ones, the costliest first."""
    seen: dict[tuple[str, str], None] = {}
    for system in sorted(set(systems)):
        for key in hull.entry_keys(system):
            if key not in seen and not hull.is_cached(*key):
                seen[key] = None
    return sorted(seen, key=lambda k: (k[1] != "known", -_COST.get(k[1], 1) * len(k[0]), k))


# ---- what a worker runs --------------------------------------------------------------------------

_WORKER_HULL: dict = {}


def _init_worker(threads: int, parent: int | None = None) -> None:
    import warnings

    if parent is not None:
        _exit_with_parent(parent)
    os.environ.setdefault("CFMC_TORCH_THREADS", str(threads))
    # CHGNet's and pymatgen's routine warnings, once per worker, would bury the progress bars
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(chgnet|pymatgen|torch)")
    warnings.filterwarnings("ignore", message="No Pauling electronegativity")


def _exit_with_parent(parent: int, every: float = 2.0) -> None:
    """End this worker once `parent` (the process that started the pool) is gone: a worker whose
    parent was killed would otherwise wait on its task queue forever, holding the potential in
    memory. (The cache entry it may be writing is safe: files appear whole or not at all.)"""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _hull_entry(options: dict, system: str, kind: str) -> str:
    """Compute one hull cache entry; '' on success, else the error."""
    try:
        key = repr(sorted(options.items()))
        if key not in _WORKER_HULL:
            _WORKER_HULL[key] = ReferenceHull(**options)
        _WORKER_HULL[key].system_entries(system, kind)
        return ""
    except Exception as e:  # reported; the caller computes the entry again on first use
        return f"{type(e).__name__}: {e}"[:300]


def relax_task(structure: Structure, relax_kw: dict) -> tuple[object, float]:
    """(RelaxResult, seconds) of one candidate, or (the error as text, seconds)."""
    from cfmc.stability.relax import relax

    t = time.perf_counter()
    try:
        return relax(structure, **relax_kw), time.perf_counter() - t
    except Exception as e:  # the candidate's failure, recorded with its reason
        return f"relaxation failed: {type(e).__name__}: {e}", time.perf_counter() - t


# ---- the pool ------------------------------------------------------------------------------------

class Workers:
    """A process pool of `n` spawned workers (`n` = 1: everything runs here, in order).
    Use as a context manager; `submit` returns a Future either way."""

    def __init__(self, n: int | None = None) -> None:
        self.n = default_workers() if n is None else int(n)
        if self.n < 1:
            raise ValueError(f"workers must be at least 1, got {n}")
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def submit(self, fn: Callable, *args: object) -> Future:
        if self.n == 1:
            fut: Future = Future()
            try:
                fut.set_result(fn(*args))
            except Exception as e:
                fut.set_exception(e)
            return fut
        if self._pool is None:
            threads = max(1, (os.cpu_count() or 1) // self.n)
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self.n, mp_context=ctx, initializer=_init_worker,
                                             initargs=(threads, os.getpid()))
        return self._pool.submit(fn, *args)


def submit_hull(hull: ReferenceHull, systems: Iterable[str], workers: Workers
                ) -> list[tuple[tuple[str, str], Future]]:
    """Start computing the missing cache entries of the hulls of `systems` on `workers`."""
    todo = missing_entries(hull, systems)
    if workers.n == 1:
        return [(key, workers.submit(_local_entry, hull, *key)) for key in todo]
    if todo:
        _prepare_libraries(hull, todo)
    options = hull.options()
    return [(key, workers.submit(_hull_entry, options, *key)) for key in todo]


def _local_entry(hull: ReferenceHull, system: str, kind: str) -> str:
    try:
        hull.system_entries(system, kind)
        return ""
    except Exception as e:  # as in a worker: reported, computed again on first use
        return f"{type(e).__name__}: {e}"[:300]


def wait_hull(jobs: list[tuple[tuple[str, str], Future]], progress: bool = True) -> dict:
    """Wait for `submit_hull`'s jobs (with a progress bar). An entry that failed is left to be
    computed on first use (where its error, if it repeats, becomes the candidate's failure
    reason). Returns counts: entries built and failed, the first errors."""
    from tqdm.auto import tqdm

    keys = {fut: key for key, fut in jobs}
    errors = []
    for fut in tqdm(as_completed(keys), total=len(keys), desc="reference hull",
                    disable=not progress or not jobs):
        try:
            error = fut.result()
        except Exception as e:  # the pool broke (a worker died): left to first use
            error = f"{type(e).__name__}: {e}"[:300]
        if error:
            errors.append(f"{' '.join(keys[fut])}: {error}")
    errors.sort()
    report: dict = {"entries_built": len(jobs) - len(errors), "entries_failed": len(errors)}
    if errors:
        report["errors"] = errors[:20]
    return report


def build_hull(hull: ReferenceHull, systems: Iterable[str], workers: int | None = None,
               progress: bool = True) -> dict:
    """Compute the missing cache entries of the hulls of `systems` with `workers` processes
    (default `default_workers()`) and wait for them; returns `wait_hull`'s counts."""
    with Workers(workers) as pool:
        return wait_hull(submit_hull(hull, systems, pool), progress)


def submit_relaxations(structures: Sequence[Structure | None], relax_kw: dict, workers: Workers
                       ) -> list[Future | None]:
    """Start `relax_task` of each structure on `workers` (None for None), in input order."""
    return [None if s is None else workers.submit(relax_task, s, relax_kw) for s in structures]


def _prepare_libraries(hull: ReferenceHull, todo: list[tuple[str, str]]) -> None:
    """Build the prototype libraries once, here, before the workers read them."""
    from cfmc.stability.prototypes import prototype_library, ternary_library

    kinds = {kind for _, kind in todo}
    if kinds & {"prototypes", "metals", "oxidation"}:
        prototype_library(hull.root.parent)
    if "peroxide" in kinds:
        from cfmc.stability.dimers import dimer_library

        dimer_library(hull.root.parent)
    if kinds & {"ternary", "ternary_oxidation"}:
        ternary_library(hull.root.parent)
    if "intermetallic" in kinds:
        from cfmc.stability.intermetallics import intermetallic_library

        intermetallic_library(hull.root.parent)


__all__ = ["Workers", "build_hull", "default_workers", "missing_entries", "relax_task",
           "submit_hull", "submit_relaxations", "wait_hull"]
