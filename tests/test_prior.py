"""The CrystalFormer prior: masks, normalisation of every conditional, exactness of log_prob,
checkpoints, and a short training run. A tiny config keeps compilation short."""

from __future__ import annotations

import dataclasses
import itertools
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cfmc.priors import (
    CrystalFormer,
    TrainOptions,
    get_config,
    letter_log_probs,
    load_prior,
    log_prob,
    save_prior,
    species_log_probs,
    train,
)
from cfmc.priors.density import (
    _heads,
    coord_log_prob,
    lattice_log_prob,
    wyckoff_tables,
)

from cfmc.arrays import CrystalArrays
from cfmc.wyckoff import lattice_tables, tables


@pytest.fixture(scope="module")
def config():
    # A larger initial scale makes the random conditionals far from uniform.
    return get_config("tiny").replace(init_scale=0.5)


@pytest.fixture(scope="module")
def model(config):
    return CrystalFormer(config, jax.random.PRNGKey(0))


def random_crystals(
    groups, per_group: int, n_slots: int, seed: int = 0, elements=None
) -> CrystalArrays:
    """Valid random crystals (letter order, unique fixed positions, symmetric lattice)."""
    t, lt = tables(), lattice_tables()
    rng = np.random.default_rng(seed)
    rows = []
    for g in groups:
        letters = np.nonzero(t.multiplicity[g, 1:])[0] + 1
        for _ in range(per_group):
            n = int(rng.integers(1, n_slots + 1))
            ws = np.sort(rng.choice(letters, size=n))
            keep = [i for i in range(n) if i == 0 or ws[i] != ws[i - 1] or t.free[g, ws[i]].any()]
            ws = ws[keep]
            w = np.zeros(n_slots, np.int32)
            z = np.zeros(n_slots, np.int32)
            x = np.zeros((n_slots, 3), np.float32)
            w[: len(ws)] = ws
            z[: len(ws)] = rng.choice(elements or np.arange(1, 119), size=len(ws))
            for i, wi in enumerate(ws):
                op = t.op0[g, wi]
                x[i] = np.mod(op[:, :3] @ rng.random(3) + op[:, 3], 1.0)
            lat = np.concatenate([rng.uniform(3, 12, 3), rng.uniform(60, 120, 3)])
            src = lt.source[g]
            lat = np.where(src >= 0, lat[np.maximum(src, 0)], lt.value[g])
            rows.append((g, w, z, x, lat.astype(np.float32), w > 0))
    return CrystalArrays(*(np.stack(c) for c in zip(*rows, strict=True)))


@pytest.fixture(scope="module")
def crystals(config):
    return random_crystals((2, 12, 62, 139, 191, 225), 8, config.max_sites)


def _expected_letter_mask(g: int, prev: int, first: bool) -> np.ndarray:
    t = tables()
    out = np.zeros(28, bool)
    if not first and prev == 0:
        out[0] = True
        return out
    out[0] = not first
    for w in range(1, 28):
        if t.multiplicity[g, w] == 0 or w < prev:
            continue
        if w == prev and not t.free[g, w].any():
            continue
        out[w] = True
    return out


def test_letter_conditionals_normalised_and_masked(model, crystals):
    lp = np.asarray(letter_log_probs(model, crystals))  # (B, N+1, 28)
    n = crystals.max_sites
    for b in range(crystals.batch_size):
        g = int(crystals.spacegroup[b])
        w = np.asarray(crystals.wyckoff[b])
        for i in range(n + 1):
            if i == n:  # the appended slot of a full crystal can only be padding
                expected = np.arange(28) == 0
            else:
                expected = _expected_letter_mask(g, int(w[i - 1]) if i else 0, i == 0)
            p = np.exp(lp[b, i])
            np.testing.assert_allclose(p.sum(), 1.0, atol=1e-5)
            assert np.all(p[~expected] == 0.0), (g, i, np.nonzero(p[~expected]))
            assert np.all(p[expected] > 0.0)


def test_species_conditionals_normalised_and_masked(model, crystals):
    allowed = np.zeros(119, bool)
    allowed[[3, 8, 26, 56]] = True
    for mask in (None, allowed):
        lp = np.asarray(species_log_probs(model, crystals, mask))
        p = np.exp(lp)
        np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
        real = np.asarray(crystals.mask)
        assert np.all(p[~real][:, 0] == 1.0)  # padding sites: species 0 with probability 1
        assert np.all(p[real][:, 0] == 0.0)
        if mask is not None:
            assert np.all(p[real][:, ~allowed] == 0.0)
            assert np.all(p[real][:, allowed] > 0.0)


def test_von_mises_mixtures_integrate_to_one(model, crystals):
    batch = crystals.take(slice(0, 8))
    g, w, a, x, _, m = (jnp.asarray(f) for f in batch)
    params = eqx.filter_jit(jax.vmap(lambda *c: _heads(model, *c, None).coord_params))(g, w, a, x)
    params = params.reshape(-1, params.shape[-1])  # every coordinate head of every slot
    grid = (jnp.arange(4000) + 0.5) / 4000  # midpoint rule on the periodic interval [0, 1)
    dens = jnp.exp(jax.vmap(lambda p: coord_log_prob(p, grid, model.config.kappa_min))(params))
    np.testing.assert_allclose(np.asarray(dens.mean(-1)), 1.0, atol=1e-4)


@pytest.mark.parametrize("g", [225, 139, 191])  # 1 or 2 free lattice parameters
def test_lattice_mixtures_integrate_to_one(model, g):
    arrays = random_crystals((g,), 3, model.config.max_sites, seed=g)
    free = lattice_tables().free[g]
    for b in range(3):
        one = CrystalArrays(*(jnp.asarray(f)[b] for f in arrays))
        heads = eqx.filter_jit(_heads)(
            model, one.spacegroup, one.wyckoff, one.species, one.coords, None
        )
        params = heads.lattice_params

        def density(lattice, params=params, one=one):
            lp = lattice_log_prob(params, one.spacegroup, one.wyckoff, lattice, 1e-3)
            return jnp.exp(lp)

        # Integrate over the free parameters (the Gaussians live on the whole real line).
        axes, widths = [], []
        for j in np.nonzero(free)[0]:
            lo, hi = (-60.0, 120.0) if j < 3 else (-180.0, 360.0)
            k = 1000 if free.sum() == 1 else 400
            axes.append(np.linspace(lo, hi, k))
            widths.append((hi - lo) / (k - 1))
        mesh = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
        lat = np.tile(np.asarray(one.lattice, np.float32), (len(mesh), 1))
        lat[:, np.nonzero(free)[0]] = mesh
        dens = np.asarray(jax.jit(jax.vmap(density))(jnp.asarray(lat)))
        total = dens.sum() * np.prod(widths)
        np.testing.assert_allclose(total, 1.0, atol=1e-3)


def test_discrete_tokens_sum_to_one_by_enumeration(config):
    """Enumerate every letter and species sequence of a 2-site model with two allowed elements;
    coordinates are a fixed function of the letters, so the discrete probabilities sum to 1."""
    cfg = config.replace(max_sites=2)
    model = CrystalFormer(cfg, jax.random.PRNGKey(1))
    g = 221
    t = tables()
    letters = [w for w in range(1, 28) if t.multiplicity[g, w] > 0]
    elements = [8, 22]
    allowed = np.zeros(119, bool)
    allowed[elements] = True
    rows = []
    for n in (1, 2):
        for ws in itertools.product(letters, repeat=n):
            for zs in itertools.product(elements, repeat=n):
                w = np.zeros(2, np.int32)
                z = np.zeros(2, np.int32)
                x = np.zeros((2, 3), np.float32)
                w[:n], z[:n] = ws, zs
                for i in range(n):
                    op = t.op0[g, ws[i]]
                    x[i] = np.mod(op[:, :3] @ np.array([0.3, 0.6, 0.1]) + op[:, 3], 1.0)
                rows.append((w, z, x, np.arange(2) < n))
    w, z, x, m = (np.stack(c) for c in zip(*rows, strict=True))
    b = len(rows)
    arrays = CrystalArrays(
        np.full(b, g, np.int32), w, z, x, np.tile(np.float32([5, 5, 5, 90, 90, 90]), (b, 1)), m
    )
    terms = log_prob(model, arrays, allowed)
    discrete = np.asarray(terms.wyckoff + terms.species, np.float64)
    assert np.isclose(np.exp(discrete).sum(), 1.0, atol=1e-5)
    # Forbidden sequences (decreasing letters, a fixed position twice) have probability zero.
    order_ok = (
        (w[:, 1] == 0) | (w[:, 1] > w[:, 0]) | ((w[:, 1] == w[:, 0]) & t.free[g, w[:, 0]].any(-1))
    )
    assert np.all(np.isneginf(discrete[~order_ok]))
    assert np.all(np.isfinite(discrete[order_ok]))


def test_log_prob_exact_under_slot_cut_jit_and_vmap(model, crystals):
    full = log_prob(model, crystals)
    n_need = int(np.asarray(crystals.mask).sum(-1).max()) + 1
    cut = CrystalArrays(
        crystals.spacegroup,
        crystals.wyckoff[:, :n_need],
        crystals.species[:, :n_need],
        crystals.coords[:, :n_need],
        crystals.lattice,
        crystals.mask[:, :n_need],
    )
    jitted = jax.jit(lambda m, c: log_prob(m, c))(model, cut)
    mapped = jax.vmap(lambda c: log_prob(model, c))(CrystalArrays(*map(jnp.asarray, crystals)))
    for other in (jitted, mapped):
        for a, b in zip(full, other, strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(
        np.asarray(full.total),
        np.asarray(full.wyckoff + full.species + full.coords + full.lattice),
        rtol=1e-6,
        atol=1e-4,
    )


def test_more_fourier_features_keep_the_density(model, crystals):
    """Widening a trained model's coordinate features adds zero-weight frequencies: log p is
    unchanged until training moves them; the new config records the new count."""
    from cfmc.priors.model import with_fourier_features

    wide = with_fourier_features(model, model.config.Nf + 3)
    assert wide.config.Nf == model.config.Nf + 3
    assert wide.coord_proj[0].weight.shape[1] == model.coord_proj[0].weight.shape[1] + 6
    # a wider matmul may round differently (XLA promises no bit equality across shapes)
    np.testing.assert_allclose(
        np.asarray(log_prob(wide, crystals).total), np.asarray(log_prob(model, crystals).total),
        rtol=1e-6, atol=1e-5,
    )
    g, x = jnp.array([2, 12, 225]), jnp.array([0.1, 0.37, 0.9])
    e, nf = model.config.embed_size, model.config.Nf
    for k in range(3):  # the same features; new frequencies (after each cos/sin block) at zero
        np.testing.assert_allclose(
            wide.embed_coord(g, x, k), model.embed_coord(g, x, k), rtol=1e-6, atol=1e-6
        )
        w = np.asarray(wide.coord_proj[k].weight)
        assert not w[:, e + nf : e + nf + 3].any() and not w[:, -3:].any()
    with pytest.raises(ValueError, match="cannot drop"):
        with_fourier_features(model, model.config.Nf - 1)


def test_wider_arrays_are_cut_and_overflow_is_impossible(model, crystals):
    extra = 3
    g, w, a, x, lat, m = (np.asarray(f) for f in crystals)
    wide = CrystalArrays(
        g,
        np.pad(w, ((0, 0), (0, extra))),
        np.pad(a, ((0, 0), (0, extra))),
        np.pad(x, ((0, 0), (0, extra), (0, 0))),
        lat,
        np.pad(m, ((0, 0), (0, extra))),
    )
    np.testing.assert_allclose(
        np.asarray(log_prob(model, wide).total), np.asarray(log_prob(model, crystals).total)
    )
    m2 = wide.mask.copy()
    m2[0, -1] = True
    assert np.isneginf(float(log_prob(model, wide._replace(mask=m2)).total[0]))


def test_save_load_round_trip_and_damage(model, crystals, tmp_path):
    path = save_prior(model, tmp_path / "ckpt", extra={"note": "test"})
    loaded = load_prior(path)
    assert loaded.config == model.config
    np.testing.assert_array_equal(
        np.asarray(log_prob(loaded, crystals).total), np.asarray(log_prob(model, crystals).total)
    )
    meta = json.loads((path / "meta.json").read_text())
    assert meta["extra"] == {"note": "test"}

    with pytest.raises(FileNotFoundError, match=str(tmp_path / "absent")):
        load_prior(tmp_path / "absent")
    weights = path / "weights.eqx"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="damaged prior checkpoint at .*ckpt"):
        load_prior(path)
    weights.write_bytes(data)
    (path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="damaged"):
        load_prior(path)


def test_short_training_decreases_loss(model, config, tmp_path):
    """Train a fresh tiny model on random crystals of three elements; the first call stops
    on its time budget after one batch, the second resumes from the saved state and finishes."""
    data = random_crystals((225, 221), 220, config.max_sites, seed=3, elements=[8, 11, 17])
    cfg = config.replace(init_scale=0.02)
    opts = TrainOptions(
        epochs=6,
        batch_size=40,
        lr=3e-3,
        warmup_steps=5,
        buckets=(),
        progress=False,
        max_minutes=0.0,
    )
    first = train(data, cfg, tmp_path / "run", opts, echo=lambda s: None)
    assert first.stopped_early and first.log == []
    state = json.loads((tmp_path / "run" / "last" / "state.json").read_text())["state"]
    assert (state["epoch"], state["batch"], state["step"]) == (0, 1, 1)

    opts = dataclasses.replace(opts, max_minutes=None)
    log = train(data, cfg, tmp_path / "run", opts, resume=True, echo=lambda s: None).log
    assert [r["epoch"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert log[-1]["step"] == 6 * (396 // 40)
    assert log[-1]["train_total"] < log[0]["train_total"] - 1.0
    assert log[-1]["val_total"] < log[0]["val_total"] - 1.0
    for name in ("log.csv", "learning_curve.png", "best/weights.eqx", "last/state.json"):
        assert (tmp_path / "run" / name).exists(), name
    assert np.isfinite(
        np.asarray(log_prob(load_prior(tmp_path / "run" / "best"), data).total)
    ).all()


def test_wyckoff_tables_consistent():
    t = wyckoff_tables()
    assert not t.valid[:, 0].any()
    # Every free coordinate of a representative appears as itself (sampling relies on it).
    g, w = np.nonzero(t.valid)
    for k in range(3):
        f = t.free[g, w, k]
        rows = t.op0[g[f], w[f], k]
        expected = np.zeros(4)
        expected[k] = 1.0
        np.testing.assert_allclose(rows, np.broadcast_to(expected, rows.shape))
