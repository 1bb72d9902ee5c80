"""The run report: a small real infill run rendered to report.html and checked in headless Chromium
(images decoded, sorting, element filter, no console error); the page for run directories that
lack optional files or keys; `cfmc report` on bad input."""

from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from cfmc.cli import main
from cfmc.report import figures, render_report, write_report
from cfmc.report.cells import CellPainter, boundary_images

TEMPLATE = "225-a-[?]-0-0-0-b-[?]-1/2-1/2-c-[?]-1/4-1/4-e-[?]-[?]-0-0"
DIFFER = ["--differ", "0,1", "--differ", "0,2", "--differ", "0,3", "--differ", "1,2",
          "--differ", "1,3", "--differ", "2,3"]
IMG = re.compile(r"<img [^>]*>")


@pytest.fixture(scope="module")
def run_dir(prior_dir, tmp_path_factory):
    """A real (tiny) infill run directory, its report written."""
    out = tmp_path_factory.mktemp("report") / "run"
    args = ["infill", TEMPLATE, *DIFFER, "--elements", "Ca", "Sr", "Ba", "Ti", "Zr", "O", "F",
            "--chains", "8", "--sweeps", "6", "--burn-in", "2", "--top", "5", "--seed", "1",
            "--prior", str(prior_dir), "--no-progress", "--out", str(out)]
    assert main(args) == 0
    assert main(["report", str(out)]) == 0
    return out


@pytest.mark.slow
def test_report_of_a_real_run(run_dir):
    html = (run_dir / "report.html").read_text()
    df = pd.read_csv(run_dir / "samples.csv")
    assert len(df) >= 2
    # one picture per candidate with a structure, plus the plots; all embedded
    pictures = [t for t in IMG.findall(html) if "conventional cell" in t]
    assert len(pictures) == int((df["cif"].fillna("") != "").sum())
    assert all('src="data:image/png;base64,' in t for t in IMG.findall(html))
    assert len(IMG.findall(html)) == len(pictures) + 2  # trace.png, burn_in.png
    # self-contained: nothing fetched from elsewhere
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script src" not in html and 'rel="stylesheet"' not in html
    for text in ("cfmc infill", "What was asked", "Convergence", "Acceptance per kernel",
                 "Candidates", "R-hat max", "ESS / s"):
        assert text in html
    for name in df["formula"]:
        assert f'data-elements="{" ".join(sorted(re.findall(r"[A-Z][a-z]?", name)))}"' in html
    # CIF links point at the files runio wrote
    for link in re.findall(r'href="cif/([^"]+)"', html):
        assert (run_dir / "cif" / link).is_file()
    assert not list(run_dir.glob(".report.html.*"))  # the temporary file was replaced


@pytest.mark.slow
def test_render_equals_written(run_dir, tmp_path):
    out = write_report(run_dir, tmp_path / "copy.html")
    assert out.read_text() == render_report(run_dir)


def _minimal_run(tmp_path, summary, samples=None):
    path = tmp_path / "run"
    path.mkdir()
    (path / "summary.json").write_text(json.dumps(summary))
    if samples is not None:
        samples.to_csv(path / "samples.csv", index=False)
    return path


@pytest.mark.slow
def test_missing_optional_files(run_dir, tmp_path):
    """Only summary.json: the page still renders, without the parts it has no data for."""
    html = render_report(_minimal_run(tmp_path, {}))
    assert "<html" in html and "cfmc run" in html
    assert "Candidates" not in html and "<img" not in html
    assert "No convergence diagnostics" in html

    # a copied real run without plots, trace, CIF folder and most summary keys
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    for name in ("trace.png", "burn_in.png", "trace.nc", "report.html"):
        (copy / name).unlink()
    shutil.rmtree(copy / "cif")
    summary = json.loads((copy / "summary.json").read_text())
    for key in ("convergence", "kernels", "kernels_burn_in", "settings", "versions", "seconds"):
        summary.pop(key)
    (copy / "summary.json").write_text(json.dumps(summary))
    html = render_report(copy)
    assert 'href="cif/' not in html  # no file to link, the data-URI download remains
    assert "data:chemical/x-cif;base64," in html
    assert "Acceptance per kernel" not in html
    assert len([t for t in IMG.findall(html) if "conventional cell" in t]) >= 1


@pytest.mark.slow
def test_design_sections(run_dir, tmp_path):
    """A design run's histograms and distance-to-target metrics; a plot no one knows about."""
    copy = tmp_path / "design"
    shutil.copytree(run_dir, copy)
    for name in ("properties.png", "log_prior.png", "extra.png"):
        shutil.copy(copy / "burn_in.png", copy / name)
    summary = json.loads((copy / "summary.json").read_text())
    summary.update(command="design", targets={"band_gap": 2.0},
                   metrics={"band_gap": {"prior": 1.5, "conditioned": 0.25}})
    summary.pop("template", None)  # a design run without a template
    (copy / "summary.json").write_text(json.dumps(summary))
    html = render_report(copy)
    assert "cfmc design" in html and "band_gap = 2.0" in html
    assert "Conditioned against prior samples" in html and "band_gap.conditioned" in html
    for name in ("properties.png", "log_prior.png", "extra.png"):
        assert f'alt="{name}"' in html
    assert html.index('alt="properties.png"') < html.index("Candidates") < html.index(
        'alt="extra.png"')


def test_generic_columns_and_summary_keys(tmp_path):
    """Screening columns (numbers, booleans), rows without a structure, tempering keys, NaN/inf
    in the summary, an R-hat above 1.01."""
    samples = pd.DataFrame({
        "rank": [0, 1, 2], "chain": [4, 2, 7], "formula": ["Ba2TiO4", "SrO", ""],
        "spacegroup": [139, 225, 225], "string": ["s0", "s1", "s2"],
        "log_posterior": [-1.5, -2.0, np.nan], "e_hull": [0.01, 0.25, np.nan],
        "sun": [True, False, False], "cif": ["", "", ""], "error": ["", "", "bad cell"],
    })
    summary = {
        "command": "screen", "status": "interrupted", "seconds": 20.0, "seed": 3,
        "targets": {"band_gap": 2.0},
        "convergence": {"log_posterior": {"rhat": 1.2, "ess_bulk": 45.0, "ess_tail": None},
                        "e": {"rhat": None, "ess_bulk": "inf", "ess_tail": 1.0}},
        "kernels": {"species": {"proposed": 10, "accepted": 4}},
        "swap_rates": [0.3, 0.2], "temperatures": [1.0, 2.0, 4.0],
        "custom": {"nested": {"value": 1}, "long": list(range(100))},
    }
    html = render_report(_minimal_run(tmp_path, summary, samples))
    for col in ("e_hull", "sun", "error", "log_posterior"):
        assert f'data-col="{col}"' in html
    assert 'data-col="cif"' not in html
    assert "bad cell" in html and "no structure" in html and "<img" not in html
    assert 'class="card bad"' in html and "1.200" in html  # R-hat flagged red
    assert 'class="card warn"' in html  # interrupted
    assert "Replica swap rates" in html and "T 1 \u2194 2" in html
    assert "custom.nested.value" in html and "[100 values]" in html
    assert "2.25*" in html  # 45 bulk ESS / 20 s, computed here and marked
    assert "band_gap" in html


def test_figures():
    summary = {"seconds": 10.0, "convergence": {"a": {"rhat": 1.0, "ess_bulk": 50.0},
                                                 "b": {"rhat": 1.3, "ess_bulk": 20.0}}}
    rows = figures.scalars(summary)
    assert figures.worst(rows, "rhat", largest=True).name == "b"
    eps, how = figures.headline_ess_per_second(summary, rows)
    assert eps == pytest.approx(2.0) and "run seconds" in how
    summary["ess_per_second"] = 7.5
    assert figures.headline_ess_per_second(summary, figures.scalars(summary))[0] == 7.5
    summary["ess_per_second"] = {"a": 3.0}
    rows = figures.scalars(summary)
    assert rows[0].ess_per_second == 3.0 and not rows[0].ess_per_second_computed
    assert figures.kernels({"kernels": {"k": {"proposed": 4, "accepted": 1}}})["k"]["sampling"][
        "acceptance"] == 0.25
    assert figures.swap_rates({"swap_rates": {"0-1": 0.5}}) == [("0-1", 0.5)]
    assert math.isnan(figures.headline_ess_per_second({}, [])[0])


def test_cell_picture():
    frac, z = boundary_images(np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.999999, 0.5, 0.0]]),
                              np.array([8, 22, 56]))
    assert (z == 8).sum() == 8 and (z == 22).sum() == 1 and (z == 56).sum() == 4
    assert frac.min() >= 0 and frac.max() <= 1
    png = CellPainter().paint(np.diag([4.0, 4.0, 5.0]), frac, z)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bad_input(tmp_path, capsys):
    cases = [tmp_path / "missing", tmp_path / "empty"]
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "summary.json").write_text("{not json")
    for path in [*cases, broken]:
        assert main(["report", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("cfmc report: error:") and err.count("\n") == 1
        assert "Traceback" not in err
    assert main(["report", str(tmp_path / "empty"), "--max-pictures", "-1"]) == 2


# ---------------------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through its chromedriver (installed by `make test`)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("chromium/chromedriver not installed (`make test` installs Debian's "
                    "chromium and chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1800", "--hide-scrollbars"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=driver_path))
    yield driver
    driver.quit()


def _column(driver, name):
    return driver.execute_script(
        """const t = document.querySelector('table.candidates');
        const i = t.querySelector(`th[data-col="${arguments[0]}"]`).cellIndex;
        return Array.from(t.tBodies[0].rows).map(r => r.cells[i].getAttribute('data-v'));""",
        name)


def _visible(driver):
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('table.candidates tbody tr'))"
        ".filter(r => !r.hidden).map(r => r.getAttribute('data-elements'));")


@pytest.mark.slow
def test_report_in_chromium(run_dir, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get((run_dir / "report.html").as_uri())
    browser.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000

    assert browser.execute_script(
        "return document.querySelector('.cfmc-report').getAttribute('data-ready')") == "1"
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt]);")
    assert len(images) >= 3
    assert all(done and width > 0 for done, width, _ in images), images

    # sorting: one click ascending, a second descending
    header = browser.find_element(By.CSS_SELECTOR, 'th[data-col="log_posterior"]')
    header.click()
    up = [float(v) for v in _column(browser, "log_posterior")]
    assert up == sorted(up) and header.get_attribute("aria-sort") == "ascending"
    header.click()
    down = [float(v) for v in _column(browser, "log_posterior")]
    assert down == sorted(up, reverse=True) and header.get_attribute("aria-sort") == "descending"
    browser.find_element(By.CSS_SELECTOR, 'th[data-col="formula"]').click()
    formulas = _column(browser, "formula")
    assert formulas == sorted(formulas, key=str.lower)

    # the element filter: lower case is fine, every given element must be there
    rows = [set(e.split()) for e in _visible(browser)]
    box = browser.find_element(By.CSS_SELECTOR, "input.element-filter")
    everywhere = set.intersection(*rows)
    some = next((e for r in rows for e in sorted(r) if e not in everywhere), "Xe")
    box.send_keys(some.lower())
    shown = [set(e.split()) for e in _visible(browser)]
    assert shown == [r for r in rows if some in r] and len(shown) < len(rows)
    count = browser.find_element(By.CSS_SELECTOR, ".count").text
    assert count == f"{len(shown)} of {len(rows)} shown"
    if shown:
        pair = sorted(shown[0])[:2]
        box.clear()
        box.send_keys(" ".join(pair))
        assert [set(e.split()) for e in _visible(browser)] == [r for r in rows
                                                             if set(pair) <= r]
    box.clear()
    box.send_keys(" ")  # `clear()` fires no input event; typing a blank does
    assert len(_visible(browser)) == len(rows)

    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
