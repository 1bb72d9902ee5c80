"""The reference hull: known crystals of the training mix plus generated competing phases (binaries
of every pair; ternaries of two cations and an anion), all on one formation-energy scale, cached on
disk per exact chemical system and reused across runs.

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
                 metals: bool = True) -> None:
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        self.scale, self.prototypes, self.progress = scale, prototypes, progress
        self.ternaries, self.metals = ternaries, metals
        self.mu: dict[str, float] = load_references(cache, progress)["mu"]
        self.root = cache_root(cache) / f"{potential_id()}-v{HULL_VERSION}"
        self.known = read_known()
        self._rows = self.known.groupby("chemsys").indices
        self._memo: dict[str, list[dict]] = {}

    def e_form(self, composition: Composition, energy_per_atom: float) -> float:
        """The potential's energy per atom as a formation energy on this hull's scale."""
        elements = Composition(composition).elements
        missing = [el.symbol for el in elements if el.symbol not in self.mu]
        if missing:
            raise ValueError(f"no reference energy for {', '.join(missing)}")
        return formation_energy(composition, energy_per_atom, self.mu)

    def system_entries(self, system: str, kind: str = "known") -> list[dict]:
        """Phases whose elements are exactly `system`: the training mix's ("known"), the
        generated binaries ("prototypes") or generated ternaries ("ternary"); cached as JSON,
        computed on first use."""
        from cfmc.stability.prototypes import METALS_VERSION, TERNARY_VERSION

        system = chemsys(system.split("-"))
        versions = {"ternary": TERNARY_VERSION, "metals": METALS_VERSION}
        key = f"{system}.{kind}{versions.get(kind, '')}"
        if key in self._memo:
            return self._memo[key]
        path = self.root / f"{key}.json"
        if path.exists():
            entries = json.loads(path.read_text())
        else:
            entries = (self._known(system) if kind == "known" else
                       self._ternary_entries(system) if kind == "ternary" else
                       self._prototype_entries(system, metals=kind == "metals"))
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(entries))
            tmp.replace(path)
        self._memo[key] = entries
        return entries

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

    def _ternary_entries(self, system: str) -> list[dict]:
        from cfmc.stability.prototypes import ternary_candidates

        skip = {e["formula"] for e in self.system_entries(system, "known")}
        return self._relaxed(ternary_candidates(system, self.root.parent, skip))

    def _relaxed(self, structures: list) -> list[dict]:
        """Hull entries of generated structures (prototype key, structure): volume scan, then
        relaxed keeping their symmetry; those whose forces stay large get no energy."""
        from cfmc.stability.relax import prescale_volume, relax

        out = []
        for key, structure in structures:
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
            out.append(entry)
        return out

    def entries(self, system: str) -> list[dict]:
        """All phases of `system` and its subsystems: known, generated binaries (intermetallic
        ones left out of systems with an anion (O, F, Cl, ...), where they cannot reach the hull;
        those of metal pairs that have known binaries only with `metals`), generated ternaries of
        two cations and an anion (with `ternaries`)."""
        from cfmc.stability.prototypes import is_anion, is_intermetallic, is_ionic_ternary

        subs = subsystems(chemsys(system.split("-")))
        ionic = any(is_anion(el) for el in system.split("-"))
        out = [e for sub in subs for e in self.system_entries(sub)]
        if self.prototypes:
            for sub in subs:
                if sub.count("-") == 1 and not (ionic and is_intermetallic(*sub.split("-"))):
                    out += self.system_entries(sub, "prototypes")
                    if self.metals and is_intermetallic(*sub.split("-")):
                        out += self.system_entries(sub, "metals")
                elif self.ternaries and is_ionic_ternary(sub):
                    out += self.system_entries(sub, "ternary")
        return out

    def energy(self, entry: dict) -> float | None:
        """An entry's formation energy per atom on this hull's scale (None: not usable)."""
        if self.scale == "mp" and entry["source"] == "known":
            return entry["e_form_mp"]
        return entry["e_form_pot"]

    def phase_diagram(self, system: str, exclude: Iterable[str] = ()) -> PhaseDiagram:
        """pymatgen PhaseDiagram of `system`, leaving out the entries whose ids are in `exclude`."""
        drop = set(exclude)
        els = system.split("-")
        pd_entries = [PDEntry(Composition({el: 1}), 0.0, name=el) for el in els]
        for e in self.entries(system):
            energy = self.energy(e)
            if energy is None or e["id"] in drop:
                continue
            comp = Composition(e["formula"])
            entry = PDEntry(comp, energy * comp.num_atoms, name=e["formula"])
            entry.entry_id = e["id"]
            pd_entries.append(entry)
        return PhaseDiagram(pd_entries, elements=[Element(el) for el in sorted(els)])

    def e_above_hull(self, composition: Composition, e_form: float, exclude: Iterable[str] = ()
                     ) -> tuple[float, dict[str, float]]:
        """(E_hull in eV/atom, negative when below the hull; decomposition {phase: fraction})."""
        comp = Composition(composition)
        pd = self.phase_diagram(chemsys(el.symbol for el in comp.elements), exclude)
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


def has_pure_element(decomposition: dict[str, float]) -> bool:
    """Whether a decomposition (from `e_above_hull`) includes an elemental phase."""
    return any(k.endswith("(element)") for k in decomposition)


__all__ = ["ReferenceHull", "has_pure_element"]
