"""A dose carried from one species to another by matched exposure, beside per-kg and body-surface scaling.

Every transfer of the cell kinetics is first order, so every cell output is proportional to the dose
(at a fixed schedule, route and product). The dose per administration that gives the second
scenario (``to``, usually the human patient) the exposure the first one had (``source``, usually
the animal study) is therefore

    dose_to = template dose_to x exposure_source / exposure_to(template dose)

where an exposure is live cells in the output's compartments at a time, or their integral from the
first dose to that time (``auc``), optionally per gram of those compartments (``per_gram``: the
injured part, ``target``, is the lesion's mass). The classic rules are printed beside it: the same
cells per kg, and body-surface scaling (FDA 2005: dose per kg x Km_source / Km_to). With
``draws`` the rows each scenario reads are drawn from their priors; a row both read gets the same
quantile in both (one random stream per row), so what the species share cancels.

Matching exposure assumes that a cell per gram of tissue does the same in both species. What the
evidence says about that is in docs/research/species-bridge.md: for acute MI, large-animal effects
were two to three times the human ones at doses per kg that were not matched.

Research use only: these are model predictions, not advice for any patient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infusim import ensemble, uncertainty
from infusim.ensemble import Output
from infusim.errors import ScenarioError
from infusim.exposure import compartment_mass_g
from infusim.model.kinetics import assemble
from infusim.parameters import ParameterSet, for_scenario
from infusim.scenario import Scenario

#: Measures of exposure: the value at the output's time, or its integral from the first dose.
MEASURES = ("at", "auc")


@dataclass(frozen=True)
class Bridge:
    """The matched dose and the two classic rules, for one output (``draws`` arrays: one per
    parameter draw, empty without uncertainty)."""

    output: str
    measure: str
    per_gram: bool
    unit: str
    source_dose_cells: float
    source_weight_kg: float
    to_weight_kg: float
    exposure_source: float
    exposure_to_per_cell: float
    matched_dose_cells: float
    per_kg_dose_cells: float
    body_surface_dose_cells: float
    draws_matched_cells: np.ndarray
    draws_exposure_source: np.ndarray
    drivers: tuple[tuple[str, float], ...] = ()  # rows most rank-correlated with the matched dose
    sources: tuple[str, ...] = ()  # citation keys of every row either scenario's model read


def check_output(text: str, source: Scenario, to: Scenario) -> tuple[Output, Output]:
    """The output parsed in both scenarios: live cells only, and a compartment both have."""
    first = ensemble.parse_output(text, source)
    if first.quantity != "live_cells":
        raise ScenarioError("--output", f"{text!r}: bridge matches live cells (live_cells:where@time)")
    return first, ensemble.parse_output(text, to)


def exposure(
    scenario: Scenario, output: Output, measure: str, values: dict, count: int, params: ParameterSet
) -> np.ndarray:
    """Live cells in the output's compartments at its time (cells), or their integral from the
    first dose (cell-days, ``live_cell_days``), for ``count`` parameter sets (``values``: drawn rows)."""
    if measure == "auc":
        output = Output(output.text, "live_cell_days", output.where, output.time_h, "cell-days")
    return ensemble.evaluate(scenario, [output], values, count, params=params)[:, 0]


def body_surface_factor(species: str, params: ParameterSet) -> float:
    """FDA 2005's Km (body weight / body surface area, kg/m2) of ``species``."""
    return params.get("body_surface_factor", species, "kg/m**2")


def bridge(
    source: Scenario,
    to: Scenario,
    text: str,
    measure: str = "at",
    per_gram: bool = False,
    draws: int = 0,
    seed: int = 1,
) -> Bridge:
    """The dose per administration of ``to`` that matches ``source``'s exposure (see the module)."""
    if measure not in MEASURES:
        raise ScenarioError("--measure", f"{measure!r}; allowed: {', '.join(MEASURES)}")
    if draws < 0:
        raise ScenarioError("--uncertainty", f"{draws}; give 0 (none) or a number of parameter draws")
    out_source, out_to = check_output(text, source, to)
    params_source, params_to = for_scenario(source), for_scenario(to)
    dose_source = float(np.asarray(source.dose_cells_for(np.array([source.patient.body_weight_kg])))[0])
    dose_to = float(np.asarray(to.dose_cells_for(np.array([to.patient.body_weight_kg])))[0])
    mass = (
        (
            compartment_mass_g(source, out_source.where, params_source),
            compartment_mass_g(to, out_to.where, params_to),
        )
        if per_gram
        else (1.0, 1.0)
    )
    nominal_source = exposure(source, out_source, measure, {}, 1, params_source)[0] / mass[0]
    nominal_to = exposure(to, out_to, measure, {}, 1, params_to)[0] / mass[1]
    if not nominal_to > 0:
        raise ScenarioError("--output", f"{text!r}: no live cells there in {to.name}, so no dose can match")
    matched_draws = source_draws = np.zeros(0)
    drivers: tuple[tuple[str, float], ...] = ()
    if draws:
        values_source = _drawn(source, out_source, draws, seed)
        values_to = _drawn(to, out_to, draws, seed)
        source_draws = exposure(source, out_source, measure, values_source, draws, params_source) / mass[0]
        to_draws = exposure(to, out_to, measure, values_to, draws, params_to) / mass[1]
        matched_draws = dose_to * source_draws / np.where(to_draws > 0, to_draws, np.nan)
        drivers = rank_drivers({**values_source, **values_to}, matched_draws)
    per_kg = dose_source / source.patient.body_weight_kg
    ratio = body_surface_factor(source.species, params_source) / body_surface_factor(to.species, params_to)
    unit = ("cell-days" if measure == "auc" else "cells") + (" per gram" if per_gram else "")
    sources = sorted(
        set(assemble(source, params=params_source).sources) | set(assemble(to, params=params_to).sources)
    )
    return Bridge(
        text,
        measure,
        per_gram,
        unit,
        dose_source,
        source.patient.body_weight_kg,
        to.patient.body_weight_kg,
        float(nominal_source),
        float(nominal_to / dose_to),
        float(dose_to * nominal_source / nominal_to),
        per_kg * to.patient.body_weight_kg,
        per_kg * ratio * to.patient.body_weight_kg,
        matched_draws,
        source_draws,
        drivers,
        tuple(sources),
    )


def rank_drivers(values: dict, matched: np.ndarray, top: int = 5) -> tuple[tuple[str, float], ...]:
    """The rows whose draws are most rank-correlated (Spearman) with the matched dose, strongest first."""
    import scipy.stats

    finite = np.isfinite(matched)
    if not np.any(finite) or np.ptp(matched[finite]) <= 1e-9 * np.max(np.abs(matched[finite])):
        return ()  # the dose did not vary (the same rows cancel): nothing to rank
    found = []
    for (name, scope), drawn in values.items():
        x = np.asarray(drawn, dtype=float)[finite]
        if x.size > 2 and np.ptp(x) > 0:
            rho = scipy.stats.spearmanr(x, matched[finite]).statistic
            found.append((f"{name}[{scope}]" if scope else name, float(rho)))
    found.sort(key=lambda item: -abs(item[1]))
    return tuple(found[:top])


def _drawn(scenario: Scenario, output: Output, count: int, seed: int) -> dict:
    params = for_scenario(scenario)
    found = uncertainty.priors(params, ensemble.read_keys(scenario, [output]))
    return uncertainty.draw({k: p for k, p in found.items() if p.varies}, count, seed)


def _days(scenario: Scenario) -> str:
    return ", ".join(f"{start / 24:g}" for start in scenario.administration.starts_h)


def _multiples(scenario: Scenario) -> str:
    return ", ".join(f"{scale:g}" for scale in scenario.administration.dose_scales)


def differences(source: Scenario, to: Scenario) -> list[str]:
    """What the two scenarios differ in besides species, body and dose (product, route, schedule,
    condition): the matched dose then also carries those differences."""
    pairs = {
        "cell type": (source.product.cell_type, to.product.cell_type),
        "tissue source": (source.product.tissue_source, to.product.tissue_source),
        "donor": (source.product.donor, to.product.donor),
        "route": (source.administration.route, to.administration.route),
        "into": (
            source.site if source.administration.route != "intravenous" else None,
            to.site if to.administration.route != "intravenous" else None,
        ),
        "administrations": (source.administration.count, to.administration.count),
        "administration days": (_days(source), _days(to)),
        # the matched dose is administration.dose; a schedule's own doses are multiples of it
        "doses as multiples of administration.dose": (_multiples(source), _multiples(to)),
        "condition site": (getattr(source.condition, "site", None), getattr(to.condition, "site", None)),
        "severity": (getattr(source.condition, "severity", None), getattr(to.condition, "severity", None)),
        "time since injury (h)": (
            getattr(source.condition, "onset_h", None),
            getattr(to.condition, "onset_h", None),
        ),
    }
    return [f"{name}: {a} vs {b}" for name, (a, b) in pairs.items() if a != b]
