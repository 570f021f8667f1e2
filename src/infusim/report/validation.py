"""The validation report: per case, observed points with error bars over the predicted curves."""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go

from infusim.simulation import DISCLAIMER
from infusim.validation import CaseResult

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def render(results: list[CaseResult], summary: dict | None = None) -> str:
    """A standalone HTML page (plotly embedded once) with a summary table and one plot per case,
    then the clinical evidence against its fit and the leave-one-study-out scores when present."""
    rows = []
    for r in results:
        if r.error:
            rows.append(
                f"<tr class='bad'><td>{html.escape(r.name)}</td>"
                f"<td colspan='8'>could not run: {html.escape(r.error)}</td></tr>"
            )
            continue
        verdict = "pass" if r.passed else "miss"
        rows.append(
            f"<tr class='{verdict}'><td><a href='#{html.escape(r.name)}'>{html.escape(r.name)}</a></td>"
            f"<td>{r.species}</td><td>{'fitted' if r.calibration else 'prediction'}</td><td>{r.n}</td>"
            f"<td>{r.aafe:.2f}</td><td>{r.within_2fold:.0%}</td><td>{r.max_fold_error:.2f}</td>"
            f"<td>{_inside_text(r)}</td><td>{verdict}</td></tr>"
        )
    sections, first = [], True
    overview = suite_figure(results)
    if overview is not None:
        sections.append(
            overview.to_html(full_html=False, include_plotlyjs=True, config={"displaylogo": False})
        )
        first = False
    for r in results:
        if r.error:
            continue
        figure = _figure(r)
        plot = figure.to_html(full_html=False, include_plotlyjs=first, config={"displaylogo": False})
        first = False
        sections.append(
            f"<h3 id='{html.escape(r.name)}'>{html.escape(r.name)}</h3>"
            f"<p>{html.escape(r.description)}<br><small>{html.escape(r.citation)}</small></p>{plot}"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>infusim validation</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse}}th,td{{padding:.2em .7em;border-bottom:1px solid #ddd;text-align:left}}
tr.miss td{{background:#fff0f0}} tr.bad td{{background:#ffe0e0}}
.warn{{background:#fff4d6;padding:.6em 1em}}</style>
</head><body><h1>infusim validation</h1>
<p class="warn">{html.escape(DISCLAIMER)}</p>
<p>AAFE: absolute average fold error, 10^mean|log10(predicted/observed)|. Cases marked <em>fitted</em> were
used to calibrate parameters; <em>prediction</em> cases were not. A bound (&lt;x, &gt;x) that the
prediction respects counts as fold error 1. Verdict: pass when AAFE is at most the case's tolerance (2-fold
unless the case says otherwise). In 95% PI: observations inside the 95% prediction interval over parameter
draws from the priors (data/priors.csv; parameter uncertainty only). {_coverage_text(summary or {})}</p>
<table><tr><th>case</th><th>species</th><th>use</th><th>n</th><th>AAFE</th><th>within 2x</th>
<th>max fold</th><th>in 95% PI</th><th>verdict</th></tr>
{"".join(rows)}</table>
{"".join(sections)}
{_evidence_section(summary or {}, include_plotlyjs=first)}
</body></html>
"""


def _figure(result: CaseResult) -> go.Figure:
    figure = go.Figure()
    comparisons, curves = result.comparisons, result.curves
    series = curves[["quantity", "compartment", "unit"]].drop_duplicates().itertuples(index=False)
    for i, (quantity, compartment, unit) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        name = f"{quantity} {compartment} ({unit})"
        curve = curves[
            (curves.quantity == quantity) & (curves.compartment == compartment) & (curves.unit == unit)
        ]
        curve = curve[curve.time_h > 0]
        figure.add_trace(
            go.Scatter(
                x=curve.time_h,
                y=curve.predicted,
                mode="lines",
                name=f"predicted {name}",
                line={"color": color},
            )
        )
        points = comparisons[
            (comparisons.quantity == quantity)
            & (comparisons.compartment == compartment)
            & (comparisons.unit == unit)
        ]
        symbols = np.where(
            points.bound == "<", "triangle-down", np.where(points.bound == ">", "triangle-up", "circle")
        )
        if "predicted_low" in points and points.predicted_low.notna().any():
            figure.add_trace(
                go.Scatter(
                    x=np.maximum(points.time_h, 1 / 60) * 1.08,
                    y=points.predicted,
                    mode="markers",
                    name=f"95% prediction interval {name}",
                    marker={"color": color, "size": 6, "symbol": "line-ew-open"},
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": (points.predicted_high - points.predicted).to_numpy(),
                        "arrayminus": (points.predicted - points.predicted_low).to_numpy(),
                    },
                )
            )
        figure.add_trace(
            go.Scatter(
                x=np.maximum(points.time_h, 1 / 60),
                y=points.observed,
                mode="markers",
                name=f"observed {name}",
                marker={"color": color, "size": 10, "symbol": symbols},
                error_y={"type": "data", "array": points.sd.fillna(0).to_numpy(), "visible": True},
                text=points.source,
            )
        )
    figure.update_layout(
        height=380, margin={"l": 60, "r": 20, "t": 30, "b": 40}, legend={"font": {"size": 10}}
    )
    values = np.concatenate([comparisons.observed.to_numpy(float), curves.predicted.to_numpy(float)])
    positive = bool(np.all(values[np.isfinite(values)] > 0))  # effects can be zero or negative
    units = ", ".join(sorted(set(curves.unit.astype(str)) | set(comparisons.unit.astype(str))))
    long = float(comparisons.time_h.max()) > 24 * 30  # clinical follow-up: read it in days
    if long:
        for trace in figure.data:
            trace.x = np.asarray(trace.x, dtype=float) / 24.0
    figure.update_xaxes(
        type="log", title="time after the first dose (days)" if long else "time after the first dose (h)"
    )
    figure.update_yaxes(type="log" if positive else "linear", title=units)
    return figure


def suite_figure(results: list[CaseResult]) -> go.Figure | None:
    """Observed against predicted for every kinetic point of the suite (log-log), with the 95%
    prediction interval, and the 1:1, 2-fold and 3-fold lines."""
    figure = go.Figure()
    low, high = np.inf, 0.0
    for use, color in (("prediction", PALETTE[1]), ("fitted", PALETTE[0])):
        picked = [
            r for r in results if r.error is None and not r.safety and (r.calibration == (use == "fitted"))
        ]
        points = [
            (r.name, p)
            for r in picked
            for p in r.points()
            if p["predicted"] and p["observed"] > 0 and not p["quantity"].startswith(("effect:", "endpoint:"))
        ]
        if not points:
            continue
        observed = np.array([p["observed"] for _, p in points])
        predicted = np.array([p["predicted"] for _, p in points])
        upper = np.array([(p["predicted_high"] or p["predicted"]) - p["predicted"] for _, p in points])
        lower = np.array([p["predicted"] - (p["predicted_low"] or p["predicted"]) for _, p in points])
        low, high = min(low, observed.min(), predicted.min()), max(high, observed.max(), predicted.max())
        figure.add_trace(
            go.Scatter(
                x=observed,
                y=predicted,
                mode="markers",
                name=f"{use} cases",
                marker={"color": color, "size": 8},
                error_y={"type": "data", "symmetric": False, "array": upper, "arrayminus": lower},
                text=[
                    f"{name}: {p['quantity']} {p['compartment']} at {p['time_h']:g} h" for name, p in points
                ],
            )
        )
    if not figure.data:
        return None
    line = np.array([low / 3, high * 3])
    for factor, dash, name in ((1, "solid", "1:1"), (2, "dash", "2-fold"), (3, "dot", "3-fold")):
        for f in {factor, 1 / factor}:
            figure.add_trace(
                go.Scatter(
                    x=line,
                    y=line * f,
                    mode="lines",
                    name=name,
                    showlegend=f >= 1,
                    line={"color": "#888", "dash": dash, "width": 1},
                )
            )
    figure.update_layout(
        title="Observed against predicted, every kinetic observation (bars: 95% prediction interval)",
        height=520,
    )
    figure.update_xaxes(type="log", title="observed (the case's unit)")
    figure.update_yaxes(type="log", title="predicted (same unit)")
    return figure


def _inside_text(result) -> str:
    inside, points = result.interval_hits()
    return f"{inside}/{points}" if points else "n/a"


def _coverage_text(summary: dict) -> str:
    parts = []
    for key, name in (("predictions", "prediction cases"), ("calibration", "fitted cases")):
        found = summary.get(key) or {}
        if found.get("points"):
            parts.append(f"{name}: {found['inside_95_prediction']:.0%} of {found['points']} observations")
    text = ("Coverage of the 95% prediction intervals: " + "; ".join(parts) + ".") if parts else ""
    between = (summary.get("kinetics_cross_validation") or {}).get("between_study") or {}
    if between.get("points"):
        text += (
            f" Out of sample (leave one study out), {between['inside_95_parameter_only']:.0%} of "
            f"{between['points']} observations lie inside the parameter intervals and "
            f"{between['inside_95_with_between_study']:.0%} inside them widened by between-study "
            f"variation (tau {between['tau_log10_all']:.2f} log10; median width "
            f"x{between['median_width_fold']:.0f})."
        )
    return text


def _evidence_section(summary: dict, include_plotlyjs: bool = False) -> str:
    """The clinical evidence: per condition a forest plot (observed estimate and CI, fitted and, when
    run, held-out 95% prediction intervals), then a table of every row."""
    records = summary.get("evidence") or []
    cv = summary.get("cross_validation")
    if not records and not cv:
        return ""
    parts = ["<h2>Clinical evidence (treated minus control)</h2>"]
    parts.append(
        "<p>Each row is one trial arm against its control at one visit. <em>Predicted</em> is the "
        "posterior mean of what that design would estimate; the interval is a 95% prediction interval "
        "for the study run again as a new trial (parameter uncertainty, between-trial heterogeneity and "
        "the study's own sampling error). These rows are all fitted (in sample).</p>"
    )
    if cv:
        o = cv["overall"]
        parts.append(
            f"<p><b>Out of sample</b> (each study left out of its condition's fit): {o['coverage']:.0%} of "
            f"{o['rows']} held-out estimates from {o['studies']} studies inside their 95% prediction "
            f"interval; mean interval score {o['interval_score_smd']:.2f} SMD, mean width "
            f"{o['mean_width_smd']:.2f} SMD. Strictly out of sample (studies none of whose numbers "
            f"informed any parameter row): {cv['strict']['coverage']:.0%} of {cv['strict']['rows']} "
            f"estimates from {cv['strict']['studies']} studies.</p>"
        )
    rows = []
    held = {}
    if cv:
        for found in cv["conditions"].values():
            for p in found["points"]:
                held[(p["study"], p["arm"], p["quantity"], p["time_h"])] = p
    for condition in dict.fromkeys(r["condition"] for r in records):
        points = [p for r in records if r["condition"] == condition for p in r["points"]]
        figure = _forest(condition, points, held)
        parts.append(
            figure.to_html(full_html=False, include_plotlyjs=include_plotlyjs, config={"displaylogo": False})
        )
        include_plotlyjs = False
    for r in records:
        for p in r["points"]:
            out = held.get((p["study"], p["arm"], p["quantity"], p["time_h"]))
            cells = [
                r["condition"],
                p["study"],
                p["arm"],
                p["quantity"].split(":", 1)[1],
                f"{p['time_h'] / 24:.0f}",
                p["design"],
                f"{p['observed']:.3g} ({p['observed_low']:.3g} to {p['observed_high']:.3g})",
                f"{p['predicted']:.3g} ({p['predicted_low']:.3g} to {p['predicted_high']:.3g})",
            ]
            if cv:
                cells.append(
                    ""
                    if out is None
                    else f"{out['predicted']:.3g} ({out['predicted_low']:.3g} to {out['predicted_high']:.3g})"
                )
            rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    header = [
        "condition",
        "study",
        "arm",
        "endpoint",
        "day",
        "design",
        "observed (95% CI)",
        "fitted (95% PI)",
    ]
    if cv:
        header.append("held out (95% PI)")
    parts.append(
        "<table><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>" + "".join(rows) + "</table>"
    )
    return "".join(parts)


def _forest(condition: str, points: list[dict], held: dict) -> go.Figure:
    """One row per evidence estimate: observed with its 95% CI, fitted and held-out 95% prediction
    intervals, one panel per endpoint (shared y labels: study, arm, day)."""
    labels = [
        f"{p['study']} {p['arm']} d{p['time_h'] / 24:.0f} ({p['quantity'].split(':', 1)[1]})" for p in points
    ]
    figure = go.Figure()

    def band(values: list[dict], name: str, color: str, shift: float, low: str, high: str, centre: str):
        figure.add_trace(
            go.Scatter(
                x=[v[centre] for v in values],
                y=[labels.index(v["label"]) + shift for v in values],
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [v[high] - v[centre] for v in values],
                    "arrayminus": [v[centre] - v[low] for v in values],
                },
                mode="markers",
                marker={"color": color, "size": 7},
                name=name,
                text=[v["label"] for v in values],
            )
        )

    tagged = [p | {"label": label} for p, label in zip(points, labels, strict=True)]
    band(tagged, "observed (95% CI)", "black", 0.0, "observed_low", "observed_high", "observed")
    band(tagged, "fitted (95% prediction)", PALETTE[0], 0.25, "predicted_low", "predicted_high", "predicted")
    out = []
    for p in tagged:
        found = held.get((p["study"], p["arm"], p["quantity"], p["time_h"]))
        if found is not None:
            out.append(found | {"label": p["label"]})
    if out:
        band(
            out,
            "held out (95% prediction)",
            PALETTE[1],
            -0.25,
            "predicted_low",
            "predicted_high",
            "predicted",
        )
    figure.update_layout(
        title=f"{condition}: treated minus control (endpoint units; a study's rows share its units)",
        height=140 + 26 * len(labels),
        margin={"l": 300, "r": 20, "t": 50, "b": 40},
    )
    figure.update_yaxes(
        tickmode="array", tickvals=list(range(len(labels))), ticktext=labels, autorange="reversed"
    )
    figure.add_vline(x=0, line={"color": "#999", "dash": "dot"})
    return figure
