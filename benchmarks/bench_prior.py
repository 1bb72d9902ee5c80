"""Throughput of the CrystalFormer prior on this machine: log_prob, training and sampling.

For each config (default: "default" and "reference") prints crystals/s after compilation, and the
compile times. Data: the MP-20 subset from the shared folder when present, else crystals drawn
from the (untrained) model itself.

    python benchmarks/bench_prior.py [--configs default reference] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import equinox as eqx
import jax
import numpy as np
from cfmc.priors import CrystalFormer, count_parameters, get_config, log_prob, sample
from cfmc.priors.batches import assign_buckets, device_batch, fit_slots
from cfmc.priors.evaluate import log_prob_many
from cfmc.priors.train import TrainOptions, epoch_batches, make_optimizer, make_train_step

from cfmc.arrays import CrystalArrays


def load_data(model: CrystalFormer, n: int | None) -> tuple[CrystalArrays, str]:
    """n crystals (all of the file when None), repeated when the file has fewer."""
    n_draw = n or 1000
    try:
        from cfmc.data import default_training_files, load_dataset

        path = default_training_files()[0]
        data = load_dataset(path, max_sites=model.config.max_sites, progress=False)
        arrays, _ = fit_slots(data.arrays, model.config.max_sites)
        if n is None:
            return arrays, path.name
        reps = -(-n // arrays.batch_size)
        idx = np.resize(np.random.default_rng(0).permutation(arrays.batch_size), reps * n)[:n]
        return arrays.take(idx), path.name
    except (ImportError, FileNotFoundError):
        groups = np.resize([225, 62, 14, 191], n_draw)
        drawn = sample(model, jax.random.PRNGKey(0), groups, n_draw)
        return CrystalArrays(*(np.asarray(f) for f in drawn)), "drawn from the model"


def timed(fn, repeat: int) -> tuple[float, float]:
    """(first call incl. compilation, best of `repeat` later calls), seconds."""
    t = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t)
    return first, best


def bench(name: str, repeat: int) -> None:
    jax.clear_caches()  # compile times per config, even when two configs share an architecture
    config = get_config(name)
    model = CrystalFormer(config, jax.random.PRNGKey(0))
    data, source = load_data(model, 1000)
    print(f"\n== config '{name}': {count_parameters(model):,} parameters; data: {source}")

    lp = eqx.filter_jit(lambda m, b: log_prob(m, b).total)
    for b in (100, 1000):
        batch = CrystalArrays(*(jax.numpy.asarray(f[:b]) for f in data))
        first, best = timed(lambda batch=batch: lp(model, batch), repeat)
        print(
            f"log_prob, batch {b:4d}, {config.max_sites} slots: {b / best:8.1f} crystals/s "
            f"(compile+first {first:.1f} s)"
        )
    first, best = timed(lambda: np.asarray(log_prob_many(model, data).total), repeat)
    print(
        f"log_prob, 1000 crystals in length buckets of 100: {1000 / best:8.1f} crystals/s "
        f"(compile+first {first:.1f} s)"
    )

    opts = TrainOptions(batch_size=100)
    optimizer = make_optimizer(opts, 10_000)
    step = make_train_step(optimizer)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
    key = jax.random.PRNGKey(0)
    full = device_batch(data, np.arange(100), config.max_sites)
    first, best = timed(lambda: step(model, opt_state, full, key)[2], repeat)
    print(
        f"training, batch 100, {config.max_sites} slots: {100 / best:8.1f} crystals/s "
        f"(compile+first {first:.1f} s)"
    )
    # An epoch's mix of bucket shapes over the whole data set (first 40 batches of the epoch).
    everything, _ = load_data(model, None)
    buckets = assign_buckets(everything, config.max_sites, opts.buckets, 100)
    batches = [
        (s, device_batch(everything, i, s)) for s, i in epoch_batches(buckets, 100, 0, 0)[:40]
    ]
    t = time.perf_counter()
    sizes = sorted({s for s, _ in batches})
    for size in sizes:  # compile every bucket shape once
        batch = next(b for s, b in batches if s == size)
        jax.block_until_ready(step(model, opt_state, batch, key)[2])
    compile_all = time.perf_counter() - t
    t = time.perf_counter()
    for _, batch in batches:
        jax.block_until_ready(step(model, opt_state, batch, key)[2])
    rate = 100 * len(batches) / (time.perf_counter() - t)
    print(
        f"training, batch 100, length buckets {sizes} (an epoch's mix): {rate:8.1f} "
        f"crystals/s (compiling all buckets {compile_all:.1f} s)"
    )

    first, best = timed(lambda: sample(model, jax.random.PRNGKey(1), 225, 100).lattice, repeat)
    print(
        f"sampling, space group 225, batch 100: {100 / best:8.1f} crystals/s "
        f"(compile+first {first:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["default", "reference"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; {jax.device_count()} device(s)")
    for name in args.configs:
        bench(name, args.repeat)


if __name__ == "__main__":
    main()
