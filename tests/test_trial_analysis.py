"""How a trial compares a continuous endpoint with control: change from baseline (Welch) or ANCOVA."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import statsmodels.formula.api as smf

from infusim import stats
from infusim.errors import OutputError, ScenarioError
from infusim.runner import run_trial, with_size
from infusim.scenario import from_dict, load
from infusim.virtual_trial import FIELDS, design, simulate_chunk
from tests.helpers import BASE, EXAMPLES, merge

OA = EXAMPLES / "trial-knee-osteoarthritis.yaml"


def _with_analysis(path, analysis: str, **trial):
    import yaml

    spec = yaml.safe_load(path.read_text())
    spec["trial"] |= {"analysis": analysis, **trial}
    return from_dict(spec)


def _copd(patients: int, **trial):
    spec = {
        "condition": {"name": "copd"},
        "simulation": {"duration": "365 day", "outputs": None},
        "trial": {
            "patients": patients,
            "arms": [{"name": "placebo", "administration": "placebo"}, {"name": "cells"}],
            "visits": ["120 day", "365 day"],
            "primary": {"endpoint": "fev1", "at": "365 day"},
            "analysis": "ancova",
            **trial,
        },
    }
    return from_dict(merge(merge(BASE, spec), {"product": {"donor": "allogeneic"}}))


def _ols(rows: pd.DataFrame, endpoint: str, day: float, arm: str, control: str):
    """statsmodels' OLS of the change at ``day`` on treatment and the day-0 value, complete cases."""
    wide = rows.pivot_table(index=["patient", "arm"], columns="time_d", values=endpoint, dropna=False)
    wide = wide.reset_index()
    data = pd.DataFrame(
        {
            "arm": wide.arm.astype(str),
            "base": wide[0.0].astype(float),
            "change": (wide[day] - wide[0.0]).astype(float),
        }
    ).dropna()
    data = data[data.arm.isin([arm, control])]
    data["treated"] = (data.arm == arm).astype(float)
    return smf.ols("change ~ treated + base", data).fit()


@pytest.mark.parametrize(
    ("scenario", "endpoint", "control"),
    [
        (lambda: _with_analysis(OA, "ancova"), "womac_total", "saline"),
        # 40% a year lost, more often after worsening: the complete cases differ by visit
        (lambda: _copd(600, dropout="40%", dropout_hazard_ratio=3), "fev1", "placebo"),
    ],
    ids=["knee-oa", "copd-informative-dropout"],
)
def test_ancova_from_partial_sums_matches_statsmodels_ols_on_the_rows(scenario, endpoint, control):
    s = scenario()
    plan = design(s)
    assert plan.analysis == "ancova"
    table, partial = simulate_chunk(s, 0, 0, s.trial.patients)
    totals = stats.combine([partial], 1, partial.sums.shape)[0]
    rows = table.to_pandas()
    e = [x.name for x in plan.endpoints].index(endpoint)
    checked = 0
    for a, arm in enumerate(plan.arms):
        if a == plan.control:
            continue
        for v, day in enumerate(plan.visits_d):
            if day == 0:
                continue
            fit = _ols(rows, endpoint, float(day), arm, control)
            ours = stats.compare(totals, plan, a, e, v)
            # the rows are float32; the partial sums float64
            assert ours["difference"] == pytest.approx(fit.params["treated"], rel=1e-5, abs=1e-6)
            assert ours["ci95"] == pytest.approx(fit.conf_int().loc["treated"].tolist(), rel=1e-5, abs=1e-6)
            assert ours["p_value"] == pytest.approx(fit.pvalues["treated"], rel=1e-4)
            assert sum(ours["n"]) == fit.nobs
            checked += 1
    assert checked >= 2


def test_ancova_without_baseline_spread_is_the_pooled_t_test():
    """Every patient enters at the same value: no slope can be fitted, and the comparison is
    Student's t-test with pooled variance (n1 + n0 - 2 degrees of freedom)."""
    s = _with_analysis(OA, "ancova")
    plan = design(s)
    rng = np.random.default_rng(5)
    change = {0: rng.normal(-8, 12, 40), 1: rng.normal(-3, 9, 35)}  # treated arm 1, control (saline) 0
    totals = np.zeros((len(plan.arms), len(plan.endpoints), len(plan.visits_d), len(FIELDS)))
    f = {name: i for i, name in enumerate(FIELDS)}
    for arm, values in ((1, change[0]), (0, change[1])):
        base = np.full(values.size, 45.0)
        cell = totals[arm, plan.primary, plan.primary_visit]
        cell[f["n"]], cell[f["sum_change"]], cell[f["sumsq_change"]] = (
            values.size,
            values.sum(),
            (values**2).sum(),
        )
        cell[f["sum_baseline"]], cell[f["sumsq_baseline"]] = base.sum(), (base**2).sum()
        cell[f["sum_baseline_change"]] = (base * values).sum()
    ours = stats.compare(totals, plan, 1, plan.primary, plan.primary_visit)
    reference = scipy.stats.ttest_ind(change[0], change[1], equal_var=True)
    assert ours["difference"] == pytest.approx(change[0].mean() - change[1].mean(), rel=1e-9)
    assert ours["p_value"] == pytest.approx(reference.pvalue, rel=1e-7)
    interval = reference.confidence_interval()
    assert ours["ci95"] == pytest.approx([interval.low, interval.high], rel=1e-9)


def test_the_trial_summary_and_report_say_which_analysis_was_run(tmp_path):
    s = with_size(_with_analysis(OA, "ancova"), 60, 1)
    summary = run_trial(s, tmp_path / "t", chunk_size=25)
    assert summary["analysis"] == "ancova"
    assert any("ANCOVA" in note for note in summary["notes"])
    assert "adjusted for the day-0 value" in (tmp_path / "t" / "report.html").read_text()
    _, partial = simulate_chunk(s, 0, 0, 60)  # one chunk gives the summary's comparison
    plan = design(s)
    whole = stats.compare(stats.combine([partial], 1, partial.sums.shape)[0], plan, 1, plan.primary, 2)
    assert summary["comparisons"][0]["arm"] == plan.arms[1]
    found = next(c for c in summary["comparisons"] if c["arm"] == plan.arms[1] and c["time_d"] == "90")
    assert found["difference"] == whole["difference"] and found["ci95"] == whole["ci95"]
    default = run_trial(with_size(load(OA), 60, 1), tmp_path / "w", chunk_size=25)
    assert default["analysis"] == "change" and any("Welch" in note for note in default["notes"])
    welch = next(c for c in default["comparisons"] if c["arm"] == plan.arms[1] and c["time_d"] == "90")
    assert welch["difference"] != found["difference"]  # the same patients, another analysis


def test_resume_refuses_partial_sums_of_another_layout(tmp_path):
    s = with_size(load(OA), 20, 1)
    run_trial(s, tmp_path / "t", chunk_size=10)
    manifest = json.loads((tmp_path / "t" / "trial.json").read_text())
    manifest["stats_fields"] = list(FIELDS[:7])  # written before the baseline sums existed
    (tmp_path / "t" / "trial.json").write_text(json.dumps(manifest))
    with pytest.raises(OutputError, match="stats_fields"):
        run_trial(s, tmp_path / "t", chunk_size=10, resume=True)


def test_an_unknown_analysis_is_a_one_line_error_naming_the_choices():
    with pytest.raises(ScenarioError) as caught:
        _copd(20, analysis="mmrm")
    assert caught.value.field == "trial.analysis"
    assert "change" in caught.value.message and "ancova" in caught.value.message
