"""One scenario under many parameter sets: named outputs evaluated for every set at once.

An output is written ``quantity:where@time``:

* ``live_cells:<compartment>@24 h`` live cells in a compartment (``whole_body`` for all; several
  joined by ``+``, e.g. ``heart+target``: with a condition, the site's name is its healthy part and
  ``target`` the injured part, as in ``simulate``'s table), cells;
* ``live_fraction:<compartment>@24 h`` the same as a fraction of the cells given;
* ``live_cell_days:<compartment>@28 day`` the area under the live-cell curve from the first dose to
  that time (cell-days; ``exposure``'s area rule on its coarse grid, within 0.5% of the dense one);
* ``dead_cells:<cause>@7 day`` dead cells by cause (``nonviable``, ``death``, ``phagocytosis``,
  ``rejection``, or ``all``), cells;
* ``radiolabel:<compartment>@2 h`` what the scenario's label shows there (fraction of the injected
  activity, decay-corrected unless ``simulation.label`` says otherwise), and ``dna:<compartment>@24 h``
  the human-DNA signal (cell equivalents: live and recently dead cells);
* ``effect:<endpoint>@180 day`` treated minus untreated twin of a condition endpoint (endpoint unit).

Parameter sets are drawn per patient: ``evaluate`` assembles one model whose patients are the sets
(kinetic rows as arrays over rows, see ``parameters.sampled``) and solves them in one batch; the
condition's potencies, effect ratios and K enter the disease model per set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from infusim import conditions, exposure, uncertainty, units
from infusim.compartments import DEATH_CAUSES
from infusim.errors import ScenarioError
from infusim.model.declare import Model, patient_sum
from infusim.model.kinetics import SIZE_NODES, assemble
from infusim.observe import dna_rates, label_rates, observe_only
from infusim.outcomes import drawn_paths
from infusim.parameters import ParameterSet, for_scenario, sampled
from infusim.scenario import Scenario
from infusim.solve import solve_projected
from infusim.uncertainty import POSTERIOR_PARAMETERS

QUANTITIES = ("live_cells", "live_fraction", "live_cell_days", "dead_cells", "radiolabel", "dna", "effect")
#: Marker outputs and the state kind each reads.
MARKERS = {"radiolabel": "label", "dna": "dna"}
_SPEC = re.compile(r"^\s*(?P<quantity>\w+)\s*:\s*(?P<where>[\w+]+)\s*@\s*(?P<time>.+?)\s*$")


@dataclass(frozen=True)
class Output:
    """One named output: what, where, and when (h)."""

    text: str
    quantity: str
    where: str
    time_h: float
    unit: str

    def counts(self, compartment: str) -> bool:
        """Whether a state in ``compartment`` counts towards this output (``heart+target``: either)."""
        return self.where == "whole_body" or compartment in self.where.split("+")


def parse_output(text: str, scenario: Scenario, field: str = "--output") -> Output:
    """Parse ``quantity:where@time``; a bad one is a one-line error naming what is allowed."""
    match = _SPEC.match(text)
    if match is None:
        raise ScenarioError(field, f"{text!r} is not quantity:where@time (e.g. 'live_cells:lungs@24 h')")
    quantity, where = match.group("quantity"), match.group("where")
    if quantity not in QUANTITIES:
        raise ScenarioError(field, f"{text!r}: quantity must be one of {', '.join(QUANTITIES)}")
    try:
        time_h = float(units.registry().Quantity(match.group("time")).to("hour").magnitude)
    except Exception:
        raise ScenarioError(field, f"{text!r}: {match.group('time')!r} is not a time like '24 h'") from None
    if not 0 <= time_h <= scenario.simulation.duration_h:
        raise ScenarioError(
            field, f"{text!r}: time must be within the simulation (0-{scenario.simulation.duration_h:g} h)"
        )
    if quantity == "effect":
        condition = scenario.condition
        if condition is None or condition.name is None:
            raise ScenarioError(field, f"{text!r}: effects need a named condition in the scenario")
        if not scenario.clinical:
            raise ScenarioError(
                field, f"{text!r}: effects are of human patients (conditions come from human trials)"
            )
        endpoints = {e.name: e.unit for e in conditions.get(condition.name).endpoints}
        if where not in endpoints:
            raise ScenarioError(field, f"{text!r}: endpoint must be one of {', '.join(endpoints)}")
        return Output(text.strip(), quantity, where, time_h, endpoints[where])
    elif quantity == "dead_cells":
        if where not in (*DEATH_CAUSES, "all"):
            raise ScenarioError(field, f"{text!r}: cause must be one of {', '.join(DEATH_CAUSES)}, all")
    elif quantity == "radiolabel" and scenario.simulation.label is None:
        raise ScenarioError(field, f"{text!r}: needs simulation.label (an isotope) in the scenario")
    if quantity not in ("effect", "dead_cells"):
        compartments = sorted({s.compartment for s in assemble(scenario).states if s.kind == "live"})
        parts = where.split("+")
        if where != "whole_body" and not all(p in compartments for p in parts):
            raise ScenarioError(
                field,
                f"{text!r}: compartment must be one of {', '.join(compartments)}, whole_body "
                "(or several joined by +, e.g. heart+target)",
            )
    unit = {
        "live_fraction": "fraction of cells given",
        "live_cell_days": "cell-days",
        "radiolabel": "fraction of injected activity",
        "dna": "cell equivalents",
    }.get(quantity, "cells")
    return Output(text.strip(), quantity, where, time_h, unit)


def read_keys(scenario: Scenario, outputs: list[Output]) -> set[tuple[str, str]]:
    """Parameter rows the scenario's cell model reads (plus the condition's fitted effect rows when an
    effect is asked for): the rows an uncertainty or sensitivity analysis can vary."""
    params = for_scenario(scenario)
    assemble(scenario, params=params)
    if any(o.quantity == "dna" for o in outputs):
        dna_rates(scenario.species, params)
    if any(o.quantity == "radiolabel" for o in outputs):
        label_rates(scenario.simulation.label.isotope, scenario.species, params)
    keys = set(params.read_keys)
    if any(o.quantity == "effect" for o in outputs):
        name = scenario.condition.name
        keys |= {k for k in params.entries if k[0] in POSTERIOR_PARAMETERS and name in k[1].split("/")}
    return keys


def _state_weights(model: Model, output: Output) -> np.ndarray:
    weights = np.zeros(len(model.states))
    for i, state in enumerate(model.states):
        if output.quantity in ("live_cells", "live_fraction", "live_cell_days"):
            weights[i] = state.kind == "live" and output.counts(state.compartment)
        else:
            weights[i] = state.kind == "dead" and output.where in (state.name.split(":")[-1], "all")
    return weights


def _marker_outputs(
    scenario: Scenario, model: Model, outputs: list[Output], params: ParameterSet
) -> np.ndarray:
    """Radiolabel (fraction of the injected activity, decay-corrected or not as the scenario's label
    says) and human-DNA signal (cell equivalents) of each patient: (patients, outputs)."""
    label = scenario.simulation.label
    wanted = {o.quantity for o in outputs}
    times = np.unique([o.time_h for o in outputs])
    observed = observe_only(model, times, scenario.species, label, params, wanted)
    full = observed.trajectory.model
    states = observed.trajectory.patient_states()
    out = np.zeros((model.n_patients, len(outputs)))
    for j, o in enumerate(outputs):
        columns = [
            i
            for i, s in enumerate(full.states)
            if s.kind == MARKERS[o.quantity]
            and o.counts(s.compartment)
            and s.compartment not in ("excreted", "degraded", "body")
        ]
        at = np.searchsorted(times, o.time_h)
        value = states[:, at, columns].sum(axis=1)
        if o.quantity == "radiolabel":
            dose = next(d for d in full.doses if d.marker == "label")
            value = value / patient_sum(dose.amount, full.rows_per_patient)
            if not label.decay_corrected:
                value = value * np.exp(-np.log(2) * o.time_h / observed.half_life_h)
        out[:, j] = value
    return out


def evaluate(
    scenario: Scenario,
    outputs: list[Output],
    values: Mapping[tuple[str, str], np.ndarray],
    count: int,
    params: ParameterSet | None = None,
) -> np.ndarray:
    """Every output for ``count`` parameter sets: ``values`` maps rows to arrays (count,) in the
    row's unit (rows not given keep their table value). Returns (count, outputs)."""
    params = params or for_scenario(scenario)
    kinetic = {k: v for k, v in values.items() if k[0] not in POSTERIOR_PARAMETERS}
    rows_params = sampled(params, kinetic, repeat=len(SIZE_NODES))
    model = assemble(scenario, patients=count, params=rows_params)
    result = np.zeros((count, len(outputs)))
    markers = [i for i, o in enumerate(outputs) if o.quantity in MARKERS]
    if markers:
        result[:, markers] = _marker_outputs(scenario, model, [outputs[i] for i in markers], rows_params)
    cells = [i for i, o in enumerate(outputs) if o.quantity not in ("effect", *MARKERS)]
    if cells:
        ends = [outputs[i].time_h for i in cells]
        areas = any(outputs[i].quantity == "live_cell_days" for i in cells)
        times = np.unique(
            np.concatenate(
                [ends, exposure.grid(scenario, max(ends), exposure.COARSE_POINTS) if areas else []]
            )
        )
        weights = np.stack([_state_weights(model, outputs[i]) for i in cells])
        sums = patient_sum(solve_projected(model, times, weights), model.rows_per_patient)
        for j, i in enumerate(cells):
            at = outputs[i].time_h
            column = sums[:, np.searchsorted(times, at), j]
            if outputs[i].quantity == "live_cell_days":
                column = exposure.areas_to(times, sums[:, :, j], [at])[:, 0] / 24.0
            if outputs[i].quantity == "live_fraction":
                given = patient_sum(model.administered(at), model.rows_per_patient)
                column = np.divide(column, given, out=np.zeros_like(column), where=given > 0)
            result[:, i] = column
    effects = [i for i, o in enumerate(outputs) if o.quantity == "effect"]
    if effects:
        times_d = np.array([outputs[i].time_h / 24.0 for i in effects])
        drawn = {k: v for k, v in values.items() if k[0] in ("potency", "effect_ratio")}
        half = {k[1].split("/")[0]: v for k, v in values.items() if k[0] == "half_saturation"}
        paths = drawn_paths(
            scenario, model, params, times_d, scenario.simulation.duration_h / 24.0, drawn, half, count
        )
        for i in effects:
            at = np.searchsorted(paths.times_d, outputs[i].time_h / 24.0)
            name = outputs[i].where
            result[:, i] = paths.treated[name][:, at] - paths.untreated[name][:, at]
    return result


def bands(scenario: Scenario, count: int, seed: int, params: ParameterSet | None = None) -> dict:
    """Median and 95% band of every summary output over ``count`` parameter sets drawn from the priors
    (posterior rows jointly): live and dead fractions of the cells given per compartment and time, the
    live cell-days per compartment to the end of the simulation, the
    radiolabel signal per compartment (with ``simulation.label``) and each endpoint effect. Returns the
    summary's ``uncertainty`` section and its long table rows."""
    params = params or for_scenario(scenario)
    named = scenario.clinical
    times = np.asarray(scenario.simulation.outputs_h, dtype=float)
    probe = assemble(scenario, params=params)
    live = list(dict.fromkeys(s.compartment for s in probe.states if s.kind == "live"))
    cell_unit = "fraction of cells given"
    outputs = []
    for t in times:
        outputs += [Output(f"live_fraction:{c}", "live_fraction", c, t, cell_unit) for c in live]
        outputs += [Output(f"dead_fraction:{c}", "dead_cells", c, t, cell_unit) for c in DEATH_CAUSES]
    end = scenario.simulation.duration_h  # exposure to the end, as simulate's exposure table
    outputs += [Output(f"live_cell_days:{c}", "live_cell_days", c, end, "cell-days") for c in live]
    outputs += [Output("live_cell_days:whole_body", "live_cell_days", "whole_body", end, "cell-days")]
    if scenario.simulation.label is not None:
        unit = "fraction of injected activity"
        outputs += [
            Output(f"radiolabel:{c}", "radiolabel", c, t, unit) for t in times for c in [*live, "whole_body"]
        ]
    if named:
        for endpoint in conditions.get(scenario.condition.name).endpoints:
            outputs += [
                Output(f"effect:{endpoint.name}", "effect", endpoint.name, t, endpoint.unit) for t in times
            ]
    event_keys = _event_keys(scenario, params, probe)
    found = uncertainty.priors(params, read_keys(scenario, outputs) | event_keys)
    drawn = uncertainty.draw(found, count, seed)
    values = evaluate(scenario, outputs, drawn, count, params)
    given = {t: float(probe.administered(t).sum()) for t in times}  # the dose does not depend on the draws
    for j, o in enumerate(outputs):
        if o.quantity == "dead_cells":
            values[:, j] = values[:, j] / given[o.time_h] if given[o.time_h] > 0 else 0.0
    events, event_values = _event_probabilities(
        scenario, params, {k: drawn[k] for k in event_keys if k in drawn}, count
    )
    outputs += events
    values = np.concatenate([values, event_values], axis=1)
    low, median, high = np.percentile(values, [2.5, 50, 97.5], axis=0)
    varied = [p for p in found.values() if p.varies]
    return {
        "draws": count,
        "seed": seed,
        "parameters_varied": len(varied),
        "posterior_rows": sorted(p.name for p in varied if p.distribution == "posterior"),
        "rows": [
            {
                "time_h": float(o.time_h),
                "quantity": o.text.split(":")[0],
                "where": o.where,
                "median": float(median[j]),
                "low": float(low[j]),
                "high": float(high[j]),
                "unit": o.unit,
            }
            for j, o in enumerate(outputs)
        ],
    }


def _event_keys(scenario: Scenario, params: ParameterSet, model: Model) -> set[tuple[str, str]]:
    """The rows the scenario's adverse-event probabilities read (``safety.simulate_events``)."""
    from infusim import safety

    tracked = ParameterSet(dict(params.entries))
    safety.simulate_events(scenario, model, tracked)
    return set(tracked.read_keys)


def _event_probabilities(
    scenario: Scenario, params: ParameterSet, values: Mapping[tuple[str, str], np.ndarray], count: int
) -> tuple[list[Output], np.ndarray]:
    """Each adverse event's probability over the simulation, any grade and serious (grade 3-5), for
    each of ``count`` parameter sets: the scenario's patient evaluated once per set (the events read
    a lung or brain load of their own, about 10 ms a set). Returns the outputs and (count, outputs)."""
    from infusim import safety
    from infusim.parameters import with_values

    end = scenario.simulation.duration_h
    rows = []
    for i in range(count):
        drawn = with_values(params, {k: float(v[i]) for k, v in values.items()})
        _, found = safety.simulate_events(scenario, assemble(scenario, params=drawn), drawn)
        rows.append(found["events"])
    names = list(rows[0])
    outputs = [Output(f"event_probability:{n}", "event_probability", n, end, "probability") for n in names]
    outputs += [
        Output(f"serious_event_probability:{n}", "serious_event_probability", n, end, "probability")
        for n in names
        if rows[0][n]["serious_modelled"]
    ]
    table = np.array(
        [
            [
                r[o.where]["probability" if o.quantity == "event_probability" else "probability_serious"]
                for o in outputs
            ]
            for r in rows
        ]
    )
    return outputs, table
