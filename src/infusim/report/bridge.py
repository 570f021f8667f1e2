"""The HTML page of a dose carried between species: the matched doses' spread and the classic rules."""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go

from infusim.report import page_start


def render(summary: dict, draws: dict[str, np.ndarray]) -> str:
    figure = _figure(summary, draws)
    rows = "".join(
        f"<tr><td>{html.escape(d['rule'])}</td><td>{d['dose_cells']:.3g}</td><td>{d['dose_cells_per_kg']:.3g}</td>"
        f"<td>{_interval(d['interval_cells_per_kg'])}</td><td>{d['ratio_to_per_kg']:.3g}</td>"
        f"<td>{_drivers(d)}</td></tr>"
        for d in summary["doses"]
    )
    how = "the integral to the output's time" if summary["measure"] == "auc" else "at the output's time"
    how += ", per gram" if summary["per_gram"] else ", in total"
    source = f"{html.escape(summary['source_scenario'])} ({html.escape(summary['source_species'])}"
    what = (
        f"The dose per administration of <em>{html.escape(summary['to_scenario'])}</em> "
        f"({html.escape(summary['to_species'])}, {summary['to_weight_kg']:g} kg) that gives it the exposure "
        f"<em>{source}</em>, {summary['source_dose_cells']:.3g} cells, "
        f"{summary['source_dose_cells_per_kg']:.3g} per kg) had: live cells {how}. Intervals are over "
        f"{summary['draws']} draws of every row either scenario reads (a row both read gets the same draw); "
        "the last column names the rows each rests on most (Spearman correlation with the matched dose). "
        "Matching assumes a cell does the same in both species."
    )
    if summary["differences"]:
        what += " The scenarios also differ in " + html.escape("; ".join(summary["differences"])) + "."
    body = figure.to_html(full_html=False, include_plotlyjs=True, config={"displaylogo": False})
    title = f"infusim bridge: {summary['source_scenario']} to {summary['to_scenario']}"
    head = "".join(
        f"<th>{c}</th>"
        for c in ("rule", "cells", "cells/kg", "95% interval, cells/kg", "x the per-kg dose", "rests on")
    )
    return f"""{page_start(title, summary["disclaimer"])}
<p>{what}</p>
{body}
<table><tr>{head}</tr>{rows}</table>
</body></html>"""


def _interval(pair) -> str:
    return "" if pair is None else f"{pair[0]:.3g} to {pair[1]:.3g}"


def _drivers(row: dict) -> str:
    return ", ".join(
        f"{html.escape(d['parameter'])} {d['spearman']:+.2f}" for d in row.get("drivers", [])[:3]
    )


def _figure(summary: dict, draws: dict[str, np.ndarray]) -> go.Figure:
    weight = summary["to_weight_kg"]
    figure = go.Figure()
    for output, values in (draws or {}).items():
        finite = np.asarray(values)[np.isfinite(values)]
        if finite.size:
            figure.add_trace(go.Histogram(x=np.log10(finite / weight), name=output, nbinsx=40, opacity=0.6))
    for d in summary["doses"]:
        if "output" not in d:
            figure.add_vline(
                x=float(np.log10(d["dose_cells_per_kg"])), line_dash="dash", annotation_text=d["rule"]
            )
    figure.update_layout(
        barmode="overlay",
        xaxis_title=f"log10 dose of {summary['to_scenario']} (cells/kg per administration)",
        yaxis_title="parameter draws",
    )
    return figure
