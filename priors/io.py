"""Prior checkpoints: a directory with config.json, weights.eqx and meta.json, saved atomically."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax

from .config import PriorConfig
from .model import CrystalFormer, count_parameters

FORMAT = "cfmc-crystalformer/1"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "default"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_dir_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Fill a fresh temporary directory with `write(tmp)`, then swap it in for `path`.

    A crash leaves either the old directory or the new one (or `path.old`, which readers accept).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    old = path.parent / f"{path.name}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write(tmp)
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def readable_dir(path: str | Path) -> Path:
    """`path`, or the `path.old` left by an interrupted swap."""
    path = Path(path)
    old = path.parent / f"{path.name}.old"
    return old if not path.exists() and old.exists() else path


def save_prior(model: CrystalFormer, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint directory: config.json, weights.eqx (Equinox leaves) and meta.json."""

    def write(d: Path) -> None:
        (d / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
        eqx.tree_serialise_leaves(d / "weights.eqx", model)
        meta = {
            "format": FORMAT,
            "num_parameters": count_parameters(model),
            "weights_sha256": sha256(d / "weights.eqx"),
            "saved": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "extra": extra or {},
        }
        (d / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")

    return write_dir_atomically(path, write)


def read_meta(path: str | Path) -> dict[str, Any]:
    """The meta.json of a checkpoint directory."""
    return json.loads((readable_dir(path) / "meta.json").read_text())


def load_prior(path: str | Path | CrystalFormer | None = None) -> CrystalFormer:
    """Load a checkpoint directory (default: the shipped one at priors/checkpoints/default/); a
    CrystalFormer passes through, so library functions take either.

    Raises FileNotFoundError when it is absent and ValueError when it is damaged, naming the path.
    """
    if isinstance(path, CrystalFormer):
        return path
    path = readable_dir(DEFAULT_CHECKPOINT if path is None else Path(path))
    files = [path / n for n in ("config.json", "weights.eqx", "meta.json")]
    if not path.is_dir() or not all(f.exists() for f in files):
        missing = [f.name for f in files if not f.exists()]
        raise FileNotFoundError(
            f"no prior checkpoint at {path} (missing: {', '.join(missing) or 'the directory'}); "
            "train one with `cfmc train --out DIR` and pass DIR/best"
        )
    try:
        meta = json.loads(files[2].read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"unknown format {meta.get('format')!r}, expected {FORMAT!r}")
        if sha256(files[1]) != meta["weights_sha256"]:
            raise ValueError("weights.eqx does not match the checksum in meta.json")
        config = PriorConfig.from_dict(json.loads(files[0].read_text()))
        skeleton = eqx.filter_eval_shape(CrystalFormer, config, jax.random.PRNGKey(0))
        return eqx.tree_deserialise_leaves(files[1], skeleton)
    except Exception as e:
        raise ValueError(f"damaged prior checkpoint at {path}: {e}") from e
