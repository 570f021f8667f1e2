"""Virtual populations: per-patient random numbers, covariates and variability.

Each number is a pure function of (seed, patient index, stream): a SplitMix64 hash, vectorised over
patients. Patient 12 of a cohort gets the same draws whether it is simulated alone, in a chunk of
1,000 or on another machine. ``sample_cohort`` turns them into patients of a condition from the
cited tables ``data/population.csv`` and ``data/variability.csv``.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import scipy.special

from infusim import conditions, modifiers
from infusim.conditions import ConditionInfo
from infusim.model.declare import Model
from infusim.model.disease import Variation, baseline, entry_range, severity_of
from infusim.model.kinetics import VARIABLE_RATES, assemble
from infusim.parameters import ParameterSet, bundled
from infusim.scenario import BODY_WEIGHT_RANGE_KG, Scenario

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def uniforms(seed: int, patients: np.ndarray, stream: int) -> np.ndarray:
    """Uniform numbers in (0, 1), one per patient index, for a given seed and stream number."""
    index = np.asarray(patients, dtype=np.uint64)
    with np.errstate(over="ignore"):
        key = _splitmix64(np.full(index.shape, seed, dtype=np.uint64))
        key = _splitmix64(key ^ np.uint64(stream))
        bits = _splitmix64(key ^ _splitmix64(index))
    return ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def standard_normals(seed: int, patients: np.ndarray, stream: int) -> np.ndarray:
    """Standard normal numbers, one per patient index (inverse-CDF of ``uniforms``)."""
    return scipy.special.ndtri(uniforms(seed, patients, stream))


def lognormal_factors(seed: int, patients: np.ndarray, cvs: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Median-one log-normal multipliers with the given coefficients of variation, by name.

    Streams are numbered by the order of ``cvs``; keep that order stable for reproducible cohorts.
    """
    factors = {}
    for stream, (name, cv) in enumerate(cvs.items(), start=1):
        sigma = np.sqrt(np.log1p(cv**2))
        factors[name] = np.exp(sigma * standard_normals(seed, patients, stream))
    return factors


def stream(name: str) -> int:
    """Stream number of a named random variable (stable: adding variables never shifts others)."""
    return zlib.crc32(name.encode("utf-8"))


def doses_taken(seed: int, patients: np.ndarray, count: int, missed: float) -> np.ndarray:
    """Which of ``count`` administrations each patient receives (patients, count) bool: the first
    always, each later one missed with probability ``missed``, independently (stream per
    administration, so a patient's doses do not depend on chunking or on the arm's count)."""
    taken = np.ones((len(patients), count), dtype=bool)
    if missed > 0:
        for i in range(1, count):
            taken[:, i] = uniforms(seed, patients, stream(f"missed_dose:{i}")) >= missed
    return taken


def lot_factors(seed: int, patients: np.ndarray, count: int, cv: float) -> tuple[np.ndarray, np.ndarray]:
    """Each patient's lot (0 to ``count`` - 1, at random) and that lot's potency factor (mean-one
    log-normal with coefficient of variation ``cv``, one per lot and seed): pure functions of the
    seed and the patient or lot number, so chunking changes nothing."""
    lot = np.minimum((uniforms(seed, patients, stream("lot")) * count).astype(np.int64), count - 1)
    return lot, _mean_one(seed, np.arange(count), "lot_potency", cv)[lot]


def replicate_seed(seed: int, replicate: int) -> int:
    """Seed of one replicate of a trial: a pure function of (seed, replicate)."""
    with np.errstate(over="ignore"):
        mixed = _splitmix64(np.uint64(seed) ^ _splitmix64(np.uint64(replicate) + _GOLDEN))
    return int(mixed >> np.uint64(1))


def truncated_normal(
    seed: int, patients: np.ndarray, name: str, mean, sd, low: float = -np.inf, high: float = np.inf
) -> np.ndarray:
    """Normal numbers truncated to [low, high] by inverse CDF (one per patient, stream ``name``)."""
    u = uniforms(seed, patients, stream(name))
    sd = np.asarray(sd, dtype=float)
    if not np.any(sd > 0):
        return np.clip(np.broadcast_to(np.asarray(mean, dtype=float), u.shape), low, high).copy()
    a = scipy.special.ndtr((low - mean) / sd)
    b = scipy.special.ndtr((high - mean) / sd)
    return np.clip(mean + sd * scipy.special.ndtri(a + u * (b - a)), low, high)


def truncated_normal_cdf(x: float, mean: float, sd: float, low: float, high: float) -> float:
    """P(X <= x) for X normal (``mean``, ``sd``) truncated to [low, high], as ``truncated_normal`` draws."""
    x = min(max(x, low), high)
    at, top, bottom = (scipy.special.ndtr((v - mean) / sd) for v in (x, high, low))
    return float(np.clip((at - bottom) / (top - bottom), 0.0, 1.0))


def lognormal_mean_one(seed: int, patients: np.ndarray, name: str, cv: float) -> np.ndarray:
    """Log-normal factors with median one and coefficient of variation ``cv`` (stream ``name``)."""
    sigma = np.sqrt(np.log1p(cv**2))
    return np.exp(sigma * standard_normals(seed, patients, stream(name)))


@dataclass(frozen=True)
class Cohort:
    """Virtual patients (arrays over patients): covariates and how each one differs from the mean.

    ``index`` is each patient's number in the trial: every draw is a pure function of (seed, index,
    variable name), so a patient is the same whatever chunk or worker simulates it.
    """

    index: np.ndarray
    age_years: np.ndarray
    female: np.ndarray
    body_weight_kg: np.ndarray
    severity: np.ndarray
    rate_factors: dict[str, np.ndarray]
    variation: Variation
    placebo_factor: np.ndarray

    def take(self, which: np.ndarray) -> Cohort:
        """The sub-cohort selected by a boolean mask or index array."""
        return Cohort(
            self.index[which],
            self.age_years[which],
            self.female[which],
            self.body_weight_kg[which],
            self.severity[which],
            {k: v[which] for k, v in self.rate_factors.items()},
            Variation(
                self.variation.severity[which],
                self.variation.potency_factor[which],
                {k: v[which] for k, v in self.variation.annual_change.items()},
                {k: v[which] for k, v in self.variation.drawn.items()},
            ),
            self.placebo_factor[which],
        )


def sample_cohort(
    scenario: Scenario, seed: int, index: np.ndarray, params: ParameterSet | None = None
) -> Cohort:
    """Draw the patients ``index`` of the scenario's condition (data/population.csv, variability.csv).

    Age and sex follow the baseline tables of trials in the condition; body weight follows BMI and
    sex (adults) or age (children); the entry value of the primary endpoint is drawn around the
    scenario's severity and sets each patient's severity. Kinetic rates, response to cells, the
    untreated rate of change and the placebo response vary log-normally or normally between patients.
    Kinetic factors have median one (the tabulated rate is the typical patient's); the potency and
    placebo factors have mean one, so an arm's mean response keeps the calibrated trial mean. Where
    the condition has effect modifiers (``infusim.modifiers``), each patient's potency factor is
    multiplied by its age and entry-value factor (mean one over the condition's reference population).
    """
    params = params or bundled()
    index = np.asarray(index, dtype=np.int64)
    condition = conditions.get(scenario.condition.name)
    name = condition.name
    eligible = scenario.trial.eligibility if scenario.trial else None
    ages = (params.get("age_min", name, "year"), params.get("age_max", name, "year"))
    if eligible is not None and eligible.age_years is not None:
        ages = eligible.age_years
    age = truncated_normal(
        seed, index, "age", params.get("age_mean", name, "year"), params.get("age_sd", name, "year"), *ages
    )
    female = uniforms(seed, index, stream("sex")) < params.get("female_fraction", name, "")
    weight = _body_weight(seed, index, name, age, female, params)
    severity = _severity(seed, index, scenario, condition, params)
    rate_factors = {
        rate: lognormal_mean_one(seed, index, f"iiv:{rate}", params.get("iiv_cv", rate, ""))
        for rate in VARIABLE_RATES
    }
    potency_factor = _mean_one(seed, index, "potency", params.get("potency_cv", "", ""))
    if modifiers.present(condition, params):  # covariates that change the response (Delewi 2014)
        entry = baseline(condition, condition.primary, severity, params)
        potency_factor = potency_factor * modifiers.factors(condition, params, age, entry)
    annual = {}
    for endpoint in condition.endpoints:
        scope = f"{name}/{endpoint.name}"
        entry = params.entry("annual_change", scope)
        mean = params.get("annual_change", scope, entry.unit)
        if params.has("annual_change_sd", scope):
            sd = params.get("annual_change_sd", scope, entry.unit)
        else:
            sd = abs(mean) * params.get("annual_change_cv", "", "")
        annual[endpoint.name] = mean + sd * standard_normals(seed, index, stream(f"annual:{endpoint.name}"))
    placebo = _mean_one(seed, index, "placebo", params.get("placebo_cv", "", ""))
    return Cohort(
        index,
        age,
        female,
        weight,
        severity,
        rate_factors,
        Variation(severity, potency_factor, annual),
        placebo,
    )


def _body_weight(
    seed: int, index: np.ndarray, name: str, age: np.ndarray, female: np.ndarray, params: ParameterSet
) -> np.ndarray:
    """Body weight (kg): children by age (Luscombe 2011); adults from the condition's weight table,
    else its BMI and the mean height of their sex."""
    slope = params.get("child_weight_slope", "human", "kg/year")
    intercept = params.get("child_weight_intercept", "human", "kg")
    child = (slope * age + intercept) * _mean_one(
        seed, index, "child_weight", params.get("child_weight_cv", "human", "")
    )
    ratio = params.get("female_weight_ratio", "human", "")
    if params.has("body_weight_mean", name):
        mean = params.get("body_weight_mean", name, "kg")
        cv = params.get("body_weight_sd", name, "kg") / mean
        share = params.get("female_fraction", name, "")
        male_mean = mean / (share * ratio + (1.0 - share))
        adult = np.where(female, ratio * male_mean, male_mean) * _mean_one(seed, index, "weight", cv)
    elif params.has("bmi_mean", name):
        bmi_mean = params.get("bmi_mean", name, "kg/m**2")
        bmi = bmi_mean * _mean_one(seed, index, "weight", params.get("bmi_sd", name, "kg/m**2") / bmi_mean)
        height = np.where(
            female, params.get("height", "human/female", "m"), params.get("height", "human/male", "m")
        )
        adult = bmi * height**2
    else:
        adult = child
    weight = np.where(age < params.get("adult_age", "human", "year"), np.minimum(child, adult), adult)
    low, high = BODY_WEIGHT_RANGE_KG["human"]
    return np.clip(weight, low, high)


def _mean_one(seed: int, index: np.ndarray, name: str, cv: float) -> np.ndarray:
    """Log-normal factors with mean one and coefficient of variation ``cv``."""
    sigma2 = np.log1p(cv**2)
    return np.exp(np.sqrt(sigma2) * standard_normals(seed, index, stream(name)) - sigma2 / 2)


#: The most severe patient the model holds: twice the typical trial patient's deficit (severity 0.5 is
#: the typical patient; an injured organ's lesion is then 0.6 of it at most, lesion_fraction_max 0.3).
#: The scenario's severity (the population's centre) stays within 0-1.
SEVERITY_MAX = 2.0


def beyond_most_severe(scenario: Scenario, params: ParameterSet) -> tuple[float, float] | None:
    """(share, value): the share of the trial's patients whose drawn entry value of the primary
    endpoint is worse than ``value``, the entry value at ``SEVERITY_MAX`` (the most severe the model
    holds; they are simulated at it). None when the endpoint does not follow severity."""
    condition = conditions.get(scenario.condition.name)
    primary = condition.primary
    if not primary.by_severity:
        return None
    scope = f"{condition.name}/{primary.name}"
    low, high = _entry_bounds(scenario, condition, params)
    mean = baseline(condition, primary, scenario.condition.severity, params)
    sd = params.get("baseline_sd", scope, params.entry("baseline", scope).unit)
    worst = float(baseline(condition, primary, SEVERITY_MAX, params))
    below = truncated_normal_cdf(worst, float(mean), sd, low, high)
    return (below if primary.direction > 0 else 1.0 - below), worst


def _entry_bounds(scenario: Scenario, condition: ConditionInfo, params: ParameterSet) -> tuple[float, float]:
    """Entry values the trial admits: its eligibility range within the endpoint's, else the population's."""
    eligible = scenario.trial.eligibility if scenario.trial else None
    if eligible is not None and eligible.baseline is not None:
        primary = condition.primary
        return max(eligible.baseline[0], primary.low), min(eligible.baseline[1], primary.high)
    return entry_range(condition, params)


def _severity(
    seed: int, index: np.ndarray, scenario: Scenario, condition: ConditionInfo, params: ParameterSet
) -> np.ndarray:
    """Each patient's severity (0-1): from the entry value of the primary endpoint, drawn around the
    scenario's severity within the endpoint's range and the trial's eligibility bounds."""
    level = scenario.condition.severity
    primary = condition.primary
    scope = f"{condition.name}/{primary.name}"
    if not primary.by_severity:
        sd = params.get("severity_sd", condition.name, "")
        return truncated_normal(seed, index, "severity", level, sd, 0.05, 1.0)
    low, high = _entry_bounds(scenario, condition, params)
    unit = params.entry("baseline", scope).unit
    mean = baseline(condition, primary, level, params)
    value = truncated_normal(seed, index, "severity", mean, params.get("baseline_sd", scope, unit), low, high)
    return np.clip(severity_of(condition, primary, value, params), 0.01, SEVERITY_MAX)


def cohort_model(
    scenario: Scenario, cohort: Cohort, params: ParameterSet | None = None, taken: np.ndarray | None = None
) -> Model:
    """The cell model of ``scenario`` for every patient of ``cohort`` (weights, severities, rates);
    ``taken``: (patients, administrations) which doses each patient receives (``doses_taken``)."""
    return assemble(
        scenario,
        patients=len(cohort.index),
        params=params,
        rate_factors=cohort.rate_factors,
        body_weight_kg=cohort.body_weight_kg,
        severity=cohort.severity,
        doses_taken=taken,
    )
