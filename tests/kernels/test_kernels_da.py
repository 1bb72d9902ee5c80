"""Delayed acceptance and predictor failures in the sweep engine.
(Same set-up as test_kernels.py.)

A small randomly initialised CrystalFormer (larger init scale so its conditionals are far from
uniform) times a cheap conditioner gives the target; 16 enumerable states give exact
probabilities.
Independent samples come from the final states of many chains.
"""

from __future__ import annotations

import numpy as np
from kernel_testing import ELEMENTS, Z, as_numpy, chi2_pvalue, run_chains

from cfmc.posterior import Posterior
from cfmc.sweep import Sampler, SweepConfig
from cfmc.template import Template


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
        # delayed acceptance screens moves out, so it mixes slower: sweeps to reach stationarity
        state = run_chains(sampler, x, 20, seed=4)
        final = as_numpy(state.position)
        p = chi2_pvalue(final.species, states, probs)
        assert p > 0.01, f"delayed_acceptance={da}: chi-square p = {p:.2g}"
        s = state.stats["species"]
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
    state = run_chains(sampler, x, 3, seed=0)
    assert not np.any(np.asarray(state.position.species)[:, 0] == 19)
    assert state.stats["species"]["predictor_failures"] > 0


def test_split_move_is_the_one_program_step(model):
    """The sweep runs a move with conditioners as two programs around one host call; the same
    kernel as one jitted step (conditioners through jax.pure_callback) gives the same chains."""
    import jax
    import jax.numpy as jnp

    from cfmc.kernels import build_kernel, uniform_proposal
    from cfmc.sweep import move_key

    t = Template.parse("221-a-[?]-0-0-0-b-[?]-1/2-1/2-1/2", elements=ELEMENTS)
    bonus = {"Na": 1.5, "K": -1.0, "Cl": 0.5, "Br": 0.0}

    def cheap(crystals):
        return np.array([bonus[c.species[0]] - bonus[c.species[1]] for c in crystals])

    x = t.random_arrays(64, np.random.default_rng(5), 2)
    key = jax.random.PRNGKey(6)
    for da in (False, True):
        post = Posterior(model, conditioners=[cheap], marginalize_lattice=True)
        sampler = Sampler(post, t.constraints(2), SweepConfig(coords=False, delayed_acceptance=da))
        assert [kind for kind, _ in sampler.schedule()] == ["species", "species"]
        state = sampler.init(x)
        swept, _ = sampler.sweep(key, state)
        kernel = build_kernel(uniform_proposal(), da)
        cons = jax.tree.map(jnp.asarray, t.constraints(2).broadcast(64))
        ids = jnp.asarray(state.chain_ids)
        chains = state.chains
        for site in (0, 1):
            keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(
                move_key(key, "species", site), ids)
            def one(k, s, c, site=site, kernel=kernel, target=sampler.target):
                return kernel(k, s, target, c, jnp.int32(site), jnp.float32(0.0),
                              jnp.float32(1.0))

            chains, _ = jax.jit(jax.vmap(one))(keys, chains, cons)
        one, two = jax.device_get((chains, swept.chains))
        np.testing.assert_array_equal(one.position.species, two.position.species)
        np.testing.assert_allclose(one.logdensity, two.logdensity, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(one.log_likelihood, two.log_likelihood, rtol=1e-6,
                                   atol=1e-6)
