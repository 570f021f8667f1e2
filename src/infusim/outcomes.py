"""The one disease pipeline: solved cells -> cell sums -> signals -> responses -> endpoint paths.

``simulate``, ``trial``, ``validate`` and the effect fits all call ``endpoint_paths``; the model
package (``model/mechanisms.py``, ``model/disease.py``) never calls the solver: it receives the cell
sums computed here after ``solve``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from infusim import conditions, modifiers, posterior
from infusim.model import disease, mechanisms
from infusim.model.declare import Model, patient_sum
from infusim.model.disease import EndpointTrajectories, Variation
from infusim.parameters import ParameterSet
from infusim.scenario import Scenario
from infusim.solve import solve_projected


def cell_sums(model: Model, times_d: np.ndarray, needed: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The cell sums the mechanisms ``needed`` read, per patient: name -> (patients, times), cells."""
    weights = mechanisms.state_weights(model, needed)
    if not weights:
        return {}
    projected = solve_projected(model, np.asarray(times_d) * 24.0, np.stack(list(weights.values())))
    totals = patient_sum(projected, model.rows_per_patient)
    return {name: totals[:, :, i] for i, name in enumerate(weights)}


def grid_days(scenario: Scenario, end_d: float, outputs_d: np.ndarray) -> np.ndarray:
    """Disease-clock grid (days) of ``scenario`` to ``end_d``, including ``outputs_d``."""
    end = float(end_d) if end_d > 0 else 1.0
    return mechanisms.disease_grid(end, np.asarray(outputs_d, dtype=float), mechanisms.dose_days(scenario))


def responses(
    scenario: Scenario,
    model: Model | None,
    grid_d: np.ndarray,
    params: ParameterSet,
    body_weight_kg: np.ndarray | None = None,
    severity: np.ndarray | None = None,
    patients: int = 1,
    half_saturation: Mapping[str, np.ndarray | float] | None = None,
) -> dict[str, np.ndarray]:
    """Mechanism responses (patients, times) of the scenario's condition on ``grid_d``.

    ``model`` None means no cells (a sham or untreated arm): every response is zero.
    ``half_saturation`` overrides a mechanism's K per patient (see ``mechanisms.responses``).
    """
    info = conditions.get(scenario.condition.name)
    if model is None:
        return {m: np.zeros((patients, len(grid_d))) for m in info.mechanisms}
    sums = cell_sums(model, grid_d, info.mechanisms)
    signals = mechanisms.signals(scenario, sums, grid_d, params, body_weight_kg, severity)
    return mechanisms.responses(
        signals, params, info.mechanisms, fitted_k(info.name, params, half_saturation)
    )


def fitted_k(
    condition: str, params: ParameterSet, override: Mapping[str, np.ndarray | float] | None = None
) -> dict[str, np.ndarray | float]:
    """K per mechanism where the condition has its own fitted row, then ``override`` on top."""
    found: dict[str, np.ndarray | float] = {}
    for mechanism in conditions.MECHANISMS:
        scope = f"{mechanism}/{condition}"
        if params.has("half_saturation", scope):
            found[mechanism] = params.get(
                "half_saturation", scope, params.entry("half_saturation", scope).unit
            )
    return found | dict(override or {})


def endpoint_paths(
    scenario: Scenario,
    model: Model | None,
    params: ParameterSet,
    outputs_d: np.ndarray,
    end_d: float | None = None,
    variation: Variation | None = None,
    body_weight_kg: np.ndarray | None = None,
    half_saturation: Mapping[str, np.ndarray | float] | None = None,
) -> EndpointTrajectories:
    """Treated and untreated-twin trajectories of every endpoint, on a grid that holds ``outputs_d``.

    Without ``variation`` every patient is the scenario's patient; with it, ``body_weight_kg`` and the
    variation's severities describe each patient (as ``model`` was assembled).
    """
    info = conditions.get(scenario.condition.name)
    outputs_d = np.asarray(outputs_d, dtype=float)
    end = float(end_d if end_d is not None else max(outputs_d.max(initial=0.0), 1.0))
    grid = grid_days(scenario, end, outputs_d)
    severity = None if variation is None else variation.severity
    if variation is not None:
        patients = len(variation.severity)
    else:
        patients = model.n_patients if model is not None else 1
    found = responses(scenario, model, grid, params, body_weight_kg, severity, patients, half_saturation)
    if variation is None and modifiers.present(info, params):  # the scenario's patient's covariates
        factor = np.full(patients, modifiers.scenario_factor(scenario, info, params))
        variation = Variation(np.full(patients, scenario.condition.severity), factor, {})
    return disease.trajectories(scenario, info, found, grid, params, variation)


def effect_draws(
    scenario: Scenario,
    model: Model,
    params: ParameterSet,
    outputs_d: np.ndarray,
    end_d: float,
    count: int = 200,
    index: np.ndarray | None = None,
) -> EndpointTrajectories | None:
    """Endpoint paths of the scenario's one patient under ``count`` posterior draws of its
    condition's effect parameters (one "patient" per draw; ``index``: which stored draws, default
    ``pick(count, seed)``), or None without a stored posterior."""
    fitted = posterior.load(scenario.condition.name)
    if fitted is None:
        return None
    index = fitted.pick(count, scenario.simulation.seed) if index is None else index
    return drawn_paths(
        scenario, model, params, outputs_d, end_d, fitted.drawn(index), fitted.half_saturation(index), count
    )


def drawn_paths(
    scenario: Scenario,
    model: Model,
    params: ParameterSet,
    outputs_d: np.ndarray,
    end_d: float,
    drawn: Mapping[tuple[str, str], np.ndarray],
    half_saturation: Mapping[str, np.ndarray],
    count: int,
) -> EndpointTrajectories:
    """Endpoint paths of the scenario's patient under ``count`` sets of effect values (``drawn``:
    potencies and effect ratios, ``half_saturation``: K by mechanism; arrays over draws). ``model``
    holds one patient (the same cells for every draw) or one patient per draw (kinetics drawn too)."""
    info = conditions.get(scenario.condition.name)
    outputs_d = np.asarray(outputs_d, dtype=float)
    grid = grid_days(scenario, end_d, outputs_d)
    sums = cell_sums(model, grid, info.mechanisms)
    if model.n_patients != count:
        sums = {k: np.repeat(v, count, axis=0) for k, v in sums.items()}
    weight = np.full(count, scenario.patient.body_weight_kg)
    severity = np.full(count, scenario.condition.severity)
    signals = mechanisms.signals(scenario, sums, grid, params, weight, severity)
    found = mechanisms.responses(
        signals, params, info.mechanisms, fitted_k(info.name, params, half_saturation)
    )
    factor = np.full(count, modifiers.scenario_factor(scenario, info, params))
    variation = Variation(severity, factor, {}, drawn)
    return disease.trajectories(scenario, info, found, grid, params, variation)
