"""Carrying a dose between species (`infusim bridge`): the matched dose must give the target
scenario the source's exposure when both are run by the independent reference model."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from infusim import reference
from infusim import species_bridge as bridge
from infusim.parameters import bundled
from infusim.scenario import from_dict, load
from infusim.scenario_spec import to_spec
from tests.helpers import EXAMPLES

RAT = load(EXAMPLES / "msc-iv-rat-heart.yaml")
HUMAN = load(EXAMPLES / "msc-iv-human.yaml")


def with_dose(scenario, cells: float):
    spec = to_spec(scenario)
    spec["administration"]["dose"] = f"{cells!r} cells"
    return from_dict(spec)


def lesion_mass_g(scenario) -> float:
    """Injured tissue (g) from docs/model.md: organ volume fraction x body weight x severity x
    lesion_fraction_max, density of water; written here, not taken from infusim.bridge."""
    p = bundled()
    site = scenario.condition.site
    organ_l = p.get("volume_fraction", f"{scenario.species}/{site}", "L/kg") * scenario.patient.body_weight_kg
    return organ_l * 1000.0 * scenario.condition.severity * p.get("lesion_fraction_max", site, "")


def with_severity(scenario, severity: float):
    spec = to_spec(scenario)
    spec["condition"]["severity"] = severity
    return from_dict(spec)


@pytest.mark.parametrize("measure_time, severity", [(24.0, 0.5), (168.0, 0.75)])
def test_the_matched_dose_gives_the_human_the_rat_exposure_per_gram_in_the_reference_model(
    measure_time, severity
):
    """A larger human lesion (severity 0.75 against the rat's 0.5) needs more cells per gram matched."""
    text = f"live_cells:target@{measure_time:g} h"
    patient = with_severity(HUMAN, severity)
    found = bridge.bridge(RAT, patient, text, per_gram=True)
    rat = reference.reference_cells(RAT, [measure_time])["target"][0] / lesion_mass_g(RAT)
    matched = with_dose(patient, found.matched_dose_cells)
    human = reference.reference_cells(matched, [measure_time])["target"][0] / lesion_mass_g(patient)
    assert found.exposure_source == pytest.approx(rat, rel=1e-6)
    assert human == pytest.approx(rat, rel=1e-6)


def test_the_classic_rules_are_per_kg_and_fda_body_surface_scaling():
    found = bridge.bridge(RAT, HUMAN, "live_cells:lungs@24 h")
    assert found.source_dose_cells == 1e6 and found.source_weight_kg == 0.25
    assert found.per_kg_dose_cells == pytest.approx(4e6 * 70, rel=1e-12)
    assert found.body_surface_dose_cells == pytest.approx(4e6 * 6 / 37 * 70, rel=1e-12)  # FDA 2005 Km


def test_a_scenario_carried_to_itself_keeps_its_dose_in_every_draw():
    """Rows both scenarios read get the same draw, so an identical pair cancels exactly."""
    found = bridge.bridge(HUMAN, HUMAN, "live_cells:target@7 day", measure="auc", draws=20)
    dose = 2e6 * 70
    assert found.matched_dose_cells == pytest.approx(dose, rel=1e-12)
    np.testing.assert_allclose(found.draws_matched_cells, dose, rtol=1e-9)
    assert np.std(found.draws_exposure_source) > 0  # the draws did vary


def test_the_matched_dose_scales_with_the_source_dose_and_per_gram_by_the_mass_ratio():
    once = bridge.bridge(RAT, HUMAN, "live_cells:target@7 day", per_gram=False)
    twice = bridge.bridge(with_dose(RAT, 2e6), HUMAN, "live_cells:target@7 day", per_gram=False)
    per_gram = bridge.bridge(RAT, HUMAN, "live_cells:target@7 day", per_gram=True)
    assert twice.matched_dose_cells == pytest.approx(2 * once.matched_dose_cells, rel=1e-9)
    ratio = lesion_mass_g(HUMAN) / lesion_mass_g(RAT)
    assert per_gram.matched_dose_cells == pytest.approx(once.matched_dose_cells * ratio, rel=1e-9)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "infusim", *args], capture_output=True, text=True, timeout=300
    )


def run_rat_to_patient(*args: str) -> subprocess.CompletedProcess:
    return run("bridge", str(EXAMPLES / "msc-iv-rat-heart.yaml"), str(EXAMPLES / "msc-iv-human.yaml"), *args)


def test_the_command_writes_its_summary_and_report(tmp_path):
    out = tmp_path / "b"
    result = run_rat_to_patient("--uncertainty", "40", "-o", str(out))
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    rules = [d["rule"] for d in summary["doses"]]
    assert rules[0] == "matched: live_cells:target@7 day" and summary["doses"][1]["ratio_to_per_kg"] == 1.0
    low, high = summary["doses"][0]["interval_cells_per_kg"]
    assert low < summary["doses"][0]["dose_cells_per_kg"] < high
    assert len(summary["doses"][0]["drivers"]) == 5 and "drivers" not in summary["doses"][-1]
    assert "not advice" in (out / "bridge.html").read_text() and "research tool" in result.stdout


@pytest.mark.parametrize(
    "args, field",
    [
        (["--output", "dead_cells:all@1 h"], "--output"),
        (["--measure", "peak"], "--measure"),
        (["--uncertainty", "-1"], "--uncertainty"),
    ],
)
def test_bad_bridge_input_is_one_line_with_exit_2_and_no_folder(tmp_path, args, field):
    out = tmp_path / "b"
    result = run_rat_to_patient(*args, "-o", str(out))
    assert result.returncode == 2
    assert (
        result.stderr.strip().startswith(f"error: {field}") and len(result.stderr.strip().splitlines()) == 1
    )
    assert not out.exists()


def test_a_compartment_the_target_scenario_lacks_is_a_one_line_error(tmp_path):
    result = run(
        "bridge",
        str(EXAMPLES / "msc-iv-rat-heart.yaml"),
        str(EXAMPLES / "msc-iv-mouse.yaml"),
        "-o",
        str(tmp_path / "b"),
    )
    assert result.returncode == 2 and "compartment must be one of" in result.stderr


def test_what_else_the_scenarios_differ_in_is_named():
    assert bridge.differences(RAT, HUMAN) == []  # the example pair differs only in species, body, dose
    other = load(EXAMPLES / "condition-acute-myocardial-infarction.yaml")
    named = bridge.differences(RAT, other)
    assert "route: intravenous vs intra_arterial" in named and "cell type: msc vs bm_mnc" in named


def test_the_rows_behind_the_interval_are_ranked_by_their_correlation_with_the_dose():
    rng = np.random.default_rng(0)
    dose = rng.lognormal(size=400)
    values = {("driver", "x"): dose**2, ("noise", ""): rng.random(400), ("held", ""): np.ones(400)}
    ranked = bridge.rank_drivers(values, dose)
    assert ranked[0] == ("driver[x]", pytest.approx(1.0)) and abs(ranked[1][1]) < 0.15
    assert len(ranked) == 2  # a row that did not vary is not ranked
    found = bridge.bridge(RAT, HUMAN, "live_cells:target@7 day", draws=100)
    assert found.drivers[0][0] == "capillary_diameter[rat]" and found.drivers[0][1] > 0.5


def test_several_outputs_are_matched_in_one_run_each_as_if_alone(tmp_path):
    from infusim import api

    texts = ["live_cells:target@7 day", "live_cells:lungs@1 h"]
    found = api.bridge(RAT, HUMAN, texts, uncertainty=0)
    alone = [bridge.bridge(RAT, HUMAN, t, per_gram=True).matched_dose_cells for t in texts]
    assert [d["dose_cells"] for d in found.summary["doses"][:2]] == pytest.approx(alone, rel=1e-12)
    assert [d["rule"] for d in found.summary["doses"][2:]] == [
        "same cells per kg",
        "body-surface scaling (FDA 2005 Km)",
    ]
    assert (
        found.to_pandas().shape[0] == 4
        and "not advice" in found.write_report(tmp_path / "b.html").read_text()
    )
    assert {"FDA2005", "ICRP89"} <= set(found.summary["sources"])  # the Km rule's and the bodies' sources


def test_a_schedules_matched_dose_scales_every_administration_in_the_reference_model():
    """Matched on cells per gram at day 7, after a first dose and a threefold second dose at day 3:
    the matched administration.dose, with the second at three times it, gives the rat's exposure."""
    spec = to_spec(HUMAN)
    spec["simulation"] = {"duration": "8 day", "outputs": ["7 day"]}
    spec["administration"].pop("repeat", None)
    spec["administration"]["dose"] = "1e8 cells"
    spec["administration"]["schedule"] = [{"at": "0 day"}, {"at": "3 day", "dose": "3e8 cells"}]
    patient = from_dict(spec)
    found = bridge.bridge(RAT, patient, "live_cells:target@7 day", per_gram=True)
    rat = reference.reference_cells(RAT, [168.0])["target"][0] / lesion_mass_g(RAT)
    m = found.matched_dose_cells
    spec["administration"]["dose"] = f"{m!r} cells"
    spec["administration"]["schedule"][1]["dose"] = f"{3 * m!r} cells"
    human = reference.reference_cells(from_dict(spec), [168.0])["target"][0] / lesion_mass_g(patient)
    assert human == pytest.approx(rat, rel=1e-6)
    assert "doses as multiples of administration.dose: 1 vs 1, 3" in bridge.differences(RAT, patient)
