"""SBML export: valid Level 3 from the model declaration, and libroadrunner reproduces infusim."""

from __future__ import annotations

import numpy as np
import pytest
import roadrunner

from infusim.model.kinetics import assemble
from infusim.sbml import species_id, to_sbml, validation_errors
from infusim.scenario import load
from infusim.solve import solve
from tests.helpers import EXAMPLES, scenario

roadrunner.Logger.setLevel(roadrunner.Logger.LOG_ERROR)


def roadrunner_states(text: str, model, times_h: np.ndarray) -> np.ndarray:
    """States (size classes, times, states) simulated by libroadrunner at tight tolerance."""
    runner = roadrunner.RoadRunner(text)
    runner.integrator.relative_tolerance = 1e-12
    runner.integrator.absolute_tolerance = 1e-12
    runner.integrator.maximum_num_steps = 1_000_000
    result = runner.simulate(times=[0.0, *times_h.tolist()])
    k = model.rows_per_patient
    columns = [f"[{species_id(s.name, c)}]" for c in range(k) for s in model.states]
    values = np.stack([result[column][1:] for column in columns])
    return values.reshape(k, len(model.states), len(times_h)).transpose(0, 2, 1)


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_libroadrunner_reproduces_every_bundled_example_to_1e6(example):
    loaded = load(EXAMPLES / example)
    model = assemble(loaded)
    text = to_sbml(model, model_id=loaded.name)
    assert validation_errors(text) == []
    times = np.asarray(loaded.simulation.outputs_h)
    ours = solve(model, times).states
    theirs = roadrunner_states(text, model, times)
    floor = 1e-6 * loaded.dose_cells
    relative = np.abs(theirs - ours) / np.maximum(np.abs(ours), floor)
    assert relative.max() < 1e-6


def test_export_is_one_patient_of_a_varied_cohort_with_its_own_rates():
    s = scenario(product={"donor": "allogeneic", "hla_mismatches": 4})
    factors = {"loss": np.array([0.5, 2.0]), "rejection": np.array([1.0, 3.0])}
    model = assemble(s, patients=2, rate_factors=factors)
    times = np.asarray(s.simulation.outputs_h)
    ours = solve(model, times).states[3:6]
    text = to_sbml(model, patient=1)
    assert text.count("<species ") == 3 * len(model.states)
    np.testing.assert_allclose(
        roadrunner_states(text, model, times), ours, rtol=1e-6, atol=1e-6 * s.dose_cells * 1e-6
    )


def test_a_corrupted_export_is_caught_by_libsbml():
    text = to_sbml(assemble(scenario()))
    broken = text.replace('compartment="body"', 'compartment="nowhere"', 1)
    assert validation_errors(broken)
