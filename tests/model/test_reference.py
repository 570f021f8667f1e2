"""The production model against an independent reference written from docs/model.md.

``infusim.reference`` spells out every transfer of docs/model.md in a plain right-hand side and
integrates it with Radau; here it must agree with ``assemble`` + ``solve`` to 1e-6 of the cells
given, per compartment and per cause of death, for every bundled example and for a few routes the
examples do not use. The mutation tests change one routing rule of the production model (keeping
cell conservation intact) and show that the comparison catches it, which a comparison of two
integrators of the same assembled matrix cannot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from infusim.model import kinetics
from infusim.model.kinetics import assemble
from infusim.parameters import for_scenario
from infusim.reference import reference_cells
from infusim.scenario import Scenario, load
from infusim.solve import solve
from tests.helpers import scenario as make_scenario

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "infusim" / "examples"
#: Longest horizon compared (h): past the rejection onset (7 days) and the gvhd schedule's 8 doses.
HORIZON_H = 28 * 24.0
#: Largest accepted |production - reference|, as a fraction of the cells given.
TOLERANCE = 1e-6
#: Smallest discrepancy (fraction of the cells given) a mutated routing rule must produce.
DETECTED = 1e-3

#: Routes and sites the bundled examples do not reach.
EXTRA = {
    # thawed MSC held 45 min in Ringer's, then a 2 h drip: viability falls in the bag
    "iv-thawed-msc-held-in-crystalloid": {
        "product": {
            "tissue_source": "adipose",
            "viability": 0.93,
            "cryopreserved": True,
            "carrier": "crystalloid",
            "hold": "45 min",
        },
        "administration": {"duration": "2 h"},
    },
    # intra-arterial into a portal organ with an injured liver: portal cells meet the target
    "ia-pancreas-liver-target": {
        "condition": {"site": "liver", "severity": 0.7},
        "administration": {"route": "intra_arterial", "into": "pancreas", "duration": "20 min"},
    },
    # intra-arterial into an organ that is not the condition's site
    "ia-kidneys-heart-target": {
        "product": {"cell_type": "bm_mnc", "tissue_source": "bone_marrow"},
        "condition": {"site": "heart", "severity": 0.5},
        "administration": {"route": "intra_arterial", "into": "kidneys", "duration": "10 min"},
    },
    # left-ventricular injection (rat "intracardiac" studies): arterial blood first, lungs skipped
    "lv-rat-heart-target": {
        "species": "rat",
        "patient": {"body_weight": "250 g"},
        "condition": {"site": "heart", "severity": 0.5},
        "administration": {
            "route": "intra_arterial",
            "into": "left_ventricle",
            "dose": "1e6 cells",
            "duration": "0 min",
        },
    },
    # local injection without a condition: depot and implant count in the organ
    "local-muscle-healthy": {
        "product": {"viability": 0.8},
        "administration": {"route": "local", "into": "muscle", "dose": "1e7 cells", "duration": None},
    },
    # intrathecal marrow cells in a rat after a stroke: the depot counts in the healthy brain, not the lesion
    "intrathecal-rat-stroke": {
        "species": "rat",
        "patient": {"body_weight": "250 g"},
        "product": {"cell_type": "bm_mnc", "tissue_source": "bone_marrow"},
        "condition": {"site": "brain", "severity": 0.5},
        "administration": {"route": "intrathecal", "dose": "1e6 cells", "duration": None},
    },
    # MSC into a mouse's lateral ventricle, with the settled share set by the scenario (0.8): the
    # intraventricular rows, not the intrathecal ones, and the mouse's CSF turnover
    "intraventricular-mouse-own-share": {
        "species": "mouse",
        "patient": {"body_weight": "25 g"},
        "administration": {"route": "intraventricular", "dose": "1e5 cells", "duration": None},
        "parameters": {"local_retained_fraction[intraventricular]": "0.8"},
    },
    # haematopoietic cells homing to an injured marrow: target and marrow both engraft
    "hsc-iv-marrow-target": {
        "product": {"cell_type": "hsc", "tissue_source": "cord_blood", "viability": 0.95},
        "condition": {"site": "bone_marrow", "severity": 0.8},
        "administration": {"route": "intravenous", "dose": "5e6 cells/kg", "duration": "30 min"},
    },
    # IV marrow cells into a rat heart a day after the infarct, again at days 4 and 8 (the rodent
    # homing signal falls from day 1): each dose's capture follows its own day's signal
    "iv-repeat-recent-infarct-rat": {
        "species": "rat",
        "patient": {"body_weight": "250 g"},
        "product": {"cell_type": "bm_mnc", "tissue_source": "bone_marrow"},
        "condition": {"site": "heart", "severity": 0.6, "onset": "1 day"},
        "administration": {
            "dose": "5e6 cells",
            "duration": "5 min",
            "repeat": {"count": 3, "interval": "3 day"},
        },
        "simulation": {"duration": "10 day", "outputs": ["10 day"]},
    },
    # allogeneic boluses in a small rat, the second one after the rejection onset
    "allo-bolus-repeat-rat": {
        "species": "rat",
        "patient": {"body_weight": "300 g"},
        "product": {"donor": "allogeneic", "hla_mismatches": 2, "diameter": "16 um", "viability": 0.85},
        "condition": {"site": "kidneys", "severity": 0.4},
        "administration": {
            "dose": "1e6 cells",
            "duration": "0 min",
            "repeat": {"count": 2, "interval": "10 day"},
        },
        "simulation": {"duration": "20 day", "outputs": ["20 day"]},
    },
    # uneven doses soon after an infarct: each administration's capture follows the homing signal
    # on its own day (the signal rises and fades over the first weeks)
    "schedule-recent-infarct-rat": {
        "species": "rat",
        "patient": {"body_weight": "250 g"},
        "product": {"cell_type": "bm_mnc", "tissue_source": "bone_marrow"},
        "condition": {"site": "heart", "severity": 0.6, "onset": "1 day"},
        "administration": {
            "dose": "5e6 cells",
            "duration": "5 min",
            "schedule": [
                {"at": "0 day"},
                {"at": "2 day", "dose": "2e7 cells"},
                {"at": "9 day", "dose": "1e6 cells"},
            ],
        },
        "simulation": {"duration": "14 day", "outputs": ["14 day"]},
    },
    # a schedule of unequal allogeneic doses at uneven times, the last one after the rejection onset
    "allo-schedule-human": {
        "product": {"donor": "allogeneic", "hla_mismatches": 3},
        "condition": {"name": "ischemic_heart_failure"},
        "administration": {
            "dose": "1e6 cells/kg",
            "duration": "30 min",
            "schedule": [{"at": "0 day"}, {"at": "2 day", "dose": "4e6 cells/kg"}, {"at": "25 day"}],
        },
        "simulation": {"duration": "40 day", "outputs": ["40 day"]},
    },
}


def examples() -> list[str]:
    return sorted(p.stem for p in EXAMPLES.glob("*.yaml"))


def output_times(scenario: Scenario, horizon_h: float = HORIZON_H) -> np.ndarray:
    """10 times (h), log-spaced from 0.1 h to the end of the simulation or ``horizon_h``."""
    end = min(scenario.simulation.duration_h, horizon_h)
    return np.round(np.geomspace(0.1, end, 10), 6)


def production_cells(scenario: Scenario, times_h: np.ndarray) -> dict[str, np.ndarray]:
    """Cells per output compartment (live) and per ``dead:<cause>`` from the production model."""
    model = assemble(scenario, params=for_scenario(scenario))
    states = solve(model, times_h).patient_states()[0]
    out: dict[str, np.ndarray] = {}
    for i, state in enumerate(model.states):
        if state.kind in ("live", "dead"):
            key = state.compartment if state.kind == "live" else state.name
            out[key] = out.get(key, 0.0) + states[:, i]
    return out


def discrepancy(scenario: Scenario, times_h: np.ndarray) -> tuple[float, str]:
    """Largest |production - reference| over compartments and times, as a fraction of cells given.

    Also checks that both conserve cells, live + dead = given, to 1e-9 of the dose (so a mutation
    caught here would pass a conservation test).
    """
    ref = reference_cells(scenario, times_h)
    given = ref.pop("given")
    prod = production_cells(scenario, times_h)
    assert set(prod) <= set(ref), f"compartments missing from the reference: {set(prod) - set(ref)}"
    assert np.max(np.abs(sum(ref.values()) - given)) < 1e-9 * given.max(), "reference loses cells"
    assert np.max(np.abs(sum(prod.values()) - given)) < 1e-9 * given.max(), "production loses cells"
    worst, where = 0.0, ""
    for key, values in ref.items():
        diff = np.abs(prod.get(key, 0.0) - values) / given.max()
        if diff.max() > worst:
            worst, where = float(diff.max()), f"{key} at {times_h[int(diff.argmax())]:g} h"
    return worst, where


def example(name: str) -> Scenario:
    return load(EXAMPLES / f"{name}.yaml")


def test_reference_conserves_cells_and_counts_what_was_given():
    scenario = example("condition-copd")  # an infusion of 30 min from t = 0
    times = np.array([0.0, 0.25, 0.5, 1.0])
    ref = reference_cells(scenario, times)
    given = ref.pop("given")
    dose = scenario.dose_cells
    assert np.allclose(given, [0.0, dose / 2, dose, dose], rtol=1e-12)
    assert np.allclose(sum(ref.values()), given, rtol=0, atol=1e-9 * dose)


@pytest.mark.parametrize("name", examples())
def test_reference_agrees_with_production(name):
    scenario = example(name)
    worst, where = discrepancy(scenario, output_times(scenario))
    assert worst < TOLERANCE, f"{name}: production and reference differ by {worst:.3g} of the dose ({where})"


@pytest.mark.parametrize("name", sorted(EXTRA))
def test_reference_agrees_on_routes_the_examples_miss(name):
    scenario = make_scenario(**EXTRA[name])
    worst, where = discrepancy(scenario, output_times(scenario))
    assert worst < TOLERANCE, f"{name}: production and reference differ by {worst:.3g} of the dose ({where})"


# --- mutation tests: one routing rule of the production model changed, conservation kept ---------


def mutate_flows(monkeypatch, change) -> None:
    """Route every ``_Builder.flow`` call through ``change(source, target, rate, description, formula)``,
    which returns the (source, target, rate) to add instead."""
    original = kinetics._Builder.flow

    def flow(self, source, target, rate, description, formula):
        source, target, rate = change(source, target, np.asarray(rate, dtype=float), description, formula)
        original(self, source, target, rate, description, formula)

    monkeypatch.setattr(kinetics._Builder, "flow", flow)


def assert_detected(scenario: Scenario) -> float:
    worst, where = discrepancy(scenario, output_times(scenario))
    assert worst > DETECTED, f"mutation not detected: largest discrepancy {worst:.3g} of the dose ({where})"
    return worst


def test_mutation_lungs_release_into_venous_blood_is_detected(monkeypatch):
    """Docs: arrested cells leave the lungs downstream, into arterial blood (HSC marginate there)."""

    def change(source, target, rate, description, formula):
        if source == "lungs" and target == "arterial_blood":
            target = "venous_blood"
        return source, target, rate

    mutate_flows(monkeypatch, change)
    # a mouse bolus: haematopoietic cells marginate in the narrow lung capillaries and leave in minutes
    mouse = make_scenario(
        species="mouse",
        patient={"body_weight": "25 g"},
        product={"cell_type": "hsc", "tissue_source": "peripheral_blood", "viability": 0.95},
        administration={"dose": "1e6 cells", "duration": "0 min"},
    )
    assert_detected(mouse)


def test_mutation_doubled_portal_arrest_in_liver_is_detected(monkeypatch):
    """Cells leaving gut, spleen and pancreas are held in the liver twice as often (and pass less)."""
    extra = {}

    def change(source, target, rate, description, formula):
        if description == "arrest in liver via portal vein":
            organ = formula.split("*")[0].removeprefix("Q_")
            extra[organ] = rate
            rate = 2 * rate
        elif description == "passage to venous blood":
            organ = formula.split("*")[0].removeprefix("Q_")
            rate = rate - extra.pop(organ, 0.0)
        return source, target, rate

    mutate_flows(monkeypatch, change)
    assert_detected(example("hsc-iv-human"))


def test_mutation_target_release_not_slowed_by_injury_is_detected(monkeypatch):
    """Docs: release from the injured target is divided by 1 + g * severity."""
    # intracoronary MSC: the infarct holds about a tenth of the dose, and MSC release as fast as they die
    scenario = make_scenario(
        condition={"site": "heart", "severity": 0.5},
        administration={
            "route": "intra_arterial",
            "into": "heart",
            "dose": "1e7 cells",
            "duration": "10 min",
        },
    )
    gain = 9.0 * scenario.condition.severity

    def change(source, target, rate, description, formula):
        if source == "target" and description == "release to blood":
            rate = rate * (1 + gain)
        return source, target, rate

    mutate_flows(monkeypatch, change)
    assert_detected(scenario)


def test_mutation_nonviable_cells_infused_alive_is_detected(monkeypatch):
    """Docs: the non-viable share of a dose goes to ``dead:nonviable``, not into venous blood."""
    original = kinetics.Dose

    def dose(time_h, duration_h, amount, split, *args):
        split = dict(split)
        split["venous_blood"] = split.get("venous_blood", 0.0) + split.pop("dead:nonviable")
        return original(time_h, duration_h, amount, split, *args)

    monkeypatch.setattr(kinetics, "Dose", dose)
    assert_detected(example("msc-iv-human"))


def test_mutation_in_bag_viability_loss_ignored_is_detected(monkeypatch):
    """Docs (Routes, in-bag viability): thawed MSC die in the carrier during the hold and the drip."""
    monkeypatch.setattr(kinetics, "viable_share", lambda scenario, params: scenario.product.viability)
    assert_detected(make_scenario(**EXTRA["iv-thawed-msc-held-in-crystalloid"]))


def test_mutation_later_doses_keep_the_first_doses_homing_signal_is_detected(monkeypatch):
    """Docs (Time since injury): each dose's capture follows the homing signal on its own day."""
    monkeypatch.setattr(kinetics, "_signal_switches", lambda *args: ())
    assert_detected(make_scenario(**EXTRA["iv-repeat-recent-infarct-rat"]))


def test_mutation_shunted_cells_sent_into_the_lungs_is_detected(monkeypatch):
    """Docs: a shunted share of cardiac output reaches arterial blood without meeting lung capillaries."""

    def change(source, target, rate, description, formula):
        if description == "intrapulmonary shunt":
            target = "lungs"
        return source, target, rate

    mutate_flows(monkeypatch, change)
    assert_detected(example("condition-liver-cirrhosis"))


def test_mutation_intrathecal_washout_into_arterial_blood_is_detected(monkeypatch):
    """Docs (Routes): cells leaving the cerebrospinal fluid reach venous blood, so the lungs come first."""

    def change(source, target, rate, description, formula):
        if source == "depot" and description == "wash-out":
            target = "arterial_blood"
        return source, target, rate

    mutate_flows(monkeypatch, change)
    assert_detected(example("msc-intrathecal-ms-human"))


def test_mutation_intrathecal_settling_at_the_local_default_is_detected(monkeypatch):
    """Docs (Routes): an intrathecal depot leaves with the CSF flow (tau from production / volume), not
    at the local-injection default time constant."""
    original = kinetics.depot_rates

    def rates(scenario, params):
        retained, _, scope = original(scenario, params)
        return retained, params.get("local_settling_time", "", "h"), scope

    monkeypatch.setattr(kinetics, "depot_rates", rates)
    assert_detected(example("msc-intrathecal-ms-human"))


def test_mutation_intraventricular_dose_read_as_intrathecal_is_detected(monkeypatch):
    """Docs (Routes): each CSF route has its own settled share; a dose into a ventricle that took the
    lumbar route's rows would go unnoticed while both tables hold 0.5, so the case sets its own."""
    original = kinetics.depot_rates

    def rates(scenario, params):
        lumbar = scenario.administration.model_copy(update={"route": "intrathecal"})
        return original(scenario.model_copy(update={"administration": lumbar}), params)

    monkeypatch.setattr(kinetics, "depot_rates", rates)
    assert_detected(make_scenario(**EXTRA["intraventricular-mouse-own-share"]))


def test_mutation_scheduled_doses_given_at_the_reference_size_is_detected(monkeypatch):
    """A schedule's own doses: each administration enters with its own number of cells."""
    monkeypatch.setattr(
        type(make_scenario().administration), "dose_scales", property(lambda self: (1.0,) * self.count)
    )
    scenario = make_scenario(**EXTRA["allo-schedule-human"])
    # the production model then gives fewer cells than the reference counts as given
    with pytest.raises(AssertionError, match="production loses cells"):
        discrepancy(scenario, output_times(scenario))


def test_mutation_schedule_read_as_even_spacing_is_detected(monkeypatch):
    """A schedule's times are kept as given (0, 2 and 25 days), not spread evenly like ``repeat``."""

    def even(self):
        last = self.schedule[-1].at_h if self.schedule else (self.repeat.count - 1) * self.repeat.interval_h
        return tuple(np.linspace(0.0, last, len(self.schedule) or self.repeat.count))

    monkeypatch.setattr(type(make_scenario().administration), "starts_h", property(even))
    scenario = make_scenario(**EXTRA["allo-schedule-human"])
    with pytest.raises(AssertionError, match="production loses cells"):  # the second dose comes late
        discrepancy(scenario, output_times(scenario))
    after_all_doses = np.array([30 * 24.0, 40 * 24.0])  # same cells given; where they are differs
    worst, where = discrepancy(scenario, after_all_doses)
    assert worst > DETECTED, f"mutation not detected: {worst:.3g} of the dose ({where})"
