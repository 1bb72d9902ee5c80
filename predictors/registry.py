"""Predictors by name, so the CLI and configs can say `--predictor band_gap`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import FunctionPredictor, Predictor

_REGISTRY: dict[str, tuple[Callable[..., Predictor], str]] = {}
_instances: dict[str, Predictor] = {}


def register(name: str, factory: Callable[..., Predictor], help: str = "") -> None:
    """Make `factory(**kwargs) -> Predictor` available as `name`."""
    if not name.isidentifier():
        raise ValueError(f"predictor name must be an identifier, got {name!r}")
    _REGISTRY[name] = (factory, help)
    _instances.pop(name, None)


def available() -> dict[str, str]:
    """Registered names with their one-line descriptions."""
    return {k: h for k, (_, h) in sorted(_REGISTRY.items())}


def get_predictor(name: str, **kwargs: Any) -> Predictor:
    """The predictor registered as `name`; without kwargs one shared instance (shared cache)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown predictor {name!r}; available: {', '.join(available())}")
    if kwargs:
        return _REGISTRY[name][0](**kwargs)
    if name not in _instances:
        _instances[name] = _REGISTRY[name][0]()
    return _instances[name]


def _band_gap(**kw: Any) -> Predictor:
    from .megnet import MEGNetBandGap

    return MEGNetBandGap(**kw)


def _formation_energy(**kw: Any) -> Predictor:
    from .megnet import MEGNetFormationEnergy

    return MEGNetFormationEnergy(**kw)


def _density(**kw: Any) -> Predictor:
    kw = {"name": "density", "units": "g/cm3", "typical_error": 0.01, **kw}
    return FunctionPredictor(lambda s: float(s.density), **kw)


register("band_gap", _band_gap, "MEGNet multi-fidelity band gap, PBE by default (eV)")
register("formation_energy", _formation_energy, "MEGNet formation energy (eV/atom)")
register("density", _density, "mass density from the structure (g/cm3)")
