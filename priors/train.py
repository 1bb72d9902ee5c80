"""Maximum-likelihood training of the prior: jitted steps on length buckets, a validation split,
per-epoch CSV log, best and resumable checkpoints, a learning curve, and a wall-clock budget.

Crystals are grouped by how many site slots they need (real sites plus the padding letter that
ends them), and each batch is cut to its bucket's slot count. The density is exact under this cut:
the padding letter of slot N is scored whenever N < max_sites, and every later slot is a forced pad
of probability one. Each bucket compiles once (static shapes, fixed batch size).
"""

from __future__ import annotations

import csv
import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cfmc.arrays import CrystalArrays

from .batches import assign_buckets, device_batch, fit_slots
from .config import PriorConfig
from .density import LogProbTerms, log_prob, satisfies_constraints
from .evaluate import TERMS, evaluate
from .io import readable_dir, save_prior, write_dir_atomically
from .model import CrystalFormer, count_parameters


@dataclass(frozen=True)
class TrainOptions:
    """Optimisation and bookkeeping settings (stored with the resumable checkpoint)."""

    epochs: int = 100
    batch_size: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 200
    end_lr_fraction: float = 0.01  # cosine decay to lr * this at the last step
    clip_norm: float = 1.0
    val_fraction: float = 0.1
    split_seed: int = 0
    seed: int = 0
    buckets: tuple[int, ...] = (4, 8, 12)  # slot counts below max_sites (max_sites is added)
    max_minutes: float | None = None
    checkpoint_minutes: float = 5.0
    progress: bool = True
    trainable: str = "all"  # "all", or "exclusion": only the exclusion zone's scalars

    def __post_init__(self) -> None:
        """Refuse settings that would train on nothing or into NaN weights, naming them."""
        from cfmc import validate as v

        v.integer(self.epochs, "epochs", 1)
        v.integer(self.batch_size, "batch_size", 1)
        v.real(self.lr, "lr", 0.0)  # 0: the weights stay (a check of the pipeline)
        v.real(self.weight_decay, "weight_decay", 0.0)
        v.integer(self.warmup_steps, "warmup_steps", 0)
        v.real(self.end_lr_fraction, "end_lr_fraction", 0.0, 1.0)
        v.real(self.clip_norm, "clip_norm", 0.0, low_open=True)
        v.real(self.val_fraction, "val_fraction", 0.0, 1.0, high_open=True)
        v.seed(self.seed)
        v.seed(self.split_seed, "split_seed")
        v.optional_real(self.max_minutes, "max_minutes", 0.0)  # 0: stop after one batch
        v.real(self.checkpoint_minutes, "checkpoint_minutes", 0.0, low_open=True)
        if self.trainable not in ("all", "exclusion"):
            raise ValueError(f"trainable = {self.trainable!r}: expected 'all' or 'exclusion'")


class TrainingDiverged(RuntimeError):
    """The training loss became non-finite; the checkpoints on disk are the last good ones."""


def trainable_spec(model: CrystalFormer, trainable: str = "all"):
    """Which arrays training updates (an Equinox filter spec): every array, or only the
    exclusion zone's scalars (fitting the zone to a trained transformer)."""
    if trainable == "all":
        return eqx.is_array
    if trainable == "exclusion":
        if model.exclusion is None:
            raise ValueError("trainable='exclusion' needs a model with an exclusion zone")
        spec = jax.tree_util.tree_map(lambda _: False, model)
        zone = jax.tree_util.tree_map(lambda _: True, model.exclusion)
        return eqx.tree_at(lambda m: m.exclusion, spec, replace=zone)
    raise ValueError(f"trainable must be 'all' or 'exclusion', got {trainable!r}")


class TrainResult(NamedTuple):
    model: CrystalFormer  # the best-validation model
    log: list[dict[str, Any]]
    out: Path
    stopped_early: bool  # the wall-clock budget ended the run


@dataclass
class _State:
    epoch: int = 0  # current epoch (0-based)
    batch: int = 0  # batches of the current epoch already done
    step: int = 0
    best_val: float = math.inf
    best_epoch: int = -1
    log: list[dict[str, Any]] = field(default_factory=list)
    partial: list[float] = field(default_factory=lambda: [0.0] * (len(TERMS) + 1))


# --- data ----------------------------------------------------------------------------------------


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices, a fixed-seed random split."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * fraction))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def epoch_batches(
    buckets: dict[int, np.ndarray], batch_size: int, seed: int, epoch: int
) -> list[tuple[int, np.ndarray]]:
    """Shuffled full batches (slot count, indices) of one epoch; each bucket's remainder is left
    out (a different random remainder every epoch)."""
    rng = np.random.default_rng([seed, epoch])
    batches = []
    for size, idx in buckets.items():
        perm = rng.permutation(idx)
        for i in range(len(perm) // batch_size):
            batches.append((size, perm[i * batch_size : (i + 1) * batch_size]))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


# --- jitted functions ----------------------------------------------------------------------------


def make_optimizer(opts: TrainOptions, total_steps: int) -> optax.GradientTransformation:
    """Adam(W) with linear warmup and cosine decay, after global-norm clipping."""
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=opts.lr,
        warmup_steps=min(opts.warmup_steps, max(total_steps // 10, 1)),
        decay_steps=max(total_steps, 2),
        end_value=opts.lr * opts.end_lr_fraction,
    )
    return optax.chain(
        optax.clip_by_global_norm(opts.clip_norm),
        optax.adamw(schedule, weight_decay=opts.weight_decay),
    )


def _mean_terms(terms: LogProbTerms) -> jax.Array:
    return jnp.stack([-jnp.mean(t) for t in terms])  # NLL per crystal, by term


@functools.lru_cache(maxsize=8)
def _cached_train_step(opts_key: tuple, total_steps: int) -> tuple[Callable, Any]:
    opts = TrainOptions(**dict(opts_key))
    optimizer = make_optimizer(opts, total_steps)
    return make_train_step(optimizer, opts.trainable), optimizer


def make_train_step(optimizer: optax.GradientTransformation, trainable: str = "all") -> Callable:
    """One jitted optimisation step on a batch: (model, opt_state, batch, key) -> (model,
    opt_state, NLL by term). With trainable='exclusion' only the zone moves, without dropout (the
    transformer is then a fixed, evaluated function)."""

    @eqx.filter_jit
    def train_step(model, opt_state, batch: CrystalArrays, key):
        params, static = eqx.partition(model, trainable_spec(model, trainable))
        dropout_key = key if trainable == "all" else None

        def loss_fn(p):
            nll = _mean_terms(log_prob(eqx.combine(p, static), batch, key=dropout_key))
            return nll[0], nll

        (_, nll), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return eqx.apply_updates(model, updates), opt_state, nll

    return train_step


# --- checkpoints, log, plot ----------------------------------------------------------------------


def _save_last(out: Path, model, opt_state, state: _State, opts: TrainOptions) -> None:
    def write(d: Path) -> None:
        (d / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
        eqx.tree_serialise_leaves(d / "state.eqx", (model, opt_state))
        info = {"state": asdict(state), "options": asdict(opts), "time": time.time()}
        (d / "state.json").write_text(json.dumps(info, default=_json_default) + "\n")

    write_dir_atomically(out / "last", write)


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(type(x))


def _load_last(out: Path, model, opt_state) -> tuple[Any, Any, _State, dict]:
    d = readable_dir(out / "last")
    if not (d / "state.json").exists():
        raise FileNotFoundError(f"nothing to resume: no checkpoint at {d}")
    try:
        info = json.loads((d / "state.json").read_text())
        model, opt_state = eqx.tree_deserialise_leaves(d / "state.eqx", (model, opt_state))
    except Exception as e:
        raise ValueError(f"damaged training checkpoint at {d}: {e}") from e
    return model, opt_state, _State(**info["state"]), info["options"]


def _write_log(out: Path, log: list[dict[str, Any]]) -> None:
    if not log:
        return
    tmp = out / ".log.csv.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(log[0]))
        writer.writeheader()
        writer.writerows(log)
    tmp.replace(out / "log.csv")


def plot_learning_curve(log: list[dict[str, Any]], path: Path) -> None:
    """Train and validation NLL per crystal against epoch, total and by term."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in log]
    fig, axes = plt.subplots(1, len(TERMS), figsize=(4 * len(TERMS), 3.2))
    for ax, term in zip(axes, TERMS, strict=True):
        ax.plot(epochs, [r[f"train_{term}"] for r in log], label="train")
        ax.plot(epochs, [r[f"val_{term}"] for r in log], label="validation")
        ax.set_title(f"NLL {term}")
        ax.set_xlabel("epoch")
    axes[0].legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


# --- the loop ------------------------------------------------------------------------------------


def clean_dataset(arrays: CrystalArrays, max_sites: int) -> tuple[CrystalArrays, int]:
    """Fit the arrays to `max_sites` slots and drop crystals the model cannot represent (more
    sites, a missing lattice). Returns the kept arrays and the number dropped."""
    arrays, overflow = fit_slots(arrays, max_sites)
    keep = np.all(np.isfinite(arrays.lattice), axis=-1) & ~overflow
    return arrays.take(keep), int((~keep).sum())


def train(
    arrays: CrystalArrays,
    config: PriorConfig,
    out: str | Path,
    options: TrainOptions | None = None,
    *,
    resume: bool = False,
    model: CrystalFormer | None = None,
    echo: Callable[[str], None] = print,
) -> TrainResult:
    """Train a prior on `arrays`, writing to `out`: log.csv, learning_curve.png, best/ (a prior
    checkpoint, the best validation NLL) and last/ (resumable: model, optimiser, epoch, log).

    `resume` continues from out/last with its stored options; `model` starts from given weights.
    """
    opts = options or TrainOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    arrays, dropped = clean_dataset(arrays, config.max_sites)

    # Crystals breaking the model's hard constraints (letter order, ...) have probability zero.
    ok = satisfies_constraints(arrays)
    arrays = arrays.take(ok)
    dropped_constraints = int((~ok).sum())
    train_idx, val_idx = split_indices(arrays.batch_size, opts.val_fraction, opts.split_seed)
    train_arrays, val_arrays = arrays.take(train_idx), arrays.take(val_idx)
    buckets = assign_buckets(train_arrays, config.max_sites, opts.buckets, opts.batch_size)
    steps_per_epoch = sum(len(i) // opts.batch_size for i in buckets.values())
    if steps_per_epoch == 0:
        raise ValueError(
            f"{train_arrays.batch_size} training crystals are fewer than one batch of "
            f"{opts.batch_size}"
        )
    # Runs with the same optimiser settings share one compiled step (resume in one process).
    opt_keys = ("lr", "weight_decay", "warmup_steps", "end_lr_fraction", "clip_norm", "trainable")
    train_step, optimizer = _cached_train_step(
        tuple((k, getattr(opts, k)) for k in opt_keys), steps_per_epoch * opts.epochs
    )

    model = model if model is not None else CrystalFormer(config, jax.random.PRNGKey(opts.seed))
    opt_state = optimizer.init(eqx.filter(model, trainable_spec(model, opts.trainable)))
    state = _State()
    if resume:
        model, opt_state, state, stored = _load_last(out, model, opt_state)
        for k in ("batch_size", "seed", "split_seed", "val_fraction", "buckets"):
            mine = getattr(opts, k)
            mine = list(mine) if isinstance(mine, tuple) else mine
            if mine != stored[k]:
                raise ValueError(
                    f"cannot resume {out}: option {k}={mine!r} differs from the checkpoint's "
                    f"{stored[k]!r}"
                )
    echo(
        f"prior: {count_parameters(model):,} parameters; {train_arrays.batch_size} train / "
        f"{val_arrays.batch_size} validation crystals ({dropped} too large or without lattice, "
        f"{dropped_constraints} violating constraints dropped); buckets "
        f"{ {k: len(v) for k, v in buckets.items()} }; {steps_per_epoch} steps/epoch"
    )

    base_key = jax.random.PRNGKey(opts.seed)
    last_save = time.time()
    stopped_early = False
    deadline = None if opts.max_minutes is None else t_start + 60.0 * opts.max_minutes
    progress = _progress(opts.progress, steps_per_epoch)
    while state.epoch < opts.epochs and not stopped_early:
        batches = epoch_batches(buckets, opts.batch_size, opts.seed, state.epoch)
        progress.reset(state.epoch, state.batch)
        t_epoch = time.time()
        while state.batch < len(batches):
            size, idx = batches[state.batch]
            key = jax.random.fold_in(base_key, state.step)
            model, opt_state, nll = train_step(
                model, opt_state, device_batch(train_arrays, idx, size), key
            )
            nll = np.asarray(nll)
            if not np.all(np.isfinite(nll)):  # stop before anything saves the broken weights
                progress.close()
                raise TrainingDiverged(
                    f"training loss became non-finite ({float(nll[0])}) at epoch "
                    f"{state.epoch + 1}, step {state.step + 1} (lr {opts.lr:g}); the last good "
                    f"checkpoints are kept in {out} (best/, last/); try a lower --lr")
            state.partial = [p + float(v) for p, v in zip(state.partial, [*nll, 1.0], strict=True)]
            state.batch += 1
            state.step += 1
            progress.update(float(nll[0]))
            now = time.time()
            if deadline is not None and now > deadline:
                stopped_early = True
                break
            if now - last_save > 60.0 * opts.checkpoint_minutes:
                _save_last(out, model, opt_state, state, opts)
                last_save = now
        if stopped_early:
            break
        count = max(state.partial[-1], 1.0)
        train_nll = {k: state.partial[i] / count for i, k in enumerate(TERMS)}
        val_nll, _ = evaluate(model, val_arrays, opts.batch_size, opts.buckets)
        row = {
            "epoch": state.epoch + 1,
            "step": state.step,
            "seconds": round(time.time() - t_epoch, 2),
        }
        row |= {f"train_{k}": v for k, v in train_nll.items()}
        row |= {f"val_{k}": v for k, v in val_nll.items()}
        state.log.append(row)
        if val_nll["total"] < state.best_val:
            state.best_val, state.best_epoch = val_nll["total"], state.epoch + 1
            save_prior(model, out / "best", extra={"epoch": state.epoch + 1, "val_nll": val_nll})
        state.epoch += 1
        state.batch = 0
        state.partial = [0.0] * (len(TERMS) + 1)
        _save_last(out, model, opt_state, state, opts)
        last_save = time.time()
        _write_log(out, state.log)
        plot_learning_curve(state.log, out / "learning_curve.png")
        progress.epoch_done(row)
    progress.close()
    if stopped_early:
        _save_last(out, model, opt_state, state, opts)
        echo(
            f"stopped by the {opts.max_minutes}-minute budget at epoch {state.epoch + 1}, "
            f"batch {state.batch}; resume with --resume"
        )
    best_dir = out / "best"
    if not readable_dir(best_dir).exists():  # no finished epoch yet: best is the current model
        save_prior(model, best_dir, extra={"epoch": state.epoch, "val_nll": None})
    from .io import load_prior

    return TrainResult(load_prior(best_dir), state.log, out, stopped_early)


class _progress:
    """A tqdm bar over the batches of each epoch (or nothing)."""

    def __init__(self, enabled: bool, total: int):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="batch", dynamic_ncols=True)

    def reset(self, epoch: int, done: int) -> None:
        if self.bar is not None:
            self.bar.reset()
            self.bar.update(done)
            self.bar.set_description(f"epoch {epoch + 1}")

    def update(self, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(nll=f"{loss:.3f}")

    def epoch_done(self, row: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.write(
                f"epoch {row['epoch']}: train NLL {row['train_total']:.3f}, "
                f"validation NLL {row['val_total']:.3f} ({row['seconds']} s)"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
