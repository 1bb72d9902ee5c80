"""Chains split over local JAX devices (`SweepConfig.devices`, `jax.shard_map`) are the chains
of one device: a small design run (host-side conditioner, lattice moves, free constraints, an
odd number of chains) on two CPU devices, in a fresh process started with
XLA_FLAGS=--xla_force_host_platform_device_count=2 (the flag must be set before JAX starts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("cfmc.priors")

SCRIPT = r"""
import json, sys
import jax
import numpy as np
import arviz as az
from cfmc.design import design
from cfmc.predictors import FunctionConditioner

prior, root = sys.argv[1], sys.argv[2]

def volume_term(crystals):
    return np.array([-((c.to_structure().volume / max(len(c.species), 1) - 20.0) ** 2) / 200.0
                     for c in crystals])

runs = {}
for devices in (1, 2):
    # 5 chains: padded to 6 over two devices; chunks of 2 inside each (3 -> 4)
    runs[devices] = design(FunctionConditioner(volume_term, name="volume"),
                           f"{root}/devices{devices}", spacegroup=225,
                           elements=["Ca", "Sr", "Ti", "Zr", "O", "F"], prior=prior, chains=5,
                           sweeps=3, burn_in=1, pool=2, seed=2, progress=False, chunk=2,
                           devices=devices)
traces = [az.from_netcdf(runs[d].out / "trace.nc").posterior for d in (1, 2)]
print(json.dumps({
    "devices": jax.local_device_count(),
    "chains_equal": bool(runs[1].conditioned.equals(runs[2].conditioned)),
    "traces_equal": all(np.array_equal(traces[0][v].values, traces[1][v].values)
                        for v in traces[0].data_vars),
    "counts_equal": runs[1].summary["kernels"] == runs[2].summary["kernels"],
    "accepted": sum(k["accepted"] for k in runs[2].summary["kernels"].values()),
}))
"""


def test_chains_split_over_two_devices_equal_one_device(prior_dir, tmp_path):
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    env = dict(os.environ, XLA_FLAGS=flags.strip(), CFMC_CACHE=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(prior_dir), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["devices"] == 2
    assert result["chains_equal"] and result["traces_equal"]  # bit for bit
    assert result["counts_equal"] and result["accepted"] > 0  # padding copies not counted
