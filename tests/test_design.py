"""`cfmc design` end to end on a small random CrystalFormer with the real MEGNet predictors: the
run directory, the predicted properties per sample, the Fig. 9 plots, no silent overwrite; and
the pieces (target parsing, the physical guard, the fast structure builder, constraints)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cfmc.cli import main
from cfmc.crystal import Crystal
from cfmc.guard import PhysicalGuard
from cfmc.kernels import free_constraints
from cfmc.targets import distance_metrics, parse_assignments
from cfmc.template import Template

priors = pytest.importorskip("cfmc.priors")

TEMPLATE = "225-a-[?]-0-0-0-b-[?]-1/2-1/2-c-[?]-1/4-1/4-e-[?]-[?]-0-0"
ELEMENTS = ["Ca", "Sr", "Ba", "Ti", "Zr", "Nb", "O", "F"]


def _args(prior_dir, out, extra=()):
    return ["design", "--template", TEMPLATE, "--elements", *ELEMENTS,
            "--target", "band_gap=2.0", "--target", "formation_energy=-3.0",
            "--sigma", "band_gap=0.5", "--chains", "6", "--sweeps", "3", "--burn-in", "1",
            "--seed", "1", "--prior", str(prior_dir), "--no-progress", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def run_dir(prior_dir, models_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("design") / "run"
    assert main(_args(prior_dir, out)) == 0
    return out


def test_run_directory(run_dir):
    files = {p.name for p in run_dir.iterdir()}
    assert {"samples.csv", "trace.nc", "summary.json", "trace.png", "cif", "unconditional.csv",
            "chains.csv", "properties.png", "log_prior.png"} <= files
    for png in ("properties.png", "log_prior.png", "trace.png"):
        assert (run_dir / png).stat().st_size > 5000
    df = pd.read_csv(run_dir / "samples.csv")
    assert 1 <= len(df) <= 6
    assert {"formula", "string", "log_prior", "log_posterior", "band_gap",
            "formation_energy", "cif"} <= set(df.columns)
    assert np.isfinite(df[["band_gap", "formation_energy", "log_prior"]].to_numpy()).all()
    assert np.all(np.diff(df["log_posterior"]) <= 1e-9)
    letters = Template.parse(TEMPLATE).letters
    for text in df["string"]:
        c = Crystal.from_string(text)
        assert c.spacegroup == 225 and c.wyckoff == letters and set(c.species) <= set(ELEMENTS)
    assert len(list((run_dir / "cif").glob("*.cif"))) == len(df)


def test_summary_and_trace(run_dir):
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["command"] == "design" and s["status"] == "complete" and s["draws"] == 2
    assert s["targets"] == {"band_gap": 2.0, "formation_energy": -3.0}
    assert s["settings"]["sigmas"] == {"band_gap": 0.5}
    assert {"species", "coords", "lattice"} <= set(s["kernels"])
    for m in s["metrics"].values():
        assert m["n_conditioned"] == 6 and m["n_unconditional"] >= 1
        assert m["mean_abs_distance_unconditional"] > 0
    import arviz as az

    post = az.from_netcdf(run_dir / "trace.nc").posterior
    assert post["band_gap"].shape == (6, 2)
    names = {"log_posterior", "log_prior", "log_likelihood", "formation_energy"}
    assert names <= set(post.data_vars)
    unc = pd.read_csv(run_dir / "unconditional.csv")
    assert {"formula", "string", "start", "log_prior", "band_gap", "formation_energy"} <= set(
        unc.columns
    )
    # default pool of 4: up to 24 prior samples; the chains start from the best distinct ones
    assert 6 < len(unc) <= 24 and s["start"]["pool"] == len(unc)
    starts = unc[unc["start"]]
    assert len(starts) == 6 - s["start"]["repeated_starts"] and starts["string"].is_unique
    score = unc["log_prior"] + unc["log_likelihood"]
    rest = score[~unc["start"] & ~unc["string"].isin(starts["string"])]
    assert rest.empty or score[unc["start"]].min() >= rest.max()
    chains = pd.read_csv(run_dir / "chains.csv")
    assert len(chains) == 6
    # the recorded values are the predictions of the recorded crystals
    np.testing.assert_allclose(chains["log_posterior"],
                               chains["log_prior"] + chains["log_likelihood"], rtol=1e-4)


def test_refuses_to_overwrite(prior_dir, run_dir, capsys):
    before = (run_dir / "samples.csv").read_bytes()
    assert main(_args(prior_dir, run_dir)) == 2
    assert "--force" in capsys.readouterr().err
    assert (run_dir / "samples.csv").read_bytes() == before


def test_bad_arguments(prior_dir, tmp_path, capsys):
    assert main(_args(prior_dir, tmp_path / "a", ["--spacegroup", "221"])) == 2
    assert "disagrees" in capsys.readouterr().err
    argv = _args(prior_dir, tmp_path / "b")
    argv[argv.index("band_gap=2.0")] = "band_gap"
    assert main(argv) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_pool_block_moves_between_skeletons_and_resumes(prior_dir, models_dir, tmp_path):
    """Free design with the crystal pool block (i-SIR over the start pool's crystals): the
    block moves chains, states stay crystals of the group, the proposal is refitted at the end
    of burn-in to the pool and the chains, and a resumed run uses the fit it saved rather than
    one of the resumed chains."""
    from cfmc import runio

    out = tmp_path / "pool"
    argv = ["design", "--spacegroup", "225", "--elements", *ELEMENTS,
            "--target", "formation_energy=-3.0", "--chains", "4", "--sweeps", "3",
            "--burn-in", "1", "--pool", "4", "--block", "--block-proposal", "pool",
            "--block-tries", "3", "--seed", "2", "--prior", str(prior_dir), "--no-progress",
            "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kernels"]["block"]["proposed"] > 0
    saved, _ = runio.load_checkpoint(out)
    pool = pd.read_csv(out / "unconditional.csv")
    members = saved["block_fit.wyckoff"]
    assert members.shape[0] == 1024  # padded to max_members: one shape, one compilation
    # the fit is the pool's and the 4 chains' at the end of burn-in, the chains half of it
    weights = np.exp(saved["block_fit.log_weights"])
    assert 4 < np.count_nonzero(weights) <= len(pool) + 4
    assert weights.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.isclose(weights, 0.5 / 4, atol=1e-5).sum() >= 4
    assert main([*argv[:argv.index("--sweeps") + 1], "4", *argv[argv.index("--sweeps") + 2:],
                 "--resume"]) == 0
    resumed, _ = runio.load_checkpoint(out)
    assert np.array_equal(resumed["block_fit.wyckoff"], members)
    samples = pd.read_csv(out / "samples.csv")
    assert (samples["string"].str.startswith("225")).all()


def test_pool_block_needs_free_design(prior_dir, tmp_path, capsys):
    argv = _args(prior_dir, tmp_path / "t", ["--block", "--block-proposal", "pool"])
    assert main(argv) == 2
    assert "free design" in capsys.readouterr().err


def test_parse_assignments():
    assert parse_assignments(["band_gap=2", " x =-3.5"], "--target") == {"band_gap": 2.0,
                                                                       "x": -3.5}
    with pytest.raises(ValueError, match="not a number"):
        parse_assignments(["band_gap=two"], "--target")


def test_structure_rejects_a_site_off_its_wyckoff_position(data_dir):
    from cfmc.data import read_table

    table = read_table(data_dir / "crystalformer_mini.csv")
    for cif in table["cif"][:8]:
        c = Crystal.from_cif(cif)
        assert len(c.to_structure()) == c.num_atoms
    off = Crystal(225, ("a",), ("Na",), np.array([[0.1, 0.0, 0.0]]), np.array([5.0] * 3 + [90] * 3))
    with pytest.raises(ValueError, match="does not lie on that Wyckoff position"):
        off.to_structure()


def test_physical_guard_skips_collapsed_cells():
    seen = []

    def cond(crystals):
        seen.extend(crystals)
        return np.array([c.to_structure().volume for c in crystals])

    ok = Crystal.from_string("221-a-Sr-0-0-0-b-Ti-1/2-1/2-1/2-d-O-1/2-0-0",
                             lattice=[3.9, 3.9, 3.9, 90, 90, 90])
    squashed = ok.with_lattice([0.6, 0.6, 0.6, 90, 90, 90])  # atoms 0.3 A apart
    out = PhysicalGuard(cond)([ok, squashed, ok])
    assert len(seen) == 2 and np.isneginf(out.logp[1])
    np.testing.assert_allclose(out.logp[[0, 2]], 3.9**3, rtol=1e-4)
    assert out.errors[1] == "not physical" and out.errors[0] is None


def test_free_constraints_per_chain():
    crystals = [
        Crystal.from_string("221-a-Sr-0-0-0-b-Ti-1/2-1/2-1/2-d-O-1/2-0-0",
                            lattice=[3.9, 3.9, 3.9, 90, 90, 90]),
        Crystal.from_string("225-a-Na-0-0-0-b-Cl-1/2-1/2-1/2", lattice=[5.6] * 3 + [90] * 3),
    ]
    from cfmc.crystal import to_arrays

    allowed = np.zeros(119, bool)
    allowed[[8, 11, 17, 22, 38]] = True
    c = free_constraints(to_arrays(crystals, 4), allowed)
    # valid whatever letters a chain takes: the kernels mask padding sites and fixed coordinates
    assert c.species_move.all() and c.coord_move.all()
    assert c.allowed[0, 0].tolist() == allowed.tolist() and not c.allowed[1, 3, 0]
    assert c.lattice_move[0].tolist() == [True, False, False, False, False, False]


def test_distance_metrics():
    u = pd.DataFrame({"band_gap": [0.0, 4.0, np.nan]})
    c = pd.DataFrame({"band_gap": [1.5, 2.5]})
    m = distance_metrics(u, c, {"band_gap": 2.0})["band_gap"]
    assert m["mean_abs_distance_unconditional"] == 2.0
    assert m["mean_abs_distance_conditioned"] == 0.5 and m["ratio"] == 0.25
    assert "mean_abs_distance_start" not in m
    m = distance_metrics(u, c, {"band_gap": 2.0}, starts=u.iloc[[1]])["band_gap"]
    assert m["mean_abs_distance_start"] == 2.0
