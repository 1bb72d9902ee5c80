"""The prior block move: exact against enumerated posteriors (the prior; the prior times a
conditioner under a differ pair), every proposal accepted when the target is the prior itself
and the block the whole sequence, and every state a valid crystal of the group.
(Same set-up as test_kernels.py.)
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from kernel_testing import ELEMENTS, Z, as_numpy, chi2_pvalue, run_chains

from cfmc import wyckoff
from cfmc.arrays import CrystalArrays
from cfmc.chemistry import element_mask
from cfmc.crystal import from_arrays
from cfmc.kernels import free_constraints, population_proposal, prior_block_proposal
from cfmc.posterior import Posterior
from cfmc.sweep import Sampler, SweepConfig
from cfmc.template import Template

BLOCK_ONLY = SweepConfig(block=True, species=False, coords=False)


def template_block(model, t: Template):
    return prior_block_proposal(model, **t.sampler_clamps(model.config.max_sites))


def enumerated_cases(binary):
    """(conditioners, template, exact state probabilities) of the two enumerated targets: the
    prior alone, and the prior times a cheap conditioner with a differ pair (one target for both,
    as each target compiles its own sweep)."""
    t, states, prior_probs = binary
    bonus = {"Na": 1.5, "K": -1.0, "Cl": 0.5, "Br": 0.0}

    def cheap(crystals):
        return np.array([bonus[c.species[0]] - bonus[c.species[1]] for c in crystals])

    like = np.array([bonus[ELEMENTS[Z.index(a)]] - bonus[ELEMENTS[Z.index(b)]] for a, b in states])
    differ = Template.parse("221-a-[?]-0-0-0-b-[?]-1/2-1/2-1/2", elements=ELEMENTS,
                            differ=[(0, 1)])
    apart = states[:, 0] != states[:, 1]
    return [([], t, prior_probs),
            ([cheap], differ, np.where(apart, prior_probs * np.exp(like), 0.0))]


PRIOR_ALONE, CONDITIONED_DIFFER = range(2)


@pytest.mark.parametrize(("tries", "case"), [(1, PRIOR_ALONE), (1, CONDITIONED_DIFFER),
                                             (4, CONDITIONED_DIFFER)])
def test_block_move_matches_enumerated_posterior(model, binary, tries, case):
    """The prior alone, and the prior times a conditioner under a differ pair; with one try
    (Metropolis-Hastings) and with four (i-SIR)."""
    states = binary[1]
    conds, template, probs = enumerated_cases(binary)[case]
    post = Posterior(model, conditioners=conds, marginalize_lattice=True)
    config = dataclasses.replace(BLOCK_ONLY, block_tries=tries)
    sampler = Sampler(post, template.constraints(2), config, block=template_block(model, template))
    x = template.random_arrays(600, np.random.default_rng(5 + case), 2)
    # ~half the proposals accepted with one try; i-SIR with four moves more often
    state = run_chains(sampler, x, 12 if tries == 1 else 6, seed=6 + case)
    final = as_numpy(state.position)
    assert template.check_arrays(final).all()
    p = chi2_pvalue(final.species, states, probs)
    assert p > 0.01, f"case {case}, {tries} tries: chi-square p = {p:.2g}"
    assert 0.05 < state.stats["block"]["accepted"] / state.stats["block"]["proposed"] < 1


@pytest.mark.parametrize("lattice", [False, True])
def test_whole_sequence_block_under_the_prior_is_always_accepted(model, lattice):
    """Lattice marginalised (the block leaves it), or in the chain (the block redraws it)."""
    from cfmc import priors

    g, chains = 12, 48
    start = as_numpy(priors.sample(model, jax.random.PRNGKey(1), g, chains))
    post = Posterior(model, marginalize_lattice=not lattice)
    allowed = element_mask(exclude_radioactive=False)
    sampler = Sampler(post, free_constraints(start, allowed), BLOCK_ONLY,
                      block=prior_block_proposal(model, lattice=lattice))
    state = sampler.init(start)
    key = jax.random.PRNGKey(2)
    sites = set()
    for i in range(3):
        state, stats = sampler.sweep(jax.random.fold_in(key, i), state)
        arr = as_numpy(state.position)
        sites.update(arr.mask.sum(1).tolist())
        for c in from_arrays(arr):  # valid Wyckoff sequences of the group, as the prior draws
            index = [wyckoff.check_letter(g, w) for w in c.wyckoff]  # them (the tiny random
            assert c.spacegroup == g and index == sorted(index)  # prior may put atoms close)
    s = state.stats["block"]
    assert s["proposed"] == 3 * chains
    # every valid proposal accepted (but for float32 rounding of the two density paths); the
    # tiny random prior draws impossible cells most of the time: invalid proposals, rejected
    assert s["invalid"] < s["proposed"] and (lattice or s["invalid"] == 0)
    assert s["accepted"] >= s["proposed"] - s["invalid"] - 2
    assert len(sites) > 1  # the number of sites changes: a trans-dimensional move


@pytest.mark.parametrize("case", [PRIOR_ALONE, CONDITIONED_DIFFER])
def test_population_block_keeps_the_enumerated_posterior(model, binary, case):
    """i-SIR with the pool proposal, fitted to a pool far from the posterior (three quarters one
    fill), leaves the enumerated posterior invariant: chains started from exact draws of it are
    still distributed as it after the moves (prior; prior times a conditioner under a differ
    pair)."""
    states = binary[1]
    conds, template, probs = enumerated_cases(binary)[case]
    probs = probs / probs.sum()
    rng = np.random.default_rng(15 + case)
    pool = template.random_arrays(400, rng, 2)
    pool = pool._replace(species=np.where(np.arange(400)[:, None] < 300, pool.species[:1],
                                          pool.species))
    proposal = population_proposal(template, 2, eps=0.3)
    proposal = proposal._replace(initial=proposal.fit(pool))
    post = Posterior(model, conditioners=conds, marginalize_lattice=True)
    config = dataclasses.replace(BLOCK_ONLY, block_tries=3)
    sampler = Sampler(post, template.constraints(2), config, block=proposal)
    x = template.random_arrays(1500, rng, 2)
    x = x._replace(species=states[rng.choice(len(states), 1500, p=probs)].astype(np.int32))
    state = run_chains(sampler, x, 4, seed=16 + case)
    final = as_numpy(state.position)
    assert template.check_arrays(final).all()
    p = chi2_pvalue(final.species, states, probs)
    assert p > 0.01, f"case {case}: chi-square p = {p:.2g}"
    moved = np.mean(np.any(final.species != x.species, axis=1))
    assert moved > 0.1, moved  # the chains did move: the test is not vacuous


def test_population_proposal_draws_follow_its_density(binary):
    """The pool proposal's log density is the density of its draws (what i-SIR's exactness rests
    on): normalised over the enumerated fills, and their frequencies in its draws match it."""
    t, states, _ = binary
    rng = np.random.default_rng(21)
    pool = t.random_arrays(300, rng, 2)
    # a skewed sample: the first slot mostly one element, so it is the class slot
    pool = pool._replace(species=np.where(np.arange(300)[:, None] < 200,
                                          np.array([[states[0][0], 0]]), pool.species))
    pool = pool._replace(species=np.where(pool.species == 0, states[5][1], pool.species))
    proposal = population_proposal(t, 2, eps=0.3)
    fit = proposal.fit(pool, rng.normal(size=300))
    assert fit.classes.shape[1] == 1 and fit.free_slots.shape == (1,)
    base = jax.tree.map(lambda f: jnp.asarray(f[0]), t.random_arrays(1, rng, 2))
    cons = jax.tree.map(jnp.asarray, t.constraints(2))
    d = jax.jit(lambda k: proposal.draws(k, base, cons, 0, 6000, fit))(
        jax.random.PRNGKey(22))
    sp = np.asarray(d.positions.species)
    # every enumerated fill's density, read off draws that propose it
    log_q = {}
    for s, lq in zip(map(tuple, sp[:, :2]), np.asarray(d.log_q), strict=True):
        log_q.setdefault(s, lq)
    probs = np.array([np.exp(log_q.get(tuple(s), -np.inf)) for s in states])
    assert set(log_q) <= set(map(tuple, states))
    assert len(log_q) == len(states)  # every allowed fill is proposed
    assert abs(probs.sum() - 1.0) < 1e-4, probs.sum()
    p = chi2_pvalue(sp, states, probs)
    assert p > 0.01, f"chi-square p = {p:.2g}"


def test_population_refit_is_the_pool_and_the_chains(model, binary):
    """At the end of burn-in a template's proposal is refitted to its pool (weights to 1 -
    share) and the chains' states (share); the sampler's `end_burn_in` installs that fit, and a
    class only the chains hold becomes a class of the proposal."""
    from cfmc.kernels.population import pool_refit

    t, states, _ = binary
    rng = np.random.default_rng(31)
    pool = t.random_arrays(200, rng, 2)
    pool = pool._replace(species=np.broadcast_to(states[0], (200, 2)).astype(np.int32))
    chains = t.random_arrays(50, rng, 2)
    chains = chains._replace(species=np.broadcast_to(states[5], (50, 2)).astype(np.int32))
    proposal = population_proposal(t, 2, eps=0.3)
    fit = proposal.fit(pool)
    refit = pool_refit(proposal, pool, np.zeros(200), share=0.25)
    both = refit(fit, chains)
    expected = proposal.fit(CrystalArrays(*(np.concatenate([a, b])
                                            for a, b in zip(pool, chains, strict=True))),
                            np.r_[np.full(200, np.log(0.75 / 200)), np.full(50, np.log(0.25 / 50))])
    assert all(np.allclose(a, b) for a, b in zip(both, expected, strict=True))
    classes = np.asarray(both.classes)
    weights = np.exp(np.asarray(both.class_log_weights))
    slot = int(np.asarray(both.class_slots)[0])
    assert weights[classes[:, 0] == states[5][slot]].sum() == pytest.approx(0.25, abs=1e-5)
    post = Posterior(model, marginalize_lattice=True)
    sampler = Sampler(post, t.constraints(2), BLOCK_ONLY,
                      block=proposal._replace(initial=fit, refit=refit))
    state = sampler.init(chains)
    ended = sampler.end_burn_in(state)
    assert all(np.allclose(a, b) for a, b in zip(ended.block_fit, both, strict=True))
    with pytest.raises(ValueError, match="refit_share"):
        pool_refit(proposal, pool, np.zeros(200), share=-0.1)
