"""Property-based tests (Hypothesis) of the parsers and the validation layer: whatever the input,
a named error (ValueError or FileNotFoundError with a message) or a valid result, never another
exception. Derandomized, so every machine runs the same examples."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cfmc import validate, wyckoff
from cfmc.commands.common import burn_in, site_elements, site_pairs
from cfmc.crystal import Crystal
from cfmc.run import RunOptions
from cfmc.targets import parse_assignments
from cfmc.template import Template

EXAMPLES = 500
RUN = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
NAMED = (ValueError, FileNotFoundError)

NUMBER_TEXT = st.sampled_from(
    ["0", "1/2", "1/4", "-1/4", "3/4", "0.25", "0.1", "1e-3", "2.5e-1", "nan", "inf", "-inf",
     "infinity", "1e400", "-1e400", "1/0", "1e308", "x", "", "[?]", "0.123456", "7", "1//2"])
WORDS = st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h", "i", "A", "z", "[?]", "O", "Fe",
                         "Ba", "Ti", "Xx", "Tc", "H", ""])


def _named(e: BaseException) -> None:
    assert isinstance(e, NAMED), f"{type(e).__name__}: {e}"
    assert str(e).strip(), f"{type(e).__name__} without a message"


def _attempt(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # the property: only named errors escape
        _named(e)
        return None


@st.composite
def templates(draw) -> str:
    """Strings shaped like templates: a space group, then letters, elements and coordinates,
    with every kind of number (fractions, exponents, nan, inf, overflow) and blank."""
    g = draw(st.one_of(st.integers(-5, 240).map(str), st.sampled_from(["", "x", "225", "1"])))
    parts = [g]
    for _ in range(draw(st.integers(0, 4))):
        parts.append(draw(WORDS))
        parts.append(draw(WORDS))
        parts += [draw(NUMBER_TEXT) for _ in range(draw(st.integers(0, 4)))]
    return "-".join(parts)


@st.composite
def valid_templates(draw) -> str:
    """Templates built from real Wyckoff positions of real groups (often valid)."""
    g = draw(st.integers(1, 230))
    t = wyckoff.tables()
    n = int(t.num_letters[g])
    letters = sorted(draw(st.lists(st.integers(1, n), min_size=1, max_size=4)))
    parts = [str(g)]
    for w in letters:
        parts += [wyckoff.index_letter(w), draw(st.sampled_from(["[?]", "O", "Fe", "Ba"]))]
        op = t.op0[g, w]
        for j in range(3):
            if t.free[g, w][j]:
                parts.append(draw(st.sampled_from(["[?]", "0.13", "0.37", "1/8", "nan", "0"])))
            elif np.any(np.abs(op[j, :3]) > 1e-8):
                parts.append("[?]")
            else:
                parts.append(str(op[j, 3]))
    return "-".join(parts)


@RUN
@given(st.text(alphabet="0123456789-abceA[?]/.OFeTinf ", max_size=40))
def test_template_parse_random_text(text):
    t = _attempt(Template.parse, text)
    if t is not None:
        assert 1 <= t.spacegroup <= 230 and t.num_sites >= 1


@RUN
@given(st.one_of(templates(), valid_templates()))
def test_template_parse_shaped_strings(text):
    t = _attempt(Template.parse, text)
    if t is not None:
        assert all(c is None or (0 <= c < 1) for s in t.sites for c in s.coords)
        assert Template.parse(str(t)).letters == t.letters  # what it prints parses back


@RUN
@given(valid_templates(), st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=7))
def test_crystal_from_string_and_lattice(text, lattice):
    c = _attempt(Crystal.from_string, text, lattice)
    if c is None:
        return
    assert np.all(np.isfinite(c.coords))
    s = c.to_structure()  # a lattice that passed validation builds a real cell
    assert math.isfinite(s.volume) and s.volume > 0
    if len(s) > 1:
        d = s.distance_matrix + np.eye(len(s)) * 1e9
        assert d.min() > 1e-6  # never two atoms on one point


@RUN
@given(st.lists(st.one_of(st.floats(), st.integers(-10, 2000), st.text(max_size=4), st.none()),
                max_size=8))
def test_lattice_validation(values):
    lat = _attempt(validate.lattice, values)
    if lat is not None:
        assert lat.shape == (6,) and np.all(np.isfinite(lat))
        from pymatgen.core import Lattice

        assert Lattice.from_parameters(*lat).volume > 0


@RUN
@given(st.one_of(st.floats(), st.integers(), st.text(max_size=6), st.booleans(), st.none()),
       st.one_of(st.none(), st.floats(-10, 10)), st.booleans())
def test_numbers(value, low, low_open):
    x = _attempt(validate.real, value, "x", low, low_open=low_open)
    if x is not None:
        assert math.isfinite(x) and (low is None or x >= low)
    n = _attempt(validate.seed, value)
    if n is not None:
        assert 0 <= n <= validate.MAX_SEED


@RUN
@given(st.integers(-3, 50), st.integers(-3, 50), st.one_of(st.none(), st.integers(-3, 50)),
       st.integers(-3, 200), st.one_of(st.none(), st.floats()),
       st.one_of(st.none(), st.floats()), st.one_of(st.none(), st.floats()))
def test_run_options(chains, sweeps, burn, top, anneal, rhat, ess):
    opts = _attempt(RunOptions, chains, sweeps, burn, 0, top, anneal, 5, False, rhat, ess)
    if opts is not None:
        assert opts.chains >= 1 and opts.top >= 0
        assert opts.anneal is None or (math.isfinite(opts.anneal) and opts.anneal > 0)


@RUN
@given(st.floats(), st.floats(), st.integers(-2, 300), st.integers(-2, 10), st.floats())
def test_train_options(lr, clip, batch, epochs, val):
    from cfmc.priors.train import TrainOptions

    opts = _attempt(TrainOptions, epochs=epochs, batch_size=batch, lr=lr, clip_norm=clip,
                    val_fraction=val)
    if opts is not None:
        assert math.isfinite(opts.lr) and opts.lr > 0 and opts.batch_size >= 1


@RUN
@given(st.lists(st.text(alphabet="0123456789,:-BaSrO x", max_size=10), max_size=4))
def test_option_parsers(items):
    _attempt(site_pairs, items, "differ")
    _attempt(site_elements, items)
    _attempt(parse_assignments, items, "--target")
    for item in items:
        try:
            burn_in(item)
        except argparse.ArgumentTypeError as e:  # argparse prints it as a usage error
            assert str(e)


@pytest.mark.filterwarnings("ignore::UserWarning")
@RUN
@given(st.text(max_size=60))
def test_cif_parser(text):
    c = _attempt(Crystal.from_cif, "data_x\n" + text)
    if c is not None:
        assert 1 <= c.spacegroup <= 230


@pytest.mark.parametrize("text", ["225-a-[?]-0-0-0-e-O-nan-0-0", "225-a-[?]-0-0-0-e-O-inf-0-0",
                                  "225-a-[?]-0-0-0-e-O-1e400-0-0",
                                  "225-a-[?]-0-0-0-e-O-infinity-0-0"])
def test_non_finite_coordinates_are_named(text):
    with pytest.raises(ValueError, match="coordinate x: .* not a finite"):
        Template.parse(text)


def test_exponent_coordinate_and_negative_group():
    assert Template.parse("225-a-[?]-0-0-0-e-O-1e-3-0-0").sites[1].coords[0] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="space group: '-5'"):
        Template.parse("-5-a-[?]")
    with pytest.raises(ValueError, match="template: expected a string"):
        Template.parse(None)


def test_atoms_on_one_point_are_refused():
    with pytest.raises(ValueError, match="one point"):
        Crystal.from_string("225-e-Fe-0.2-0-0-e-Fe-0.2-0-0", [4, 4, 4, 90, 90, 90])
    s = Crystal.from_string("225-a-Fe-0-0-0", [4, 4, 4, 90, 90, 90]).to_structure()
    s.append("Fe", [0, 0, 0], validate_proximity=False)
    with pytest.raises(ValueError, match="one point"):
        Crystal.from_structure(s)


def test_differ_pair_is_named():
    with pytest.raises(ValueError, match=r"differ \(1, 2\)"):
        Template.parse("225-a-[?]-0-0-0-b-O-1/2-1/2-1/2-c-O-1/4-1/4-1/4", differ=[(1, 2)])
