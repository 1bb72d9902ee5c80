"""The universal interatomic potential (CHGNet, weights inside its wheel, so it loads offline).

CHGNet was chosen by measurement against matgl's M3GNet-MatPES-PBE: with per-element references
fitted to MP formation energies, held-out formation-energy MAE 0.041 vs 0.32 eV/atom (MatPES is pure
PBE, without MP's +U and anion corrections, which no per-element offset can absorb).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from pymatgen.core import Structure

POTENTIAL_NAME = "chgnet"


def _chgnet_model() -> Any:
    try:
        from chgnet.model import CHGNet
    except ImportError as e:  # the optional extra
        raise ImportError("the stability screen needs CHGNet: pip install 'cfmc[screen]'") from e
    from cfmc.predictors.megnet import set_torch_threads

    set_torch_threads()
    with contextlib.redirect_stdout(io.StringIO()):
        return CHGNet.load(verbose=False)


@lru_cache(maxsize=1)
def load_model() -> Any:
    """The CHGNet model (one per process)."""
    return _chgnet_model()


@lru_cache(maxsize=1)
def load_calculator() -> Any:
    """An ASE calculator for the potential (one per process)."""
    from chgnet.model.dynamics import CHGNetCalculator

    with contextlib.redirect_stdout(io.StringIO()):
        return CHGNetCalculator(load_model(), use_device="cpu")


def potential_id() -> str:
    """Name and version of the potential, used to key caches."""
    import chgnet

    version = getattr(load_model(), "version", None) or "0.3.0"
    return f"{POTENTIAL_NAME}-{version}-pkg{chgnet.__version__}"


def static_energies(structures: Sequence[Structure], batch_size: int = 16) -> np.ndarray:
    """Energy per atom (eV) of each structure as given (no relaxation); NaN where it fails."""
    model = load_model()
    out = np.full(len(structures), np.nan)
    for i in range(0, len(structures), batch_size):
        chunk = list(structures[i : i + batch_size])
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                preds = model.predict_structure(chunk, task="e", batch_size=batch_size)
            preds = preds if isinstance(preds, list) else [preds]
            out[i : i + len(chunk)] = [float(p["e"]) for p in preds]
        except Exception:  # one bad structure: fall back to one at a time
            for j, s in enumerate(chunk):
                try:
                    with contextlib.redirect_stdout(io.StringIO()):
                        out[i + j] = float(model.predict_structure(s, task="e")["e"])
                except Exception:
                    pass
    return out
