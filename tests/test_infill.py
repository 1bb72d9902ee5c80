"""`cfmc infill` end to end with a small saved CrystalFormer checkpoint: the run directory, no
silent overwrite, resume equal to an uninterrupted run, partial results after an interrupt."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cfmc import runio
from cfmc.cli import main
from cfmc.crystal import Crystal
from cfmc.sweep import Sampler
from cfmc.template import Template

priors = pytest.importorskip("cfmc.priors")

TEMPLATE = "225-a-[?]-0-0-0-b-[?]-1/2-1/2-c-[?]-1/4-1/4-e-[?]-[?]-0-0"
ELEMENTS = ["Ca", "Sr", "Ti", "Zr", "O", "F"]


def _args(prior_dir, out, sweeps=6, extra=()):
    return ["infill", TEMPLATE, "--chains", "24", "--sweeps", str(sweeps), "--burn-in", "2",
            "--elements", *ELEMENTS, "--top", "8", "--seed", "3", "--prior", str(prior_dir),
            "--checkpoint-every", "2", "--no-progress", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def full_run(prior_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "full"
    assert main(_args(prior_dir, out)) == 0
    return out


def test_run_directory(full_run):
    files = {p.name for p in full_run.iterdir()}
    assert {"samples.csv", "trace.nc", "summary.json", "trace.png", "cif"} <= files
    df = pd.read_csv(full_run / "samples.csv")
    assert 1 <= len(df) <= 8
    assert {"chain", "formula", "spacegroup", "string", "log_prior", "log_posterior", "cif"} <= set(
        df.columns
    )
    assert np.all(np.diff(df["log_posterior"]) <= 1e-9)  # ranked
    t = Template.parse(TEMPLATE, elements=ELEMENTS)
    cifs = sorted((full_run / "cif").glob("*.cif"))
    assert len(cifs) == len(df)
    for text, cif_path in zip(df["string"], cifs, strict=True):
        c = Crystal.from_string(text)
        assert c.spacegroup == 225 and c.wyckoff == t.letters
        assert set(c.species) <= set(ELEMENTS)
        assert Crystal.from_cif(cif_path.read_text()).composition.reduced_formula == c.formula
    summary = json.loads((full_run / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["seed"] == 3 and summary["draws"] == 4
    assert 0 < summary["kernels"]["species"]["acceptance"] <= 1
    assert "log_posterior" in summary["convergence"] and "blackjax" in summary["versions"]
    import arviz as az

    idata = az.from_netcdf(full_run / "trace.nc")
    post = idata.posterior
    assert post["log_posterior"].shape == (24, 4)
    assert {"log_prior", "prior_species", "prior_lattice"} <= set(post.data_vars)
    assert idata.sample_stats["acceptance"].shape == (24, 4)


def test_existing_directory_is_not_overwritten(prior_dir, full_run, capsys):
    before = (full_run / "samples.csv").read_bytes()
    assert main(_args(prior_dir, full_run)) == 2
    assert "--force" in capsys.readouterr().err
    assert (full_run / "samples.csv").read_bytes() == before


def test_resume_equals_uninterrupted_run(prior_dir, full_run, tmp_path):
    out = tmp_path / "resumed"
    assert main(_args(prior_dir, out, sweeps=4)) == 0
    assert json.loads((out / "summary.json").read_text())["draws"] == 2
    assert main(_args(prior_dir, out, sweeps=6, extra=["--resume"])) == 0
    a, _ = runio.load_checkpoint(full_run)
    b, meta = runio.load_checkpoint(out)
    assert meta["next_sweep"] == 6
    for k in ("state.species", "state.coords", "trace.log_posterior", "trace.log_prior"):
        np.testing.assert_array_equal(a[k], b[k])
    pd.testing.assert_frame_equal(pd.read_csv(full_run / "samples.csv"),
                                  pd.read_csv(out / "samples.csv"))


def test_resume_refuses_other_settings(prior_dir, full_run, capsys):
    before = (full_run / "samples.csv").read_bytes()
    argv = _args(prior_dir, full_run, extra=["--resume"])
    argv[argv.index("--chains") + 1] = "12"
    assert main(argv) == 2
    assert "chains: saved 24, requested 12" in capsys.readouterr().err
    assert (full_run / "samples.csv").read_bytes() == before


def test_interrupt_leaves_partial_results(prior_dir, tmp_path, monkeypatch):
    out = tmp_path / "interrupted"
    real = Sampler.sweep
    calls = {"n": 0}

    def sweep(self, key, state, temperature=None):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, key, state, temperature)

    monkeypatch.setattr(Sampler, "sweep", sweep)
    assert main(_args(prior_dir, out)) == 130
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["draws"] == 1
    _, meta = runio.load_checkpoint(out)
    assert meta["next_sweep"] == 3
    assert len(pd.read_csv(out / "samples.csv")) >= 1
    monkeypatch.setattr(Sampler, "sweep", real)
    assert main(_args(prior_dir, out, extra=["--resume"])) == 0
    assert json.loads((out / "summary.json").read_text())["draws"] == 4


def test_auto_burn_in_and_stop_when_mixed(prior_dir, tmp_path):
    out = tmp_path / "mixed"
    argv = _args(prior_dir, out, sweeps=30, extra=["--until-rhat", "1.5", "--min-ess", "20"])
    argv[argv.index("--burn-in") + 1] = "auto"
    assert main(argv) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["burn_in_rule"] == "auto" and 10 <= s["burn_in"] <= 15
    assert s["mixing"]["reached"] and s["sweeps"] < 30 and s["mixing"]["rhat"] <= 1.5
    assert s["ess_per_second"]["log_posterior"] > 0
    assert (out / "report.html").stat().st_size > 10000


def test_pool_block_run_and_resume(prior_dir, tmp_path):
    """The pool block move from the CLI (what `make demo` runs): chains start from the pool, the
    block moves chains, every draw keeps the template, and a resumed run (the pool's fit read
    back from the checkpoint) equals the uninterrupted one."""
    pool = ["--block", "--block-proposal", "pool", "--block-tries", "4", "--init", "pool",
            "--pool-size", "128"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(_args(prior_dir, full, sweeps=5, extra=pool)) == 0
    summary = json.loads((full / "summary.json").read_text())
    assert summary["start"]["init"] == "pool" and summary["start"]["pool"] == 128
    block = summary["kernels"]["block"]
    assert block["proposed"] == 24 * summary["draws"]  # counted after burn-in
    assert 0 < block["accepted"] < block["proposed"]
    t = Template.parse(TEMPLATE, elements=ELEMENTS)
    assert t.check_arrays(runio.unpack_arrays("state", runio.load_checkpoint(full)[0])).all()
    assert main(_args(prior_dir, part, sweeps=3, extra=pool)) == 0
    assert main(_args(prior_dir, part, sweeps=5, extra=[*pool, "--resume"])) == 0
    a, _ = runio.load_checkpoint(full)
    b, _ = runio.load_checkpoint(part)
    for k in ("state.species", "state.coords", "trace.log_posterior", "block_fit.classes"):
        np.testing.assert_array_equal(a[k], b[k])


def test_bad_pool_settings_are_named(prior_dir, tmp_path, capsys):
    """A negative --pool-rounds is refused with a message that names it; nothing is written."""
    out = tmp_path / "bad"
    pool = ["--block", "--block-proposal", "pool", "--block-tries", "4", "--pool-rounds", "-1"]
    assert main(_args(prior_dir, out, extra=pool)) == 2
    assert "pool_rounds at least 0, got 4096 and -1" in capsys.readouterr().err
    assert not out.exists()
