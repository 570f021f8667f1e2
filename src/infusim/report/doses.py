"""The HTML page of a therapeutic window: effect and serious-harm probability against dose."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from infusim import safety
from infusim.report import page_start


def render(summary: dict, rows: pd.DataFrame) -> str:
    """A standalone page: per route, the effect (mean, 95% interval) and the probability of each
    serious adverse event against the dose, with the table below."""
    parts = []
    for i, (route, group) in enumerate(rows.groupby("route", sort=False)):
        figure = _figure(summary, route, group)
        parts.append(
            figure.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False})
        )
    # columns with a value somewhere (a brain load without an intra-arterial brain dose is empty)
    columns = [c for c in rows.columns if c != "dose_cells" and rows[c].notna().any()]
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(c, row[c])}</td>" for c in columns) + "</tr>"
        for row in rows.to_dict("records")
    )
    endpoint = summary["endpoint"]
    what = (
        f"Effect: change in {html.escape(endpoint)} ({html.escape(summary['unit'])}) against the untreated "
        f"twin at day {summary['time_d']:g}, posterior mean and 95% interval of the controlled evidence."
        if endpoint
        else "The scenario names no condition, so only harms are shown."
    )
    scales = summary.get("dose_scales", [1.0])
    if len(set(scales)) > 1:
        what += (
            " The dose is <code>administration.dose</code>; the schedule's administrations get it times "
            f"{', '.join(f'{s:g}' for s in scales)}."
        )
    return f"""{page_start(f"infusim therapeutic window: {summary['scenario_name']}", summary["disclaimer"])}
<p>{what} Harm: probability of each serious (CTCAE grade 3-5) adverse event over the simulation for
the scenario's patient (docs/safety.md); <em>background_serious</em> is the condition's own serious
events over the same time (deaths, infections without cells), the same at every dose and not part
of the harms. Doses outside the range the condition's trials used are
marked <em>outside_evidence</em>: there the effect is an extrapolation.</p>
{"".join(parts)}
<div style="overflow-x:auto"><table><tr>{head}</tr>{body}</table></div>
</body></html>"""


def _figure(summary: dict, route: str, group: pd.DataFrame) -> go.Figure:
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    x = group["dose_cells_per_kg"]
    if summary["endpoint"]:
        figure.add_trace(
            go.Scatter(
                x=x,
                y=group["effect_mean"],
                error_y={
                    "type": "data",
                    "array": group["effect_high"] - group["effect_mean"],
                    "arrayminus": group["effect_mean"] - group["effect_low"],
                },
                mode="lines+markers",
                name=f"effect on {summary['endpoint']}",
            ),
            secondary_y=False,
        )
    for column in [c for c in group.columns if c.startswith("serious_")]:
        if group[column].max() > 0:
            figure.add_trace(
                go.Scatter(
                    x=x,
                    y=group[column],
                    mode="lines+markers",
                    name=column.replace("_", " "),
                    line={"dash": "dot"},
                ),
                secondary_y=True,
            )
    figure.update_xaxes(type="log", title="dose (cells/kg)")
    figure.update_yaxes(title=f"effect ({summary['unit']})" if summary["endpoint"] else "", secondary_y=False)
    figure.update_yaxes(title="probability of a serious event", type="log", secondary_y=True)
    figure.update_layout(title=f"route: {route}", height=460)
    return figure


def _cell(column: str, value) -> str:
    """A table cell: probabilities as ``safety.probability_text``, yes/no, '-' for no value."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        if value != value:
            return "-"
        if column.startswith("serious_") or column == "background_serious":
            return html.escape(safety.probability_text(float(value)))
        return f"{value:.3g}"
    return html.escape(str(value))
