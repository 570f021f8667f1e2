"""Each patient of a virtual trial as *exposures* to the cost and utility rows.

A patient's QALYs and costs are linear in the rows, so each patient is reduced once to the
discounted years spent at each utility level of the condition's endpoint (the utility linear in time
between visits, discounting continuous, integrated exactly; the last value carried to death, zero
after; carried forward after a loss to follow-up), the discounted events of a rate endpoint that has a
QALY loss per event, the discounted years at each health-state cost level and alive, the discounted
doses (or million cells), deliveries, harvests and transplant episodes, and the discounted serious
adverse-event episodes that have a cost: ``infusim.economics`` multiplies them by the rows' values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from infusim.errors import DataError, InfusimError
from infusim.parameters import SCENARIO_SOURCE, Entry, ParameterSet
from infusim.population import doses_taken, replicate_seed
from infusim.scenario import Scenario

DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class Column:
    """One exposure: what is counted per patient and the row whose value multiplies it."""

    key: tuple[str, str]  # (parameter, scope) of the row, or (SCENARIO_SOURCE, costs field)
    kind: str  # "qalys", "cost" or "life_years"
    component: str  # health, disease, product, delivery, harvest, conditioning, events


@dataclass(frozen=True)
class Exposures:
    """Per patient of replicate 0: its arm and its exposure to every column."""

    arms: list[str]
    arm: np.ndarray  # (patients,) arm index
    matrix: np.ndarray  # (patients, columns)
    columns: list[Column]
    patients: np.ndarray | None = None  # (patients,) patient index within the replicate


# ---------------------------------------------------------------- rows


def _knots(params: ParameterSet, parameter: str, prefix: str) -> list[tuple[float, Entry]]:
    """Rows ``parameter[<prefix>=<value>]`` sorted by value."""
    found = []
    for (name, scope), entry in params.entries.items():
        if name == parameter and scope.startswith(prefix + "="):
            found.append((float(scope[len(prefix) + 1 :]), entry))
    return sorted(found, key=lambda item: item[0])


def _event_losses(params: ParameterSet, condition: str) -> list[tuple[str, Entry]]:
    """Rate endpoints (events per year) of ``condition`` with a QALY loss per event
    (``event_qaly_loss[<condition>/<endpoint>]``)."""
    return sorted(
        (scope.split("/", 1)[1], entry)
        for (name, scope), entry in params.entries.items()
        if name == "event_qaly_loss" and scope.startswith(condition + "/")
    )


def mapped_endpoints(params: ParameterSet, condition: str) -> list[str]:
    """Endpoints of ``condition`` that have a utility mapping."""
    return sorted(
        {
            scope.split("/", 1)[1].split("=")[0]
            for (name, scope) in params.entries
            if name == "utility" and scope.startswith(condition + "/")
        }
    )


# ---------------------------------------------------------------- exposures


def discount_factor(days: np.ndarray, rate: float) -> np.ndarray:
    """Continuous discounting at an annual ``rate``: ``(1 + rate) ** -(days / 365.25)``."""
    return np.exp(-np.log1p(rate) * np.asarray(days, dtype=float) / DAYS_PER_YEAR)


def _ramp_integrals(length: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact integrals over [0, L] of (1 - s/L) e^(-delta s) and (s/L) e^(-delta s) (L in years)."""
    a = delta * length
    small = a < 1e-6
    safe = np.where(small, 1.0, a)
    whole = np.where(small, length * (1 - a / 2), length * -np.expm1(-safe) / safe)
    late = np.where(
        small, length * (0.5 - a / 3), length * (-np.expm1(-safe) - safe * np.exp(-safe)) / safe**2
    )
    return whole - late, late


def time_weights(times_d: np.ndarray, died_d: np.ndarray, rate: float) -> np.ndarray:
    """Discounted years each visit's value stands for (patients, visits): the value is linear in time
    between visits and the discount continuous, integrated exactly; in the interval of a death the
    earlier value is carried to the day of death, and nothing accrues after it."""
    times = np.asarray(times_d, dtype=float) / DAYS_PER_YEAR
    died = np.where(np.isnan(died_d), np.inf, np.asarray(died_d, dtype=float) / DAYS_PER_YEAR)
    delta = np.log1p(rate)
    weights = np.zeros((died.size, times.size))
    for j in range(times.size - 1):
        start, length = times[j], times[j + 1] - times[j]
        lived = np.clip(died - start, 0.0, length)
        full = lived >= length
        d0 = np.exp(-delta * start)
        early, late = _ramp_integrals(np.array(length), delta)
        carried = _ramp_integrals(lived, delta)  # the earlier value held: both ramps of the lived span
        weights[:, j] += d0 * np.where(full, early, carried[0] + carried[1])
        weights[:, j + 1] += d0 * np.where(full, late, 0.0)
    return weights


def interpolation(values: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Weights (..., knots) of linear interpolation between ``knots``, held at the end knots."""
    x = np.clip(values, knots[0], knots[-1])
    right = np.clip(np.searchsorted(knots, x, side="right"), 1, knots.size - 1)
    left = right - 1
    span = knots[right] - knots[left]
    t = (x - knots[left]) / span
    out = np.zeros((*x.shape, knots.size))
    np.put_along_axis(out, left[..., None], (1.0 - t)[..., None], axis=-1)
    # += on the right knot: at the last knot t = 1 and left's weight is 0
    out += np.eye(knots.size)[right] * t[..., None]
    return out


def _state_exposures(values: np.ndarray, weights: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Discounted years spent at each knot (patients, knots)."""
    alive_value = np.where(weights > 0, values, knots[0])
    if np.any(np.isnan(alive_value)):
        raise DataError("patients", "an endpoint value is missing at baseline")
    return np.einsum("pv,pvk->pk", weights, interpolation(alive_value, knots))


def _dose_days(arm_scenario: Scenario) -> np.ndarray:
    return np.asarray(arm_scenario.administration.starts_h) / 24.0


def exposures(scenario: Scenario, out: Path, params: ParameterSet, chosen: dict) -> Exposures:
    """Every patient of replicate 0 of the trial in ``out`` reduced to exposures (``chosen``: from
    ``settings``)."""
    rates = [name for name, _ in _event_losses(params, scenario.condition.name)]
    frame = pd.read_parquet(
        out / "patients",
        columns=[
            "patient",
            "arm",
            "time_d",
            "body_weight_kg",
            "died_d",
            *dict.fromkeys([chosen["endpoint"], *rates]),
        ],
        filters=[("replicate", "==", 0)],
    )
    events = pd.read_parquet(
        out / "adverse_events",
        columns=["patient", "event", "time_d", "serious"],
        filters=[("replicate", "==", 0)],
    )
    return exposures_of(scenario, frame, events, params, chosen)


def exposures_of(
    scenario: Scenario, frame: pd.DataFrame, events: pd.DataFrame, params: ParameterSet, chosen: dict
) -> Exposures:
    """Patients' rows (one per visit) and their adverse events reduced to exposures; the columns
    depend on the scenario and the rows only, never on which events happened to occur."""
    trial = scenario.trial
    condition, endpoint = scenario.condition.name, chosen["endpoint"]
    cur = chosen["currency"].lower()
    rate_c, rate_q = chosen["discount_costs"], chosen["discount_qalys"]
    frame = frame.sort_values(["patient", "time_d"], kind="stable")
    times = np.sort(frame["time_d"].unique()).astype(float)
    visits = times.size
    # after a loss to follow-up (trial.dropout) the last recorded value is carried forward (LOCF)
    values = pd.DataFrame(frame[endpoint].to_numpy(float).reshape(-1, visits)).ffill(axis=1).to_numpy()
    first = frame.iloc[::visits]
    died = first["died_d"].to_numpy(float)
    weight_kg = first["body_weight_kg"].to_numpy(float)
    arms = [a.name for a in trial.arms]
    arm = first["arm"].astype(str).map({name: i for i, name in enumerate(arms)}).to_numpy(int)

    blocks: list[np.ndarray] = []
    columns: list[Column] = []
    q_weights = time_weights(times, died, rate_q)
    knots = _knots(params, "utility", f"{condition}/{endpoint}")
    at = np.array([k for k, _ in knots])
    blocks.append(_state_exposures(values, q_weights, at))
    columns += [Column(("utility", e.scope), "qalys", "health") for _, e in knots]
    for name, entry in _event_losses(params, condition):
        # events per year integrated over the discounted time alive, as a loss (negative exposure)
        rate = pd.DataFrame(frame[name].to_numpy(float).reshape(-1, visits)).ffill(axis=1).to_numpy()
        blocks.append(-np.nansum(q_weights * rate, axis=1, keepdims=True))
        columns.append(Column((entry.parameter, entry.scope), "qalys", "health"))
    blocks.append(q_weights.sum(axis=1, keepdims=True))
    columns.append(Column(("life_years", ""), "life_years", "health"))
    states = _knots(params, "state_cost", f"{cur}/{condition}/{endpoint}")
    if states:
        c_weights = time_weights(times, died, rate_c)
        blocks.append(_state_exposures(values, c_weights, np.array([k for k, _ in states])))
        columns += [Column(("state_cost", e.scope), "cost", "disease") for _, e in states]
    annual = scenario.economics.costs.annual
    if annual:
        alive_years = time_weights(times, died, rate_c).sum(axis=1)
        for name in annual:
            blocks.append((alive_years * (arm == arms.index(name)))[:, None])
            columns.append(Column((SCENARIO_SOURCE, f"annual.{name}"), "cost", "ongoing care"))
    replicate = int(frame["replicate"].iloc[0]) if "replicate" in frame and len(frame) else 0
    seed = replicate_seed(scenario.simulation.seed, replicate)
    procedure, procedure_columns = _procedures(
        scenario, params, chosen, arm, died, weight_kg, (seed, first["patient"].to_numpy())
    )
    blocks.append(procedure)
    columns += procedure_columns
    events, event_columns = _events(events, params, cur, rate_c, first["patient"].to_numpy(), scenario)
    blocks.append(events)
    columns += event_columns
    return Exposures(arms, arm, np.hstack(blocks), columns, first["patient"].to_numpy())


def find(params: ParameterSet, parameter: str, scope: str) -> Entry | None:
    """The most specific row for ``scope`` (``gbp/msc/allogeneic/bone_marrow``, then ``gbp/msc/allogeneic``,
    ...), never beyond the currency: None when the currency has none."""
    parts = scope.split("/")
    for n in range(len(parts), 1, -1):
        entry = params.entries.get((parameter, "/".join(parts[:n])))
        if entry is not None:
            return entry
    return None


def _cost_key(params: ParameterSet, parameter: str, scope: str, override, field: str) -> tuple[str, str]:
    """The row (or the scenario's override) that prices one cost column."""
    if override is not None:
        return (SCENARIO_SOURCE, field)
    entry = find(params, parameter, scope)
    if entry is None:
        raise InfusimError(
            f"economics.costs.{field}",
            f"no bundled {parameter} for {scope.replace('/', ' / ')}; give economics.costs.{field}",
        )
    return (entry.parameter, entry.scope)


def _procedures(
    scenario: Scenario,
    params: ParameterSet,
    chosen: dict,
    arm: np.ndarray,
    died: np.ndarray,
    weight_kg,
    who: tuple[int, np.ndarray] | None = None,
) -> tuple[np.ndarray, list[Column]]:
    """Discounted doses (or million cells), deliveries, harvests and transplant episodes per patient;
    ``who``: (replicate seed, patient indices), whose missed administrations (``trial.missed_doses``)
    cost nothing (a missed administration is neither delivered nor its product paid)."""
    econ = scenario.economics.costs
    cur = chosen["currency"].lower()
    rate = chosen["discount_costs"]
    alive_until = np.where(np.isnan(died), np.inf, died)
    by_column: dict[Column, np.ndarray] = {}

    def add(column: Column, amount: np.ndarray) -> None:
        by_column[column] = by_column.get(column, np.zeros(arm.size)) + amount

    for index, spec in enumerate(scenario.trial.arms):
        if spec.kind == "none":
            continue
        mine = (arm == index).astype(float)
        variant = scenario.for_arm(spec)
        admin, product = variant.administration, variant.product
        given = [discount_factor(day, rate) * (alive_until > day) for day in _dose_days(variant)]
        if who is not None and scenario.trial.missed_doses:
            taken = doses_taken(who[0], who[1], admin.count, scenario.trial.missed_doses)
            given = [g * taken[:, i] for i, g in enumerate(given)]
        doses = sum(given)
        # cells are paid per administration at its own dose (a schedule's doses may differ)
        dose_multiples = sum(g * scale for g, scale in zip(given, admin.dose_scales, strict=True))
        transplant = spec.kind == "cells" and admin.conditioning != "none"
        if transplant:
            key = _cost_key(
                params, "transplant_cost", f"{cur}/{admin.conditioning}", econ.conditioning, "conditioning"
            )
            add(Column(key, "cost", "conditioning"), mine)
        if product.donor == "autologous" and not transplant:
            key = _cost_key(params, "harvest_cost", f"{cur}/{product.tissue_source}", econ.harvest, "harvest")
            add(Column(key, "cost", "harvest"), mine)
        if not transplant:
            site = variant.site if admin.route in ("local", "intra_arterial") else None
            scope = f"{cur}/{admin.route}" + (f"/{site}" if site else "")
            key = _cost_key(params, "delivery_cost", scope, econ.delivery_per_dose, "delivery_per_dose")
            add(Column(key, "cost", "delivery"), mine * doses)
        if spec.kind != "cells" or transplant:  # an autologous graft is part of its transplant episode
            continue
        product_scope = f"{cur}/{product.cell_type}/{product.donor}/{product.tissue_source}"
        if econ.product_per_dose is not None or (
            econ.product_per_million_cells is None and find(params, "product_cost_per_dose", product_scope)
        ):
            key = _cost_key(
                params, "product_cost_per_dose", product_scope, econ.product_per_dose, "product_per_dose"
            )
            add(Column(key, "cost", "product"), mine * doses)
        else:
            key = _cost_key(
                params,
                "product_cost_per_million_cells",
                product_scope,
                econ.product_per_million_cells,
                "product_per_million_cells",
            )
            cells = variant.dose_cells_for(weight_kg) / 1e6
            add(Column(key, "cost", "product"), mine * dose_multiples * cells)
    columns = list(by_column)
    return np.column_stack([by_column[c] for c in columns]) if columns else np.zeros((arm.size, 0)), columns


def _events(
    found: pd.DataFrame, params: ParameterSet, cur: str, rate: float, patients: np.ndarray, scenario: Scenario
) -> tuple[np.ndarray, list[Column]]:
    """Discounted serious episodes (grade 3-5) per patient of every event that has a cost in the
    currency (a column whether or not the event occurred)."""
    found = found[found["serious"].astype(bool)]
    overrides = scenario.economics.costs.events
    position = pd.Series(np.arange(patients.size), index=patients)
    columns, blocks = [], []
    priced = {
        scope.split("/", 1)[1]
        for (name, scope) in params.entries
        if name == "event_cost" and scope.startswith(cur + "/")
    }
    for event in sorted(priced | set(overrides)):
        rows = found[found["event"].astype(str) == event]
        if event in overrides:
            key = (SCENARIO_SOURCE, f"events.{event}")
        elif find(params, "event_cost", f"{cur}/{event}"):
            key = ("event_cost", params.entry("event_cost", f"{cur}/{event}").scope)
        else:
            continue
        amount = np.zeros(patients.size)
        np.add.at(
            amount, position[rows["patient"].to_numpy()].to_numpy(), discount_factor(rows["time_d"], rate)
        )
        columns.append(Column(key, "cost", "events"))
        blocks.append(amount)
    return (np.column_stack(blocks) if blocks else np.zeros((patients.size, 0))), columns


def uncosted_events(out: Path, params: ParameterSet, scenario: Scenario, currency: str) -> dict[str, dict]:
    """Serious episodes per arm of events without a cost (they are listed, not silently priced)."""
    found = pd.read_parquet(
        out / "adverse_events", columns=["arm", "event", "serious"], filters=[("replicate", "==", 0)]
    )
    found = found[found["serious"]]
    missing = {}
    for event, rows in found.groupby(found["event"].astype(str)):
        if event.endswith("death"):  # a death ends the QALYs; its care is not an episode infusim prices
            continue
        if event in scenario.economics.costs.events or params.has(
            "event_cost", f"{currency.lower()}/{event}"
        ):
            continue
        missing[event] = {str(a): int(n) for a, n in rows["arm"].astype(str).value_counts().items()}
    return missing
