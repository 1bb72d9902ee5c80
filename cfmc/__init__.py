"""cfmc: Bayesian crystal design with a space-group-informed transformer prior and MCMC."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public names, imported on first use so that `import cfmc` stays light (no JAX, no torch).
_EXPORTS = {
    "Crystal": "cfmc.crystal",
    "CrystalArrays": "cfmc.arrays",
    "load_dataset": "cfmc.data",
    "load_prior": "cfmc.priors",
    "Posterior": "cfmc.posterior",
    "Template": "cfmc.template",
    "screen": "cfmc.stability",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cfmc' has no attribute '{name}'")
