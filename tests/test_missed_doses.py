"""Missed administrations in multi-dose trials (``trial.missed_doses``): cells, harms and costs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from infusim import api
from infusim.errors import ScenarioError
from infusim.population import doses_taken
from infusim.scenario import from_dict
from infusim.virtual_trial import simulate_chunk
from tests.helpers import EXAMPLES

SCHEDULES = EXAMPLES / "trial-copd-schedules.yaml"


def _schedules(missed: float, patients: int = 400) -> dict:
    spec = yaml.safe_load(SCHEDULES.read_text())
    spec["trial"] |= {"patients": patients, "missed_doses": missed}
    return spec


def test_the_first_dose_is_always_given_and_later_ones_are_missed_at_the_share():
    taken = doses_taken(7, np.arange(20_000), 4, 0.25)
    assert taken[:, 0].all()
    assert np.allclose(taken[:, 1:].mean(axis=0), 0.75, atol=0.01)
    assert abs(np.corrcoef(taken[:, 1], taken[:, 2])[0, 1]) < 0.03  # independent administrations
    np.testing.assert_array_equal(doses_taken(7, np.arange(5_000, 9_000), 3, 0.25), taken[5_000:9_000, :3])
    assert doses_taken(7, np.arange(10), 4, 0.0).all()


def test_patients_who_miss_doses_get_fewer_cells_and_those_who_miss_none_are_unchanged():
    """Intention to treat: the four-dose arms' mean effect falls when half the later doses are
    missed, the one-dose arm's does not; a patient given every dose has, visit for visit, the record
    they had without missed doses (the same draws), and one who missed any has a smaller effect."""
    rows = {}
    for missed in (0.0, 0.5):
        table, _ = simulate_chunk(from_dict(_schedules(missed)), 0, 0, 400)
        rows[missed] = table.to_pandas().query("time_d == 120").set_index("patient")
    full, half = rows[0.0], rows[0.5]
    effect = {k: (v.fev1 - v.fev1_untreated).groupby(v.arm, observed=True).mean() for k, v in rows.items()}
    assert effect[0.5]["monthly"] < effect[0.0]["monthly"] - 0.01
    assert effect[0.5]["single"] == pytest.approx(effect[0.0]["single"], abs=1e-12)
    monthly = half[half.arm == "monthly"]
    assert monthly.doses_given.mean() == pytest.approx(2.5, abs=0.3)  # doses at days 0, 30, 60, 90
    every = monthly.index[monthly.doses_given == 4]
    some = monthly.index[monthly.doses_given < 4]
    assert len(every) and len(some)
    pd.testing.assert_series_equal(half.loc[every, "fev1"], full.loc[every, "fev1"])
    # the same patient, measurement noise and untreated twin in both runs: only the cells differ
    alive = full.loc[some, "fev1"].notna() & half.loc[some, "fev1"].notna()
    gain = {k: (v.loc[some, "fev1"] - v.loc[some, "fev1_untreated"])[alive] for k, v in rows.items()}
    assert len(gain[0.5]) > 20 and (gain[0.5] < gain[0.0]).mean() > 0.95


def test_a_missed_administration_has_no_fever_or_procedure_risk(tmp_path):
    """Fever follows an administration within its window: no patient has one after a dose they
    missed, and the four-dose arm has fewer fevers when most later doses are missed."""
    fevers = {}
    for missed in (0.0, 0.9):
        out = tmp_path / f"m{missed}"
        api.trial(_schedules(missed, 300), out)
        events = pd.read_parquet(out / "adverse_events").query("arm == 'monthly' and event == 'fever'")
        fevers[missed] = len(events)
        if missed:
            rows = pd.read_parquet(out / "patients").query("replicate == 0 and arm == 'monthly'")
            given = rows.pivot_table(index="patient", columns="time_d", values="doses_given")
            # doses at 0, 30, 60, 90 days; visits at 0, 30, 120, 365: by day 30, dose 2 or not
            took_second = given[30.0] == 2
            after_second = events[(events.time_d >= 30) & (events.time_d < 60)]
            assert took_second.reindex(after_second.patient).all()
    assert fevers[0.9] < 0.6 * fevers[0.0]


def test_a_missed_administration_is_neither_delivered_nor_paid(tmp_path):
    spec = _schedules(0.5, 120)
    spec["economics"] = {
        "currency": "GBP",
        "evidence_draws": 0,
        "costs": {"product_per_million_cells": 10.0, "delivery_per_dose": 100.0},
    }
    api.trial(spec, tmp_path / "t")
    costs = pd.read_parquet(tmp_path / "t" / "economics.parquet").set_index("patient")
    rows = pd.read_parquet(tmp_path / "t" / "patients").query("replicate == 0 and arm == 'monthly'")
    given = rows.pivot_table(index="patient", columns="time_d", values="doses_given")
    first = rows.groupby("patient")[["body_weight_kg", "died_d"]].first()
    # doses at 0, 30, 60 and 90 days; the visits at day 30 and 120 tell which were given
    second = (given[30.0] == 2).astype(float)
    later = given[120.0] - 1 - second  # doses 3 and 4 together
    assert set(later.unique()) <= {0.0, 1.0, 2.0} and later.between(0, 2).all()
    alive = first.died_d.fillna(np.inf)
    discount = {day: 1.035 ** (-day / 365.25) * (alive > day) for day in (0, 30, 60, 90)}
    paid_first_two = discount[0] + second * discount[30]
    delivery = costs.loc[given.index, "cost_delivery"]
    # doses 3 and 4 sit between the two visits: their share is bounded by what was given
    low = 100.0 * (paid_first_two + later * np.minimum(discount[60], discount[90]))
    high = 100.0 * (paid_first_two + later * np.maximum(discount[60], discount[90]))
    assert ((delivery >= low - 1e-9) & (delivery <= high + 1e-9)).all()
    # equal monthly doses: the product is paid for exactly the administrations delivered
    product = costs.loc[given.index, "cost_product"] / (first.body_weight_kg * 10.0)
    np.testing.assert_allclose(product, delivery / 100.0, rtol=1e-6)
    none_missed = costs.loc[given.index[(given[120.0] == 4).to_numpy()]]
    dose = 1e6 * first.body_weight_kg.loc[none_missed.index] / 1e6 * 10.0  # 1e6 cells/kg each
    expected = dose * sum(discount[d].loc[none_missed.index] for d in (0, 30, 60, 90))
    np.testing.assert_allclose(none_missed.cost_product, expected, rtol=1e-6)  # float32 rows


def test_missed_doses_need_an_arm_with_more_than_one_administration():
    spec = yaml.safe_load((EXAMPLES / "trial-copd.yaml").read_text())
    spec["trial"]["missed_doses"] = "10%"
    with pytest.raises(ScenarioError) as caught:
        from_dict(spec)
    assert caught.value.field == "trial.missed_doses" and "more than one" in caught.value.message
    spec = _schedules("120%")
    with pytest.raises(ScenarioError) as caught:
        from_dict(spec)
    assert caught.value.field == "trial.missed_doses"


def test_a_patient_who_misses_doses_is_the_reference_model_given_only_the_doses_taken():
    """The production model of three patients with masks (all four doses; the 1st and 3rd; the 1st
    only) against the independent reference model of schedules that list only those doses. The
    homing signal of COPD is constant, so the capture is the same whether or not a missed dose's
    day switches it; cells are conserved to 1e-9 of what each patient was given."""
    from infusim.model.kinetics import assemble
    from infusim.parameters import for_scenario
    from infusim.reference import reference_cells
    from infusim.scenario import load
    from infusim.solve import solve

    scenario = load(EXAMPLES / "msc-schedule-copd-human.yaml")
    masks = np.array([[1, 1, 1, 1], [1, 0, 1, 0], [1, 0, 0, 0]], dtype=bool)
    times = np.array([1.0, 24.0, 61 * 24.0, 91 * 24.0, 150 * 24.0])
    weight = np.full(3, scenario.patient.body_weight_kg)
    model = assemble(
        scenario, patients=3, params=for_scenario(scenario), body_weight_kg=weight, doses_taken=masks
    )
    states = solve(model, times).patient_states()  # (patients, times, states)
    raw = yaml.safe_load((EXAMPLES / "msc-schedule-copd-human.yaml").read_text())
    for patient, mask in enumerate(masks):
        spec = dict(raw, administration=dict(raw["administration"]))
        spec["administration"]["schedule"] = [
            e for e, taken in zip(raw["administration"]["schedule"], mask, strict=True) if taken
        ]
        ref = reference_cells(from_dict(spec), times)
        given = ref.pop("given")
        total = states[patient].sum(axis=1)
        np.testing.assert_allclose(total, given, rtol=1e-9)
        for compartment in ("lungs", "liver", "spleen"):
            mine = sum(
                states[patient, :, i]
                for i, s in enumerate(model.states)
                if s.kind == "live" and s.compartment == compartment
            )
            np.testing.assert_allclose(mine, ref[compartment], rtol=1e-6, atol=1e-6 * given.max())


def test_the_summary_counts_the_patients_given_every_administration_as_the_rows_do(tmp_path):
    """``summary.json`` adherence per arm against the rows' ``doses_given`` at the last visit (all four
    doses come before day 365), and the four-dose arms' share near (1 - 0.3)^3 = 0.343; chunking does
    not change it; without missed doses there is no adherence section."""
    out = tmp_path / "t"
    summary = api.trial(_schedules(0.3, 600), out, chunk_size=170).summary
    rows = pd.read_parquet(out / "patients").query("replicate == 0 and time_d == 365")
    for arm, found in summary["adherence"].items():
        given = rows[rows.arm == arm].doses_given
        assert found["patients"] == len(given)
        assert found["given_all"] == int((given == found["administrations_scheduled"]).sum())
        assert found["administrations_mean"] == pytest.approx(given.mean(), rel=1e-9)
    monthly = summary["adherence"]["monthly"]
    assert monthly["administrations_scheduled"] == 4
    assert abs(monthly["given_all_share"] - 0.343) < 3 * np.sqrt(0.343 * 0.657 / monthly["patients"])
    assert summary["adherence"]["single"]["given_all_share"] == 1.0
    whole = api.trial(_schedules(0.3, 600), tmp_path / "whole").summary
    assert whole["adherence"] == summary["adherence"]
    assert "adherence" not in api.trial(_schedules(0.0, 60), tmp_path / "none").summary
    assert "Given every administration" in (out / "report.html").read_text()
