"""The crystal pool block proposal of free design: i-SIR with it keeps the posterior (chains
started from exact draws of it are still distributed as it, lattice in the chain, a conditioner
on the number of sites), it changes letters and the number of sites, and every state is a valid
crystal of the group. (Same tiny prior as test_kernels.py.)

Exact draws are the prior's own draws without element masks (under a mask the sampler
renormalises every species conditional, which is not the prior restricted to those elements),
kept where their skeleton (Wyckoff letters) is in the pool: the kernel leaves the others to the
other moves, so it must keep the posterior restricted to the pool's skeletons.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from kernel_testing import as_numpy, run_chains
from scipy import stats

from cfmc import wyckoff
from cfmc.arrays import CrystalArrays
from cfmc.chemistry import element_mask
from cfmc.crystal import from_arrays
from cfmc.kernels import crystal_pool_proposal, free_constraints
from cfmc.posterior import Posterior
from cfmc.sweep import Sampler, SweepConfig

G = 225
BLOCK_ONLY = SweepConfig(block=True, species=False, coords=False, lattice=True, block_tries=3)
K, NA = 19, 11


def sites_term(crystals) -> np.ndarray:
    """A cheap conditioner on the number of sites (at most 0)."""
    return np.array([-0.6 * (len(c.species) - 1) for c in crystals])


def prior_draws(model, post: Posterior, num: int, seed: int) -> CrystalArrays:
    """Prior draws of the group with a finite posterior density (a valid cell)."""
    from cfmc import priors

    x = as_numpy(priors.sample(model, jax.random.PRNGKey(seed), G, num))
    ok = np.isfinite(np.asarray(post.prior_logdensity(x)))
    return x.take(np.flatnonzero(ok))


def skeletons(x: CrystalArrays) -> list[tuple]:
    return [tuple(w) for w in x.wyckoff]


def exact_draws(model, post: Posterior, num: int, seed: int, pool: CrystalArrays
                ) -> CrystalArrays:
    """`num` exact draws of prior x conditioner restricted to the pool's skeletons, by
    rejection (the term is at most 0)."""
    x = prior_draws(model, post, 4 * num, seed)
    known = set(skeletons(pool))
    x = x.take(np.flatnonzero([c in known for c in skeletons(x)]))
    u = np.random.default_rng(seed).uniform(size=len(x.mask))
    x = x.take(np.flatnonzero(np.log(u) < sites_term(from_arrays(x))))
    assert len(x.mask) >= num, len(x.mask)
    return x.take(np.arange(num))


def features(x: CrystalArrays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the Wyckoff letters as one category, the first site's element, lattice length a)."""
    skeleton = ["-".join(map(str, w[m])) for w, m in zip(x.wyckoff, x.mask, strict=True)]
    return (np.asarray(skeleton), np.asarray(x.species[:, 0]).astype(str),
            np.asarray(x.lattice[:, 0], np.float64))


def two_sample_chi2(a: np.ndarray, b: np.ndarray) -> float:
    """Chi-square p-value that two samples of categories come from one distribution (categories
    with fewer than 10 draws in all pooled)."""
    cats, counts = np.unique(np.concatenate([a, b]), return_counts=True)
    rare = set(cats[counts < 10])
    a = np.where(np.isin(a, list(rare)), "rare", a)
    b = np.where(np.isin(b, list(rare)), "rare", b)
    cats = np.unique(np.concatenate([a, b]))
    table = np.array([[np.sum(a == c) for c in cats], [np.sum(b == c) for c in cats]])
    return stats.chi2_contingency(table).pvalue


def test_crystal_pool_block_keeps_the_posterior(model):
    """Pool far from the posterior (fewest sites weighted up); chains from exact draws, six
    i-SIR sweeps; the Wyckoff letters and the first element (chi-square), lattice length
    (KS) against an independent exact sample. The tiny random prior's lattices and coordinates
    spread widely, so the kernels are wide for the chains to move."""
    post = Posterior(model, conditioners=[sites_term], marginalize_lattice=False)
    pool = prior_draws(model, post, 1000, seed=30)
    proposal = crystal_pool_proposal(G, coord_bandwidth=0.2, length_bandwidth=0.4,
                                     angle_bandwidth=20.0, max_members=len(pool.mask),
                                     allowed=element_mask(exclude_radioactive=False))
    proposal = proposal._replace(initial=proposal.fit(pool, -1.5 * pool.mask.sum(1)))
    x = exact_draws(model, post, 600, 31, pool)
    allowed = element_mask(exclude_radioactive=False)
    sampler = Sampler(post, free_constraints(x, allowed), BLOCK_ONLY, block=proposal)
    state = run_chains(sampler, x, 6, seed=33)
    final = as_numpy(state.position)
    for c in from_arrays(final):  # valid Wyckoff sequences of the group
        index = [wyckoff.check_letter(G, w) for w in c.wyckoff]
        assert c.spacegroup == G and index == sorted(index)
    reference = exact_draws(model, post, 600, 41, pool)
    (sk_f, el_f, a_f), (sk_r, el_r, a_r) = features(final), features(reference)
    p = [two_sample_chi2(sk_f, sk_r), two_sample_chi2(el_f, el_r),
         stats.ks_2samp(a_f, a_r).pvalue]
    assert min(p) > 0.01, p
    # not vacuous: chains moved between skeletons, and between numbers of sites
    # (the tiny random prior is peaked, so few pool crystals suit a chain: 2 to 10 % move)
    assert np.mean(np.any(final.wyckoff != x.wyckoff, axis=1)) > 0.02
    assert np.mean(final.mask.sum(1) != x.mask.sum(1)) > 0.01


def test_bad_pool_settings_are_named(model):
    with pytest.raises(ValueError, match="coord_bandwidth"):
        crystal_pool_proposal(G, coord_bandwidth=0.0)
    proposal = crystal_pool_proposal(G)
    post = Posterior(model, marginalize_lattice=False)
    pool = prior_draws(model, post, 20, seed=3)
    with pytest.raises(ValueError, match="finite weight"):
        proposal.fit(pool, np.full(len(pool.mask), -np.inf))
    with pytest.raises(ValueError, match="space group 225"):
        proposal.fit(pool._replace(spacegroup=np.full_like(pool.spacegroup, 12)))


def test_a_single_crystal_pool_proposes_its_kernel():
    """With one pool crystal the draws' free coordinate and lattice length follow the kernel
    whose log density the proposal reports (KS against the wrapped normal / log-normal)."""
    g, bw = 221, (0.03, 0.05, 2.0)
    w = np.zeros(6, np.int32)
    w[:2] = [wyckoff.check_letter(g, "a"), wyckoff.check_letter(g, "e")]  # e: (x, 0, 0)
    member = CrystalArrays(np.array([g]), w[None], np.array([[NA, K, 0, 0, 0, 0]], np.int32),
                           np.zeros((1, 6, 3), np.float32) + np.array([0, 0.25, 0])[None, None],
                           np.array([[4.0, 4.0, 4.0, 90, 90, 90]], np.float32),
                           (w > 0)[None])
    member.coords[0, 1] = [0.25, 0.0, 0.0]
    member.coords[0, 0] = [0.0, 0.0, 0.0]
    proposal = crystal_pool_proposal(g, *bw, max_members=1, allowed=element_mask())
    fit = proposal.fit(member)
    position = jax.tree.map(lambda v: v[0], member)
    cons = jax.tree.map(lambda v: v[0], free_constraints(member, element_mask()))
    d = proposal.draws(jax.random.PRNGKey(0), position, cons, 0, 4000, fit)
    x = np.asarray(d.positions.coords[:, 1, 0], np.float64)
    a = np.asarray(d.positions.lattice[:, 0], np.float64)
    assert np.all(np.asarray(d.is_valid))
    assert np.allclose(np.asarray(d.positions.lattice[:, 1]), a)  # cubic: b = c = a
    assert np.all(np.asarray(d.positions.coords[:, 1, 1:]) == 0)  # tied by the position
    assert stats.kstest(x, stats.norm(0.25, bw[0]).cdf).pvalue > 0.01
    assert stats.kstest(np.log(a), stats.norm(np.log(4.0), bw[1]).cdf).pvalue > 0.01
    sp = np.asarray(d.positions.species[:, :2])
    kept = np.all(sp == [NA, K], axis=1)
    log_f = np.asarray(fit.log_frequencies)
    redraw = np.log(0.3) + log_f[0, sp[:, 0]] + log_f[1, sp[:, 1]]
    assert 0.2 < 1 - kept.mean() < 0.4  # eps = 0.3 of the draws redraw the elements
    expected = (np.logaddexp(np.where(kept, np.log(0.7), -np.inf), redraw)
                + stats.norm(0.25, bw[0]).logpdf(x) + stats.norm(np.log(4.0), bw[1]).logpdf(
                    np.log(a)) - np.log(a))
    assert np.allclose(np.asarray(d.log_q), expected, atol=1e-3)


def test_refit_adds_the_chains_with_their_share(model):
    """At the end of burn-in the proposal becomes the pool and the chains' states, the chains
    (equal weights) holding `refit_share` of it; the sampler's `end_burn_in` installs it."""
    post = Posterior(model, marginalize_lattice=False)
    pool = prior_draws(model, post, 12, seed=5)
    chains = prior_draws(model, post, 4, seed=6)
    proposal = crystal_pool_proposal(G, refit_share=0.25)
    fit = proposal.fit(pool, -0.5 * pool.mask.sum(1))
    refitted = proposal.refit(fit, chains)
    assert refitted.wyckoff.shape == fit.wyckoff.shape  # padded alike: one compilation
    weights = np.exp(np.asarray(refitted.log_weights, np.float64))
    assert np.count_nonzero(weights) == np.count_nonzero(np.exp(fit.log_weights)) + 4
    assert weights.sum() == pytest.approx(1.0, abs=1e-5)
    for j in range(4):  # each chain state is a member with weight 0.25 / 4
        same = (np.all(np.asarray(refitted.wyckoff) == chains.wyckoff[j], axis=1)
                & np.all(np.asarray(refitted.species) == chains.species[j], axis=1)
                & np.all(np.isclose(np.asarray(refitted.lattice), chains.lattice[j]), axis=1))
        assert np.isclose(weights[same], 0.25 / 4, atol=1e-6).any()
    again = proposal.refit(fit, chains)  # deterministic: a resumed run refits alike
    assert all(np.array_equal(a, b) for a, b in zip(refitted, again, strict=True))
    sampler = Sampler(post, free_constraints(chains, element_mask()), BLOCK_ONLY,
                      block=proposal._replace(initial=fit))
    state = sampler.init(chains)
    assert state.block_fit is fit
    ended = sampler.end_burn_in(state).block_fit
    assert all(np.array_equal(a, b) for a, b in zip(ended, refitted, strict=True))
    assert crystal_pool_proposal(G, refit_share=0.0).refit is None
    with pytest.raises(ValueError, match="refit_share"):
        crystal_pool_proposal(G, refit_share=1.0)
