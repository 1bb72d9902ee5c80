"""The exclusion zone of the prior (`priors/exclusion.py`): the holed coordinate density is exactly
normalised, its rejection sampler draws from it (KS test), and a model with the zone samples with
recorded log p equal to `log_prob`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cfmc.priors import CrystalFormer, get_config, load_prior, log_prob, save_prior
from cfmc.priors.density import coord_log_prob
from cfmc.priors.exclusion import ExclusionZone, log_hole_factor, log_normaliser
from cfmc.priors.model import with_exclusion_zone, without_exclusion_zone
from cfmc.priors.sample import draw_excluded, sample_with_log_prob
from scipy import stats

from cfmc.arrays import CrystalArrays
from cfmc.cli import main

GRID = (np.arange(200_000) + 0.5) / 200_000


def _random_density(seed: int, kappa: float):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = jax.random.normal(k1, (48,)) * jnp.repeat(jnp.array([1.0, 2.0, 4.0]), 16)
    centres = jax.random.uniform(k2, (4,))
    weights = 0.99 * jax.random.uniform(k3, (4,))
    return params, centres, weights, jnp.float32(kappa)


def _log_density(params, centres, weights, kappa, u):
    return (
        coord_log_prob(params, u, 1e-2)
        + log_hole_factor(u, centres, weights, kappa)
        - log_normaliser(params, centres, weights, kappa, 1e-2)
    )


@pytest.mark.parametrize("kappa", [0.5, 5.0, 200.0])
def test_holed_density_integrates_to_one(kappa):
    for seed in range(4):
        p, c, w, k = _random_density(seed, kappa)
        mass = float(jnp.mean(jnp.exp(_log_density(p, c, w, k, jnp.asarray(GRID)))))
        assert abs(mass - 1.0) < 1e-4, (seed, mass)
        assert float(log_normaliser(p, c, w, k, 1e-2)) < -1e-3  # the holes remove mass


def test_rejection_sampler_draws_the_holed_density():
    p, c, w, k = _random_density(7, 5.0)
    w = jnp.full(4, 0.99)  # deep holes: the plain mixture is then clearly another distribution
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    draw = jax.jit(jax.vmap(lambda key: draw_excluded(key, p, 1.0, 1e-2, c, w, k)))
    u = np.mod(np.asarray(draw(keys)) / (2 * np.pi) + 0.5, 1.0)
    dens = np.exp(np.asarray(_log_density(p, c, w, k, jnp.asarray(GRID))))
    cdf_grid = np.cumsum(dens) / dens.sum()

    def cdf(x):
        return np.interp(x, GRID, cdf_grid)

    assert stats.kstest(u, cdf).pvalue > 0.01
    # The same test rejects draws from the mixture without holes (the test has power).
    plain = jax.jit(jax.vmap(lambda key: draw_excluded(key, p, 1.0, 1e-2, c, 0 * w, k)))
    v = np.mod(np.asarray(plain(keys)) / (2 * np.pi) + 0.5, 1.0)
    assert stats.kstest(v, cdf).pvalue < 1e-6


@pytest.fixture(scope="module")
def zone_model():
    config = get_config("tiny").replace(init_scale=0.5, exclusion=True)
    model = CrystalFormer(config, jax.random.PRNGKey(0))
    # A deep, wide zone, so that holes change the density noticeably.
    return with_exclusion_zone(
        CrystalFormer(config.replace(exclusion=False), jax.random.PRNGKey(0)),
        ExclusionZone(depth=0.99, kappa=3.0, width=0.3),
    ), model


def test_sampler_and_density_agree_with_the_zone(zone_model):
    model, _ = zone_model
    groups = np.resize([1, 2, 12, 62, 139, 166, 191, 225], 200)
    arrays, recorded = sample_with_log_prob(model, jax.random.PRNGKey(3), groups, 200)
    terms = log_prob(model, arrays)
    for name in terms._fields:
        got, want = np.asarray(getattr(recorded, name)), np.asarray(getattr(terms, name))
        assert np.all(np.isfinite(want)), name
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0, err_msg=name)
    plain = np.asarray(log_prob(without_exclusion_zone(model), arrays).coords)
    changed = np.abs(plain - np.asarray(terms.coords)) > 1e-3
    assert changed.mean() > 0.3  # the zone acts on many crystals


def test_zone_checkpoint_round_trip(zone_model, tmp_path):
    model, fresh = zone_model
    assert fresh.exclusion is not None and model.config.exclusion
    save_prior(model, tmp_path / "zone")
    back = load_prior(tmp_path / "zone")
    assert back.config == model.config
    arrays, _ = sample_with_log_prob(model, jax.random.PRNGKey(4), 225, 200)
    arrays = CrystalArrays(*(np.asarray(f) for f in arrays))
    np.testing.assert_allclose(
        np.asarray(log_prob(back, arrays).total), np.asarray(log_prob(model, arrays).total)
    )


def test_exclusion_zone_flag_needs_init(tmp_path):
    assert main(["train", "--exclusion-zone", "--out", str(tmp_path / "run")]) == 2


def test_fit_only_the_zone(prior_dir, data_dir, tmp_path):
    """`cfmc train --exclusion-zone --trainable exclusion`: the zone's scalars move, the
    transformer's weights stay exactly as they were."""
    out = tmp_path / "zone"
    argv = ["train", str(data_dir / "mp20_biternary_val.csv.gz"), "--init", str(prior_dir),
            "--exclusion-zone", "--trainable", "exclusion", "--lr", "0.05", "--warmup-steps", "1",
            "--limit", "300", "--batch-size", "20", "--epochs", "2", "--no-progress",
            "--out", str(out)]
    assert main(argv) == 0
    start, end = load_prior(prior_dir), load_prior(out / "best")
    assert start.exclusion is None and end.config.exclusion
    old = jax.tree_util.tree_leaves(start)
    new = jax.tree_util.tree_leaves(end)
    assert len(new) == len(old) + 3
    assert all(np.array_equal(a, b) for a, b in zip(old, new[: len(old)], strict=True))
    fresh = ExclusionZone()
    moved = [float(getattr(end.exclusion, f)) - float(getattr(fresh, f))
             for f in ("depth_logit", "log_kappa", "log_width")]
    assert max(abs(m) for m in moved) > 1e-2
