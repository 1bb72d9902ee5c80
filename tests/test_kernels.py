"""Exactness and validity of the Metropolis kernels against the real CrystalFormer prior.

A small randomly initialised CrystalFormer (larger init scale so its conditionals are far from
uniform) gives the target; templates small enough to enumerate give exact probabilities.
Independent samples come from the final states of many chains.
"""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest
from scipy import stats

from cfmc.arrays import CrystalArrays
from cfmc.posterior import Posterior
from cfmc.sweep import Sampler, SweepConfig, acceptance
from cfmc.template import Template

priors = pytest.importorskip("cfmc.priors")

ELEMENTS = ["Na", "K", "Cl", "Br"]
Z = [11, 19, 17, 35]


@pytest.fixture(scope="module")
def model():
    config = priors.get_config("tiny").replace(init_scale=0.5)
    return priors.CrystalFormer(config, jax.random.PRNGKey(0))


def _np(arrays) -> CrystalArrays:
    return CrystalArrays(*(np.asarray(f) for f in arrays))


def _run(sampler: Sampler, x: CrystalArrays, sweeps: int, seed: int):
    state = sampler.init(x)
    key = jax.random.PRNGKey(seed)
    for i in range(sweeps):
        state, st = sampler.sweep(jax.random.fold_in(key, i), state)
    return state


def _enumerated(template: Template, model, n: int):
    """All 16 species states of the two-site template and their exact posterior probabilities."""
    x = template.random_arrays(16, np.random.default_rng(0), n)
    sp = np.array(list(itertools.product(Z, Z)), np.int32)
    x = x._replace(species=np.pad(sp, ((0, 0), (0, n - 2))))
    return x, sp


def _chi2(species: np.ndarray, states: np.ndarray, probs: np.ndarray) -> float:
    index = {tuple(s): k for k, s in enumerate(states)}
    counts = np.bincount([index[tuple(s)] for s in species[:, :2]], minlength=len(states))
    expected = np.asarray(probs, np.float64) / np.sum(probs, dtype=np.float64) * counts.sum()
    small = expected < 5  # pool rare states so the chi-square approximation holds
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    return stats.chisquare(obs, exp).pvalue


@pytest.fixture(scope="module")
def binary(model):
    t = Template.parse("221-a-[?]-0-0-0-b-[?]-1/2-1/2-1/2", elements=ELEMENTS)
    n = 2  # the template's sites; the prior appends its own padding slot
    x, states = _enumerated(t, model, n)
    post = Posterior(model, marginalize_lattice=True)
    logp = post.prior_logdensity(x)
    probs = np.exp(logp - logp.max())
    return t, states, probs / probs.sum()


@pytest.mark.parametrize("proposal", ["uniform", "prior"])
def test_species_kernel_matches_enumerated_prior(model, binary, proposal):
    t, states, probs = binary
    n = 2  # the template's sites; the prior appends its own padding slot
    post = Posterior(model, marginalize_lattice=True)
    sampler = Sampler(post, t.constraints(n), SweepConfig(species_proposal=proposal))
    x = t.random_arrays(1500, np.random.default_rng(1), n)
    state = _run(sampler, x, 8, seed=2)
    final = _np(state.position)
    assert t.check_arrays(final).all()
    p = _chi2(final.species, states, probs)
    assert p > 0.01, f"{proposal} proposal: chi-square p = {p:.2g}"
    assert 0.05 < acceptance(sampler.stats)["species"] <= 1.0


def test_coordinate_kernel_matches_exact_1d_density(model):
    n = 2  # the template's sites; the prior appends its own padding slot
    t = Template.parse("225-a-Na-0-0-0-e-Cl-[?]-0-0")
    post = Posterior(model, marginalize_lattice=True)
    grid = np.linspace(0.0, 1.0, 2001)
    x = t.random_arrays(grid.size, np.random.default_rng(0), n)
    coords = np.array(x.coords)
    coords[:, 1, 0] = np.mod(grid, 1.0)
    dens = np.exp(post.prior_logdensity(x._replace(coords=coords)))
    cdf = np.concatenate([[0.0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(grid))])
    cdf /= cdf[-1]
    sampler = Sampler(post, t.constraints(n), SweepConfig(coord_step=0.15))
    state = _run(sampler, t.random_arrays(1500, np.random.default_rng(5), n), 30, seed=6)
    final = _np(state.position)
    assert t.check_arrays(final).all()
    samples = final.coords[:, 1, 0]
    assert np.all((samples >= 0) & (samples < 1))
    assert np.allclose(final.coords[:, 1, 1:], 0.0)
    res = stats.kstest(samples, lambda v: np.interp(v, grid, cdf))
    assert res.pvalue > 0.01, f"KS p = {res.pvalue:.2g}"


