"""Shared fixtures: the shared data folder (../shared or $CFMC_SHARED)."""

from __future__ import annotations

import os
from pathlib import Path

# The suite's time is mostly XLA compiling hundreds of small programs that then run for
# milliseconds: LLVM's backend optimisation off compiles them in about half the CPU time (the
# HLO passes still run; the programs compute the same things). Set before JAX starts its
# backend, so Ray workers started by the tests inherit it too; the product is not affected.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_backend_optimization_level=0").strip()

import pytest

from cfmc.data import shared_dir


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
    """Tests build many jitted closures of the same computations (a sampler per test, a run per
    CLI call); a persistent cache for the session compiles each once, shared by the xdist
    workers of one session (JAX skips an entry it cannot read, and compiles it again)."""
    import os

    import jax

    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")
    old = [getattr(jax.config, n) for n in names]
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent / "jax_cache" if os.environ.get("PYTEST_XDIST_WORKER")
              else base / "jax_cache")
    folder.mkdir(exist_ok=True)
    for n, v in zip(names, (str(folder), 0.0, 0), strict=True):
        jax.config.update(n, v)
    yield
    for n, v in zip(names, old, strict=True):
        jax.config.update(n, v)


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


@pytest.fixture(scope="session")
def prior_dir(tmp_path_factory) -> Path:
    """A tiny random CrystalFormer checkpoint (seconds to compile; sharp enough distributions)."""
    import jax

    from cfmc import priors

    path = tmp_path_factory.mktemp("prior") / "tiny"
    config = priors.get_config("tiny").replace(init_scale=0.5)
    priors.save_prior(priors.CrystalFormer(config, jax.random.PRNGKey(0)), path)
    return path
