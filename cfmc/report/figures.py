"""The headline numbers of a run from its summary.json: R-hat, ESS, ESS per second, acceptance per
kernel. Pure functions of the summary dict, tolerant of missing keys and JSON's null/"inf"."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cfmc.report.rundir import number

RHAT_LIMIT = 1.01  # above this a scalar is flagged as not converged (Vehtari et al. 2021)


@dataclass(frozen=True)
class Scalar:
    """Convergence of one traced scalar. `ess_per_second_computed`: bulk ESS / run seconds
    worked out here because the summary did not give it."""

    name: str
    rhat: float
    ess_bulk: float
    ess_tail: float
    ess_per_second: float
    ess_per_second_computed: bool


def _finite(x: float) -> bool:
    return isinstance(x, float) and math.isfinite(x)


def scalars(summary: dict[str, Any]) -> list[Scalar]:
    """One entry per traced scalar of summary["convergence"] (see cfmc.diagnostics.convergence)."""
    conv = summary.get("convergence")
    if not isinstance(conv, dict):
        return []
    seconds = number(summary.get("seconds"))
    given = summary.get("ess_per_second")
    out = []
    for name, entry in conv.items():
        if not isinstance(entry, dict):
            continue
        bulk = number(entry.get("ess_bulk"))
        eps = number(entry.get("ess_per_second", entry.get("ess_bulk_per_second")))
        if not _finite(eps) and isinstance(given, dict):
            eps = number(given.get(name))
        computed = False
        if not _finite(eps) and _finite(bulk) and _finite(seconds) and seconds > 0:
            eps, computed = bulk / seconds, True
        out.append(Scalar(str(name), number(entry.get("rhat")), bulk,
                          number(entry.get("ess_tail")), eps, computed))
    return out


def worst(rows: list[Scalar], attr: str, largest: bool) -> Scalar | None:
    """The scalar with the largest (or smallest) finite value of `attr`, None when none has one."""
    finite = [r for r in rows if _finite(getattr(r, attr))]
    if not finite:
        return None
    pick = max if largest else min
    return pick(finite, key=lambda r: getattr(r, attr))


def headline_ess_per_second(summary: dict[str, Any], rows: list[Scalar]) -> tuple[float, str]:
    """ESS per second for the headline and how it was obtained: the summary's own single number,
    else the smallest per scalar (given or computed as bulk ESS / run seconds)."""
    given = number(summary.get("ess_per_second"))
    if _finite(given):
        return given, "from summary.json"
    row = worst(rows, "ess_per_second", largest=False)
    if row is None:
        return math.nan, ""
    how = "min bulk ESS / run seconds" if row.ess_per_second_computed else "min over scalars"
    return row.ess_per_second, f"{how} ({row.name})"


def kernels(summary: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """kernel -> phase ("burn-in", "sampling") -> proposed, accepted, acceptance."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for phase, key in (("burn-in", "kernels_burn_in"), ("sampling", "kernels")):
        block = summary.get(key)
        if not isinstance(block, dict):
            continue
        for name, d in block.items():
            if not isinstance(d, dict):
                d = {"acceptance": d}  # a bare rate
            proposed, accepted = number(d.get("proposed")), number(d.get("accepted"))
            rate = number(d.get("acceptance"))
            if not _finite(rate) and _finite(proposed) and proposed > 0 and _finite(accepted):
                rate = accepted / proposed
            out.setdefault(str(name), {})[phase] = {
                "proposed": proposed, "accepted": accepted, "acceptance": rate,
            }
    return out


def swap_rates(summary: dict[str, Any]) -> list[tuple[str, float]]:
    """(label, rate) pairs of the replica-exchange swaps, when the run tempered: a list is read as
    the rates between neighbouring temperatures, a dict as label -> rate."""
    rates = summary.get("swap_rates", summary.get("swap_acceptance"))
    temps = summary.get("temperatures")
    if isinstance(rates, dict):
        return [(str(k), number(v)) for k, v in rates.items()]
    if isinstance(rates, list):
        out = []
        for i, v in enumerate(rates):
            if isinstance(temps, list) and i + 1 < len(temps):
                label = f"T {number(temps[i]):g} \u2194 {number(temps[i + 1]):g}"
            else:
                label = f"replica {i} \u2194 {i + 1}"
            out.append((label, number(v)))
        return out
    if rates is not None and _finite(number(rates)):
        return [("all swaps", number(rates))]
    return []
