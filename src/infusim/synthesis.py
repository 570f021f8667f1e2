"""Model-based meta-analysis: a condition's potencies fitted jointly to all its controlled trials.

For evidence row ``j`` (study ``s``, endpoint ``e``, visit ``t``) the likelihood is

    y_j = mu_j(theta) + d_e s_e (b_open w_j + b_ext x_j) + tau s_e eta_s + eps_j

* ``mu_j``: the mean treated-minus-untreated effect of a virtual population of the trial's patients
  given the trial's own product, route, dose and schedule, run through the cell model and the
  mechanism responses (``outcomes``); it depends on the potencies (and, where a condition has
  dose-ranging trials, on the half-saturation K of its mechanism);
* ``s_e``: the between-patient SD of the endpoint, so heterogeneity ``tau`` and the design terms are
  in standardised-mean-difference units (as meta-epidemiology reports them); ``d_e`` is +1 when
  higher is better;
* ``w_j``: 1 for open randomised and non-randomised controlled trials, ``META_OPEN_WEIGHT`` for a
  pooled meta-analysis, 0 for blinded trials; ``x_j``: 1 for a single arm set against another
  trial's control arm;
* ``eta_s ~ N(0, 1)``: the study's random effect, shared by all its rows; ``eps_j ~ N(0, se_j^2)`` with
  correlation ``WITHIN_STUDY_CORRELATION`` between rows of one study (same or shared patients).

The study effects are integrated out exactly (a multivariate normal per study). Null trials enter
with their estimate and CI like any other. Priors are data (``data/synthesis.csv``). The posterior is
sampled with emcee (an affine-invariant ensemble sampler: no gradients are needed, and the model
has 2-6 parameters, where it mixes well).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import math
from dataclasses import dataclass, field

import emcee
import numpy as np
import scipy.optimize

from infusim import conditions, evidence, outcomes, posterior
from infusim.conditions import ConditionInfo
from infusim.errors import DataError
from infusim.evidence import EvidenceRow
from infusim.model import disease, mechanisms
from infusim.model.disease import Variation
from infusim.model.kinetics import assemble
from infusim.parameters import ParameterSet, bundled
from infusim.population import cohort_model, sample_cohort

#: Weight of the open-label term for a pooled meta-analysis of mixed blinded and open trials.
META_OPEN_WEIGHT = 0.5
#: Correlation of the sampling errors of two rows of one study (same patients or a shared control).
WITHIN_STUDY_CORRELATION = 0.5
#: K grid: tabulated K times 10**LOG_K_SPAN, interpolated linearly in log10 K.
LOG_K_SPAN = np.linspace(-3.0, 3.0, 25)
#: Virtual patients per evidence row (the trial's population; common random numbers across rows).
FIT_PATIENTS = 32
FIT_SEED = 20261202
#: Ensemble size and chain length of a stored fit. Until 2026-12-03 a fit kept 2,000 draws at an even
#: stride through the flattened chain, and the stride was the walker count plus a sliver, so each walker
#: gave one run of consecutive steps (24 runs of ~87 steps at 24 x 2,500; about 30 independent
#: draws): medians moved by up to 60% with the seed
#: (ischemic stroke 0.14-0.23, acute MI 11.7-16.7). Draws are now picked at random from all walkers,
#: and chains are longer so that the potency-K ridge of acute MI is crossed many times: at 32 walkers
#: x 20,000 steps the medians of three seeds agree within a fifth of a posterior SD (``fits.json``
#: records the check, ``seed_check``).
FIT_WALKERS = 32
FIT_STEPS = 20000
FIT_BURN = 4000
#: Extra seeds of the Monte Carlo check stored with each fit.
CHECK_SEEDS = (1, 2)
#: Prior support: a draw more than this many prior SDs from the priors' centre (sum of squares) has
#: zero posterior (prior mass beyond it: below 1e-10). Without it a far proposal (log tau 27, tau^2
#: ~1e23) makes a study covariance whose Cholesky factor fails.
SUPPORT_SD = 8.0


@dataclass(frozen=True)
class Basis:
    """What the cell model says about one evidence row, precomputed once per fit.

    Arrays are over the row's virtual patients; ``responses`` and ``slowing`` are (K grid, patients)
    for the fitted mechanism, else (1, patients).
    """

    row: EvidenceRow
    direction: float
    low: float
    high: float
    natural: np.ndarray
    room: np.ndarray
    factor: np.ndarray
    responses: dict[str, np.ndarray]
    slowing: np.ndarray
    keys: dict[str, tuple[tuple[str, str], ...]]
    scale: float


@dataclass(frozen=True)
class Parameter:
    """One fitted quantity: its name, how it is sampled and its prior (on the sampled scale)."""

    name: str
    kind: str  # 'log' (table value = exp(x)), 'log10' (K = 10**x), 'tau' (x = log tau), 'linear'
    prior_mean: float
    prior_sd: float
    key: tuple[str, str] | None = None


def to_table(kind: str, x: np.ndarray) -> np.ndarray:
    """Sampled coordinate -> table value (``Parameter.kind``: log and tau exp, log10 10**, else as is)."""
    return np.exp(x) if kind in ("log", "tau") else 10.0**x if kind == "log10" else x


def to_sampled(kind: str, value: np.ndarray) -> np.ndarray:
    """Table value -> sampled coordinate (the inverse of ``to_table``)."""
    return np.log(value) if kind in ("log", "tau") else np.log10(value) if kind == "log10" else value


@dataclass
class Problem:
    """A condition's fit: its rows' bases, parameters and, for K, the mechanism whose K is fitted."""

    condition: ConditionInfo
    bases: list[Basis]
    parameters: list[Parameter]
    k_mechanism: str | None
    k_table: float = math.nan  # centre of the K grid: the mechanism's generic (prior) K
    studies: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        names = [b.row.study for b in self.bases]
        self.studies = [np.flatnonzero(np.array(names) == s) for s in dict.fromkeys(names)]

    def subset(self, members) -> Problem:
        """The same parameters and priors with only the rows ``members`` (indices into ``bases``)."""
        return Problem(
            self.condition, [self.bases[i] for i in members], self.parameters, self.k_mechanism, self.k_table
        )

    @functools.cached_property
    def stack(self) -> Stack | None:
        """The bases as arrays over rows, to evaluate many draws at once (None without rows)."""
        return Stack.of(self.bases) if self.bases else None

    @functools.cached_property
    def study_groups(self) -> list[StudyGroup]:
        """The studies grouped by their number of rows, with their constant covariance parts."""
        y = np.array([b.row.estimate for b in self.bases])
        se = np.array([b.row.se for b in self.bases])
        scale = np.array([b.scale for b in self.bases])
        groups = []
        for size in sorted({len(m) for m in self.studies}):
            studies = [i for i, m in enumerate(self.studies) if len(m) == size]
            members = np.array([self.studies[i] for i in studies])
            sampling = [
                WITHIN_STUDY_CORRELATION * np.outer(sd, sd) + (1 - WITHIN_STUDY_CORRELATION) * np.diag(sd**2)
                for sd in se[members]
            ]
            outer = [np.outer(s, s) for s in scale[members]]
            groups.append(
                StudyGroup(np.array(studies), members, y[members], np.array(sampling), np.array(outer))
            )
        return groups


@dataclass(frozen=True)
class StudyGroup:
    """Studies with the same number of rows k: indices (n,), row indices (n, k), estimates (n, k),
    sampling covariance (n, k, k) and the outer product of the rows' SD scales (n, k, k)."""

    studies: np.ndarray
    members: np.ndarray
    y: np.ndarray
    sampling: np.ndarray
    outer: np.ndarray


@dataclass(frozen=True)
class Stack:
    """Bases stacked over rows (B) for vectorised evaluation: ``slowing`` and each response slot
    (K grid, B, patients); ``key_slots`` per response slot: for each position in a row's strength
    product, the column of ``keys`` (or ``len(keys)``, a padding 1) per row."""

    slowing: np.ndarray
    responses: list[np.ndarray]
    key_slots: list[list[np.ndarray]]
    keys: list[tuple[str, str]]
    factor: np.ndarray
    room: np.ndarray
    natural: np.ndarray
    direction: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @staticmethod
    def of(bases: list[Basis]) -> Stack:
        # a mechanism whose response is zero everywhere adds nothing (its keys need not be sampled)
        active = [[(m, ks) for m, ks in b.keys.items() if np.any(b.responses[m])] for b in bases]
        keys = list(dict.fromkeys(k for items in active for _, ks in items for k in ks))
        column = {k: i for i, k in enumerate(keys)}
        pad = len(keys)
        slowing = np.stack([b.slowing for b in bases], axis=1)
        responses, key_slots = [], []
        for m in range(max(len(items) for items in active)):
            chosen = [items[m] if m < len(items) else None for items in active]
            zero = np.zeros_like(bases[0].slowing)
            responses.append(
                np.stack(
                    [b.responses[c[0]] if c else zero for b, c in zip(bases, chosen, strict=True)], axis=1
                )
            )
            length = max(len(c[1]) for c in chosen if c)
            key_slots.append(
                [
                    np.array([column[c[1][j]] if c and j < len(c[1]) else pad for c in chosen])
                    for j in range(length)
                ]
            )
        column_of = lambda name: np.array([getattr(b, name) for b in bases])[:, None]  # noqa: E731
        return Stack(
            slowing,
            responses,
            key_slots,
            keys,
            np.stack([b.factor for b in bases]),
            np.stack([b.room for b in bases]),
            np.stack([b.natural for b in bases]),
            column_of("direction"),
            column_of("low"),
            column_of("high"),
        )


def condition_rows(rows: list[EvidenceRow], condition: str) -> list[EvidenceRow]:
    return [r for r in rows if r.condition == condition]


def dose_ranging_studies(rows: list[EvidenceRow]) -> list[str]:
    """Studies with two or more arms that differ in dose or number of doses."""
    regimens: dict[str, set] = {}
    for r in rows:
        regimens.setdefault(r.study, set()).add((r.dose, r.dose_unit, r.doses))
    return sorted(s for s, v in regimens.items() if len(v) > 1)


def build(
    condition: str,
    rows: list[EvidenceRow],
    params: ParameterSet | None = None,
    patients: int = FIT_PATIENTS,
    fit_k: bool | None = None,
) -> Problem:
    """Precompute every row's basis and the parameters to fit for ``condition``.

    ``patients=1`` fits one typical patient (the scenario's), as infusim did before population fits.
    ``fit_k`` defaults to: fit K where the condition has dose-ranging trials.
    """
    params = params or bundled()
    info = conditions.get(condition)
    rows = condition_rows(rows, condition)
    fit_k = bool(dose_ranging_studies(rows)) if fit_k is None else fit_k
    k_mechanism = next((m for m in info.mechanisms if m != "reset"), None) if fit_k else None
    k_table = math.nan
    if k_mechanism is not None:
        k_table = params.get("half_saturation", k_mechanism, _k_unit(params, k_mechanism))
    bases = []
    for row in rows:
        basis = _basis(row, info, params, patients, k_mechanism, k_table)
        if basis is not None:
            bases.append(basis)
    parameters = _parameters(info, bases, params, k_mechanism, k_table)
    return Problem(info, bases, parameters, k_mechanism, k_table)


def _k_unit(params: ParameterSet, mechanism: str) -> str:
    return params.entry("half_saturation", mechanism).unit


def _basis(
    row: EvidenceRow,
    info: ConditionInfo,
    params: ParameterSet,
    patients: int,
    k_mechanism: str | None,
    k_table: float,
) -> Basis | None:
    endpoint = info.endpoint(row.endpoint)
    keys = {m: disease.potency_keys(info, m, endpoint, params) for m in info.mechanisms}
    # A mechanism with no effect ratio for this endpoint does not act on it (potency 0).
    keys = {m: ks for m, ks in keys.items() if all(params.has(*k) for k in ks if k[0] == "effect_ratio")}
    if not keys:
        return None
    scenario = evidence.scenario_for(row)
    visit = np.array([row.time_d])
    if patients > 1:
        cohort = sample_cohort(scenario, FIT_SEED, np.arange(patients), params)
        model = cohort_model(scenario, cohort, params)
        weight, severity = cohort.body_weight_kg, cohort.severity
        factor = cohort.variation.potency_factor
        variation = Variation(severity, np.ones(patients), cohort.variation.annual_change)
    else:
        model = assemble(scenario, params=params)
        weight, severity = None, None
        factor = np.ones(1)
        variation = None
    grid = outcomes.grid_days(scenario, row.time_d, visit)
    at = int(np.searchsorted(grid, row.time_d))
    sums = outcomes.cell_sums(model, grid, info.mechanisms)
    factors = 10.0**LOG_K_SPAN if k_mechanism else np.ones(1)
    responses: dict[str, list] = {m: [] for m in keys}
    slowing = []
    signals = mechanisms.signals(scenario, sums, grid, params, weight, severity)
    healthy = disease.healthy_value(info, endpoint, params)
    # The slowing term and the natural history come from trajectories with potencies set to 0.
    drawn = {k: np.zeros(len(factor)) for ks in keys.values() for k in ks if k[0] == "potency"}
    base = Variation(
        variation.severity if variation else np.full(len(factor), scenario.condition.severity),
        np.ones(len(factor)),
        variation.annual_change if variation else {},
        drawn,
    )
    for f in factors:
        override = outcomes.fitted_k(info.name, params, {k_mechanism: k_table * f} if k_mechanism else {})
        found = mechanisms.responses(signals, params, info.mechanisms, override)
        paths = disease.trajectories(scenario, info, found, grid, params, base)
        natural = paths.untreated[row.endpoint][:, at]
        room = np.abs(natural - healthy)
        gained = endpoint.direction * (paths.treated[row.endpoint][:, at] - natural)
        # invert the saturating map to the slowing improvement (potencies are zero here)
        ratio = np.clip(gained / np.where(room > 0, room, 1.0), 0.0, 1.0 - 1e-15)
        slowing.append(np.where(room > 0, -room * np.log1p(-ratio), 0.0))
        for m in keys:
            responses[m].append(found[m][:, at])
    if row.comparator == "active_addon" and math.isfinite(row.control_change):
        # Both arms get the active therapy: the cells act on top of the control arm's response,
        # with the room to health that is left after it.
        natural = np.clip(natural + row.control_change, endpoint.low, endpoint.high)
        room = np.abs(natural - healthy)
    scale = _scale(params, info, row.endpoint)
    return Basis(
        row,
        endpoint.direction,
        endpoint.low,
        endpoint.high,
        natural,
        room,
        factor,
        {m: np.array(v) for m, v in responses.items()},
        np.array(slowing),
        keys,
        scale,
    )


def _scale(params: ParameterSet, info: ConditionInfo, endpoint: str) -> float:
    """Between-patient SD of ``endpoint`` (its unit): the unit of tau and of the design terms."""
    scale = disease.endpoint_scale(params, info, endpoint)
    if scale is None:
        raise DataError(f"endpoint_sd[{info.name}/{endpoint}]", "no baseline_sd or endpoint_sd row")
    return scale


def _parameters(
    info: ConditionInfo, bases: list[Basis], params: ParameterSet, k_mechanism: str | None, k_table: float
) -> list[Parameter]:
    """Potencies (and effect ratios) that some row's cells act through, then K, tau, design terms."""
    used: dict[tuple[str, str], float] = {}
    for b in bases:
        for m, ks in b.keys.items():
            if np.any(b.responses[m] > 0):
                for k in ks:
                    room = np.median(b.room) if k[0] == "potency" else 1.0
                    used.setdefault(k, max(float(room), 1e-9))
    prior = _priors(params)
    out = []
    for key, room in used.items():
        if key[0] == "potency":
            out.append(Parameter(f"potency[{key[1]}]", "log", math.log(room), prior["potency_log_sd"], key))
        else:
            # equal standardised effect on both endpoints: ratio of their between-patient SDs
            secondary = key[1].split("/")[1]
            centre = _scale(params, info, secondary) / _scale(params, info, info.primary.name)
            out.append(
                Parameter(f"effect_ratio[{key[1]}]", "log", math.log(centre), prior["ratio_log_sd"], key)
            )
    if k_mechanism is not None:
        generic = params.get("half_saturation", k_mechanism, _k_unit(params, k_mechanism))
        out.append(
            Parameter(
                f"half_saturation[{k_mechanism}/{info.name}]",
                "log10",
                math.log10(generic),
                prior["k_log10_sd"],
            )
        )
    out.append(Parameter("tau_smd", "tau", math.log(prior["tau_log_median"]), prior["tau_log_sd"]))
    out.append(Parameter("bias_open_smd", "linear", prior["open_bias_mean"], prior["open_bias_sd"]))
    out.append(
        Parameter("bias_external_smd", "linear", prior["external_bias_mean"], prior["external_bias_sd"])
    )
    return out


def _priors(params: ParameterSet) -> dict[str, float]:
    names = (
        "potency_log_sd",
        "ratio_log_sd",
        "k_log10_sd",
        "tau_log_median",
        "tau_log_sd",
        "open_bias_mean",
        "open_bias_sd",
        "external_bias_mean",
        "external_bias_sd",
    )
    return {n: params.get("synthesis_prior", n, "") for n in names}


# --- likelihood ------------------------------------------------------------------------------


def effects(problem: Problem, theta: np.ndarray) -> np.ndarray:
    """Mean effect (treated - untreated, endpoint units) of every row: (draws, rows)."""
    theta = np.atleast_2d(theta)
    stack = problem.stack
    if stack is None:
        return np.empty((theta.shape[0], 0))
    values = _values(problem, theta)
    k_shift = values.get("log10_k_shift")
    if k_shift is not None:
        position = np.clip(
            (k_shift - LOG_K_SPAN[0]) / (LOG_K_SPAN[1] - LOG_K_SPAN[0]), 0, len(LOG_K_SPAN) - 1.000001
        )
        i0 = np.floor(position).astype(int)
        w = (position - i0)[:, None, None]

        def at(a: np.ndarray) -> np.ndarray:  # (K grid, rows, patients) -> (draws, rows, patients)
            return a[i0] * (1 - w) + a[i0 + 1] * w
    else:

        def at(a: np.ndarray) -> np.ndarray:
            return np.broadcast_to(a[0], (theta.shape[0], *a.shape[1:]))

    improvement = at(stack.slowing).copy()
    # each row's strength keys in their order, padded with 1: the same products as row by row
    table = np.column_stack([values[k] for k in stack.keys] + [np.ones(theta.shape[0])])
    for response, slots in zip(stack.responses, stack.key_slots, strict=True):
        strength = np.ones((theta.shape[0], response.shape[1]))
        for slot in slots:
            strength = strength * table[:, slot]
        improvement += strength[:, :, None] * stack.factor[None, :, :] * at(response)
    gain = disease.saturating_gain(improvement, stack.room[None])
    treated = np.clip(stack.natural[None] + stack.direction * gain, stack.low, stack.high)
    return np.mean(treated - stack.natural[None], axis=2)


def _values(problem: Problem, theta: np.ndarray) -> dict:
    """Sampled coordinates -> table values by key, plus K shift, tau and design terms (per draw)."""
    values: dict = {}
    for i, p in enumerate(problem.parameters):
        x = theta[:, i]
        if p.kind == "log" and p.key is not None:
            values[p.key] = np.exp(x)
        elif p.kind == "log10":
            values["log10_k_shift"] = x - math.log10(problem.k_table)
            values["k"] = 10.0**x
        elif p.kind == "tau":
            values["tau"] = np.exp(x)
        else:
            values[p.name] = x
    return values


def design_terms(problem: Problem, theta: np.ndarray) -> np.ndarray:
    """The bias of each row's design (endpoint units, favouring cells): (draws, rows)."""
    theta = np.atleast_2d(theta)
    values = _values(problem, theta)
    out = np.zeros((theta.shape[0], len(problem.bases)))
    for j, b in enumerate(problem.bases):
        w_open = {"rct_open": 1.0, "nonrandomised_controlled": 1.0, "meta_analysis": META_OPEN_WEIGHT}.get(
            b.row.design, 0.0
        )
        external = 1.0 if b.row.design == "single_arm_external" else 0.0
        smd = w_open * values["bias_open_smd"] + external * values["bias_external_smd"]
        out[:, j] = b.direction * b.scale * smd
    return out


def log_prior(problem: Problem, theta: np.ndarray) -> np.ndarray:
    theta = np.atleast_2d(theta)
    total = np.zeros(theta.shape[0])
    for i, p in enumerate(problem.parameters):
        x = theta[:, i]
        total += -0.5 * ((x - p.prior_mean) / p.prior_sd) ** 2  # tau: log-normal, sampled as log tau
    return total


def log_likelihood(problem: Problem, theta: np.ndarray) -> np.ndarray:
    theta = np.atleast_2d(theta)
    mean = effects(problem, theta) + design_terms(problem, theta)
    tau2 = _values(problem, theta)["tau"] ** 2
    per_study = np.zeros((theta.shape[0], len(problem.studies)))
    # studies with the same number of rows are factorised together (one batched call per size)
    for group in problem.study_groups:
        resid = group.y[None] - mean[:, group.members]  # (draws, studies, rows)
        cov = group.sampling[None] + tau2[:, None, None, None] * group.outer[None]
        chol = np.linalg.cholesky(cov)
        z = np.linalg.solve(chol, resid[..., None])[..., 0]
        logdet = 2 * np.sum(np.log(np.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
        k = group.members.shape[1]
        per_study[:, group.studies] = -0.5 * (np.sum(z**2, axis=-1) + logdet + k * math.log(2 * math.pi))
    total = np.zeros(theta.shape[0])
    for s in range(per_study.shape[1]):  # in study order, as one sum per study
        total += per_study[:, s]
    return total


def log_posterior(problem: Problem, theta: np.ndarray) -> np.ndarray:
    theta = np.atleast_2d(theta)
    lp = log_prior(problem, theta)
    inside = lp > -0.5 * SUPPORT_SD**2
    out = np.full(theta.shape[0], -np.inf)
    if np.any(inside):
        out[inside] = lp[inside] + log_likelihood(problem, theta[inside])
    return np.where(np.isfinite(out), out, -np.inf)


# --- sampling ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fit:
    """Posterior samples (draws, parameters) of one condition, with diagnostics and provenance."""

    condition: str
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    samples: np.ndarray
    rows: tuple[str, ...]
    studies: tuple[str, ...]
    diagnostics: dict

    def table_values(self) -> dict[str, np.ndarray]:
        """Samples on the table's scale (potencies and K as values, tau and biases as SMD)."""
        out = {}
        for i, (name, kind) in enumerate(zip(self.names, self.kinds, strict=True)):
            out[name] = to_table(kind, self.samples[:, i])
        return out


def fit(
    problem: Problem,
    walkers: int = FIT_WALKERS,
    steps: int = FIT_STEPS,
    burn: int = FIT_BURN,
    keep: int = posterior.STORED_DRAWS,
    seed: int = FIT_SEED,
) -> Fit:
    """Sample the posterior of ``problem`` with emcee (vectorised over walkers)."""
    ndim = len(problem.parameters)
    start = np.array([p.prior_mean for p in problem.parameters])
    if problem.bases:
        best = scipy.optimize.minimize(
            lambda x: -float(log_posterior(problem, x[None, :])[0]),
            start,
            method="Nelder-Mead",
            options={"maxiter": 2000, "xatol": 1e-4, "fatol": 1e-6},
        )
        if np.isfinite(best.fun):
            start = best.x
    walkers = max(walkers, 2 * ndim + 2)
    rng = np.random.default_rng(seed)
    initial = start[None, :] + 0.05 * rng.standard_normal((walkers, ndim))
    sampler = emcee.EnsembleSampler(walkers, ndim, lambda x: log_posterior(problem, x), vectorize=True)
    sampler.random_state = np.random.RandomState(seed).get_state()  # reproducible moves
    sampler.run_mcmc(initial, steps, progress=False)
    chain = sampler.get_chain(discard=burn)
    flat = chain.reshape(-1, ndim)
    # a random subset of all draws: an even stride near (walkers x n) takes runs of one walker at a time
    pick = np.sort(rng.choice(len(flat), size=min(keep, len(flat)), replace=False))
    logging.getLogger("emcee.autocorr").setLevel(logging.ERROR)  # short-chain notes: ESS is reported
    tau_int = emcee.autocorr.integrated_time(chain, quiet=True)
    ess = chain.shape[0] * chain.shape[1] / np.maximum(tau_int, 1.0)
    diagnostics = {
        "sampler": f"emcee {emcee.__version__} EnsembleSampler (stretch move)",
        "walkers": walkers,
        "steps": steps,
        "burn_in": burn,
        "acceptance": round(float(np.mean(sampler.acceptance_fraction)), 3),
        "autocorrelation_steps": {
            p.name: round(float(t), 1) for p, t in zip(problem.parameters, tau_int, strict=True)
        },
        "effective_sample_size": {
            p.name: round(float(e)) for p, e in zip(problem.parameters, ess, strict=True)
        },
        "split_rhat": {
            p.name: round(float(r), 4) for p, r in zip(problem.parameters, _split_rhat(chain), strict=True)
        },
    }
    rows = tuple(b.row.key for b in problem.bases)
    studies = tuple(dict.fromkeys(b.row.study for b in problem.bases))
    return Fit(
        problem.condition.name,
        tuple(p.name for p in problem.parameters),
        tuple(p.kind for p in problem.parameters),
        flat[pick],
        rows,
        studies,
        diagnostics,
    )


def _split_rhat(chain: np.ndarray) -> np.ndarray:
    """Gelman-Rubin potential scale reduction over walker groups split in halves (steps, walkers, dim).

    Ensemble walkers are not independent chains, so this is a coarse check next to the ESS.
    """
    steps, walkers, _ = chain.shape
    half = steps // 2
    groups = np.concatenate([chain[:half], chain[half : 2 * half]], axis=1)  # (half, 2*walkers, dim)
    groups = (
        groups.reshape(half, 4, -1, chain.shape[2])
        .transpose(0, 2, 1, 3)
        .reshape(half * (2 * walkers // 4), 4, -1)
    )
    n = groups.shape[0]
    means = groups.mean(axis=0)
    within = groups.var(axis=0, ddof=1).mean(axis=0)
    between = n * means.var(axis=0, ddof=1)
    var = (n - 1) / n * within + between / n
    return np.sqrt(var / np.maximum(within, 1e-300))


def predictive(
    problem: Problem, samples: np.ndarray, rng: np.random.Generator, new_trial: bool = True
) -> np.ndarray:
    """Draws (samples, rows) of each row's estimate as a new trial of the same design and size:
    posterior effect + design term + study effect (tau) + the row's sampling error."""
    mean = effects(problem, samples) + design_terms(problem, samples)
    if not new_trial:
        return mean
    tau = _values(problem, samples)["tau"]
    scale = np.array([b.scale for b in problem.bases])
    se = np.array([b.row.se for b in problem.bases])
    study = rng.standard_normal((len(samples), len(problem.studies)))
    out = mean.copy()
    for s, members in enumerate(problem.studies):
        out[:, members] += tau[:, None] * scale[members][None, :] * study[:, s : s + 1]
    return out + se[None, :] * rng.standard_normal(out.shape)


def interval_score(low: np.ndarray, high: np.ndarray, y: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """Gneiting and Raftery (2007) interval score of central (1 - alpha) intervals: lower is better."""
    return (high - low) + (2 / alpha) * np.maximum(low - y, 0) + (2 / alpha) * np.maximum(y - high, 0)


# --- fitting every condition ------------------------------------------------------------------


def evidence_conditions(rows: list[EvidenceRow]) -> list[str]:
    """Conditions with at least one evidence row, in the registry's order."""
    present = {r.condition for r in rows}
    return [c for c in conditions.names() if c in present]


def fit_condition(
    condition: str,
    rows: list[EvidenceRow],
    params: ParameterSet | None = None,
    command: str = "",
    source: str = "",
    check_seeds: tuple[int, ...] = (),
    **sampling,
) -> tuple[Fit, Problem, dict]:
    """Fit one condition and build the record stored with its draws (and, with ``check_seeds``, the
    Monte Carlo check: the same fit from other seeds, ``seed_check``, and the draws against
    importance sampling, ``importance_check``)."""
    problem = build(condition, rows, params)
    result = fit(problem, **sampling)
    values = result.table_values()
    diagnostics = dict(result.diagnostics)
    if check_seeds:
        from infusim import posterior_check

        diagnostics["seed_check"] = seed_check(problem, result, check_seeds, **sampling)
        diagnostics["importance_check"] = posterior_check.record(problem, values)
    record = {
        "command": command,
        "evidence": source,
        "evidence_sha256": rows_digest(condition_rows(rows, condition)),
        "rows": list(result.rows),
        "studies": list(result.studies),
        "n_studies": len(result.studies),
        "n_rows": len(result.rows),
        "dose_ranging_studies": dose_ranging_studies(condition_rows(rows, condition)),
        "summary": {name: _summary(v) for name, v in values.items()},
        "priors": {
            p.name: {"scale": p.kind, "mean": p.prior_mean, "sd": p.prior_sd} for p in problem.parameters
        },
        "diagnostics": diagnostics,
    }
    return result, problem, record


def seed_check(problem: Problem, result: Fit, seeds: tuple[int, ...], **sampling) -> dict:
    """Refit ``problem`` from other ``seeds``: each parameter's median and 95% bounds per seed (table
    scale, stored seed first) and the range of the medians in posterior SDs (sampled scale)."""
    fits = [result] + [
        fit(problem, seed=s, **{k: v for k, v in sampling.items() if k != "seed"}) for s in seeds
    ]
    out = {"seeds": [sampling.get("seed", FIT_SEED), *seeds], "parameters": {}}
    for i, name in enumerate(result.names):
        table = [f.table_values()[name] for f in fits]
        sampled = [np.median(f.samples[:, i]) for f in fits]
        sd = float(np.std(result.samples[:, i]))
        out["parameters"][name] = {
            "median": [float(np.median(x)) for x in table],
            "low": [float(np.percentile(x, 2.5)) for x in table],
            "high": [float(np.percentile(x, 97.5)) for x in table],
            "median_range_sd": round((max(sampled) - min(sampled)) / max(sd, 1e-300), 3),
        }
    out["worst_median_range_sd"] = max(p["median_range_sd"] for p in out["parameters"].values())
    return out


def rows_digest(rows: list[EvidenceRow]) -> str:
    """SHA-256 of everything the fit reads from ``rows``: a stored posterior whose digest differs from
    the current table's was fitted to other evidence and must be refitted."""
    words = ("note", "citation", "source_key", "provenance", "line", "n_treated", "n_control", "onset_d")
    fields = [f.name for f in dataclasses.fields(EvidenceRow) if f.name not in words]
    text = "\n".join(sorted("|".join(repr(getattr(r, f)) for f in fields) for r in rows))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _summary(x: np.ndarray) -> dict[str, float]:
    low, median, high = np.percentile(x, [2.5, 50, 97.5])
    return {"median": float(median), "low": float(low), "high": float(high), "mean": float(np.mean(x))}


if __name__ == "__main__":  # python -m infusim.synthesis: the refit command
    from infusim.synthesis_tables import main

    raise SystemExit(main())
