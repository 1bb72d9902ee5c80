"""Dataset conversion: skips with reasons, caching, the `cfmc data stats` command."""

from __future__ import annotations

import pandas as pd

from cfmc.cli import main
from cfmc.data import load_dataset, load_file, read_table, split


def _mixed_csv(tmp_path, data_dir):
    good = read_table(data_dir / "crystalformer_mini.csv").iloc[:3]
    bad = pd.DataFrame(
        {
            "material_id": ["bad-cif", "bad-element"],
            "cif": [
                "data_broken\n_cell_length_a 4\nloop_\n_atom_site_label\n",
                good["cif"].iloc[0].replace("  Ti  Ti0", "  Qq  Qq0"),
            ],
        }
    )
    table = pd.concat([good, bad], ignore_index=True)
    path = tmp_path / "mixed.csv"
    table.to_csv(path, index=False)
    return path


def test_skips_are_reported_with_row_and_reason(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("CFMC_CACHE", str(tmp_path / "cache"))
    path = _mixed_csv(tmp_path, data_dir)
    ds = load_file(path, n_jobs=1, progress=False)
    assert len(ds) == 3
    assert ds.skipped["row"].tolist() == [3, 4]
    assert ds.skipped["material_id"].tolist() == ["bad-cif", "bad-element"]
    assert ds.skipped["reason"].iloc[0].startswith("parse error: malformed CIF")
    assert ds.skipped["reason"].iloc[1].startswith("unknown element: unknown element 'Qq")
    # other columns are kept beside each converted crystal
    assert "heat_all" in ds.table.columns and ds.table["row"].tolist() == [0, 1, 2]
    # the second load comes from the cache and is identical
    again = load_file(path, n_jobs=1, progress=False)
    assert (again.arrays.species == ds.arrays.species).all()
    assert again.skipped["reason"].tolist() == ds.skipped["reason"].tolist()
    assert list((tmp_path / "cache" / "datasets").glob("mixed.csv.*.npz"))


def test_too_many_sites_and_dedupe(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("CFMC_CACHE", str(tmp_path / "cache"))
    mini = data_dir / "crystalformer_mini.csv"
    ds = load_dataset([mini, mini], max_sites=2, n_jobs=1, progress=False)
    reasons = ds.skipped["reason"]
    n_rows = len(read_table(mini))
    n_too_many = reasons.str.startswith("too many sites").sum()
    n_dup = reasons.str.startswith("duplicate").sum()
    assert n_too_many % 2 == 0 and n_too_many > 0
    assert len(ds) + n_dup + n_too_many == 2 * n_rows  # nothing silently dropped
    assert len(ds) == n_rows - n_too_many // 2
    train, val = split(ds, 0.25, seed=0)
    assert len(train) + len(val) == len(ds) and len(val) == round(0.25 * len(ds))


def test_missing_file_and_missing_cif_column(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="dataset not found"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="no 'cif' column"):
        read_table(tmp_path / "x.csv")


def test_stats_command(tmp_path, data_dir, monkeypatch, capsys):
    monkeypatch.setenv("CFMC_CACHE", str(tmp_path / "cache"))
    path = _mixed_csv(tmp_path, data_dir)
    skips = str(tmp_path / "s.csv")
    assert main(["data", "stats", str(path), "--jobs", "1", "--skips", skips]) == 0
    out = capsys.readouterr().out
    assert "rows read: 5   converted: 3   skipped: 2" in out
    assert "skipped, parse error: 1" in out and "skipped, unknown element: 1" in out
    assert "space groups" in out and "sites per crystal" in out
    assert len(pd.read_csv(tmp_path / "s.csv")) == 2
