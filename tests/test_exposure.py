"""Exposure per compartment (peak, area, half-life at the end) against the independent reference
model solved on a fine grid and integrated by scipy, and against a closed form."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.integrate

from infusim import exposure
from infusim.model.kinetics import assemble
from infusim.parameters import for_scenario
from infusim.reference import reference_cells
from infusim.scenario import load
from tests.helpers import EXAMPLES, scenario


def fine_reference(s, points_per_segment: int = 301) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The reference model on a fine grid: per segment between dose events, log-spaced points."""
    end = s.simulation.duration_h
    admin = s.administration
    edges = sorted({0.0, end, *admin.starts_h, *(t + admin.effective_duration_h for t in admin.starts_h)})
    times = np.unique(
        np.concatenate(
            [
                a + np.concatenate([[0.0], np.geomspace(1e-4, b - a, points_per_segment)])
                for a, b in itertools.pairwise(edges)
            ]
        )
    )
    return times, reference_cells(s, times)


def simpson_by_segment(times: np.ndarray, values: np.ndarray, edges: list[float]) -> float:
    total = 0.0
    for a, b in itertools.pairwise(edges):
        inside = (times >= a) & (times <= b)
        total += scipy.integrate.simpson(values[inside], x=times[inside])
    return total


@pytest.mark.parametrize("name", ["msc-iv-human", "msc-schedule-copd-human", "msc-intrathecal-ms-human"])
def test_areas_and_peaks_agree_with_the_reference_model_integrated_by_scipy(name):
    s = load(EXAMPLES / f"{name}.yaml")
    params = for_scenario(s)
    found = exposure.table(s, assemble(s, params=params), params).set_index("compartment")
    times, ref = fine_reference(s)
    admin = s.administration
    edges = sorted(
        {
            0.0,
            s.simulation.duration_h,
            *admin.starts_h,
            *(t + admin.effective_duration_h for t in admin.starts_h),
        }
    )
    given = ref["given"][-1]
    live = {k: v for k, v in ref.items() if k != "given" and not k.startswith("dead:")}
    live["whole_body"] = sum(live.values())
    checked = 0
    for compartment, values in live.items():
        expected = simpson_by_segment(times, values, edges) / 24.0
        if expected < 1e-6 * found.loc["whole_body", "live_cell_days"]:
            continue  # compartments that hold next to nothing
        row = found.loc[compartment]
        assert row.live_cell_days == pytest.approx(expected, rel=5e-4), compartment
        assert row.days_per_cell_given == pytest.approx(expected / given, rel=5e-4)
        assert row.peak_cells == pytest.approx(values.max(), rel=1e-3), compartment
        checked += 1
    assert checked >= 5


def test_a_local_injection_that_only_dies_has_the_closed_form_area_and_half_life():
    """Cells injected into a joint that settle at once and die at rate k: area = N / k (to the
    horizon, N (1 - e^{-kT}) / k), half-life ln 2 / k, peak N at time 0."""
    s = scenario(
        administration={"route": "local", "into": "joints", "dose": "1e7 cells", "duration": None},
        parameters={
            "local_retained_fraction[joints]": 1.0,
            "local_settling_time[joints]": "1e-6 h",
            "implant_loss_rate[joints]": "0.01 1/h",
            "engraftment_rate[msc]": "0 1/h",
        },
        simulation={"duration": "28 day", "outputs": ["28 day"]},
    )
    params = for_scenario(s)
    found = exposure.table(s, assemble(s, params=params), params).set_index("compartment")
    k, horizon, dose = 0.01, 28 * 24.0, 1e7
    joints = found.loc["joints"]
    assert joints.live_cell_days == pytest.approx(dose * -np.expm1(-k * horizon) / k / 24.0, rel=1e-5)
    assert joints.half_life_at_end_h == pytest.approx(np.log(2) / k, rel=1e-5)
    assert joints.peak_cells == pytest.approx(dose, rel=1e-4) and joints.peak_time_h < 0.02


def test_the_area_rule_is_exact_for_an_exponential_and_linear_where_cells_rise():
    t = np.geomspace(1e-2, 100.0, 30)
    assert exposure.area(t, 5.0 * np.exp(-0.3 * t)) == pytest.approx(
        5.0 / 0.3 * (np.exp(-0.3 * t[0]) - np.exp(-0.3 * t[-1])), rel=1e-12
    )
    assert exposure.area(np.array([0.0, 2.0]), np.array([0.0, 4.0])) == pytest.approx(4.0)


def test_live_cell_days_to_a_time_as_an_output_of_uncertainty_and_sensitivity_runs():
    """``live_cell_days:lungs+target@7 day`` (ensemble grammar): the reference model's area to day 7."""
    from infusim.ensemble import evaluate, parse_output

    s = load(EXAMPLES / "msc-iv-human.yaml")
    output = parse_output("live_cell_days:lungs+target@7 day", s)
    assert output.unit == "cell-days"
    (found,) = evaluate(s, [output], {}, 1)[0]
    times, ref = fine_reference(s)
    upto = times <= 168.0
    edges = [0.0, 0.5, 168.0]  # the infusion, then the rest of the week
    expected = simpson_by_segment(times[upto], (ref["lungs"] + ref["target"])[upto], edges) / 24.0
    assert found == pytest.approx(expected, rel=5e-3)  # the coarse grid of many parameter sets
    params = for_scenario(s)
    whole = (
        exposure.table(s, assemble(s), params).set_index("compartment").loc["whole_body", "live_cell_days"]
    )
    (to_end,) = evaluate(s, [parse_output("live_cell_days:whole_body@28 day", s)], {}, 1)[0]
    assert to_end == pytest.approx(whole, rel=5e-3)


def test_per_gram_exposure_of_the_injured_tissue_uses_the_lesion_mass():
    """Live cell-days per gram of the infarct: the area over the lesion's mass, written from
    docs/model.md (organ volume x severity x lesion_fraction_max, density of water)."""
    from tests.test_bridge import lesion_mass_g

    s = load(EXAMPLES / "msc-iv-human.yaml")
    params = for_scenario(s)
    target = exposure.table(s, assemble(s, params=params), params).set_index("compartment").loc["target"]
    assert target.mass_g == pytest.approx(lesion_mass_g(s), rel=1e-12)
    assert target.live_cell_days_per_g == pytest.approx(target.live_cell_days / lesion_mass_g(s), rel=1e-12)
    assert target.peak_per_g == pytest.approx(target.peak_cells / lesion_mass_g(s), rel=1e-12)


@pytest.mark.parametrize("name", ["msc-iv-human", "msc-schedule-copd-human", "condition-knee-osteoarthritis"])
def test_a_trial_patients_exposure_to_each_visit_is_the_dense_area_within_half_a_percent(name):
    s = load(EXAMPLES / f"{name}.yaml")
    params = for_scenario(s)
    model = assemble(s, params=params)
    dense = exposure.table(s, model, params).set_index("compartment").live_cell_days
    end_d = s.simulation.duration_h / 24.0
    found = exposure.to_visits(s, model, np.array([end_d / 2, end_d]))
    assert found["target"][0, 1] == pytest.approx(dense["target"], rel=5e-3)
    assert found["whole_body"][0, 1] == pytest.approx(dense["whole_body"], rel=5e-3)
    assert 0 < found["whole_body"][0, 0] < found["whole_body"][0, 1]


def test_trial_rows_carry_each_patients_exposure_per_gram_of_lesion_and_per_kg():
    """With trial.exposure: in the cells arm positive and growing over the visits, per gram of the
    patient's own lesion (docs: organ volume x severity x lesion_fraction_max) and per kg; no cells,
    no exposure; without it, no such columns."""
    import yaml

    from infusim.virtual_trial import simulate_chunk

    spec = yaml.safe_load((EXAMPLES / "trial-copd.yaml").read_text())
    spec["trial"]["patients"] = 40
    spec["trial"]["exposure"] = True
    s = __import__("infusim.scenario", fromlist=["from_dict"]).from_dict(spec)
    table, _ = simulate_chunk(s, 0, 0, 40)
    rows = table.to_pandas()
    plain, _ = simulate_chunk(
        s.model_copy(update={"trial": s.trial.model_copy(update={"exposure": False})}), 0, 0, 40
    )
    assert "live_cell_days_per_kg" not in plain.column_names
    assert plain.equals(
        table.drop(["target_cell_days_per_g", "live_cell_days_per_kg"]).replace_schema_metadata(
            plain.schema.metadata
        )
    )
    assert table.schema.metadata[b"unit:target_cell_days_per_g"] == b"cell-days per g of injured tissue"
    placebo, cells = rows[rows.arm == "placebo"], rows[rows.arm == "msc"]
    assert (placebo.target_cell_days_per_g == 0).all() and (placebo.live_cell_days_per_kg == 0).all()
    later = cells[cells.time_d > 0]
    assert (later.target_cell_days_per_g > 0).all() and (later.live_cell_days_per_kg > 0).all()
    growing = (
        cells.sort_values("time_d")
        .groupby("patient")
        .live_cell_days_per_kg.apply(lambda x: bool(np.all(np.diff(x.to_numpy()) >= 0)))
    )
    assert growing.all()
    # the patients' own cell model, areas to the last visit, over a lesion mass written from docs
    from infusim.population import cohort_model, replicate_seed, sample_cohort

    p = for_scenario(s)
    cohort = sample_cohort(s, replicate_seed(s.simulation.seed, 0), np.arange(40), p)
    chosen = np.flatnonzero(rows.groupby("patient").arm.first().to_numpy() == "msc")
    group = cohort.take(chosen)
    arm = s.for_arm(s.trial.arms[1])
    last = float(cells.time_d.max())
    area = exposure.to_visits(arm, cohort_model(arm, group, p), np.array([last]))
    lesion_g = (
        p.get("volume_fraction", "human/lungs", "L/kg")
        * group.body_weight_kg
        * 1000.0
        * group.severity
        * p.get("lesion_fraction_max", "lungs", "")
    )
    recorded = cells[cells.time_d == last].set_index("patient").loc[group.index]
    np.testing.assert_allclose(recorded.target_cell_days_per_g, area["target"][:, 0] / lesion_g, rtol=1e-6)
    np.testing.assert_allclose(
        recorded.live_cell_days_per_kg, area["whole_body"][:, 0] / group.body_weight_kg, rtol=1e-6
    )
