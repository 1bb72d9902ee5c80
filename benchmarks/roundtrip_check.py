"""Round trips of the representation on real crystals (prints figures).

Structure -> Crystal -> Structure (StructureMatcher with default tolerances, spglib at symprec 0.1),
Crystal -> string -> Crystal and Crystal -> arrays -> Crystal (coordinates to 1e-6).

    python benchmarks/roundtrip_check.py [--mp20 2000] [--mpts 1000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from cfmc.arrays import DEFAULT_MAX_SITES
from cfmc.crystal import Crystal, from_arrays, to_arrays
from cfmc.data import read_table, shared_dir


def check(cif: str) -> dict:
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    warnings.simplefilter("ignore")
    out = {"skip": None}
    try:
        s = Structure.from_str(cif, fmt="cif")
    except Exception as e:
        return {"skip": f"parse error: {e}"}
    try:
        c = Crystal.from_structure(s, 0.1)
    except Exception as e:
        return {"skip": f"conversion: {e}"}
    out["sites"] = c.num_sites
    rebuilt = c.to_structure()
    out["match"] = bool(StructureMatcher().fit(s, rebuilt))
    out["same_group"] = SpacegroupAnalyzer(rebuilt, 0.1).get_space_group_number() == c.spacegroup
    c2 = Crystal.from_string(c.to_string(), c.lattice)
    out["string_exact"] = (c2.wyckoff == c.wyckoff and c2.species == c.species
                           and np.allclose(c2.coords, c.coords, atol=1e-6, rtol=0))
    if c.num_sites <= DEFAULT_MAX_SITES:
        c3 = from_arrays(to_arrays([c], DEFAULT_MAX_SITES))[0]
        out["array_exact"] = (c3.wyckoff == c.wyckoff and c3.species == c.species
                              and np.allclose(c3.coords, c.coords, atol=1e-6, rtol=0)
                              and np.allclose(c3.lattice, c.lattice, atol=1e-4))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mp20", type=int, default=2000)
    ap.add_argument("--mpts", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    data = shared_dir() / "data"
    for name, n in (("mp20_biternary_val.csv.gz", args.mp20), ("mpts52_val.csv.gz", args.mpts)):
        cifs = read_table(data / name, n)["cif"].tolist()
        t = time.time()
        spawn = multiprocessing.get_context("spawn")  # no fork once JAX may be running
        with ProcessPoolExecutor(args.jobs, mp_context=spawn) as pool:
            res = list(pool.map(check, cifs, chunksize=16))
        dt = time.time() - t
        ok = [r for r in res if r["skip"] is None]
        arr = [r for r in ok if "array_exact" in r]
        print(f"{name}: {len(cifs)} rows, {len(ok)} converted, {len(cifs) - len(ok)} skipped, "
              f"{len(ok) - len(arr)} over {DEFAULT_MAX_SITES} sites")
        for key in ("match", "same_group", "string_exact"):
            k = sum(r[key] for r in ok)
            print(f"  {key:13s} {k}/{len(ok)} = {100 * k / len(ok):.2f} %")
        k = sum(r["array_exact"] for r in arr)
        print(f"  {'array_exact':13s} {k}/{len(arr)} = {100 * k / max(len(arr), 1):.2f} %")
        for i, r in enumerate(res):
            if r["skip"] is not None:
                print(f"  skipped row {i}: {r['skip']}")
            elif not (r["match"] and r["same_group"] and r["string_exact"]):
                print(f"  row {i} failed: {r}")
        print(f"  {len(cifs) / dt:.1f} crystals/s round trip with {args.jobs} processes")


if __name__ == "__main__":
    main()
