"""Sharded runs give the chains of one process: infill and a small design posterior in one
batch, in chunks of 7 and over a 2-worker local Ray cluster (bit for bit at the same chunk, also
when a worker is killed mid-run), prior draws spread over Ray workers, and the message when Ray
is missing."""

from __future__ import annotations

import os
import signal
import sys

import arviz as az
import numpy as np
import pytest
from cfmc.predictors import FunctionConditioner

from cfmc.cli import main
from cfmc.design import design
from cfmc.infill import infill
from cfmc.prior_samples import sample_prior

priors = pytest.importorskip("cfmc.priors")

TEMPLATE = "225-a-[?]-0-0-0-b-[?]-1/2-1/2-c-[?]-1/4-1/4-e-[?]-[?]-0-0"
ELEMENTS = ["Ca", "Sr", "Ti", "Zr", "O", "F"]
CHAINS = 10


def volume_term(crystals) -> np.ndarray:
    """A cheap lattice-dependent log-likelihood: volume per site near 20 A^3."""
    return np.array([-((c.to_structure().volume / max(len(c.species), 1) - 20.0) ** 2) / 200.0
                     for c in crystals])


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    # the workers unpickle this module's conditioner by value (tests/ is not on their path)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def _trace(out):
    idata = az.from_netcdf(out / "trace.nc")
    return {v: idata.posterior[v].values for v in idata.posterior.data_vars}


def _same(a, b) -> bool:
    ta, tb = _trace(a.out), _trace(b.out)
    ca, cb = (getattr(r, "conditioned", None) for r in (a, b))  # design's chains table
    ca, cb = (a.chains, b.chains) if ca is None else (ca, cb)
    return (ta.keys() == tb.keys() and all(np.array_equal(ta[k], tb[k]) for k in ta)
            and ca.equals(cb))


def _infill(prior_dir, out, **kw):
    return infill(TEMPLATE, out, chains=CHAINS, sweeps=4, burn_in=2, elements=ELEMENTS, top=4,
                  seed=3, prior=str(prior_dir), progress=False, **kw)


def _design(prior_dir, out, **kw):
    target = FunctionConditioner(volume_term, name="volume")
    return design(target, out, spacegroup=225, elements=ELEMENTS, prior=str(prior_dir),
                  chains=CHAINS, sweeps=4, burn_in=2, pool=2, seed=1, progress=False, **kw)


def test_infill_one_batch_chunks_and_ray_shards(prior_dir, tmp_path, ray_cluster,
                                                monkeypatch):
    from cfmc import shards

    one = _infill(prior_dir, tmp_path / "one")  # one chunk of 10
    chunked = _infill(prior_dir, tmp_path / "chunk7", chunk=7)  # chunks of 7 (padded to 14)
    # 5 + 5 chains over two workers, the second worker's process killed after the second sweep:
    # its shard is sent again to a fresh worker, and the run is the same
    original, calls = shards.ShardedSampler.sweep, []

    def sweep_then_kill(self, key, state, temperature=None):
        result = original(self, key, state, temperature)
        calls.append(1)
        if len(calls) == 2:
            os.kill(self.timings[-1].pid, signal.SIGKILL)
        return result

    monkeypatch.setattr(shards.ShardedSampler, "sweep", sweep_then_kill)
    sharded = _infill(prior_dir, tmp_path / "ray", chunk=7, workers=2)
    assert sharded.summary["status"] == "complete"
    assert _same(chunked, sharded)  # bit for bit
    sharding = sharded.summary["sharding"]
    assert [s["chains"] for s in sharding["shards"]] == [[0, 5], [5, 10]]
    assert all(s["sweeps"] == 4 for s in sharding["shards"])
    assert sharding["shards"][-1]["restarts"] == 1
    # another chunk shape: XLA's per-row floats change in the last bits, nothing discrete does
    assert one.chains[["formula", "string"]].equals(chunked.chains[["formula", "string"]])
    t1, t7 = _trace(one.out), _trace(chunked.out)
    for k in t1:
        np.testing.assert_allclose(t1[k], t7[k], rtol=1e-5, atol=1e-4)


def test_design_ray_shards_equal_one_process(prior_dir, tmp_path, ray_cluster):
    one = _design(prior_dir, tmp_path / "one", chunk=5)
    sharded = _design(prior_dir, tmp_path / "ray", workers=2)  # chunk: one shard, 5
    assert sharded.summary["sharding"]["chunk"] == 5
    assert _same(one, sharded)
    assert "volume" in " ".join(sharded.samples.columns)


def test_without_ray_workers_say_how_to_install(prior_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ValueError, match=r"pip install 'cfmc\[ray\]'"):
        _infill(prior_dir, tmp_path / "x", workers=2)
    code = main(["infill", TEMPLATE, "--chains", "4", "--workers", "2", "--prior",
                 str(prior_dir), "--out", str(tmp_path / "y")])
    assert code == 2 and "pip install 'cfmc[ray]'" in capsys.readouterr().err


def test_prior_draws_over_ray_equal_one_process(prior_dir, tmp_path, ray_cluster):
    # group 2 from a random prior: many invalid crystals, so redraw rounds run in every chunk
    kw = dict(num=12, chunk=5, prior=str(prior_dir), seed=4, valid_only=True, max_rounds=3,
              progress=False)
    one = sample_prior(2, tmp_path / "one", **kw)
    spread = sample_prior(2, tmp_path / "ray", workers=2, **kw)
    assert one.redrawn > 0
    assert one.table.equals(spread.table)  # bit for bit: strings, log p, validity
    assert (tmp_path / "one" / "samples.csv").read_text() == (
        tmp_path / "ray" / "samples.csv").read_text()
    summary = __import__("json").loads((tmp_path / "ray" / "summary.json").read_text())
    assert sorted(c["chunk"] for c in summary["sharding"]["chunks"]) == [0, 1, 2]
