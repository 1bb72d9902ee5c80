"""Generated competing phases of this tree against another tree's, bit for bit: binary, ionic
ternary and intermetallic decorations of a few systems (structures, keys) from the prototype
libraries in a hull cache folder.

    python benchmarks/regression_prototypes.py --old-tree ../old-checkout [--cache DIR]
        [--libraries]

`--libraries` also builds the ionic ternary and intermetallic type libraries from the training
mix with both trees' code (minutes) and compares them.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np

PAIRS = [("Na", "Cl"), ("Ga", "Cl"), ("Sc", "Sn"), ("Mo", "F"), ("Cu", "Au")]
IONIC = ["F-K-Mo", "Ba-O-Ru", "Ca-F-Rb"]
METALLIC = ["Co-Mn-Si", "Al-Fe-Ni", "Au-In-Sc"]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _same(a, b) -> bool:
    return (a.composition == b.composition and np.array_equal(a.lattice.matrix, b.lattice.matrix)
            and np.array_equal(a.frac_coords, b.frac_coords))


def main() -> None:
    from cfmc.stability import intermetallics, prototypes
    from cfmc.stability.references import cache_root

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-tree", required=True, help="a checkout of the other version")
    ap.add_argument("--cache", default=None, help="hull cache folder (the libraries' home)")
    ap.add_argument("--libraries", action="store_true",
                    help="rebuild the ternary type libraries with both trees and compare them")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    cache = cache_root(args.cache)
    root = Path(args.old_tree) / "cfmc" / "stability"
    old = _load(root / "prototypes.py", "old_prototypes")
    cases = [(f"{a}-{b}", old.candidates_for_pair(a, b, cache),
              prototypes.candidates_for_pair(a, b, cache)) for a, b in PAIRS]
    cases += [(s, old.ternary_candidates(s, cache), prototypes.ternary_candidates(s, cache))
              for s in IONIC]
    if (root / "intermetallics.py").exists():
        # the old intermetallics module on the old prototypes module
        text = (root / "intermetallics.py").read_text().replace(
            "from cfmc.stability.prototypes import", "from old_prototypes import")
        path = Path(args.old_tree) / ".regression_intermetallics.py"
        path.write_text(text)
        try:
            old_im = _load(path, "old_intermetallics")
        finally:
            path.unlink()
        cases += [(s, old_im.intermetallic_candidates(s, cache),
                   intermetallics.intermetallic_candidates(s, cache)) for s in METALLIC]
    failed, n = [], 0
    if args.libraries:
        import tempfile

        for name, old_build, new_build in [
                ("ternary library", old.ternary_library, prototypes.ternary_library),
                ("intermetallic library", getattr(sys.modules.get("old_intermetallics"),
                                                  "intermetallic_library", None),
                 intermetallics.intermetallic_library)]:
            if old_build is None:
                continue
            with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
                n += 1
                if [p.__dict__ for p in old_build(a)] != [p.__dict__ for p in new_build(b)]:
                    failed.append(f"{name} differs")
    for name, before, after in cases:
        if len(before) != len(after):
            failed.append(f"{name}: {len(before)} structures before, {len(after)} now")
            continue
        for (kb, sb), (ka, sa) in zip(before, after, strict=True):
            n += 1
            if kb != ka or not _same(sb, sa):
                failed.append(f"{name}: {kb} differs")
    print(f"{n} structures compared, {len(failed)} different")
    for f in failed:
        print("  " + f)
    print("PASS" if not failed else "FAIL")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
