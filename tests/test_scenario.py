"""Scenario files: units, defaults, and a one-line error naming the field for every bad input."""

from __future__ import annotations

import numpy as np
import pytest

from infusim.errors import ScenarioError
from infusim.scenario import from_dict, load
from tests.helpers import EXAMPLES, scenario


def test_every_bundled_example_validates():
    names = sorted(p.name for p in EXAMPLES.glob("*.yaml"))
    assert len(names) >= 4
    for path in EXAMPLES.glob("*.yaml"):
        assert load(path).name == path.stem


@pytest.mark.parametrize(
    ("text", "expected_per_kg"),
    [("2e6 cells/kg", 2e6), ("1.5 million cells/kg", 1.5e6), ("2000 cells/g", 2e6), ("1.4e8 cells", 2e6)],
)
def test_dose_in_any_compatible_unit(text, expected_per_kg):
    s = scenario(administration={"dose": text})
    assert s.dose_cells_per_kg == pytest.approx(expected_per_kg)


@pytest.mark.parametrize(("text", "hours"), [("30 min", 0.5), ("0.5 h", 0.5), ("1800 s", 0.5), ("2 day", 48)])
def test_durations_in_any_time_unit(text, hours):
    assert scenario(administration={"duration": text}).administration.duration_h == pytest.approx(hours)


def test_species_reference_weight_fills_a_missing_body_weight():
    s = scenario(species="mouse", patient=None, administration={"dose": "5e5 cells"})
    assert s.patient.body_weight_kg == pytest.approx(0.025)
    assert s.dose_cells_per_kg == pytest.approx(2e7)


def test_onset_is_a_time_before_the_first_dose_or_chronic():
    assert scenario(condition={"site": "heart", "onset": "5 day"}).condition.onset_h == 120.0
    assert scenario(condition={"site": "heart", "onset": "20 month"}).condition.onset_h == pytest.approx(
        20 * 30.436875 * 24, rel=1e-3
    )
    assert scenario(condition={"site": "heart"}).condition.onset_h is None  # chronic by default
    # a named condition brings its trials' timing; the scenario can still say chronic or its own
    assert scenario(condition={"name": "acute_myocardial_infarction"}).condition.onset_h == 120.0
    named = {"name": "acute_myocardial_infarction", "onset": "chronic"}
    assert scenario(condition=named).condition.onset_h is None
    assert scenario(condition={"name": "ischemic_heart_failure"}).condition.onset_h is None


def test_default_outputs_end_at_the_duration():
    s = scenario(simulation={"duration": "10 day", "outputs": None})
    assert s.simulation.outputs_h[-1] == 240 and s.simulation.outputs_h[0] == pytest.approx(5 / 60)


def test_intra_arterial_defaults_to_the_condition_site():
    s = scenario(condition={"site": "liver", "severity": 0.4}, administration={"route": "intra_arterial"})
    assert s.site == "liver"


def test_same_meaning_same_hash_and_different_content_different_hash():
    spelled_out = scenario(administration={"dose": "2 million cells/kg", "duration": "60 s"})
    assert scenario().hash() == spelled_out.hash()
    assert scenario().hash() != scenario(administration={"dose": "3e6 cells/kg"}).hash()


def test_fields_written_at_their_defaults_keep_the_hash():
    """A field added with a default (the seed, a trial's dropout) does not change the hash of a
    scenario that does not set it, so old trial folders stay recognisable."""
    assert scenario().hash() == scenario(simulation={"seed": 1}).hash()  # 1 is the default seed
    assert scenario().hash() != scenario(simulation={"seed": 2}).hash()
    from tests.test_trial import _trial

    visits, primary = ["90 day"], {"endpoint": "womac_total", "at": "90 day"}
    plain = _trial("knee_osteoarthritis", visits, primary, 20)
    assert plain.hash() == _trial("knee_osteoarthritis", visits, primary, 20, trial={"dropout": 0}).hash()
    assert plain.hash() != _trial("knee_osteoarthritis", visits, primary, 20, trial={"dropout": "5%"}).hash()


BAD_INPUTS = [
    ({"administration": {"dose": "5 kg"}}, "administration.dose", "not a cell count"),
    ({"administration": {"dose": "-2e6 cells/kg"}}, "administration.dose", "positive"),
    ({"administration": {"dose": "0 cells"}}, "administration.dose", "positive"),
    ({"administration": {"dose": "2e11 cells/kg"}}, "administration.dose", "largest accepted"),
    ({"species": "dog"}, "species", "'human', 'mouse' or 'rat'"),
    ({"product": {"cell_type": "ipsc"}}, "product.cell_type", "'msc', 'hsc' or 'bm_mnc'"),
    ({"condition": {"site": "toe"}}, "condition.site", "allowed: lungs"),
    ({"condition": {"site": "venous_blood"}}, "condition.site", "unknown site"),
    ({"condition": {"site": "heart", "severity": 1.5}}, "condition.severity", "outside 0-1"),
    (
        {"condition": {"site": "heart", "severity": "dire"}},
        "condition.severity",
        "allowed: mild, moderate, severe",
    ),
    ({"condition": {"name": "gout"}}, "condition.name", "allowed: knee_osteoarthritis"),
    ({"condition": {"name": "copd", "site": "heart"}}, "condition.site", "conflicts with copd"),
    ({"condition": {"severity": 0.5}}, "condition", "give a name"),
    ({"administration": {"conditioning": "cy_atg"}}, "administration.conditioning", "autologous hsc"),
    ({"administration": {"conditioning": "tbi"}}, "administration.conditioning", "cy_atg"),
    ({"product": {"colour": "blue"}}, "product.colour", "unknown field; allowed here"),
    ({"administraton": {"route": "intravenous"}}, "administraton", "unknown field"),
    ({"patient": {"body_weight": "70 g"}}, "patient.body_weight", "not a human body weight"),
    ({"administration": {"duration": "30"}}, "administration.duration", "no time unit"),
    ({"administration": {"duration": "30 kg"}}, "administration.duration", "not a duration"),
    ({"administration": {"duration": "1 ms"}}, "administration.duration", "use 0 for a bolus"),
    (
        {"administration": {"route": "local", "duration": None}},
        "administration.into",
        "required for route local",
    ),
    (
        {"administration": {"route": "local", "into": "heart"}},
        "administration.duration",
        "not local injection",
    ),
    (
        {"administration": {"route": "intrathecal", "into": "brain", "duration": None}},
        "administration.into",
        "enters the cerebrospinal fluid",
    ),
    (
        {"administration": {"route": "intrathecal"}},
        "administration.duration",
        "not intrathecal injection",
    ),
    (
        {"administration": {"route": "intraventricular", "into": "brain", "duration": None}},
        "administration.into",
        "an intraventricular dose enters the cerebrospinal fluid",
    ),
    (
        {"administration": {"route": "intraventricular"}},
        "administration.duration",
        "not intraventricular injection",
    ),
    ({"administration": {"route": "intranasal"}}, "administration.route", "'intraventricular'"),
    (
        {"administration": {"route": "intra_arterial", "into": "lungs"}},
        "administration.into",
        "allowed: heart",
    ),
    ({"product": {"hla_mismatches": 3}}, "product.hla_mismatches", "allogeneic cells only"),
    ({"product": {"hold": "30 min"}}, "product.hold", "needs product.carrier"),
    ({"product": {"carrier": "albumin"}}, "product.carrier", "cryopreserved: true"),
    (
        {
            "product": {
                "cell_type": "hsc",
                "tissue_source": "peripheral_blood",
                "cryopreserved": True,
                "carrier": "albumin",
            }
        },
        "product.carrier",
        "needs cell_type msc",
    ),
    ({"product": {"cryopreserved": True, "carrier": "plasma"}}, "product.carrier", "'crystalloid'"),
    (
        {"product": {"cryopreserved": True, "carrier": "crystalloid", "hold": "2 day"}},
        "product.hold",
        "allowed 0-24 h",
    ),
    (
        {"product": {"donor": "allogeneic", "hla_mismatches": 12}},
        "product.hla_mismatches",
        "less than or equal to 10",
    ),
    ({"simulation": {"outputs": ["30 day"]}}, "simulation", "outside"),
    ({"simulation": {"label": "cr51"}}, "simulation.label.isotope", "'in111'"),
    (
        {"administration": {"repeat": {"count": 3, "interval": "7 day"}}},
        "administration.repeat",
        "after the end",
    ),
    ({"product": {"diameter": "2 mm"}}, "product.diameter", "not a cell diameter"),
    ({"administration": {"dose": "2e6 cellz/kg"}}, "administration.dose", "unknown unit cellz"),
    ({"administration": {"dose": "2e6 ++ cells"}}, "administration.dose", "as a quantity with a unit"),
    ({"condition": {"site": "heart", "onset": 5}}, "condition.onset", "or chronic"),
    ({"condition": {"site": "heart", "onset": "-2 day"}}, "condition.onset", "negative"),
    ({"condition": {"site": "heart", "onset": "5 kg"}}, "condition.onset", "or chronic"),
    (
        {"product": {"cell_type": "hsc", "tissue_source": "adipose"}},
        "product.tissue_source",
        "allowed: bone_marrow",
    ),
]

SCHEDULE = [{"at": "0 day"}, {"at": "14 day", "dose": "1e6 cells/kg"}, {"at": "30 day"}]
BAD_INPUTS += [  # a misspelt required field is named as misspelt, not as missing
    ({"product": {"cell_type": None, "celltype": "msc"}}, "product.celltype", "did you mean cell_type?"),
    ({"product": {"cell_type": None}}, "product.cell_type", "is required"),
]
BAD_INPUTS += [  # a list where a mapping goes, a mapping where a list goes
    ({"product": 5}, "product", "give a mapping of carrier, cell_type"),
    ({"administration": {"schedule": {"at": "0 day"}}}, "administration.schedule", "give a list"),
    ({"administration": {"schedule": ["0 day"]}}, "administration.schedule.0", "give a mapping of at"),
]
BAD_INPUTS += [
    (
        {"administration": {"schedule": [{"at": "1 day"}]}},
        "administration.schedule.0.at",
        "give 0 day",
    ),
    (
        {"administration": {"duration": "30 min", "schedule": [{"at": "0 day"}, {"at": "20 min"}]}},
        "administration.schedule.1.at",
        "plus the infusion duration",
    ),
    (
        {"administration": {"schedule": [{"at": "0 day"}, {"at": "1 day", "dose": "1e8 cells"}]}},
        "administration.schedule.1.dose",
        "in cells/kg, like administration.dose",
    ),
    (
        {"administration": {"schedule": [{"at": "0 day"}, {"at": "1 day", "dose": "-2 cells/kg"}]}},
        "administration.schedule.1.dose",
        "positive",
    ),
    (
        {"administration": {"schedule": [{"at": "0 day"}, {"at": 3}]}},
        "administration.schedule.1.at",
        "no time unit",
    ),
    (
        {"administration": {"schedule": [{"at": "0 day"}, {"at": "1 day", "cells": 3}]}},
        "administration.schedule.1.cells",
        "allowed here: at, dose",
    ),
    (
        {"administration": {"schedule": SCHEDULE, "repeat": {"count": 2}}},
        "administration.schedule",
        "not both",
    ),
    (
        {"administration": {"schedule": SCHEDULE}},
        "administration.schedule",
        "after the end of the simulation",
    ),
    (
        {"administration": {"schedule": [{"at": "0 day"}, {"at": "1 day", "dose": "2e10 cells/kg"}]}},
        "administration.schedule.1.dose",
        "above the largest accepted dose",
    ),
]


def test_a_schedule_of_equal_doses_is_the_same_model_as_repeat():
    """``schedule`` at 0, 3 and 6 days is ``repeat: {count: 3, interval: 3 day}``, dose for dose."""
    from infusim.model.kinetics import assemble

    even = scenario(administration={"repeat": {"count": 3, "interval": "3 day"}})
    listed = scenario(administration={"schedule": [{"at": "0 day"}, {"at": "72 h"}, {"at": "6 day"}]})
    a, b = assemble(even), assemble(listed)
    assert [d.time_h for d in b.doses] == [0.0, 72.0, 144.0] == [d.time_h for d in a.doses]
    for da, db in zip(a.doses, b.doses, strict=True):
        assert np.array_equal(da.amount, db.amount)
        assert da.split.keys() == db.split.keys()
        assert all(np.array_equal(da.split[k], db.split[k]) for k in da.split)


def test_a_schedules_own_doses_scale_its_administrations():
    s = scenario(
        administration={"dose": "2e6 cells/kg", "schedule": SCHEDULE},
        simulation={"duration": "40 day", "outputs": ["40 day"]},
    )
    assert s.administration.starts_h == (0.0, 336.0, 720.0)
    assert s.administration.dose_scales == (1.0, 0.5, 1.0)
    from infusim.model.kinetics import assemble

    given = [float(d.amount.sum()) for d in assemble(s).doses]
    assert given == pytest.approx([1.4e8, 0.7e8, 1.4e8], rel=1e-12)  # 70 kg


def test_a_schedule_is_written_back_with_its_units():
    import yaml

    from infusim.scenario_spec import to_spec

    s = scenario(
        administration={"dose": "2e6 cells/kg", "schedule": SCHEDULE},
        simulation={"duration": "40 day", "outputs": ["40 day"]},
    )
    again = from_dict(yaml.safe_load(yaml.safe_dump(to_spec(s))))
    assert again == s and again.hash() == s.hash()


@pytest.mark.parametrize(("overrides", "field", "words"), BAD_INPUTS)
def test_bad_input_names_the_field_and_what_is_allowed(overrides, field, words):
    with pytest.raises(ScenarioError) as caught:
        scenario(**overrides)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{field}: "), message
    assert words in message, message


def test_missing_file_and_malformed_yaml(tmp_path):
    with pytest.raises(ScenarioError, match=r"^scenario: file not found: \S+nope.yaml$"):
        load(tmp_path / "nope.yaml")
    # a bare example name, as the README writes them, points at the bundled file
    with pytest.raises(
        ScenarioError, match=r"the bundled example of that name is \S+/examples/msc-iv-human.yaml$"
    ):
        load("msc-iv-human")
    with pytest.raises(ScenarioError, match=r"^scenario: .* is a folder; give a scenario YAML file$"):
        load(tmp_path)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nspecies: [human\n")
    with pytest.raises(ScenarioError, match=r"^scenario: malformed YAML at line \d+"):
        load(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ScenarioError, match="mapping of sections"):
        load(listing)


def test_too_many_output_times_are_refused():
    outputs = [f"{i} min" for i in range(1, 40321)]
    with pytest.raises(ScenarioError, match=r"simulation.*at most 500"):
        scenario(simulation={"duration": "28 day", "outputs": outputs})
    assert (
        len(scenario(simulation={"duration": "28 day", "outputs": outputs[:500]}).simulation.outputs_h) == 500
    )


def test_every_bundled_scenario_round_trips_through_its_yaml_spec():
    """to_spec writes every quantity with its unit; reading it back gives the same scenario."""
    import yaml

    from infusim.case_format import bundled_cases_dir
    from infusim.scenario_spec import to_spec

    files = sorted(EXAMPLES.glob("*.yaml")) + sorted(bundled_cases_dir().glob("*/scenario.yaml"))
    assert len(files) > 40
    for path in files:
        loaded = load(path)
        text = yaml.safe_dump(to_spec(loaded))
        assert from_dict(yaml.safe_load(text)).hash() == loaded.hash(), path.name
    held = scenario(product={"cryopreserved": True, "carrier": "crystalloid", "hold": "45 min"})
    assert from_dict(yaml.safe_load(yaml.safe_dump(to_spec(held)))).hash() == held.hash()
    chronic = to_spec(load(EXAMPLES / "condition-acute-myocardial-infarction.yaml"))
    assert chronic["condition"]["onset"] != "chronic"  # the condition's own onset is written out


def test_a_rodent_with_a_named_condition_gets_its_kinetics_but_no_human_endpoints():
    from infusim.ensemble import parse_output
    from infusim.simulation import simulate

    spec = {
        "name": "rat-ami",
        "species": "rat",
        "patient": {"body_weight": "250 g"},
        "condition": {"name": "acute_myocardial_infarction", "severity": "moderate", "onset": "1 day"},
        "product": {"cell_type": "msc", "tissue_source": "bone_marrow", "donor": "autologous"},
        "administration": {"route": "local", "into": "heart", "dose": "2e6 cells"},
        "simulation": {"duration": "28 day", "outputs": ["1 day", "28 day"]},
    }
    rat = from_dict(spec)
    result = simulate(rat)
    assert not rat.clinical and result.summary["endpoints"] == {} and result.endpoints.empty
    assert any("no rat disease model" in w for w in result.summary["warnings"])
    assert not any("extrapolation" in w for w in result.summary["warnings"])  # about human evidence
    assert "target" in set(result.cells.compartment)  # the infarct still holds cells
    with pytest.raises(ScenarioError) as caught:
        parse_output("effect:lvef@28 day", rat)
    assert "human patients" in caught.value.message
    trial = {
        "patients": 20,
        "arms": [{"name": "placebo", "administration": "placebo"}, {"name": "msc"}],
        "visits": ["28 day"],
        "primary": {"endpoint": "lvef", "at": "28 day"},
    }
    with pytest.raises(ScenarioError) as caught:
        from_dict({**spec, "trial": trial})
    assert caught.value.field == "species" and "human" in caught.value.message
    human = from_dict({**spec, "species": "human", "patient": {"body_weight": "80 kg"}})
    assert human.clinical and simulate(human).summary["endpoints"]


def _schedule_trial(*arms: dict) -> dict:
    """A COPD trial over the scenario schedule ``SCHEDULE``: a placebo arm, then ``arms``."""
    from tests.helpers import BASE, merge

    return merge(
        BASE,
        {
            "condition": {"name": "copd", "severity": "moderate"},
            "administration": {"schedule": SCHEDULE},
            "simulation": {"duration": "60 day"},
            "trial": {
                "patients": 20,
                "arms": [{"name": "placebo", "administration": "placebo"}, *arms],
                "visits": ["60 day"],
                "primary": {"endpoint": "fev1", "at": "60 day"},
            },
        },
    )


def test_trial_arms_and_a_schedule():
    """An arm inherits the scenario's schedule; its own ``repeat`` replaces it; a new dose while the
    schedule gives some administrations their own doses is refused (which ones it replaces is not said)."""
    spec = _schedule_trial(
        {"name": "scheduled"},
        {"name": "monthly", "administration": {"repeat": {"count": 2, "interval": "30 day"}}},
    )
    s = from_dict(spec)
    scheduled, monthly = (s.for_arm(arm).administration for arm in s.trial.arms[1:])
    assert scheduled.starts_h == (0.0, 336.0, 720.0) and scheduled.dose_scales == (1.0, 0.5, 1.0)
    assert monthly.starts_h == (0.0, 720.0) and monthly.dose_scales == (1.0, 1.0)
    spec["trial"]["arms"][1]["administration"] = {"dose": "4e6 cells/kg"}
    with pytest.raises(ScenarioError) as caught:
        from_dict(spec)
    assert caught.value.field == "trial.arms.1.administration.dose"
    assert "give this arm its own administration.schedule" in caught.value.message


def test_an_arm_with_its_own_repeat_and_dose_replaces_a_schedule_with_own_doses():
    s = from_dict(
        _schedule_trial({"name": "two", "administration": {"dose": "3e6 cells/kg", "repeat": {"count": 2}}})
    )
    two = s.for_arm(s.trial.arms[1])
    assert two.dose_cells_per_kg == 3e6 and two.administration.dose_scales == (1.0, 1.0)
    assert two.administration.starts_h == (0.0, 672.0)  # repeat's default interval, 28 days
