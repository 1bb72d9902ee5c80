"""Shared helpers of the kernel tests: enumerable targets, chain runs, the chi-square check."""

from __future__ import annotations

import itertools

import jax
import numpy as np
from scipy import stats

from cfmc.arrays import CrystalArrays
from cfmc.sweep import Sampler
from cfmc.template import Template

ELEMENTS = ["Na", "K", "Cl", "Br"]
Z = [11, 19, 17, 35]


def as_numpy(arrays) -> CrystalArrays:
    return CrystalArrays(*(np.asarray(f) for f in arrays))


def run_chains(sampler: Sampler, x: CrystalArrays, sweeps: int, seed: int):
    """Run `sweeps` sweeps from x and return the final state."""
    state = sampler.init(x)
    key = jax.random.PRNGKey(seed)
    for i in range(sweeps):
        state, _ = sampler.sweep(jax.random.fold_in(key, i), state)
    return state


def enumerate_species(template: Template, model, n: int):
    """All 16 species states of a two-site template, as arrays with n site slots."""
    x = template.random_arrays(16, np.random.default_rng(0), n)
    sp = np.array(list(itertools.product(Z, Z)), np.int32)
    x = x._replace(species=np.pad(sp, ((0, 0), (0, n - 2))))
    return x, sp


def chi2_pvalue(species: np.ndarray, states: np.ndarray, probs: np.ndarray) -> float:
    """Chi-square p-value of the first two sites' species against exact state probabilities."""
    index = {tuple(s): k for k, s in enumerate(states)}
    counts = np.bincount([index[tuple(s)] for s in species[:, :2]], minlength=len(states))
    expected = np.asarray(probs, np.float64) / np.sum(probs, dtype=np.float64) * counts.sum()
    small = expected < 5  # pool rare states so the chi-square approximation holds
    obs, exp = counts[~small], expected[~small]
    if small.any():
        obs, exp = np.append(obs, counts[small].sum()), np.append(exp, expected[small].sum())
    return stats.chisquare(obs, exp).pvalue
