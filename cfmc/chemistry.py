"""Chemical and structural sanity checks of candidate crystals."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable

import numpy as np

from cfmc.arrays import NUM_SPECIES

# Tc, Pm and everything from Po on are radioactive; the paper's templates leave them out.
RADIOACTIVE = frozenset({43, 61, *range(84, 119)})


@functools.lru_cache(maxsize=1)
def element_symbols() -> tuple[str, ...]:
    """Symbols indexed by atomic number (index 0 is the pad '')."""
    from pymatgen.core.periodic_table import Element

    return ("",) + tuple(Element.from_Z(z).symbol for z in range(1, NUM_SPECIES))


def atomic_number(symbol: str) -> int:
    """Atomic number of an element symbol, with an error naming the symbol."""
    try:
        return element_symbols().index(str(symbol).strip())
    except ValueError:
        raise ValueError(f"unknown element '{symbol}'") from None


def radioactive_mask() -> np.ndarray:
    """(119,) True for the elements excluded by default: Tc, Pm and Z >= 84 (as in the paper)."""
    m = np.zeros(NUM_SPECIES, bool)
    m[sorted(RADIOACTIVE)] = True
    return m


def element_mask(
    elements: Iterable[str] | None = None,
    exclude_radioactive: bool = True,
    option: str = "elements",
) -> np.ndarray:
    """(119,) bool: the elements a site may take, `elements` (all when None) less the radioactive
    ones when `exclude_radioactive`. The one builder of element masks; errors name `option`."""
    m = np.ones(NUM_SPECIES, bool)
    m[0] = False
    if exclude_radioactive:
        m &= ~radioactive_mask()
    if elements is not None:
        elements = list(elements)
        pick = np.zeros(NUM_SPECIES, bool)
        for e in elements:
            try:
                pick[atomic_number(e)] = True
            except ValueError as err:
                raise ValueError(f"{option}: {err}") from None
        m &= pick
        if not m.any():
            raise ValueError(f"{option} {' '.join(elements)}: none of them is allowed"
                             + (" (radioactive elements are excluded by default)"
                                if exclude_radioactive else ""))
    return m


MAX_ELEMENTS_BALANCE = 6  # SMACT's search grows exponentially with the number of elements


@functools.lru_cache(maxsize=65536)
def _balanced(formula: str) -> bool:
    from pymatgen.core import Composition
    from smact.screening import smact_validity

    comp = Composition(formula)
    if len(comp.elements) > MAX_ELEMENTS_BALANCE:
        return False  # not tested; counted as not balanced
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bool(smact_validity(comp, use_pauling_test=True, include_alloys=False))
        except KeyError:  # SMACT has no data for some heavy elements (e.g. Db)
            return False


def charge_balanced(composition) -> bool:
    """True when SMACT finds oxidation states that sum to zero and pass the Pauling test
    (no exemption for alloys, so intermetallics count as not balanced). Compositions with more
    than MAX_ELEMENTS_BALANCE elements are not searched and count as not balanced."""
    from pymatgen.core import Composition

    return _balanced(Composition(composition).reduced_formula)


def min_distance(structure) -> float:
    """Shortest interatomic distance in Angstrom, periodic images included."""
    if len(structure) == 0:
        return float("inf")
    d = structure.lattice.get_all_distances(structure.frac_coords, structure.frac_coords)
    np.fill_diagonal(d, np.inf)
    shortest = float(d.min()) if len(structure) > 1 else float("inf")
    # an atom and its own periodic image: the shortest lattice vector
    return min(shortest, float(min(structure.lattice.abc)),
               *(float(np.linalg.norm(v)) for v in _short_vectors(structure.lattice)))


def _short_vectors(lattice) -> list[np.ndarray]:
    m = lattice.matrix
    return [m[0] + s * m[1] for s in (-1, 1)] + [m[1] + s * m[2] for s in (-1, 1)] + [
        m[0] + s * m[2] for s in (-1, 1)
    ]


def structurally_valid(crystal, cutoff: float = 0.5) -> tuple[bool, str]:
    """(valid, reason): the cell builds (no site collisions) and all distances exceed `cutoff`."""
    try:
        structure = crystal.to_structure()
    except np.linalg.LinAlgError as e:  # a degenerate (flat) cell
        return False, f"non-physical cell: {e}"
    except ValueError as e:
        return False, f"site collision: {e}"
    if not np.isfinite(structure.volume) or structure.volume <= 1e-6 * len(structure):
        return False, "non-physical cell"
    try:
        d = min_distance(structure)
    except np.linalg.LinAlgError as e:
        return False, f"non-physical cell: {e}"
    if d < cutoff:
        return False, f"atoms {d:.2f} A apart"
    return True, ""
