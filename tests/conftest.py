"""Shared fixtures: the shared data folder (../shared or $CFMC_SHARED)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cfmc.data import shared_dir


@pytest.fixture(scope="session")
def shared() -> Path:
    root = shared_dir()
    if not (root / "data").is_dir():
        pytest.skip(f"shared data not found at {root} (set CFMC_SHARED to its folder)")
    return root


@pytest.fixture(scope="session")
def data_dir(shared: Path) -> Path:
    return shared / "data"


@pytest.fixture(scope="session")
def models_dir(shared: Path) -> Path:
    path = shared / "models"
    if not path.is_dir():
        pytest.skip(f"matgl checkpoints not found at {path}")
    return path
