"""The prior's commands end to end on a tiny random CrystalFormer: `cfmc sample` (CSV, CIF files,
validity column, redrawing invalid crystals, no silent overwrite), `cfmc logp` (columns by term,
the input's own columns kept) and `cfmc train` (log, checkpoint, resume)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cfmc.chemistry import min_distance
from cfmc.cli import main
from cfmc.crystal import Crystal

priors = pytest.importorskip("cfmc.priors")


def _valid_cif(cif) -> bool:
    """Distances above 0.5 A in the written CIF (no CIF: the cell did not build)."""
    if not isinstance(cif, str) or not cif:
        return False
    from pymatgen.core import Structure

    s = Structure.from_str(cif, fmt="cif")
    return len(s) == 1 or min_distance(s) > 0.5


def test_sample_writes_csv_and_cifs(prior_dir, tmp_path, capsys):
    out = tmp_path / "s"
    argv = ["sample", "--spacegroup", "225", "--num", "12", "--prior", str(prior_dir),
            "--elements", "Na", "Cl", "K", "--seed", "3", "--out", str(out)]
    assert main(argv) == 0
    df = pd.read_csv(out / "samples.csv")
    assert len(df) == 12
    assert {"string", "formula", "logp", "cif", "valid", "error"} <= set(df.columns)
    assert np.isfinite(df["logp"]).all()
    for text, cif, valid in zip(df["string"], df["cif"], df["valid"], strict=True):
        c = Crystal.from_string(text)
        assert c.spacegroup == 225 and set(c.species) <= {"Na", "Cl", "K"}
        assert _valid_cif(cif) == bool(valid)
    assert len(list((out / "cif").glob("*.cif"))) == df["cif"].notna().sum()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["command"] == "sample" and summary["settings"]["num"] == 12
    assert (out / "report.html").stat().st_size > 10000
    capsys.readouterr()
    assert main(argv) == 2  # a non-empty output folder is not overwritten
    assert "not empty" in capsys.readouterr().err


def test_sample_valid_only_redraws(prior_dir, tmp_path, capsys):
    # a random model makes many invalid crystals in group 2: the plain run keeps them
    base = ["sample", "--spacegroup", "2", "--num", "16", "--prior", str(prior_dir),
            "--seed", "0"]
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    plain = pd.read_csv(tmp_path / "plain" / "samples.csv")
    assert main([*base, "--valid-only", "--out", str(tmp_path / "valid")]) == 0
    valid = pd.read_csv(tmp_path / "valid" / "samples.csv")
    assert "redrawn" in capsys.readouterr().out
    assert valid["valid"].sum() >= plain["valid"].sum()
    if (~plain["valid"]).any():  # the redraws replace exactly the invalid ones
        keep = plain["valid"].to_numpy()
        assert (valid["string"][keep] == plain["string"][keep]).all()
    assert all(_valid_cif(cif) for cif in valid.loc[valid["valid"], "cif"])


def test_sample_interrupted_resumes_to_the_same_draw(prior_dir, tmp_path, monkeypatch):
    from cfmc import prior_samples

    base = ["sample", "--spacegroup", "225", "--num", "11", "--chunk", "4", "--prior",
            str(prior_dir), "--seed", "2", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "whole")]) == 0
    original, calls = prior_samples.draw_chunk, []

    def stop_at_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(prior_samples, "draw_chunk", stop_at_third)
    assert main([*base, "--out", str(tmp_path / "cut")]) == 130  # interrupted (Ctrl-C)
    assert not (tmp_path / "cut" / "samples.csv").exists()  # two chunks kept in the checkpoint
    monkeypatch.setattr(prior_samples, "draw_chunk", original)
    assert main([*base, "--seed", "3", "--resume", "--out", str(tmp_path / "cut")]) == 2
    assert main([*base, "--resume", "--out", str(tmp_path / "cut")]) == 0
    whole, cut = (pd.read_csv(tmp_path / d / "samples.csv") for d in ("whole", "cut"))
    assert whole.equals(cut)


def test_logp_columns_by_term(prior_dir, data_dir, tmp_path, capsys):
    out = tmp_path / "lp.csv"
    data = data_dir / "mp20_biternary_val.csv.gz"
    assert main(["logp", "--data", str(data), "--prior", str(prior_dir), "--limit", "30",
                 "--out", str(out)]) == 0
    df = pd.read_csv(out)
    src = pd.read_csv(data, nrows=30).filter(regex="^(?!Unnamed)")
    assert len(df) == 30 and set(src.columns) <= set(df.columns)
    terms = ["logp_wyckoff", "logp_species", "logp_coords", "logp_lattice"]
    assert {"logp", *terms} <= set(df.columns)
    finite = np.isfinite(df["logp"])
    # the tiny model holds 6 sites: larger crystals have probability zero, and say why
    big = df["logp_error"].fillna("").str.startswith("too many sites")
    assert finite.sum() >= 20 and (finite | big).all() and (df.loc[big, "logp"] == -np.inf).all()
    np.testing.assert_allclose(df.loc[finite, terms].sum(axis=1), df.loc[finite, "logp"],
                               rtol=1e-4, atol=1e-3)
    assert "NLL" in capsys.readouterr().out


def test_train_resume(data_dir, tmp_path):
    out = tmp_path / "run"
    data = str(data_dir / "mp20_biternary_val.csv.gz")
    argv = ["train", data, "--config", "tiny", "--limit", "300", "--batch-size", "20",
            "--epochs", "1", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    log = pd.read_csv(out / "log.csv")
    assert len(log) == 1 and np.isfinite(log["val_total"]).all()
    assert (out / "best" / "weights.eqx").exists() and (out / "learning_curve.png").exists()
    assert main(argv) == 2  # a used run directory needs --resume or --force
    assert main([*argv[:-3], "--epochs", "2", "--resume", "--no-progress", "--out", str(out)]) == 0
    log = pd.read_csv(out / "log.csv")
    assert list(log["epoch"]) == [1, 2]
    meta = json.loads((out / "best" / "meta.json").read_text())
    assert meta["extra"]["epoch"] in (1, 2)


def test_train_init_from_checkpoint(prior_dir, data_dir, tmp_path):
    """--init takes the checkpoint's config and weights: a run with learning rate zero leaves the
    weights exactly as they were."""
    import equinox as eqx
    import jax

    out = tmp_path / "finetune"
    data = str(data_dir / "mp20_biternary_val.csv.gz")
    argv = [
        "train",
        data,
        "--init",
        str(prior_dir),
        "--limit",
        "200",
        "--batch-size",
        "20",
        "--epochs",
        "1",
        "--lr",
        "0",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    start, end = priors.load_prior(prior_dir), priors.load_prior(out / "best")
    assert end.config == start.config
    leaves = jax.tree_util.tree_leaves(eqx.filter(start, eqx.is_array))
    assert all(
        np.array_equal(a, b)
        for a, b in zip(
            leaves, jax.tree_util.tree_leaves(eqx.filter(end, eqx.is_array)), strict=True
        )
    )
    assert main([*argv[:-1], str(tmp_path / "other"), "--resume"]) == 2  # --init with --resume
