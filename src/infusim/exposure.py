"""Exposure to live cells per compartment, what a noncompartmental analysis gives for a drug: the
peak and its time, the area under the curve (live cell-days), the cell-days per cell given, and
the half-life at the end of the simulation.

Computed from the model's exact solution on a dense grid (``grid``): every administration's start
and end, then log-spaced points from 3.6 s after each (and after the end of its infusion) to
the next start. The area is the linear-up / log-down trapezoid rule (exact for an exponential
decline between two points, linear where cells rise); against the independent reference model on
1,200 log-spaced points per segment integrated by Simpson's rule it agreed within 1.2e-4 on three
examples (tests/test_exposure.py holds 5e-4). The peak and its time are the grid's largest value,
so the time of the peak is resolved to about 5% (log spacing) and the peak itself more finely (the
curve is flat there; within 3e-4 of the reference).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from infusim.model.declare import Model, patient_sum
from infusim.model.physiology import physiology
from infusim.parameters import ParameterSet
from infusim.scenario import Scenario
from infusim.solve import solve, solve_projected

#: Log-spaced points per administration, from ``FIRST_H`` after its start (and after the end of its
#: infusion) to the next start.
POINTS_PER_ADMINISTRATION = 300
FIRST_H = 1e-3
#: Points per administration where many patients or parameter sets are integrated at once (a trial's
#: per-patient exposures, ensemble outputs ``live_cell_days``): within 0.22% of the dense grid on seven
#: examples, about five times faster.
COARSE_POINTS = 60
#: The whole body: every live compartment.
WHOLE_BODY = "whole_body"


def organ_mass_g(compartment: str, body, site: str | None, share, scenario: Scenario) -> np.ndarray:
    """Mass (g) of a compartment per patient of ``body`` (tissue density taken as water)."""
    if compartment == "whole_body":
        return np.asarray(scenario.patient.body_weight_kg * 1000.0)
    if compartment in ("venous_blood", "arterial_blood"):
        volume = body.venous_volume_l if compartment == "venous_blood" else body.arterial_volume_l
        return volume * 1000.0
    if compartment == "target":
        return body.organ_volume_l[site] * share * 1000.0
    return body.organ_volume_l[compartment] * 1000.0


def compartment_mass_g(scenario: Scenario, where: str, params: ParameterSet) -> float:
    """Mass (g) of the output's compartments at the table's values (``organ_mass_g``: density of
    water, ``target`` the lesion); as in the outputs, a condition's site is the organ without it."""
    body = physiology(scenario.species, np.array([scenario.patient.body_weight_kg]), params)
    site = scenario.condition.site if scenario.condition is not None else None
    share = scenario.condition.severity * params.get("lesion_fraction_max", site, "") if site else 0.0

    def one(part: str) -> float:
        return float(np.ravel(organ_mass_g(part, body, site, share, scenario))[0])

    return sum(one(part) - (one("target") if part == site else 0.0) for part in where.split("+"))


def grid(
    scenario: Scenario, end_h: float | None = None, points: int = POINTS_PER_ADMINISTRATION
) -> np.ndarray:
    """Times (h) from 0 to ``end_h`` (default: the end of the simulation) at which exposure is read,
    ``points`` log-spaced per administration (and again after its infusion)."""
    end = scenario.simulation.duration_h if end_h is None else end_h
    admin = scenario.administration
    starts = [s for s in admin.starts_h if s < end] or [0.0]
    parts = [np.array([0.0, end])]
    for start, stop in zip(starts, [*starts[1:], end], strict=True):
        # from the start, and again from the end of the infusion (blood empties within minutes)
        for begin in {start, min(start + admin.effective_duration_h, stop)}:
            span = stop - begin
            parts.append(np.array([begin]))
            if span > 0:
                parts.append(begin + np.geomspace(min(FIRST_H, span / 10), span, points))
    times = np.unique(np.concatenate(parts))
    return times[times <= end]


def area(times_h: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Integral of ``values`` (..., times) over ``times_h`` by the linear-up / log-down trapezoid."""
    return _interval_areas(times_h, values).sum(axis=-1)


def areas_to(times_h: np.ndarray, values: np.ndarray, ends_h) -> np.ndarray:
    """``area`` of ``values`` (..., times) from the first time to each of ``ends_h`` (each one of
    ``times_h``): (..., ends), from one running sum of the intervals' areas."""
    running = np.cumsum(_interval_areas(times_h, values), axis=-1)
    running = np.concatenate([np.zeros_like(running[..., :1]), running], axis=-1)
    return running[..., np.searchsorted(times_h, np.asarray(ends_h, dtype=float))]


def _interval_areas(times_h: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Area of each interval between consecutive times (..., times - 1): linear-up / log-down."""
    dt = np.diff(times_h)
    a, b = values[..., :-1], values[..., 1:]
    linear = 0.5 * (a + b) * dt
    falling = (b < a * (1 - 1e-9)) & (b > 0)  # nearly level: the linear rule, without cancellation
    ratio = np.where(falling, a / np.where(falling, b, 1.0), 1.0)
    log_down = np.where(falling, (a - b) * dt / np.log(np.where(falling, ratio, 2.0)), 0.0)
    return np.where(falling, log_down, linear)


def live_by_compartment(model: Model, times_h: np.ndarray) -> dict[str, np.ndarray]:
    """Live cells (patients, times) per compartment as ``simulate``'s table groups them, and the
    whole body."""
    states = solve(model, times_h).patient_states()
    out: dict[str, np.ndarray] = {}
    for i, state in enumerate(model.states):
        if state.kind == "live":
            out[state.compartment] = out.get(state.compartment, 0.0) + states[:, :, i]
    out[WHOLE_BODY] = sum(out.values())
    return out


def table(scenario: Scenario, model: Model, params: ParameterSet) -> pd.DataFrame:
    """One row per compartment (and ``whole_body``) of the scenario's first patient:

    ``peak_cells``, ``peak_time_h``, ``peak_share_of_given`` (peak over the cells given by then),
    ``live_cell_days`` (area to the end of the simulation), ``days_per_cell_given`` (that area over
    all cells given: how long an average cell given lives there), ``mass_g`` (``compartment_mass_g``),
    ``peak_per_g`` and ``live_cell_days_per_g`` (the tissue's exposure, what a dose per gram acts
    through), ``end_cells`` and ``half_life_at_end_h`` (ln 2 over the rate the compartment loses
    cells at the end; null where it is not losing them). Rows are sorted by ``live_cell_days``.
    """
    times = grid(scenario)
    given = np.array([model.administered(t).sum() for t in times]) / model.n_patients
    total = given[-1]
    rows = []
    for compartment, cells in live_by_compartment(model, times).items():
        x = cells[0]
        at = int(np.argmax(x))
        end, before = x[-1], x[-2]
        rate = np.log(before / end) / (times[-1] - times[-2]) if end > 0 and before > end else np.nan
        cell_days = float(area(times, x)) / 24.0
        mass = compartment_mass_g(scenario, compartment, params)
        rows.append(
            {
                "compartment": compartment,
                "peak_cells": float(x[at]),
                "peak_time_h": float(times[at]),
                "peak_share_of_given": float(x[at] / given[at]) if given[at] > 0 else 0.0,
                "live_cell_days": cell_days,
                "days_per_cell_given": cell_days / total if total > 0 else 0.0,
                "mass_g": mass,
                "peak_per_g": float(x[at]) / mass if mass > 0 else None,
                "live_cell_days_per_g": cell_days / mass if mass > 0 else None,
                "end_cells": float(end),
                "half_life_at_end_h": float(np.log(2) / rate) if rate > 0 else None,
            }
        )
    frame = pd.DataFrame(rows)
    return frame.sort_values("live_cell_days", ascending=False, ignore_index=True)


def to_visits(scenario: Scenario, model: Model, visits_d: np.ndarray) -> dict[str, np.ndarray]:
    """Per patient of ``model`` (a virtual trial's arm), the live cells' area (cell-days) from the
    first dose to each visit, (patients, visits): ``target`` (the injured tissue) and ``whole_body``.
    On ``COARSE_POINTS`` per administration (tests/test_exposure.py: within 0.5% of the dense grid)."""
    visits_h = np.asarray(visits_d, dtype=float) * 24.0
    times = np.unique(np.concatenate([grid(scenario, visits_h.max(), COARSE_POINTS), visits_h]))
    live = np.array([s.kind == "live" for s in model.states], dtype=float)
    target = live * np.array([s.compartment == "target" for s in model.states])
    sums = patient_sum(solve_projected(model, times, np.stack([target, live])), model.rows_per_patient)
    names = ("target", WHOLE_BODY)
    return {name: areas_to(times, sums[:, :, j], visits_h) / 24.0 for j, name in enumerate(names)}
