"""The HTML report of one simulation: where the cells are, how they die, what instruments read."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import yaml

from infusim import engraftment, safety
from infusim.model.disease import EndpointTrajectories
from infusim.observe import cells_table, observation_table, observe
from infusim.parameters import for_scenario
from infusim.scenario_spec import to_spec
from infusim.simulation import DISCLAIMER, Result, dense_times, disease_outcomes, doses_text, effect_texts

#: Compartments drawn individually; the others are summed as "other organs".
MAX_LINES = 8


def render(result: Result) -> str:
    """A standalone HTML page for ``result`` (the plotly library is embedded once)."""
    scenario = result.scenario
    times = dense_times(scenario)
    label = scenario.simulation.label
    dense = observe(
        result.model,
        times,
        scenario.species,
        label=label,
    )
    cells = cells_table(dense)
    observations = observation_table(dense)
    # cells given up to each time (the table's and summary.json's denominator, so a later dose does
    # not make the earlier curves look smaller)
    times_h = np.unique(cells.time_h)
    given = pd.Series([result.model.administered(t).sum() for t in times_h], index=times_h)
    given_total = result.model.administered(np.inf).sum()
    site = scenario.condition.site if scenario.condition else None
    figures = [_live_figure(cells, given, site), _fate_figure(cells, given)]
    if label is not None:
        figures.append(
            _marker_figure(observations, "radiolabel", f"Radiolabel ({label.isotope}) by organ", 1.0)
        )
    figures.append(
        _marker_figure(observations, "dna", "Human-DNA signal (live + recently dead cells)", given_total)
    )
    params = for_scenario(scenario)
    outcomes = disease_outcomes(scenario, result.model, params)
    if outcomes is not None:
        from infusim.outcomes import effect_draws

        draws = effect_draws(
            scenario,
            result.model,
            params,
            np.asarray(scenario.simulation.outputs_h) / 24.0,
            scenario.simulation.duration_h / 24.0,
            200,
        )
        figures.extend(_endpoint_figure(outcomes, name, draws) for name in outcomes.treated)
    parts = []
    for i, figure in enumerate(figures):
        parts.append(
            figure.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False})
        )
    summary = result.summary
    sources = "".join(
        f"<li><code>{html.escape(k)}</code>: {html.escape(v)}</li>" for k, v in summary["sources"].items()
    )
    facts = {
        "dose": doses_text(summary),
        "mass balance max relative error": f"{summary['mass_balance_max_rel_error']:.1e}",
        "scenario hash": summary["scenario_hash"][:16],
        "seed": summary.get("seed", ""),
        "infusim version": summary["infusim_version"],
    }
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items()
    )
    # the scenario as scenario.yaml writes it: every quantity with its unit
    scenario_text = html.escape(yaml.safe_dump(to_spec(scenario), sort_keys=False, allow_unicode=True))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>infusim: {html.escape(scenario.name)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}
.warn{{background:#fff4d6;border-left:4px solid #e0a800;padding:.6em 1em}}
table{{border-collapse:collapse}}th,td{{padding:.2em .8em;text-align:left;border-bottom:1px solid #ddd}}
pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style></head><body>
<h1>infusim: {html.escape(scenario.name)}</h1>
<p class="warn">{html.escape(DISCLAIMER)}</p>
<table>{rows}</table>
{_effects_section(summary)}
{_uncertainty_section(summary.get("uncertainty"))}
{"".join(parts)}
{_exposure_section(summary.get("exposure") or [])}
{_safety_section(summary.get("adverse_events"), summary.get("regulatory"), summary.get("uncertainty"))}
<h2>Sources of the parameters this run used</h2><ul>{sources}</ul>
{_parameters_section(summary.get("parameters_used") or [])}
<h2>Scenario (as scenario.yaml, with units)</h2><pre>{scenario_text}</pre>
</body></html>
"""


def _exposure_section(rows: list[dict]) -> str:
    """Peak, time of peak, live cell-days and half-life at the end per compartment (``exposure``)."""
    if not rows:
        return ""

    def hours(value) -> str:
        return "-" if value is None else f"{value:.3g} h" if value < 72 else f"{value / 24:.3g} d"

    body = "".join(
        f"<tr><td>{html.escape(r['compartment'])}</td><td>{r['peak_cells']:.3g}</td>"
        f"<td>{hours(r['peak_time_h'])}</td><td>{r['live_cell_days']:.3g}</td>"
        f"<td>{'-' if r['live_cell_days_per_g'] is None else format(r['live_cell_days_per_g'], '.3g')}</td>"
        f"<td>{r['days_per_cell_given']:.3g}</td><td>{hours(r['half_life_at_end_h'])}</td></tr>"
        for r in rows
    )
    return (
        "<h2>Exposure to live cells</h2><p>Per compartment, to the end of the simulation: the peak of "
        "live cells and its time (on a dense grid), the area under the curve in live cell-days (and per "
        "gram of the compartment: organ volume at the density of water, the lesion for target), that "
        "area over all cells given (how long an average cell given lives there), and the half-life at "
        "the end (ln 2 over the rate the compartment is losing cells then; '-' where it is not).</p>"
        "<table><tr><th>compartment</th><th>peak cells</th><th>at</th><th>live cell-days</th>"
        f"<th>per gram</th><th>days per cell given</th><th>half-life at end</th></tr>{body}</table>"
    )


def _time_axis(figure: go.Figure, title: str, y_title: str) -> go.Figure:
    figure.update_layout(title=title, height=420, margin={"l": 60, "r": 20, "t": 50, "b": 50})
    figure.update_xaxes(title="time after first dose (h)", type="log")
    figure.update_yaxes(title=y_title)
    return figure


def _live_figure(cells, given: pd.Series, site: str | None = None) -> go.Figure:
    """Every compartment; the largest ones, the condition's organ and ``target`` shown, the others a
    click away in the legend."""
    live = cells[(cells.patient == 0) & (cells.state == "live") & (cells.time_h > 0)]
    table = live.pivot(index="time_h", columns="compartment", values="cells")
    table = table.div(given.reindex(table.index).to_numpy(), axis=0) * 100
    order = list(table.max().sort_values(ascending=False).index)
    shown = set(order[:MAX_LINES]) | ({site, "target"} if site else set())
    figure = go.Figure()
    for compartment in order:
        figure.add_trace(
            go.Scatter(
                x=table.index,
                y=table[compartment],
                name=compartment,
                mode="lines",
                visible=True if compartment in shown else "legendonly",
            )
        )
    figure.update_yaxes(type="log", range=[-4, 2.1])
    return _time_axis(
        figure, "Live cells by compartment (click a name to show or hide it)", "% of cells given so far"
    )


def _fate_figure(cells, given: pd.Series) -> go.Figure:
    rows = cells[(cells.patient == 0) & (cells.time_h > 0)]
    table = rows.groupby(["time_h", "state"]).cells.sum().unstack()
    table = table.div(given.reindex(table.index).to_numpy(), axis=0) * 100
    figure = go.Figure()
    for state in table.columns:
        figure.add_trace(
            go.Scatter(x=table.index, y=table[state], name=state, mode="lines", stackgroup="fate")
        )
    return _time_axis(figure, "Fate of the cells given (live, or dead by cause)", "% of cells given so far")


def _marker_figure(observations, quantity: str, title: str, scale: float) -> go.Figure:
    rows = observations[(observations.patient == 0) & (observations.quantity == quantity)]
    rows = rows[rows.time_h > 0]
    table = rows.pivot(index="time_h", columns="compartment", values="value") / scale * 100
    body = table.pop("whole_body")
    order = table.max().sort_values(ascending=False).index[:MAX_LINES]
    figure = go.Figure()
    for compartment in order:
        figure.add_trace(go.Scatter(x=table.index, y=table[compartment], name=compartment, mode="lines"))
    figure.add_trace(go.Scatter(x=body.index, y=body, name="whole body", mode="lines", line={"dash": "dot"}))
    unit = rows.unit.iloc[0] if len(rows) else ""
    return _time_axis(figure, title, f"% ({unit})" if quantity == "radiolabel" else "% of cells given")


def _endpoint_figure(
    outcomes: EndpointTrajectories, name: str, draws: EndpointTrajectories | None = None
) -> go.Figure:
    """Treated and untreated twin over time; with posterior draws, the 95% band of the treated value."""
    days = outcomes.times_d
    figure = go.Figure()
    if draws is not None and name in draws.treated:
        low, high = np.percentile(draws.treated[name], [2.5, 97.5], axis=0)
        figure.add_trace(
            go.Scatter(x=draws.times_d, y=high, line={"width": 0}, showlegend=False, hoverinfo="skip")
        )
        figure.add_trace(
            go.Scatter(
                x=draws.times_d,
                y=low,
                fill="tonexty",
                line={"width": 0},
                fillcolor="rgba(31,119,180,0.2)",
                name="treated, 95% interval (posterior)",
            )
        )
    figure.add_trace(
        go.Scatter(x=days, y=outcomes.untreated[name][0], name="untreated twin", line={"dash": "dash"})
    )
    figure.add_trace(go.Scatter(x=days, y=outcomes.treated[name][0], name="treated"))
    figure.update_layout(
        title=f"{outcomes.condition.label}: {name} "
        "(treated vs untreated twin; placebo responses not included)",
        height=360,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
    )
    figure.update_xaxes(title="days after first dose")
    figure.update_yaxes(title=outcomes.units[name])
    return figure


def _parameters_section(rows: list[dict]) -> str:
    """Every parameter row the run read, with value, unit, source and provenance."""
    if not rows:
        return ""

    def value(v) -> str:
        return f"{v:.4g}" if isinstance(v, float) else ", ".join(f"{x:.3g}" for x in v)

    body = "".join(
        f"<tr><td><code>{html.escape(r['parameter'])}</code></td><td>{value(r['value'])}</td>"
        f"<td>{html.escape(r['unit'])}</td><td>{html.escape(r['source'])}</td>"
        f"<td>{html.escape(r['provenance'])}</td></tr>"
        for r in rows
    )
    return (
        f"<h2>Every parameter this run used ({len(rows)} rows)</h2><p>Provenance: <em>read</em> from the "
        "source, <em>derived</em> from it, <em>calibrated</em> to data, <em>assumption</em> (with a stated "
        "uncertainty in data/priors.csv), or <em>memory</em> (recalled, not yet checked).</p>"
        "<table><tr><th>parameter</th><th>value</th><th>unit</th><th>source</th><th>provenance</th></tr>"
        f"{body}</table>"
    )


def _effects_section(summary: dict) -> str:
    """The effect table of the terminal: each endpoint and time, the average effect's 95% interval
    and a new trial's (with the between-trial SD), or 'not estimated' without controlled evidence."""
    endpoints = summary.get("endpoints") or {}
    if not endpoints:
        return ""

    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(time_key)}</td><td>{e['untreated']:.3g}</td>"
        f"<td>{e['treated']:.3g}</td>{''.join(f'<td>{text}</td>' for text in effect_texts(e))}"
        f"<td>{html.escape(e['unit'])}</td></tr>"
        for time_key, visit in endpoints.items()
        for name, e in visit.items()
    )
    return (
        f"<h2>Effect against the untreated twin ({html.escape(summary['condition'])})</h2>"
        "<table><tr><th>endpoint</th><th>time</th><th>untreated</th><th>treated</th><th>effect at posterior "
        "median</th><th>95% interval (average effect)</th><th>new trial, 95%</th><th>unit</th></tr>"
        f"{rows}</table><p>{html.escape(summary['endpoint_note'])}</p>"
    )


def _uncertainty_section(found: dict | None) -> str:
    """Median and 95% band of each output over the parameter draws (``simulate --uncertainty``)."""
    if not found:
        return ""
    times = sorted({r["time_h"] for r in found["rows"]})
    by = {(r["quantity"], r["where"], r["time_h"]): r for r in found["rows"]}
    keys = list(dict.fromkeys((r["quantity"], r["where"], r["unit"]) for r in found["rows"]))
    head = "".join(f"<th>{t:g} h</th>" for t in times)
    body = []
    for quantity, where, unit in keys:
        scale = 100.0 if unit.startswith("fraction of") else 1.0
        cells = []
        for t in times:
            r = by.get((quantity, where, t))
            cells.append(
                "<td></td>"  # live cell-days are to the end only
                if r is None
                else f"<td>{r['median'] * scale:.3g} ({r['low'] * scale:.3g} to {r['high'] * scale:.3g})</td>"
            )
        shown = unit.replace("fraction of", "% of") if scale == 100.0 else unit
        label = html.escape(f"{quantity}: {where} ({shown})")
        body.append(f"<tr><td>{label}</td>{''.join(cells)}</tr>")
    return (
        f"<h2>Parameter uncertainty</h2><p>Median (95% band) over {found['draws']} parameter sets drawn from "
        f"the priors of the {found['parameters_varied']} rows this run reads (data/priors.csv; fitted "
        "effect and capture parameters from their posteriors).</p>"
        f"<table><tr><th>output</th>{head}</tr>{''.join(body)}</table>"
    )


def _safety_section(found: dict | None, rules: dict | None, uncertainty: dict | None = None) -> str:
    """Adverse-event probabilities for this patient (with ``--uncertainty``, the serious probability's
    95% band over the parameter draws) and the regulatory status of the use."""
    out = ""
    if found:
        bands = safety.event_bands(uncertainty)
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(safety.probability_text(row['probability']))}"
            f"</td><td>{html.escape(safety.serious_text(row))}</td>"
            + (
                f"<td>{html.escape(bands.get(('serious_event_probability', name), '-'))}</td>"
                if bands
                else ""
            )
            + f"<td>{html.escape(row['basis'])}</td></tr>"
            for name, row in found["events"].items()
        )
        load = found.get("lung_load") or {}
        share = (
            f"<p>Peak lung load: {load['share_of_lethal']:.2%} of the lethal one (Kwon 2024a).</p>"
            if load
            else ""
        )
        brain = found.get("brain_load")
        if brain:
            share += (
                f"<p>Peak brain load: {brain['share_of_stroke_load']:.2%} of the load that gave half the "
                "rats a stroke (Janowski 2013).</p>"
            )
        if found.get("neutrophil_recovery"):
            share += f"<p>{html.escape(engraftment.sentence(found['neutrophil_recovery']))}</p>"
        out += (
            "<h2>Adverse events (probability over the simulation, this patient)</h2>"
            "<table><tr><th>event</th><th>any grade</th><th>serious (grade 3-5)</th>"
            + ("<th>serious, 95% band over the parameter draws</th>" if bands else "")
            + f"<th>basis</th></tr>{rows}</table>{share}<p>Models and sources: docs/safety.md.</p>"
        )
    if rules:
        rows = "".join(
            f"<tr><td>{html.escape(code)}</td><td>{html.escape(v['status'])}</td><td>{html.escape(v['reason'])}</td></tr>"
            for code, v in rules["by_jurisdiction"].items()
        )
        out += (
            f"<h2>Regulatory status of this use (checked {html.escape(rules['checked'])})</h2>"
            f"<table><tr><th>where</th><th>status</th><th>why</th></tr>{rows}</table>"
            f"<p>{html.escape(rules['note'])} <code>infusim regulatory</code>: frameworks and sources.</p>"
        )
    return out
