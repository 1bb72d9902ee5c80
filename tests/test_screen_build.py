"""The reference hull built ahead of a screen: the entries it needs, built in spawned worker
processes, an on-disk cache that concurrent builders share, and binaries at further oxidation
states and peroxides (small systems only: Na-Cl, Ga-Cl, W-Cl, Li-O)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest

from cfmc.stability.build import Workers, build_hull, default_workers, missing_entries
from cfmc.stability.hull import ReferenceHull


def test_default_workers_and_bad_count():
    assert 1 <= default_workers() <= 2
    with pytest.raises(ValueError, match="at least 1"):
        Workers(0)


def test_entry_keys_of_an_ionic_system(tmp_path):
    hull = ReferenceHull(cache=tmp_path)
    keys = hull.entry_keys("Na-Cl")
    assert ("Cl-Na", "known") in keys and ("Cl-Na", "prototypes") in keys
    assert ("Cl", "known") in keys and ("Na", "known") in keys
    assert ("Cl-Na", "oxidation") in keys  # an ionic pair: its further oxidation states
    assert ("Cl-Na", "metals") not in keys
    plain = ReferenceHull(cache=tmp_path, oxidation=False, metals=False)
    assert ("Cl-Na", "oxidation") not in plain.entry_keys("Na-Cl")
    todo = missing_entries(hull, ["Cl-Na", "Na-Cl"])  # one system, named twice
    assert len(todo) == len(set(todo)) == len(keys)
    assert [kind for _, kind in todo][:3] == ["known"] * 3  # known phases first


def test_parallel_build_matches_serial(tmp_path):
    """Two spawned workers build the entries of Na-Cl (training-mix phases only: single points);
    the cache they write equals one built in this process."""
    options = {"prototypes": False}
    par = ReferenceHull(cache=tmp_path / "par", **options)
    report = build_hull(par, ["Cl-Na"], workers=2, progress=False)
    assert report == {"entries_built": 3, "entries_failed": 0}
    assert all(par.is_cached(*k) for k in par.entry_keys("Cl-Na"))
    assert not list((tmp_path / "par").rglob("*.tmp"))
    assert missing_entries(par, ["Cl-Na"]) == []
    assert build_hull(par, ["Cl-Na"], workers=2, progress=False)["entries_built"] == 0
    ser = ReferenceHull(cache=tmp_path / "ser", **options)
    build_hull(ser, ["Cl-Na"], workers=1, progress=False)
    a, b = par.system_entries("Cl-Na"), ser.system_entries("Cl-Na")
    assert [e["id"] for e in a] == [e["id"] for e in b]
    for x, y in zip(a, b, strict=True):
        assert x["e_form_pot"] == pytest.approx(y["e_form_pot"], abs=1e-4)


def test_concurrent_builders_compute_an_entry_once(tmp_path, monkeypatch):
    """Two builders asking for the same missing entry at once: one computes it, the other waits
    for the lock and reads the file."""
    calls = []

    def slow_compute(self, system, kind):
        calls.append((system, kind))
        time.sleep(0.3)
        return [{"id": "x", "formula": "NaCl", "source": "known", "e_form_mp": -2.0,
                 "e_form_pot": -2.0}]

    monkeypatch.setattr(ReferenceHull, "_compute", slow_compute)
    hulls = [ReferenceHull(cache=tmp_path) for _ in range(2)]
    got: list = []
    threads = [threading.Thread(target=lambda h=h: got.append(h.system_entries("Na-Cl")))
               for h in hulls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [("Cl-Na", "known")]
    assert got[0] == got[1] and got[0][0]["e_form_pot"] == -2.0
    path = hulls[0].root / "Cl-Na.known.json"
    assert json.loads(path.read_text()) == got[0]


def test_unknown_kind_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown kind of hull entries 'binary'"):
        ReferenceHull(cache=tmp_path).system_entries("Na-Cl", "binary")


def test_further_oxidation_states():
    from cfmc.stability.prototypes import cation_states, other_stoichiometries

    assert cation_states("W") == [2, 3, 4, 5, 6]
    assert cation_states("Na") == [1]
    # WCl4 and WCl6 come from the two lowest common states; WCl2, WCl3, WCl5 from the others
    assert [s for s, _ in other_stoichiometries("Cl", "W")] == [(1, 2), (1, 3), (1, 5)]
    assert other_stoichiometries("Na", "Cl") == []
    assert other_stoichiometries("Cu", "Au") == []  # a metal pair


def test_ternaries_at_further_oxidation_states(tmp_path, monkeypatch):
    """K-Mo-F on two training-mix types (K2PtCl6 and cryolite-like A3BX6): K2MoF6 balances with
    Mo's common state (+4), so it is a plain generated ternary; K3MoF6, the competitor of an
    Mo3+ elpasolite, balances only at a further state. The two kinds never share a formula, a
    system without further states (K-Na-F) gets none, and the hull reads them only when asked."""
    from cfmc.stability import prototypes
    from cfmc.stability.known import parse_cif, read_known

    assert prototypes.balanced_further(("K", "Mo", "F"), (3, 1, 6))
    assert not prototypes.balanced_common(("K", "Mo", "F"), (3, 1, 6))
    assert prototypes.balanced_common(("K", "Mo", "F"), (2, 1, 6))
    known = read_known().set_index("material_id")
    library = [prototypes.TernaryPrototype(
        f"{':'.join(map(str, st))}-test", st, 1, mid,
        parse_cif(known.loc[mid, "cif"]).get_primitive_structure().to(fmt="cif"))
        for st, mid in (((2, 1, 6), "mp-28651"), ((3, 1, 6), "mp-1206448"))]
    monkeypatch.setattr(prototypes, "ternary_library", lambda cache: library)

    def formulas(**kw):
        return {s.composition.reduced_formula
                for _, s in prototypes.ternary_candidates("F-K-Mo", tmp_path, **kw)}

    assert formulas() == {"K2MoF6"} and formulas(further=True) == {"K3MoF6"}
    assert formulas(further=True, skip={"K3MoF6"}) == set()
    assert prototypes.ternary_candidates("F-K-Na", tmp_path, further=True) == []
    assert ("F-K-Mo", "ternary_oxidation") not in ReferenceHull(cache=tmp_path).entry_keys(
        "K-Mo-F")  # opt-in
    further = ReferenceHull(cache=tmp_path, ternary_oxidation=True)
    assert ("F-K-Mo", "ternary_oxidation") in further.entry_keys("K-Mo-F")
    assert further.options()["ternary_oxidation"]


def test_oxidation_entries_relaxed(tmp_path):
    """Ga-Cl: GaCl3 comes from the common state (and the mix); GaCl2 is generated at Ga2+ on the
    chlorides' types and relaxed with real CHGNet onto the hull's scale."""
    hull = ReferenceHull(cache=tmp_path)
    entries = hull.system_entries("Cl-Ga", "oxidation")
    assert {e["formula"] for e in entries} == {"GaCl2"} and len(entries) == 2
    assert all(e["id"].startswith(("proto:Cl-", "proto:group17-")) for e in entries)
    energies = [e["e_form_pot"] for e in entries if e["e_form_pot"] is not None]
    assert energies and all(-2.5 < e < 0.0 for e in energies)


def test_peroxides_from_anion_pair_types(tmp_path):
    """BaO2 (a known peroxide) has O-O pairs, rock-salt BaO none; peroxide-like binaries are
    made for +1 and +2 cations only, on the mix's pair types (CaC2 type among those of AB2)."""
    from pymatgen.core import Lattice, Structure

    from cfmc.stability.dimers import (
        dimer_candidates,
        dimer_library,
        has_anion_pairs,
        peroxide_stoichiometry,
    )
    from cfmc.stability.known import parse_cif, read_known

    known = read_known()
    bao2 = parse_cif(known.loc[known["material_id"] == "mp-1105", "cif"].iloc[0])
    assert has_anion_pairs(bao2, "O")
    bao = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.5), ["Ba", "O"],
                                    [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert not has_anion_pairs(bao, "O")
    assert peroxide_stoichiometry("Li", "O") == (1, 1)
    assert peroxide_stoichiometry("Zn", "O") == (1, 2)
    assert peroxide_stoichiometry("Y", "O") is None  # Y3+: no peroxide
    assert peroxide_stoichiometry("Na", "Cl") is None  # not a chalcogen
    lib = dimer_library(tmp_path)
    assert any(p.key.startswith("pair-1:2-139-") for p in lib[(1, 2)])
    made = dimer_candidates("O", "Li", tmp_path)
    assert made and {s.composition.reduced_formula for _, s in made} == {"Li2O2"}
    assert any(has_anion_pairs(s, "O") for _, s in made)  # the Na2O2 type
    assert dimer_candidates("Li", "O", tmp_path, skip={"Li2O2"}) == []


def test_wait_hull_reports_failures_without_raising():
    """A failed entry (or a broken pool) is reported and left to be computed on first use."""
    from concurrent.futures import Future

    from cfmc.stability.build import wait_hull

    ok, failed, broken = Future(), Future(), Future()
    ok.set_result("")
    failed.set_result("ValueError: no reference energy for Og")
    broken.set_exception(RuntimeError("worker died"))
    report = wait_hull([(("Cl-Na", "known"), ok), (("Na-Og", "known"), failed),
                        (("Cl-K", "prototypes"), broken)], progress=False)
    assert report["entries_built"] == 1 and report["entries_failed"] == 2
    assert report["errors"] == ["Cl-K prototypes: RuntimeError: worker died",
                                "Na-Og known: ValueError: no reference energy for Og"]


def test_workers_end_when_their_parent_is_killed(tmp_path):
    """A screen killed from outside leaves no workers behind: each spawned worker watches the
    process that started it and exits once that is gone (here it kills itself with SIGKILL,
    so no shutdown code runs). Without the watch the workers wait on their queue forever."""
    psutil = pytest.importorskip("psutil")
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, signal\n"
        "from cfmc.stability.build import Workers\n"
        "if __name__ == '__main__':\n"
        "    pool = Workers(2)\n"
        "    pids = {pool.submit(os.getpid).result() for _ in range(8)}\n"
        "    print(' '.join(map(str, sorted(pids))), flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n")
    log = tmp_path / "pids.txt"
    with log.open("w") as f:  # a file, not a pipe: the workers inherit the parent's stdout
        rc = subprocess.run([sys.executable, str(script)], stdout=f, timeout=300).returncode
    pids = [int(p) for p in log.read_text().split()]
    assert rc == -signal.SIGKILL and pids

    def alive(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 120  # the watch looks every 2 s; generous for slow machines
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(alive(p) for p in pids)


def test_intermetallic_ternaries(tmp_path, monkeypatch):
    """Co-Mn-Si on two training-mix Heusler types (AlFeCo2, Mn2AlV: 1:1:2 and 2:1:1 in order of
    electronegativity): decorated in that order (Mn, Co, Si), skipping the system's known
    formulas; none for systems with a hard anion or without a metal; the hull reads them for
    intermetallic systems only, and a decorated phase relaxes with real CHGNet onto the hull's
    scale."""
    from cfmc.stability import intermetallics
    from cfmc.stability.known import parse_cif, read_known
    from cfmc.stability.prototypes import TernaryPrototype

    known = read_known().set_index("material_id")
    library = [TernaryPrototype(
        f"{':'.join(map(str, st))}-test", st, 1, mid,
        parse_cif(known.loc[mid, "cif"]).get_primitive_structure().to(fmt="cif"))
        for st, mid in (((1, 1, 2), "mp-10884"), ((2, 1, 1), "mp-10895"))]
    monkeypatch.setattr(intermetallics, "intermetallic_library", lambda cache: library)

    def formulas(system, **kw):
        return [s.composition.reduced_formula
                for _, s in intermetallics.intermetallic_candidates(system, tmp_path, **kw)]

    assert intermetallics.en_order(["Si", "Co", "Mn"]) == ("Mn", "Co", "Si")
    assert formulas("Co-Mn-Si") == ["MnCoSi2", "Mn2CoSi"]
    assert formulas("Co-Mn-Si", skip={"Mn2CoSi"}) == ["MnCoSi2"]
    assert formulas("Mn-O-Si") == [] and formulas("B-C-Si") == []
    heusler = intermetallics.intermetallic_candidates("Co-Mn-Si", tmp_path)[1][1]
    assert heusler.composition["Mn"] == 2 * heusler.composition["Co"]
    keys = ReferenceHull(cache=tmp_path).entry_keys("Co-Mn-Si")
    assert ("Co-Mn-Si", "intermetallic") in keys
    assert ("Co-Mn-Si", "intermetallic") in ReferenceHull(cache=tmp_path).entry_keys(
        "Al-Co-Mn-Si")
    assert not any(k == "intermetallic" for _, k in ReferenceHull(cache=tmp_path).entry_keys(
        "Co-Mn-O-Si"))  # an oxide's metal subsystems: their ternaries cannot reach its hull
    assert ("Co-Mn-Si", "intermetallic") not in ReferenceHull(
        cache=tmp_path, intermetallics=False).entry_keys("Co-Mn-Si")
    monkeypatch.setattr(intermetallics, "intermetallic_library", lambda cache: library[1:])
    entries = ReferenceHull(cache=tmp_path).system_entries("Co-Mn-Si", "intermetallic")
    assert [e["formula"] for e in entries] == ["Mn2CoSi"]
    assert entries[0]["id"].startswith("proto:im:") and entries[0]["cif"]
    assert -1.0 < entries[0]["e_form_pot"] < 0.5  # a formation energy, not a failed relaxation
