"""`infusim report OUT` redraws the report of every kind of output folder, and refuses a folder whose
scenario no longer reproduces what it holds."""

from __future__ import annotations

import json

import pandas as pd
import yaml

from infusim.case_format import bundled_cases_dir
from tests.cli.test_cli import run
from tests.helpers import EXAMPLES


def _redrawn(folder, name: str = "report.html") -> str:
    """Delete the folder's page, redraw it, and check that no second page was written beside it."""
    (folder / name).unlink(missing_ok=True)
    before = {p.name for p in folder.glob("*.html")}
    result = run("report", str(folder))
    assert result.returncode == 0, result.stderr
    assert {p.name for p in folder.glob("*.html")} == before | {name}
    page = (folder / name).read_text()
    assert "research tool" in page and '<script src="http' not in page and "plotly" in page
    return page


def test_a_simulation_is_redrawn_from_its_scenario_and_checked(tmp_path):
    out = tmp_path / "sim"
    assert (
        run(
            "simulate", str(EXAMPLES / "condition-ischemic-heart-failure.yaml"), "-o", str(out), "-q"
        ).returncode
        == 0
    )
    spec = yaml.safe_load((out / "scenario.yaml").read_text())
    assert spec["condition"]["name"] == "ischemic_heart_failure" and spec["administration"]["dose"].endswith(
        " cells"
    )
    page = _redrawn(out)
    assert "lvef" in page
    # a summary the scenario does not reproduce is refused, one line, nothing written
    summary = json.loads((out / "summary.json").read_text())
    key = next(iter(summary["live_fraction_of_dose"]))
    summary["live_fraction_of_dose"][key]["lungs"] *= 2
    (out / "summary.json").write_text(json.dumps(summary))
    (out / "report.html").unlink()
    result = run("report", str(out))
    assert result.returncode == 2 and result.stderr.startswith("error: OUT:") and "reproduce" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (out / "report.html").exists()


def test_trial_doses_sensitivity_and_validation_folders_are_redrawn(tmp_path):
    trial = tmp_path / "trial"
    assert run("trial", str(EXAMPLES / "trial-copd.yaml"), "-o", str(trial), "-n", "40", "-q").returncode == 0
    assert "Primary comparison" in _redrawn(trial)
    window = tmp_path / "doses"
    assert (
        run("doses", str(EXAMPLES / "msc-iv-human.yaml"), "--doses", "1e6,1e7", "-o", str(window)).returncode
        == 0
    )
    assert "therapeutic window" in _redrawn(window, "doses.html").lower()
    analysis = tmp_path / "sens"
    args = ("--output", "live_cells:lungs@1 h", "--method", "morris", "--n", "10", "--parameters", "size*")
    assert run("sensitivity", str(EXAMPLES / "msc-iv-human.yaml"), *args, "-o", str(analysis)).returncode == 0
    assert "live_cells:lungs@1 h" in _redrawn(analysis, "sensitivity.html")
    power = tmp_path / "power"
    result = run("power", str(EXAMPLES / "trial-copd.yaml"), "--n", "20,40", "-r", "4", "-o", str(power))
    assert result.returncode == 0, result.stderr
    assert len(pd.read_parquet(power / "power.parquet")) == 2
    assert "assurance" in _redrawn(power)
    checks = tmp_path / "val"
    case = bundled_cases_dir() / "toma2009_rat_ia_muscle_msc"
    assert run("validate", str(case), "-o", str(checks)).returncode == 0
    page = _redrawn(checks, "validation.html")
    assert case.name in page and page.count("<tr class=") == 1


def test_a_folder_infusim_did_not_write_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    result = run("report", str(tmp_path))
    assert result.returncode == 2 and result.stderr.startswith("error: OUT:")
    assert not (tmp_path / "report.html").exists()
