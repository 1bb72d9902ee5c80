"""Datasets: CSV files in the CDVAE layout (CIF text in column `cif`) to `CrystalArrays`.

Conversion runs in parallel with a progress bar, is cached on disk keyed by file content and
settings, and every skipped row is reported with its reason.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cfmc.arrays import DEFAULT_MAX_SITES, CrystalArrays
from cfmc.crystal import Crystal, from_arrays, to_arrays

_FORMAT_VERSION = 1  # bump when conversion changes, so stale caches are not reused

DEFAULT_TRAINING_FILES = ("mp20_biternary_val.csv.gz", "mpts52_val.csv.gz", "mpts52_test.csv.gz")


def shared_dir() -> Path:
    """The shared data folder: $CFMC_SHARED, else `../shared` beside the repository."""
    env = os.environ.get("CFMC_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared"


def default_training_files() -> list[Path]:
    """The default training mix (see shared/data/README.md)."""
    return [shared_dir() / "data" / name for name in DEFAULT_TRAINING_FILES]


@dataclass
class Dataset:
    """Converted crystals with the CSV's other columns; `skipped` lists rows left out, with why."""

    arrays: CrystalArrays
    table: pd.DataFrame  # one row per converted crystal: source file, row, the CSV's columns
    skipped: pd.DataFrame  # columns: file, row, material_id, reason

    def __len__(self) -> int:
        return self.arrays.batch_size

    @property
    def crystals(self) -> list[Crystal]:
        return from_arrays(self.arrays)

    def skip_counts(self) -> dict[str, int]:
        """Skipped rows by the kind of reason (text before the first colon)."""
        kinds = self.skipped["reason"].str.split(":").str[0]
        return kinds.value_counts().to_dict()


def read_table(path: str | Path, limit: int | None = None) -> pd.DataFrame:
    """Read a CDVAE-layout CSV(.gz); a clear error if it has no `cif` column."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {path}")
    try:
        table = pd.read_csv(path, nrows=limit)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as e:
        raise ValueError(f"{path}: cannot read it as a CSV ({type(e).__name__}: "
                         f"{' '.join(str(e).split())}); is it truncated?") from None
    if "cif" not in table.columns:
        raise ValueError(f"{path}: no 'cif' column (columns: {', '.join(table.columns)})")
    return table.drop(columns=[c for c in table.columns if c.startswith("Unnamed")])


def convert_cif(cif: str, symprec: float = 0.1, max_sites: int | None = DEFAULT_MAX_SITES):
    """(Crystal, None) on success, (None, reason) on failure; never raises."""
    import warnings

    from pymatgen.core import Structure

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_str(cif, fmt="cif")
    except Exception as e:
        return None, f"parse error: malformed CIF ({type(e).__name__}: {e})"[:300]
    try:
        crystal = Crystal.from_structure(structure, symprec)
    except Exception as e:
        msg = str(e)
        kind = ("symmetry not found" if "symmetry" in msg else
                "unknown element" if "unknown element" in msg else "conversion error")
        return None, f"{kind}: {e}"[:300]
    if max_sites is not None and crystal.num_sites > max_sites:
        return None, f"too many sites: {crystal.num_sites} > {max_sites}"
    return crystal, None


def _convert_chunk(args):
    cifs, symprec, max_sites = args
    return [convert_cif(c, symprec, max_sites) for c in cifs]


def convert_cifs(
    cifs: Sequence[str],
    symprec: float = 0.1,
    max_sites: int | None = DEFAULT_MAX_SITES,
    n_jobs: int | None = None,
    progress: bool = True,
    desc: str = "converting",
) -> list[tuple[Crystal | None, str | None]]:
    """Convert many CIFs, in parallel over `n_jobs` processes (default: all cores)."""
    from tqdm.auto import tqdm

    n_jobs = n_jobs or os.cpu_count() or 1
    chunk = 64
    jobs = [(list(cifs[i : i + chunk]), symprec, max_sites) for i in range(0, len(cifs), chunk)]
    out: list = []
    bar = tqdm(total=len(cifs), desc=desc, disable=not progress, unit="crystal")
    if n_jobs == 1 or len(jobs) == 1:
        for job in jobs:
            out += _convert_chunk(job)
            bar.update(len(job[0]))
    else:
        # spawn, not fork: JAX may already be running in this process (fork can deadlock it)
        with ProcessPoolExecutor(n_jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for res in pool.map(_convert_chunk, jobs):
                out += res
                bar.update(len(res))
    bar.close()
    return out


def _cache_file(path: Path, symprec: float, limit: int | None) -> Path:
    h = hashlib.sha256(path.read_bytes())
    h.update(json.dumps([symprec, limit, _FORMAT_VERSION]).encode())
    root = Path(os.environ.get("CFMC_CACHE", Path.home() / ".cache" / "cfmc")) / "datasets"
    return root / f"{path.name}.{h.hexdigest()[:16]}.npz"


def _convert_file(path: Path, table: pd.DataFrame, symprec, limit, n_jobs, progress, cache):
    """Every convertible crystal of a file, padded to its largest site count (cached)."""
    cache_path = _cache_file(path, symprec, limit)
    if cache and cache_path.exists():
        try:
            with np.load(cache_path, allow_pickle=False) as f:
                arrays = CrystalArrays(*(f[k] for k in CrystalArrays._fields))
                skipped = pd.DataFrame(json.loads(str(f["skipped"])))
                return arrays, f["rows"], skipped
        except Exception:  # a damaged cache is rebuilt
            pass
    results = convert_cifs(table["cif"].tolist(), symprec, None, n_jobs, progress, desc=path.name)
    rows = np.array([i for i, (c, _) in enumerate(results) if c is not None], np.int64)
    crystals = [c for c, _ in results if c is not None]
    arrays = to_arrays(crystals, max((c.num_sites for c in crystals), default=1))
    ids = table["material_id"] if "material_id" in table.columns else pd.Series(range(len(table)))
    skipped = pd.DataFrame(
        [
            {"file": path.name, "row": i, "material_id": str(ids.iloc[i]), "reason": r}
            for i, (c, r) in enumerate(results)
            if c is None
        ],
        columns=["file", "row", "material_id", "reason"],
    )
    if cache:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays._asdict(), rows=rows, skipped=skipped.to_json(orient="records"))
        tmp.replace(cache_path)
    return arrays, rows, skipped


def load_file(
    path: str | Path,
    max_sites: int = DEFAULT_MAX_SITES,
    symprec: float = 0.1,
    limit: int | None = None,
    n_jobs: int | None = None,
    progress: bool = True,
    cache: bool = True,
) -> Dataset:
    """Convert one CSV file; crystals with more than `max_sites` sites are skipped, with reason.

    The conversion is cached on disk by file content and symprec, independent of max_sites.
    """
    path = Path(path)
    table = read_table(path, limit)
    arrays, rows, skipped = _convert_file(path, table, symprec, limit, n_jobs, progress, cache)
    n_sites = arrays.mask.sum(1)
    fits = n_sites <= max_sites
    ids = table["material_id"] if "material_id" in table.columns else pd.Series(range(len(table)))
    too_many = pd.DataFrame(
        [
            {"file": path.name, "row": int(r), "material_id": str(ids.iloc[r]),
             "reason": f"too many sites: {n} > {max_sites}"}
            for r, n in zip(rows[~fits], n_sites[~fits], strict=True)
        ],
        columns=["file", "row", "material_id", "reason"],
    )
    skipped = pd.concat([d for d in (skipped, too_many) if not d.empty] or [too_many])
    skipped = skipped.sort_values("row", kind="stable").reset_index(drop=True)
    arrays = arrays.take(fits)
    width = arrays.wyckoff.shape[1]
    if width < max_sites:  # pad the site axis out to max_sites
        pad = max_sites - width
        arrays = CrystalArrays(
            arrays.spacegroup,
            np.pad(arrays.wyckoff, ((0, 0), (0, pad))),
            np.pad(arrays.species, ((0, 0), (0, pad))),
            np.pad(arrays.coords, ((0, 0), (0, pad), (0, 0))),
            arrays.lattice,
            np.pad(arrays.mask, ((0, 0), (0, pad))),
        )
    else:
        arrays = CrystalArrays(arrays.spacegroup, arrays.wyckoff[:, :max_sites],
                               arrays.species[:, :max_sites], arrays.coords[:, :max_sites],
                               arrays.lattice, arrays.mask[:, :max_sites])
    return _assemble(path, table, arrays, rows[fits], skipped)


def _assemble(path, table, arrays, rows, skipped) -> Dataset:
    kept = table.iloc[rows].drop(columns=["cif"]).reset_index(drop=True)
    kept.insert(0, "row", rows)
    kept.insert(0, "file", path.name)
    if skipped.empty:
        skipped = pd.DataFrame(columns=["file", "row", "material_id", "reason"])
    return Dataset(arrays, kept, skipped)


def load_dataset(
    paths: Sequence[str | Path] | str | Path | None = None,
    max_sites: int = DEFAULT_MAX_SITES,
    symprec: float = 0.1,
    dedupe: str | None = "material_id",
    limit: int | None = None,
    n_jobs: int | None = None,
    progress: bool = True,
    cache: bool = True,
) -> Dataset:
    """Convert and join CSV files (default: the training mix), dropping repeated `dedupe` ids."""
    if paths is None:
        paths = default_training_files()
    if isinstance(paths, str | Path):
        paths = [paths]
    parts = [
        load_file(p, max_sites, symprec, limit, n_jobs, progress, cache) for p in paths
    ]
    table = pd.concat([p.table for p in parts], ignore_index=True)
    arrays = CrystalArrays(
        *(np.concatenate([np.asarray(p.arrays[k]) for p in parts]) for k in range(6))
    )
    skipped = pd.concat([p.skipped for p in parts], ignore_index=True)
    if dedupe and dedupe in table.columns:
        keep = ~table[dedupe].duplicated().to_numpy()
        dup = table.loc[~keep, ["file", "row", dedupe]].rename(columns={dedupe: "material_id"})
        dup["reason"] = f"duplicate: {dedupe} seen in an earlier row"
        skipped = pd.concat([skipped, dup], ignore_index=True)
        table = table[keep].reset_index(drop=True)
        arrays = arrays.take(keep)
    return Dataset(arrays, table, skipped)


def split(dataset: Dataset, fraction: float = 0.1, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Random (train, validation) split by a fixed seed."""
    n = len(dataset)
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * fraction))
    val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])

    def sub(idx):
        return Dataset(dataset.arrays.take(idx), dataset.table.iloc[idx].reset_index(drop=True),
                       dataset.skipped)

    return sub(train), sub(val)
