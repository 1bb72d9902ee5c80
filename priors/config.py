"""Hyper-parameters of the CrystalFormer prior as a frozen dataclass, plus the named configs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PriorConfig:
    """Every size of the model; a checkpoint stores it as config.json.

    max_sites is the number of real-site slots of the input arrays; the model appends one more
    padding slot internally, where the lattice is read.
    """

    n_layers: int = 4
    n_heads: int = 8
    key_size: int = 32
    model_size: int = 64
    embed_size: int = 32
    widening_factor: int = 4
    Kx: int = 16  # von Mises components per coordinate
    Kl: int = 4  # Gaussian components of the lattice mixture
    Nf: int = 5  # Fourier frequencies of the coordinate features
    max_sites: int = 20
    exclusion: bool = False  # holes around earlier atoms in each site's last coordinate
    dropout_rate: float = 0.1
    attn_dropout_rate: float = 0.1
    num_species: int = 119  # index 0 pads, 1..118 are atomic numbers
    num_letters: int = 28  # index 0 pads, 1..27 are 'a'..'z', 'A'
    kappa_min: float = 1e-2  # floor of the von Mises concentrations
    sigma_min: float = 1e-3  # floor of the lattice widths (normalised units)
    init_scale: float = 0.02  # std of the truncated-normal initialisation

    @property
    def seq_len(self) -> int:
        """Tokens the transformer sees: start token, 5 per site, the appended padding letter."""
        return 5 * self.max_sites + 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PriorConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown PriorConfig fields: {sorted(unknown)}")
        return cls(**d)

    def replace(self, **changes: Any) -> PriorConfig:
        return dataclasses.replace(self, **changes)


CONFIGS: dict[str, PriorConfig] = {
    # Cao et al. 2025, as trained on MP-20.
    "paper": PriorConfig(
        n_layers=16, n_heads=16, key_size=64, model_size=64, embed_size=256, Kx=16, Kl=4, Nf=5
    ),
    # The smaller model of the public CrystalFormer code base.
    "reference": PriorConfig(n_layers=4, n_heads=8, key_size=32, model_size=64, embed_size=32),
    # What is shipped for CPU training and sampling: the reference size with 16 coordinate
    # frequencies (finer positional resolution; the shipped weights were widened from 5) and the
    # exclusion zone around earlier atoms (priors/exclusion.py).
    "default": PriorConfig(
        n_layers=4, n_heads=8, key_size=32, model_size=64, embed_size=32, Nf=16, exclusion=True
    ),
    # For tests: seconds to compile and run.
    "tiny": PriorConfig(
        n_layers=1,
        n_heads=2,
        key_size=8,
        model_size=16,
        embed_size=8,
        Kx=3,
        Kl=2,
        Nf=2,
        max_sites=6,
        dropout_rate=0.0,
        attn_dropout_rate=0.0,
    ),
}


def enable_compilation_cache(path: str | None = None) -> None:
    """Keep compiled programs on disk ($CFMC_CACHE/jax, default ~/.cache/cfmc/jax), so repeated
    runs skip XLA compilation (tens of seconds per shape on a small CPU). CFMC_COMPILE_CACHE=0
    turns it off; a cache folder already set (e.g. by a test session) is kept."""
    import os
    from pathlib import Path

    import jax

    if os.environ.get("CFMC_COMPILE_CACHE", "1") == "0" or (
            path is None and jax.config.jax_compilation_cache_dir):
        return
    root = Path(os.environ.get("CFMC_CACHE", Path.home() / ".cache" / "cfmc"))
    jax.config.update("jax_compilation_cache_dir", str(path or root / "jax"))
    # every program, however quick to compile: a run builds dozens of small ones, and loading
    # each from disk is faster than compiling it again
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def get_config(name: str) -> PriorConfig:
    """A named config ('paper', 'reference', 'default', 'tiny')."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown prior config '{name}' (known: {', '.join(CONFIGS)})") from None
