"""Exactness of the element kernels against the real CrystalFormer prior.

A small randomly initialised CrystalFormer (larger init scale so its conditionals are far from
uniform) gives the target; templates small enough to enumerate give exact probabilities.
Independent samples come from the final states of many chains.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_testing import ELEMENTS, as_numpy, chi2_pvalue, run_chains

from cfmc.posterior import Posterior
from cfmc.sweep import Sampler, SweepConfig, acceptance
from cfmc.template import Template


@pytest.mark.parametrize("proposal,scan", [("uniform", False), ("prior", False),
                                           ("prior", True)])
@pytest.mark.parametrize("differ", [False, True])
def test_species_kernel_matches_enumerated_prior(model, binary, proposal, scan, differ):
    """Per site, or (scan) every site in one step from one evaluation of the conditionals; on
    the prior alone and with a differ pair (states with equal elements have probability 0)."""
    t, states, probs = binary
    if differ:
        t = Template.parse("221-a-[?]-0-0-0-b-[?]-1/2-1/2-1/2", elements=ELEMENTS,
                           differ=[(0, 1)])
        probs = np.where(states[:, 0] != states[:, 1], probs, 0.0)
    n = 2  # the template's sites; the prior appends its own padding slot
    post = Posterior(model, marginalize_lattice=True)
    sampler = Sampler(post, t.constraints(n),
                      SweepConfig(species_proposal=proposal, species_scan=scan))
    assert [k for k, _ in sampler.schedule()].count("species") == (1 if scan else 2)
    x = t.random_arrays(1500, np.random.default_rng(1), n)
    state = run_chains(sampler, x, 8, seed=2)
    final = as_numpy(state.position)
    assert t.check_arrays(final).all()
    p = chi2_pvalue(final.species, states, probs)
    assert p > 0.01, f"{proposal} proposal (scan {scan}): chi-square p = {p:.2g}"
    assert 0.05 < acceptance(state.stats)["species"] <= 1.0
    # every site proposed in every sweep of every chain, however the moves were grouped
    assert state.stats["species"]["proposed"] == 2 * 8 * 1500
