"""Validity of every chain state and the blackjax interface of the kernels.

A small randomly initialised CrystalFormer gives the target; every state of every chain is
expanded to a pymatgen Structure and checked with spglib.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import spglib
from kernel_testing import ELEMENTS, as_numpy

from cfmc import kernels
from cfmc.crystal import from_arrays
from cfmc.posterior import Posterior
from cfmc.sweep import Sampler, SweepConfig
from cfmc.template import Template


def _spacegroup(crystal) -> int:
    s = crystal.to_structure()
    cell = (s.lattice.matrix, s.frac_coords, [site.specie.Z for site in s])
    return int(spglib.get_symmetry_dataset(cell, symprec=0.1).number)


def no_overlap(crystals) -> np.ndarray:
    """Hard physical constraint: -inf when two atoms are closer than 1 Angstrom (the randomly
    initialised prior does not know that atoms repel)."""
    out = []
    for c in crystals:
        d = c.to_structure().distance_matrix
        np.fill_diagonal(d, np.inf)
        out.append(0.0 if d.min() > 1.0 else -np.inf)
    return np.array(out)


def test_every_state_is_a_valid_crystal_of_the_template(model):
    n = 4  # the template's sites; the prior appends its own padding slot
    t = Template.parse(
        "225-a-[?]-0-0-0-b-[?]-1/2-1/2-c-[?]-1/4-1/4-e-[?]-[?]-0-0",
        elements=["Ca", "Sr", "Ba", "Ti", "Zr", "O", "F"],
        ties=[(1, 2)],
        differ=[(0, 1), (0, 3), (1, 3)],
    )
    post = Posterior(model, conditioners=[no_overlap])
    sampler = Sampler(
        post, t.constraints(n), SweepConfig(lattice=True, species_proposal="prior")
    )
    rng = np.random.default_rng(7)
    x = t.random_arrays(12, rng, n, lattice=[8.0, 8, 8, 90, 90, 90])
    x.coords[:, 3, 0] = rng.uniform(0.2, 0.3, 12)  # start the e site clear of the others
    state = sampler.init(x)
    key = jax.random.PRNGKey(8)
    checked = 0
    for i in range(4):
        state, _ = sampler.sweep(jax.random.fold_in(key, i), state)
        arr = as_numpy(state.position)
        assert t.check_arrays(arr).all()
        assert np.all(arr.species[:, 1] == arr.species[:, 2])
        for c in from_arrays(arr):
            assert c.wyckoff == t.letters
            assert _spacegroup(c) == t.spacegroup, c
            checked += 1
    assert checked == 48
    lat = as_numpy(state.position).lattice
    assert np.allclose(lat[:, 0], lat[:, 1]) and np.allclose(lat[:, 3:], 90.0)
    assert state.stats["lattice"]["proposed"] == 48


def test_blackjax_interface_jits_and_vmaps(model):
    n = 2  # the template's sites; the prior appends its own padding slot
    t = Template.parse("221-a-[?]-0-0-0-b-[?]-1/2-1/2-1/2", elements=ELEMENTS)
    logdensity = Posterior(model, marginalize_lattice=True).logdensity_fn()
    cons = t.constraints(n)
    algo = kernels.species_substitution(logdensity, cons, site=0)
    x = jax.tree.map(jnp.asarray, t.random_arrays(8, np.random.default_rng(0), n))
    state = jax.jit(jax.vmap(algo.init))(x)
    step = jax.jit(jax.vmap(algo.step))
    keys = jax.random.split(jax.random.PRNGKey(0), 8)
    new, info = step(keys, state)
    assert isinstance(new, kernels.CrystalState) and isinstance(info, kernels.MoveInfo)
    moved = np.asarray(new.position.species[:, 0]) != np.asarray(x.species[:, 0])
    np.testing.assert_array_equal(moved, np.asarray(info.is_accepted))
    np.testing.assert_array_equal(new.position.species[:, 1], x.species[:, 1])
    np.testing.assert_allclose(new.logdensity, jax.vmap(logdensity)(new.position), rtol=1e-5)
    shift = kernels.coordinate_shift(logdensity, Template.parse("225-a-Na-0-0-0-e-Cl-[?]-0-0")
                                     .constraints(n), site=1, step_size=0.1)
    assert callable(shift.step)


def test_lattice_proposal_rejects_impossible_cells():
    propose = kernels.gaussian_proposal()
    t = Template.parse("1-a-Na-[?]-[?]-[?]")
    cons = t.constraints(4)
    x = jax.tree.map(lambda f: jnp.asarray(f)[0], t.random_arrays(1, np.random.default_rng(0), 4,
                                                                  lattice=[0.05, 5, 5, 90, 90, 90]))
    valid = [bool(propose(jax.random.PRNGKey(k), x, cons, 0, 1.0).is_valid) for k in range(50)]
    assert not all(valid) and any(valid)
    assert not bool(kernels.is_valid_cell(jnp.array([5.0, 5, 5, 120, 120, 120])))
    assert bool(kernels.is_valid_cell(jnp.array([5.0, 5, 5, 90, 90, 120])))


