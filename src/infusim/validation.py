"""Holding the model against published measurements: predictions of each case's observations,
fold errors, prediction intervals and the suite's summary (the case format: ``case_format``).

Each observation is compared with the prediction of the same observation model at the same time;
a case's score is its absolute average fold error (AAFE = 10^mean|log10(predicted/observed)|).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from infusim import regions, uncertainty
from infusim.case_format import Case, CaseError, load_case
from infusim.errors import InfusimError
from infusim.exposure import organ_mass_g
from infusim.model.declare import patient_sum
from infusim.model.kinetics import SIZE_NODES, assemble
from infusim.model.physiology import physiology
from infusim.observe import observe_only
from infusim.parameters import ParameterSet, for_scenario, informed_studies, sampled
from infusim.safety import trial_odds_ratio

#: Marker kind of each observed quantity in the solved model.
KIND = {"live_cells": "live", "dna": "dna", "radiolabel": "label"}


@dataclass
class CaseResult:
    """Scores of one case; ``error`` is set (and scores are NaN) when the case could not run."""

    name: str
    calibration: bool = False
    n: int = 0
    aafe: float = math.nan
    within_2fold: float = math.nan
    within_3fold: float = math.nan
    max_fold_error: float = math.nan
    tolerance_fold: float = 2.0
    species: str = ""
    description: str = ""
    citation: str = ""
    skipped: int = 0
    error: str | None = None
    comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)
    calibration_reason: str = ""

    @property
    def passed(self) -> bool:
        return self.error is None and self.aafe <= self.tolerance_fold

    @property
    def safety(self) -> bool:
        """Whether the case compares adverse events (``event:`` rows), not cell kinetics."""
        quantities = self.comparisons.get("quantity", pd.Series(dtype=str)).astype(str)
        return bool(len(quantities)) and bool(quantities.str.startswith("event:").all())

    def record(self) -> dict:
        """The JSON record of ``validation.json``."""

        def number(x: float) -> float | None:
            return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)

        return {
            "case": self.name,
            "n": self.n,
            "aafe": number(self.aafe),
            "within_2fold": number(self.within_2fold),
            "within_3fold": number(self.within_3fold),
            "max_fold_error": number(self.max_fold_error),
            "calibration": self.calibration,
            "calibration_reason": self.calibration_reason,
            "species": self.species,
            "tolerance_fold": self.tolerance_fold,
            "passed": self.passed,
            "skipped_rows": self.skipped,
            "error": self.error,
            "citation": self.citation,
            "description": self.description,
            "points": self.points(),
        }

    def interval_hits(self) -> tuple[int, int]:
        """(observations inside their 95% prediction interval, observations with an interval)."""
        points = [p for p in self.points() if p["predicted_low"] is not None]
        return sum(p["predicted_low"] <= p["observed"] <= p["predicted_high"] for p in points), len(points)

    def points(self) -> list[dict]:
        """One point per observation row, with the 95% prediction interval over parameter draws."""
        if self.comparisons.empty:
            return []
        return [
            {
                "time_h": float(row.time_h),
                "quantity": row.quantity,
                "compartment": row.compartment,
                "observed": float(row.observed),
                "predicted": None if pd.isna(row.predicted) else float(row.predicted),
                "predicted_low": _number_or_none(getattr(row, "predicted_low", None)),
                "predicted_high": _number_or_none(getattr(row, "predicted_high", None)),
            }
            for row in self.comparisons.itertuples()
        ]


def result_tables(results: list[CaseResult]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(points, curves) of every case that ran, with a ``case`` column: what ``infusim validate``
    writes as points.parquet and curves.parquet (and ``infusim report`` reads back)."""
    ran = [r for r in results if r.error is None]
    points = [r.comparisons.assign(case=r.name) for r in ran if len(r.comparisons)]
    curves = [r.curves.assign(case=r.name) for r in ran if len(r.curves)]
    empty = pd.DataFrame(columns=["case"])
    return (
        pd.concat(points, ignore_index=True) if points else empty,
        pd.concat(curves, ignore_index=True) if curves else empty,
    )


def _number_or_none(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def predict(case: Case, times_h: np.ndarray, params: ParameterSet | None = None) -> pd.DataFrame:
    """Predictions of every (quantity, compartment, unit) series of ``case`` at ``times_h``."""
    params = params or for_scenario(case.scenario)
    times = np.unique(np.asarray(times_h, dtype=float))
    frames = [
        pd.DataFrame({"time_h": times, "quantity": q, "compartment": c, "unit": u, "predicted": values[0]})
        for (q, c, u), values in _series(case, times, params).items()
    ]
    return pd.concat(frames, ignore_index=True)


#: Parameter sets drawn from the priors behind each case's 95% prediction interval.
INTERVAL_DRAWS = 200


def prediction_intervals(
    case: Case,
    times_h: np.ndarray,
    draws: int = INTERVAL_DRAWS,
    seed: int = 1,
    params: ParameterSet | None = None,
) -> pd.DataFrame:
    """2.5 and 97.5 percentiles (``predicted_low``, ``predicted_high``) of every series of ``case`` at
    ``times_h`` over ``draws`` parameter sets drawn from the priors of every row the case reads
    (``uncertainty``): the spread the model's own parameter uncertainty allows. ``params``: the case's
    table values after ``predict`` read them (their ``read_keys`` name the rows to vary)."""
    times = np.unique(np.asarray(times_h, dtype=float))
    if params is None:
        params = for_scenario(case.scenario)
        _series(case, times, params)  # records every row the prediction reads
    found = uncertainty.priors(params, params.read_keys)
    values = uncertainty.draw(found, draws, seed)
    values = {k: v for k, v in values.items() if k[0] not in uncertainty.POSTERIOR_PARAMETERS}
    frames = []
    for (q, c, u), drawn in _series(case, times, params, values, draws).items():
        if q.startswith("event:"):
            continue  # one simulated trial; its odds ratio has no parameter draws
        low, high = np.percentile(drawn, [2.5, 97.5], axis=0)
        frames.append(
            pd.DataFrame(
                {
                    "time_h": times,
                    "quantity": q,
                    "compartment": c,
                    "unit": u,
                    "predicted_low": low,
                    "predicted_high": high,
                }
            )
        )
    columns = ["time_h", "quantity", "compartment", "unit", "predicted_low", "predicted_high"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def _series(
    case: Case,
    times: np.ndarray,
    params: ParameterSet,
    values: dict | None = None,
    count: int = 1,
) -> dict[tuple[str, str, str], np.ndarray]:
    """Every (quantity, compartment, unit) series of ``case``: (count, times), one row per parameter
    set (``values``: arrays over sets, see ``parameters.sampled``; none: the table values)."""
    scenario = case.scenario
    rows_params = sampled(params, values, repeat=len(SIZE_NODES)) if values else params
    patient_params = sampled(params, values, repeat=1) if values else params
    model = assemble(scenario, patients=count, params=rows_params)
    label = case.label
    quantities = set(case.observations.quantity)
    observed = observe_only(model, times, scenario.species, label, rows_params, quantities)
    states = observed.trajectory.patient_states()
    k = model.rows_per_patient
    given = np.stack([patient_sum(model.administered(t), k) for t in times], axis=1)
    first = next((d for d in observed.trajectory.model.doses if d.marker == "label"), None)
    injected = patient_sum(first.amount, k)[:, None] if first is not None else np.nan
    decay = np.ones((1, len(times)))
    if label is not None and not label.decay_corrected:
        decay = np.exp(-np.log(2) * times / params.get("physical_half_life", label.isotope, "h"))[None, :]
    if label is not None and case.leakage_corrected:  # the source's division by in-vitro label kept
        efflux = np.reshape(patient_params.get("efflux_rate", label.isotope, "1/h"), (-1, 1))
        decay = decay * np.exp(efflux * times[None, :])
    body = physiology(scenario.species, np.full(count, scenario.patient.body_weight_kg), patient_params)
    site = scenario.condition.site if scenario.condition else None
    share = (
        scenario.condition.severity * np.asarray(patient_params.get("lesion_fraction_max", site, ""))
        if site
        else 0.0
    )
    out: dict[tuple[str, str, str], np.ndarray] = {}
    series = case.observations[["quantity", "compartment", "unit"]].drop_duplicates()
    events = series[series.quantity.str.startswith("event:")]
    for quantity, _compartment, unit in events.itertuples(index=False):
        event = quantity.split(":", 1)[1]
        found = trial_odds_ratio(scenario, event, params, case.background_risk.get(event, 0.0))
        out[(quantity, "", unit)] = np.full((count, len(times)), found[unit])
    clinical = series[series.quantity.str.contains(":") & ~series.quantity.str.startswith("event:")]
    if len(clinical):
        out.update(_predict_clinical(case, model, times, clinical, params))
    series = series[~series.quantity.str.contains(":")]
    for quantity, compartment, unit in series.itertuples(index=False):
        members = _members(compartment, site)
        columns = [
            i
            for i, s in enumerate(observed.trajectory.model.states)
            if s.kind == KIND[quantity]
            and (members is None or s.compartment in members)
            and s.compartment not in ("excreted", "degraded", "body")
        ]
        amount = states[:, :, columns].sum(axis=2)
        if quantity == "radiolabel":
            if compartment in case.regions:  # what the image region counts besides the organ
                label = [i for i, s in enumerate(observed.trajectory.model.states) if s.kind == "label"]
                amount = amount + regions.extra_activity(
                    case.regions[compartment],
                    states[:, :, label],
                    [observed.trajectory.model.states[i].compartment for i in label],
                    lambda name: _members(name, site),
                    scenario.species,
                    patient_params,
                )
            fraction = amount / injected * decay
            if unit == "percent_of_body_activity":  # an image's share of the activity left in the body
                in_body = [
                    i
                    for i, s in enumerate(observed.trajectory.model.states)
                    if s.kind == "label" and s.compartment not in ("excreted", "degraded", "body")
                ]
                fraction = amount / states[:, :, in_body].sum(axis=2)
        else:
            fraction = np.divide(amount, given, out=np.zeros_like(amount), where=given > 0)
        mass_g = np.reshape(organ_mass_g(compartment, body, site, share, scenario), (-1, 1))
        out[(quantity, compartment, unit)] = {
            "fraction_of_dose": fraction,
            "percent_of_dose": 100 * fraction,
            "percent_of_dose_per_g": 100 * fraction / mass_g,
            "percent_of_body_activity": 100 * fraction,
            "cells": amount,
            "cells_per_g": amount / mass_g,
        }[unit]
    return out


def _predict_clinical(
    case: Case, model, times_h: np.ndarray, series: pd.DataFrame, params: ParameterSet
) -> dict[tuple[str, str, str], np.ndarray]:
    """Endpoint (treated) and effect (treated - untreated twin) predictions at ``times_h``, one row per
    patient of ``model``."""
    from infusim.simulation import disease_outcomes

    outcomes = disease_outcomes(case.scenario, model, params, extra_days=times_h / 24.0)
    index = np.searchsorted(outcomes.times_d, times_h / 24.0 - 1e-9)
    out = {}
    for quantity, _compartment, unit in series.itertuples(index=False):
        kind, endpoint = quantity.split(":", 1)
        treated = outcomes.treated[endpoint][:, index]
        out[(quantity, "", unit)] = (
            treated - outcomes.untreated[endpoint][:, index] if kind == "effect" else treated
        )
    return out


def _members(compartment: str, site: str | None) -> set[str] | None:
    if compartment == "whole_body":
        return None
    if compartment == site:
        return {site, "target"}
    return {compartment}


def fold_errors(comparisons: pd.DataFrame) -> np.ndarray:
    """Fold error of each row (>= 1); a satisfied bound scores 1.

    Effect rows (``effect:<endpoint>``, which may be zero or negative) score 1 inside the study's 95%
    CI (observed +/- 1.96 sd) and 1 + (distance outside the CI) / (CI half-width) beyond it.
    """
    if "quantity" in comparisons:
        effect = comparisons.quantity.astype(str).str.startswith("effect:").to_numpy()
        event = comparisons.quantity.astype(str).str.startswith("event:").to_numpy()
    else:
        effect = event = np.zeros(len(comparisons), dtype=bool)
    folds = np.ones(len(comparisons))
    ratio = ~effect & ~event
    if np.any(ratio):
        folds[ratio] = _ratio_folds(comparisons[ratio])
    if np.any(event):  # odds ratios: 1 inside the published 95% CI, on the log scale
        rows = comparisons[event]
        half = 1.96 * rows.sd.to_numpy()
        distance = np.abs(np.log(rows.predicted.to_numpy() / rows.observed.to_numpy()))
        folds[event] = 1.0 + np.maximum(distance - half, 0.0) / half
    if np.any(effect):
        rows = comparisons[effect]
        half = 1.96 * rows.sd.to_numpy()
        distance = np.abs(rows.predicted.to_numpy() - rows.observed.to_numpy())
        folds[effect] = 1.0 + np.maximum(distance - half, 0.0) / half
    return folds


def _ratio_folds(comparisons: pd.DataFrame) -> np.ndarray:
    ratio = comparisons.predicted.to_numpy() / comparisons.observed.to_numpy()
    bound = comparisons.bound.to_numpy()
    ratio = np.where((bound == "<") & (ratio <= 1), 1.0, ratio)
    ratio = np.where((bound == ">") & (ratio >= 1), 1.0, ratio)
    ratio = np.maximum(ratio, 1e-300)
    return np.maximum(ratio, 1.0 / ratio)


def run_case(case: Case, params: ParameterSet | None = None, curves: bool = True) -> CaseResult:
    """Compare every observation of ``case`` with its prediction and score the case."""
    obs = case.observations
    times = np.unique(obs.time_h.to_numpy())
    if curves:
        end = min(max(1.5 * float(times.max()), 1.0), case.scenario.simulation.duration_h)
        times = np.unique(np.concatenate([times, np.geomspace(min(1 / 60, end), end, 60)]))
    own = params is None
    params = params or for_scenario(case.scenario)
    predicted = predict(case, times, params)
    keys = ["time_h", "quantity", "compartment", "unit"]
    comparisons = obs.merge(predicted, on=keys, how="left")
    if own:  # intervals around the tables' values, not around a calibration's trial values
        bands = prediction_intervals(case, obs.time_h.to_numpy(), params=params)
        comparisons = comparisons.merge(bands, on=keys, how="left")
    else:
        comparisons = comparisons.assign(predicted_low=np.nan, predicted_high=np.nan)
    comparisons["fold_error"] = fold_errors(comparisons)
    folds = comparisons.fold_error.to_numpy()
    return CaseResult(
        name=case.name,
        calibration=case.calibration,
        n=len(folds),
        aafe=float(10 ** np.mean(np.log10(folds))),
        within_2fold=float(np.mean(folds <= 2.0)),
        within_3fold=float(np.mean(folds <= 3.0)),
        max_fold_error=float(folds.max()),
        tolerance_fold=case.tolerance_fold,
        species=case.scenario.species,
        description=case.description,
        citation=case.citation,
        skipped=len(case.skipped),
        comparisons=comparisons,
        curves=predicted,
    )


def validate(paths: list[Path], params: ParameterSet | None = None, curves: bool = True) -> list[CaseResult]:
    """Run every case folder; a bad case becomes a result with ``error`` set and the others still run.

    Fitted or predicted is decided per study: a case counts as fitted (``calibration``) when it says
    so, when another case of the same study (``source``) was fitted, or when its study informed any
    parameter row (the row's source, or the study named in a row's note).
    """
    loaded: list = []
    for path in paths:
        try:
            loaded.append(load_case(path))
        except InfusimError as exc:
            loaded.append(
                CaseResult(
                    name=Path(path).name, error=exc.message if isinstance(exc, CaseError) else str(exc)
                )
            )
    fitted_studies = {c.source for c in loaded if isinstance(c, Case) and c.calibration and c.source}
    informed = informed_studies()
    results = []
    for case in loaded:
        if isinstance(case, CaseResult):
            results.append(case)
            continue
        reason = "case.yaml" if case.calibration else ""
        if not reason and case.source in fitted_studies:
            reason = "another case of the same study was fitted"
        if not reason and case.source in informed:
            reason = f"the study informed {informed[case.source]}"
        if reason and not case.calibration:
            case = dataclasses.replace(case, calibration=True)
        try:
            result = run_case(case, params, curves=curves)
        except InfusimError as exc:
            result = CaseResult(name=case.name, error=exc.message if isinstance(exc, CaseError) else str(exc))
        result.calibration_reason = reason
        results.append(result)
    return results


def summary(
    results: list[CaseResult],
    evidence_points: dict | None = None,
    cross_validation: dict | None = None,
    kinetics_cross_validation: dict | None = None,
) -> dict:
    """``validation.json``: one record per case, plus totals for predictions and fitted cases; the
    clinical evidence against its fit (``evidence``) and, when run, the leave-one-study-out scores."""
    from infusim import __version__

    def totals(selected: list[CaseResult]) -> dict:
        ran = [r for r in selected if r.error is None]
        hits = [r.interval_hits() for r in ran]
        inside, points = sum(h[0] for h in hits), sum(h[1] for h in hits)
        return {
            "cases": len(selected),
            "ran": len(ran),
            "passed": sum(r.passed for r in ran),
            "median_aafe": float(np.median([r.aafe for r in ran])) if ran else None,
            "points": points,
            "inside_95_prediction": inside / points if points else None,
        }

    safety_cases = [r for r in results if r.safety]
    kinetic = [r for r in results if not r.safety]
    predictions = [r for r in kinetic if not r.calibration]
    calibration = [r for r in kinetic if r.calibration]
    by_species_fitted = {
        species: totals([r for r in calibration if r.species == species])
        for species in sorted({r.species for r in calibration if r.species})
    }
    by_species = {
        species: totals([r for r in predictions if r.species == species])
        for species in sorted({r.species for r in predictions if r.species})
    }
    return {
        "infusim_version": __version__,
        "cases": [r.record() for r in results],
        "predictions": totals(predictions),
        "predictions_by_species": by_species,
        "calibration": totals(calibration),
        "calibration_by_species": by_species_fitted,
        "safety": {
            "predictions": totals([r for r in safety_cases if not r.calibration]),
            "calibration": totals([r for r in safety_cases if r.calibration]),
            "note": "adverse-event cases (event:<name> rows): the odds ratio of a simulated trial against "
            "a published one, scored 1 inside its 95% CI (docs/safety.md)",
        },
        "prediction_interval_note": (
            f"95% prediction intervals of cell-kinetic cases: {INTERVAL_DRAWS} parameter sets drawn from "
            "the priors of every row a case reads (data/priors.csv); parameter uncertainty only (no "
            "between-study or measurement error), so coverage below 95% means the priors are too "
            "narrow or the model misses a mechanism; --cross-validate adds between-study variation "
            "(kinetics_cross_validation.between_study)"
        ),
        "evidence": _evidence_records(evidence_points or {}),
        "cross_validation": cross_validation,
        "kinetics_cross_validation": kinetics_cross_validation,
    }


def _evidence_records(points: dict) -> list[dict]:
    """Clinical evidence as case rows, one per study (fitted: every study informed its own fit)."""
    records = []
    for condition, found in points.items():
        for study in dict.fromkeys(p["study"] for p in found):
            mine = [p for p in found if p["study"] == study]
            inside = [p["predicted_low"] <= p["observed"] <= p["predicted_high"] for p in mine]
            records.append(
                {
                    "case": study,
                    "condition": condition,
                    "calibration": True,
                    "n": len(mine),
                    "inside_95_prediction": float(np.mean(inside)),
                    "source": mine[0]["source"],
                    "points": mine,
                }
            )
    return records
