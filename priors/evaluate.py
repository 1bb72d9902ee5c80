"""Evaluating the prior on many crystals: log p by term in fixed-size batches cut to length
buckets (exact, see `priors.batches`), and the mean NLL per crystal of a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from cfmc.arrays import CrystalArrays

from .batches import assign_buckets, device_batch, fit_slots
from .density import LogProbTerms, log_prob
from .model import CrystalFormer

TERMS = LogProbTerms._fields  # total, wyckoff, species, coords, lattice


@eqx.filter_jit
def _eval_terms(model, batch: CrystalArrays) -> jax.Array:
    return jnp.stack(log_prob(model, batch), axis=-1)  # (B, terms)


def log_prob_many(
    model: CrystalFormer, arrays: CrystalArrays, batch_size: int = 100, buckets=(4, 8, 12)
) -> LogProbTerms:
    """log p by term for any number of crystals (numpy (B,) arrays), in fixed-size batches cut to
    the slot-count buckets (exact: see the module docstring). Crystals with more real sites than
    max_sites get -inf."""
    arrays, overflow = fit_slots(arrays, model.config.max_sites)
    out = np.full((arrays.batch_size, len(TERMS)), np.nan)
    for size, idx in assign_buckets(arrays, model.config.max_sites, buckets, 1).items():
        for i in range(0, len(idx), batch_size):
            chunk = idx[i : i + batch_size]
            full = np.concatenate([chunk, np.repeat(chunk[:1], batch_size - len(chunk))])
            terms = np.asarray(_eval_terms(model, device_batch(arrays, full, size)))
            out[chunk] = terms[: len(chunk)]
    out[overflow] = -np.inf
    return LogProbTerms(*out.T)


def evaluate(
    model: CrystalFormer, arrays: CrystalArrays, batch_size: int = 100, buckets=(4, 8, 12)
) -> tuple[dict[str, float], np.ndarray]:
    """Mean NLL per crystal by term over `arrays`, and the per-crystal total log p."""
    terms = log_prob_many(model, arrays, batch_size, buckets)
    return {k: float(-np.mean(v)) for k, v in zip(TERMS, terms, strict=True)}, terms.total


class ScoredFile(NamedTuple):
    """Every input row of a dataset with its log p by term (NaN and a reason where unscored)."""

    table: pd.DataFrame
    scored: int
    skip_counts: dict[str, int]
    nll: dict[str, float]  # mean NLL per scored crystal by term (empty when none)


def score_file(path: str | Path, prior=None, batch_size: int = 100,
               limit: int | None = None) -> ScoredFile:
    """log p of each crystal of a CSV (CDVAE layout), by term, keeping every input row in order
    with its own columns; a crystal with more sites than the model holds has probability zero
    (-inf), rows that could not be converted keep NaN and say why in `logp_error`."""
    from cfmc import validate
    from cfmc.data import load_dataset, read_table

    from .io import load_prior

    validate.integer(batch_size, "batch_size", 1)
    model = load_prior(prior)
    data = load_dataset(path, max_sites=model.config.max_sites, dedupe=None, limit=limit)
    terms = log_prob_many(model, data.arrays, batch_size)
    table = read_table(path, limit=limit)
    names = ("logp", "logp_wyckoff", "logp_species", "logp_coords", "logp_lattice")
    scores = np.full((len(table), len(names)), np.nan)
    scores[data.table["row"].to_numpy()] = np.stack(list(terms), axis=1)
    error = np.full(len(table), "", dtype=object)
    for row, reason in zip(data.skipped["row"], data.skipped["reason"], strict=True):
        error[int(row)] = reason
        if str(reason).startswith("too many sites"):
            scores[int(row)] = -np.inf
    for j, name in enumerate(names):
        table[name] = scores[:, j]
    table["logp_error"] = error
    counts = data.skip_counts() if len(data.skipped) else {}
    nll = ({k: float(-np.mean(v)) for k, v in zip(terms._fields, terms, strict=True)}
           if len(terms.total) else {})
    return ScoredFile(table, len(terms.total), dict(counts), nll)
