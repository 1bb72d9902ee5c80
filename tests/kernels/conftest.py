"""Fixtures of the kernel tests: a small CrystalFormer with peaked conditionals, and an
enumerable two-site template with its exact probabilities under that prior."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from kernel_testing import ELEMENTS, enumerate_species

from cfmc.posterior import Posterior
from cfmc.template import Template

priors = pytest.importorskip("cfmc.priors")


@pytest.fixture(scope="module")
def model():
    """Randomly initialised tiny CrystalFormer; the large init scale makes it far from uniform."""
    config = priors.get_config("tiny").replace(init_scale=0.5)
    return priors.CrystalFormer(config, jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def binary(model):
    """(template, the 16 species states, their exact probabilities) of a two-site template."""
    t = Template.parse("221-a-[?]-0-0-0-b-[?]-1/2-1/2-1/2", elements=ELEMENTS)
    n = 2  # the template's sites; the prior appends its own padding slot
    x, states = enumerate_species(t, model, n)
    post = Posterior(model, marginalize_lattice=True)
    logp = post.prior_logdensity(x)
    probs = np.exp(logp - logp.max())
    return t, states, probs / probs.sum()
