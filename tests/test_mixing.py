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
