"""Competing binary phases the training mix lacks, made from its own binary structure types.

A prototype is a frequent (stoichiometry, space group, size) type among the mix's binaries of the
same class as the pair it is used for: for an ionic pair, binaries of the same anion first (VF3
and ReO3 types for trifluorides, say), then of anions of its group (rock salt among the halides);
intermetallic ones (Laves, Cu3Au, ...) for metal pairs. It is decorated
with the new pair by substitution at the pair's charge-balanced stoichiometries (intermetallic
pairs: AB, AB2, A2B), its volume scaled by atomic radii, then relaxed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from math import gcd
from pathlib import Path

from pymatgen.core import Composition, Element, Structure

from cfmc.stability.cache import entry_lock, write_atomic
from cfmc.stability.known import parse_cif, read_known
from cfmc.stability.relax import spacegroup_number

PROTOTYPE_VERSION = 3  # 3: types per class (anion, anion group, metals); 2 was never released
TYPES_PER_STOICH = {"ion": 2, "met": 1}  # types decorated per stoichiometry of a pair
INTERMETALLIC = ((1, 1), (1, 2), (2, 1))


@dataclass(frozen=True)
class Prototype:
    """A binary structure type: A is the less electronegative element of its representative."""

    key: str  # e.g. 'AB2-225-3'
    stoich: tuple[int, int]
    count: int  # how many binaries of the mix share it
    material_id: str  # the representative crystal
    cif: str
    kind: str = "met"  # its class: the anion ('F'), the anion's group ('group17'), or 'met'


def _en(symbol: str) -> float:
    x = Element(symbol).X
    return x if x == x else 0.0  # NaN for noble gases


def _stoich(comp: Composition) -> tuple[tuple[int, int], tuple[str, str]]:
    a, b = sorted((el.symbol for el in comp.elements), key=lambda s: (_en(s), s))
    na, nb = int(round(comp[a])), int(round(comp[b]))
    g = gcd(na, nb)
    return (na // g, nb // g), (a, b)


def prototype_library(cache: str | os.PathLike, per_stoich: int = 3, max_atoms: int = 10
                      ) -> dict[tuple[str, tuple[int, int]], list[Prototype]]:
    """The `per_stoich` most frequent binary types per (class, stoichiometry), most frequent
    first, where the class of an ionic binary is its anion and, separately, the anion's group,
    and that of the others 'met' (cached as JSON)."""
    path = Path(cache) / f"prototypes-v{PROTOTYPE_VERSION}-{per_stoich}-{max_atoms}.json"
    if not path.exists():
        with entry_lock(path):
            if not path.exists():
                write_atomic(path, json.dumps(_build_library(per_stoich, max_atoms)))
    return _load_library(str(path))


@lru_cache(maxsize=4)
def _load_library(path: str) -> dict[tuple[str, tuple[int, int]], list[Prototype]]:
    lib: dict[tuple[str, tuple[int, int]], list[Prototype]] = {}
    for p in json.loads(Path(path).read_text()):
        proto = Prototype(p["key"], tuple(p["stoich"]), p["count"], p["material_id"], p["cif"],
                          p["kind"])
        lib.setdefault((proto.kind, proto.stoich), []).append(proto)
    return lib


def classes(a: str, b: str) -> tuple[str, ...]:
    """The library classes of a pair (A less electronegative): (anion, its group) for an ionic
    pair, ('met',) for a metal pair. (Types of other anion groups are left out: decorated with a
    halide, a carbide's or a germanide's type rarely relaxes, and never onto the hull.)"""
    if is_intermetallic(a, b):
        return ("met",)
    return (b, f"group{Element(b).group}")


def _build_library(per_stoich: int, max_atoms: int) -> list[dict]:
    known = read_known()
    binaries = known[(known["chemsys"].str.count("-") == 1) & (known["natoms"] <= max_atoms)]
    groups: dict[str, list] = {}
    for row in binaries.itertuples():
        stoich, (a, b) = _stoich(Composition(row.formula))
        sg = spacegroup_number(parse_cif(row.cif))
        for cls in classes(a, b):
            groups.setdefault(f"{cls}-{stoich[0]}:{stoich[1]}-{sg}-{row.natoms}", []).append(row)
    out: list[dict] = []
    per: dict[tuple, int] = {}
    for key, rows in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        cls, st = key.split("-")[:2]
        stoich = tuple(int(v) for v in st.split(":"))
        if per.get((cls, stoich), 0) >= per_stoich:
            continue
        per[(cls, stoich)] = per.get((cls, stoich), 0) + 1
        best = min(rows, key=lambda r: (r.e_hull_mp if r.e_hull_mp == r.e_hull_mp else 9, r.natoms,
                                        r.material_id))
        out.append({"key": key, "stoich": stoich, "count": len(rows), "kind": cls,
                    "material_id": best.material_id, "cif": best.cif})
    return out


def types_for(a: str, b: str, stoich: tuple[int, int], cache: str | os.PathLike
              ) -> list[Prototype]:
    """The library types decorated for the pair (A less electronegative) at `stoich`, as many as
    `TYPES_PER_STOICH` says: its anion's types shared by at least two binaries first, then its
    anion group's (`classes`)."""
    lib = prototype_library(cache)
    kinds = classes(a, b)
    n = TYPES_PER_STOICH["met" if kinds == ("met",) else "ion"]
    out: dict[str, Prototype] = {}
    for i, cls in enumerate(kinds):
        for proto in lib.get((cls, stoich), []):
            if i == 0 and len(kinds) > 1 and proto.count < 2:
                continue  # a type seen once with this anion: the group's are better known
            out.setdefault(proto.key.split("-", 1)[1], proto)  # one per type
    return list(out.values())[:n]


def stoichiometries(a: str, b: str) -> list[tuple[tuple[int, int], tuple[str, str]]]:
    """Charge-balanced (n_cation, n_anion) for an ionic pair (the cation's two lowest common
    oxidation states, the anion's negative ones), else the intermetallic set; each
    with the element order (A, B) to put on the prototype's (A, B)."""
    (_, _), (x, y) = _stoich(Composition({a: 1, b: 1}))
    pos = sorted(q for q in Element(x).common_oxidation_states if q > 0)[:2]  # lowest two
    neg = [q for q in Element(y).common_oxidation_states if q < 0]
    if pos and neg and Element(y).is_metal is False:
        out = set()
        for qx in pos:
            for qy in neg:
                g = gcd(qx, -qy)
                out.add((-qy // g, qx // g))
        return [(s, (x, y)) for s in sorted(out)]
    return [(s, (x, y)) for s in INTERMETALLIC]


def is_anion(symbol: str) -> bool:
    """A non-metal with a negative common oxidation state (O, N, F, Cl, S, H, ...)."""
    el = Element(symbol)
    return el.is_metal is False and any(q < 0 for q in el.common_oxidation_states)


def is_intermetallic(a: str, b: str) -> bool:
    """Whether the pair gets the intermetallic stoichiometries (no charge-balanced ones)."""
    return [s for s, _ in stoichiometries(a, b)] == list(INTERMETALLIC)


def _radius(symbol: str) -> float:
    el = Element(symbol)
    r = el.atomic_radius or el.atomic_radius_calculated or 1.5
    return float(r)


def substitute(structure: Structure, old: Sequence[str], new: Sequence[str]) -> Structure:
    """`structure` with the elements `old` replaced by `new` (all at once), its volume scaled by
    the sum over sites of atomic radii cubed: how every generated phase is decorated."""
    s = structure.copy()
    before = sum(_radius(site.specie.symbol) ** 3 for site in s)
    s.replace_species({Element(o): Element(t) for o, t in zip(old, new, strict=True)})
    after = sum(_radius(site.specie.symbol) ** 3 for site in s)
    s.scale_lattice(s.volume * after / before)
    return s


def decorate(proto: Prototype, a: str, b: str) -> Structure:
    """The prototype with its A, B replaced by `a`, `b`, volume scaled by atomic radii cubed."""
    s = parse_cif(proto.cif)
    _, order = _stoich(s.composition)
    return substitute(s, order, (a, b))


METALS_VERSION = 2  # 2: intermetallic types only (`prototype_library` v3)


def candidates_for_pair(a: str, b: str, cache: str | os.PathLike, skip: set[str] = frozenset(),
                        metals: bool = False) -> list[tuple[str, Structure]]:
    """(prototype key, decorated structure) for the pair, leaving out reduced formulas in `skip`
    (those the training mix already holds). An intermetallic pair with known binaries gets its
    missing AB, AB2, A2B only with `metals` (a separate cache entry, `ReferenceHull`)."""
    pairs = stoichiometries(a, b)
    intermetallic = is_intermetallic(a, b)
    if intermetallic and skip and not metals:
        return []  # left to the "metals" entries
    if metals and not (intermetallic and skip):
        return []  # covered by the plain prototype entries
    out = []
    for stoich, (x, y) in pairs:
        formula = Composition({x: stoich[0], y: stoich[1]}).reduced_formula
        if formula in skip:
            continue
        for proto in types_for(x, y, stoich, cache):
            out.append((proto.key, decorate(proto, x, y)))
    return out


# ---- binaries at the cation's further oxidation states ----------------------------------------

OXIDATION_VERSION = 1


def cation_states(symbol: str) -> list[int]:
    """Positive oxidation states a cation takes in known crystals: pymatgen's ICSD states and
    common states together; for an element without ICSD states (Os, say), every state from 2 up
    that pymatgen knows for it."""
    el = Element(symbol)
    states = {q for q in (*el.icsd_oxidation_states, *el.common_oxidation_states) if q > 0}
    if not el.icsd_oxidation_states:
        states |= {q for q in el.oxidation_states if q >= 2}
    return sorted(states)


def other_stoichiometries(a: str, b: str) -> list[tuple[tuple[int, int], tuple[str, str]]]:
    """Charge-balanced (n_cation, n_anion) of an ionic pair at the cation's `cation_states` and
    the anion's most negative common state, less those `stoichiometries` gives (its two lowest
    common states): WCl3 next to WCl4 and WCl6, Ir2O5 and IrO3 next to Ir2O3 and IrO2, say; the
    competitors of crystals with a cation in an uncommon state. Empty for a metal pair."""
    base = stoichiometries(a, b)
    if [s for s, _ in base] == list(INTERMETALLIC):
        return []
    _, (x, y) = base[0]
    qy = min(Element(y).common_oxidation_states)
    have = {s for s, _ in base}
    out = set()
    for qx in cation_states(x):
        g = gcd(qx, -qy)
        stoich = (-qy // g, qx // g)
        if stoich not in have:
            out.add(stoich)
    return [(s, (x, y)) for s in sorted(out)]


def oxidation_candidates(a: str, b: str, cache: str | os.PathLike, skip: set[str] = frozenset()
                         ) -> list[tuple[str, Structure]]:
    """(prototype key, decorated structure) for `other_stoichiometries` of the pair on the
    library's ionic types of each stoichiometry (`types_for`), leaving out reduced formulas in
    `skip`."""
    out = []
    for stoich, (x, y) in other_stoichiometries(a, b):
        formula = Composition({x: stoich[0], y: stoich[1]}).reduced_formula
        if formula in skip:
            continue
        for proto in types_for(x, y, stoich, cache):
            out.append((proto.key, decorate(proto, x, y)))
    return out


# ---- ternary phases: two cations and one anion -------------------------------------------------

TERNARY_VERSION = 1


GENERATED_KINDS = ("prototypes", "metals", "oxidation", "peroxide", "ternary", "ternary_oxidation",
                   "intermetallic")
# the version of each kind of generated entries, part of its cache key ("peroxide": the entries
# of cfmc.stability.dimers; "intermetallic": of cfmc.stability.intermetallics)
ENTRY_VERSIONS = {"prototypes": PROTOTYPE_VERSION, "metals": METALS_VERSION,
                  "oxidation": OXIDATION_VERSION, "peroxide": 1, "ternary": TERNARY_VERSION,
                  "ternary_oxidation": TERNARY_VERSION, "intermetallic": 1}


@dataclass(frozen=True)
class TernaryPrototype:
    """A ternary ionic structure type: sites (C1, C2, X) with C1 the less electronegative cation
    of its representative and X the anion; `stoich` the reduced counts in that order."""

    key: str  # e.g. '1:1:3-221-5'
    stoich: tuple[int, int, int]
    count: int
    material_id: str
    cif: str


def _ternary_order(comp: Composition) -> tuple[str, str, str] | None:
    """(C1, C2, X) of a ternary with exactly one anion and two cations, else None."""
    els = [el.symbol for el in comp.elements]
    anions = [e for e in els if is_anion(e)]
    if len(els) != 3 or len(anions) != 1:
        return None
    c1, c2 = sorted((e for e in els if e != anions[0]), key=lambda s: (_en(s), s))
    return c1, c2, anions[0]


def ternary_library(cache: str | os.PathLike, n_stoich: int = 14, max_atoms: int = 12
                    ) -> list[TernaryPrototype]:
    """One prototype (the most frequent space group and size, primitive cell of at most
    `max_atoms` atoms) for each of the `n_stoich` most frequent ternary ionic stoichiometries
    of the training mix (cached as JSON)."""
    path = Path(cache) / f"ternary-prototypes-v{TERNARY_VERSION}-{n_stoich}-{max_atoms}.json"
    return cached_library(path, lambda: most_frequent_types(
        lambda comp, system: _ternary_order(comp), n_stoich, max_atoms))


def cached_library(path: Path, build: Callable[[], list[dict]]) -> list[TernaryPrototype]:
    """The ternary types in the JSON file `path`, built by `build` on first use (one process
    builds while others wait; the file appears whole)."""
    if not path.exists():
        with entry_lock(path):
            if not path.exists():
                write_atomic(path, json.dumps(build()))
    return [TernaryPrototype(p["key"], tuple(p["stoich"]), p["count"], p["material_id"],
                             p["cif"]) for p in json.loads(path.read_text())]


def most_frequent_types(order: Callable[[Composition, str], Sequence[str] | None], n_stoich: int,
                        max_atoms: int, rank: Callable | None = None,
                        pick: Callable | None = None) -> list[dict]:
    """Structure types of the training mix's ternaries: their counts taken in the element order
    `order(composition, chemsys)` gives (None leaves a crystal out), the `n_stoich` most
    frequent reduced stoichiometries (`rank` of (stoich, rows), default fewest rows last), and
    for each the most frequent (space group, size) among primitive cells of at most `max_atoms`
    atoms, represented by the member `pick` of (row, structure) sorts first (default: lowest MP
    E_hull, then fewest atoms)."""
    known = read_known()
    rows = known[(known["chemsys"].str.count("-") == 2) & (known["natoms"] <= 2 * max_atoms)]
    by_stoich: dict[tuple[int, ...], list] = {}
    for row in rows.itertuples():
        comp = Composition(row.formula)
        elements = order(comp, row.chemsys)
        if elements is None:
            continue
        counts = [int(round(comp[e])) for e in elements]
        g = gcd(gcd(counts[0], counts[1]), counts[2])
        by_stoich.setdefault(tuple(c // g for c in counts), []).append(row)
    rank = rank or (lambda kv: -len(kv[1]))
    pick = pick or (lambda m: (m[0].e_hull_mp if m[0].e_hull_mp == m[0].e_hull_mp else 9,
                               len(m[1])))
    out: list[dict] = []
    for stoich, group in sorted(by_stoich.items(), key=rank):
        if len(out) >= n_stoich:
            break
        types: dict[str, list] = {}
        for row in group:
            s = parse_cif(row.cif).get_primitive_structure()
            if len(s) <= max_atoms:
                types.setdefault(f"{spacegroup_number(s)}-{len(s)}", []).append((row, s))
        if not types:
            continue
        key, members = max(types.items(), key=lambda kv: (len(kv[1]), kv[0]))
        row, s = min(members, key=pick)
        out.append({"key": f"{':'.join(map(str, stoich))}-{key}", "stoich": list(stoich),
                    "count": len(group), "material_id": row.material_id,
                    "cif": s.to(fmt="cif")})
    return out


def is_ionic_ternary(system: str) -> bool:
    """Whether a chemical system has three elements, one anion and two cations (elements with a
    positive common oxidation state): the systems that get generated ternary phases."""
    els = system.split("-")
    if len(els) != 3:
        return False
    order = _ternary_order(Composition({e: 1 for e in els}))
    return order is not None and all(
        any(q > 0 for q in Element(c).common_oxidation_states) for c in order[:2])


def ternary_candidates(system: str, cache: str | os.PathLike, skip: set[str] = frozenset(),
                       further: bool = False) -> list[tuple[str, Structure]]:
    """(prototype key, decorated structure) for an ionic ternary system: every library type with
    each cation on each cation site, kept when its reduced formula is not in `skip` and it is
    charge balanced with common oxidation states (`balanced_common`), or, with `further`, only
    with the cations' further states (`balanced_further`: K3MoF6 at Mo3+, a competitor of Mo3+
    elpasolites); one structure per formula (the most frequent type)."""
    if not is_ionic_ternary(system):
        return []
    c1, c2, x = _ternary_order(Composition({e: 1 for e in system.split("-")}))
    out, seen = [], set(skip)
    for proto in ternary_library(cache):
        for a, b in ((c1, c2), (c2, c1)):
            formula = Composition({a: proto.stoich[0], b: proto.stoich[1], x: proto.stoich[2]}
                                  ).reduced_formula
            if formula in seen:
                continue
            keep = balanced_common((a, b, x), proto.stoich)
            if further:  # the formulas that balance only at further states
                keep = not keep and balanced_further((a, b, x), proto.stoich)
            if keep:
                seen.add(formula)
                out.append((proto.key, _decorate_ternary(proto, (a, b, x))))
    return out


def balanced_common(elements: tuple[str, str, str], counts: tuple[int, int, int]) -> bool:
    """Whether counts of (cation, cation, anion) balance with the cations' common positive
    oxidation states and the anion's most negative common one (stricter than SMACT's search, so
    that few, plausible phases are generated)."""
    return _balanced(elements, counts, lambda el: [q for q in el.common_oxidation_states if q > 0])


def balanced_further(elements: tuple[str, str, str], counts: tuple[int, int, int]) -> bool:
    """As `balanced_common`, with each cation in any of its `cation_states`."""
    return _balanced(elements, counts, lambda el: cation_states(el.symbol))


def _balanced(elements: tuple[str, str, str], counts: tuple[int, int, int],
              states: Callable[[Element], list[int]]) -> bool:
    a, b, x = (Element(e) for e in elements)
    qx = min(x.common_oxidation_states, default=0)
    if qx >= 0:
        return False
    return any(counts[0] * qa + counts[1] * qb + counts[2] * qx == 0
               for qa in states(a) for qb in states(b))


def _decorate_ternary(proto: TernaryPrototype, targets: tuple[str, str, str]) -> Structure:
    s = parse_cif(proto.cif)
    return substitute(s, _ternary_order(s.composition), targets)
