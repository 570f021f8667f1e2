"""Conditions: natural history of the untreated twin, calibrated effects, nulls shown as nulls."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from infusim import conditions
from infusim.parameters import bundled
from infusim.scenario import load
from infusim.simulation import simulate
from tests.helpers import EXAMPLES, scenario

UNFITTED = ["rheumatoid_arthritis", "alzheimers"]


def condition_example(name: str):
    return load(EXAMPLES / f"condition-{name.replace('_', '-')}.yaml")


def effects(result, endpoint: str) -> np.ndarray:
    rows = result.endpoints[result.endpoints.endpoint == endpoint]
    return (rows.treated - rows.untreated).to_numpy()


@pytest.mark.parametrize("name", conditions.names())
def test_every_condition_has_an_example_that_runs_inside_its_evidence(name):
    result = simulate(condition_example(name))
    assert set(result.endpoints.endpoint) >= {e.name for e in conditions.get(name).endpoints}
    assert not [w for w in result.summary["warnings"] if w.startswith("extrapolation")]


def test_the_untreated_twin_follows_the_tabulated_natural_history():
    result = simulate(condition_example("copd"))
    rows = result.endpoints[result.endpoints.endpoint == "fev1"]
    p = bundled()
    expected = (
        p.get("baseline", "copd/fev1", "L")
        + p.get("annual_change", "copd/fev1", "L/year") * rows.time_d / 365.25
    )
    np.testing.assert_allclose(rows.untreated, expected, rtol=1e-12)


@pytest.mark.parametrize("name", UNFITTED)
def test_conditions_without_a_controlled_estimate_show_no_effect_and_no_interval(name):
    """RA and Alzheimer's have no trial estimate with a CI on an infusim endpoint: no interval is
    invented, and the (derived) potency 0 gives no effect."""
    result = simulate(condition_example(name))
    for endpoint in conditions.get(name).endpoints:
        np.testing.assert_allclose(effects(result, endpoint.name), 0.0, atol=1e-12)
    assert result.summary["evidence"]["studies"] == 0
    for values in result.summary["endpoints"].values():
        assert all(v["low"] is None and v["high"] is None for v in values.values())


@pytest.mark.parametrize("name", ["ischemic_stroke", "crohns_perianal_fistula", "copd"])
def test_where_large_trials_were_null_the_interval_reaches_no_effect(name):
    result = simulate(condition_example(name))
    primary = conditions.get(name).primary
    direction = primary.direction
    for values in result.summary["endpoints"].values():
        band = values[primary.name]
        assert min(direction * band["low"], direction * band["high"]) < 0.05 * primary.high


def test_effects_never_harm_and_grow_with_dose_until_they_saturate():
    def womac_effect(dose: str) -> float:
        s = scenario(
            condition={"name": "knee_osteoarthritis"},
            product={"tissue_source": "adipose"},
            administration={"route": "local", "into": "joints", "dose": dose, "duration": None},
            simulation={"duration": "365 day", "outputs": ["365 day"]},
        )
        return float(effects(simulate(s), "womac_total")[0])

    values = [womac_effect(d) for d in ("1e5 cells", "1e6 cells", "1e7 cells", "5e7 cells", "2e8 cells")]
    assert all(v <= 0 for v in values)  # WOMAC: lower is better
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(values))
    assert abs(values[-1] - values[-2]) < 0.2 * abs(values[-1])


def test_cells_that_never_reach_the_mechanism_do_nothing_and_are_flagged():
    s = scenario(
        condition={"name": "knee_osteoarthritis"}, simulation={"duration": "180 day", "outputs": ["180 day"]}
    )
    result = simulate(s)  # intravenous MSC for a local (intra-articular) mechanism
    local = scenario(
        condition={"name": "knee_osteoarthritis"},
        administration={"route": "local", "into": "joints", "duration": None},
        simulation={"duration": "180 day", "outputs": ["180 day"]},
    )
    assert abs(effects(result, "womac_total")[0]) < 0.1 * abs(effects(simulate(local), "womac_total")[0])
    assert any("no trial evidence for msc given intravenous" in w for w in result.summary["warnings"])


def test_a_dose_outside_the_studied_range_is_flagged_as_extrapolation():
    s = scenario(
        condition={"name": "lupus"},
        product={"tissue_source": "umbilical_cord"},
        administration={"dose": "5e7 cells/kg"},
        simulation={"duration": "180 day", "outputs": ["180 day"]},
    )
    assert any("outside the doses studied" in w for w in simulate(s).summary["warnings"])


def test_each_administration_of_a_schedule_is_checked_against_the_studied_doses():
    from infusim import conditions
    from infusim.model.disease import extrapolation_warnings

    def warnings(*doses: str) -> list[str]:
        s = scenario(
            condition={"name": "copd"},
            product={"donor": "allogeneic"},
            administration={
                "dose": "1e6 cells/kg",
                "schedule": [{"at": "0 day"}]
                + [{"at": f"{i} day", "dose": d} for i, d in enumerate(doses, 1)],
            },
        )
        return [w for w in extrapolation_warnings(s, conditions.get("copd")) if "doses studied" in w]

    assert warnings("2e6 cells/kg") == []  # COPD's trials gave 5e5-3e6 cells/kg
    (found,) = warnings("2e6 cells/kg", "4e7 cells/kg", "1e8 cells/kg")
    assert found.startswith("extrapolation: 4e+07, 1e+08 cells/kg lie outside the doses studied in copd")


def test_every_trial_with_an_estimate_counts_as_studied_even_if_conditions_yaml_omits_it():
    # Petrou 2020: autologous marrow MSC 1e6 cells/kg intrathecally in MS (data/evidence.csv only)
    from infusim import conditions
    from infusim.evidence import studied_products

    assert not any(e.route == "intrathecal" for e in conditions.get("multiple_sclerosis").evidence)
    assert any(
        e.route == "intrathecal" and e.dose_low == e.dose_high == 1e6
        for e in studied_products("multiple_sclerosis")
    )
    base = {
        "condition": {"name": "multiple_sclerosis"},
        "administration": {"route": "intrathecal", "duration": None, "dose": "1e6 cells/kg"},
        "simulation": {"duration": "30 day", "outputs": ["30 day"]},
    }
    assert not [w for w in simulate(scenario(**base)).summary["warnings"] if w.startswith("extrapolation")]
    base["administration"]["dose"] = "1e7 cells/kg"
    found = [w for w in simulate(scenario(**base)).summary["warnings"] if w.startswith("extrapolation")]
    assert found and "outside the doses studied" in found[0]


def test_severity_words_and_numbers_set_the_baseline_between_health_and_trial_entry():
    p = bundled()
    healthy, typical = p.get("healthy", "lupus/sledai", ""), p.get("baseline", "lupus/sledai", "")
    for severity, expected in (
        ("mild", healthy + (typical - healthy) * 0.5),
        ("moderate", typical),
        (0.75, None),
    ):
        s = scenario(
            condition={"name": "lupus", "severity": severity},
            simulation={"duration": "1 day", "outputs": ["1 day"]},
        )
        base = simulate(s).endpoints.query("endpoint == 'sledai'").untreated.iloc[0]
        assert base == pytest.approx(
            expected if expected is not None else healthy + (typical - healthy) * 1.5
        )


def test_conditioning_brings_treatment_related_mortality_and_an_immune_reset():
    result = simulate(condition_example("multiple_sclerosis"))
    trm = result.endpoints[result.endpoints.endpoint == "treatment_related_mortality"]
    assert trm.untreated.max() == 0
    assert trm.treated.iloc[-1] == pytest.approx(
        100 * bundled().get("treatment_related_mortality", "cy_atg", ""), rel=1e-3
    )
    assert effects(result, "edss")[-1] < -1.0
    msc = scenario(
        condition={"name": "multiple_sclerosis"}, simulation={"duration": "365 day", "outputs": ["365 day"]}
    )
    assert "treatment_related_mortality" not in set(simulate(msc).endpoints.endpoint)


def test_endpoints_stay_inside_their_ranges():
    for name in conditions.names():
        result = simulate(condition_example(name))
        for endpoint in conditions.get(name).endpoints:
            rows = result.endpoints[result.endpoints.endpoint == endpoint.name]
            assert rows.treated.between(endpoint.low, endpoint.high).all(), (name, endpoint.name)


def test_disease_modules_see_mechanism_signals_only_never_cell_counts():
    """The disease layer takes mechanism responses; it cannot reach the cell model or the solver."""
    import dataclasses
    import inspect

    from infusim.model import disease

    assert list(inspect.signature(disease.trajectories).parameters) == [
        "scenario",
        "condition",
        "responses",
        "times_d",
        "params",
        "variation",
    ]
    variation = {f.name for f in dataclasses.fields(disease.Variation)}
    assert variation == {"severity", "potency_factor", "annual_change", "drawn"}
    imported = {getattr(value, "__module__", "") for value in vars(disease).values()} | {
        value.__name__ for value in vars(disease).values() if inspect.ismodule(value)
    }
    cell_side = {"infusim.model.declare", "infusim.model.kinetics", "infusim.solve", "infusim.observe"}
    assert not imported & cell_side


def test_model_package_does_not_import_the_solver():
    """Data flows one way: model/ declares, solve.py solves, outcomes.py reads solved cells."""
    import ast
    from pathlib import Path

    import infusim

    for path in (Path(infusim.__file__).parent / "model").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not modules & {"infusim.solve", "infusim.observe", "infusim.simulation"}, path.name


def test_more_administrations_than_any_trial_with_an_estimate_gave_is_an_extrapolation():
    from infusim.evidence import load as evidence_rows

    most = max(r.doses for r in evidence_rows() if r.condition == "copd")
    assert most == 1  # the COPD trials with an estimate gave one infusion (Weiss 2013's four: no estimate)
    base = condition_example("copd")
    assert not [w for w in simulate(base).summary["warnings"] if w.startswith("extrapolation")]
    repeated = base.model_copy(
        update={
            "administration": base.administration.model_copy(
                update={
                    "repeat": base.administration.repeat.model_copy(update={"count": 4, "interval_h": 720.0})
                }
            )
        }
    )
    assert any("4 administrations" in w and "at most 1" in w for w in simulate(repeated).summary["warnings"])
    # a dose outside the range and too many infusions: both reasons, one line each
    both = repeated.model_copy(
        update={"administration": repeated.administration.model_copy(update={"dose_cells_per_kg": 5e7})}
    )
    found = [w for w in simulate(both).summary["warnings"] if w.startswith("extrapolation")]
    assert len(found) == 2 and "outside the doses studied" in found[0] and "4 administrations" in found[1]
