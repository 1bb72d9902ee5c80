"""Symmetric CIF text of a crystal from its own space group and Wyckoff sites.

A sampled crystal already knows its symmetry: the group it was drawn in, one representative per
Wyckoff site. Writing the CIF from those (the group's operations in the setting of cfmc's Wyckoff
tables, one atom_site row per site with its multiplicity and Wyckoff letter) needs no symmetry
search; pymatgen's CifWriter with `symprec` runs spglib five times per crystal (0.2 s for a
40-atom cell, most of a run's output time). pymatgen's CifBlock and CifFile do the formatting.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from cfmc import wyckoff as wy

if TYPE_CHECKING:
    from cfmc.crystal import Crystal

DIGITS = 8  # decimals of cell parameters and coordinates, as CifWriter


@functools.lru_cache(maxsize=256)
def symmetry_operations(g: int) -> tuple[str, ...]:
    """The operations of space group `g` (general position, conventional cell) as CIF xyz."""
    from pymatgen.core.operations import SymmOp

    t = wy.tables()
    ops = t.general_ops[g, : t.num_ops[g]]
    return tuple(SymmOp.from_rotation_and_translation(op[:, :3], op[:, 3]).as_xyz_str()
                 for op in ops)


@functools.lru_cache(maxsize=256)
def hermann_mauguin(g: int) -> str:
    """Short Hermann-Mauguin symbol of the setting of cfmc's tables (spglib's Hall number)."""
    import spglib

    return str(spglib.get_spacegroup_type(int(wy.tables().hall_number[g])).international_short)


def symmetric_cif(crystal: Crystal) -> str:
    """CIF of the conventional cell: the crystal's space group, its operations and one row per
    Wyckoff site (multiplicity, letter, representative coordinates)."""
    from pymatgen.core import Lattice
    from pymatgen.io.cif import CifBlock, CifFile

    if crystal.lattice is None:
        raise ValueError("this crystal has no lattice; give one to write a CIF")
    g = int(crystal.spacegroup)
    lattice = Lattice.from_parameters(*np.asarray(crystal.lattice, float))
    comp = crystal.composition.element_composition
    fmt = f"{{:.{DIGITS}f}}".format
    ops = symmetry_operations(g)
    data: dict = {"_symmetry_space_group_name_H-M": hermann_mauguin(g)}
    for name, v in zip(("a", "b", "c", "alpha", "beta", "gamma"), lattice.parameters,
                       strict=True):
        data[f"_cell_{'length' if len(name) == 1 else 'angle'}_{name}"] = fmt(v)
    data["_symmetry_Int_Tables_number"] = g
    data["_chemical_formula_structural"] = comp.reduced_formula
    data["_chemical_formula_sum"] = comp.formula
    data["_cell_volume"] = fmt(lattice.volume)
    data["_cell_formula_units_Z"] = str(int(comp.get_reduced_composition_and_factor()[1]))
    data["_symmetry_equiv_pos_site_id"] = [str(i) for i in range(1, len(ops) + 1)]
    data["_symmetry_equiv_pos_as_xyz"] = list(ops)
    coords = np.mod(np.asarray(crystal.coords, float), 1.0)
    data["_atom_site_type_symbol"] = list(crystal.species)
    data["_atom_site_label"] = [f"{s}{i}" for i, s in enumerate(crystal.species)]
    data["_atom_site_symmetry_multiplicity"] = [str(wy.multiplicity(g, w))
                                                for w in crystal.wyckoff]
    data["_atom_site_Wyckoff_symbol"] = list(crystal.wyckoff)
    for k, axis in enumerate("xyz"):
        data[f"_atom_site_fract_{axis}"] = [fmt(v) for v in coords[:, k]]
    data["_atom_site_occupancy"] = ["1.0"] * len(crystal.species)
    loops = [["_symmetry_equiv_pos_site_id", "_symmetry_equiv_pos_as_xyz"],
             ["_atom_site_type_symbol", "_atom_site_label", "_atom_site_symmetry_multiplicity",
              "_atom_site_Wyckoff_symbol", "_atom_site_fract_x", "_atom_site_fract_y",
              "_atom_site_fract_z", "_atom_site_occupancy"]]
    name = comp.reduced_formula
    return str(CifFile({name: CifBlock(data, loops, name)}, comment="# written by cfmc"))
