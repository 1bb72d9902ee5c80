"""Relax a crystal with the potential through ASE (L-BFGS or FIRE, atoms and cell), recording
changes."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
from pymatgen.core import Structure

from cfmc.stability.potential import load_calculator

MIN_VOLUME_PER_ATOM = 4.0  # A^3; the densest known solids have about 5 (diamond 5.7)


@dataclass
class RelaxResult:
    """A relaxed structure and the facts a user checks: energy, forces, volume, symmetry."""

    structure: Structure
    energy_per_atom: float  # eV/atom, the potential's scale
    converged: bool
    steps: int
    max_force: float  # eV/A, largest atomic force at the end
    volume_change: float  # relative: V_final / V_initial - 1
    spacegroup_before: int
    spacegroup_after: int

    @property
    def symmetry_kept(self) -> bool:
        return self.spacegroup_before == self.spacegroup_after

    def record(self) -> dict:
        """Flat, CSV-friendly facts (no structure)."""
        d = {k: v for k, v in asdict(self).items() if k != "structure"}
        d["symmetry_kept"] = self.symmetry_kept
        return d


def prescale_volume(structure: Structure, scales: tuple[float, ...] = (0.8, 0.9, 1.0, 1.1, 1.25)
                    ) -> Structure:
    """The structure at the lowest-energy volume among `scales` (one batched single-point call):
    a cheap start for substituted prototypes, whose volume guess is rough. Volumes below
    MIN_VOLUME_PER_ATOM are never evaluated: a guess that dense (a C-H rock salt scaled by atomic
    radii has 1.2 A^3/atom) starts from that floor instead, since the potential's neighbour
    lists, and its memory, grow without bound as a cell collapses (tens of GB)."""
    from cfmc.stability.potential import static_energies

    floor = MIN_VOLUME_PER_ATOM * len(structure)
    start = structure.copy()
    if start.volume < floor:
        start.scale_lattice(floor)
    trials = []
    for f in scales:
        if start.volume * f >= floor:
            s = start.copy()
            s.scale_lattice(start.volume * f)
            trials.append(s)
    e = static_energies(trials)
    return trials[int(np.nanargmin(e))] if np.isfinite(e).any() else start


def spacegroup_number(structure: Structure, symprec: float = 0.1) -> int:
    """International space-group number by spglib (0 if it cannot tell)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        return int(SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_number())
    except Exception:
        return 0


def relax(
    structure: Structure,
    fmax: float = 0.05,
    steps: int = 300,
    fix_symmetry: bool = False,
    relax_cell: bool = True,
    optimizer: str = "lbfgs",
) -> RelaxResult:
    """Relax positions (and cell) until the largest force is below `fmax` eV/A or `steps` are
    spent; `fix_symmetry` keeps the starting space group (ase FixSymmetry). `optimizer`: "lbfgs"
    (default: the same minima as FIRE in about a third of the force calls, measured on demo
    candidates) or "fire". Raises ValueError when the potential returns non-finite energies or
    the cell collapses (below MIN_VOLUME_PER_ATOM) or swells more than fourfold."""
    from ase.filters import UnitCellFilter
    from ase.optimize import FIRE, LBFGS
    from pymatgen.io.ase import AseAtomsAdaptor

    sg0 = spacegroup_number(structure)
    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = load_calculator()
    if fix_symmetry:
        from ase.constraints import FixSymmetry

        atoms.set_constraint(FixSymmetry(atoms, symprec=0.1))
    v0 = atoms.get_volume()
    target = UnitCellFilter(atoms) if relax_cell else atoms

    def guard() -> None:  # a collapsing cell's neighbour lists (and memory) explode
        ratio, per_atom = atoms.get_volume() / v0, atoms.get_volume() / len(atoms)
        if ratio > 4.0 or per_atom < MIN_VOLUME_PER_ATOM:
            raise ValueError(f"cell collapsed or exploded (V/V0 {ratio:.2f}, "
                             f"{per_atom:.1f} A^3/atom)")

    guard()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if optimizer not in ("lbfgs", "fire"):
            raise ValueError(f"optimizer must be 'lbfgs' or 'fire', got {optimizer!r}")
        opt = (LBFGS if optimizer == "lbfgs" else FIRE)(target, logfile=None)
        opt.attach(guard, interval=1)
        converged = bool(opt.run(fmax=fmax, steps=steps))
    energy = float(atoms.get_potential_energy()) / len(atoms)
    volume_change = atoms.get_volume() / v0 - 1.0
    if not np.isfinite(energy) or not np.isfinite(volume_change):
        raise ValueError(f"relaxation diverged (E={energy:.3g} eV/atom, dV={volume_change:+.2f})")
    forces = atoms.get_forces()
    atoms.set_constraint()
    relaxed = AseAtomsAdaptor.get_structure(atoms)
    return RelaxResult(
        structure=relaxed,
        energy_per_atom=energy,
        converged=converged,
        steps=int(opt.get_number_of_steps()),
        max_force=float(np.linalg.norm(forces, axis=1).max()),
        volume_change=float(volume_change),
        spacegroup_before=sg0,
        spacegroup_after=spacegroup_number(relaxed),
    )
