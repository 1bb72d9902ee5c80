"""Exactness of the coordinate kernel against the real CrystalFormer prior.

A small randomly initialised CrystalFormer (larger init scale, so the density is far from flat)
gives the target; a site with one free coordinate gives an exact 1-D density by quadrature.
Independent samples come from the final states of many chains.
"""

from __future__ import annotations

import numpy as np
from kernel_testing import as_numpy, run_chains
from scipy import stats

from cfmc.posterior import Posterior
from cfmc.sweep import Sampler, SweepConfig
from cfmc.template import Template


def test_coordinate_kernel_matches_exact_1d_density(model):
    n = 2  # the template's sites; the prior appends its own padding slot
    t = Template.parse("225-a-Na-0-0-0-e-Cl-[?]-0-0")
    post = Posterior(model, marginalize_lattice=True)
    grid = np.linspace(0.0, 1.0, 2001)
    x = t.random_arrays(grid.size, np.random.default_rng(0), n)
    coords = np.array(x.coords)
    coords[:, 1, 0] = np.mod(grid, 1.0)
    dens = np.exp(post.prior_logdensity(x._replace(coords=coords)))
    cdf = np.concatenate([[0.0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(grid))])
    cdf /= cdf[-1]
    sampler = Sampler(post, t.constraints(n), SweepConfig(coord_step=0.15))
    state = run_chains(sampler, t.random_arrays(1500, np.random.default_rng(5), n), 30, seed=6)
    final = as_numpy(state.position)
    assert t.check_arrays(final).all()
    samples = final.coords[:, 1, 0]
    assert np.all((samples >= 0) & (samples < 1))
    assert np.allclose(final.coords[:, 1, 1:], 0.0)
    res = stats.kstest(samples, lambda v: np.interp(v, grid, cdf))
    assert res.pvalue > 0.01, f"KS p = {res.pvalue:.2g}"


