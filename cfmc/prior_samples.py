"""Crystals drawn from the prior for one space group: a samples.csv (string, formula, log p,
validity, CIF), one CIF file per sample, summary.json and report.html; optionally redrawing
structurally invalid ones, which samples the prior restricted to valid crystals."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd


class PriorSamples(NamedTuple):
    """The table written to samples.csv and what the draw did."""

    table: pd.DataFrame
    mean_log_prob: float
    valid: int
    redrawn: int
    failed: int  # crystals without a valid structure (no CIF)


def sample_prior(
    spacegroup: int, out: str | Path, num: int = 1000, elements: Sequence[str] | None = None,
    temperature: float = 1.0, top_p: float = 1.0, prior: Any = None, seed: int = 0,
    valid_only: bool = False, max_rounds: int = 20, force: bool = False,
) -> PriorSamples:
    """Draw `num` crystals of `spacegroup` from the prior into `out` (see the module docstring);
    `elements` restricts the species, `top_p` filters them by nucleus sampling."""
    import jax

    from cfmc import runio, validate
    from cfmc.arrays import CrystalArrays
    from cfmc.chemistry import element_mask, structurally_valid
    from cfmc.crystal import from_arrays
    from cfmc.diagnostics import package_versions
    from cfmc.priors import load_prior, sample
    from cfmc.priors.evaluate import log_prob_many
    from cfmc.run import write_report_safely
    from cfmc.wyckoff import check_spacegroup

    t0 = time.time()
    check_spacegroup(spacegroup)
    validate.integer(num, "num", 1)
    validate.real(temperature, "temperature", 0.0, low_open=True)
    validate.real(top_p, "top_p", 0.0, 1.0, low_open=True)
    validate.seed(seed)
    validate.integer(max_rounds, "max_rounds", 1)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out} is not empty (pass --force to write into it)")
    allowed = (None if elements is None
               else element_mask(elements, exclude_radioactive=False, option="--elements"))
    model = load_prior(prior)

    def draw(round_: int):
        key = jax.random.fold_in(jax.random.PRNGKey(seed), round_)
        drawn = sample(model, key, spacegroup, num, temperature=temperature, top_p=top_p,
                       allowed_species=allowed)
        drawn = CrystalArrays(*(np.asarray(f) for f in drawn))
        return drawn, from_arrays(drawn)

    arrays, crystals = draw(0)
    valid = np.array([structurally_valid(c)[0] for c in crystals])
    redrawn = 0
    for r in range(1, max_rounds + 1 if valid_only else 1):
        bad = np.flatnonzero(~valid)
        if not bad.size:
            break
        more, more_crystals = draw(r)  # same batch shape every round: no recompilation
        ok = np.flatnonzero([structurally_valid(c)[0] for c in more_crystals])[: bad.size]
        fill = bad[: ok.size]
        arrays = CrystalArrays(*(f.copy() for f in arrays))
        for f, g in zip(arrays, more, strict=True):
            f[fill] = g[ok]
        for i, j in zip(fill, ok, strict=True):
            crystals[i] = more_crystals[j]
        valid[fill] = True
        redrawn += fill.size
    terms = log_prob_many(model, arrays)
    cif_dir = out / "cif"
    cif_dir.mkdir(parents=True, exist_ok=True)
    rows, failed = [], 0
    for i, crystal in enumerate(crystals):
        row = {"index": i, "spacegroup": spacegroup, "string": crystal.to_string()}
        row["formula"], row["logp"], row["cif"], row["error"] = "", float(terms.total[i]), "", ""
        row["valid"] = bool(valid[i])
        try:
            row["formula"] = crystal.formula
            row["cif"] = crystal.to_cif()
            (cif_dir / f"sample_{i:05d}.cif").write_text(row["cif"])
        except Exception as e:  # an unphysical cell (e.g. a negative length) has no structure
            row["error"] = f"{type(e).__name__}: {e}"
            failed += 1
        rows.append(row)
    table = pd.DataFrame(rows)
    table.to_csv(out / "samples.csv", index=False)
    result = PriorSamples(table, float(np.mean(terms.total)), int(valid.sum()), redrawn, failed)
    settings = {"spacegroup": spacegroup, "num": num, "elements": elements,
                "temperature": temperature, "top_p": top_p, "prior": prior if prior is None
                or isinstance(prior, str | Path) else "given", "seed": seed,
                "valid_only": valid_only, "max_rounds": max_rounds}
    runio.write_summary(out, {
        "command": "sample", "status": "complete", "settings": settings, "seed": seed,
        "seconds": time.time() - t0, "mean_log_prior": result.mean_log_prob,
        "structurally_valid": result.valid, "redrawn": redrawn, "without_structure": failed,
        "versions": package_versions()})
    write_report_safely(out)
    return result
