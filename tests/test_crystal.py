"""The representation: Wyckoff tables, strings, structures, CIF and arrays."""

from __future__ import annotations

import io

import numpy as np
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from cfmc import wyckoff as wy
from cfmc.crystal import Crystal, from_arrays, to_arrays
from cfmc.data import read_table

CALCITE = "167-a-C-0-0-1/4-b-Ca-0-0-0-e-O-0.257-0-1/4"


def test_calcite_string_builds_30_atom_cell():
    c = Crystal.from_string(CALCITE, lattice=[4.99, 4.99, 17.07, 90, 90, 120])
    s = c.to_structure()
    assert len(s) == 30
    assert s.composition.as_dict() == {"Ca": 6.0, "C": 6.0, "O": 18.0}
    assert SpacegroupAnalyzer(s, 0.1).get_space_group_number() == 167
    assert c.to_string() == CALCITE
    back = Crystal.from_structure(s)
    assert back.to_string() == CALCITE
    assert np.allclose(back.lattice, [4.99, 4.99, 17.07, 90, 90, 120], atol=1e-6)


def test_wyckoff_tables():
    assert wy.multiplicity(225, "a") == 4 and wy.multiplicity(225, "l") == 192
    assert wy.free_coords(225, "e").tolist() == [True, False, False]
    assert wy.free_coords(191, "l").tolist() == [True, False, False]  # (x, 2x, 0)
    assert np.allclose(wy.representative(191, "l", [0.1, 0.9, 0.3]), [0.1, 0.2, 0.0])
    assert wy.multiplicity(47, "A") == 8  # the one group that runs past 'z'
    # projection of a symmetry image lands back on the first representative
    p = wy.project(225, "e", [0.0, 0.3, 0.0])
    assert np.allclose(p, [0.3, 0, 0]) or np.allclose(p, [0.7, 0, 0])
    assert len(wy.orbit(227, "a", [1 / 8, 1 / 8, 1 / 8])) == 8  # origin choice 2
    assert wy.symmetrize_lattice(225, [4, 5, 6, 80, 80, 80]).tolist() == [4, 4, 4, 90, 90, 90]
    assert wy.lattice_free_mask(12).tolist() == [True, True, True, False, True, False]
    with pytest.raises(ValueError, match="not in space group 225"):
        wy.check_letter(225, "m")
    with pytest.raises(ValueError, match="1..230"):
        wy.check_spacegroup(231)


@pytest.mark.parametrize(
    "text, message",
    [
        ("167-a-C-0-0-1/4-b-Ca-0-0-0-0", "site 1 \\(b\\): 4 coordinates given, expected 3"),
        ("167-a-Qq-0-0-1/4", "site 0 \\(a\\): unknown element 'Qq'"),
        ("167-z-C-0-0-1/4", "site 0 \\(z\\): Wyckoff letter 'z' is not in space group 167"),
        ("167-b-Ca-0-0-0-a-C-0-0-1/4", "site 1 \\(a\\): letters out of order"),
        ("167-a-C-0-0-1/4-a-C-0-0-1/4", "site 1 \\(a\\): Wyckoff position a has no free"),
        ("167-e-O-0.25-0.1-1/4", "site 0 \\(e\\): coordinate y = 0.1 is inconsistent with "
         "Wyckoff position e"),
        ("167-e-O-0.25-zero-1/4", "site 0 \\(e\\) coordinate y: 'zero' is not a number"),
        ("167-e-[?]-0.25-0-1/4", "blank fields"),
        ("abc", "space group: 'abc' is not an integer"),
    ],
)
def test_bad_strings_name_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        Crystal.from_string(text)


def test_trailing_constants_may_be_left_out():
    c = Crystal.from_string("167-a-C-0-0-1/4-b-Ca-0-0")  # the one parser: as in templates
    assert c.to_string() == "167-a-C-0-0-1/4-b-Ca-0-0-0"


def test_negative_and_exact_coordinates_round_trip():
    c = Crystal.from_string("221-f-O-0.2-1/2-1/2", lattice=[4, 4, 4, 90, 90, 90])
    assert c.to_string() == "221-f-O-0.2-1/2-1/2"
    c = Crystal.from_string("221-f-O--0.2-1/2-1/2")  # negative coordinates wrap into [0, 1)
    assert np.allclose(c.coords, [[0.8, 0.5, 0.5]])


def test_malformed_cif_is_a_clear_error():
    with pytest.raises(ValueError, match="malformed CIF"):
        Crystal.from_cif("data_x\n_cell_length_a 3\nloop_\n_atom_site_label\n")


def test_cif_round_trip(tmp_path):
    c = Crystal.from_string(CALCITE, lattice=[4.99, 4.99, 17.07, 90, 90, 120])
    path = tmp_path / "calcite.cif"
    c.to_cif(path)
    back = Crystal.from_cif(path)
    assert back.to_string() == CALCITE


def test_round_trips_on_real_crystals(data_dir):
    cifs = read_table(data_dir / "mp20_biternary_val.csv.gz", limit=60)["cif"]
    from pymatgen.core import Structure

    matcher = StructureMatcher()
    crystals = []
    for cif in cifs:
        s = Structure.from_str(cif, fmt="cif")
        c = Crystal.from_structure(s)
        rebuilt = c.to_structure()
        assert matcher.fit(s, rebuilt), c
        assert SpacegroupAnalyzer(rebuilt, 0.1).get_space_group_number() == c.spacegroup
        again = Crystal.from_string(c.to_string(), c.lattice)
        assert again.wyckoff == c.wyckoff and again.species == c.species
        assert np.allclose(again.coords, c.coords, atol=1e-6, rtol=0)
        crystals.append(c)
    arrays = to_arrays(crystals, 20)
    for c, d in zip(crystals, from_arrays(arrays), strict=True):
        assert d.wyckoff == c.wyckoff and d.species == c.species
        assert np.allclose(d.coords, c.coords, atol=1e-6, rtol=0)
        assert np.allclose(d.lattice, c.lattice, rtol=1e-6)


def test_symmetric_cif_describes_the_structure(data_dir):
    """The CIF written from a crystal's own group and Wyckoff sites (no symmetry search) reads
    back, through pymatgen and through ASE, as exactly the structure the crystal expands to, in
    every group of the sample; with `symprec` pymatgen's symmetry-searching writer is used."""
    from ase.io import read as ase_read
    from pymatgen.core import Structure

    cifs = read_table(data_dir / "mp20_biternary_val.csv.gz", limit=80)["cif"]
    crystals = [Crystal.from_structure(Structure.from_str(c, fmt="cif")) for c in cifs]
    crystals.append(Crystal.from_string(CALCITE, lattice=[4.99, 4.99, 17.07, 90, 90, 120]))
    assert len({c.spacegroup for c in crystals}) >= 15
    for c in crystals:
        text = c.to_cif()
        expected = c.to_structure()
        back = Structure.from_str(text, fmt="cif")
        assert f"_symmetry_Int_Tables_number   {c.spacegroup}" in text
        assert len(back) == len(expected), c
        assert np.allclose(back.lattice.abc, expected.lattice.abc, rtol=1e-7)
        assert np.allclose(back.lattice.angles, expected.lattice.angles, atol=1e-6)
        d = back.frac_coords[:, None, :] - expected.frac_coords[None, :, :]
        d -= np.rint(d)
        same = np.all(np.abs(d) < 1e-6, axis=-1)  # (back, expected) images that coincide
        assert np.all(same.sum(1) == 1) and np.all(same.sum(0) == 1), c
        pairs = np.argwhere(same)
        assert all(back[i].specie == expected[j].specie for i, j in pairs)
        assert len(ase_read(io.StringIO(text), format="cif")) == len(expected)
    searched = crystals[-1].to_cif(symprec=0.01)
    assert "_symmetry_Int_Tables_number   167" in searched


def test_to_arrays_rejects_too_many_sites():
    c = Crystal.from_string(CALCITE)
    with pytest.raises(ValueError, match="3 sites, more than max_sites=2"):
        to_arrays([c], 2)


def test_candidates_with_atoms_on_one_point_are_not_kept():
    """select_top keeps only crystals whose CIF reads back: an e-site anion 0.05 A from the
    cation at the origin is dropped, the same crystal with the anion at x = 0.25 is kept."""
    from cfmc.runio import select_top

    text = "225-a-Ti-0-0-0-b-Sr-1/2-1/2-1/2-c-Ca-1/4-1/4-1/4-e-O-{x}-0-0"
    close = Crystal.from_string(text.format(x=0.0125), lattice=[4, 4, 4, 90, 90, 90])
    apart = Crystal.from_string(text.format(x=0.25), lattice=[4, 4, 4, 90, 90, 90])
    with pytest.raises(ValueError, match="one point"):
        Crystal.from_cif(close.to_cif())
    assert select_top([close, apart], np.array([1.0, 0.0]), top=None) == [1]
