"""The command line end to end: outputs, help, demo, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.helpers import BASE, EXAMPLES, merge


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "infusim", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def write_scenario(folder: Path, data: dict | str) -> Path:
    path = folder / "scenario.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_simulate_writes_the_documented_tables_and_summary(tmp_path):
    out = tmp_path / "out"
    result = run("simulate", str(EXAMPLES / "msc-iv-human.yaml"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "research tool" in result.stdout and str(out) in result.stdout
    cells = pd.read_parquet(out / "cells.parquet")
    assert list(cells.columns) == ["patient", "time_h", "compartment", "state", "cells"]
    assert set(cells.state) == {"live", "dead:nonviable", "dead:death", "dead:phagocytosis", "dead:rejection"}
    observations = pd.read_parquet(out / "observations.parquet")
    assert list(observations.columns) == ["patient", "time_h", "quantity", "compartment", "value", "unit"]
    assert set(observations.quantity) == {"live_cells", "dna", "radiolabel"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dose_cells"] == pytest.approx(1.4e8)
    assert summary["mass_balance_max_rel_error"] < 1e-9
    assert summary["seed"] == 1 and len(summary["scenario_hash"]) == 64 and summary["infusim_version"]
    at_1h = summary["live_fraction_of_dose"]["1 h"]
    assert at_1h["lungs"] > 0.5 and "target" in at_1h
    assert "Toma2009" in summary["sources"]
    for t in cells.time_h.unique():
        total = cells[cells.time_h == t].cells.sum()
        assert total == pytest.approx(1.4e8 * min(t / 0.5, 1.0), rel=1e-9)


def test_report_is_self_contained(tmp_path):
    out = tmp_path / "out"
    assert run("simulate", str(EXAMPLES / "msc-iv-mouse.yaml"), "-o", str(out)).returncode == 0
    page = (out / "report.html").read_text()
    assert "research tool" in page and "plotly" in page.lower()
    assert '<script src="http' not in page and '<link href="http' not in page


def test_demo_runs_the_bundled_example_and_says_where_the_report_is(tmp_path):
    result = run("demo", "-o", "demo-out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "report.html" in result.stdout
    assert (tmp_path / "demo-out" / "summary.json").is_file()


def test_help_explains_every_command_and_option():
    top = run("--help").stdout
    assert "simulate" in top and "demo" in top
    sim = run("simulate", "--help").stdout
    for word in ("scenario", "--out", "--quiet", "--no-report", "cells.parquet", "observations.parquet"):
        assert word in sim


def test_rerun_replaces_its_own_output_but_never_a_foreign_folder(tmp_path):
    scenario = str(EXAMPLES / "msc-iv-mouse.yaml")
    out = tmp_path / "out"
    assert run("simulate", scenario, "-o", str(out), "-q", "--no-report").returncode == 0
    assert run("simulate", scenario, "-o", str(out), "-q", "--no-report").returncode == 0
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("precious")
    result = run("simulate", scenario, "-o", str(foreign))
    assert result.returncode == 2
    assert result.stderr.startswith("error: output:") and (foreign / "chapter1.tex").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "thesis"]
    (tmp_path / "afile").write_text("")
    blocked = run("simulate", scenario, "-o", str(tmp_path / "afile" / "sub"), "--no-report")
    assert blocked.returncode == 2 and "Traceback" not in blocked.stderr
    assert (
        blocked.stderr
        == f"error: output: cannot create {tmp_path / 'afile' / 'sub'}: {tmp_path / 'afile'} is a file\n"
    )


BAD = [
    ({"administration": {"dose": "5 kg"}}, "administration.dose"),
    ({"administration": {"dose": "-1e6 cells/kg"}}, "administration.dose"),
    ({"administration": {"dose": "0 cells"}}, "administration.dose"),
    ({"administration": {"dose": "5e10 cells/kg"}}, "administration.dose"),
    ({"species": "horse"}, "species"),
    ({"condition": {"site": "elbow"}}, "condition.site"),
    ({"product": {"cell_type": "neuron"}}, "product.cell_type"),
    ({"product": {"celltype": "msc"}}, "product.celltype"),
    ({"administration": {"duration": "ten minutes"}}, "administration.duration"),
    ({"patient": {"body_weight": "70 lb", "height": "170 cm"}}, "patient.height"),
    ({"simulation": {"label": "cr51"}}, "simulation.label.isotope"),
    ({"product": {"viability": 1.5}}, "product.viability"),
    ({"administration": {"route": "oral"}}, "administration.route"),
]


@pytest.mark.parametrize(("overrides", "field"), BAD, ids=[b[1] + str(i) for i, b in enumerate(BAD)])
def test_bad_scenario_gives_one_line_exit_2_and_no_output(tmp_path, overrides, field):
    path = write_scenario(tmp_path, merge(BASE, overrides))
    out = tmp_path / "out"
    result = run("simulate", str(path), "-o", str(out))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}: "), result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["scenario.yaml"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "error: scenario: file not found"),
        ("name: x\nspecies: [human\n", "error: scenario: malformed YAML at line"),
        ("just a sentence", "error: scenario: the file must hold a mapping"),
        (b"\xff\xfe\x00binary", "error: scenario: cannot read"),
    ],
)
def test_missing_malformed_or_corrupt_file(tmp_path, content, message):
    path = tmp_path / "scenario.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    result = run("simulate", str(path), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip().startswith(message) and len(result.stderr.strip().splitlines()) == 1


def test_every_bundled_example_runs_from_the_command_line(tmp_path):
    for path in sorted(EXAMPLES.glob("*.yaml")):
        result = run("simulate", str(path), "-o", str(tmp_path / path.stem), "-q", "--no-report")
        assert result.returncode == 0, (path.name, result.stderr)
        summary = json.loads((tmp_path / path.stem / "summary.json").read_text())
        assert summary["mass_balance_max_rel_error"] < 1e-9


def test_validate_writes_json_and_html_and_prints_a_table(tmp_path):
    result = run("validate", "-o", str(tmp_path / "val"))
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "val" / "validation.json").read_text())
    record = summary["cases"][0]
    for key in ("case", "n", "aafe", "within_2fold", "within_3fold", "max_fold_error", "calibration"):
        assert key in record
    assert summary["predictions"]["ran"] == summary["predictions"]["cases"]
    page = (tmp_path / "val" / "validation.html").read_text()
    assert "AAFE" in page and '<script src="http' not in page
    assert "AAFE" in result.stdout
    again = run("validate", "-o", str(tmp_path / "val"))
    assert again.returncode == 0, again.stderr


def test_validate_reports_a_bad_case_and_still_runs_the_others(tmp_path):
    from infusim.case_format import bundled_cases_dir

    bad = tmp_path / "cases" / "broken_case"
    bad.mkdir(parents=True)
    (bad / "scenario.yaml").write_text("species: human\n")
    import shutil

    shutil.copytree(bundled_cases_dir() / "toma2009_rat_ia_muscle_msc", tmp_path / "cases" / "toma")
    result = run("validate", "--cases", str(tmp_path / "cases"), "-o", str(tmp_path / "val"))
    assert result.returncode == 0, result.stderr
    records = {r["case"]: r for r in json.loads((tmp_path / "val" / "validation.json").read_text())["cases"]}
    assert (
        "observations.csv is missing" in records["broken_case"]["error"]
        or "scenario.yaml" in records["broken_case"]["error"]
    )
    assert records["toma"]["error"] is None and records["toma"]["n"] == 2
    nothing_ran = run("validate", str(bad), "-o", str(tmp_path / "none"))  # a typo'd path, usually
    assert nothing_ran.returncode == 2 and nothing_ran.stderr.count("\n") == 1
    assert nothing_ran.stderr.startswith("error: cases: none of the 1 case folder(s) could run (broken_case:")
    assert not (tmp_path / "none").exists()


def test_calibrate_writes_fitted_values_with_intervals(tmp_path):
    from infusim.case_format import bundled_cases_dir

    case = bundled_cases_dir() / "couto2011_human_hepatic_artery_bmmc_tc99m"
    out = tmp_path / "params.yaml"
    result = run("calibrate", str(case), "-p", "efflux_rate[tc99m]", "-o", str(out))
    assert result.returncode == 0, result.stderr
    record = yaml.safe_load(out.read_text())
    fitted = record["parameters"][0]
    assert fitted["parameter"] == "efflux_rate" and fitted["scope"] == "tc99m"
    assert fitted["ci95"][0] < fitted["value"] < fitted["ci95"][1]
    assert record["aafe_after"][case.name] <= record["aafe_before"][case.name] + 0.01
    bad = run("calibrate", str(case), "-p", "no_such_rate[x]", "-o", str(out))
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")
    from infusim.parameters import for_scenario
    from infusim.scenario import from_dict

    scenario = from_dict(merge(BASE, {"parameters": record["scenario_parameters"]}))
    assert for_scenario(scenario).get("efflux_rate", "tc99m", "1/h") == pytest.approx(fitted["value"])


def test_calibrate_never_writes_an_installed_package(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from infusim.case_format import bundled_cases_dir
    from infusim.cli import app, checks

    monkeypatch.setattr(checks, "_source_checkout", lambda: False)
    case = bundled_cases_dir() / "couto2011_human_hepatic_artery_bmmc_tc99m"
    out = tmp_path / "params.yaml"
    result = CliRunner().invoke(
        app, ["calibrate", str(case), "-p", "efflux_rate[tc99m]", "-o", str(out), "--update-tables"]
    )
    assert result.exit_code == 2 and "--update-tables" in result.output and not out.exists()


def test_a_named_condition_adds_endpoints_with_an_untreated_twin(tmp_path):
    out = tmp_path / "oa"
    result = run(
        "simulate", str(EXAMPLES / "condition-knee-osteoarthritis.yaml"), "-o", str(out), "--no-report"
    )
    assert result.returncode == 0, result.stderr
    endpoints = pd.read_parquet(out / "endpoints.parquet")
    assert list(endpoints.columns) == ["patient", "time_d", "endpoint", "treated", "untreated", "unit"]
    assert {"womac_total", "pain_vas"} <= set(endpoints.endpoint)
    summary = json.loads((out / "summary.json").read_text())
    effect = summary["endpoints"]["365 d"]["womac_total"]["effect"]
    assert effect < 0 and "effect = treated minus untreated twin" in result.stdout


def test_extrapolation_is_warned_about_on_stderr(tmp_path):
    path = write_scenario(
        tmp_path,
        merge(BASE, {"condition": {"name": "knee_osteoarthritis"}, "simulation": {"duration": "30 day"}}),
    )
    result = run("simulate", str(path), "-o", str(tmp_path / "out"), "-q")
    assert result.returncode == 0
    assert "warning: extrapolation" in result.stderr


def test_conditions_lists_every_condition_with_endpoints_and_sources():
    from infusim import conditions

    result = run("conditions")
    assert result.returncode == 0
    for name in conditions.names():
        assert name in result.stdout, name
    assert "womac_total" in result.stdout and "BoneJointRes2020" in result.stdout
    assert "Delewi2014" in result.stdout and "modifier:" in result.stdout  # acute MI's effect modifiers


def test_export_sbml_writes_a_valid_file_and_refuses_bad_input(tmp_path):
    result = run("export-sbml", str(EXAMPLES / "msc-iv-human.yaml"), "-o", str(tmp_path / "m.xml"))
    assert result.returncode == 0, result.stderr
    assert "libsbml: no errors" in result.stdout
    assert (tmp_path / "m.xml").read_text().startswith("<?xml")
    bad = run("export-sbml", str(tmp_path / "missing.yaml"), "-o", str(tmp_path / "x.xml"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert not (tmp_path / "x.xml").exists()


def test_trial_writes_the_dataset_and_summary_and_prints_the_primary_comparison(tmp_path):
    result = run("trial", str(EXAMPLES / "trial-copd.yaml"), "-o", str(tmp_path / "t"), "-n", "40", "-r", "3")
    assert result.returncode == 0, result.stderr
    assert "msc vs placebo" in result.stdout and "not advice for any patient" in result.stdout
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert summary["patients"] == 40 and summary["replicates"] == 3
    assert summary["power"]["msc"]["replicates"] == 3
    rows = pd.read_parquet(tmp_path / "t" / "patients")
    assert set(rows.replicate) == {0, 1, 2} and len(rows) == 3 * 40 * 3  # replicates x patients x visits
    for column in ("patient", "arm", "time_d", "age_years", "female", "body_weight_kg", "fev1_untreated"):
        assert column in rows
    page = (tmp_path / "t" / "report.html").read_text()
    assert "fev1" in page and "not advice for any patient" in page and '<script src="http' not in page
    assert 0 <= summary["assurance"]["msc"]["assurance"] <= 1 and "assurance" in page
    quiet = run("trial", str(EXAMPLES / "trial-copd.yaml"), "-o", str(tmp_path / "q"), "-n", "20", "-q")
    assert quiet.returncode == 0 and quiet.stdout.strip() == str(tmp_path / "q")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["trial", "{examples}/msc-iv-human.yaml", "-o", "{tmp}/x"], "trial:"),
        (["trial", "{examples}/trial-copd.yaml", "-o", "{tmp}/x", "-n", "1"], "--patients"),
        (["trial", "{examples}/trial-copd.yaml", "-o", "{tmp}/x", "--resume"], "--resume"),
        (
            ["trial", "{examples}/trial-copd.yaml", "-o", "{tmp}/x", "--scheduler", "tcp://127.0.0.1:9"],
            "--scheduler",
        ),
        (["power", "{examples}/trial-copd.yaml", "--n", "20,x"], "--n"),
        (["export-sbml", "{examples}/no-such.yaml", "-o", "{tmp}/m.xml"], "scenario"),
    ],
)
def test_trial_and_power_refuse_bad_input_in_one_line(tmp_path, args, field):
    filled = [a.format(examples=EXAMPLES, tmp=tmp_path) for a in args]
    result = run(*filled)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and field in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()  # nothing half-written, not even a folder marked running


def test_power_prints_power_against_sample_size():
    result = run("power", str(EXAMPLES / "trial-knee-osteoarthritis.yaml"), "--n", "30,90", "-r", "20")
    assert result.returncode == 0, result.stderr
    assert "msc_5e7 vs saline" in result.stdout and "90" in result.stdout
    assert "key secondary" not in result.stdout  # no second table for a design without them


def test_power_prints_key_secondary_powers_and_tipping_points_as_written(tmp_path):
    data = yaml.safe_load((EXAMPLES / "trial-knee-osteoarthritis.yaml").read_text())
    data["trial"] |= {
        "key_secondary": [{"endpoint": "pain_vas", "at": "180 day"}],
        "analysis": "mmrm",
        "dropout": 0.3,
    }
    scenario = write_scenario(tmp_path, data)
    result = run("power", str(scenario), "--n", "120", "-r", "12", "-o", str(tmp_path / "p"))
    assert result.returncode == 0, result.stderr
    assert "key secondary 1: pain_vas day 180" in result.stdout and "median tipping point" in result.stdout
    rows = pd.read_parquet(tmp_path / "p" / "power.parquet")
    for row in rows.itertuples():  # the Monte Carlo interval is Wilson's, written out here
        k, n, z = row.power * 12, 12, 1.959963984540054
        centre, half = (k + z * z / 2) / (n + z * z), z * np.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
        assert (row.power_low, row.power_high) == pytest.approx((centre - half, centre + half), abs=1e-9)
    lines = [line for line in result.stdout.splitlines() if " msc_" in line and "│" in line]
    assert len(lines) == len(rows) == 2
    for line, row in zip(lines, rows.itertuples(), strict=True):
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        assert cells[:2] == ["120", row.arm]
        assert cells[2] == f"{row.key_secondary_1_power:.0%}"
        tipping = row.tipping_delta_sd_median
        assert cells[3] == ("-" if tipping is None or tipping != tipping else f"{tipping:.2f}")


def test_trial_warns_about_arms_outside_the_evidence_and_ignored_patient_fields(tmp_path):
    data = yaml.safe_load((EXAMPLES / "trial-copd.yaml").read_text())
    data["patient"] = {"body_weight": "80 kg"}
    data["trial"]["patients"] = 30
    data["trial"]["arms"].append({"name": "high", "administration": {"dose": "5e7 cells/kg"}})
    result = run("trial", str(write_scenario(tmp_path, data)), "-o", str(tmp_path / "t"))
    assert result.returncode == 0, result.stderr
    assert "arm high: extrapolation" in result.stderr and "arm msc:" not in result.stderr
    assert "patient: ignored in a trial" in result.stderr
    assert (
        "arm high: extrapolation" in json.loads((tmp_path / "t" / "summary.json").read_text())["warnings"][1]
    )


def test_fit_effects_writes_posteriors_to_the_named_folder_never_the_package(tmp_path):
    import pandas as pd

    from infusim import posterior

    bundled = (posterior.bundled_dir() / "copd.csv").read_bytes()
    result = run("fit-effects", "-c", "copd", "-o", str(tmp_path / "fit"))
    assert result.returncode == 0, result.stderr
    assert "potency[copd/systemic]" in result.stdout
    draws = pd.read_csv(tmp_path / "fit" / "copd.csv")
    assert len(draws) == posterior.STORED_DRAWS and (draws["potency[copd/systemic]"] > 0).all()
    record = posterior.records(tmp_path / "fit")["copd"]
    assert record["command"].startswith("infusim fit-effects") and record["n_studies"] == 1
    assert (posterior.bundled_dir() / "copd.csv").read_bytes() == bundled
    # the bundled draws are this command's at the default settings: reproduced to the last digit
    assert (tmp_path / "fit" / "copd.csv").read_bytes() == bundled
    rerun = run("fit-effects", "-c", "copd", "--check", "--steps", "4000", "-o", str(tmp_path / "fit"))
    assert rerun.returncode == 0, rerun.stderr  # its own earlier output is replaced
    assert "seed spread" in rerun.stdout
    record = posterior.records(tmp_path / "fit")["copd"]
    assert record["diagnostics"]["steps"] == 4000 and record["diagnostics"]["burn_in"] == 800
    check = record["diagnostics"]["seed_check"]
    assert len(check["seeds"]) == 3 and check["worst_median_range_sd"] < 0.5
    weighed = record["diagnostics"]["importance_check"]  # a second method: importance sampling
    assert weighed["effective_size"] > 50_000 and weighed["worst_median_off_sd"] < 0.25
    assert "vs importance sampling" in rerun.stdout
    bad_options = (
        (["-c", "nosuch"], "--condition"),
        (["-c", "alzheimers"], "--condition"),
        (["--steps", "10"], "--steps"),
    )
    for bad, field in bad_options:
        refused = run("fit-effects", *bad, "-o", str(tmp_path / "bad"))
        assert refused.returncode == 2 and refused.stderr.startswith(f"error: {field}")
        assert not (tmp_path / "bad").exists()


def test_parameters_lists_rows_and_a_scenario_can_override_any_of_them(tmp_path):
    listing = run("parameters", "--grep", "loss_rate")
    assert listing.returncode == 0 and "loss_rate[msc/lungs]" in listing.stdout
    assert "Eggenhofer2012" in listing.stdout
    assert "half_saturation" not in listing.stdout

    base = yaml.safe_load((EXAMPLES / "msc-iv-human.yaml").read_text())
    faster = dict(base, parameters={"loss_rate[msc/lungs]": "0.5 1/h"})
    for name, data in (("base", base), ("faster", faster)):
        (tmp_path / name).mkdir()
        path = write_scenario(tmp_path / name, data)
        result = run("simulate", str(path), "-o", str(tmp_path / f"out-{name}"), "-q")
        assert result.returncode == 0, result.stderr
    summaries = {
        n: json.loads((tmp_path / f"out-{n}" / "summary.json").read_text()) for n in ("base", "faster")
    }
    lungs = {n: s["live_fraction_of_dose"]["24 h"]["lungs"] for n, s in summaries.items()}
    assert lungs["faster"] < 0.5 * lungs["base"]
    override = summaries["faster"]["overrides"]["loss_rate[msc/lungs]"]
    assert override == {"value": 0.5, "unit": "1/h", "table_value": 0.05, "table_source": "Eggenhofer2012"}
    assert "scenario" in summaries["faster"]["sources"] and summaries["base"]["overrides"] == {}

    bad = {
        "loss_rat[msc/lungs]": "parameters.loss_rat[msc/lungs]: not a parameter row",
        "loss_rate[msc/lung]": "rows of loss_rate",
    }
    for i, (key, message) in enumerate(bad.items()):
        folder = tmp_path / f"bad-{i}"
        folder.mkdir()
        path = write_scenario(folder, dict(base, parameters={key: "0.1 1/h"}))
        refused = run("simulate", str(path), "-o", str(folder / "out"))
        assert refused.returncode == 2 and message in refused.stderr and refused.stderr.count("\n") == 1
        assert not (folder / "out").exists()
    folder = tmp_path / "unit"
    folder.mkdir()
    path = write_scenario(folder, dict(base, parameters={"loss_rate[msc/lungs]": "0.1 mL"}))
    refused = run("simulate", str(path), "-o", str(folder / "out"))
    assert refused.returncode == 2 and "is not a quantity in 1/h" in refused.stderr
    trial = yaml.safe_load((EXAMPLES / "trial-copd.yaml").read_text())
    path = write_scenario(folder, dict(trial, parameters={"potency[copd/systemic]": "2 kg"}))
    refused = run("trial", str(path), "-o", str(folder / "trial-out"))
    assert refused.returncode == 2 and "parameters.potency[copd/systemic]" in refused.stderr
    assert not (folder / "trial-out").exists()


def test_a_key_given_twice_and_a_missing_case_are_refused_in_one_line(tmp_path):
    path = tmp_path / "twice.yaml"
    text = (EXAMPLES / "msc-iv-human.yaml").read_text()
    path.write_text(text.replace("administration:\n", "administration:\n  dose: 5e6 cells/kg\n", 1))
    refused = run("simulate", str(path), "-o", str(tmp_path / "out"))
    assert refused.returncode == 2 and refused.stderr.startswith("error: administration.dose: given twice")
    assert refused.stderr.count("\n") == 1 and not (tmp_path / "out").exists()
    missing = run("validate", str(tmp_path / "nonexistent.yaml"), "-o", str(tmp_path / "val"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert not (tmp_path / "val").exists()


def test_square_brackets_in_a_scenario_name_are_printed_as_written(tmp_path):
    data = yaml.safe_load((EXAMPLES / "msc-iv-human.yaml").read_text())
    path = write_scenario(tmp_path, dict(data, name="cohort [v2] <b>"))
    result = run("simulate", str(path), "-o", str(tmp_path / "out [x]"))
    assert result.returncode == 0, result.stderr
    assert "cohort [v2] <b>: live cells" in result.stdout and "out [x]" in result.stdout


def test_a_single_trial_reports_no_power_and_tiny_p_values_are_not_zero():
    from infusim.cli.common import _p_text
    from infusim.report.trial import _p, _power

    assert _power({"power": 1.0, "replicates": 1}) == "n/a (one replicate)"
    assert _power({"power": 0.83, "replicates": 200}) == "83% of 200 replicates"
    assert _p_text(0.0) == "p < 1e-16" and _p(0.0) == "&lt; 1e-16" and _p_text(0.031) == "p = 0.031"


def test_sensitivity_writes_indices_a_report_and_prints_the_ranking(tmp_path):
    out = tmp_path / "sens"
    result = run(
        "sensitivity",
        str(EXAMPLES / "condition-acute-myocardial-infarction.yaml"),
        "--output",
        "live_fraction:target@24 h",
        "--output",
        "effect:lvef@180 day",
        "--n",
        "64",
        "--workers",
        "2",
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "research tool" in result.stdout and "potency[acute_myocardial_infarction/local]" in result.stdout
    table = pd.read_parquet(out / "sensitivity.parquet")
    assert {"parameter", "output", "first_order", "first_order_conf", "total", "total_conf"} <= set(
        table.columns
    )
    assert set(table.output) == {"live_fraction:target@24 h", "effect:lvef@180 day"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["evaluations"] == 64 * (summary["parameters"] + 2)
    page = (out / "sensitivity.html").read_text()
    assert "research tool" in page and '<script src="http' not in page


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--output", "live_cells:lung@1 h"], "error: --output: 'live_cells:lung@1 h': compartment"),
        (["--output", "live_cells:lungs@1 h", "--n", "100"], "error: --n: 100 must be a power of 2"),
        (["--output", "live_cells:lungs@1 h", "--method", "fast"], "error: --method: 'fast'"),
        (["--output", "live_cells:lungs@1 h", "--parameters", "nothing*"], "error: --parameters:"),
    ],
)
def test_sensitivity_bad_options_are_one_line_errors(tmp_path, args, field):
    out = tmp_path / "sens"
    result = run("sensitivity", str(EXAMPLES / "msc-iv-human.yaml"), *args, "-o", str(out))
    assert result.returncode == 2 and result.stderr.startswith(field), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


def test_simulate_with_uncertainty_writes_bands(tmp_path):
    out = tmp_path / "out"
    result = run("simulate", str(EXAMPLES / "msc-iv-human.yaml"), "--uncertainty", "50", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "Parameter uncertainty (50 draws" in result.stdout
    bands = pd.read_parquet(out / "uncertainty.parquet")
    assert list(bands.columns) == ["time_h", "quantity", "where", "median", "low", "high", "unit"]
    assert (bands["low"] <= bands["median"]).all() and (bands["median"] <= bands["high"]).all()
    assert {"live_fraction", "dead_fraction", "radiolabel"} <= set(bands.quantity)  # In-111 labelled
    summary = json.loads((out / "summary.json").read_text())
    assert summary["uncertainty"]["draws"] == 50
    assert "Parameter uncertainty" in (out / "report.html").read_text()


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["simulate", str(EXAMPLES / "msc-iv-human.yaml"), "--uncertainty", "-1"], "error: --uncertainty: "),
        (["sensitivity", str(EXAMPLES / "msc-iv-human.yaml")], "error: --output: Missing option"),
        (["trial", str(EXAMPLES / "trial-copd.yaml"), "--workers", "0"], "error: --workers: "),
        (["no-such-command"], "error: command line: No such command"),
    ],
)
def test_command_line_mistakes_are_one_line_errors(tmp_path, args, start):
    result = run(*args, "-o", str(tmp_path / "out")) if args[0] != "no-such-command" else run(*args)
    assert result.returncode == 2 and result.stderr.startswith(start), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_console_percentages_below_a_cell_read_as_a_bound_not_as_1e_minus_134():
    from infusim.cli.common import _percent

    assert _percent(0.0) == "0" and _percent(0.4567) == "45.67" and _percent(3e-9) == "3.0e-07"
    assert _percent(4e-136) == "<1e-10"  # 1e-134 % of 7e7 cells is 1e-128 cells
