"""`cfmc convert`: a CIF to its Wyckoff string, or a string (plus lattice) to a CIF."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a CIF file, or a Wyckoff string such as "
                        "'167-a-C-0-0-1/4-b-Ca-0-0-0-e-O-0.257-0-1/4'")
    parser.add_argument("--lattice", type=float, nargs=6, metavar=("A", "B", "C", "AL", "BE", "GA"),
                        help="lattice parameters for a string (Angstrom, degrees)")
    parser.add_argument("--symprec", type=float, default=0.1)
    parser.add_argument("--out", type=Path, help="write the CIF here (string input)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out file")


def run(args: argparse.Namespace) -> int:
    from cfmc import validate
    from cfmc.crystal import Crystal

    validate.symprec(args.symprec, "--symprec")
    if args.out is not None:
        validate.output_file(args.out, args.force)
    src = args.source
    if src.lower().endswith(".cif") or Path(src).is_file():
        crystal = Crystal.from_cif(src, args.symprec)
        print(crystal.to_string())
        lat = ", ".join(f"{v:.4f}" for v in crystal.lattice)
        print(f"lattice: {lat}   formula: {crystal.formula}   atoms/cell: {crystal.num_atoms}")
        return 0
    crystal = Crystal.from_string(src, args.lattice)
    if args.lattice is None:
        print(f"{crystal.formula}: {crystal.num_sites} sites, {crystal.num_atoms} atoms/cell "
              "(give --lattice to write a CIF)")
        return 0
    text = crystal.to_cif(args.out)
    if args.out is None:
        print(text)
    return 0
