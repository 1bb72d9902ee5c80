"""Burn-in decided by the chains and the stop rule on R-hat and ESS."""

from __future__ import annotations

import math

import numpy as np

from cfmc.mixing import BurnIn, has_mixed, worst


def test_burn_in_ends_when_the_log_density_stops_rising():
    rng = np.random.default_rng(0)
    rule = BurnIn(window=5, min_sweeps=10)
    level = -30.0
    ended = None
    for i in range(60):
        level = min(level + 1.0, -10.0)  # rises for 20 sweeps, then flat
        if rule.update(i, level + rng.normal(0, 1, 500)):
            ended = i + 1
            break
    assert ended is not None and 20 < ended <= 35


def test_burn_in_is_capped():
    rule = BurnIn(window=5, min_sweeps=10, max_sweeps=15)
    ended = next(i + 1 for i in range(100) if rule.update(i, np.full(50, float(i))
                                                          + np.arange(50)))
    assert ended == 15


def test_stop_rule():
    conv = {"a": {"rhat": 1.004, "ess_bulk": 900.0}, "b": {"rhat": 1.02, "ess_bulk": 300.0},
            "constant": {"rhat": math.nan, "ess_bulk": math.nan}}
    assert worst(conv) == (1.02, 300.0)
    assert not has_mixed(conv, 1.01, None) and has_mixed(conv, 1.05, 200)
    assert not has_mixed(conv, 1.05, 400) and has_mixed(conv, None, None)


def _ar1(rho: float, chains: int, draws: int, seed: int) -> np.ndarray:
    """Stationary AR(1) chains: integrated autocorrelation time (1 + rho) / (1 - rho)."""
    rng = np.random.default_rng(seed)
    x = np.empty((chains, draws))
    x[:, 0] = rng.standard_normal(chains)
    for t in range(1, draws):
        x[:, t] = rho * x[:, t - 1] + math.sqrt(1 - rho**2) * rng.standard_normal(chains)
    return x


def test_stationary_rhat_predicts_the_rhat_of_equilibrium_chains():
    import arviz as az

    from cfmc.mixing import draws_for_rhat, stationary_rhat

    for rho, draws in [(0.3, 40), (0.6, 40), (0.6, 340), (0.8, 100)]:
        x = _ar1(rho, 1000, draws, seed=1)
        tau = (1 + rho) / (1 - rho)
        # first order in tau / draws: within 0.01 of arviz's split R-hat for these lengths
        assert abs(float(az.rhat(x)) - stationary_rhat(tau, draws)) < 0.01
    need = draws_for_rhat(4.0, 1.01)
    assert 295 <= need <= 305 and stationary_rhat(4.0, need) <= 1.01 + 1e-9
    # chains that have not converged (means still apart) sit far above the prediction
    x = _ar1(0.6, 1000, 40, seed=2) + np.linspace(0, 2, 1000)[:, None]
    assert float(az.rhat(x)) > stationary_rhat(4.0, 40) + 0.1
