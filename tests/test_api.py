"""The Python API: every command as a function on a Scenario, a mapping or a path, returning a result
object with a table, a figure and a report; and the same numbers as the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

import infusim
from infusim.errors import InfusimError
from tests.helpers import EXAMPLES

TRIAL = EXAMPLES / "trial-copd.yaml"


def test_the_api_names_are_functions_even_after_their_modules_load():
    import infusim.dose_window
    import infusim.sensitivity_analysis
    import infusim.validation
    import infusim.virtual_trial

    for name in ("trial", "power", "validate", "sensitivity", "doses", "simulate"):
        assert callable(getattr(infusim, name)) and not isinstance(getattr(infusim, name), type(infusim))


def test_simulate_result_has_a_table_a_figure_and_a_report(tmp_path):
    result = infusim.simulate(infusim.load(EXAMPLES / "msc-iv-human.yaml"))
    table = result.to_pandas()
    assert {"time_h", "compartment", "state", "cells"} <= set(table.columns)
    figure = result.plot()
    shown = {t.name for t in figure.data if t.visible is True}
    assert {"target", "heart", "lungs"} <= shown  # the condition's organ and target are always drawn
    # the plotted lungs at the first output equal the table's live lungs over the cells given so far
    t0 = min(t for t in table.time_h if t > 0)
    lungs = next(t for t in figure.data if t.name == "lungs")
    live = table[(table.time_h == t0) & (table.compartment == "lungs") & (table.state == "live")].cells.sum()
    assert lungs.y[0] == pytest.approx(100 * live / result.model.administered(t0).sum(), rel=1e-9)
    page = result.write_report(tmp_path / "r" / "report.html").read_text()
    assert "research tool" in page and '<script src="http' not in page


def test_trial_from_a_path_gives_patient_rows_and_the_cli_summary(tmp_path):
    found = infusim.trial(TRIAL, tmp_path / "t", patients=60)
    spec = yaml.safe_load(TRIAL.read_text())
    visits = 1 + len(spec["trial"]["visits"])  # baseline and each visit
    rows = found.to_pandas()
    assert len(rows) == 60 * visits and rows.patient.nunique() == 60 and rows.time_d.min() == 0
    assert json.loads((tmp_path / "t" / "summary.json").read_text())["by_arm"] == json.loads(
        json.dumps(found.summary["by_arm"])
    )
    primary = found.summary["primary"]["endpoint"]
    assert len(found.plot().data) >= 2 and primary in found.plot().layout.title.text
    events = found.adverse_events()
    assert {"patient", "arm", "event", "grade", "serious"} <= set(events.columns)
    # the same scenario as a mapping gives the same numbers (same seed)
    again = infusim.trial(spec, tmp_path / "t2", patients=60)
    assert again.summary["primary"] == found.summary["primary"]


def test_power_table_and_its_errors():
    found = infusim.power(TRIAL, [20, 200], replicates=8)
    table = found.to_pandas()
    assert (
        list(table.columns)[:5] == ["patients", "arm", "analysis", "power", "assurance"] and len(table) == 2
    )
    assert ((table.power >= 0) & (table.power <= 1)).all()
    assert table.power.iloc[1] >= table.power.iloc[0]  # ten times the patients never loses power here
    assert found.plot().layout.yaxis.title.text.startswith("share of replicate")
    with pytest.raises(InfusimError, match="--n"):
        infusim.power(TRIAL, [1, 20])


def test_validate_one_case_points_table():
    from infusim.case_format import bundled_cases_dir

    case = bundled_cases_dir() / "toma2009_rat_ia_muscle_msc"
    found = infusim.validate([case])
    table = found.to_pandas()
    observed = len((case / "observations.csv").read_text().strip().splitlines()) - 1
    assert len(table) == observed and set(table.case) == {case.name}
    assert {"observed", "predicted", "predicted_low", "predicted_high"} <= set(table.columns)
    assert found.summary["cases"][0]["case"] == case.name and found.plot() is not None
    with pytest.raises(InfusimError, match="cases"):
        infusim.validate(["no/such/case"])


def test_sensitivity_and_doses_take_a_scenario_object():
    scenario = infusim.load(EXAMPLES / "msc-iv-human.yaml")
    found = infusim.sensitivity(
        scenario, ["live_cells:lungs@1 h"], method="morris", n=10, parameters=["size*"]
    )
    table = found.to_pandas()
    assert set(table.output) == {"live_cells:lungs@1 h"} and len(table) == found.summary["parameters"]
    assert found.plot().data[0].orientation == "h"
    from_object = infusim.doses(scenario, [1e6, 1e8]).to_pandas()
    from_path = infusim.doses(EXAMPLES / "msc-iv-human.yaml", [1e8, 1e6]).to_pandas()
    numbers = from_object.select_dtypes("number").columns
    np.testing.assert_allclose(from_object[numbers], from_path[numbers], rtol=1e-12)
    with pytest.raises(InfusimError, match="--doses"):
        infusim.doses(scenario, [])
    with pytest.raises(InfusimError, match="scenario"):
        infusim.doses(42, [1e6])


def test_summary_time_keys_read_like_the_console_and_list_the_hours():
    from infusim.cli.common import _time_label
    from infusim.units import hours

    summary = infusim.simulate(infusim.load(EXAMPLES / "msc-iv-human.yaml")).summary
    keys = list(summary["live_fraction_of_dose"])
    assert keys == [_time_label(t) for t in summary["output_times_h"]]
    assert "5 min" in keys and "7 d" in keys and "168 h" not in keys
    assert [hours(k, "time") for k in keys] == pytest.approx(summary["output_times_h"], rel=1e-12)


def test_a_condition_without_controlled_evidence_has_no_effect_number_not_a_zero():
    """Rheumatoid arthritis has no controlled estimate with a CI: its potency row is a placeholder 0,
    so the effect is null (not estimated) in summary.json, not a measured 0; a condition with evidence
    keeps its number."""
    ra = infusim.simulate(EXAMPLES / "condition-rheumatoid-arthritis.yaml").summary
    assert ra["evidence"]["studies"] == 0 and "placeholder" in ra["evidence"]["note"]
    entries = [e for visits in ra["endpoints"].values() for e in visits.values()]
    assert entries and all(e["effect"] is None and e["low"] is None for e in entries)
    assert all(e["treated"] == e["untreated"] for e in entries)
    copd = infusim.simulate(EXAMPLES / "condition-copd.yaml").summary
    assert all(e["effect"] > 0 for visits in copd["endpoints"].values() for e in visits.values())


def test_a_null_trial_gives_a_new_trial_interval_that_crosses_zero_around_the_average_one():
    """COPD rests on one trial whose CI crosses zero (+71 mL, -2 to 145): the average effect cannot be
    negative (potencies are positive), but a new trial's true effect, with the fit's between-trial SD
    (the stored tau draws), can. The new-trial interval holds the average one."""
    summary = infusim.simulate(EXAMPLES / "condition-copd.yaml").summary
    for visit in summary["endpoints"].values():
        e = visit["fev1"]
        assert 0 < e["low"] < e["high"]
        assert e["new_trial_low"] < 0 < e["new_trial_high"]
        assert e["new_trial_low"] < e["low"] and e["new_trial_high"] > e["high"]
    # the added spread is tau x the endpoint's between-patient SD: at least the smallest stored tau's
    import pandas as pd

    from infusim import posterior
    from infusim.parameters import bundled

    tau = pd.read_csv(posterior.bundled_dir() / "copd.csv")["tau_smd"]
    sd = bundled().get("baseline_sd", "copd/fev1", "L")
    e = summary["endpoints"]["365 d"]["fev1"]
    widened = (e["new_trial_high"] - e["new_trial_low"]) - (e["high"] - e["low"])
    assert widened > 2 * 1.96 * float(tau.quantile(0.05)) * sd
