"""Exactness of the element kernels against the real CrystalFormer prior.

A small randomly initialised CrystalFormer (larger init scale so its conditionals are far from
uniform) gives the target; templates small enough to enumerate give exact probabilities.
Independent samples come from the final states of many chains.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_testing import as_numpy, chi2_pvalue, run_chains

from cfmc.posterior import Posterior
from cfmc.sweep import Sampler, SweepConfig, acceptance


@pytest.mark.parametrize("proposal", ["uniform", "prior"])
def test_species_kernel_matches_enumerated_prior(model, binary, proposal):
    t, states, probs = binary
    n = 2  # the template's sites; the prior appends its own padding slot
    post = Posterior(model, marginalize_lattice=True)
    sampler = Sampler(post, t.constraints(n), SweepConfig(species_proposal=proposal))
    x = t.random_arrays(1500, np.random.default_rng(1), n)
    state = run_chains(sampler, x, 8, seed=2)
    final = as_numpy(state.position)
    assert t.check_arrays(final).all()
    p = chi2_pvalue(final.species, states, probs)
    assert p > 0.01, f"{proposal} proposal: chi-square p = {p:.2g}"
    assert 0.05 < acceptance(state.stats)["species"] <= 1.0
