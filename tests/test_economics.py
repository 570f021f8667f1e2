"""Cost-effectiveness of a virtual trial: QALYs and costs against expectations written here from the
trial's own rows, uncertainty against the sampling error computed independently, errors."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.integrate
import yaml
from typer.testing import CliRunner

from infusim import api, economics, patient_economics
from infusim.cli import app
from infusim.errors import InfusimError, ScenarioError

EXAMPLE = Path(__file__).parents[1] / "examples" / "trial-stroke-economics.yaml"
#: Wang 2020's utility-weighted mRS (0-6), the rows the analysis must use.
UW_MRS = [0.96, 0.83, 0.72, 0.54, 0.22, -0.18, 0.0]
DELIVERY_IV, PRODUCT_DOSE = 307.58, 54000.0


def _spec(**economics_fields) -> dict:
    """The stroke example at 120 patients; the effect held at its posterior median (no replicate
    trials) unless a test asks for them."""
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec["trial"]["patients"] = 120
    spec["economics"] = {"currency": "GBP", "evidence_draws": 0, **economics_fields}
    return spec


@pytest.fixture(scope="module")
def stroke(tmp_path_factory) -> tuple[dict, Path, dict]:
    out = tmp_path_factory.mktemp("stroke")
    spec = _spec()
    summary = api.trial(spec, out).summary
    return spec, out, summary["economics"]


def _qalys_by_hand(out, rate: float, endpoint="mrs", levels=tuple(range(7)), utilities=UW_MRS) -> pd.Series:
    """Each patient's discounted QALYs, written from the definition: utility of the recorded mRS
    between visits (linear in time, the last value carried to death), times (1 + rate)^-t, integrated
    with scipy's quad. ``out``: a trial folder (replicate 0) or a table of patient rows."""
    rows = out if isinstance(out, pd.DataFrame) else pd.read_parquet(out / "patients").query("replicate == 0")
    result = {}
    for patient, visits in rows.groupby("patient"):
        visits = visits.sort_values("time_d")
        times = visits["time_d"].to_numpy(float)
        utility = np.interp(visits[endpoint].to_numpy(float), levels, utilities)
        died = visits["died_d"].iloc[0]
        end = times[-1] if np.isnan(died) else min(died, times[-1])
        # visits after a death record nothing (a rate endpoint records "no response" there)
        alive = ~np.isnan(utility) & (np.isnan(died) | (times <= died))

        def integrand(t, times=times[alive], u=utility[alive]):
            return np.interp(t, times, u) * (1 + rate) ** (-t / 365.25)

        total = sum(
            scipy.integrate.quad(integrand, a, min(b, end))[0]
            for a, b in itertools.pairwise(times)
            if a < end
        )
        result[(visits["arm"].iloc[0], patient)] = total / 365.25
    return pd.Series(result)


def test_qalys_per_arm_match_an_integral_written_from_the_definition(stroke):
    _, out, found = stroke
    by_hand = _qalys_by_hand(out, 0.035).groupby(level=0).mean()
    for arm in ("placebo", "msc"):
        # exact integrals of a utility linear between visits times the discount
        assert found["by_arm"][arm]["qalys"]["mean"] == pytest.approx(by_hand[arm], rel=1e-7)
    assert found["settings"]["discount_qalys"] == 0.035
    assert found["settings"]["thresholds"] == [25000.0, 35000.0]  # NICE from April 2026


def test_costs_are_the_rows_priced_per_dose_and_the_comparison_adds_up(stroke):
    _, _, found = stroke
    # one dose at day 0 (undiscounted): the sham infusion visit, and the product on top in the cells arm
    assert found["by_arm"]["placebo"]["cost"]["mean"] == pytest.approx(DELIVERY_IV)
    assert found["by_arm"]["msc"]["cost_components"] == {
        "delivery": DELIVERY_IV,
        "product": PRODUCT_DOSE,
        "events": 0.0,
    }
    result = found["comparisons"]["msc"]
    d_cost, d_qalys = result["incremental_cost"]["mean"], result["incremental_qalys"]["mean"]
    assert d_cost == pytest.approx(PRODUCT_DOSE)
    assert result["icer"] == pytest.approx(d_cost / d_qalys)
    for threshold, entry in result["thresholds"].items():
        assert entry["net_monetary_benefit"]["mean"] == pytest.approx(float(threshold) * d_qalys - d_cost)
        # the value-based price leaves the other costs and the QALYs where they are
        price = result["value_based_price"]["by_threshold"][threshold]["mean"]
        assert price == pytest.approx(float(threshold) * d_qalys)
    # a product this price is never cost-effective at a zero threshold
    assert result["acceptability_curve"]["probability"][0] == 0.0
    assert found["events_not_costed"] == {}  # deaths end QALYs; no event without a price is hidden


def test_at_the_value_based_price_the_net_benefit_is_zero(stroke, tmp_path):
    spec, out, found = stroke
    threshold = "25000"
    price = found["comparisons"]["msc"]["value_based_price"]["by_threshold"][threshold]["mean"]
    priced = copy.deepcopy(spec)
    priced["economics"]["costs"] = {"product_per_dose": max(price, 0.0)}
    again = api.cost_effectiveness(priced, out)
    benefit = again["comparisons"]["msc"]["thresholds"][threshold]["net_monetary_benefit"]["mean"]
    assert benefit == pytest.approx(min(price, 0.0), abs=1e-6)
    # the re-analysis rewrote the trial's summary
    written = json.loads((out / "summary.json").read_text())["economics"]["unit_costs"]
    assert {c["item"]: c["source"] for c in written}["economics.costs.product_per_dose"] == "scenario"


def test_interval_with_rows_held_is_the_trials_sampling_error(stroke):
    """With every utility set in the scenario (held), the QALY interval of an arm is the sampling error
    of its mean: 1.96 standard errors of the patients' QALYs computed by hand."""
    spec, out, _ = stroke
    held = copy.deepcopy(spec)
    held["parameters"] = {f"utility[ischemic_stroke/mrs={k}]": u for k, u in enumerate(UW_MRS)}
    found = economics.analyse(api.as_scenario(held), out)
    by_hand = _qalys_by_hand(out, 0.035)
    for arm in ("placebo", "msc"):
        values = by_hand[arm]
        half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
        low, high = found["by_arm"][arm]["qalys"]["ci95"]
        assert (high - low) / 2 == pytest.approx(half, rel=0.1)
        assert (low + high) / 2 == pytest.approx(values.mean(), abs=0.15 * half)


def test_same_seed_same_numbers_whatever_the_chunks(stroke, tmp_path):
    spec, _, found = stroke
    again = api.trial(spec, tmp_path / "chunked", chunk_size=7).summary["economics"]
    assert again["comparisons"] == found["comparisons"]


def test_ongoing_care_costs_per_year_alive_discounted():
    """A control arm's yearly drug cost: the years alive, discounted continuously (checked on the
    weights themselves: a patient alive the whole year, one who dies at day 100)."""
    weights = patient_economics.time_weights(np.array([0.0, 90, 180, 365]), np.array([np.nan, 100.0]), 0.035)
    exact = scipy.integrate.quad(lambda t: 1.035 ** (-t / 365.25), 0, 365)[0] / 365.25
    assert weights[0].sum() == pytest.approx(exact, rel=1e-10)
    assert weights[1].sum() == pytest.approx(
        scipy.integrate.quad(lambda t: 1.035 ** (-t / 365.25), 0, 100)[0] / 365.25, rel=1e-10
    )
    # no discounting: plain trapezoid weights (days / 365.25)
    plain = patient_economics.time_weights(np.array([0.0, 90, 180, 365]), np.array([np.nan]), 0.0)[0]
    assert plain * 365.25 == pytest.approx([45, 90, 137.5, 92.5])
    assert weights[1, 2:].sum() == 0.0  # nothing after death


def test_interpolation_is_linear_between_levels_and_held_beyond():
    knots = np.array([0.0, 1.0, 3.0])
    w = patient_economics.interpolation(np.array([-1.0, 0.5, 2.0, 3.0, 5.0]), knots)
    assert w @ np.array([10.0, 20.0, 60.0]) == pytest.approx([10, 15, 40, 60, 60])
    assert w.sum(axis=1) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"currency": "EUR"}, "economics.discount"),
        ({"endpoint": "lvef"}, "economics.endpoint"),
        ({"costs": {"annual": {"nobody": 10}}}, "economics.costs.annual.nobody"),
    ],
)
def test_what_cannot_be_analysed_fails_before_the_trial_runs(change, field, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(InfusimError) as caught:
        api.trial(_spec(**change), out)
    assert caught.value.field == field
    assert not out.exists()


def test_a_condition_without_a_utility_mapping_names_those_with_one(tmp_path):
    spec = yaml.safe_load((EXAMPLE.parent / "trial-ami-subgroups.yaml").read_text())
    spec["economics"] = {"currency": "GBP"}
    with pytest.raises(
        InfusimError, match=r"no utility mapping is bundled for acute_myocardial_infarction.*copd.*knee"
    ):
        api.trial(spec, tmp_path / "ami")


def test_copd_utility_is_eq5d_by_gold_stage_placed_at_band_middles_in_litres():
    """Wacker 2016's GOLD 1-4 means at 90, 65, 40 and 20% of a 3.28 L predicted FEV1 (GLI-2012, a
    65-year-old man of 175 cm), interpolated between and held beyond."""
    from infusim.economics import _mapping
    from infusim.parameters import bundled

    knots = _mapping(bundled(), "copd", "fev1")
    assert [k["value"] for k in knots] == pytest.approx([round(3.28 * f, 2) for f in (0.2, 0.4, 0.65, 0.9)])
    assert [k["utility"] for k in knots] == [0.72, 0.81, 0.84, 0.85]


def test_knee_osteoarthritis_costs_the_harvest_and_injections_from_nhs_rows(tmp_path):
    """WOMAC total maps to utility by band (Spanish EQ-5D-5L); the autologous fat harvest (a day-case
    minor skin procedure, GBP 868.05) and the injection (outpatient joint injection, GBP 155.39) are
    NHS 2024/25 rows, in both arms (the saline arm is harvested too); the cells add one dose."""
    spec = yaml.safe_load((EXAMPLE.parent / "trial-knee-osteoarthritis.yaml").read_text())
    spec["trial"]["patients"] = 60
    spec["economics"] = {"currency": "GBP", "evidence_draws": 0}
    found = api.trial(spec, tmp_path / "oa").summary["economics"]
    assert found["settings"]["endpoint"] == "womac_total"
    assert found["by_arm"]["saline"]["cost"]["mean"] == pytest.approx(868.05 + 155.39)
    assert found["by_arm"]["msc_5e7"]["cost"]["mean"] == pytest.approx(868.05 + 155.39 + 54000)
    by_hand = _qalys_by_hand(
        tmp_path / "oa", 0.035, "womac_total", (12, 36, 60, 84), (0.829, 0.665, 0.464, 0.189)
    )
    for arm, value in by_hand.groupby(level=0).mean().items():
        assert found["by_arm"][arm]["qalys"]["mean"] == pytest.approx(value, rel=1e-7)


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"currency": "pounds"}, "economics.currency"),
        ({"discount": "-1%"}, "economics.discount"),
        ({"thresholds": [0]}, "economics.thresholds"),
        (
            {"costs": {"product_per_dose": 1, "product_per_million_cells": 1}},
            "economics.costs.product_per_dose",
        ),
        ({"costs": {"events": {"serious_infection": -5}}}, "economics.costs.events.serious_infection"),
    ],
)
def test_bad_economics_fields_are_one_line_errors(section, field):
    spec = _spec()
    spec["economics"] = section
    with pytest.raises(ScenarioError) as caught:
        api.as_scenario(spec)
    assert caught.value.field == field


def test_economics_without_a_trial_is_refused():
    spec = _spec()
    del spec["trial"]
    with pytest.raises(ScenarioError, match="needs a trial section"):
        api.as_scenario(spec)


def test_cli_reanalyses_and_refuses_another_scenario(stroke, tmp_path):
    spec, out, _ = stroke
    path = tmp_path / "scenario.yaml"
    path.write_text(
        yaml.safe_dump(spec | {"economics": {"currency": "GBP", "discount": "1.5%", "evidence_draws": 0}})
    )
    result = CliRunner().invoke(app, ["economics", str(path), str(out)])
    assert result.exit_code == 0, result.output
    assert "1.5% costs" in result.output and "highest cost-effective product price" in result.output
    other = copy.deepcopy(spec)
    other["administration"]["dose"] = "1e6 cells/kg"
    path.write_text(yaml.safe_dump(other))
    result = CliRunner().invoke(app, ["economics", str(path), str(out)])
    assert result.exit_code == 2
    assert "is not the scenario the trial" in result.output and "Traceback" not in result.output


def test_trial_report_shows_the_cost_effectiveness_section(stroke):
    _, out, _ = stroke
    page = (out / "report.html").read_text()
    assert "Cost-effectiveness (within the trial, GBP)" in page
    assert "acceptability curve" in page and "highest cost-effective product price" in page


def test_each_patients_qalys_and_costs_are_written(stroke):
    spec, out, _ = stroke
    found = economics.analyse(api.as_scenario(spec), out)  # other tests re-analyse the same folder
    table = pd.read_parquet(out / "economics.parquet")
    assert len(table) == 120 and set(table.columns) >= {"patient", "arm", "qalys", "cost", "cost_product"}
    by_hand = _qalys_by_hand(out, 0.035)
    mine = table.set_index(["arm", "patient"])["qalys"]
    for key, value in by_hand.items():
        assert mine[key] == pytest.approx(value, rel=1e-7, abs=1e-9)
    means = table.groupby("arm", observed=True)["cost"].mean()
    assert means["msc"] == pytest.approx(found["by_arm"]["msc"]["cost"]["mean"])


def test_a_remission_endpoint_counts_each_patients_remission_days(tmp_path):
    """Rate endpoints are recorded 1 or 0 per patient and visit: the utility of remission (0.78) or
    not (0.60), Kato 2023, between visits linearly, as for any endpoint."""
    spec = yaml.safe_load((EXAMPLE.parent / "trial-crohns-fistula-economics.yaml").read_text())
    spec["trial"]["patients"] = 80
    spec["economics"]["evidence_draws"] = 0
    found = api.trial(spec, tmp_path / "crohns").summary["economics"]
    by_hand = _qalys_by_hand(tmp_path / "crohns", 0.035, "combined_remission", (0, 1), (0.60, 0.78))
    for arm, value in by_hand.groupby(level=0).mean().items():
        assert found["by_arm"][arm]["qalys"]["mean"] == pytest.approx(value, rel=1e-7)
    # the day-case procedure in both arms (NHS FF41C), the list price in the cells arm
    assert found["by_arm"]["placebo"]["cost"]["mean"] == pytest.approx(2035.41)
    assert found["by_arm"]["msc"]["cost"]["mean"] == pytest.approx(2035.41 + 54000)


def test_after_a_loss_to_follow_up_the_last_value_is_carried_forward(tmp_path):
    spec = _spec()
    spec["trial"]["dropout"] = "30%"
    found = api.trial(spec, tmp_path / "dropout").summary["economics"]
    rows = pd.read_parquet(tmp_path / "dropout" / "patients")
    assert rows.groupby("patient").withdrawn_d.first().notna().mean() > 0.15
    page = (tmp_path / "dropout" / "report.html").read_text()
    assert "loss to follow-up (30% a year" in page and "lost to follow-up\n30% a year" in page
    by_hand = _qalys_by_hand(tmp_path / "dropout", 0.035)  # np.interp holds the last recorded value
    for arm, value in by_hand.groupby(level=0).mean().items():
        assert found["by_arm"][arm]["qalys"]["mean"] == pytest.approx(value, rel=1e-7)


def test_expected_value_of_perfect_information_by_hand():
    # two draws: cells better by 10 in one, worse by 30 in the other; on average control (0) is best
    assert economics.evpi([np.array([10.0, -30.0])]) == pytest.approx(5.0)  # mean(max(0, .)) - 0
    # a decision never in doubt is worth nothing to resolve
    assert economics.evpi([np.array([5.0, 7.0])]) == 0.0
    # two arms: best per draw 20 and 8, best on average arm 1 (mean 9)
    assert economics.evpi([np.array([20.0, -2.0]), np.array([4.0, 8.0])]) == pytest.approx(14.0 - 9.0)


def test_value_of_information_is_reported_per_threshold(stroke):
    _, _, found = stroke
    assert set(found["value_of_information"]) == {"25000", "35000"}
    assert all(v >= 0 for v in found["value_of_information"].values())


def test_the_public_function_survives_the_modules_import():
    """``infusim.cost_effectiveness`` is the API; the module ``infusim.economics`` is imported lazily
    and must not replace a function of the same name (it did when the function was called economics)."""
    import infusim
    import infusim.economics

    assert callable(infusim.cost_effectiveness) and infusim.economics is economics


def test_evidence_draws_carry_the_effects_posterior_into_the_intervals(stroke):
    """Each evidence draw is one replicate trial whose truth is drawn from the posterior: its arms'
    QALYs equal those computed by hand from that replicate's own rows, and the incremental QALY
    interval is wider than with the effect held at its median."""
    from infusim import safety
    from infusim.parameters import for_scenario
    from infusim.virtual_trial import simulate_chunk

    spec, out, held = stroke
    drawn = copy.deepcopy(spec)
    drawn["economics"]["evidence_draws"] = 40
    scenario = api.as_scenario(drawn)
    params = for_scenario(scenario)
    chosen = economics.settings(scenario, params)
    columns = patient_economics.exposures(scenario, out, params, chosen).columns
    replicates = economics._evidence_means(scenario, params, chosen, columns)
    utilities = np.array([params.entry(*c.key).value if c.kind == "qalys" else 0.0 for c in columns])
    for r in (0, 7):
        events = safety.chunk_events(scenario, r + 1, 0, 120, params)[0]
        rows = simulate_chunk(scenario, r + 1, 0, 120, params=params, uncertain=True, events=events)[
            0
        ].to_pandas()
        by_hand = _qalys_by_hand(rows, 0.035).groupby(level=0).mean()
        for a, arm in enumerate(("placebo", "msc")):
            assert replicates[r, a] @ utilities == pytest.approx(by_hand[arm], rel=1e-7)
    found = economics.analyse(scenario, out)
    assert found["settings"]["evidence_draws"] == 40 and found["settings"]["evidence_patients"] == 120
    width = np.diff(found["comparisons"]["msc"]["incremental_qalys"]["ci95"])[0]
    assert width > np.diff(held["comparisons"]["msc"]["incremental_qalys"]["ci95"])[0]
    economics.analyse(api.as_scenario(spec), out)  # leave the folder as the other tests expect


def test_no_icer_is_given_where_one_arm_dominates():
    assert economics.quadrant(-100.0, 0.1).startswith("dominant")
    assert economics.quadrant(100.0, -0.1).startswith("dominated")
    assert economics.quadrant(-100.0, -0.1) == "fewer QALYs at a lower cost"


def test_relapses_cost_qalys_at_the_rate_the_patients_relapse(tmp_path):
    """MS: 0.038 QALYs per relapse (Hawton 2016: -0.076 for 6 months) times the relapses implied by
    each patient's annualised rate over the discounted time alive, computed here with quad."""
    spec = yaml.safe_load((EXAMPLE.parent / "trial-ms-ahsct-economics.yaml").read_text())
    spec["trial"]["patients"] = 40
    spec["economics"]["evidence_draws"] = 0
    found = api.trial(spec, tmp_path / "ms").summary["economics"]
    spec["parameters"] = {"event_qaly_loss[multiple_sclerosis/relapse_rate]": 0}
    without = economics.analyse(api.as_scenario(spec), tmp_path / "ms")
    relapses = (
        _qalys_by_hand(tmp_path / "ms", 0.035, "relapse_rate", (0, 10), (0, 10)).groupby(level=0).mean()
    )
    for arm in ("usual_care", "ahsct"):
        loss = without["by_arm"][arm]["qalys"]["mean"] - found["by_arm"][arm]["qalys"]["mean"]
        assert loss == pytest.approx(0.038 * relapses[arm], rel=1e-7)
    assert relapses["ahsct"] < relapses["usual_care"]  # the reset lowers the relapse rate


def test_every_arm_must_have_patients_for_an_analysis(tmp_path):
    spec = _spec()
    spec["trial"]["arms"] = [
        {"name": "placebo", "ratio": 1, "administration": "placebo"},
        {"name": "msc", "ratio": 3},
    ]
    spec["trial"]["patients"] = 3
    with pytest.raises(InfusimError) as caught:
        api.trial(spec, tmp_path / "small")
    assert caught.value.field == "trial.patients" and "give 4 or more" in str(caught.value)
    spec["trial"]["patients"] = 40
    spec["economics"].update(evidence_draws=5, evidence_patients=3)
    with pytest.raises(InfusimError) as caught:
        api.trial(spec, tmp_path / "small")
    assert caught.value.field == "economics.evidence_patients"


def test_a_schedules_cells_are_paid_at_each_administrations_own_dose(tmp_path):
    """Product priced per million cells: each administration of a schedule at its own dose, discounted
    from its day and paid only by patients alive then (written here from the patients' weights)."""
    spec = _spec(costs={"product_per_million_cells": 10.0})
    spec["trial"]["patients"] = 60
    spec["simulation"]["duration"] = "120 day"
    spec["trial"]["visits"] = ["30 day", "120 day"]
    spec["trial"]["primary"]["at"] = "120 day"
    plan = [(0, 2e6), (30, 1e6), (90, 5e5)]
    spec["administration"]["dose"] = "1e6 cells/kg"
    spec["administration"]["schedule"] = [
        {"at": f"{day} day", **({"dose": f"{dose:g} cells/kg"} if dose != 1e6 else {})} for day, dose in plan
    ]
    api.trial(spec, tmp_path / "schedule")
    costs = pd.read_parquet(tmp_path / "schedule" / "economics.parquet")
    patients = pd.read_parquet(tmp_path / "schedule" / "patients").query("replicate == 0")
    patients = patients.groupby("patient")[["body_weight_kg", "died_d"]].first()
    cells = costs[costs.arm == "msc"].join(patients, on="patient")
    alive = cells.died_d.fillna(np.inf).to_numpy()
    expected = (
        sum(dose / 1e6 * 10.0 * 1.035 ** (-day / 365.25) * (alive > day) for day, dose in plan)
        * cells.body_weight_kg.to_numpy()
    )
    assert np.allclose(cells.cost_product.to_numpy(), expected, rtol=1e-12)
    assert (costs[costs.arm == "placebo"].cost_product == 0).all()
