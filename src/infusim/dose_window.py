"""A therapeutic window: benefit and harm of one scenario over a range of doses (and routes).

For each dose (and route) the scenario is rebuilt and validated, simulated for its one patient, and
reported with the effect on the condition's primary endpoint at the end of the simulation (posterior
mean and 95% interval, ``simulation.effect_intervals``) and the probability of each serious adverse
event (``safety``). Where benefit saturates and harm begins is read off the table, not off the
schema's dose ceiling. Research use only: these are model predictions, not advice for any patient.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd

from infusim import conditions, safety
from infusim.compartments import CSF_ROUTES, DEPOT_ROUTES
from infusim.errors import ScenarioError
from infusim.model.disease import extrapolation_warnings
from infusim.model.kinetics import assemble
from infusim.parameters import for_scenario
from infusim.scenario import Scenario, from_dict
from infusim.simulation import effect_intervals


@dataclass(frozen=True)
class Window:
    """One row per route and dose (``rows``) and what the table measures (``endpoint``, ``time_d``)."""

    rows: pd.DataFrame
    endpoint: str | None
    unit: str | None
    time_d: float


def parse_doses(text: str) -> list[float]:
    """'1e5,1e6,1e7' -> [1e5, 1e6, 1e7]; an empty list or a dose that is not positive is an error."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ScenarioError(
            "--doses", f"{text!r} is not a comma-separated list of numbers (e.g. 1e5,1e6,1e7)"
        ) from None
    if not values:
        raise ScenarioError("--doses", "give at least one dose (e.g. 1e5,1e6,1e7)")
    if any(not np.isfinite(v) or v <= 0 for v in values):
        raise ScenarioError("--doses", f"{text!r}: every dose must be a positive number")
    return sorted(set(values))


def window(spec: dict, doses: list[float], per_kg: bool = True, routes: list[str] | None = None) -> Window:
    """The scenario ``spec`` (a mapping, as read from YAML) at each dose (cells/kg, or cells per patient
    with ``per_kg=False``) and each route (default: its own)."""
    base = from_dict(spec)
    routes = routes or [base.administration.route]
    rows = []
    endpoint = unit = None
    for route in routes:
        for dose in doses:
            scenario = _variant(spec, base, dose, per_kg, route)
            row, found = _evaluate(scenario)
            if found is not None:
                endpoint, unit = found
            rows.append({"route": route, **row})
    time_d = base.simulation.duration_h / 24.0
    return Window(pd.DataFrame(rows), endpoint, unit, time_d)


def _any(probabilities: dict[str, float], names: tuple[str, ...]) -> float:
    """Probability of at least one of the named events (independent chances)."""
    return safety.any_of([probabilities.get(name, 0.0) for name in names])


def _variant(spec: dict, base: Scenario, dose: float, per_kg: bool, route: str) -> Scenario:
    """The scenario with this dose and route, validated like a file (so a bad combination is named).
    A schedule's own doses move with ``dose``, keeping their ratios to it."""
    spec = copy.deepcopy(spec)
    admin = dict(spec.get("administration") or {})
    unit = "cells/kg" if per_kg else "cells"
    admin["dose"] = f"{dose:g} {unit}"
    if admin.get("schedule"):
        scales = base.administration.dose_scales
        admin["schedule"] = [
            {**entry, "dose": f"{dose * scale:g} {unit}"} if "dose" in entry else entry
            for entry, scale in zip(admin["schedule"], scales, strict=True)
        ]
    if route != base.administration.route:
        admin["route"] = route
        if route in ("intravenous", *CSF_ROUTES):
            admin.pop("into", None)
        if route in DEPOT_ROUTES:
            admin.pop("duration", None)
        elif "duration" not in admin:
            admin["duration"] = "30 min"
    spec["administration"] = admin
    try:
        return from_dict(spec)
    except ScenarioError as exc:
        raise ScenarioError(exc.field, f"{exc.message} (at dose {dose:g}, route {route})") from None


def _evaluate(scenario: Scenario) -> tuple[dict, tuple[str, str] | None]:
    params = for_scenario(scenario)
    model = assemble(scenario, params=params)
    _, found = safety.simulate_events(scenario, model, params)
    row: dict = {
        "dose_cells_per_kg": scenario.dose_cells_per_kg,
        "dose_cells": scenario.dose_cells,
    }
    endpoint = None
    condition = scenario.condition
    if scenario.clinical:
        info = conditions.get(condition.name)
        primary = info.primary
        end_d = scenario.simulation.duration_h / 24.0
        intervals = effect_intervals(scenario, model, params)
        effect = intervals.get((end_d, primary.name))
        row.update(
            {
                "effect_mean": effect["mean"] if effect else np.nan,
                "effect_low": effect["low"] if effect else np.nan,
                "effect_high": effect["high"] if effect else np.nan,
                "outside_evidence": bool(extrapolation_warnings(scenario, info)),
            }
        )
        endpoint = (primary.name, primary.unit)
    serious = {name: e["probability_serious"] for name, e in found["events"].items()}
    for name in safety.TREATMENT_EVENTS:  # the condition's own events do not change with the dose
        row[f"serious_{name}"] = serious.get(name, 0.0)
    row["serious_any"] = _any(serious, safety.TREATMENT_EVENTS)
    # the condition's own serious events over the same time: context, the same at every dose
    row["background_serious"] = _any(serious, safety.BACKGROUND_EVENTS)
    row["lung_load_share"] = found["lung_load"]["share_of_lethal"]
    brain = found.get("brain_load")  # intra-arterial into the brain only (null in summary.json otherwise)
    row["brain_load_share"] = brain["share_of_stroke_load"] if brain else np.nan
    recovery = found.get("neutrophil_recovery")  # conditioning with a haematopoietic graft only
    row["neutrophil_recovery_median_d"] = recovery["median_day"] if recovery else np.nan
    return row, endpoint
