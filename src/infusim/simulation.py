"""One run end to end: scenario -> model -> solved cells and markers -> tables and a summary."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from infusim import __version__, conditions, exposure, outcomes, regulatory, safety
from infusim.model import disease
from infusim.model.declare import Model, patient_sum
from infusim.model.disease import EndpointTrajectories
from infusim.model.kinetics import SIZE_NODES, assemble
from infusim.observe import Observed, cells_table, observation_table, observe
from infusim.parameters import ParameterSet, citation_line, for_scenario
from infusim.scenario import Scenario, as_scenario
from infusim.solve import conservation_error
from infusim.units import time_label

DISCLAIMER = (
    "infusim is a research tool. Its results are model predictions for research and teaching, "
    "not advice for any patient."
)
#: Points of the dense time grid used for curves in reports (log-spaced, plus the outputs).
REPORT_GRID_POINTS = 120


@dataclass(frozen=True)
class Result:
    """Everything one simulation produced; ``endpoints`` is empty without a named condition."""

    scenario: Scenario
    model: Model
    observed: Observed
    cells: pd.DataFrame
    observations: pd.DataFrame
    summary: dict[str, Any]
    endpoints: pd.DataFrame
    adverse_events: pd.DataFrame
    #: Peak, area (live cell-days) and half-life at the end per compartment (``exposure.table``).
    exposure: pd.DataFrame

    def to_pandas(self) -> pd.DataFrame:
        """Cells per compartment, state and output time (``cells.parquet``)."""
        return self.cells

    def plot(self):
        """Live cells per compartment (% of cells given so far) at the output times, as a plotly figure;
        the condition's organ and ``target`` always shown, the rest a legend click away."""
        from infusim.report.html import _live_figure

        times = np.unique(self.cells.time_h)
        given = pd.Series([self.model.administered(t).sum() for t in times], index=times)
        site = self.scenario.condition.site if self.scenario.condition else None
        return _live_figure(self.cells, given, site)

    def write_report(self, path) -> Path:
        """The self-contained HTML report of ``infusim simulate``."""
        from infusim.report.html import render

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(self), encoding="utf-8")
        return path


def disease_outcomes(
    scenario: Scenario, model: Model, params: ParameterSet, extra_days: np.ndarray | None = None
) -> EndpointTrajectories | None:
    """Endpoint trajectories (treated and untreated twin) of the scenario's named condition."""
    if not scenario.clinical:  # no named condition, or not a human patient
        return None
    outputs_d = np.asarray(scenario.simulation.outputs_h, dtype=float) / 24.0
    if extra_days is not None:
        outputs_d = np.concatenate([outputs_d, extra_days])
    return outcomes.endpoint_paths(
        scenario, model, params, outputs_d, end_d=scenario.simulation.duration_h / 24.0
    )


def simulate(
    scenario: Scenario | dict | str | Path, params: ParameterSet | None = None, uncertainty: int = 0
) -> Result:
    """Simulate one patient described by ``scenario`` (a Scenario, a mapping or a YAML path) at its
    output times.

    ``uncertainty`` > 0 also draws that many parameter sets from the priors of every row the run
    reads (posterior rows jointly) and puts the median and 95% band of each output in the summary's
    ``uncertainty`` section (``ensemble.bands``).
    """
    scenario = as_scenario(scenario)
    params = params or for_scenario(scenario)
    model = assemble(scenario, params=params)
    times = np.asarray(scenario.simulation.outputs_h, dtype=float)
    label = scenario.simulation.label
    observed = observe(
        model,
        times,
        scenario.species,
        label=label,
        params=params,
    )
    cells = cells_table(observed)
    observations = observation_table(observed)
    paths = disease_outcomes(scenario, model, params)
    endpoints = pd.DataFrame(columns=["patient", "time_d", "endpoint", "treated", "untreated", "unit"])
    intervals: dict = {}
    if paths is not None:
        endpoints = paths.table(times / 24.0)
        intervals = effect_intervals(scenario, model, params)
    summary = _summary(scenario, model, observed, cells, params, endpoints, intervals)
    adverse, summary["adverse_events"] = safety.simulate_events(scenario, model, params)
    summary["warnings"] += summary["adverse_events"].pop("warnings", [])
    summary["regulatory"] = regulatory.note(scenario)
    summary["uncertainty"] = None
    if uncertainty > 0:
        from infusim.ensemble import bands

        summary["uncertainty"] = bands(scenario, uncertainty, scenario.simulation.seed, params)
    # once every row has been read, the adverse-event model's included
    summary["sources"] = {key: citation_line(key) for key in params.sources_used()}
    summary["parameters_used"] = parameters_used(params)
    exposures = exposure.table(scenario, model, params)
    summary["exposure"] = exposures.astype(object).where(exposures.notna(), None).to_dict("records")
    return Result(scenario, model, observed, cells, observations, summary, endpoints, adverse, exposures)


#: Posterior draws behind the 95% interval of each effect in ``simulate``.
EFFECT_DRAWS = 400


def effect_intervals(scenario: Scenario, model: Model, params: ParameterSet) -> dict[tuple[float, str], dict]:
    """Mean and 95% interval of each endpoint effect at each output time, over posterior draws of the
    condition's potencies (and fitted K): ``(time_d, endpoint) -> {mean, low, high, new_trial_low,
    new_trial_high}``. The ``new_trial`` interval adds the between-trial variation the fit found
    (tau, in SDs of the endpoint: one study effect per draw, shared by every endpoint and time, as in
    the fit; Higgins, Thompson and Spiegelhalter 2009): where a new, unbiased trial's true effect may
    lie, which can cross zero where the average effect cannot. Empty when the condition has no fitted
    posterior (no controlled evidence with a CI) or no clinical endpoints."""
    from infusim import posterior

    if not scenario.clinical:
        return {}
    fitted = posterior.load(scenario.condition.name)
    if fitted is None:
        return {}
    times_d = np.asarray(scenario.simulation.outputs_h, dtype=float) / 24.0
    pick = fitted.pick(EFFECT_DRAWS, scenario.simulation.seed)  # the paths' draws and their tau alike
    draws = outcomes.effect_draws(
        scenario, model, params, times_d, scenario.simulation.duration_h / 24.0, EFFECT_DRAWS, pick
    )
    tau = fitted.samples["tau_smd"][pick] if "tau_smd" in fitted.samples else np.zeros(EFFECT_DRAWS)
    study = np.random.default_rng([scenario.simulation.seed, 2009]).standard_normal(EFFECT_DRAWS)
    index = np.searchsorted(draws.times_d, times_d)
    endpoints = {e.name for e in draws.condition.endpoints}  # not treatment-related mortality
    out = {}
    for name, treated in draws.treated.items():
        if name not in endpoints:
            continue
        effect = treated[:, index] - draws.untreated[name][:, index]
        low, high = np.percentile(effect, [2.5, 97.5], axis=0)
        scale = disease.endpoint_scale(params, draws.condition, name)
        new = effect + (tau * study)[:, None] * scale if scale is not None else None
        new_low, new_high = np.percentile(new, [2.5, 97.5], axis=0) if new is not None else (None, None)
        for i, t in enumerate(times_d):
            out[(float(t), name)] = {
                "mean": float(effect[:, i].mean()),
                "low": float(low[i]),
                "high": float(high[i]),
                "new_trial_low": None if new is None else float(new_low[i]),
                "new_trial_high": None if new is None else float(new_high[i]),
            }
    return out


def effect_texts(entry: dict) -> tuple[str, str, str]:
    """An endpoint entry of ``summary['endpoints']`` as printed: (effect, its 95% interval, a new
    trial's 95% interval), 'not estimated' and 'n/a' where there is no number."""

    def span(low: float | None, high: float | None) -> str:
        return "n/a" if low is None else f"{low:+.3g} to {high:+.3g}"

    effect = "not estimated" if entry["effect"] is None else f"{entry['effect']:+.3g}"
    return effect, span(entry["low"], entry["high"]), span(entry["new_trial_low"], entry["new_trial_high"])


def doses_text(summary: dict) -> str:
    """The doses of ``summary`` in one line: ``7e+07 cells (1e+06 cells/kg) x 2`` for equal doses
    (with their days when a schedule spaces them unevenly), else each one's cells per kg and day."""
    schedule = summary["dose_schedule"]
    days = [d["start_h"] / 24 for d in schedule]
    if len({round(d["dose_cells"], 6) for d in schedule}) == 1:
        even = len(days) < 3 or np.allclose(np.diff(days), days[1] - days[0])
        when = "" if even else " at day " + ", ".join(f"{day:g}" for day in days)
        per_kg = summary["dose_cells_per_kg"]
        return f"{summary['dose_cells']:.3g} cells ({per_kg:.3g} cells/kg) x {summary['doses']}{when}"
    given = ", ".join(
        f"{d['dose_cells_per_kg']:.3g} at day {day:g}" for d, day in zip(schedule, days, strict=True)
    )
    total = sum(d["dose_cells"] for d in schedule)
    return f"cells/kg {given} ({total:.3g} cells in all)"


def dense_times(scenario: Scenario) -> np.ndarray:
    """A log-spaced grid from 1 min to the end of the simulation, plus the output times (h)."""
    end = scenario.simulation.duration_h
    grid = np.geomspace(1 / 60, end, REPORT_GRID_POINTS)
    starts = list(scenario.administration.starts_h)
    return np.unique(np.concatenate([[0.0], grid, scenario.simulation.outputs_h, starts]))


def _summary(
    scenario: Scenario,
    model: Model,
    observed: Observed,
    cells: pd.DataFrame,
    params: ParameterSet,
    endpoints: pd.DataFrame,
    intervals: dict | None = None,
) -> dict[str, Any]:
    times = observed.trajectory.times_h
    given = np.stack([patient_sum(model.administered(t), model.rows_per_patient) for t in times], axis=1)[0]
    live = cells[(cells.patient == 0) & (cells.state == "live")]
    fractions: dict[str, dict[str, float]] = {}
    for t, denominator in zip(times, given, strict=True):
        rows = live[live.time_h == t]
        fractions[time_label(t)] = {
            row.compartment: (float(row.cells / denominator) if denominator > 0 else 0.0)
            for row in rows.itertuples()
        }
    dead = cells[(cells.patient == 0) & (cells.state != "live")]
    dead_fractions = {
        time_label(t): {
            row.state: (float(row.cells / d) if d > 0 else 0.0) for row in dead[dead.time_h == t].itertuples()
        }
        for t, d in zip(times, given, strict=True)
    }
    cell_model_error = float(conservation_error(observed.trajectory)[0])
    label = scenario.simulation.label
    warnings = scenario.warnings()
    effects: dict[str, dict[str, dict[str, float | str]]] = {}
    name = scenario.condition.name if scenario.condition else None
    evidence = _evidence_note(name)
    if scenario.clinical:
        warnings += disease.extrapolation_warnings(scenario, conditions.get(name))
        for row in endpoints[endpoints.patient == 0].itertuples():
            band = (intervals or {}).get((float(row.time_d), row.endpoint))
            # a potency set to 0 for want of a controlled estimate is not a measured null: no number
            unmeasured = not (evidence or {}).get("studies") and row.treated == row.untreated
            effects.setdefault(time_label(row.time_d * 24.0), {})[row.endpoint] = {
                "treated": float(row.treated),
                "untreated": float(row.untreated),
                "effect": None if unmeasured else float(row.treated - row.untreated),
                "mean": band["mean"] if band else None,
                "low": band["low"] if band else None,
                "high": band["high"] if band else None,
                "new_trial_low": band["new_trial_low"] if band else None,
                "new_trial_high": band["new_trial_high"] if band else None,
                "unit": row.unit,
            }
    return {
        "infusim_version": __version__,
        "scenario_name": scenario.name,
        "scenario_hash": scenario.hash(),
        "seed": scenario.simulation.seed,
        "species": scenario.species,
        "body_weight_kg": scenario.patient.body_weight_kg,
        "dose_cells": scenario.dose_cells,
        "dose_cells_per_kg": scenario.dose_cells_per_kg,
        "doses": scenario.administration.count,
        "dose_schedule": [
            {
                "start_h": start,
                "dose_cells": scenario.dose_cells * scale,
                "dose_cells_per_kg": scenario.dose_cells_per_kg * scale,
            }
            for start, scale in zip(
                scenario.administration.starts_h, scenario.administration.dose_scales, strict=True
            )
        ],
        "total_cells_administered": float(given[-1]),
        "mass_balance_max_rel_error": cell_model_error,
        "output_times_h": [float(t) for t in times],
        "live_fraction_of_dose": fractions,
        "dead_fraction_of_dose": dead_fractions,
        "fraction_denominator": "cells administered up to each output time",
        "label": None
        if label is None
        else {"isotope": label.isotope, "decay_corrected": label.decay_corrected},
        "compartments_note": (
            "with a condition, the organ's row is its healthy part and 'target' the injured part; "
            "engrafted cells are counted in their compartment"
        ),
        "solver": {
            "method": "exact: identical organs lumped, eigen-decomposition of the linear system "
            "(matrix exponential where that is ill-conditioned)",
            "size_classes": len(SIZE_NODES),
        },
        "condition": name,
        "endpoints": effects,
        "endpoint_note": (
            "effect = treated minus untreated twin (natural history only) at the posterior-median "
            "parameters; mean, low and high are the mean and 95% interval of the effect over "
            f"{EFFECT_DRAWS} draws of the condition's posterior (uncertainty of the average effect the "
            "controlled evidence supports; a new trial varies more: see validate's prediction "
            "intervals); new_trial_low and new_trial_high add the between-trial SD the fit found "
            "(tau, in SDs of the endpoint, one study effect per draw at every visit, as in the fit): "
            "where an unbiased new trial's true effect may lie, which can cross zero; "
            "all null when the condition has no fitted evidence (its potency is a "
            "placeholder 0, not a measured null). Placebo or sham responses "
            "belong to trial arms and are not included"
        ),
        "evidence": evidence,
        "warnings": warnings,
        "overrides": overrides(scenario, params),
        "disclaimer": DISCLAIMER,
    }


def parameters_used(params: ParameterSet) -> list[dict]:
    """Every table row this run read: ``name[scope]``, value, unit, source key and provenance."""
    rows = []
    for key in sorted(params.read_keys):
        entry = params.entries[key]
        value = np.asarray(entry.value, dtype=float)
        rows.append(
            {
                "parameter": f"{key[0]}[{key[1]}]" if key[1] else key[0],
                "value": float(value) if value.ndim == 0 else value.tolist(),
                "unit": entry.unit,
                "source": entry.source,
                "provenance": entry.provenance,
            }
        )
    return rows


def overrides(scenario: Scenario, params: ParameterSet) -> dict[str, dict]:
    """The scenario's ``parameters`` section as applied: value in the row's unit and what it replaced."""
    from infusim.parameters import bundled, parse_name

    table = bundled()
    out = {}
    for name in scenario.parameters:
        key = parse_name(name)
        old, new = table.entry(*key), params.entry(*key)
        out[name] = {
            "value": new.value,
            "unit": new.unit,
            "table_value": old.value,
            "table_source": old.source,
        }
    return out


def _evidence_note(condition: str | None) -> dict | None:
    """Which controlled evidence the condition's posterior rests on (from its fit record)."""
    if condition is None:
        return None
    from infusim import posterior

    fitted = posterior.load(condition)
    if fitted is None:
        return {
            "studies": 0,
            "note": "no controlled trial with a usable estimate and CI: the effect is not estimated (null), "
            "and treated and untreated twins coincide because the potency row is a placeholder 0, not a "
            "measured null",
        }
    from infusim import evidence

    record = fitted.record
    studies = set(record.get("studies", []))
    cited = {r.study: r.citation for r in evidence.load() if r.study in studies}
    return {
        "studies": record.get("n_studies"),
        "rows": record.get("n_rows"),
        "tau_smd": record.get("summary", {}).get("tau_smd"),
        "command": record.get("command"),
        "citations": dict(sorted(cited.items())),
    }
