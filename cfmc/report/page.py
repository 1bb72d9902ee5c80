"""The HTML of the report: sections for what was asked, convergence, design plots and the
candidate table, assembled from a RunDir. One self-contained string: inline CSS and JS from
`static/`, images as base64 data URIs, nothing fetched."""

from __future__ import annotations

import base64
import html
import math
import re
from functools import cache
from importlib import resources
from typing import Any

from cfmc.report import figures
from cfmc.report.rundir import CONVERGENCE_PLOTS, DESIGN_PLOTS, KNOWN_PLOTS, RunDir, number

# summary.json keys shown in their own sections; the rest go to "More from summary.json"
SHOWN_KEYS = {
    "command", "status", "template", "targets", "settings", "seed", "seconds", "versions",
    "convergence", "kernels", "kernels_burn_in", "swap_rates", "swap_acceptance", "temperatures",
    "ess_per_second", "kept", "distinct_formulas", "draws", "columns", "conditioners",
    "predictor_failures",
}
# candidate columns shown first, in this order; others follow in the CSV's order
FIRST_COLUMNS = ("rank", "index", "formula", "spacegroup", "string", "log_posterior", "log_prior",
                 "log_likelihood", "logp", "chain")
HIDDEN_COLUMNS = {"cif"}
ELEMENT = re.compile(r"[A-Z][a-z]?")


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


@cache
def _static(name: str) -> str:
    return resources.files("cfmc.report").joinpath("static", name).read_text()


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def fmt(x: Any, digits: int = 3) -> str:
    """A number for people: thousands separators for large values, fixed decimals otherwise,
    an en dash for none."""
    if isinstance(x, bool):
        return "yes" if x else "no"
    v = number(x)
    if not math.isfinite(v):
        return "\u2013" if math.isnan(v) else ("\u221e" if v > 0 else "\u2212\u221e")
    if float(v).is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    if digits == 0:
        return f"{v:,.0f}"
    if abs(v) >= 1e5 or abs(v) < 10 ** -digits:
        return f"{v:.{digits}g}"
    if abs(v) >= 100:
        return f"{v:,.1f}"
    return f"{v:.{digits}f}"


def _value(x: Any) -> str:
    """A settings value as HTML: lists joined, dicts as k=v, None as a dash."""
    if x is None:
        return "\u2013"
    if isinstance(x, int) and not isinstance(x, bool):
        return esc(x)  # seeds and counts: no thousands separators
    if isinstance(x, bool | float):
        return esc(fmt(x))
    if isinstance(x, list | tuple):
        return ", ".join(_value(v) for v in x) if x else "\u2013"
    if isinstance(x, dict):
        return "; ".join(f"{esc(k)}={_value(v)}" for k, v in x.items()) if x else "\u2013"
    return f"<code>{esc(x)}</code>"


def _kv_table(items: dict[str, Any], cls: str = "kv") -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{_value(v)}</td></tr>" for k, v in items.items())
    return f'<table class="{cls}">{rows}</table>' if rows else ""


def _kv_grid(items: dict[str, Any]) -> str:
    """Many short key/value pairs in columns (the run settings)."""
    cells = "".join(f"<div><dt>{esc(k)}</dt><dd>{_value(v)}</dd></div>" for k, v in items.items())
    return f'<dl class="grid">{cells}</dl>' if cells else ""


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        elif isinstance(v, list) and len(v) > 12:
            out[key] = f"[{len(v)} values]"
        else:
            out[key] = v
    return out


def _card(label: str, value: str, note: str = "", cls: str = "") -> str:
    note_html = f'<div class="note">{esc(note)}</div>' if note else ""
    return (f'<div class="card {cls}"><div class="label">{esc(label)}</div>'
            f'<div class="value">{value}</div>{note_html}</div>')


def _figure(run: RunDir, name: str) -> str:
    uri = data_uri(run.plots[name].read_bytes(), "image/png")
    caption = KNOWN_PLOTS.get(name, name)
    return (f'<figure><img src="{uri}" alt="{esc(name)}"><figcaption><b>{esc(name)}</b> '
            f"\u2014 {esc(caption)}</figcaption></figure>")


# ---------------------------------------------------------------------------- sections


def headline(run: RunDir, rows: list[figures.Scalar]) -> str:
    s = run.summary
    status = str(s.get("status", "unknown"))
    cards = [_card("status", esc(status), cls="good" if status == "complete" else "warn")]
    if run.samples is not None:
        n = len(run.samples)
        distinct = s.get("distinct_formulas")
        note = f"{distinct} distinct formulas" if isinstance(distinct, int) else ""
        cards.append(_card("candidates", esc(fmt(n)), note))
    seconds = number(s.get("seconds"))
    if math.isfinite(seconds):
        draws = s.get("draws")
        cards.append(_card("run time", f"{esc(fmt(seconds, 1))} s",
                           f"{draws} draws kept" if isinstance(draws, int) else ""))
    r = figures.worst(rows, "rhat", largest=True)
    if r is not None:
        bad = r.rhat > figures.RHAT_LIMIT
        cards.append(_card("R-hat max", esc(f"{r.rhat:.3f}"), f"{r.name}; target \u2264 "
                           f"{figures.RHAT_LIMIT}", cls="bad" if bad else "good"))
    elif rows:
        cards.append(_card("R-hat max", "\u2013", "not defined for these draws"))
    e = figures.worst(rows, "ess_bulk", largest=False)
    if e is not None:
        cards.append(_card("bulk ESS min", esc(fmt(e.ess_bulk, 0)), e.name))
    eps, how = figures.headline_ess_per_second(s, rows)
    if math.isfinite(eps):
        cards.append(_card("ESS / s", esc(fmt(eps, 2)), how))
    acc = figures.kernels(s)
    lines = [f"<span>{esc(k)}</span> <b>{esc(fmt(v['sampling']['acceptance'], 2))}</b>"
             for k, v in acc.items() if "sampling" in v]
    if lines:
        cards.append(_card("acceptance", "<br>".join(lines), "per kernel, after burn-in",
                           cls="list"))
    return f'<section class="cards">{"".join(cards)}</section>'


def asked(run: RunDir) -> str:
    s = run.summary
    top: dict[str, Any] = {}
    for key in ("command", "template", "conditioners", "targets", "seed", "status", "draws",
                "kept", "distinct_formulas", "predictor_failures"):
        if key in s and not (key == "template" and isinstance(s.get("settings"), dict)
                             and "template" in s["settings"]):  # already in the settings
            top[key] = s[key]
    parts = ['<section><h2>What was asked</h2><div class="asked">', f"<div>{_kv_table(top)}</div>"]
    settings = s.get("settings")
    if isinstance(settings, dict) and settings:
        parts.append(f"<div><h3>Settings</h3>{_kv_grid(settings)}</div>")
    parts.append("</div>")
    versions = s.get("versions")
    if isinstance(versions, dict) and versions:
        chips = "".join(f'<span class="chip">{esc(k)} {esc(v)}</span>' for k, v in versions.items())
        parts.append(f'<p class="versions">{chips}</p>')
    parts.append("</section>")
    return "".join(parts)


def _stationary_note(summary: dict) -> str:
    """What the log posterior's R-hat means: converged but short chains, or not converged."""
    conv = summary.get("convergence")
    entry = conv.get("log_posterior") if isinstance(conv, dict) else None
    if not isinstance(entry, dict):
        return ""
    rhat, rhat_eq, tau, need = (figures.number(entry.get(k)) for k in (
        "rhat", "rhat_if_stationary", "autocorrelation_time", "draws_for_rhat_1.01"))
    if not all(isinstance(x, float) and math.isfinite(x) for x in (rhat, rhat_eq, tau, need)):
        return ""
    verdict = ("about what chains at equilibrium show: they are converged but short"
               if rhat <= rhat_eq + 0.5 * (rhat_eq - 1.0) + 0.005
               else "well above what chains at equilibrium show: they have not converged yet")
    return (f'<p class="note">Log posterior: autocorrelation time {tau:.1f} draws; R-hat '
            f"{rhat:.3f} is {verdict} (R-hat {rhat_eq:.3f} expected at equilibrium). About "
            f"{need:.0f} draws per chain would bring equilibrium chains to R-hat 1.01.</p>")


def convergence(run: RunDir, rows: list[figures.Scalar]) -> str:
    s = run.summary
    parts = ["<section><h2>Convergence</h2>"]
    if rows:
        computed = any(r.ess_per_second_computed for r in rows)
        head = ("<tr><th>traced scalar</th><th>R-hat</th><th>bulk ESS</th><th>tail ESS</th>"
                f"<th>ESS / s{'*' if computed else ''}</th></tr>")
        body = []
        for r in rows:
            flag = ' class="bad"' if math.isfinite(r.rhat) and r.rhat > figures.RHAT_LIMIT else ""
            star = "*" if r.ess_per_second_computed else ""
            body.append(f"<tr><td>{esc(r.name)}</td><td{flag}>{esc(fmt(r.rhat))}</td>"
                        f"<td>{esc(fmt(r.ess_bulk, 0))}</td><td>{esc(fmt(r.ess_tail, 0))}</td>"
                        f"<td>{esc(fmt(r.ess_per_second, 2))}{star}</td></tr>")
        note = ("<p class=\"note\">* bulk ESS divided by the run's wall time (burn-in and "
                "compilation included), computed for this report.</p>") if computed else ""
        note += _stationary_note(s)
        parts.append(f'<div class="two"><div><h3>R-hat and effective sample size</h3>'
                     f'<table class="num">{head}{"".join(body)}</table>{note}</div>')
    else:
        parts.append('<div class="two"><div><p class="note">No convergence diagnostics in '
                     "summary.json.</p></div>")
    parts.append(f"<div>{_kernel_table(s)}{_swap_table(s)}</div></div>")
    plots = [_figure(run, n) for n in CONVERGENCE_PLOTS if n in run.plots]
    if plots:
        parts.append(f'<div class="figures">{"".join(plots)}</div>')
    parts.append("</section>")
    return "".join(parts)


def _kernel_table(summary: dict[str, Any]) -> str:
    acc = figures.kernels(summary)
    if not acc:
        return ""
    phases = [p for p in ("burn-in", "sampling") if any(p in v for v in acc.values())]
    head = "<tr><th>kernel</th>" + "".join(
        f"<th>{p} proposed</th><th>{p} acceptance</th>" for p in phases) + "</tr>"
    body = []
    for name, v in acc.items():
        cells = "".join(
            f"<td>{esc(fmt(v.get(p, {}).get('proposed', math.nan)))}</td>"
            f"<td>{esc(fmt(v.get(p, {}).get('acceptance', math.nan), 3))}</td>" for p in phases)
        body.append(f"<tr><td>{esc(name)}</td>{cells}</tr>")
    return f'<h3>Acceptance per kernel</h3><table class="num">{head}{"".join(body)}</table>'


def _swap_table(summary: dict[str, Any]) -> str:
    rates = figures.swap_rates(summary)
    if not rates:
        return ""
    body = "".join(f"<tr><td>{esc(k)}</td><td>{esc(fmt(v))}</td></tr>" for k, v in rates)
    return (f'<h3>Replica swap rates</h3><table class="num"><tr><th>pair</th><th>rate</th></tr>'
            f"{body}</table>")


def design(run: RunDir) -> str:
    plots = [_figure(run, n) for n in DESIGN_PLOTS if n in run.plots]
    metrics = run.summary.get("metrics")
    table = _kv_table(_flatten(metrics)) if isinstance(metrics, dict) else ""
    if not plots and not table:
        return ""
    metrics_html = f"<h3>Distance to target</h3>{table}" if table else ""
    return (f"<section><h2>Conditioned against prior samples</h2>"
            f'<div class="figures">{"".join(plots)}</div>{metrics_html}</section>')


def other_plots(run: RunDir) -> str:
    names = [n for n in run.plots if n not in KNOWN_PLOTS]
    if not names:
        return ""
    return (f'<section><h2>Other plots</h2><div class="figures">'
            f'{"".join(_figure(run, n) for n in names)}</div></section>')


def more(run: RunDir) -> str:
    rest = {k: v for k, v in run.summary.items() if k not in SHOWN_KEYS}
    if not rest and not run.problems:
        return ""
    problems = "".join(f'<p class="warn">{esc(p)}</p>' for p in run.problems)
    return (f"<section>{problems}<details><summary>More from summary.json</summary>"
            f"{_kv_table(_flatten(rest))}</details></section>")


# ---------------------------------------------------------------------------- candidates


@cache
def _spacegroup_symbol(number_: int) -> str:
    from pymatgen.symmetry.groups import SpaceGroup

    try:
        return SpaceGroup.from_int_number(number_).symbol
    except (ValueError, KeyError):
        return ""


def _formula_html(formula: str) -> str:
    """Ba2TiO4 -> Ba<sub>2</sub>TiO<sub>4</sub>."""
    parts = re.split(r"(\d+(?:\.\d+)?)", formula)
    return "".join(f"<sub>{esc(p)}</sub>" if i % 2 else esc(p) for i, p in enumerate(parts))


def _column_kinds(df) -> dict[str, str]:
    """column -> "num", "bool" or "text" (how it is shown and sorted)."""
    import pandas as pd

    kinds = {}
    for c in df.columns:
        col = df[c]
        if pd.api.types.is_bool_dtype(col):
            kinds[c] = "bool"
        elif pd.api.types.is_numeric_dtype(col):
            kinds[c] = "num"
        elif set(col.dropna().astype(str).unique()) <= {"True", "False"} and col.notna().any():
            kinds[c] = "bool"
        else:
            kinds[c] = "text"
    return kinds


def _text(v: Any) -> str:
    """A table value as text; blank for pandas' NaN."""
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _cell(col: str, kind: str, v: Any) -> str:
    """One table cell; `data-v` holds the value the table sorts by."""
    text = _text(v)
    if kind == "bool":
        if not text:
            return '<td data-v=""></td>'
        word = "yes" if text == "True" else "no"
        return f'<td data-v="{int(word == "yes")}" class="{word}">{word}</td>'
    if kind == "num":
        if not text:
            return '<td data-v="">\u2013</td>'
        whole = float(v).is_integer()
        if col == "spacegroup" and whole:
            return (f'<td data-v="{int(v)}">{int(v)} <span class="sym">'
                    f"{esc(_spacegroup_symbol(int(v)))}</span></td>")
        shown = str(int(v)) if whole and col in ("rank", "index", "chain") else fmt(v)
        return f'<td data-v="{esc(repr(float(v)))}">{esc(shown)}</td>'
    if col == "formula":
        return f'<td data-v="{esc(text)}" class="formula">{_formula_html(text)}</td>'
    if col == "string":
        return f'<td class="wyckoff"><code>{esc(text)}</code></td>'
    if col == "error":
        return f'<td class="error">{esc(text)}</td>'
    return f"<td>{esc(text)}</td>"


def _picture(cif: str, formula: str, draw: bool, painter) -> str:
    """The cell with the picture of a candidate's conventional cell, or why there is none."""
    from cfmc.report.cells import structure_arrays

    if not cif:
        return '<td class="pic"><span class="nopic">no structure</span></td>'
    if not draw:
        return '<td class="pic"><span class="nopic">not drawn</span></td>'
    try:
        uri = data_uri(painter().paint(*structure_arrays(cif)), "image/png")
    except Exception:  # a CIF no reader can read gets no picture, the page still renders
        return '<td class="pic"><span class="nopic">unreadable CIF</span></td>'
    return (f'<td class="pic"><img src="{uri}" width="130" height="130" '
            f'alt="conventional cell of {esc(formula)}"></td>')


def _cif_links(cif: str, path, index: int) -> str:
    """A link to the CIF file in cif/ (when it is there) and a download of the CIF text itself,
    which works when the page travels without its folder."""
    links = []
    if path is not None:
        links.append(f'<a href="cif/{esc(path.name)}" title="{esc(path.name)}">CIF</a>')
    if cif:
        name = path.name if path is not None else f"candidate_{index:04d}.cif"
        links.append(f'<a class="dl" download="{esc(name)}" title="download the CIF" '
                     f'href="{data_uri(cif.encode(), "chemical/x-cif")}">\u2913</a>')
    return f'<td class="cif">{" ".join(links) or chr(0x2013)}</td>'


def candidates(run: RunDir, max_pictures: int, painter_factory) -> str:
    """The candidate table of samples.csv: sortable headers, element filter, cell pictures."""
    df = run.samples
    if df is None:
        return ""
    kinds = _column_kinds(df)
    cols = [c for c in FIRST_COLUMNS if c in df.columns]
    cols += [c for c in df.columns if c not in cols and c not in HIDDEN_COLUMNS]
    if "error" in cols and df["error"].isna().all():
        cols.remove("error")
    described = run.summary.get("columns") if isinstance(run.summary.get("columns"), dict) else {}
    heads = ['<th class="pic">cell</th>']
    for c in cols:
        kind = "text" if kinds[c] == "text" else "num"
        tip = f' title="{esc(described[c])}"' if c in described else ""
        heads.append(f'<th data-col="{esc(c)}" data-type="{kind}"{tip}>{esc(c)}</th>')
    heads.append("<th>CIF</th>")

    painter = None

    def shared_painter():  # one figure for the whole table, made on first use
        nonlocal painter
        painter = painter or painter_factory()
        return painter

    rows = []
    for i, row in enumerate(df.to_dict("records")):
        cif_path = run.cif_file(row)
        cif = _text(row.get("cif"))
        if not cif and cif_path is not None:
            cif = cif_path.read_text()
        formula = _text(row.get("formula"))
        cells = [_picture(cif, formula, i < max_pictures, shared_painter)]
        cells += [_cell(c, kinds[c], row[c]) for c in cols]
        cells.append(_cif_links(cif, cif_path, i))
        elements = " ".join(sorted(set(ELEMENT.findall(formula))))
        rows.append(f'<tr data-elements="{esc(elements)}">{"".join(cells)}</tr>')
    n = len(rows)
    note = f" Pictures of the first {max_pictures} rows only." if n > max_pictures else ""
    return (
        '<section><h2>Candidates</h2><div class="toolbar">'
        '<input type="search" class="element-filter" placeholder="filter by elements, e.g. Ba O"'
        ' aria-label="filter by elements">'
        f'<span class="count" data-total="{n}">{n} of {n} shown</span>'
        f'<span class="note">Click a header to sort; hover a cell to enlarge it.{note}</span>'
        '</div><div class="scroll"><table class="candidates">'
        f'<thead><tr>{"".join(heads)}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
        "</section>"
    )


# ---------------------------------------------------------------------------- page


def page(run: RunDir, max_pictures: int, painter_factory) -> str:
    """The whole HTML document."""
    s = run.summary
    rows = figures.scalars(s)
    command = str(s.get("command", "run"))
    subject = s.get("template") or s.get("targets") or ""
    if isinstance(subject, dict):
        subject = ", ".join(f"{k} = {v}" for k, v in subject.items())
    title = f"cfmc {command} \u2014 {run.path.resolve().name}"
    body = [
        f'<header><h1>{esc(title)}</h1>',
        f'<p class="subject"><code>{esc(subject)}</code></p>' if subject else "",
        "</header>",
        headline(run, rows),
        asked(run),
        convergence(run, rows),
        design(run),
        candidates(run, max_pictures, painter_factory),
        other_plots(run),
        more(run),
        f'<footer>Built by <code>cfmc report</code> from the files in '
        f"<code>{esc(run.path)}</code>.</footer>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{esc(title)}</title><link rel="icon" href="data:,">'
        f"<style>{_static('report.css')}</style></head>\n<body>"
        f'<div class="cfmc-report">{"".join(body)}</div>\n'
        f"<script>{_static('report.js')}</script></body></html>\n"
    )

