"""Crystals drawn from the prior for one space group: a samples.csv (string, formula, log p,
validity, CIF), one CIF file per sample, summary.json and report.html; optionally redrawing
structurally invalid ones, which samples the prior restricted to valid crystals.

The crystals are drawn in fixed chunks of `CHUNK`; crystal i comes from keys of (seed, redraw
round, i) alone and every chunk is computed at the same shape, so a draw gives the same crystals
in one process or spread over Ray workers (`workers`, `ray_address`). Each finished chunk is
checkpointed: an interrupted draw keeps what it finished and `resume` completes it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from cfmc.rundir_lock import guarded_run

CHUNK = 256  # crystals per chunk by default (the unit of work, checkpoint and Ray task)


class PriorSamples(NamedTuple):
    """The table written to samples.csv and what the draw did."""

    table: pd.DataFrame
    mean_log_prob: float
    valid: int
    redrawn: int
    failed: int  # crystals without a valid structure (no CIF)


class Chunk(NamedTuple):
    """Crystals [lo, hi) of a draw of `num`, computed in batches of `batch` (one task)."""

    lo: int
    hi: int
    num: int
    batch: int


def draw_chunk(model: Any, chunk: Chunk, spacegroup: int, seed: int, allowed: Any,
               temperature: float, top_p: float, valid_only: bool, max_rounds: int
               ) -> dict[str, np.ndarray]:
    """The crystals of one chunk: arrays, log p, validity and how many were redrawn. Crystal i
    of round r uses key i of split(fold_in(seed, r), num); an invalid crystal is redrawn in its
    own slot (round after round, at most `max_rounds`), so no crystal depends on another."""
    import jax

    from cfmc.arrays import CrystalArrays
    from cfmc.chemistry import structurally_valid
    from cfmc.crystal import from_arrays
    from cfmc.priors import sample_with_log_prob
    from cfmc.priors.evaluate import log_prob_many

    batch = chunk.batch
    index = np.arange(chunk.lo, chunk.hi)

    def draw(round_: int, which: np.ndarray) -> tuple[CrystalArrays, np.ndarray]:
        keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), round_),
                                chunk.num)[which]
        drawn, _ = sample_with_log_prob(model, None, spacegroup, len(which), keys=keys,
                                        batch=batch, temperature=temperature, top_p=top_p,
                                        allowed_species=allowed)
        drawn = CrystalArrays(*(np.asarray(f) for f in drawn))
        return drawn, np.array([structurally_valid(c)[0] for c in from_arrays(drawn)])

    arrays, valid = draw(0, index)
    redrawn = np.zeros(len(index), bool)
    for r in range(1, max_rounds + 1 if valid_only else 1):
        bad = np.flatnonzero(~valid)
        if not bad.size:
            break
        more, ok = draw(r, index[bad])
        fill = bad[ok]
        arrays = CrystalArrays(*(f.copy() for f in arrays))
        for f, g in zip(arrays, more, strict=True):
            f[fill] = g[ok]
        valid[fill] = True
        redrawn[fill] = True
    logp = np.asarray(log_prob_many(model, arrays, batch_size=batch).total)
    return {**{f"arrays.{k}": np.asarray(v) for k, v in arrays._asdict().items()},
            "logp": logp, "valid": valid, "redrawn": redrawn}


class ChunkWorker:
    """A Ray actor that loads the prior once and draws chunks."""

    def __init__(self, prior: Any, settings: dict[str, Any], allowed: Any,
                 cache_dir: str | None = None) -> None:
        if cache_dir:  # the driver's compilation cache: the worker loads what it compiled
            from cfmc.priors.config import enable_compilation_cache

            enable_compilation_cache(cache_dir)
        from cfmc.priors import load_prior

        self.model = load_prior(prior)
        self.settings, self.allowed = settings, allowed

    def run(self, chunk: Chunk) -> tuple[dict[str, np.ndarray], float, int]:
        """One chunk, the seconds it took and this worker's process id."""
        t0 = time.time()
        s = self.settings
        out = draw_chunk(self.model, chunk, s["spacegroup"], s["seed"], self.allowed,
                         s["temperature"], s["top_p"], s["valid_only"], s["max_rounds"])
        return out, time.time() - t0, os.getpid()


@guarded_run  # --out validated and locked for the draw (cfmc.rundir_lock)
def sample_prior(
    spacegroup: int, out: str | Path, num: int = 1000, elements: Sequence[str] | None = None,
    temperature: float = 1.0, top_p: float = 1.0, prior: Any = None, seed: int = 0,
    valid_only: bool = False, max_rounds: int = 20, force: bool = False, resume: bool = False,
    workers: int | None = None, ray_address: str | None = None, chunk: int = CHUNK,
    progress: bool = True,
) -> PriorSamples:
    """Draw `num` crystals of `spacegroup` from the prior into `out` (see the module docstring);
    `elements` restricts the species, `top_p` filters them by nucleus sampling; `workers` /
    `ray_address` spread the chunks over Ray workers (`cfmc.shards`), `resume` completes an
    interrupted draw; `chunk` crystals make one unit of work."""
    import jax
    from tqdm.auto import tqdm

    from cfmc import runio, shards, validate
    from cfmc.arrays import CrystalArrays
    from cfmc.chemistry import element_mask
    from cfmc.crystal import from_arrays
    from cfmc.diagnostics import package_versions
    from cfmc.priors import load_prior
    from cfmc.run import check_resume, write_report_safely
    from cfmc.wyckoff import check_spacegroup

    t0 = time.time()
    check_spacegroup(spacegroup)
    validate.integer(num, "num", 1)
    validate.real(temperature, "temperature", 0.0, low_open=True)
    validate.real(top_p, "top_p", 0.0, 1.0, low_open=True)
    validate.seed(seed)
    validate.integer(max_rounds, "max_rounds", 1)
    validate.integer(chunk, "chunk", 1)
    shards.check_workers(workers, ray_address)
    allowed = (None if elements is None
               else element_mask(elements, exclude_radioactive=False, option="--elements"))
    settings = {"spacegroup": spacegroup, "num": num, "elements": elements,
                "temperature": temperature, "top_p": top_p, "prior": prior if prior is None
                or isinstance(prior, str | Path) else "given", "seed": seed,
                "valid_only": valid_only, "max_rounds": max_rounds, "chunk": chunk}
    out = runio.prepare(out, force=force, resume=resume)
    chunks = [Chunk(lo, min(lo + chunk, num), num, min(num, chunk))
              for lo in range(0, num, chunk)]
    # the checkpoint holds the settings; each finished chunk is a file of its own in chunks/
    (out / "chunks").mkdir(exist_ok=True)
    names = [f"chunks/chunk_{i:05d}.npz" for i in range(len(chunks))]
    if resume:
        check_resume(out, settings)
    else:
        runio.save_checkpoint(out, {}, {"settings": settings, "chunks": len(chunks)})
    done = {i: runio.load_checkpoint(out, name)[0] for i, name in enumerate(names)
            if (out / name).exists()}
    todo = [i for i in range(len(chunks)) if i not in done]
    bar = tqdm(total=num, initial=sum(chunks[i].hi - chunks[i].lo for i in done),
                       desc="sample", unit="crystal", disable=not progress)

    def finished(i: int, result: dict[str, np.ndarray]) -> None:
        done[i] = result
        runio.save_checkpoint(out, result, {"chunk": i}, names[i])
        bar.update(chunks[i].hi - chunks[i].lo)

    timing: dict[str, Any] = {"workers": None}
    try:
        if workers is None and ray_address is None:
            model = load_prior(prior)
            for i in todo:
                finished(i, draw_chunk(model, chunks[i], spacegroup, seed, allowed,
                                       temperature, top_p, valid_only, max_rounds))
        else:
            with shards.ray_session(workers, ray_address) as ray:
                n = workers or shards.cluster_cpus(ray)
                actor = ray.remote(num_cpus=1, max_restarts=shards.RETRIES,
                                   max_task_retries=shards.RETRIES)(ChunkWorker)
                cache = jax.config.jax_compilation_cache_dir
                tasks = shards.run_tasks(
                    ray, n, lambda: actor.remote(prior, settings, allowed, cache),
                    [chunks[i] for i in todo], lambda j, r: finished(todo[j], r))
                timing = {"workers": n, "address": ray_address,
                          "chunks": [{"chunk": todo[t.task], "seconds": t.seconds,
                                      "pid": t.pid, "retries": t.retries} for t in tasks]}
    finally:
        bar.close()
    parts = [done[i] for i in range(len(chunks))]
    arrays = CrystalArrays(*(np.concatenate([d[f"arrays.{f}"] for d in parts])
                             for f in CrystalArrays._fields))
    logp, valid, redrawn = (np.concatenate([d[k] for d in parts])
                            for k in ("logp", "valid", "redrawn"))
    crystals = from_arrays(arrays)
    cif_dir = out / "cif"
    cif_dir.mkdir(parents=True, exist_ok=True)
    rows, failed = [], 0
    for i, crystal in enumerate(crystals):
        row = {"index": i, "spacegroup": spacegroup, "string": crystal.to_string()}
        row["formula"], row["logp"], row["cif"], row["error"] = "", float(logp[i]), "", ""
        row["valid"] = bool(valid[i])
        try:
            row["formula"] = crystal.formula
            row["cif"] = crystal.to_cif()
            (cif_dir / f"sample_{i:05d}.cif").write_text(row["cif"])
        except Exception as e:  # an unphysical cell (e.g. a negative length) has no structure
            row["error"] = f"{type(e).__name__}: {e}"
            failed += 1
        rows.append(row)
    table = pd.DataFrame(rows)
    runio.write_table(out, "samples.csv", table)
    result = PriorSamples(table, float(np.mean(logp)), int(valid.sum()), int(redrawn.sum()),
                          failed)
    runio.write_summary(out, {
        "command": "sample", "status": "complete", "settings": settings, "seed": seed,
        "seconds": time.time() - t0, "mean_log_prior": result.mean_log_prob,
        "structurally_valid": result.valid, "redrawn": result.redrawn,
        "without_structure": failed, "sharding": timing, "versions": package_versions()})
    write_report_safely(out)
    return result
