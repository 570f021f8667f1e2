"""Reports show what the tables say: the same denominators, the condition's organs, readable axes."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import pytest

from infusim.report.html import _live_figure
from infusim.scenario import load
from infusim.simulation import simulate
from tests.helpers import EXAMPLES


def test_live_cell_plot_divides_by_cells_given_so_far_like_the_summary():
    # two doses 28 days apart: before the second dose the plot must match the table (was half of it)
    result = simulate(load(EXAMPLES / "msc-allogeneic-iv-human.yaml"))
    cells = result.cells
    times = np.unique(cells.time_h)
    given = pd.Series([result.model.administered(t).sum() for t in times], index=times)
    figure = _live_figure(cells, given, "heart")
    lungs = next(t for t in figure.data if t.name == "lungs")
    at = list(lungs.x).index(24.0)
    assert lungs.y[at] == pytest.approx(
        100 * result.summary["live_fraction_of_dose"]["24 h"]["lungs"], rel=1e-9
    )


def test_the_condition_organ_and_target_are_always_drawn_and_the_rest_a_click_away():
    result = simulate(load(EXAMPLES / "msc-iv-human.yaml"))
    times = np.unique(result.cells.time_h)
    given = pd.Series([result.model.administered(t).sum() for t in times], index=times)
    figure = _live_figure(result.cells, given, "heart")
    visible = {t.name for t in figure.data if t.visible is True}
    hidden = {t.name for t in figure.data if t.visible == "legendonly"}
    assert {"heart", "target"} <= visible and hidden  # every compartment is in the plot
    assert visible | hidden == set(result.cells[result.cells.state == "live"].compartment)


def test_validation_plots_keep_values_that_cross_zero_and_name_their_units():
    from infusim.case_format import bundled_cases_dir
    from infusim.report.validation import _figure, suite_figure
    from infusim.validation import CaseResult, validate

    effect = CaseResult(
        name="effect-case",
        comparisons=pd.DataFrame(
            {
                "time_h": [4380.0],
                "quantity": ["effect:lvef"],
                "compartment": [""],
                "unit": ["%"],
                "observed": [-1.5],
                "predicted": [2.0],
                "bound": [""],
                "sd": [1.0],
                "source": ["test"],
            }
        ),
        curves=pd.DataFrame(
            {
                "time_h": [24.0, 4380.0],
                "quantity": "effect:lvef",
                "compartment": "",
                "unit": "%",
                "predicted": [0.5, 2.0],
            }
        ),
    )
    figure = _figure(effect)
    assert figure.layout.yaxis.type == "linear" and figure.layout.yaxis.title.text == "%"
    # a half-year outcome reads in days, its points at 182.5 d
    assert figure.layout.xaxis.title.text == "time after the first dose (days)"
    observed = next(t for t in figure.data if t.name.startswith("observed"))
    assert list(observed.x) == [182.5]
    results = validate(
        [
            bundled_cases_dir() / "lee2009_mouse_iv_hmsc_dna",
            bundled_cases_dir() / "dedobbeleer2009_human_ic_cd34_chronic_f18",
        ],
        curves=False,
    )
    overview = suite_figure(results)
    names = {t.name for t in overview.data}
    assert {"fitted cases", "prediction cases", "1:1", "2-fold", "3-fold"} <= names


def test_trial_report_has_flow_baseline_forest_and_responders_from_the_rows(tmp_path):
    from infusim.runner import run_trial

    summary = run_trial(load(EXAMPLES / "trial-knee-osteoarthritis.yaml"), tmp_path / "t", chunk_size=50)
    rows = pd.read_parquet(tmp_path / "t" / "patients")
    first = rows[(rows.replicate == 0) & (rows.time_d == 0)]
    for arm, group in first.groupby("arm", observed=True):
        entry = summary["baseline"][arm]
        assert entry["patients"] == len(group)
        assert entry["age_years"]["mean"] == pytest.approx(group.age_years.mean(), rel=1e-5)
        assert entry["female"]["mean"] == pytest.approx(group.female.mean())
    page = (tmp_path / "t" / "report.html").read_text()
    for heading in (
        "Patient flow",
        "Baseline by arm",
        "Differences against",
        "Responders:",
        "Adverse events",
        "Regulatory status of this use",
    ):
        assert heading in page, heading


def test_report_lists_every_parameter_row_read_with_value_unit_source_and_provenance():
    import yaml

    from infusim.parameters import for_scenario
    from infusim.report.html import render
    from infusim.scenario import from_dict
    from infusim.scenario_spec import to_spec

    spec = yaml.safe_load((EXAMPLES / "msc-iv-human.yaml").read_text())
    spec["parameters"] = {"loss_rate[msc/lungs]": "0.25 1/h"}
    result = simulate(from_dict(spec))
    rows = {r["parameter"]: r for r in result.summary["parameters_used"]}
    # independent of the summary: the rows a fresh parameter set records while the run is repeated
    params = for_scenario(result.scenario)
    simulate(result.scenario, params=params)
    assert set(rows) == {f"{p}[{s}]" if s else p for p, s in params.read_keys}
    assert (
        rows["loss_rate[msc/lungs]"]["value"] == 0.25 and rows["loss_rate[msc/lungs]"]["source"] == "scenario"
    )
    page = render(result)
    assert f"Every parameter this run used ({len(rows)} rows)" in page
    assert "<code>loss_rate[msc/lungs]</code></td><td>0.25</td><td>1/h</td><td>scenario</td>" in page
    # the scenario at the foot of the page is scenario.yaml's text, every quantity with its unit
    shown = page[page.index("<h2>Scenario") :]
    assert "body_weight: 70.0 kg" in shown and "dose: 2000000.0 cells/kg" in shown and "1.0 h" in shown
    assert html.unescape(shown[shown.index("<pre>") + 5 : shown.index("</pre>")]) == yaml.safe_dump(
        to_spec(result.scenario), sort_keys=False, allow_unicode=True
    )


def test_validation_report_states_out_of_sample_coverage_with_between_study_variation():
    from infusim.report.validation import _coverage_text

    summary = {
        "predictions": {"points": 11, "inside_95_prediction": 6 / 11},
        "kinetics_cross_validation": {
            "between_study": {
                "points": 15,
                "inside_95_parameter_only": 0.6,
                "inside_95_with_between_study": 10 / 15,
                "tau_log10_all": 0.389,
                "median_width_fold": 113.0,
            }
        },
    }
    text = _coverage_text(summary)
    assert "prediction cases: 55% of 11" in text
    assert "60% of 15 observations" in text and "67% inside them widened" in text and "x113" in text
    assert "Out of sample" not in _coverage_text({"predictions": summary["predictions"]})


def test_the_report_tabulates_each_effect_with_both_intervals_as_the_summary_holds_them():
    from infusim.report.html import render

    copd = simulate(load(EXAMPLES / "condition-copd.yaml"))
    page = render(copd)
    for time_key, visit in copd.summary["endpoints"].items():
        e = visit["fev1"]
        row = (
            f"<tr><td>fev1</td><td>{time_key}</td><td>{e['untreated']:.3g}</td><td>{e['treated']:.3g}</td>"
            f"<td>{e['effect']:+.3g}</td><td>{e['low']:+.3g} to {e['high']:+.3g}</td>"
            f"<td>{e['new_trial_low']:+.3g} to {e['new_trial_high']:+.3g}</td><td>L</td></tr>"
        )
        assert row in page
    ra = render(simulate(load(EXAMPLES / "condition-rheumatoid-arthritis.yaml")))
    assert "<td>not estimated</td><td>n/a</td><td>n/a</td>" in ra
