"""Every kind of report in a real browser (Debian's chromium driven by Playwright): it loads with no
console error and no network request, every plot draws its SVG, a user string holding <script> is
shown as text, and a screenshot of each page is kept in test-artifacts/screenshots/.

`.ci/run` installs chromium when missing and sets INFUSIM_REQUIRE_BROWSER=1, so in CI a missing
browser fails; on a developer machine without it these tests are skipped with that reason."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

import infusim
from infusim.case_format import bundled_cases_dir
from tests.helpers import EXAMPLES

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("INFUSIM_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
HOSTILE = "<script>window.pwned = 1</script> & [bold]"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not Path(CHROMIUM).exists():
    if os.environ.get("INFUSIM_REQUIRE_BROWSER"):
        raise RuntimeError(f"chromium not found at {CHROMIUM} (apt install chromium)")
    pytest.skip("no chromium on this machine (.ci/run installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        found = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield found
        found.close()


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    """One report of each kind; the simulation's scenario name holds a <script> tag."""
    root = tmp_path_factory.mktemp("reports")
    spec = yaml.safe_load((EXAMPLES / "condition-ischemic-heart-failure.yaml").read_text())
    spec["name"] = HOSTILE
    pages = {"simulation": infusim.simulate(infusim.from_dict(spec)).write_report(root / "simulation.html")}
    trial = yaml.safe_load((EXAMPLES / "trial-copd.yaml").read_text())
    trial["name"] = HOSTILE
    trial["trial"]["subgroups"] = [{"covariate": "age_years", "cut": 65}]
    pages["trial"] = infusim.trial(trial, root / "trial", patients=60).write_report(root / "trial.html")
    costed = yaml.safe_load((EXAMPLES / "trial-stroke-economics.yaml").read_text())
    costed["name"] = HOSTILE
    pages["economics"] = infusim.trial(costed, root / "costed", patients=60).write_report(
        root / "economics.html"
    )
    scenario = infusim.load(EXAMPLES / "msc-iv-human.yaml")
    pages["doses"] = infusim.doses(scenario, [1e6, 1e8]).write_report(root / "doses.html")
    ranks = infusim.sensitivity(
        scenario, ["live_cells:lungs@1 h"], method="morris", n=8, parameters=["size*"]
    )
    pages["sensitivity"] = ranks.write_report(root / "sensitivity.html")
    cases = [bundled_cases_dir() / n for n in ("toma2009_rat_ia_muscle_msc", "assis2010_rat_iv_msc_mi_tc99m")]
    pages["validation"] = infusim.validate(cases).write_report(root / "validation.html")
    curve = infusim.power(EXAMPLES / "trial-copd.yaml", [20, 40], replicates=4)
    pages["power"] = curve.write_report(root / "power.html")
    return pages


@pytest.mark.parametrize(
    "kind", ["simulation", "trial", "economics", "doses", "sensitivity", "validation", "power"]
)
def test_report_loads_offline_and_draws_every_plot(browser, reports, kind):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    problems, requests = [], []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(reports[kind].as_uri(), wait_until="load")
    page.wait_for_function(
        "() => { const d = [...document.querySelectorAll('.plotly-graph-div')];"
        " return d.length > 0 && d.every(x => x.querySelector('svg.main-svg')); }",
        timeout=30_000,
    )
    plots = page.locator(".plotly-graph-div").count()
    drawn = page.locator(".plotly-graph-div svg.main-svg >> nth=0").count()
    assert plots >= 1 and drawn == 1
    assert problems == []
    assert [u for u in requests if not u.startswith(("file:", "data:", "about:", "blob:"))] == []
    assert "research tool" in page.inner_text("body")
    ARTIFACTS.joinpath("screenshots").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "screenshots" / f"{kind}.png"), full_page=True)
    if kind == "economics":  # the trial's cost-effectiveness section and its acceptability curve
        assert "Cost-effectiveness (within the trial, GBP)" in page.inner_text("body")
        assert page.locator(".plotly-graph-div").count() >= 2
    if kind == "trial":  # the subgroup table
        assert "Subgroups of the primary comparison" in page.inner_text("body")
    if kind in ("simulation", "trial", "economics"):
        assert page.evaluate("() => window.pwned") is None  # the tag did not run
        assert HOSTILE in page.inner_text("h1")  # it is shown as the text the user wrote
    page.close()


@pytest.fixture(scope="module")
def explorer_url():
    """`infusim explore` on a free local port, stopped after the tests."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    pytest.importorskip("dash", reason="the explorer is the optional extra infusim[app]")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "infusim", "explore", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError(server.stderr.read().decode()) from None
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stderr.close()


def test_explorer_updates_on_a_dose_change_and_names_a_bad_field(browser, explorer_url):
    import infusim

    page = browser.new_page(viewport={"width": 1300, "height": 1000}, accept_downloads=True)
    requests, problems = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(explorer_url)
    page.wait_for_selector("#fate .main-svg", timeout=30_000)
    page.wait_for_function("() => document.querySelector('#note').innerText.includes('lung load')")
    before = page.inner_text("#note")
    first_row = "() => document.querySelector('#risks tbody tr:nth-child(2)').innerText"
    # the treatment's rows by serious risk, largest first; the condition's own (COPD deaths) last
    assert page.evaluate(first_row).startswith("ectopic_growth")
    last_row = "() => document.querySelector('#risks tbody tr:last-child').innerText"
    assert page.evaluate(last_row).startswith("background_death")
    page.fill("#dose", "200000000")
    page.press("#dose", "Enter")
    page.wait_for_function(f"() => document.querySelector('#note').innerText !== {before!r}", timeout=15_000)
    assert page.inner_text("#note") != before  # the lung load moved with the dose (100x)
    # 2e8 MSC/kg: the lung load nears the lethal one of a mouse bolus; lung obstruction leads the risks
    page.wait_for_function(f"() => {first_row[6:]}.startsWith('lung_obstruction')", timeout=15_000)
    ARTIFACTS.joinpath("screenshots").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "screenshots" / "explorer.png"), full_page=True)
    page.click("#run-cohort")
    page.wait_for_function(
        "() => document.querySelector('#cohort .js-plotly-plot').data.length >= 2", timeout=30_000
    )
    with page.expect_download() as download:
        page.click("#download-button")
    text = Path(download.value.path()).read_text()
    assert infusim.from_dict(yaml.safe_load(text)).administration.dose_cells_per_kg == 2e8
    page.fill("#dose", "1000000")  # back inside the COPD trials' doses
    page.press("#dose", "Enter")
    page.fill("#count", "4")  # more infusions than the COPD trials gave: warned on the page
    page.press("#count", "Enter")
    page.wait_for_function(
        "() => document.querySelector('#warnings').innerText.includes('administrations')", timeout=15_000
    )
    page.fill("#count", "1")
    page.press("#count", "Enter")
    page.fill("#dose", "-5")
    page.press("#dose", "Enter")
    page.wait_for_function("() => document.querySelector('#dose-error').innerText.length > 0", timeout=15_000)
    assert "administration.dose" in page.inner_text("#dose-error") and "positive" in page.inner_text(
        "#dose-error"
    )
    page.screenshot(path=str(ARTIFACTS / "screenshots" / "explorer-bad-dose.png"), full_page=True)
    assert [u for u in requests if not u.startswith(explorer_url)] == []
    assert problems == []
    page.close()
