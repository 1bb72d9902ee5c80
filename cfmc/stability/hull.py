"""The reference hull: known crystals of the training mix plus generated competing phases (binaries
of every pair, also at the cation's further oxidation states, and peroxides; ternaries of two
cations and an anion, also at further states; intermetallic ternaries), all on one formation-energy
scale, cached on disk per exact chemical system and reused across runs (`cfmc.stability.build`
fills the cache for many systems at once).

Scales: "potential" (default) puts every phase on the potential's energies with fitted elemental
references (known crystals as given by MP, not relaxed again: single points); "mp" keeps MP's
formation energies for known crystals and the potential's for generated phases.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable

from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Element

from cfmc.stability.cache import entry_lock, write_atomic
from cfmc.stability.known import chemsys, parse_cif, read_known, subsystems
from cfmc.stability.potential import potential_id, static_energies
from cfmc.stability.references import cache_root, formation_energy, load_references

HULL_VERSION = 4
SCALES = ("potential", "mp")
_PROTO_FMAX, _PROTO_STEPS, _PROTO_MAX_FORCE = 0.1, 100, 0.25


class ReferenceHull:
    """Phase diagrams of chemical systems, built lazily and cached under `cache`."""

    def __init__(self, cache: str | os.PathLike | None = None, scale: str = "potential",
                 prototypes: bool = True, progress: bool = False, ternaries: bool = True,
                 metals: bool = True, oxidation: bool = True, ternary_oxidation: bool = False,
                 intermetallics: bool = True) -> None:
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        self.scale, self.prototypes, self.progress = scale, prototypes, progress
        self.ternaries, self.metals, self.oxidation = ternaries, metals, oxidation
        self.ternary_oxidation, self.intermetallics = ternary_oxidation, intermetallics
        self.mu: dict[str, float] = load_references(cache, progress)["mu"]
        self.root = cache_root(cache) / f"{potential_id()}-v{HULL_VERSION}"
        self.known = read_known()
        self._rows = self.known.groupby("chemsys").indices
        self._memo: dict[str, list[dict]] = {}

    def options(self) -> dict:
        """Keyword arguments that make the same hull in another process."""
        return {"cache": str(self.root.parent), "scale": self.scale,
                "prototypes": self.prototypes, "ternaries": self.ternaries,
                "metals": self.metals, "oxidation": self.oxidation,
                "ternary_oxidation": self.ternary_oxidation,
                "intermetallics": self.intermetallics}

    def e_form(self, composition: Composition, energy_per_atom: float) -> float:
        """The potential's energy per atom as a formation energy on this hull's scale."""
        elements = Composition(composition).elements
        missing = [el.symbol for el in elements if el.symbol not in self.mu]
        if missing:
            raise ValueError(f"no reference energy for {', '.join(missing)}")
        return formation_energy(composition, energy_per_atom, self.mu)

    def _key(self, system: str, kind: str) -> str:
        from cfmc.stability.prototypes import ENTRY_VERSIONS

        return f"{chemsys(system.split('-'))}.{kind}{ENTRY_VERSIONS.get(kind, '')}"

    def is_cached(self, system: str, kind: str = "known") -> bool:
        """Whether the entries of (`system`, `kind`) are already on disk (or in memory)."""
        key = self._key(system, kind)
        return key in self._memo or (self.root / f"{key}.json").exists()

    def system_entries(self, system: str, kind: str = "known") -> list[dict]:
        """Phases whose elements are exactly `system`: the training mix's ("known"), or generated
        ones (`GENERATED_KINDS`); cached as JSON, computed on first use. Safe under concurrency:
        one process computes an entry while others wait for it (a lock file per entry), and the
        file appears whole (written aside, then renamed)."""
        key = self._key(system, kind)
        if key in self._memo:
            return self._memo[key]
        path = self.root / f"{key}.json"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with entry_lock(path):
                if not path.exists():  # another process may have written it meanwhile
                    entries = self._compute(chemsys(system.split("-")), kind)
                    write_atomic(path, json.dumps(entries))
        entries = json.loads(path.read_text())
        self._memo[key] = entries
        return entries

    def _compute(self, system: str, kind: str) -> list[dict]:
        if kind == "known":
            return self._known(system)
        if kind in ("ternary", "ternary_oxidation"):
            return self._ternary_entries(system, further=kind == "ternary_oxidation")
        if kind in ("prototypes", "metals"):
            return self._prototype_entries(system, metals=kind == "metals")
        if kind == "oxidation":
            return self._oxidation_entries(system)
        if kind == "intermetallic":
            from cfmc.stability.intermetallics import intermetallic_candidates

            skip = {e["formula"] for e in self.system_entries(system, "known")}
            return self._relaxed(intermetallic_candidates(system, self.root.parent, skip))
        if kind == "peroxide":
            from cfmc.stability.dimers import dimer_candidates

            skip = {e["formula"] for e in self.system_entries(system, "known")}
            return self._relaxed(dimer_candidates(*system.split("-"), self.root.parent, skip))
        from cfmc.stability.prototypes import GENERATED_KINDS

        raise ValueError(f"unknown kind of hull entries {kind!r}; one of 'known', "
                         f"{', '.join(map(repr, GENERATED_KINDS))}")

    def _known(self, system: str) -> list[dict]:
        if "-" not in system:
            return []  # elements sit at 0 by definition of the formation energy
        rows = self.known.iloc[self._rows.get(system, [])]
        energies = static_energies([parse_cif(c) for c in rows["cif"]]) if len(rows) else []
        return [{"id": row.material_id, "formula": row.formula, "source": "known",
                 "e_form_mp": _num(row.e_form), "e_form_pot": self._safe_form(row.formula, e)}
                for row, e in zip(rows.itertuples(), energies, strict=True)]

    def _safe_form(self, formula: str, energy: float) -> float | None:
        try:
            return _num(self.e_form(Composition(formula), energy))
        except ValueError:
            return None

    def _prototype_entries(self, system: str, metals: bool = False) -> list[dict]:
        from cfmc.stability.prototypes import candidates_for_pair

        a, b = system.split("-")
        skip = {e["formula"] for e in self.system_entries(system, "known")}
        return self._relaxed(candidates_for_pair(a, b, self.root.parent, skip, metals))

    def _oxidation_entries(self, system: str) -> list[dict]:
        from cfmc.stability.prototypes import oxidation_candidates

        a, b = system.split("-")
        skip = {e["formula"] for e in self.system_entries(system, "known")}
        return self._relaxed(oxidation_candidates(a, b, self.root.parent, skip))

    def _ternary_entries(self, system: str, further: bool = False) -> list[dict]:
        from cfmc.stability.prototypes import ternary_candidates

        skip = {e["formula"] for e in self.system_entries(system, "known")}
        return self._relaxed(ternary_candidates(system, self.root.parent, skip, further))

    def _relaxed(self, structures: list) -> list[dict]:
        """Hull entries of generated structures (prototype key, structure): volume scan, then
        relaxed keeping their symmetry; those whose forces stay large get no energy."""
        import time

        from cfmc.stability.relax import prescale_volume, relax

        out = []
        for key, structure in structures:
            t = time.process_time()
            entry = {"id": f"proto:{key}:{structure.composition.reduced_formula}",
                     "formula": structure.composition.reduced_formula, "source": "prototype",
                     "e_form_mp": None, "e_form_pot": None}
            try:
                r = relax(prescale_volume(structure), fmax=_PROTO_FMAX, steps=_PROTO_STEPS,
                          fix_symmetry=True)
                entry.update(max_force=r.max_force, converged=r.converged,
                             cif=r.structure.to(fmt="cif"))
                if r.max_force <= _PROTO_MAX_FORCE:
                    entry["e_form_pot"] = self._safe_form(entry["formula"], r.energy_per_atom)
            except Exception as e:  # a prototype that fails to relax is left out, with why
                entry["error"] = f"{type(e).__name__}: {e}"[:200]
            entry["cpu_s"] = round(time.process_time() - t, 2)
            out.append(entry)
        return out

    def entry_keys(self, system: str) -> list[tuple[str, str]]:
        """The (subsystem, kind) cache entries the hull of `system` reads: the training mix's
        phases of every subsystem; generated binaries (intermetallic ones left out of systems
        with an anion (O, F, Cl, ...), where they cannot reach the hull; those of metal pairs
        that have known binaries only with `metals`; binaries of the other oxidation states
        with `oxidation`, and peroxide-like ones of a chalcogen with a +1 or +2 cation,
        `cfmc.stability.dimers`); generated ternaries of two cations and an anion (with
        `ternaries`), also at the cations' further oxidation states with `ternary_oxidation`
        (off by default: about half as much cold-cache time again for the `make demo`
        candidates; see experiments/README.md); generated intermetallic ternaries
        (`cfmc.stability.intermetallics`) with `intermetallics`, in systems with no hard anion."""
        from cfmc.stability.dimers import peroxide_stoichiometry
        from cfmc.stability.intermetallics import has_hard_anion, is_intermetallic_ternary
        from cfmc.stability.prototypes import is_anion, is_intermetallic, is_ionic_ternary

        subs = subsystems(chemsys(system.split("-")))
        ionic = any(is_anion(el) for el in system.split("-"))
        keys = [(sub, "known") for sub in subs]
        if not self.prototypes:
            return keys
        for sub in subs:
            if sub.count("-") == 1:
                a, b = sub.split("-")
                metal_pair = is_intermetallic(a, b)
                if not (ionic and metal_pair):
                    keys.append((sub, "prototypes"))
                    if self.metals and metal_pair:
                        keys.append((sub, "metals"))
                if self.oxidation and not metal_pair:
                    keys.append((sub, "oxidation"))
                    if peroxide_stoichiometry(*_cation_anion(a, b)) is not None:
                        keys.append((sub, "peroxide"))
            elif self.ternaries and is_ionic_ternary(sub):
                keys.append((sub, "ternary"))
                if self.ternary_oxidation:
                    keys.append((sub, "ternary_oxidation"))
            if self.intermetallics and not has_hard_anion(system) and is_intermetallic_ternary(sub):
                keys.append((sub, "intermetallic"))
        return keys

    def entries(self, system: str) -> list[dict]:
        """All phases of `system` and its subsystems (`entry_keys`)."""
        return [e for sub, kind in self.entry_keys(system) for e in self.system_entries(sub, kind)]

    def energy(self, entry: dict) -> float | None:
        """An entry's formation energy per atom on this hull's scale (None: not usable)."""
        if self.scale == "mp" and entry["source"] == "known":
            return entry["e_form_mp"]
        return entry["e_form_pot"]

    def phase_diagram(self, system: str, exclude: Iterable[str] = (), extra: Iterable[dict] = ()
                      ) -> PhaseDiagram:
        """pymatgen PhaseDiagram of `system`, leaving out the entries whose ids are in `exclude`
        and adding the entries `extra` (dicts as `system_entries` makes them)."""
        drop = set(exclude)
        els = system.split("-")
        pd_entries = [PDEntry(Composition({el: 1}), 0.0, name=el) for el in els]
        for e in [*self.entries(system), *extra]:
            energy = self.energy(e)
            if energy is None or e["id"] in drop:
                continue
            comp = Composition(e["formula"])
            entry = PDEntry(comp, energy * comp.num_atoms, name=e["formula"])
            entry.entry_id = e["id"]
            pd_entries.append(entry)
        return PhaseDiagram(pd_entries, elements=[Element(el) for el in sorted(els)])

    def e_above_hull(self, composition: Composition, e_form: float, exclude: Iterable[str] = (),
                     extra: Iterable[dict] = ()) -> tuple[float, dict[str, float]]:
        """(E_hull in eV/atom, negative when below the hull; decomposition {phase: fraction});
        `exclude` and `extra` as in `phase_diagram`."""
        comp = Composition(composition)
        pd = self.phase_diagram(chemsys(el.symbol for el in comp.elements), exclude, extra)
        entry = PDEntry(comp, e_form * comp.num_atoms)
        decomp, e_hull = pd.get_decomp_and_e_above_hull(entry, allow_negative=True,
                                                        check_stable=False)
        names = {f"{d.name} ({getattr(d, 'entry_id', None) or 'element'})": round(float(f), 4)
                 for d, f in sorted(decomp.items(), key=lambda kv: -kv[1])}
        return float(e_hull), names


def _num(x: object) -> float | None:
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _cation_anion(a: str, b: str) -> tuple[str, str]:
    """The pair ordered (less electronegative, more electronegative)."""
    from cfmc.stability.prototypes import _en

    x, y = sorted((a, b), key=lambda e: (_en(e), e))
    return x, y


def has_pure_element(decomposition: dict[str, float]) -> bool:
    """Whether a decomposition (from `e_above_hull`) includes an elemental phase."""
    return any(k.endswith("(element)") for k in decomposition)


__all__ = ["ReferenceHull", "has_pure_element"]
