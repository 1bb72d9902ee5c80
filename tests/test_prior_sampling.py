"""KV-cached autoregressive sampling from the prior: exact recorded log p, constraints, templates,
temperature and nucleus filtering. Every call draws 200 crystals: one compiled shape serves all."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from cfmc.priors import CrystalFormer, get_config, log_prob, sample, species_log_probs
from cfmc.priors.sample import sample_with_log_prob

from cfmc.arrays import CrystalArrays
from cfmc.wyckoff import lattice_tables, tables

NUM = 200


@pytest.fixture(scope="module")
def model():
    return CrystalFormer(get_config("tiny").replace(init_scale=0.5), jax.random.PRNGKey(0))


def _np(arrays) -> CrystalArrays:
    return CrystalArrays(*(np.asarray(f) for f in arrays))


def _check_constraints(arrays: CrystalArrays, allowed: np.ndarray | None = None) -> None:
    t, lt = tables(), lattice_tables()
    g, w, a, x, lat, m = arrays
    for b in range(len(g)):
        n = int(m[b].sum())
        assert n >= 1 and m[b, :n].all() and not m[b, n:].any()
        ws = w[b, :n]
        assert np.all(t.multiplicity[g[b], ws] > 0), (g[b], ws)
        assert np.all(np.diff(ws) >= 0), ws
        for i in range(1, n):
            if ws[i] == ws[i - 1]:
                assert t.free[g[b], ws[i]].any(), (g[b], ws)
        assert np.all((a[b, :n] >= 1) & (a[b, :n] <= 118))
        if allowed is not None:
            assert allowed[a[b, :n]].all()
        assert not w[b, n:].any() and not a[b, n:].any() and not x[b, n:].any()
        assert np.all((x[b] >= 0) & (x[b] < 1))
        for i in range(n):  # on the Wyckoff position: op0 leaves the representative unchanged
            op = t.op0[g[b], ws[i]]
            d = op[:, :3] @ x[b, i] + op[:, 3] - x[b, i]
            np.testing.assert_allclose(d - np.rint(d), 0.0, atol=1e-5)
        src = lt.source[g[b]]
        sym = np.where(src >= 0, lat[b][np.maximum(src, 0)], lt.value[g[b]])
        np.testing.assert_allclose(lat[b], sym, rtol=1e-6)


def test_recorded_log_prob_equals_log_prob(model):
    groups = np.resize([1, 2, 14, 62, 139, 166, 191, 225], NUM)
    arrays, recorded = sample_with_log_prob(model, jax.random.PRNGKey(1), groups, NUM)
    terms = log_prob(model, arrays)
    for name in terms._fields:
        got, want = np.asarray(getattr(recorded, name)), np.asarray(getattr(terms, name))
        assert np.all(np.isfinite(want)), name
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0, err_msg=name)
    _check_constraints(_np(arrays))
    counts = np.bincount(np.asarray(arrays.mask).sum(-1), minlength=model.config.max_sites + 1)
    assert (counts[1:] > 0).sum() >= 3  # a spread of crystal sizes


def test_element_mask_and_temperature(model):
    allowed = np.zeros(119, bool)
    allowed[[8, 12, 22, 56]] = True
    for temperature in (0.5, 1.5):
        arrays, recorded = sample_with_log_prob(
            model,
            jax.random.PRNGKey(2),
            225,
            NUM,
            temperature=temperature,
            allowed_species=allowed,
        )
        _check_constraints(_np(arrays), allowed)
        # The recorded log p is the untempered prior's, with the same element mask.
        np.testing.assert_allclose(
            np.asarray(recorded.total),
            np.asarray(log_prob(model, arrays, allowed).total),
            atol=1e-4,
        )


def test_template_fields_are_clamped(model):
    # 225: a (0,0,0), b (1/2,1/2,1/2), c (1/4,1/4,1/4), e (x,0,0); the rest is sampled.
    n = model.config.max_sites
    fw = np.full(n, -1)
    fw[:4] = [1, 2, 3, 5]
    fa = np.full(n, -1)
    fa[[0, 2]] = [56, 8]
    fx = np.full((n, 3), np.nan)
    fx[3, 0] = 0.2
    arrays, recorded = sample_with_log_prob(
        model,
        jax.random.PRNGKey(3),
        225,
        NUM,
        fixed_wyckoff=fw,
        fixed_species=fa,
        fixed_coords=fx,
    )
    a = _np(arrays)
    _check_constraints(a)
    assert np.all(a.wyckoff[:, :4] == [1, 2, 3, 5])
    assert np.all(a.species[:, 0] == 56) and np.all(a.species[:, 2] == 8)
    np.testing.assert_allclose(a.coords[:, 3], np.broadcast_to([0.2, 0, 0], (NUM, 3)), atol=1e-6)
    assert len(np.unique(a.species[:, 1])) > 1  # unclamped fields still vary
    np.testing.assert_allclose(
        np.asarray(recorded.total), np.asarray(log_prob(model, arrays).total), atol=1e-4
    )


def test_top_p_keeps_the_most_probable_species(model):
    n = model.config.max_sites
    fw = np.full(n, -1)
    fw[:2] = [1, 2]
    fw[2:] = 0
    arrays = _np(sample(model, jax.random.PRNGKey(4), 225, NUM, fixed_wyckoff=fw, top_p=1e-6))
    lp = np.asarray(species_log_probs(model, arrays))
    real = arrays.mask
    assert np.all(arrays.species[real] == lp[real].argmax(-1))
    # Without the filter the species vary for the same letters.
    free = _np(sample(model, jax.random.PRNGKey(4), 225, NUM, fixed_wyckoff=fw))
    assert len(np.unique(free.species[:, 0])) > 3


def test_bad_arguments_raise(model):
    with pytest.raises(ValueError, match="space group"):
        sample(model, jax.random.PRNGKey(0), 231, 2)
    with pytest.raises(ValueError, match="temperature"):
        sample(model, jax.random.PRNGKey(0), 225, 2, temperature=0.0)
    with pytest.raises(ValueError, match="no element"):
        sample(model, jax.random.PRNGKey(0), 225, 2, allowed_species=np.zeros(119, bool))
