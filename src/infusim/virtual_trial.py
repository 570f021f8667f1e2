"""Virtual trials: randomise virtual patients to arms and follow each one and its untreated twin.

A chunk of patients (a slice of patient indices of one replicate) is simulated independently of
every other chunk: allocation, covariates, variability and measurement noise are pure functions of
(seed, replicate, patient index), so the rows of a patient do not depend on how the trial is cut.

Per patient and visit, for every endpoint of the condition:

* ``<endpoint>``: what the trial records. Natural history, plus the placebo response when the arm
  has a procedure (cells or sham), plus the effect of the cells, plus measurement error. Response
  rate endpoints (``% of patients``) are recorded as responders (1) or not (0);
* ``<endpoint>_untreated``: the untreated twin, the same patient on natural history alone, without
  procedure or measurement error (for rate endpoints, whether the twin responds, with the same
  random number: a twin never responds when the treated patient does not);
* ``died_d``: the day the patient died (a grade-5 adverse event of any cause, ``safety.death_days``:
  the same draws as the trial's adverse events), null when alive at the end. After a death a
  continuous endpoint is missing (null; the analysis is complete-case) and a response-rate endpoint
  counts as no response, as trials count it; treatment-related mortality is the death itself;
* ``neutrophil_recovery_d``: after conditioning with a haematopoietic graft, the day neutrophils
  reached 0.5e9/L (``engraftment.recovery_days``, the draw that sets the patient's infection risk).

``simulate_chunk`` also returns partial sums (per arm, endpoint and visit) from which ``stats``
builds means, confidence intervals, comparisons and power without reading the rows back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pyarrow as pa

from infusim import conditions, engraftment, exposure, modifiers, outcomes, posterior, safety, uncertainty
from infusim.conditions import ConditionInfo, Endpoint
from infusim.model import disease, mechanisms
from infusim.model.disease import Variation
from infusim.parameters import ParameterSet, for_scenario, with_values
from infusim.population import (
    Cohort,
    cohort_model,
    doses_taken,
    lot_factors,
    replicate_seed,
    sample_cohort,
    standard_normals,
    stream,
    uniforms,
)
from infusim.scenario import Scenario
from infusim.scenario_trial import Trial

#: Fields of the partial sums, last axis of ``ChunkStats.sums``.
#: ``sum_baseline``, ``sumsq_baseline`` and ``sum_baseline_change``: of the day-0 value of the
#: patients counted at the visit (analysis of covariance).
FIELDS = (
    "n",
    "sum_change",
    "sumsq_change",
    "sum_value",
    "sumsq_value",
    "sum_effect",
    "responders",
    "sum_baseline",
    "sumsq_baseline",
    "sum_baseline_change",
)


def moment_fields(visits: int, analysis: str) -> int:
    """Fields after ``FIELDS`` that an ``mmrm`` analysis needs: at each visit, the cross-products of
    (1, value at each visit) over the patients counted there, a (visits + 1)^2 matrix; 0 otherwise."""
    return (visits + 1) ** 2 if analysis == "mmrm" else 0


@dataclass(frozen=True)
class Design:
    """What a trial measures: condition, endpoints, visits (days), arms and the primary comparison."""

    condition: ConditionInfo
    endpoints: tuple[Endpoint, ...]
    visits_d: np.ndarray
    arms: tuple[str, ...]
    control: int
    primary: int
    primary_visit: int
    responder_change: float
    analysis: str = "change"  # continuous endpoints: "change" (Welch), "ancova" or "mmrm" (trial.analysis)
    multiplicity: str = "none"  # adjustment of the primary comparisons across treated arms
    #: (endpoint, visit) indices of the key secondary comparisons, in their testing order
    key_secondary: tuple[tuple[int, int], ...] = ()

    @property
    def rate_endpoints(self) -> tuple[bool, ...]:
        return tuple(is_rate(e) for e in self.endpoints)


@dataclass(frozen=True)
class ChunkStats:
    """Partial sums of one chunk: ``sums`` (arms, endpoints, visits, fields) for one replicate."""

    replicate: int
    start: int
    sums: np.ndarray
    baseline: np.ndarray | None = None  # (arms, BASELINE_FIELDS): see ``_baseline_sums``
    #: (subgroups, 2, arms, endpoints, visits, fields): ``sums`` of the patients below and at or above
    #: each cut of ``trial.subgroups`` (None without subgroups)
    subgroups: np.ndarray | None = None


def is_rate(endpoint: Endpoint) -> bool:
    """Whether an endpoint is a share of patients (recorded per patient as 0 or 1)."""
    return endpoint.unit == "% of patients"


def design(scenario: Scenario, params: ParameterSet | None = None) -> Design:
    """The trial design of a scenario with a ``trial`` section."""
    params = params or for_scenario(scenario)
    trial = scenario.trial
    info = conditions.get(scenario.condition.name)
    endpoints = list(info.endpoints)
    cells = [scenario.for_arm(a) for a in trial.arms if a.kind == "cells"]
    if any(arm.administration.conditioning != "none" for arm in cells):
        endpoints.append(disease.TRM_ENDPOINT)
    names = [e.name for e in endpoints]
    primary = names.index(trial.primary.endpoint)
    change = trial.primary.responder_change
    if change is None:
        endpoint = endpoints[primary]
        scope = f"{info.name}/{endpoint.name}"
        mcid = 0.0
        if params.has("mcid", scope):
            mcid = params.get("mcid", scope, params.entry("mcid", scope).unit)
        change = endpoint.direction * mcid
    arms = tuple(a.name for a in trial.arms)
    visits = np.asarray(trial.visits_h) / 24.0
    return Design(
        info,
        tuple(endpoints),
        visits,
        arms,
        arms.index(trial.control.name),
        primary,
        int(np.searchsorted(visits, trial.primary.at_h / 24.0)),
        float(change),
        trial.analysis,
        trial.multiplicity,
        tuple(
            (names.index(s.endpoint), int(np.searchsorted(visits, s.at_h / 24.0)))
            for s in trial.key_secondary
        ),
    )


def allocate(seed: int, index: np.ndarray, ratios: tuple[int, ...]) -> np.ndarray:
    """Arm of each patient by permuted blocks (a block holds each arm ``ratio`` times).

    Patient ``i`` sits in block ``i // size``; its place in the block's random order is a pure
    function of (seed, block), so allocation does not depend on chunking.
    """
    template = np.repeat(np.arange(len(ratios)), ratios)
    size = len(template)
    index = np.asarray(index, dtype=np.int64)
    blocks = np.unique(index // size)
    slots = (blocks[:, None] * size + np.arange(size)).reshape(-1)
    keys = uniforms(seed, slots, stream("allocation")).reshape(len(blocks), size)
    order = np.argsort(keys, axis=1, kind="stable")
    arm_of_block = template[order]
    row = np.searchsorted(blocks, index // size)
    return arm_of_block[row, index % size]


def simulate_chunk(
    scenario: Scenario,
    replicate: int,
    start: int,
    stop: int,
    params: ParameterSet | None = None,
    table: bool = True,
    uncertain: bool = False,
    events: pd.DataFrame | None = None,
) -> tuple[pa.Table | None, ChunkStats]:
    """Patients ``start`` to ``stop - 1`` of replicate ``replicate``: their rows and partial sums.

    ``uncertain``: the replicate's truth is one draw of the condition's posterior (potencies, fitted K)
    plus this trial's own study effect (between-trial SD tau), as a new trial would meet it; otherwise
    the posterior-median parameters of the tables. ``events``: the chunk's adverse events
    (``safety.chunk_events``), drawn here when not given; their deaths end the patients' records.
    """
    params = params or for_scenario(scenario)
    plan = design(scenario, params)
    trial = scenario.trial
    seed = replicate_seed(scenario.simulation.seed, replicate)
    index = np.arange(start, stop, dtype=np.int64)
    if uncertain:  # how strongly covariates modify the response is uncertain too
        params = _drawn_modifiers(plan, seed, params)
    cohort = sample_cohort(scenario, seed, index, params)
    truth = unknown_truth(plan, seed, len(index), params) if uncertain else _Truth({}, {}, {})
    if truth.drawn:
        v = cohort.variation
        cohort = replace(
            cohort, variation=Variation(v.severity, v.potency_factor, v.annual_change, truth.drawn)
        )
    arm = allocate(seed, index, tuple(a.ratio for a in trial.arms))
    lot = None
    if trial.lots is not None:  # patients of allogeneic cells arms share the lots' potencies
        lot, factor = lot_factors(seed, index, trial.lots.count, trial.lots.potency_cv)
        shared = np.isin(arm, _allogeneic_arms(scenario))
        lot = np.where(shared, lot, -1)
        v = cohort.variation
        potency = v.potency_factor * np.where(shared, factor, 1.0)
        cohort = replace(cohort, variation=Variation(v.severity, potency, v.annual_change, v.drawn))
    n, n_visits = len(index), len(plan.visits_d)
    true = {e.name: np.zeros((n, n_visits)) for e in plan.endpoints}
    untreated = {e.name: np.zeros((n, n_visits)) for e in plan.endpoints}
    recovery_d = np.full(n, np.nan)
    exposures = {column: np.zeros((n, n_visits)) for column in EXPOSURE_COLUMNS} if trial.exposure else {}
    given = np.zeros((n, n_visits), dtype=np.int16) if trial.missed_doses else None  # by each visit
    administrations = np.zeros(n)  # given to each patient over the whole schedule (0: no-treatment arm)
    given_all = np.zeros(n, dtype=bool)
    for a, spec in enumerate(trial.arms):
        members = np.flatnonzero(arm == a)
        if members.size == 0:
            continue
        arm_scenario = scenario.for_arm(spec)
        days = engraftment.for_patients(arm_scenario, params, seed, index[members], spec.kind)
        if days is not None:  # the same draws as the adverse events'
            recovery_d[members] = days
        group = cohort.take(members)
        k = {m: values[members] for m, values in truth.half_saturation.items()}
        taken = None  # every administration, unless trial.missed_doses
        if spec.kind != "none":
            admin = arm_scenario.administration
            if given is not None:
                taken = doses_taken(seed, index[members], admin.count, trial.missed_doses)
                started = (
                    np.asarray(admin.starts_h)[None, :] / 24.0 <= plan.visits_d[:, None]
                )  # (visits, doses)
                given[members] = taken.astype(np.int16) @ started.T.astype(np.int16)
            administrations[members] = admin.count if taken is None else taken.sum(axis=1)
            given_all[members] = True if taken is None else taken.all(axis=1)
        outcome = _arm_outcomes(arm_scenario, spec.kind, group, plan, params, k, trial.exposure, taken)
        for column, values in outcome.exposure.items():
            exposures[column][members] = values
        for e in plan.endpoints:
            shift = truth.shift.get(e.name, 0.0) if spec.kind == "cells" else 0.0
            value = outcome.treated[e.name] + shift
            true[e.name][members] = np.clip(value, e.low, e.high) if shift else value
            untreated[e.name][members] = outcome.untreated[e.name]
    if events is None:
        events = safety.chunk_events(scenario, replicate, start, stop, params)[0]
    died, trm = safety.death_days(events, start, stop)
    measured, twin = _measure(seed, index, plan, true, untreated, params)
    worse = None
    if trial.dropout_hazard_ratio != 1.0:  # at random: as measured; not: the true value missed next
        ahead = trial.dropout_missing == "not_at_random"
        worse = _worsening(plan, true if ahead else measured, params, ahead)
    withdrawn = withdrawal_days(seed, index, trial.dropout, plan.visits_d, worse, trial.dropout_hazard_ratio)
    followed = plan.visits_d[None, :] < np.minimum(died, withdrawn)[:, None]
    followed[:, 0] = True  # the baseline visit comes before the first dose
    measured, counted = _after_deaths(plan, measured, followed, trm)
    sums = _partial_sums(plan, arm, measured, true, untreated, counted)
    groups = _subgroup_sums(
        trial,
        plan,
        cohort,
        measured,
        counted,
        params,
        lambda kept: _partial_sums(plan, arm, measured, true, untreated, kept),
    )
    baseline = _baseline_sums(cohort, arm, len(trial.arms), given_all, administrations)
    stats = ChunkStats(replicate, start, sums, baseline, groups)
    if not table:
        return None, stats
    rows = _table(
        replicate,
        index,
        arm,
        cohort,
        plan,
        measured,
        twin,
        counted,
        died,
        recovery_d,
        withdrawn,
        exposures,
        given,
        lot,
    )
    return rows, stats


def _allogeneic_arms(scenario: Scenario) -> list[int]:
    """The arms whose patients are given cells of an allogeneic product (``trial.lots`` apply)."""
    arms = scenario.trial.arms
    return [
        a
        for a, spec in enumerate(arms)
        if spec.kind == "cells" and scenario.for_arm(spec).product.donor == "allogeneic"
    ]


def withdrawal_days(
    seed: int,
    index: np.ndarray,
    dropout: float,
    visits_d: np.ndarray,
    worse: np.ndarray | None = None,
    hazard_ratio: float = 1.0,
) -> np.ndarray:
    """Day each patient is lost to follow-up (inf when not by the last visit), from the patient's own
    stream: a hazard that loses ``dropout`` of the patients per year, times ``hazard_ratio`` to the
    power ``worse`` (patients, visits; SDs worse than baseline) from each visit to the next (missing
    at random: it depends on what was last measured). The cumulative hazard reaches an exponential
    draw, so ``hazard_ratio`` 1 gives the constant-hazard days exactly."""
    if dropout <= 0:
        return np.full(index.shape, np.inf)
    rate = -np.log1p(-dropout) / 365.25  # per day
    target = -np.log(uniforms(seed, index, stream("withdrawal")))
    horizon = visits_d[-1]
    if worse is None or hazard_ratio == 1.0:
        days = target / rate
        return np.where(days <= horizon, days, np.inf)
    days = np.full(index.shape, np.inf)
    reached = np.zeros(index.shape)
    for k in range(len(visits_d) - 1):
        hazard = rate * hazard_ratio ** np.clip(worse[:, k], -10.0, 10.0)
        length = visits_d[k + 1] - visits_d[k]
        ends = np.isinf(days) & (reached + hazard * length >= target)
        days[ends] = visits_d[k] + (target[ends] - reached[ends]) / hazard[ends]
        reached += hazard * length
    return days


def _measurement_sd(plan: Design, endpoint: Endpoint, params: ParameterSet) -> float:
    """The condition's measurement-error SD of ``endpoint`` (in its unit)."""
    scope = f"{plan.condition.name}/{endpoint.name}"
    return params.get("measurement_sd", scope, params.entry("measurement_sd", scope).unit)


def _worsening(
    plan: Design, values: dict[str, np.ndarray], params: ParameterSet, ahead: bool = False
) -> np.ndarray:
    """How much the primary endpoint has worsened since baseline at each visit (patients, visits), in
    the endpoint's measurement SDs (``measurement_sd``; negative where it improved); ``ahead``: each
    column holds the next visit's worsening (the last repeats its own)."""
    endpoint = plan.endpoints[plan.primary]
    sd = _measurement_sd(plan, endpoint, params)
    value = values[endpoint.name]
    worse = -endpoint.direction * (value - value[:, :1]) / sd
    return np.concatenate([worse[:, 1:], worse[:, -1:]], axis=1) if ahead else worse


def _after_deaths(
    plan: Design, measured: dict[str, np.ndarray], followed: np.ndarray, trm_d: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """What is recorded once a patient has died or was lost to follow-up (``followed``: still followed),
    and which values count (patients, visits): a continuous endpoint is missing; a response is a
    non-response (non-responder imputation); treatment-related mortality is whether the patient died
    of the treatment by the visit (the adverse events' own draw, known whatever the follow-up)."""
    out, counted = {}, {}
    for endpoint in plan.endpoints:
        name, value = endpoint.name, measured[endpoint.name]
        if name == disease.TRM_ENDPOINT.name:
            out[name] = (trm_d[:, None] <= plan.visits_d[None, :]).astype(float)
            counted[name] = np.ones_like(followed)
        elif is_rate(endpoint):
            out[name], counted[name] = np.where(followed, value, 0.0), np.ones_like(followed)
        else:
            out[name], counted[name] = value, followed
    return out, counted


@dataclass(frozen=True)
class _Truth:
    """One replicate's unknown truth: drawn potencies, K per patient, and shifts of the cells' effect."""

    drawn: dict[tuple[str, str], np.ndarray]
    half_saturation: dict[str, np.ndarray]
    shift: dict[str, float]


def unknown_truth(plan: Design, seed: int, patients: int, params: ParameterSet) -> _Truth:
    """Draw the condition's parameters for one replicate (a pure function of its seed).

    The study effect ``tau s_e z`` (same z for every endpoint, ``s_e`` the endpoint's between-patient
    SD) moves the treated arms' values in the better direction when z > 0, as between-trial
    heterogeneity does in the evidence fit (``synthesis``).
    """
    fitted = posterior.load(plan.condition.name)
    if fitted is None:
        return _Truth({}, {}, {})
    draw = int(uniforms(seed, np.array([0]), stream("posterior draw"))[0] * fitted.draws)
    index = np.full(patients, draw)
    z = float(standard_normals(seed, np.array([0]), stream("study effect"))[0])
    tau = float(fitted.samples["tau_smd"][draw]) if "tau_smd" in fitted.samples else 0.0
    shift = {}
    for endpoint in plan.condition.endpoints:
        scale = disease.endpoint_scale(params, plan.condition, endpoint.name)
        if scale is not None:
            shift[endpoint.name] = endpoint.direction * tau * scale * z
    return _Truth(fitted.drawn(index), fitted.half_saturation(index), shift)


def _drawn_modifiers(plan: Design, seed: int, params: ParameterSet) -> ParameterSet:
    """``params`` with the condition's effect-modifier ratios drawn from their priors for one replicate
    (a pure function of its seed, the same for every chunk)."""
    values = {}
    for covariate in modifiers.present(plan.condition, params):
        key = ("effect_modifier_ratio", f"{plan.condition.name}/{covariate}")
        u = uniforms(seed, np.array([0]), stream(f"modifier:{key[1]}"))
        values[key] = float(uncertainty.prior_for(params, key).quantile(u)[0])
    return with_values(params, values) if values else params


@dataclass(frozen=True)
class _Outcome:
    treated: dict[str, np.ndarray]
    untreated: dict[str, np.ndarray]
    #: Exposure columns (patients, visits): ``EXPOSURE_COLUMNS`` (with ``trial.exposure``); zero
    #: without cells.
    exposure: dict[str, np.ndarray]


#: Per-patient exposure to live cells, from the first dose to each visit (``exposure.to_visits``).
EXPOSURE_COLUMNS = ("target_cell_days_per_g", "live_cell_days_per_kg")


def _arm_outcomes(
    scenario: Scenario,
    kind: str,
    cohort: Cohort,
    plan: Design,
    params: ParameterSet,
    half_saturation: dict[str, np.ndarray] | None = None,
    with_exposure: bool = False,
    taken: np.ndarray | None = None,
) -> _Outcome:
    """True endpoint values (patients, visits) of one arm: with cells, sham, or nothing; with
    ``with_exposure``, each patient's exposure to live cells up to each visit; ``taken``: which
    administrations each patient receives (``trial.missed_doses``; all by default)."""
    info = plan.condition
    visits = plan.visits_d
    n = len(cohort.index)
    model = None
    if kind == "cells":
        model = cohort_model(scenario, cohort, params, taken)
    paths = outcomes.endpoint_paths(
        scenario,
        model,
        params,
        visits,
        variation=cohort.variation,
        body_weight_kg=cohort.body_weight_kg,
        half_saturation=half_saturation,
    )
    grid = paths.times_d
    at = np.searchsorted(grid, visits)
    treated, untreated = {}, {}
    for endpoint in plan.endpoints:
        name = endpoint.name
        if name in paths.treated:
            value = paths.treated[name][:, at]
            natural = paths.untreated[name][:, at]
        else:
            value = natural = np.zeros((n, len(visits)))
        if kind != "none" and not is_rate(endpoint):
            placebo = _placebo(info, endpoint, cohort, visits, params)
            value = np.clip(value + placebo, endpoint.low, endpoint.high)
        treated[name], untreated[name] = value, natural
    found = {column: np.zeros((n, len(visits))) for column in EXPOSURE_COLUMNS} if with_exposure else {}
    if model is not None and with_exposure:
        areas = exposure.to_visits(scenario, model, visits)
        lesion_g = mechanisms.target_mass_g(scenario, params, cohort.body_weight_kg, cohort.severity)
        found["target_cell_days_per_g"] = areas["target"] / np.where(lesion_g > 0, lesion_g, np.inf)[:, None]
        found["live_cell_days_per_kg"] = areas[exposure.WHOLE_BODY] / cohort.body_weight_kg[:, None]
    return _Outcome(treated, untreated, found)


def _placebo(
    info: ConditionInfo, endpoint: Endpoint, cohort: Cohort, visits_d: np.ndarray, params: ParameterSet
) -> np.ndarray:
    """Response to the procedure itself (patients, visits): builds up over weeks, then persists."""
    scope = f"{info.name}/{endpoint.name}"
    if endpoint.name == disease.TRM_ENDPOINT.name or not params.has("placebo_change", scope):
        return np.zeros((len(cohort.index), len(visits_d)))
    change = params.get("placebo_change", scope, params.entry("placebo_change", scope).unit)
    onset = params.get("placebo_onset", "", "day")
    return change * cohort.placebo_factor[:, None] * -np.expm1(-visits_d[None, :] / onset)


def _measure(
    seed: int,
    index: np.ndarray,
    plan: Design,
    true: dict[str, np.ndarray],
    untreated: dict[str, np.ndarray],
    params: ParameterSet,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """What the trial records, and the untreated twin as reported.

    Continuous endpoints get measurement error (the twin is reported without it); rate endpoints
    become responders (0/1), the twin drawn with the same random number.
    """
    measured, twin = {}, {}
    for endpoint in plan.endpoints:
        name = endpoint.name
        if is_rate(endpoint):
            u = uniforms(seed, index, stream(f"responder:{name}"))[:, None] * 100.0
            measured[name] = (u < true[name]).astype(float)
            twin[name] = (u < untreated[name]).astype(float)
            continue
        twin[name] = untreated[name]
        sd = _measurement_sd(plan, endpoint, params)
        noise = np.stack(
            [standard_normals(seed, index, stream(f"noise:{name}:{v}")) for v in range(len(plan.visits_d))], 1
        )
        measured[name] = np.clip(true[name] + sd * noise, endpoint.low, endpoint.high)
    return measured, twin


def _partial_sums(
    plan: Design,
    arm: np.ndarray,
    measured: dict[str, np.ndarray],
    true: dict[str, np.ndarray],
    untreated: dict[str, np.ndarray],
    counted: dict[str, np.ndarray],
) -> np.ndarray:
    """Sums (arms, endpoints, visits, FIELDS) over this chunk's patients whose value counts
    (``counted``: alive at the visit for a continuous endpoint)."""
    visits = len(plan.visits_d)
    extra = moment_fields(visits, plan.analysis)
    sums = np.zeros((len(plan.arms), len(plan.endpoints), visits, len(FIELDS) + extra))
    onehot = (arm[:, None] == np.arange(len(plan.arms))[None, :]).astype(float)  # (patients, arms)
    for e, endpoint in enumerate(plan.endpoints):
        keep = counted[endpoint.name]
        value = np.where(keep, measured[endpoint.name], 0.0)
        change = np.where(keep, value - value[:, :1], 0.0)
        base = np.where(keep, value[:, :1], 0.0)
        effect = np.where(keep, true[endpoint.name] - untreated[endpoint.name], 0.0)
        if is_rate(endpoint):
            responder = value
        elif e == plan.primary:
            threshold = plan.responder_change
            responder = (change * np.sign(threshold) >= abs(threshold)).astype(float)
        else:
            responder = np.zeros_like(value)
        columns = (
            keep.astype(float),
            change,
            change**2,
            value,
            value**2,
            effect,
            responder * keep,
            base,
            base**2,
            base * change,
        )
        for f, column in enumerate(columns):
            sums[:, e, :, f] = onehot.T @ column
        if extra and not is_rate(endpoint):  # monotone: counted at a visit means counted at all before
            z = np.column_stack([np.ones(len(arm)), value])  # (patients, 1 + visits)
            for v in range(visits):
                for a in range(len(plan.arms)):
                    weight = onehot[:, a] * keep[:, v]
                    sums[a, e, v, len(FIELDS) :] = ((z * weight[:, None]).T @ z).ravel()
    return sums


def _subgroup_sums(
    trial: Trial,
    plan: Design,
    cohort: Cohort,
    measured: dict[str, np.ndarray],
    counted: dict[str, np.ndarray],
    params: ParameterSet,
    sums_of: Callable[[dict[str, np.ndarray]], np.ndarray],
) -> np.ndarray | None:
    """Partial sums (``sums_of`` the patients whose values count) of the patients below and at or
    above each cut of ``trial.subgroups``."""
    if not trial.subgroups:
        return None
    primary = plan.endpoints[plan.primary]
    if is_rate(primary):  # a responder flag is no entry value: the model's entry value stands in
        entry = disease.baseline(plan.condition, plan.condition.primary, cohort.severity, params)
    else:
        entry = measured[primary.name][:, 0]  # as a trial would split: at the day-0 visit
    values = {"age_years": cohort.age_years, "body_weight_kg": cohort.body_weight_kg, "baseline": entry}
    out = []
    for group in trial.subgroups:
        above = np.asarray(values[group.covariate], dtype=float) >= group.cut
        out.append([sums_of({k: v & side[:, None] for k, v in counted.items()}) for side in (~above, above)])
    return np.asarray(out)


def _table(
    replicate: int,
    index: np.ndarray,
    arm: np.ndarray,
    cohort: Cohort,
    plan: Design,
    measured: dict[str, np.ndarray],
    untreated: dict[str, np.ndarray],
    counted: dict[str, np.ndarray],
    died_d: np.ndarray,
    recovery_d: np.ndarray,
    withdrawn_d: np.ndarray,
    exposures: dict[str, np.ndarray],
    doses_given: np.ndarray | None = None,
    lot: np.ndarray | None = None,
) -> pa.Table:
    """One row per patient and visit: covariates, arm, recorded endpoints (null after a death or a
    loss to follow-up for a continuous endpoint), the untreated twin, the day of death and the day of
    the loss to follow-up (null if none), the day neutrophils recovered after conditioning (null
    without conditioning and a haematopoietic graft) and the patient's exposure to live cells up to
    the visit (``EXPOSURE_COLUMNS``, whether followed or not: the model's, not a measurement); with
    ``trial.missed_doses`` the administrations received by each visit (``doses_given``), with
    ``trial.lots`` the patient's lot (``lot``, null outside allogeneic cells arms)."""
    visits = len(plan.visits_d)

    def per_row(values: np.ndarray, dtype) -> np.ndarray:
        return np.repeat(values.astype(dtype), visits)

    def optional_day(days: np.ndarray) -> pa.Array:
        """A day per patient on every row, null where it did not happen (not finite)."""
        return pa.array(per_row(days, np.float32), mask=per_row(~np.isfinite(days), np.bool_))

    columns = {
        "replicate": pa.array(np.full(len(index) * visits, replicate, dtype=np.int32)),
        "patient": pa.array(per_row(index, np.int64)),
        "arm": pa.DictionaryArray.from_arrays(
            pa.array(per_row(arm, np.int8)), pa.array(list(plan.arms), pa.string())
        ),
        "time_d": pa.array(np.tile(plan.visits_d.astype(np.float32), len(index))),
        "age_years": pa.array(per_row(cohort.age_years, np.float32)),
        "female": pa.array(per_row(cohort.female, np.bool_)),
        "body_weight_kg": pa.array(per_row(cohort.body_weight_kg, np.float32)),
        "severity": pa.array(per_row(cohort.severity, np.float32)),
        "died_d": optional_day(died_d),
        "neutrophil_recovery_d": optional_day(recovery_d),
        "withdrawn_d": optional_day(withdrawn_d),
        **{column: pa.array(values.astype(np.float32).reshape(-1)) for column, values in exposures.items()},
        **({"doses_given": pa.array(doses_given.reshape(-1))} if doses_given is not None else {}),
        **(
            {"lot": pa.array(per_row(lot, np.int16), mask=per_row(lot < 0, np.bool_))}
            if lot is not None
            else {}
        ),
    }
    for endpoint in plan.endpoints:
        name = endpoint.name
        missing = ~counted[name].reshape(-1)
        columns[name] = pa.array(measured[name].astype(np.float32).reshape(-1), mask=missing)
        columns[f"{name}_untreated"] = pa.array(untreated[name].astype(np.float32).reshape(-1))
    units = {e.name: ("responder (0/1)" if is_rate(e) else e.unit) for e in plan.endpoints}
    exposure_units = {
        "target_cell_days_per_g": "cell-days per g of injured tissue",
        "live_cell_days_per_kg": "cell-days per kg",
    }
    units |= {k: v for k, v in exposure_units.items() if k in exposures}
    metadata = {f"unit:{k}".encode(): v.encode() for k, v in units.items()}
    return pa.table(columns).replace_schema_metadata(metadata)


#: Baseline covariates summed per arm (``_baseline_sums``): name, unit.
BASELINE = (("age_years", "year"), ("body_weight_kg", "kg"), ("severity", "0-1"), ("female", "share"))


#: Columns of ``_baseline_sums``: patients, each covariate's sum and sum of squares, then the patients
#: given every administration of their arm's schedule and the administrations given.
BASELINE_FIELDS = 1 + 2 * len(BASELINE) + 2


def _baseline_sums(
    cohort: Cohort, arm: np.ndarray, arms: int, given_all: np.ndarray, administrations: np.ndarray
) -> np.ndarray:
    """Per arm: patients, the sum and sum of squares of each baseline covariate (``BASELINE``), the
    patients given every administration (``given_all``) and the administrations given."""
    out = np.zeros((arms, BASELINE_FIELDS))
    for a in range(arms):
        members = arm == a
        out[a, 0] = members.sum()
        for j, (name, _unit) in enumerate(BASELINE):
            values = np.asarray(getattr(cohort, name), dtype=float)[members]
            out[a, 1 + 2 * j] = values.sum()
            out[a, 2 + 2 * j] = (values**2).sum()
        out[a, -2] = given_all[members].sum()
        out[a, -1] = administrations[members].sum()
    return out


def adherence_table(sums: np.ndarray, arms: list[str], scheduled: list[int]) -> dict:
    """Per arm given administrations (``scheduled`` > 0): the schedule's count, the patients given
    every one (number and share) and the mean administrations given (``trial.missed_doses``)."""
    table = {}
    for a, arm in enumerate(arms):
        n = sums[a, 0]
        if scheduled[a] == 0 or n == 0:
            continue
        table[arm] = {
            "administrations_scheduled": int(scheduled[a]),
            "patients": int(n),
            "given_all": int(sums[a, -2]),
            "given_all_share": float(f"{sums[a, -2] / n:.10g}"),
            "administrations_mean": float(f"{sums[a, -1] / n:.10g}"),
        }
    return table


def baseline_table(sums: np.ndarray, arms: list[str]) -> dict:
    """Mean and SD of each baseline covariate per arm (female: share of patients)."""
    table = {}
    for a, arm in enumerate(arms):
        n = sums[a, 0]
        row = {"patients": int(n)}
        for j, (name, unit) in enumerate(BASELINE):
            mean = sums[a, 1 + 2 * j] / n if n else float("nan")
            var = (sums[a, 2 + 2 * j] - n * mean**2) / (n - 1) if n > 1 else float("nan")
            row[name] = {"mean": float(mean), "sd": float(np.sqrt(max(var, 0.0))), "unit": unit}
        table[arm] = row
    return table
