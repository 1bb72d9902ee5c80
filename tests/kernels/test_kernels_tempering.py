"""Replica exchange: the temperature-1 replica reproduces the enumerated posterior of a steep
target, and swaps between neighbours are counted. (Same set-up as test_kernels.py.)"""

from __future__ import annotations

import numpy as np
from kernel_testing import ELEMENTS, Z, as_numpy, chi2_pvalue, run_chains

from cfmc.posterior import Posterior
from cfmc.sweep import Sampler, SweepConfig


def test_cold_replica_matches_enumerated_posterior(model, binary):
    t, states, prior_probs = binary
    steep = {"Na": 4.0, "K": -2.0, "Cl": 1.0, "Br": 0.0}  # a conditioner term 6 nats deep

    def cheap(crystals):
        return np.array([steep[c.species[0]] - steep[c.species[1]] for c in crystals])

    like = np.array([steep[ELEMENTS[Z.index(a)]] - steep[ELEMENTS[Z.index(b)]] for a, b in states])
    probs = prior_probs * np.exp(like)
    post = Posterior(model, conditioners=[cheap], marginalize_lattice=True)
    sampler = Sampler(post, t.constraints(2), SweepConfig(ladder=(1.0, 2.0, 4.0)))
    x = t.random_arrays(800, np.random.default_rng(9), 2)
    state = run_chains(sampler, x, 12, seed=10)
    assert state.replicas == 3 and len(state.chain_ids) == 2400
    cold = as_numpy(state.cold().position)
    assert cold.species.shape[0] == 800 and t.check_arrays(cold).all()
    p = chi2_pvalue(cold.species, states, probs)
    assert p > 0.01, f"chi-square p = {p:.2g}"
    for proposed, accepted in state.swaps.values():
        assert proposed > 0 and 0 < accepted < proposed
