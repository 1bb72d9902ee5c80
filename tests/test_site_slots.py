"""Arrays cut after the last real site give the prior's full log density (site moves use them).

Tolerance: 1e-5 absolute plus 2e-6 relative (16 float32 ulps). Cut arrays change the shapes of
the reductions and matrix products, so the result moves by float32 rounding, as the plain log_prob
does when only the batch changes: with the shipped prior on its own samples (|log p| < 20) the
plain log_prob moves by up to 1.0e-5 between batch orders, the cut one by up to 2.4e-5.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from cfmc.arrays import CrystalArrays
from cfmc.posterior import (
    SITE_BUCKET,
    Posterior,
    restore_sites,
    site_bucket,
    trim_sites,
)
from cfmc.sweep import Sampler, SweepConfig
from cfmc.template import Template

priors = pytest.importorskip("cfmc.priors")

ATOL, RTOL = 1e-5, 2e-6
N = 12  # slots of the padded arrays: cuts at 4, 8 and 12


def _model(exclusion: bool):
    # sigma_min: the random lattice head's widths are kept from turning float32 rounding of its
    # parameters into large density differences
    config = priors.get_config("tiny").replace(init_scale=0.5, max_sites=N, sigma_min=0.05,
                                               exclusion=exclusion)
    return priors.CrystalFormer(config, jax.random.PRNGKey(1))


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "exclusion"])
def model(request):
    return _model(request.param)


@pytest.fixture(scope="module")
def plain_model():
    """The sweep test's model: with the exclusion zone the cut density is the full one too
    (test_cut_arrays_give_the_full_log_density), so a sweep on it would test nothing new."""
    return _model(False)


def _crystals(model, spacegroup: int, lo: int, hi: int, seed: int) -> CrystalArrays:
    """16 prior draws cut to lo..hi real sites each (draws with fewer sites keep theirs)."""
    x = CrystalArrays(*(np.array(f) for f in priors.sample(
        model, jax.random.PRNGKey(seed), spacegroup, 16)))
    k = np.minimum(np.random.default_rng(seed).integers(lo, hi + 1, 16), x.mask.sum(1))
    keep = np.arange(N)[None, :] < k[:, None]
    return CrystalArrays(x.spacegroup, np.where(keep, x.wyckoff, 0),
                         np.where(keep, x.species, 0), np.where(keep[..., None], x.coords, 0.0),
                         x.lattice, keep)


def _assert_same(cut, ref, what: str) -> None:
    for name in ref._fields:
        np.testing.assert_allclose(np.asarray(getattr(cut, name)), np.asarray(getattr(ref, name)),
                                   rtol=RTOL, atol=ATOL, err_msg=f"{name}, {what}")


@pytest.mark.parametrize("spacegroup", [1, 62, 225])
def test_cut_arrays_give_the_full_log_density(model, spacegroup):
    for lo, hi in ((1, 4), (5, 8), (9, N)):  # crystals of every length, at every cut above them
        x = _crystals(model, spacegroup, lo, hi, seed=spacegroup + hi)
        ref = priors.log_prob(model, x)
        assert np.all(np.isfinite(np.asarray(ref.total)))
        assert site_bucket(x.mask) <= SITE_BUCKET * -(-hi // SITE_BUCKET)
        for n in range(site_bucket(x.mask), N + 1, SITE_BUCKET):
            _assert_same(priors.log_prob(model, trim_sites(x, n)), ref,
                         f"{lo}-{hi} sites cut at {n}")


def test_cut_arrays_give_the_same_species_conditionals(model):
    x = _crystals(model, 225, 1, 8, seed=3)
    n = site_bucket(x.mask)
    ref = np.asarray(priors.species_log_probs(model, x))[:, :n]
    cut = np.asarray(priors.species_log_probs(model, trim_sites(x, n)))
    real = x.mask[:, :n]
    np.testing.assert_allclose(np.where(real[..., None], cut, 0.0),
                               np.where(real[..., None], ref, 0.0), rtol=0, atol=ATOL)


def test_site_bucket_and_restore():
    mask = np.zeros((3, 20), bool)
    mask[0, :2] = mask[1, :5] = True
    assert site_bucket(mask) == 8
    assert site_bucket(mask[:1]) == 4
    assert site_bucket(np.ones((2, 6), bool)) == 6
    rng = np.random.default_rng(0)
    x = CrystalArrays(np.ones(3, np.int32), rng.integers(0, 5, (3, 20)),
                      rng.integers(0, 9, (3, 20)), rng.random((3, 20, 3), np.float32),
                      rng.random((3, 6), np.float32),
                      mask)
    back = restore_sites(trim_sites(x, 8), x)
    for a, b in zip(back, x, strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)


def test_sweep_on_cut_arrays_matches_the_full_arrays(plain_model):
    """The sampler cuts padded arrays for its site moves: same keys, same chains, densities equal
    to the full evaluation."""
    template = Template.parse("225-a-[?]-0-0-0-b-[?]-1/2-1/2-c-[?]-1/4-1/4-e-[?]-[?]-0-0")
    x = template.random_arrays(16, np.random.default_rng(0), N)
    states = {}
    for trims in (True, False):
        post = Posterior(plain_model, marginalize_lattice=True)
        post.prior = post.prior._replace(trims=trims)
        sampler = Sampler(post, template.constraints(N), SweepConfig(species_proposal="prior"))
        assert post.site_slots(x.mask, sampler.constraints.differ) == (4 if trims else N)
        state = sampler.init(x)
        for i in range(3):
            state, _ = sampler.run_one(jax.random.PRNGKey(0), i, state)
        states[trims] = state
    cut, full = states[True], states[False]
    assert cut.position.wyckoff.shape == (16, N)
    np.testing.assert_array_equal(np.asarray(cut.position.species),
                                  np.asarray(full.position.species))
    np.testing.assert_allclose(np.asarray(cut.position.coords), np.asarray(full.position.coords),
                               atol=1e-6)
    post = Posterior(plain_model, marginalize_lattice=True)
    np.testing.assert_allclose(cut.log_prior, post.prior_logdensity(cut.position), rtol=RTOL,
                               atol=ATOL)
