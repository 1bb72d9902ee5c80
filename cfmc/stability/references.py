"""Per-element reference energies: the potential's energies on the MP formation-energy scale.

mu is fitted by least squares, E_i = sum_el x_el,i mu_el + Ef_i(MP), on static potential energies
of a seeded sample of the training mix; the fit and its held-out error are cached as JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from pymatgen.core import Composition

FIT_VERSION = 1


def cache_root(path: str | os.PathLike | None = None) -> Path:
    """Hull cache folder: `path`, else $CFMC_HULL_CACHE, else $CFMC_CACHE/hull, else
    ~/.cache/cfmc/hull."""
    if path is not None:
        return Path(path).expanduser()
    if os.environ.get("CFMC_HULL_CACHE"):
        return Path(os.environ["CFMC_HULL_CACHE"]).expanduser()
    base = Path(os.environ.get("CFMC_CACHE", Path.home() / ".cache" / "cfmc"))
    return base / "hull"


def fit_references(
    n_fit: int = 2500, n_test: int = 500, max_atoms: int = 40, seed: int = 0, progress: bool = True
) -> dict:
    """Fit mu (eV/atom per element) on `n_fit` known crystals; report MAE on `n_test` others."""
    from tqdm.auto import tqdm

    from cfmc.stability.known import parse_cif, read_known
    from cfmc.stability.potential import potential_id, static_energies

    known = read_known()
    known = known[(known["natoms"] <= max_atoms) & known["e_form"].notna()]
    known = known[known["chemsys"].str.contains("-")]  # compounds; elements are 0 by definition
    sample = known.sample(n=min(n_fit + n_test, len(known)), random_state=seed)
    energies = []
    for i in tqdm(range(0, len(sample), 64), desc="reference energies", disable=not progress):
        chunk = [parse_cif(c) for c in sample["cif"].iloc[i : i + 64]]
        energies.append(static_energies(chunk))
    e = np.concatenate(energies)
    comps = [Composition(f) for f in sample["formula"]]
    elements = sorted({el.symbol for c in comps for el in c.elements})
    x = np.array([[c.get_atomic_fraction(el) for el in elements] for c in comps])
    ok = np.isfinite(e)
    fit = ok & (np.arange(len(e)) < n_fit)
    test = ok & ~fit
    y = e - sample["e_form"].to_numpy()
    mu, *_ = np.linalg.lstsq(x[fit], y[fit], rcond=None)
    counts = (x[fit] > 0).sum(0)
    resid = e - x @ mu - sample["e_form"].to_numpy()
    seen = (x[test][:, counts == 0] == 0).all(1)  # test crystals whose elements were all fitted
    return {
        "version": FIT_VERSION,
        "potential": potential_id(),
        "seed": seed,
        "n_fit": int(fit.sum()),
        "n_test": int(test.sum()),
        "mae_fit": float(np.abs(resid[fit]).mean()),
        "mae_test": float(np.abs(resid[test][seen]).mean()),
        "mu": {el: float(m) for el, m, n in zip(elements, mu, counts, strict=True) if n > 0},
        "counts": {el: int(n) for el, n in zip(elements, counts, strict=True) if n > 0},
    }


SHIPPED = Path(__file__).with_name("references-chgnet.json")


def load_references(cache: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """The fitted references for the current potential: from the cache, else the fit shipped with
    cfmc (when it was made with this potential), else fitted now (minutes) and cached."""
    from cfmc.stability.potential import potential_id

    path = cache_root(cache) / f"references-{potential_id()}-v{FIT_VERSION}.json"
    for candidate in (path, SHIPPED):
        if candidate.exists():
            refs = json.loads(candidate.read_text())
            if refs.get("potential") == potential_id() and refs.get("version") == FIT_VERSION:
                return refs
    from cfmc.stability.cache import write_atomic

    refs = fit_references(progress=progress)
    write_atomic(path, json.dumps(refs, indent=1))
    return refs


def formation_energy(composition: Composition, energy_per_atom: float, mu: Mapping[str, float]
                     ) -> float:
    """Formation energy per atom on the MP scale; KeyError for an element without a reference."""
    comp = Composition(composition)
    return float(energy_per_atom - sum(comp.get_atomic_fraction(el) * mu[el.symbol]
                                       for el in comp.elements))


if __name__ == "__main__":  # refit and write the shipped file: python -m cfmc.stability.references
    fitted = fit_references()
    SHIPPED.write_text(json.dumps(fitted, indent=1))
    print(json.dumps({k: v for k, v in fitted.items() if k not in ("mu", "counts")}))
