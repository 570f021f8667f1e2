"""How a condition responds: endpoint trajectories of a treated patient and of its untreated twin.

For each endpoint ``e`` of condition ``c`` (values in the endpoint's unit, days ``t``):

    untreated_e(t) = clamp(baseline_e(severity) + integral_0^t rate_e)  (one rate, or two phases)
    treated_e(t)   = clamp(untreated_e(t) + direction_e G_e(t) (1 - exp(-(I_e + S_e) / G_e(t))))
    I_e(t) = sum_m potency[c, m, e] R_m(t)                        (restoration)
    S_e(t) = sum_m slowing[c, m] integral_0^t |rate_e| R_m dt     (progression prevented, if worsening)

``G_e(t) = |untreated_e(t) - healthy_e|`` is the room left for improvement: the saturating map keeps
a large response from "improving" a patient past health, and is linear (I + S) for small effects.

``R_m`` are the mechanism responses (model/mechanisms.py); ``potency[c, m, e]`` is the row for the
endpoint if there is one, else the primary endpoint's potency times ``effect_ratio[c/e]``.
``baseline_e(s) = healthy_e + (typical_e - healthy_e) s / 0.5`` (``typical`` is the trial-entry
value of a moderate, severity 0.5, patient). Placebo and sham responses are trial-arm effects
(``infusim trial``), not effects of the cells, so they are not part of ``treated``. After a
conditioning regimen, treatment-related mortality accumulates with its own time constant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from infusim.conditions import ConditionInfo, Endpoint
from infusim.parameters import ParameterSet
from infusim.scenario import Scenario

TRM_ENDPOINT = Endpoint(
    "treatment_related_mortality", "Treatment-related mortality", "% of patients", 0, 100, "lower", False
)


@dataclass(frozen=True)
class Variation:
    """How patients differ (arrays over patients): severity, response to cells, natural history.

    ``potency_factor`` multiplies every potency (mean 1); ``annual_change`` maps endpoint names
    to each patient's untreated change per year (table unit), replacing the tabulated mean;
    ``drawn`` replaces table values of potencies and effect ratios, keyed ``(parameter, scope)``,
    with one value per patient (a posterior draw each: see ``infusim.posterior``).
    """

    severity: np.ndarray
    potency_factor: np.ndarray
    annual_change: dict[str, np.ndarray]
    drawn: Mapping[tuple[str, str], np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class EndpointTrajectories:
    """Per endpoint: treated and untreated values, shape (patients, times), on ``times_d``."""

    condition: ConditionInfo
    times_d: np.ndarray
    treated: dict[str, np.ndarray]
    untreated: dict[str, np.ndarray]
    units: dict[str, str]

    def table(self, at_days: np.ndarray) -> pd.DataFrame:
        """Long table ``patient, time_d, endpoint, treated, untreated, unit`` at ``at_days``."""
        index = np.searchsorted(self.times_d, at_days)
        frames = []
        for name, treated in self.treated.items():
            untreated = self.untreated[name]
            patients = treated.shape[0]
            frames.append(
                pd.DataFrame(
                    {
                        "patient": np.repeat(np.arange(patients), len(index)),
                        "time_d": np.tile(self.times_d[index], patients),
                        "endpoint": name,
                        "treated": treated[:, index].reshape(-1),
                        "untreated": untreated[:, index].reshape(-1),
                        "unit": self.units[name],
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)


def baseline(condition: ConditionInfo, endpoint: Endpoint, severity, params: ParameterSet):
    """Value of ``endpoint`` at entry for patients of ``severity`` (0-1; a number or an array)."""
    scope = f"{condition.name}/{endpoint.name}"
    typical = _value(params, "baseline", scope)
    healthy = _value(params, "healthy", scope)
    severity = np.asarray(severity, dtype=float)
    value = healthy + (typical - healthy) * severity / 0.5 if endpoint.by_severity else typical + 0 * severity
    clipped = np.clip(value, endpoint.low, endpoint.high)
    return float(clipped) if clipped.ndim == 0 else clipped


def entry_range(condition: ConditionInfo, params: ParameterSet) -> tuple[float, float]:
    """(low, high) entry values of the condition's primary endpoint in its trials' populations (the
    population rows' eligibility bounds, else the endpoint's range)."""
    primary = condition.primary
    scope = f"{condition.name}/{primary.name}"
    unit = params.entry("baseline", scope).unit
    low = params.get("baseline_min", scope, unit) if params.has("baseline_min", scope) else primary.low
    high = params.get("baseline_max", scope, unit) if params.has("baseline_max", scope) else primary.high
    return min(low, high), max(low, high)


def severity_of(condition: ConditionInfo, endpoint: Endpoint, value, params: ParameterSet):
    """The severity (0-1) whose entry value of ``endpoint`` is ``value`` (inverse of ``baseline``)."""
    scope = f"{condition.name}/{endpoint.name}"
    typical = _value(params, "baseline", scope)
    healthy = _value(params, "healthy", scope)
    return 0.5 * (np.asarray(value, dtype=float) - healthy) / (typical - healthy)


def annual_change(condition: ConditionInfo, endpoint: Endpoint, params: ParameterSet) -> float:
    """Untreated change of ``endpoint`` per year, in the table's unit."""
    return _value(params, "annual_change", f"{condition.name}/{endpoint.name}")


def potency(
    condition: ConditionInfo,
    mechanism: str,
    endpoint: Endpoint,
    params: ParameterSet,
    drawn: Mapping[tuple[str, str], np.ndarray] | None = None,
):
    """Improvement of ``endpoint`` at full response of ``mechanism`` (endpoint units, >= 0).

    A number from the tables, or an array over patients where ``drawn`` holds the value.
    """
    drawn = drawn or {}

    def value(name: str, scope: str):
        return drawn[(name, scope)] if (name, scope) in drawn else _value(params, name, scope)

    keys = potency_keys(condition, mechanism, endpoint, params)
    if any(k[0] == "effect_ratio" and not params.has(*k) and k not in drawn for k in keys):
        return 0.0
    result = value(*keys[0])
    for key in keys[1:]:
        result = result * value(*key)
    return result


def potency_keys(
    condition: ConditionInfo, mechanism: str, endpoint: Endpoint, params: ParameterSet
) -> tuple[tuple[str, str], ...]:
    """The table rows ``(parameter, scope)`` whose product is the potency of ``mechanism`` on
    ``endpoint``: its own potency row, else the primary potency (times the endpoint's effect ratio)."""
    own = f"{condition.name}/{mechanism}/{endpoint.name}"
    if params.has("potency", own):
        return (("potency", own),)
    primary = ("potency", f"{condition.name}/{mechanism}")
    if endpoint.primary:
        return (primary,)
    return (primary, ("effect_ratio", f"{condition.name}/{endpoint.name}"))


def healthy_value(condition: ConditionInfo, endpoint: Endpoint, params: ParameterSet) -> float:
    """The value of ``endpoint`` in health (table unit): the end of the room to improve."""
    return _value(params, "healthy", f"{condition.name}/{endpoint.name}")


def endpoint_scale(params: ParameterSet, info: ConditionInfo, endpoint: str) -> float | None:
    """Between-patient SD of ``endpoint`` from ``baseline_sd`` or ``endpoint_sd``, or None."""
    scope = f"{info.name}/{endpoint}"
    for name in ("baseline_sd", "endpoint_sd"):
        if params.has(name, scope):
            return params.get(name, scope, params.entry(name, scope).unit)
    return None


def _value(params: ParameterSet, name: str, scope: str) -> float:
    """A table value in the unit it is tabulated in (records the source as used)."""
    return params.get(name, scope, params.entry(name, scope).unit)


def slowing(condition: ConditionInfo, mechanism: str, params: ParameterSet) -> float:
    """Fraction of disease progression prevented at full response of ``mechanism``."""
    return params.get("slowing", f"{condition.name}/{mechanism}", "")


def trajectories(
    scenario: Scenario,
    condition: ConditionInfo,
    responses: dict[str, np.ndarray],
    times_d: np.ndarray,
    params: ParameterSet,
    variation: Variation | None = None,
) -> EndpointTrajectories:
    """Treated and untreated trajectories of every endpoint of ``condition``.

    Without ``variation`` every patient is the scenario's patient (its severity, mean potencies and
    natural history).
    """
    years = times_d / 365.25
    patients = next(iter(responses.values())).shape[0]
    drawn: Mapping[tuple[str, str], np.ndarray] = {}
    if variation is None:
        severity = np.full(patients, scenario.condition.severity)
        factor = np.ones(patients)
    else:
        severity, factor, drawn = variation.severity, variation.potency_factor, variation.drawn
    treated, untreated, units = {}, {}, {}
    for endpoint in condition.endpoints:
        mean_rate = annual_change(condition, endpoint, params)
        rate_per_year = np.full(patients, mean_rate)
        if variation is not None and endpoint.name in variation.annual_change:
            rate_per_year = variation.annual_change[endpoint.name]
        entry = np.broadcast_to(baseline(condition, endpoint, severity, params), (patients,))
        rate_now = rates_over_time(condition, endpoint, params, rate_per_year, mean_rate, years)
        steps = np.diff(years)[None, :] * 0.5 * (rate_now[:, 1:] + rate_now[:, :-1])
        natural = entry[:, None] + np.concatenate([np.zeros((patients, 1)), np.cumsum(steps, 1)], 1)
        natural = np.clip(natural, endpoint.low, endpoint.high)
        improvement = np.zeros_like(natural)
        worsening_per_day = np.maximum(0.0, -endpoint.direction * rate_now) / 365.25
        for mechanism in condition.mechanisms:
            strength = factor * np.broadcast_to(
                potency(condition, mechanism, endpoint, params, drawn), (patients,)
            )
            strength = strength[:, None]
            improvement += strength * responses[mechanism]
            prevented = worsening_per_day * responses[mechanism]
            improvement += slowing(condition, mechanism, params) * _cumulative(prevented, times_d)
        room = np.abs(natural - healthy_value(condition, endpoint, params))
        gain = saturating_gain(improvement, room)
        treated[endpoint.name] = np.clip(natural + endpoint.direction * gain, endpoint.low, endpoint.high)
        untreated[endpoint.name] = natural
        units[endpoint.name] = endpoint.unit
    regimen = scenario.administration.conditioning
    if regimen != "none":
        risk = params.get("treatment_related_mortality", regimen, "")
        tau = params.get("trm_time_constant", "", "day")
        treated[TRM_ENDPOINT.name] = np.tile(100.0 * risk * (1.0 - np.exp(-times_d / tau)), (patients, 1))
        untreated[TRM_ENDPOINT.name] = np.zeros((patients, len(times_d)))
        units[TRM_ENDPOINT.name] = TRM_ENDPOINT.unit
    return EndpointTrajectories(condition, times_d, treated, untreated, units)


def rates_over_time(
    condition: ConditionInfo,
    endpoint: Endpoint,
    params: ParameterSet,
    rate_per_year: np.ndarray,
    mean_rate: float,
    years: np.ndarray,
) -> np.ndarray:
    """Untreated rate of change (table unit per year), shape (patients, times).

    One rate, or two phases where the sources show them (``early_phase`` days at the patient's
    rate, then ``annual_change_late`` scaled by the patient's rate relative to the mean).
    """
    scope = f"{condition.name}/{endpoint.name}"
    early = np.broadcast_to(rate_per_year[:, None], (len(rate_per_year), len(years)))
    if not params.has("early_phase", scope):
        return early
    early_years = params.get("early_phase", scope, "day") / 365.25
    late_mean = _value(params, "annual_change_late", scope)
    relative = rate_per_year / mean_rate if mean_rate != 0 else np.ones_like(rate_per_year)
    late = (late_mean * relative)[:, None]
    return np.where(years[None, :] < early_years, early, late)


def _cumulative(values: np.ndarray, times_d: np.ndarray) -> np.ndarray:
    """Trapezoid integral from 0 of ``values`` (patients, times) over ``times_d`` (days)."""
    steps = 0.5 * (values[:, 1:] + values[:, :-1]) * np.diff(times_d)[None, :]
    return np.concatenate([np.zeros((values.shape[0], 1)), np.cumsum(steps, 1)], 1)


def saturating_gain(improvement: np.ndarray, room: np.ndarray) -> np.ndarray:
    """Improvement actually gained, ``room (1 - exp(-improvement / room))`` (0 where no room is left)."""
    safe = np.where(room > 0, room, 1.0)
    return np.where(room > 0, room * -np.expm1(-improvement / safe), 0.0)


def extrapolation_warnings(scenario: Scenario, condition: ConditionInfo) -> list[str]:
    """Warnings when the product, route, dose, conditioning or number of administrations lies outside
    the condition's evidence (``data/evidence.csv``)."""
    from infusim.evidence import studied_doses, studied_products

    product, admin = scenario.product, scenario.administration
    # every administration's own dose (a schedule may give them different ones)
    given = sorted({scenario.dose_cells_per_kg * scale for scale in admin.dose_scales})
    # the trials conditions.yaml lists, and every trial with an estimate in data/evidence.csv
    listed = condition.evidence
    used = (*listed, *(e for e in studied_products(condition.name) if e not in listed))
    matching = [
        e
        for e in used
        if e.cell_type == product.cell_type
        and e.route == admin.route
        and admin.conditioning in e.conditioning
    ]
    studied = "; ".join(
        f"{e.cell_type} {e.route} {e.dose_low:.2g}-{e.dose_high:.2g} cells/kg"
        + (f" with {'/'.join(e.conditioning)}" if e.conditioning != ("none",) else "")
        for e in used
    )
    if not matching:
        return [
            f"extrapolation: {condition.name} has no trial evidence for {product.cell_type} given "
            f"{admin.route}{' with ' + admin.conditioning if admin.conditioning != 'none' else ''} "
            f"(studied: {studied})"
        ]
    notes = []
    outside = [d for d in given if not any(e.dose_low <= d <= e.dose_high for e in matching)]
    if outside:
        doses = ", ".join(f"{d:.2g}" for d in outside)
        notes.append(
            f"extrapolation: {doses} cells/kg {'lies' if len(outside) == 1 else 'lie'} outside the doses "
            f"studied in {condition.name} ({studied})"
        )
    most = studied_doses(condition.name)
    if most and admin.count > most:
        notes.append(
            f"extrapolation: {admin.count} administrations, while the trials of {condition.name} "
            f"with an estimate gave at most {most}: the added effect of repeated doses is the model's "
            "accumulation, not measured"
        )
    return notes
