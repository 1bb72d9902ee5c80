"""One validation layer for what users give cfmc (CLI options and library arguments alike).

Every check raises ValueError naming the option or field, the value and what is allowed, so the
CLI can print one line (exit 2) and a library caller gets the same message.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MAX_SEED = 2**32 - 1
MAX_LENGTH = 1000.0  # Angstrom: far above any crystal cell cfmc models, far below overflow


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(parts)


def real(value: Any, name: str, low: float | None = None, high: float | None = None, *,
         low_open: bool = False, high_open: bool = False) -> float:
    """`value` as a finite float in the given range (open or closed ends)."""
    what = "a finite number" + (f" {_range_text(low, high, low_open, high_open)}"
                                if low is not None or high is not None else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{name} = {_show(value)}: expected {what}") from None
        else:
            raise ValueError(f"{name} = {_show(value)}: expected {what}")
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{name} = {x}: expected {what}")
    if (low is not None and (x <= low if low_open else x < low)) or (
            high is not None and (x >= high if high_open else x > high)):
        raise ValueError(f"{name} = {x:g}: expected {what}")
    return x


def optional_real(value: Any, name: str, low: float | None = None, high: float | None = None,
                  **kw: bool) -> float | None:
    """`real`, with None passing through (an option left unset)."""
    return None if value is None else real(value, name, low, high, **kw)


def integer(value: Any, name: str, low: int | None = None, high: int | None = None) -> int:
    """`value` as an int in [low, high]; floats only when integral."""
    what = "an integer" + (f" {_range_text(low, high, False, False)}"
                           if low is not None or high is not None else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} = {_show(value)}: expected {what}")
    if not isinstance(value, numbers.Integral):
        if not math.isfinite(float(value)) or float(value) != int(value):
            raise ValueError(f"{name} = {value}: expected {what}")
    n = int(value)
    if (low is not None and n < low) or (high is not None and n > high):
        raise ValueError(f"{name} = {n}: expected {what}")
    return n


def seed(value: Any, name: str = "seed") -> int:
    """A random seed: an integer 0 .. 2**32 - 1 (what JAX's PRNGKey and numpy take)."""
    return integer(value, name, 0, MAX_SEED)


def symprec(value: Any, name: str = "symprec") -> float:
    """spglib's symmetry tolerance in Angstrom: positive and at most 1 (spglib crashes on <= 0)."""
    return real(value, name, 0.0, 1.0, low_open=True)


def lattice(values: Any, name: str = "lattice") -> np.ndarray:
    """Six lattice parameters (a, b, c in Angstrom; alpha, beta, gamma in degrees) of a real cell:
    finite, lengths in (0, 1000], angles in (0, 180) and together a positive volume."""
    if values is None or isinstance(values, str | bytes):
        raise ValueError(f"{name} = {_show(values)}: expected 6 numbers (a b c alpha beta gamma)")
    try:
        items = list(np.asarray(values, dtype=object).ravel()) if not isinstance(
            values, Sequence) else list(values)
    except TypeError:
        raise ValueError(f"{name}: expected 6 numbers (a b c alpha beta gamma), "
                         f"got {type(values).__name__}") from None
    if len(items) != 6:
        raise ValueError(f"{name}: expected 6 numbers (a b c alpha beta gamma), got {len(items)}")
    out = np.empty(6)
    for i, (label, v) in enumerate(zip(("a", "b", "c", "alpha", "beta", "gamma"), items,
                                       strict=True)):
        if i < 3:
            out[i] = real(v, f"{name} {label}", 0.0, MAX_LENGTH, low_open=True)
        else:
            out[i] = real(v, f"{name} {label}", 0.0, 180.0, low_open=True, high_open=True)
    ca, cb, cg = np.cos(np.radians(out[3:]))
    factor = 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg
    if factor <= 1e-8:
        raise ValueError(f"{name}: angles {out[3]:g}, {out[4]:g}, {out[5]:g} do not make a cell "
                         "of positive volume")
    return out


def text(value: Any, name: str) -> str:
    """A non-empty string (e.g. a template), refusing None and other types by name."""
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} is empty")
    return value


def output_dir(path: str | Path, name: str = "--out") -> Path:
    """Make sure the run directory `path` can be created and written before any work starts:
    not a file, not under a file, writable (probed with a real file, which also catches
    read-only file systems where permission bits say yes)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name} {path}: exists and is not a directory")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"{name} {path}: {parent} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".cfmc-write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"{name} {path}: cannot write there ({e.strerror or e})") from None
    return path


def output_file(path: str | Path, force: bool, name: str = "--out") -> Path:
    """A file the user asked cfmc to write: never overwrite an existing one without `force`."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{name} {path}: is a directory, expected a file name")
    if path.exists() and not force:
        raise FileExistsError(f"{name} {path} exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise ValueError(f"{name} {path}: folder {path.parent} does not exist")
    return path


def run_numbers(temperature: float, seed_value: int) -> None:
    """The numbers of a sampling run that `RunOptions` does not check: the posterior's
    temperature and the seed."""
    real(temperature, "temperature", 0.0, low_open=True)
    seed(seed_value)
