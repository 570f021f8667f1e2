"""Effect modifiers: patient covariates that change how much the cells help (docs/trials.md).

A subgroup analysis of controlled trials reports the effect of cells in patients below and at or above
a cut of one covariate. A condition carries such a finding as two rows of ``data/variability.csv``::

    effect_modifier_cut[condition/covariate]     the cut (the covariate's unit)
    effect_modifier_ratio[condition/covariate]   potency at or above the cut / potency below it

Covariates: ``age_years`` and ``baseline`` (the entry value of the condition's primary endpoint).
Each patient's potency is multiplied by ``step / mean(step)``, ``step`` being the ratio at or above the
cut and one below it, and the mean taken over the condition's reference population (its population
rows at the typical, moderate severity: the patients the trials behind its potency enrolled, as far as
those rows describe them). So the reference population's mean response, which the potency was fitted
to, is kept, and the modifier only moves response between patients: a trial that enrols only one side
of the cut sees the effect of that side.

The ratio is a potency ratio: where the mechanism itself makes the effect depend on the covariate (the
baseline sets severity, which sets homing and room to improve), the ratio was fitted so that the
subgroup effects of a virtual trial match the source's (``python -m infusim.modifier_fit``). The
evidence synthesis gives its virtual trial patients these factors too, so potency and ratios are
fitted in turn (docs/conditions.md, Known limits).
"""

from __future__ import annotations

import numpy as np

from infusim.conditions import ConditionInfo
from infusim.model.disease import baseline as entry_value
from infusim.model.disease import entry_range
from infusim.parameters import ParameterSet
from infusim.scenario import Scenario

COVARIATES = ("age_years", "baseline")
#: Severity of the reference population (severity_level[moderate]: the typical trial population).
REFERENCE_SEVERITY = "moderate"


def present(condition: ConditionInfo, params: ParameterSet) -> tuple[str, ...]:
    """Covariates with an effect modifier in ``condition``."""
    return tuple(c for c in COVARIATES if params.has("effect_modifier_ratio", f"{condition.name}/{c}"))


def cut(condition: ConditionInfo, covariate: str, params: ParameterSet) -> float:
    """The cut of ``covariate`` in its own unit (years; the primary endpoint's unit)."""
    scope = f"{condition.name}/{covariate}"
    return params.get("effect_modifier_cut", scope, params.entry("effect_modifier_cut", scope).unit)


def ratio(condition: ConditionInfo, covariate: str, params: ParameterSet) -> float:
    """Potency at or above the cut over potency below it."""
    return params.get("effect_modifier_ratio", f"{condition.name}/{covariate}", "")


def reference_share(condition: ConditionInfo, covariate: str, params: ParameterSet) -> float:
    """Share of the condition's reference population at or above the cut (exact: the truncated
    normal its population rows describe)."""
    from infusim.population import truncated_normal_cdf  # population imports this module

    name = condition.name
    threshold = cut(condition, covariate, params)
    if covariate == "age_years":
        mean, sd = params.get("age_mean", name, "year"), params.get("age_sd", name, "year")
        low, high = params.get("age_min", name, "year"), params.get("age_max", name, "year")
    else:
        primary = condition.primary
        scope = f"{name}/{primary.name}"
        level = params.get("severity_level", REFERENCE_SEVERITY, "")
        mean = float(entry_value(condition, primary, level, params))
        sd = params.get("baseline_sd", scope, params.entry("baseline", scope).unit)
        low, high = entry_range(condition, params)
    return 1.0 - truncated_normal_cdf(threshold, float(mean), sd, low, high)


def factors(
    condition: ConditionInfo,
    params: ParameterSet,
    age_years: np.ndarray | float | None,
    baseline: np.ndarray | float | None,
) -> np.ndarray:
    """Each patient's potency multiplier (mean one over the reference population); a covariate that
    is not known (None) counts as the reference population's average (factor one)."""
    values = {"age_years": age_years, "baseline": baseline}
    shape = np.broadcast(*(np.asarray(v, dtype=float) for v in values.values() if v is not None)).shape
    out = np.ones(shape)
    for covariate in present(condition, params):
        value = values[covariate]
        if value is None:
            continue
        r, share = ratio(condition, covariate, params), reference_share(condition, covariate, params)
        above = np.asarray(value, dtype=float) >= cut(condition, covariate, params)
        out = out * np.where(above, r, 1.0) / (1.0 - share + share * r)
    return out


def scenario_factor(scenario: Scenario, condition: ConditionInfo, params: ParameterSet) -> float:
    """The potency multiplier of a scenario's one patient: its age when the scenario gives one, and
    the entry value its severity implies."""
    if not present(condition, params):
        return 1.0
    entry = entry_value(condition, condition.primary, scenario.condition.severity, params)
    return float(factors(condition, params, scenario.patient.age_years, entry))
