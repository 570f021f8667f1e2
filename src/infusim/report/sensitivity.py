"""The HTML page of a sensitivity analysis: the top ten parameters of each output."""

from __future__ import annotations

import html

import plotly.graph_objects as go

from infusim.report import page_start

TOP = 10


def render(summary: dict, rankings: dict[str, list[dict]]) -> str:
    """A standalone page: per output, a bar chart of the top ten indices with their 95% CIs."""
    sobol = summary["method"] == "sobol"
    parts = []
    for i, (output, rows) in enumerate(rankings.items()):
        figure = _figure(output, rows[:TOP], sobol)
        parts.append(
            figure.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False})
        )
    what = (
        "Bars: total-order Sobol index (share of the output's variance a parameter is involved in, with "
        "its interactions); dots: first-order index (its share alone). Whiskers: bootstrap 95% CIs."
        if sobol
        else "Bars: Morris mu* (mean absolute elementary effect over the prior range, output units); "
        "whiskers: bootstrap 95% CI. sigma (in sensitivity.parquet) flags interactions or curvature."
    )
    outputs = "".join(
        f"<tr><td>{html.escape(o['output'])}</td><td>{o['at_table_values']:.4g}</td>"
        f"<td>{o['low']:.4g} to {o['high']:.4g}</td><td>{html.escape(o['unit'])}</td></tr>"
        for o in summary["outputs"]
    )
    return f"""{page_start(f"infusim sensitivity: {summary['scenario_name']}", summary["disclaimer"])}
<p>{html.escape(summary["method"].capitalize())} analysis (SALib {html.escape(summary["salib_version"])}),
N = {summary["n"]}, {summary["evaluations"]:,} model evaluations of {summary["parameters"]} parameter rows,
each over the central 95% of its prior (data/priors.csv), in {summary["seconds"]:.1f} s. Seed
{summary["seed"]}, infusim {html.escape(summary["infusim_version"])}.</p>
<table><tr><th>output</th><th>at table values</th><th>2.5-97.5% over the design</th><th>unit</th></tr>
{outputs}</table>
<p>{what}</p>
{"".join(parts)}
</body></html>"""


def _figure(output: str, rows: list[dict], sobol: bool) -> go.Figure:
    names = [r["parameter"] for r in rows][::-1]
    key = "total" if sobol else "mu_star"
    values = [r[key] for r in rows][::-1]
    conf = [r[f"{key}_conf"] for r in rows][::-1]
    figure = go.Figure(
        go.Bar(x=values, y=names, orientation="h", error_x={"type": "data", "array": conf}, name=key)
    )
    if sobol:
        figure.add_trace(
            go.Scatter(
                x=[r["first_order"] for r in rows][::-1],
                y=names,
                mode="markers",
                marker={"color": "black", "size": 8},
                error_x={"type": "data", "array": [r["first_order_conf"] for r in rows][::-1]},
                name="first order",
            )
        )
    figure.update_layout(
        title=output,
        xaxis_title="Sobol index" if sobol else "mu*",
        height=120 + 32 * len(rows),
        margin={"l": 320},
        template="simple_white",
    )
    return figure
