"""Cost-effectiveness of a virtual trial within its horizon (``economics:`` in a trial scenario).

Each patient's quality-adjusted life years (QALYs) come from the condition's utility mapping of one
endpoint (``utility[<condition>/<endpoint>=<value>]`` rows: EQ-5D means by level, interpolated
linearly between levels and held at the end levels), linear in time between the trial's visits,
discounted continuously at the annual rate and integrated exactly, and ended at death (the last value
is carried to the day of death, zero after), less a loss per event of a rate endpoint where a row
gives one (MS relapses). Costs per patient: the product (per dose or per million cells), the
delivery of each dose (the sham procedure too), the harvest of an autologous product, a transplant
episode with conditioning, serious adverse events (grade 3-5, per episode), the annual costs of the
condition's health states where rows exist (integrated like the utilities) and per-arm costs per
year alive set in the scenario. Every cost is discounted at its day.

Both totals are linear in the rows (utilities, unit costs), so each patient is reduced once to
*exposures* (``patient_economics``: discounted years at each utility level, discounted doses,
episodes, ...) and every result is ``mean exposures @ row values``. Uncertainty pairs draws of the
rows from their priors (``uncertainty.draw``) with the arm means of replicate trials whose truth is
drawn from the condition's posterior (or, with ``evidence_draws: 0``, the trial's own arm means from
their normal approximation): a probabilistic sensitivity analysis that gives each cells arm against
control its incremental cost and QALYs with 95% intervals, the ICER, the net monetary benefit, the
probability of being cost-effective at each threshold (the acceptability curve), the value-based
price and the expected value of perfect information. Nothing is extrapolated beyond the last visit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from infusim import uncertainty
from infusim.errors import DataError, InfusimError
from infusim.parameters import SCENARIO_SOURCE, Entry, ParameterSet, citation_line, for_scenario
from infusim.patient_economics import (
    Column,
    Exposures,
    _knots,
    _procedures,
    exposures,
    exposures_of,
    mapped_endpoints,
    uncosted_events,
)
from infusim.scenario import Scenario
from infusim.simulation import DISCLAIMER

#: Share of a threshold's range drawn in the acceptability curve (thresholds from 0 to this x the largest).
CURVE_SPAN = 3.0
CURVE_POINTS = 31


def _price_year(entry: Entry, currency: str, field: str) -> str:
    """The ``GBP2023`` part of a cost row's unit, checked against the analysis currency."""
    head = entry.unit.split("/")[0]
    if not head.upper().startswith(currency):
        raise DataError(field, f"{entry.parameter}[{entry.scope}] is in {entry.unit}, not {currency}")
    return head


def settings(scenario: Scenario, params: ParameterSet) -> dict:
    """The analysis settings with the currency's reference-case rows filling what the section leaves
    unset; one-line errors for what cannot be analysed (no mapping, no rows in the currency)."""
    econ = scenario.economics
    condition = scenario.condition.name
    currency = econ.currency.lower()
    available = mapped_endpoints(params, condition)
    if not available:
        with_maps = sorted({s.split("/")[0] for (n, s) in params.entries if n == "utility"})
        raise InfusimError(
            "economics",
            f"no utility mapping is bundled for {condition}; conditions with one: {', '.join(with_maps)}",
        )
    endpoint = econ.endpoint or (
        scenario.trial.primary.endpoint if scenario.trial.primary.endpoint in available else available[0]
    )
    if endpoint not in available:
        raise InfusimError(
            "economics.endpoint",
            f"{endpoint!r} has no utility mapping for {condition}; allowed: {', '.join(available)}",
        )

    def reference(parameter: str, scope: str, given, field: str):
        if given is not None:
            return given
        if not params.has(parameter, scope):
            raise InfusimError(
                field,
                f"no reference value for {econ.currency} ({parameter}[{scope}]); "
                f"give economics.{field.split('.')[-1]}",
            )
        return params.get(parameter, scope, params.entry(parameter, scope).unit)

    discount = reference("discount_rate", currency, econ.discount, "economics.discount")
    thresholds = econ.thresholds or tuple(
        params.get(
            "wtp_threshold", f"{currency}/{level}", params.entry("wtp_threshold", f"{currency}/{level}").unit
        )
        for level in ("lower", "upper")
        if params.has("wtp_threshold", f"{currency}/{level}")
    )
    if not thresholds:
        raise InfusimError(
            "economics.thresholds", f"no reference threshold for {econ.currency}; give thresholds"
        )
    arms = [a.name for a in scenario.trial.arms]
    for name in econ.costs.annual:
        if name not in arms:
            raise InfusimError(
                f"economics.costs.annual.{name}", f"not an arm of the trial; allowed: {', '.join(arms)}"
            )
    return {
        "currency": econ.currency,
        "endpoint": endpoint,
        "discount_costs": float(discount),
        "discount_qalys": float(econ.discount_qalys if econ.discount_qalys is not None else discount),
        "thresholds": [float(t) for t in thresholds],
    }


# ---------------------------------------------------------------- analysis


def _values(found: Exposures, params: ParameterSet, scenario: Scenario, currency: str) -> np.ndarray:
    """Point value of every column's row (utilities, 1 for life years, unit costs)."""
    costs = scenario.economics.costs
    out = []
    for column in found.columns:
        parameter, scope = column.key
        if column.kind == "life_years":
            out.append(1.0)
        elif parameter == SCENARIO_SOURCE:
            field = scope
            group, _, name = field.partition(".")
            out.append(getattr(costs, group)[name] if name else getattr(costs, field))
        else:
            entry = params.entry(parameter, scope)
            if column.kind == "cost":
                _price_year(entry, currency, f"economics.costs ({parameter}[{scope}])")
            out.append(float(entry.value))
    return np.array(out, dtype=float)


def _row_draws(
    found: Exposures, params: ParameterSet, point: np.ndarray, count: int, seed: int
) -> np.ndarray:
    """``count`` draws of the column values: table rows from their priors, the rest held."""
    keys = [c.key for c in found.columns if c.key[0] not in (SCENARIO_SOURCE, "life_years")]
    drawn = uncertainty.draw(uncertainty.priors(params, keys), count, seed)
    out = np.tile(point, (count, 1))
    for i, column in enumerate(found.columns):
        if column.key in drawn:
            out[:, i] = drawn[column.key]
    return out


def _arm_means(found: Exposures, count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per arm: patients, mean exposures, and ``count`` draws of the mean from its normal approximation
    (the sampling error of a finite trial)."""
    rng = np.random.default_rng([seed, 0xEC0])
    arms = len(found.arms)
    sizes = np.bincount(found.arm, minlength=arms)
    means = np.zeros((arms, found.matrix.shape[1]))
    draws = np.zeros((arms, count, found.matrix.shape[1]))
    for a in range(arms):
        rows = found.matrix[found.arm == a]
        means[a] = rows.mean(axis=0)
        if not count:
            continue
        cov = (
            np.cov(rows, rowvar=False) / rows.shape[0]
            if rows.shape[0] > 1
            else np.zeros((means.shape[1],) * 2)
        )
        draws[a] = rng.multivariate_normal(means[a], np.atleast_2d(cov), size=count, method="eigh")
    return sizes, means, draws


def _evidence_means(
    scenario: Scenario, params: ParameterSet, chosen: dict, columns: list[Column]
) -> np.ndarray:
    """Mean exposures per arm (replicates, arms, columns) of replicate trials 1, 2, ... whose truth is
    drawn from the condition's posterior (``virtual_trial.simulate_chunk(uncertain=True)``, as the
    assurance replicates are), each with ``evidence_patients`` patients."""
    from infusim import safety
    from infusim.virtual_trial import simulate_chunk

    econ = scenario.economics
    size = min(econ.evidence_patients, scenario.trial.patients)
    arms = len(scenario.trial.arms)
    out = np.zeros((econ.evidence_draws, arms, len(columns)))
    for r in range(econ.evidence_draws):
        events = safety.chunk_events(scenario, r + 1, 0, size, params)[0]
        table, _ = simulate_chunk(scenario, r + 1, 0, size, params=params, uncertain=True, events=events)
        found = exposures_of(scenario, table.to_pandas(), events, params, chosen)
        if found.columns != columns:
            raise DataError("economics", "a replicate trial gave other exposure columns than the trial")
        for a in range(arms):
            out[r, a] = found.matrix[found.arm == a].mean(axis=0)
    return out


def _interval(samples: np.ndarray) -> list[float]:
    return [float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))]


def quadrant(d_cost: float, d_qalys: float) -> str:
    """Where an arm lies against control on the cost-effectiveness plane."""
    if d_qalys > 0:
        return "dominant (more QALYs, lower cost)" if d_cost <= 0 else "more QALYs at a higher cost"
    if d_qalys < 0:
        return "dominated (fewer QALYs, higher cost)" if d_cost >= 0 else "fewer QALYs at a lower cost"
    return "no QALY difference"


PATIENTS_FILE = "economics.parquet"


def patient_table(found: Exposures, point: np.ndarray) -> pd.DataFrame:
    """Each patient's discounted QALYs, life years and costs (total and by item) at the rows' values."""
    values = found.matrix * point
    kinds = np.array([c.kind for c in found.columns])
    table = pd.DataFrame(
        {
            "patient": found.patients,
            "arm": pd.Categorical.from_codes(found.arm, found.arms),
            "qalys": values[:, kinds == "qalys"].sum(axis=1),
            "life_years": values[:, kinds == "life_years"].sum(axis=1),
            "cost": values[:, kinds == "cost"].sum(axis=1),
        }
    )
    for component in dict.fromkeys(c.component for c in found.columns if c.kind == "cost"):
        mask = np.array([c.kind == "cost" and c.component == component for c in found.columns])
        table[f"cost_{component.replace(' ', '_')}"] = values[:, mask].sum(axis=1)
    return table


def analyse(scenario: Scenario, out: str | Path) -> dict:
    """Cost-effectiveness of each cells arm of the trial in ``out`` against its control (a dict for
    ``summary.json``); writes each patient's QALYs and costs to ``out/economics.parquet``."""
    out = Path(out)
    params = for_scenario(scenario)
    chosen = settings(scenario, params)
    found = exposures(scenario, out, params, chosen)
    point = _values(found, params, scenario, chosen["currency"])
    partial = out / f".{PATIENTS_FILE}.tmp"
    patient_table(found, point).to_parquet(partial, index=False, compression="zstd")
    partial.replace(out / PATIENTS_FILE)
    count = scenario.economics.draws
    seed = scenario.simulation.seed
    rows = _row_draws(found, params, point, count, seed)
    evidence = scenario.economics.evidence_draws
    sizes, means, sampled = _arm_means(found, 0 if evidence else count, seed)
    if evidence:  # each draw takes one replicate trial's arm means: effect, sample and rows uncertain
        replicates = _evidence_means(scenario, params, chosen, found.columns)
        sampled = np.transpose(replicates[np.arange(count) % evidence], (1, 0, 2))
    kinds = np.array([c.kind for c in found.columns])
    cost_cols, qaly_cols = kinds == "cost", kinds == "qalys"
    life_cols = kinds == "life_years"
    product_cols = np.array([c.component == "product" for c in found.columns])
    other_cols = cost_cols & ~product_cols

    def totals(mean: np.ndarray, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return (mean[..., mask] * values[..., mask]).sum(axis=-1)

    control = [a.name for a in scenario.trial.arms].index(scenario.trial.control.name)
    by_arm = {}
    for a, name in enumerate(found.arms):
        components: dict[str, float] = {}
        for i, column in enumerate(found.columns):
            if column.kind == "cost":
                components[column.component] = components.get(column.component, 0.0) + means[a, i] * point[i]
        by_arm[name] = {
            "patients": int(sizes[a]),
            "qalys": _summary(totals(means[a], point, qaly_cols), totals(sampled[a], rows, qaly_cols)),
            "life_years": _summary(totals(means[a], point, life_cols), totals(sampled[a], rows, life_cols)),
            "cost": _summary(totals(means[a], point, cost_cols), totals(sampled[a], rows, cost_cols)),
            "cost_components": {k: round(v, 2) for k, v in components.items()},
        }
    comparisons = {}
    benefit_draws: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    grid = np.linspace(0.0, CURVE_SPAN * max(chosen["thresholds"]), CURVE_POINTS)
    for a, name in enumerate(found.arms):
        if a == control or scenario.trial.arms[a].kind != "cells":
            continue
        d_cost = totals(means[a], point, cost_cols) - totals(means[control], point, cost_cols)
        d_qalys = totals(means[a], point, qaly_cols) - totals(means[control], point, qaly_cols)
        cost_draws = totals(sampled[a], rows, cost_cols) - totals(sampled[control], rows, cost_cols)
        qaly_draws = totals(sampled[a], rows, qaly_cols) - totals(sampled[control], rows, qaly_cols)
        benefit_draws[name] = (qaly_draws, cost_draws)
        comparisons[name] = {
            "incremental_cost": _summary(d_cost, cost_draws),
            "incremental_qalys": _summary(d_qalys, qaly_draws),
            # a negative ratio (one arm dominates) has no meaning as a price per QALY: the quadrant says it
            "icer": float(d_cost / d_qalys) if d_cost * d_qalys > 0 else None,
            "quadrant": quadrant(d_cost, d_qalys),
            "thresholds": {
                f"{t:g}": {
                    "net_monetary_benefit": _summary(t * d_qalys - d_cost, t * qaly_draws - cost_draws),
                    "probability_cost_effective": float(np.mean(t * qaly_draws - cost_draws > 0)),
                }
                for t in chosen["thresholds"]
            },
            "value_based_price": _headroom(
                chosen["thresholds"],
                d_qalys,
                totals(means[a], point, other_cols) - totals(means[control], point, other_cols),
                means[a, product_cols].sum(),
                qaly_draws,
                totals(sampled[a], rows, other_cols) - totals(sampled[control], rows, other_cols),
                sampled[a][:, product_cols].sum(axis=1),
                _product_unit(found),
            ),
            "acceptability_curve": {
                "threshold": [float(t) for t in grid],
                "probability": [float(np.mean(t * qaly_draws - cost_draws > 0)) for t in grid],
            },
        }
    return {
        "kind": "infusim-economics",
        "scenario_name": scenario.name,
        "scenario_hash": scenario.hash(),
        "disclaimer": DISCLAIMER,
        "settings": chosen
        | {
            "horizon_d": float(scenario.trial.visits_h[-1] / 24.0),
            "draws": count,
            "evidence_draws": evidence,
            "evidence_patients": min(scenario.economics.evidence_patients, scenario.trial.patients)
            if evidence
            else 0,
        },
        "patients_file": PATIENTS_FILE,
        "control": scenario.trial.control.name,
        "utility_mapping": _mapping(params, scenario.condition.name, chosen["endpoint"]),
        "by_arm": by_arm,
        "comparisons": comparisons,
        "value_of_information": {
            f"{t:g}": evpi([t * q - c for q, c in benefit_draws.values()]) for t in chosen["thresholds"]
        },
        "unit_costs": _unit_costs(found, params, point, chosen["currency"]),
        "events_not_costed": uncosted_events(out, params, scenario, chosen["currency"]),
        "sources": {
            key: citation_line(key)
            for key in sorted(
                {
                    params.entry(*c.key).source
                    for c in found.columns
                    if c.key[0] not in (SCENARIO_SOURCE, "life_years")
                }
            )
        },
        "notes": [
            "within the trial's horizon only: QALYs and costs end at the last visit (no extrapolation)",
            "QALYs: utility of the recorded endpoint at each visit, trapezoid rule, continuous discounting, "
            "zero after death; costs discounted at their day",
            (
                f"95% intervals over {count} draws: each takes one of {evidence} replicate trials whose "
                "truth (potencies, fitted K, the trial's own effect) is drawn from the posterior, "
                "as for assurance (the effect's uncertainty and a replicate's sampling error), and the "
                "cost and utility rows from their priors (probabilistic sensitivity analysis)"
                if evidence
                else f"95% intervals over {count} draws of the trial's sampling error (normal approximation "
                "of each arm's mean exposures) and the rows' priors; the treatment effect is held at its "
                "posterior median (economics.evidence_draws: 0)"
            ),
            "prices are as their sources give them (price years in unit_costs), not inflated or converted",
            "value_of_information: expected value of perfect information per patient at each threshold "
            "(what resolving every uncertainty above would be worth, in the currency, per patient treated)",
            "intention to treat: every randomised patient counts in their arm, whatever happened",
        ],
    }


def evpi(benefits: list[np.ndarray]) -> float:
    """Expected value of perfect information per patient: the mean over draws of the best strategy's
    net monetary benefit, less that of the strategy best on average (control's benefit is 0 by
    definition; ``benefits``: each cells arm's incremental net benefit per draw)."""
    if not benefits:
        return 0.0
    table = np.column_stack([np.zeros_like(benefits[0]), *benefits])
    return float(np.mean(table.max(axis=1)) - table.mean(axis=0).max())


def _headroom(thresholds, d_qalys, d_other, exposure, qaly_draws, other_draws, exposure_draws, unit) -> dict:
    """The highest product price (per dose or per million cells) at which the arm's net monetary
    benefit is zero at each threshold: (threshold x incremental QALYs - other incremental costs) /
    the arm's discounted product exposure; negative when even a free product is not cost-effective."""
    if exposure <= 0:
        return {}
    return {
        "unit": unit,
        "by_threshold": {
            f"{t:g}": _summary(
                (t * d_qalys - d_other) / exposure,
                (t * qaly_draws - other_draws) / np.maximum(exposure_draws, 1e-12),
            )
            for t in thresholds
        },
    }


def _product_unit(found: Exposures) -> str:
    keys = [c.key for c in found.columns if c.component == "product"]
    per_cell = any("million_cells" in k[0] or "million_cells" in k[1] for k in keys)
    return "per million cells" if per_cell else "per dose"


def _summary(point: float, draws: np.ndarray) -> dict:
    return {"mean": float(point), "ci95": _interval(draws)}


def _mapping(params: ParameterSet, condition: str, endpoint: str) -> list[dict]:
    return [
        {"value": x, "utility": float(e.value), "source": e.source, "provenance": e.provenance}
        for x, e in _knots(params, "utility", f"{condition}/{endpoint}")
    ]


def _unit_costs(found: Exposures, params: ParameterSet, point: np.ndarray, currency: str) -> list[dict]:
    out = []
    for column, value in zip(found.columns, point, strict=True):
        if column.kind != "cost":
            continue
        parameter, scope = column.key
        if parameter == SCENARIO_SOURCE:
            out.append(
                {
                    "item": f"economics.costs.{scope}",
                    "value": float(value),
                    "unit": currency,
                    "source": "scenario",
                }
            )
        else:
            e = params.entry(parameter, scope)
            out.append(
                {
                    "item": f"{parameter}[{scope}]",
                    "value": float(value),
                    "unit": e.unit,
                    "source": e.source,
                    "provenance": e.provenance,
                }
            )
    return out


def check(scenario: Scenario) -> None:
    """Fail before a trial runs when its economics cannot be analysed (no mapping, a missing cost
    row, a row in another currency): the same lookups as ``analyse`` on no patients."""
    params = for_scenario(scenario)
    chosen = settings(scenario, params)
    trial, econ = scenario.trial, scenario.economics
    block = sum(a.ratio for a in trial.arms)  # one permuted block gives every arm its ratio
    if trial.patients < block:
        raise InfusimError(
            "trial.patients",
            f"{trial.patients}: an economics analysis needs every arm to have patients: give {block} or more",
        )
    if econ.evidence_draws and min(econ.evidence_patients, trial.patients) < block:
        raise InfusimError(
            "economics.evidence_patients",
            f"{econ.evidence_patients}: give {block} or more (one per arm's ratio)",
        )
    empty = np.zeros(0)
    _, columns = _procedures(scenario, params, chosen, np.zeros(0, dtype=int), empty, empty)
    _values(
        Exposures([], np.zeros(0, dtype=int), np.zeros((0, len(columns))), columns),
        params,
        scenario,
        chosen["currency"],
    )
