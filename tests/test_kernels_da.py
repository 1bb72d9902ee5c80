"""Delayed acceptance and predictor failures in the sweep engine.
(Same set-up as test_kernels.py.)

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
from cfmc.sweep import Sampler, SweepConfig
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


def test_delayed_acceptance_matches_plain_mh(model, binary):
    t, states, prior_probs = binary
    n = 2  # the template's sites; the prior appends its own padding slot
    bonus = {"Na": 1.5, "K": -1.0, "Cl": 0.5, "Br": 0.0}
    calls = {"n": 0}

    def cheap(crystals):
        calls["n"] += len(crystals)
        return np.array([bonus[c.species[0]] - bonus[c.species[1]] for c in crystals])

    like = np.array([bonus[ELEMENTS[Z.index(a)]] - bonus[ELEMENTS[Z.index(b)]] for a, b in states])
    probs = prior_probs * np.exp(like)
    probs /= probs.sum()
    saved = {}
    for da in (False, True):
        calls["n"] = 0
        post = Posterior(model, conditioners=[cheap], marginalize_lattice=True)
        sampler = Sampler(post, t.constraints(n), SweepConfig(delayed_acceptance=da))
        x = t.random_arrays(1500, np.random.default_rng(3), n)
        state = _run(sampler, x, 8, seed=4)
        final = _np(state.position)
        p = _chi2(final.species, states, probs)
        assert p > 0.01, f"delayed_acceptance={da}: chi-square p = {p:.2g}"
        s = sampler.stats["species"]
        assert s["predictor_calls"] + 1500 == calls["n"]  # + the initial evaluation
        saved[da] = s["calls_saved"]
    assert saved[False] == 0 and saved[True] > 0


def test_failed_predictions_reject_and_are_counted(model):
    n = 2  # the template's sites; the prior appends its own padding slot
    t = Template.parse("221-a-[?]-0-0-0-b-[?]-1/2-1/2-1/2", elements=ELEMENTS)

    def flaky(crystals):
        return np.array([-np.inf if c.species[0] == "K" else 0.0 for c in crystals])

    x = t.random_arrays(200, np.random.default_rng(0), n)
    x = x._replace(species=np.where(x.species == 19, 11, x.species).astype(np.int32))
    sampler = Sampler(Posterior(model, conditioners=[flaky], marginalize_lattice=True),
                      t.constraints(n))
    state = _run(sampler, x, 3, seed=0)
    assert not np.any(np.asarray(state.position.species)[:, 0] == 19)
    assert sampler.stats["species"]["predictor_failures"] > 0
