"""The stability screen: relax each candidate, place it against the reference hull, flag S.U.N.

S.U.N. = stable (E_hull <= 0.1 eV/atom), unique among the candidates, novel against the training
mix. E_hull here is a machine-learned estimate (CHGNet + fitted references), not DFT.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pymatgen.core import Composition, Structure

from cfmc.stability.hull import ReferenceHull, has_pure_element
from cfmc.stability.known import chemsys, parse_cif

if TYPE_CHECKING:
    from cfmc.stability.matching import UniqueTracker
    from cfmc.stability.relax import RelaxResult

STABLE_THRESHOLD = 0.1  # eV/atom, the field's S.U.N. convention
# Measured by benchmarks/screen_calibration.py (see benchmarks/README or experiments/README).
CALIBRATION = {
    "protocol": "known crystals of the training mix (MP E_hull 0-0.3 eV/atom, three equal bins), "
                "each left out of its own hull; see experiments/README.md",
    "benchmark": "benchmarks/screen_calibration.py",
    "n_measured": 210,
    "e_hull_mae_ev_per_atom": 0.101,
    "e_hull_bias_ev_per_atom": -0.098,
    "spearman": 0.67,
    "stable_precision": 0.47,
    "stable_recall": 1.0,
    "e_hull_mae_mp_convention_ev_per_atom": 0.069,
    "hull_part_mae_ev_per_atom": 0.068,
    "formation_energy_mae_ev_per_atom": 0.038,
    # the same crystals, each hull holding the generated phases of the left-out crystal's own
    # formula, as a new candidate's hull does (screen_calibration.py --polymorphs)
    "e_hull_mae_as_new_formula_ev_per_atom": 0.084,
    "note": "E_hull is biased low: the offline hull still lacks phases that MP's full hull has "
            "(mixed-anion and quaternary phases, and polymorphs of formulas the training mix "
            "holds once), and CHGNet places metastable crystals lower than MP does; 'stable' "
            "flags are an upper bound",
}
_KEEP = ("rank", "chain", "material_id", "formula", "spacegroup")


def load_candidates(source: str | os.PathLike) -> pd.DataFrame:
    """The candidates table: a run folder's samples.csv, or any CSV with a `cif` column."""
    path = Path(source)
    if path.is_dir():
        path = path / "samples.csv"
    if not path.exists():
        raise FileNotFoundError(f"no candidates at {source} (a run folder or a CSV with 'cif')")
    table = pd.read_csv(path)
    if "cif" not in table.columns:
        raise ValueError(f"{path}: no 'cif' column")
    return table


def _prepare_out(out: str | os.PathLike, force: bool) -> Path:
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out} exists and is not empty (use --force to overwrite)")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _parse(cif: object) -> Structure:
    """The candidate's structure; ValueError('parse error: ...') when it cannot be read."""
    if not isinstance(cif, str) or not cif.strip():
        raise ValueError("parse error: empty CIF")
    try:
        return parse_cif(cif)
    except Exception as e:
        raise ValueError(f"parse error: {type(e).__name__}: {e}") from e


def _place(i: int, r: RelaxResult, hull: ReferenceHull, unique: UniqueTracker) -> dict:
    """The rest of a row of screened.csv after the relaxation `r`: formation energy, E_hull,
    decomposition, novelty, uniqueness, S.U.N.; raises on failure (the caller records why)."""
    from cfmc.stability.matching import match_known

    row: dict = {"formula": r.structure.composition.reduced_formula, **r.record(),
                 **place_on_hull(r.structure.composition, r.energy_per_atom, hull)}
    row["matched_known"] = match_known(r.structure) or ""
    row["novel"] = not row["matched_known"]
    dup = unique.first_match(i, r.structure)
    row["duplicate_of"] = -1 if dup is None else dup
    row["unique"] = dup is None
    row["stable"] = row.pop("stable")  # screened.csv keeps its column order: stable, then sun
    row["sun"] = bool(row["stable"] and row["unique"] and row["novel"])
    row["relaxed_cif"] = r.structure.to(fmt="cif")
    return row


def place_on_hull(composition: Composition, energy_per_atom: float, hull: ReferenceHull
                  ) -> dict:
    """The hull-dependent columns of screened.csv for a relaxed energy: e_form, e_hull,
    chemsys, decomposition, decomposes_to_element, stable (also to place an earlier screen's
    relaxations against a changed hull); raises ValueError("hull error: ...")."""
    comp = Composition(composition)
    try:
        e_form = hull.e_form(comp, energy_per_atom)
        e_hull, decomp = hull.e_above_hull(comp, e_form)
    except Exception as e:
        raise ValueError(f"hull error: {type(e).__name__}: {e}") from e
    return {"e_form": e_form, "e_hull": e_hull,
            "chemsys": chemsys(el.symbol for el in comp.elements),
            "decomposition": "; ".join(f"{k}: {v:g}" for k, v in decomp.items()),
            "decomposes_to_element": has_pure_element(decomp),
            "stable": e_hull <= STABLE_THRESHOLD}


def screen(
    source: str | os.PathLike | pd.DataFrame | Sequence[str],
    out: str | os.PathLike | None = None,
    *,
    force: bool = False,
    cache: str | os.PathLike | None = None,
    scale: str = "potential",
    fix_symmetry: bool = False,
    fmax: float = 0.05,
    steps: int = 300,
    plots: bool = True,
    progress: bool = True,
    workers: int | None = None,
    ternary_oxidation: bool = False,
    intermetallics: bool = True,
) -> pd.DataFrame:
    """Screen candidates (run folder, CSV, table with `cif`, or CIF strings); one row per input in
    input order. With `out`, writes screened.csv, screen_summary.json and hull plots there.
    The missing parts of the reference hull and the relaxations run on `workers` processes
    (default min(2, CPUs); 1: all in this process), started by `spawn`: a script that calls this
    with more than one worker keeps its top-level code under `if __name__ == "__main__":`.
    `ternary_oxidation` adds generated ternaries at the cations' further oxidation states to the
    hull (`ReferenceHull`); `intermetallics=False` leaves out its generated intermetallic
    ternaries (Heusler and other types, twelve relaxations per new metal system)."""
    from tqdm.auto import tqdm

    from cfmc.stability.build import (
        Workers,
        relax_task,
        submit_hull,
        submit_relaxations,
        wait_hull,
    )
    from cfmc.stability.matching import UniqueTracker

    t0, c0 = time.perf_counter(), _cpu_seconds()
    if isinstance(source, pd.DataFrame):
        table = source
    elif isinstance(source, (str, os.PathLike)):
        table = load_candidates(source)
    else:
        table = pd.DataFrame({"cif": list(source)})
    out_dir = _prepare_out(out, force) if out is not None else None
    hull = ReferenceHull(cache=cache, scale=scale, progress=progress,
                         ternary_oxidation=ternary_oxidation, intermetallics=intermetallics)
    relax_kw = {"fmax": fmax, "steps": steps, "fix_symmetry": fix_symmetry}
    parsed: list[Structure | None] = []
    rows: list[dict] = []
    for i, cif in enumerate(table["cif"]):
        row = {"index": i, **{f"input_{k}": table[k].iloc[i] for k in _KEEP if k in table}}
        try:
            parsed.append(_parse(cif))
            row["formula"] = parsed[-1].composition.reduced_formula
        except ValueError as e:
            parsed.append(None)
            row.update(status="failed", failure=str(e)[:300], sun=False, time_s=0.0)
        rows.append(row)
    systems = {chemsys(el.symbol for el in s.composition.elements) for s in parsed if s}
    with Workers(workers) as pool:
        hull_jobs = submit_hull(hull, systems, pool)
        relaxations = submit_relaxations(parsed, relax_kw, pool)
        hull_report = wait_hull(hull_jobs, progress)
        unique = UniqueTracker()
        for i, job in enumerate(tqdm(relaxations, desc="screening", disable=not progress)):
            if job is None:
                continue
            t = time.perf_counter()
            try:
                result, seconds = job.result()
            except Exception:  # the pool broke (a worker died): relax it here instead
                result, seconds = relax_task(parsed[i], relax_kw)
            row = rows[i]
            try:
                if isinstance(result, str):
                    raise ValueError(result)
                row.update(_place(i, result, hull, unique), relax_s=round(seconds, 3),
                           status="ok", failure="")
            except Exception as e:  # a failed candidate is a row with its reason, never a crash
                row.update(status="failed", failure=str(e)[:300], sun=False)
            row["time_s"] = round(seconds + time.perf_counter() - t, 3)
    result = pd.DataFrame(rows)
    if out_dir is not None:
        result.to_csv(out_dir / "screened.csv", index=False)
        summary = summarize(result, time.perf_counter() - t0, scale)
        summary["cpu_seconds_total"] = round(_cpu_seconds() - c0, 1)
        summary["workers"] = pool.n
        summary["hull_build"] = {"systems": len(systems), **hull_report}
        summary["hull_options"] = {k: v for k, v in hull.options().items()
                                   if k not in ("cache", "scale")}  # scale: "hull_scale"
        if plots:
            summary["plots"] = plot_hulls(result, hull, out_dir)
        (out_dir / "screen_summary.json").write_text(json.dumps(summary, indent=1, default=str))
        _write_report(out_dir, result, summary, time.perf_counter() - t0)
    return result


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished worker processes."""
    try:
        import resource

        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + kids.ru_utime + kids.ru_stime
    except ImportError:  # not POSIX: this process only
        return time.process_time()


# the columns of screened.csv the run report shows (numbers and flags), after the candidate's
_REPORTED = ("e_hull", "e_form", "energy_per_atom", "volume_change", "max_force", "converged",
             "symmetry_kept", "stable", "unique", "novel", "sun", "status", "failure")


SCREEN_FOLDER = "screen"  # a sampling run's screen, inside its run directory
_RUN_SUMMARY_KEYS = ("n_input", "n_screened", "n_failed", "n_stable", "n_unique", "n_novel",
                     "n_sun", "sun_rate", "n_decomposes_to_element", "e_hull_min",
                     "seconds_total", "estimate")


def screen_run(run_dir: str | os.PathLike, options: dict | None = None, progress: bool = True
               ) -> dict:
    """Screen the kept candidates (samples.csv) of a finished run into RUN_DIR/screen (replacing
    an earlier screen there) and return the counts a run's summary.json records under "screen".
    `options`: keyword arguments of `screen` (cache, scale, fix_symmetry, fmax, steps, plots,
    workers, ternary_oxidation, intermetallics)."""
    run_dir = Path(run_dir)
    options = dict(options or {})
    unknown = set(options) - {"cache", "scale", "fix_symmetry", "fmax", "steps", "plots",
                              "workers", "ternary_oxidation", "intermetallics"}
    if unknown:
        raise ValueError(f"unknown screen options: {', '.join(sorted(unknown))}")
    out = run_dir / SCREEN_FOLDER
    screen(run_dir, out, force=True, progress=progress, **options)
    summary = json.loads((out / "screen_summary.json").read_text())
    return {"folder": SCREEN_FOLDER, "options": {k: str(v) if k == "cache" else v
                                                 for k, v in options.items()},
            **{k: summary.get(k) for k in _RUN_SUMMARY_KEYS},
            "calibration_e_hull_mae_ev_per_atom": CALIBRATION["e_hull_mae_ev_per_atom"]}


def _write_report(out: Path, result: pd.DataFrame, summary: dict, seconds: float) -> None:
    """report.html of a screen (`cfmc.report`), from a samples.csv view of the relaxed
    candidates and a summary.json of the screen."""
    from cfmc import runio
    from cfmc.run import write_report_safely

    view = pd.DataFrame({
        "rank": result["index"],
        "chain": result.get("input_chain", result["index"]),
        "formula": result.get("formula", result.get("input_formula")),
        "spacegroup": result.get("spacegroup_after", result.get("input_spacegroup")),
        **{k: result[k] for k in _REPORTED if k in result},
        "cif": result.get("relaxed_cif", pd.Series([""] * len(result))),
    })
    runio.write_table(out, "samples.csv", view)
    runio.write_summary(out, {"command": "screen", "status": "complete", "seconds": seconds,
                              "settings": {"hull_scale": summary.get("hull_scale")}, **summary})
    write_report_safely(out)


def summarize(result: pd.DataFrame, seconds: float, scale: str = "potential") -> dict:
    """Counts, S.U.N. rate, failures with reasons, timings and the estimate's label."""
    ok = result[result["status"] == "ok"] if "status" in result else result.iloc[:0]
    n = len(result)
    failures = result[result["status"] != "ok"]
    kinds = Counter(str(f).split(":")[0] for f in failures["failure"])
    n_sun = int(ok["sun"].sum()) if len(ok) else 0
    return {
        "estimate": "E_hull is a machine-learned estimate (CHGNet energies, elemental references "
                    "fitted to MP formation energies, offline reference hull), not DFT",
        "calibration": CALIBRATION,
        "hull_scale": scale,
        "stable_threshold_ev_per_atom": STABLE_THRESHOLD,
        "n_input": n,
        "n_screened": len(ok),
        "n_failed": len(failures),
        "failures_by_kind": dict(kinds),
        "failures": [{"index": int(r.index), "reason": r.failure} for r in failures.itertuples()],
        "n_stable": int(ok["stable"].sum()) if len(ok) else 0,
        "n_unique": int(ok["unique"].sum()) if len(ok) else 0,
        "n_novel": int(ok["novel"].sum()) if len(ok) else 0,
        "n_sun": n_sun,
        "sun_rate": n_sun / n if n else float("nan"),
        "n_decomposes_to_element": int(ok["decomposes_to_element"].sum()) if len(ok) else 0,
        "e_hull_min": float(ok["e_hull"].min()) if len(ok) else None,
        "e_hull_median": float(ok["e_hull"].median()) if len(ok) else None,
        "relax_converged": int(ok["converged"].sum()) if len(ok) else 0,
        "symmetry_kept": int(ok["symmetry_kept"].sum()) if len(ok) else 0,
        "seconds_total": round(seconds, 1),
        "seconds_per_candidate_median": float(np.median(result["time_s"])) if n else None,
    }


def plot_hulls(result: pd.DataFrame, hull: ReferenceHull, out: Path, limit: int = 20
               ) -> list[str]:
    """PNG hull plots (pymatgen PDPlotter) of the candidates' systems of at most three elements,
    each with its candidates added; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pymatgen.analysis.phase_diagram import PDEntry, PDPlotter, PhaseDiagram

    ok = result[(result["status"] == "ok")] if "chemsys" in result else result.iloc[:0]
    files = []
    for system, group in ok.groupby("chemsys"):
        if system.count("-") > 2 or len(files) >= limit:
            continue
        try:
            base = hull.phase_diagram(system)
            cands = [PDEntry(Composition(f), e * Composition(f).num_atoms, name=f"cand {i}")
                     for f, e, i in zip(group["formula"], group["e_form"], group["index"],
                                        strict=True)]
            pd_all = PhaseDiagram(list(base.all_entries) + cands)
            ax = PDPlotter(pd_all, show_unstable=0.5, backend="matplotlib").get_plot()
            name = f"hull_{system}.png"
            ax.figure.savefig(out / name, dpi=120, bbox_inches="tight")
            plt.close(ax.figure)
            files.append(name)
        except Exception:  # a plot is a convenience; its failure never fails the screen
            plt.close("all")
    return files
