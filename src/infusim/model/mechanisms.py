"""What the cells do: signals computed from live and dying cells, and the responses they drive.

Signals, per patient over a time grid (days):

* ``local``: live cells in the injured tissue (engrafted and implanted cells included) per gram of it;
* ``systemic``: live infused cells anywhere (lung-trapped MSC included; cells engrafted in marrow
  or tissue are part of the host and excluded) per kg body weight: secreted factors;
* ``apoptotic``: cells dying or being engulfed per kg per day: monocyte reprogramming;
* ``differentiation``: engrafted cells per gram of injured tissue;
* ``reset``: depth (0-1) of the immune ablation of a conditioning regimen while it lasts.

Each drives a response ``R`` in [0, 1]:

    dR/dt = k_on a(t) (1 - R) - k_off R,    a = s / (s + K)

integrated exactly over each grid step with the step's mean activation. Disease modules read the
responses only, never cell counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infusim.conditions import MECHANISMS
from infusim.model.declare import Model
from infusim.model.physiology import physiology
from infusim.parameters import ParameterSet
from infusim.scenario import Scenario

#: Grid of the disease clock (days): fine while cells act, then daily, then weekly.
_EARLY_DAYS = np.array([0.0, 1 / 24, 3 / 24, 6 / 24, 12 / 24])


def disease_grid(duration_d: float, outputs_d: np.ndarray) -> np.ndarray:
    """Times (days) for signals and responses: 0-1 day fine, daily to 90 days, weekly after."""
    daily = np.arange(1.0, min(duration_d, 90.0) + 1e-9, 1.0)
    weekly = np.arange(90.0 + 7.0, duration_d + 1e-9, 7.0)
    grid = np.concatenate([_EARLY_DAYS, daily, weekly, [duration_d], np.asarray(outputs_d, dtype=float)])
    return np.unique(grid[grid <= duration_d])


@dataclass(frozen=True)
class Signals:
    """Signals (patients, times) by mechanism on ``times_d``."""

    times_d: np.ndarray
    values: dict[str, np.ndarray]


def signals(
    scenario: Scenario, model: Model, states: np.ndarray, times_d: np.ndarray, params: ParameterSet
) -> Signals:
    """Signals from cell states summed per patient, shape (patients, times, states)."""
    weight_kg = scenario.patient.body_weight_kg
    live = [i for i, s in enumerate(model.states) if s.kind == "live" and not s.name.endswith(":engrafted")]
    target = [i for i, s in enumerate(model.states) if s.kind == "live" and s.compartment == "target"]
    engrafted = [i for i, s in enumerate(model.states) if s.name == "target:engrafted"]
    dying = [model.index(f"dead:{cause}") for cause in ("death", "phagocytosis", "rejection")]
    mass_g = _target_mass_g(scenario, params)
    per_gram = 1.0 / mass_g if mass_g > 0 else 0.0
    dead = states[:, :, dying].sum(axis=2)
    rate = np.zeros_like(dead)
    step = np.diff(times_d)
    rate[:, 1:] = np.diff(dead, axis=1) / step
    cell = scenario.product.cell_type
    secretome = params.get("signal_weight", f"{cell}/systemic", "")
    reprogramming = params.get("signal_weight", f"{cell}/apoptotic", "")
    values = {
        "local": states[:, :, target].sum(axis=2) * per_gram,
        "systemic": secretome * states[:, :, live].sum(axis=2) / weight_kg,
        "apoptotic": reprogramming * rate / weight_kg,
        "differentiation": states[:, :, engrafted].sum(axis=2) * per_gram,
        "reset": _reset(scenario, times_d, states.shape[0], params),
    }
    return Signals(times_d, values)


def _target_mass_g(scenario: Scenario, params: ParameterSet) -> float:
    condition = scenario.condition
    if condition is None:
        return 0.0
    body = physiology(scenario.species, np.array([scenario.patient.body_weight_kg]), params)
    share = condition.severity * params.get("lesion_fraction_max", condition.site, "")
    return float(body.organ_volume_l[condition.site][0]) * share * 1000.0


def _reset(scenario: Scenario, times_d: np.ndarray, patients: int, params: ParameterSet) -> np.ndarray:
    regimen = scenario.administration.conditioning
    if regimen == "none":
        return np.zeros((patients, len(times_d)))
    depth = params.get("conditioning_depth", regimen, "")
    ablation_d = params.get("ablation_duration", regimen, "day")
    return np.tile(np.where(times_d < ablation_d, depth, 0.0), (patients, 1))


def responses(
    signals: Signals, params: ParameterSet, mechanisms: tuple[str, ...] = MECHANISMS
) -> dict[str, np.ndarray]:
    """Responses R in [0, 1] by mechanism, shape (patients, times)."""
    times = signals.times_d
    step = np.diff(times)
    out = {}
    for mechanism in mechanisms:
        k_half = params.get("half_saturation", mechanism, _SIGNAL_UNIT[mechanism])
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
