"""The run directory: samples.csv, one CIF per kept crystal, trace.nc, summary.json, plots, and a
checkpoint to resume from. Nothing is overwritten without `force`; writes are atomic so an
interrupted run leaves complete files.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cfmc import validate
from cfmc.arrays import CrystalArrays
from cfmc.rundir_lock import LOCK

CHECKPOINT = "checkpoint.npz"
# everything a run writes (any command); `force` removes these and nothing else
OUTPUTS = ("samples.csv", "chains.csv", "trace.nc", "summary.json", "trace.png", "burn_in.png",
           "unconditional.csv", "properties.png", "log_prior.png", "report.html", CHECKPOINT,
           "cif", "chunks")


def prepare(path: str | Path, force: bool = False, resume: bool = False) -> Path:
    """Create the run directory. An existing non-empty one is an error unless `force` (its run
    outputs are removed) or `resume` (a checkpoint must be there)."""
    path = Path(path)
    if resume:
        if not (path / CHECKPOINT).exists():
            raise FileNotFoundError(f"cannot resume: no {CHECKPOINT} in {path}")
        return path
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a directory")
    validate.output_dir(path)
    if path.exists() and any(p.name != LOCK for p in path.iterdir()):
        if not force:
            raise FileExistsError(
                f"run directory {path} is not empty; pass --force to overwrite or --resume to "
                "continue it"
            )
        for name in OUTPUTS:
            p = path / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write(path: Path, write) -> Path:
    """Write through a temporary file renamed into place; a failed write (a full disk) removes
    the temporary and leaves the previous file as it was."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def save_checkpoint(path: str | Path, arrays: Mapping[str, Any], meta: Mapping[str, Any],
                    name: str = CHECKPOINT) -> Path:
    """Write the chain state (a flat dict of arrays) and JSON metadata atomically (into the
    file `name` of the run directory `path`)."""
    path = Path(path) / name
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload["__meta__"] = np.array(json.dumps(jsonable(meta)))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **payload)

    return atomic_write(path, write)


def load_checkpoint(path: str | Path, name: str = CHECKPOINT
                    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Inverse of `save_checkpoint`; a damaged file is a ValueError naming it."""
    file = Path(path) / name
    try:
        with np.load(file, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files if k != "__meta__"}
            meta = json.loads(str(f["__meta__"]))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"damaged checkpoint {file} ({type(e).__name__}: {e}); start afresh "
                         "with --force") from None
    return arrays, meta


def pack_arrays(prefix: str, arrays: CrystalArrays) -> dict[str, np.ndarray]:
    return {f"{prefix}.{k}": np.asarray(v) for k, v in arrays._asdict().items()}


def unpack_arrays(prefix: str, flat: Mapping[str, np.ndarray]) -> CrystalArrays:
    return CrystalArrays(**{k: flat[f"{prefix}.{k}"] for k in CrystalArrays._fields})


def jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, Path):
        return str(x)
    return x


def write_summary(path: str | Path, summary: Mapping[str, Any]) -> Path:
    p = Path(path) / "summary.json"
    text = json.dumps(jsonable(summary), indent=2) + "\n"
    return atomic_write(p, lambda tmp: tmp.write_text(text))


def write_table(path: str | Path, name: str, table) -> Path:
    """A pandas table as CSV, atomically."""
    return atomic_write(Path(path) / name, lambda tmp: table.to_csv(tmp, index=False))


def saved_settings(path: str | Path) -> dict[str, Any]:
    """The settings a run saved in its checkpoint."""
    return load_checkpoint(path)[1]["settings"]


def write_trace(path: str | Path, idata) -> Path:
    p = Path(path) / "trace.nc"
    return atomic_write(p, lambda tmp: idata.to_netcdf(str(tmp)))


def select_top(
    crystals: Sequence, scores: np.ndarray, top: int | None, ltol: float = 0.2,
    stol: float = 0.3, angle_tol: float = 5.0,
) -> list[int]:
    """Indices of the `top` best distinct crystals by score (descending). Duplicates: same reduced
    composition and matched by pymatgen's StructureMatcher; crystals without a finite score or
    a valid structure (two atoms on one point included, which `Crystal.from_cif` would refuse
    to read back) are dropped."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from cfmc.crystal import check_distinct_atoms

    matcher = StructureMatcher(ltol=ltol, stol=stol, angle_tol=angle_tol)
    order = np.argsort(-np.nan_to_num(np.asarray(scores, float), nan=-np.inf), kind="stable")
    kept: list[int] = []
    by_formula: dict[str, list] = {}
    for i in order:
        if top is not None and len(kept) >= top:
            break
        if not np.isfinite(scores[i]):
            continue
        c = crystals[i]
        try:
            s = c.to_structure()
            check_distinct_atoms(s)
        except ValueError:
            continue
        same = by_formula.setdefault(c.formula, [])
        if any(matcher.fit(s, other) for other in same):
            continue
        same.append(s)
        kept.append(int(i))
    return kept


def write_samples(
    path: str | Path,
    crystals: Sequence,
    chains: Sequence[int],
    columns: Mapping[str, np.ndarray],
    cif_dir: str = "cif",
) -> Path:
    """samples.csv (one row per crystal: chain, formula, space group, string, the given numeric
    columns, CIF text) and one CIF file per crystal under `cif_dir` (CIFs of an earlier write
    that are no longer kept are removed). Returns the table."""
    import pandas as pd

    path = Path(path)
    (path / cif_dir).mkdir(exist_ok=True)
    written: set[str] = set()
    rows = []
    for rank, (c, chain) in enumerate(zip(crystals, chains, strict=True)):
        try:
            cif = c.to_cif()
        except ValueError as e:
            cif = ""
            err = str(e)
        else:
            err = ""
            name = f"{rank:04d}_{c.formula}_chain{int(chain)}.cif"
            atomic_write(path / cif_dir / name, lambda tmp, text=cif: tmp.write_text(text))
            written.add(name)
        row = {"rank": rank, "chain": int(chain), "formula": c.formula,
               "spacegroup": c.spacegroup, "string": c.to_string()}
        row.update({k: float(np.asarray(v)[rank]) for k, v in columns.items()})
        row["cif"] = cif
        if err:
            row["error"] = err
        rows.append(row)
    df = pd.DataFrame(rows)
    atomic_write(path / "samples.csv", lambda tmp: df.to_csv(tmp, index=False))
    for stale in (path / cif_dir).glob("*.cif"):
        if stale.name not in written:
            stale.unlink()
    return df
