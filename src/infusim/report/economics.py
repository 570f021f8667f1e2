"""The cost-effectiveness section of a trial report (from ``summary.json``'s ``economics``)."""

from __future__ import annotations

import html

import plotly.graph_objects as go


def section(found: dict | None) -> str:
    """Costs and QALYs per arm, each cells arm against control, and the acceptability curves."""
    if not found:
        return ""
    chosen = found["settings"]
    cur = html.escape(chosen["currency"])
    arms = "".join(
        f"<tr><td>{html.escape(arm)}</td><td>{row['patients']}</td>"
        f"<td>{_money(row['cost'])}</td><td>{_qalys(row['qalys'])}</td>"
        f"<td>{html.escape(_components(row['cost_components']))}</td></tr>"
        for arm, row in found["by_arm"].items()
    )
    comparisons = []
    for arm, result in found["comparisons"].items():
        chances = "; ".join(
            f"{float(t):,.0f}: {v['probability_cost_effective']:.0%} "
            f"(NMB {_money(v['net_monetary_benefit'])})"
            for t, v in result["thresholds"].items()
        )
        icer = "n/a" if result["icer"] is None else f"{result['icer']:,.0f}"
        price = result.get("value_based_price") or {}
        prices = "; ".join(
            f"{float(t):,.0f}: {_money(v)} {price['unit']}" for t, v in price.get("by_threshold", {}).items()
        )
        comparisons.append(
            f"<tr><td>{html.escape(arm)} vs {html.escape(found['control'])}</td>"
            f"<td>{_money(result['incremental_cost'], signed=True)}</td>"
            f"<td>{_qalys(result['incremental_qalys'], signed=True)}</td><td>{icer}</td>"
            f"<td>{html.escape(result['quadrant'])}</td><td>{html.escape(chances)}</td>"
            f"<td>{html.escape(prices)}</td></tr>"
        )
    missing = "".join(
        f"<li>{html.escape(event)}: {html.escape(', '.join(f'{a} {n}' for a, n in arms.items()))}</li>"
        for event, arms in found["events_not_costed"].items()
    )
    costs = "".join(
        f"<tr><td>{html.escape(c['item'])}</td><td>{c['value']:,.2f}</td><td>{html.escape(c['unit'])}</td>"
        f"<td>{html.escape(c['source'])}</td></tr>"
        for c in found["unit_costs"]
    )
    utilities = ", ".join(f"{m['value']:g}: {m['utility']:.3f}" for m in found["utility_mapping"])
    figure = _curves(found).to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})
    return f"""<h2>Cost-effectiveness (within the trial, {cur})</h2>
<p>Over {chosen["horizon_d"]:g} days, no extrapolation; utility of {html.escape(chosen["endpoint"])}
({html.escape(utilities)}); discounted {chosen["discount_costs"]:.1%} a year (costs) and
{chosen["discount_qalys"]:.1%} (QALYs). 95% intervals over the trial's sampling error and the cost and
utility rows' priors ({chosen["draws"]} draws). A research model, not advice for any patient or payer.</p>
<table><tr><th>arm</th><th>patients</th><th>cost per patient</th><th>QALYs per patient</th>
<th>cost by item (mean)</th></tr>{arms}</table>
<table><tr><th>comparison</th><th>incremental cost</th><th>incremental QALYs</th><th>ICER ({cur}/QALY)</th>
<th>quadrant</th><th>probability cost-effective at {cur}/QALY</th>
<th>highest cost-effective product price</th></tr>{"".join(comparisons)}</table>
{figure}
<p>Expected value of perfect information per patient ({cur}): {html.escape(_worth(found))}: what
resolving every uncertainty above would be worth for each patient treated, an upper bound on the
value of further research.</p>
<h3>Unit costs</h3><table><tr><th>row</th><th>value</th><th>unit</th><th>source</th></tr>{costs}</table>
{f"<p>Serious episodes without a cost row (not costed):</p><ul>{missing}</ul>" if missing else ""}
<ul>{"".join(f"<li>{html.escape(n)}</li>" for n in found["notes"])}</ul>
"""


def _curves(found: dict) -> go.Figure:
    figure = go.Figure()
    for arm, result in found["comparisons"].items():
        curve = result["acceptability_curve"]
        figure.add_trace(go.Scatter(x=curve["threshold"], y=curve["probability"], mode="lines", name=arm))
    for threshold in found["settings"]["thresholds"]:
        figure.add_vline(x=threshold, line_dash="dot", line_color="grey")
    cur = found["settings"]["currency"]
    figure.update_layout(
        title="Cost-effectiveness acceptability curve",
        xaxis_title=f"willingness to pay ({cur} per QALY)",
        yaxis_title="probability cost-effective",
        yaxis_range=[0, 1],
        height=380,
    )
    return figure


def _money(entry: dict, signed: bool = False) -> str:
    fmt = "{:+,.0f}" if signed else "{:,.0f}"
    low, high = entry["ci95"]
    return f"{fmt.format(entry['mean'])} ({fmt.format(low)} to {fmt.format(high)})"


def _qalys(entry: dict, signed: bool = False) -> str:
    fmt = "{:+.4f}" if signed else "{:.4f}"
    low, high = entry["ci95"]
    return f"{fmt.format(entry['mean'])} ({fmt.format(low)} to {fmt.format(high)})"


def _worth(found: dict) -> str:
    return ", ".join(
        f"at {float(t):,.0f} per QALY {v:,.0f}" for t, v in (found.get("value_of_information") or {}).items()
    )


def _components(components: dict) -> str:
    return ", ".join(f"{name} {value:,.0f}" for name, value in components.items())
