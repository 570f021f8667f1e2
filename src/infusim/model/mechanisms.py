"""What the cells do: signals computed from live and dying cells, and the responses they drive.

Signals, per patient over a time grid (days, ``disease_grid``: fine after every dose):

* ``local``: live cells in the injured tissue (engrafted and implanted cells included) per gram of it;
* ``systemic``: live infused cells anywhere (lung-trapped MSC included; cells engrafted in marrow
  or tissue are part of the host and excluded) per kg body weight: secreted factors;
* ``apoptotic``: cells dying or being engulfed per kg per day: monocyte reprogramming;
* ``differentiation``: engrafted cells per gram of injured tissue;
* ``reset``: depth (0-1) of the immune ablation of a conditioning regimen while it lasts.

Each drives a response ``R`` in [0, 1]:

    dR/dt = k_on a(t) (1 - R) - k_off R,    a = s / (s + K)

integrated exactly over each grid step with the step's mean activation. Disease modules read the
responses only, never cell counts. The cell sums are computed after solving (``infusim.outcomes``);
this module does not call the solver.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from infusim.conditions import MECHANISMS
from infusim.model.declare import Model
from infusim.model.physiology import physiology
from infusim.parameters import ParameterSet
from infusim.scenario import Scenario

#: Grid of the disease clock after each dose (days): fine while a fresh dose acts.
_EARLY_DAYS = np.array([0.0, 1 / 24, 3 / 24, 6 / 24, 12 / 24])
#: Days after the first dose sampled daily (engraftment and slow clearance) and after later doses.
_DAILY_AFTER_FIRST, _DAILY_AFTER_LATER = 90.0, 30.0


def disease_grid(
    duration_d: float, outputs_d: np.ndarray, dose_times_d: np.ndarray | tuple = (0.0,)
) -> np.ndarray:
    """Times (days) for signals and responses: fine in the first day after every dose, daily for
    90 days after the first dose and 30 days after each later one, weekly otherwise, plus outputs.

    Signals of a fresh dose change within hours to days; sampling each dose alike keeps the
    responses independent of where visits happen to fall.
    """
    doses = np.unique(np.concatenate([[0.0], np.asarray(dose_times_d, dtype=float)]))
    parts = [np.arange(0.0, duration_d + 1e-9, 7.0), [duration_d], np.asarray(outputs_d, dtype=float)]
    for i, start in enumerate(doses):
        span = _DAILY_AFTER_FIRST if i == 0 else _DAILY_AFTER_LATER
        parts.append(start + _EARLY_DAYS)
        parts.append(start + np.arange(1.0, span + 1e-9, 1.0))
    grid = np.unique(np.concatenate(parts))
    return grid[(grid >= 0) & (grid <= duration_d)]


def dose_days(scenario: Scenario) -> np.ndarray:
    """Start times (days) of every administration of ``scenario``."""
    return np.asarray(scenario.administration.starts_h) / 24.0


@dataclass(frozen=True)
class Signals:
    """Signals (patients, times) by mechanism on ``times_d``."""

    times_d: np.ndarray
    values: dict[str, np.ndarray]


#: The weighted sum of cell states each signal is made of (``reset`` needs no cells).
SUMS = {"local": "target_live", "systemic": "live", "apoptotic": "dying", "differentiation": "engrafted"}


def state_weights(model: Model, mechanisms: tuple[str, ...] = MECHANISMS) -> dict[str, np.ndarray]:
    """Weights over ``model.states`` of each cell sum the ``mechanisms`` need (name -> (states,))."""
    rows = {}
    for mechanism in mechanisms:
        name = SUMS.get(mechanism)
        if name is None or name in rows:
            continue
        weights = np.zeros(len(model.states))
        for i, state in enumerate(model.states):
            if name == "target_live":
                weights[i] = state.kind == "live" and state.compartment == "target"
            elif name == "live":
                weights[i] = state.kind == "live" and not state.name.endswith(":engrafted")
            elif name == "dying":
                weights[i] = state.name in ("dead:death", "dead:phagocytosis", "dead:rejection")
            else:
                weights[i] = state.name == "target:engrafted"
        rows[name] = weights
    return rows


def signals(
    scenario: Scenario,
    sums: dict[str, np.ndarray],
    times_d: np.ndarray,
    params: ParameterSet,
    body_weight_kg: np.ndarray | None = None,
    severity: np.ndarray | None = None,
) -> Signals:
    """Signals from cell sums (name -> (patients, times), cells; see ``state_weights``).

    ``body_weight_kg`` and ``severity`` (patients,) default to the scenario's single patient.
    """
    if sums:
        patients = next(iter(sums.values())).shape[0]
    else:
        patients = 1 if body_weight_kg is None else len(body_weight_kg)
    weight = np.broadcast_to(
        scenario.patient.body_weight_kg if body_weight_kg is None else body_weight_kg, (patients,)
    )[:, None]
    condition = scenario.condition
    level = (condition.severity if condition is not None else 0.0) if severity is None else severity
    mass_g = target_mass_g(scenario, params, weight[:, 0], np.broadcast_to(level, (patients,)))[:, None]
    per_gram = np.divide(1.0, mass_g, out=np.zeros_like(mass_g), where=mass_g > 0)
    cell = scenario.product.cell_type
    values = {}
    if "target_live" in sums:
        values["local"] = sums["target_live"] * per_gram
    if "live" in sums:
        secretome = params.get("signal_weight", f"{cell}/systemic", "")
        values["systemic"] = secretome * sums["live"] / weight
    if "dying" in sums:
        dead = sums["dying"]
        rate = np.zeros_like(dead)
        rate[:, 1:] = np.diff(dead, axis=1) / np.diff(times_d)
        reprogramming = params.get("signal_weight", f"{cell}/apoptotic", "")
        values["apoptotic"] = reprogramming * rate / weight
    if "engrafted" in sums:
        values["differentiation"] = sums["engrafted"] * per_gram
    values["reset"] = _reset(scenario, times_d, patients, params)
    return Signals(times_d, values)


def target_mass_g(
    scenario: Scenario, params: ParameterSet, body_weight_kg: np.ndarray, severity: np.ndarray
) -> np.ndarray:
    """Mass (g) of the injured tissue per patient (organ mass x severity x largest lesion share)."""
    condition = scenario.condition
    if condition is None:
        return np.zeros_like(body_weight_kg)
    body = physiology(scenario.species, body_weight_kg, params)
    share = severity * params.get("lesion_fraction_max", condition.site, "")
    return body.organ_volume_l[condition.site] * share * 1000.0


def _reset(scenario: Scenario, times_d: np.ndarray, patients: int, params: ParameterSet) -> np.ndarray:
    regimen = scenario.administration.conditioning
    if regimen == "none":
        return np.zeros((patients, len(times_d)))
    depth = params.get("conditioning_depth", regimen, "")
    ablation_d = params.get("ablation_duration", regimen, "day")
    return np.tile(np.where(times_d < ablation_d, depth, 0.0), (patients, 1))


def responses(
    signals: Signals,
    params: ParameterSet,
    mechanisms: tuple[str, ...] = MECHANISMS,
    half_saturation: Mapping[str, np.ndarray | float] | None = None,
) -> dict[str, np.ndarray]:
    """Responses R in [0, 1] by mechanism, shape (patients, times).

    ``half_saturation`` replaces the tabulated K of a mechanism (a number, or one per patient).
    """
    half_saturation = half_saturation or {}
    times = signals.times_d
    step = np.diff(times)
    out = {}
    for mechanism in mechanisms:
        k_half = half_saturation.get(mechanism)
        if k_half is None:
            k_half = params.get("half_saturation", mechanism, _SIGNAL_UNIT[mechanism])
        k_half = np.asarray(k_half, dtype=float).reshape(-1, 1) if np.ndim(k_half) else float(k_half)
        k_on = params.get("response_onset_rate", mechanism, "1/day")
        k_off = params.get("response_offset_rate", mechanism, "1/day")
        s = signals.values[mechanism]
        mean = 0.5 * (s[:, 1:] + s[:, :-1]) if mechanism != "apoptotic" else s[:, 1:]
        activation = mean / (mean + k_half)
        total = k_on * activation + k_off
        steady = np.divide(k_on * activation, total, out=np.zeros_like(total), where=total > 0)
        decay = np.exp(-total * step)
        r = np.zeros_like(s)
        for i in range(len(step)):
            r[:, i + 1] = steady[:, i] + (r[:, i] - steady[:, i]) * decay[:, i]
        out[mechanism] = r
    return out


_SIGNAL_UNIT = {
    "local": "1/g",
    "systemic": "1/kg",
    "apoptotic": "1/kg/day",
    "differentiation": "1/g",
    "reset": "",
}
