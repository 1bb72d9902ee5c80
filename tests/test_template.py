"""Template parsing and validation: blanks, allow-lists, ties, differ pairs, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from cfmc import wyckoff
from cfmc.chemistry import atomic_number, radioactive_mask
from cfmc.template import Template

PEROVSKITE = "225-a-[?]-0-0-0-b-[?]-1/2-1/2-c-[?]-1/4-1/4-e-[?]-[?]-0-0"


def test_double_perovskite_template():
    t = Template.parse(PEROVSKITE)
    assert t.spacegroup == 225 and t.letters == ("a", "b", "c", "e")
    assert all(s.element is None for s in t.sites)
    # b and c list two coordinates; the third is a constant of the position and is filled in
    assert t.sites[1].coords == (0.5, 0.5, 0.5) and t.sites[2].coords == (0.25, 0.25, 0.25)
    assert t.sites[3].coords == (None, 0.0, 0.0)
    c = t.constraints(8)
    assert c.species_move[:4].all() and not c.species_move[4:].any()
    np.testing.assert_array_equal(c.coord_move[:4], [[0, 0, 0]] * 3 + [[1, 0, 0]])
    np.testing.assert_array_equal(c.lattice_move, wyckoff.lattice_free_mask(225))
    allowed = np.flatnonzero(c.allowed[0])
    assert 43 not in allowed and 61 not in allowed and allowed.max() < 84 and 0 not in allowed


def test_full_string_round_trips_through_the_parser():
    text = "167-a-C-0-0-1/4-b-Ca-0-0-0-e-O-0.257-0-1/4"
    t = Template.parse(text)
    assert [s.element for s in t.sites] == ["C", "Ca", "O"]
    assert not t.constraints(4).species_move.any() and not t.constraints(4).coord_move.any()
    assert Template.parse(str(t)).sites == t.sites


def test_allow_lists_ties_and_differ():
    t = Template.parse(
        PEROVSKITE,
        elements=["Ba", "Sr", "Ti", "Nb", "O", "U"],
        site_elements={3: ["O"]},
        ties=[(0, 1)],
        differ=[(0, 2)],
    )
    c = t.constraints(6)
    z = {atomic_number(e) for e in ["Ba", "Sr", "Ti", "Nb", "O"]}
    assert set(np.flatnonzero(c.allowed[0])) == z  # U is radioactive
    assert set(np.flatnonzero(c.allowed[3])) == {8}
    assert c.tie[1] == 0 and c.species_move[0] and not c.species_move[1]
    assert not c.species_move[3]  # one element allowed: nothing to move
    np.testing.assert_array_equal(c.differ, [[0, 2]])
    x = t.random_arrays(200, np.random.default_rng(0), 6)
    assert t.check_arrays(x).all()
    assert np.all(x.species[:, 0] == x.species[:, 1]) and np.all(x.species[:, 0] != x.species[:, 2])
    bad = x._replace(species=x.species.copy())
    bad.species[0, 1] = 8
    assert not t.check_arrays(bad)[0] and t.check_arrays(bad)[1:].all()


def test_radioactive_elements_can_be_allowed():
    assert radioactive_mask()[[43, 61, 84, 92]].all() and not radioactive_mask()[[42, 83]].any()
    t = Template.parse("221-a-[?]-0-0-0", elements=["U", "Th", "Ba"], exclude_radioactive=False)
    assert set(np.flatnonzero(t.allowed[0])) == {92, 90, 56}
    with pytest.raises(ValueError, match="no element is allowed"):
        Template.parse("221-a-[?]-0-0-0", elements=["U", "Po"])


@pytest.mark.parametrize(
    "text, message",
    [
        ("225-z-Ca-0-0-0", "letter 'z' is not in space group 225"),
        ("225-b-Ca-1/2-1/2-1/2-a-O-0-0-0", "letters out of order"),
        ("225-a-Ca-0-0-1/4", "z = 1/4 is inconsistent with Wyckoff position a"),
        ("225-a-Ca-0-[?]-0", "y is fixed by Wyckoff position a"),
        ("225-e-Ca-[?]-[?]-0", "follows from|fixed by"),
        ("225-a-Ca-0-0-0-0", "4 coordinates given, expected 3"),
        ("225-h-Ca-0", "1 coordinates given, expected 3"),
        ("225-a-Xx-0-0-0", "unknown element 'Xx'"),
        ("225-a", "missing element"),
        ("225-a-Ca-0-0-0-a-O-0-0-0", "no free coordinate and is already occupied"),
        ("231-a-Ca-0-0-0", "space group must be an integer 1..230"),
        ("abc-a-Ca-0-0-0", "space group: 'abc' is not an integer"),
        ("225-a-Ca-0-zero-0", "coordinate y: 'zero' is not a number"),
        ("166-h-[?]-0.1-0.3-0.5", "y = 0.3 is inconsistent"),
    ],
)
def test_errors_name_the_field(text, message):
    with pytest.raises(ValueError, match=message):
        Template.parse(text)


def test_invalid_ties_and_pairs():
    with pytest.raises(ValueError, match="out of range"):
        Template.parse(PEROVSKITE, ties=[(0, 7)])
    with pytest.raises(ValueError, match="tied"):
        Template.parse(PEROVSKITE, ties=[(0, 1)], differ=[(1, 0)])
    with pytest.raises(ValueError, match="no element is allowed"):
        Template.parse(PEROVSKITE, site_elements={0: ["Ba"], 1: ["Ti"]}, ties=[(0, 1)])


def test_dependent_coordinate_is_derived():
    t = Template.parse("166-h-[?]-0.1-0.9-[?]")  # h: (x, -x, z)
    assert t.sites[0].coords[:2] == pytest.approx((0.1, 0.9))
    assert t.sites[0].coords[2] is None
    free = t.constraints(2).coord_move[0]
    np.testing.assert_array_equal(free, [False, False, True])
    x = t.random_arrays(5, np.random.default_rng(1), 2)
    assert np.allclose(x.coords[:, 0, 1], 0.9, atol=1e-6)
