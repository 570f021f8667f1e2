"""The HTML report of a virtual trial, drawn from its summary (no patient rows are read back)."""

from __future__ import annotations

import html

import plotly.graph_objects as go

from infusim import engraftment
from infusim.report import page_start
from infusim.report.economics import section as economics_section
from infusim.stats import ANALYSIS_NOTES


def render(summary: dict) -> str:
    """A standalone HTML page: per-arm curves with 95% CIs, the primary comparison and power."""
    figures = [_endpoint_figure(summary, name) for name in next(iter(summary["by_arm"].values()))]
    parts = [
        figure.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False})
        for i, figure in enumerate(figures)
    ]
    primary = summary["primary"]
    rows = []
    for arm, result in primary["comparisons"].items():
        power = summary["power"][arm]
        assurance = (summary.get("assurance") or {}).get(arm)
        sure = "n/a (one replicate)" if assurance is None else f"{assurance['assurance']:.0%}"
        low, high = result["ci95"]
        rows.append(
            "<tr>"
            f"<td>{html.escape(arm)} vs {html.escape(primary['control'])}</td>"
            f"<td>{_number(result['difference'])}</td><td>{_number(low)} to {_number(high)}</td>"
            f"<td>{_p(result['p_value'])}"
            + (
                f" ({html.escape(primary['multiplicity'])}-adjusted {_p(result['p_adjusted'])})"
                if "p_adjusted" in result
                else ""
            )
            + f"</td><td>{_power(power)}</td>"
            f"<td>{sure}</td></tr>"
        )
    arms = ", ".join(
        f"{html.escape(a['name'])} ({a['kind']}, ratio {a['ratio']}{', control' if a['control'] else ''})"
        for a in summary["arms"]
    )
    return f"""{page_start(f"infusim virtual trial: {summary['scenario_name']}", summary["disclaimer"])}
<p>{html.escape(summary["condition"])}; {summary["patients"]} patients per replicate,
{summary["replicates"]} replicate(s); arms: {arms}; lost to follow-up
{summary.get("dropout_per_year", 0):.0%} a year{_dropout_ratio(summary)}. Scenario hash
{html.escape(summary["scenario_hash"][:16])}, seed {summary["seed"]}, infusim
{html.escape(summary["infusim_version"])}.</p>
<h2>Primary comparison: {html.escape(primary["endpoint"])} at day {primary["time_d"]:g}
({html.escape(primary["unit"])})</h2>
<table><tr><th>comparison</th><th>difference</th><th>95% CI</th><th>p</th><th>power</th>
<th>assurance</th></tr>
{"".join(rows)}</table>
<p>Power: share of replicates with p &lt; 0.05 in favour of cells at the posterior-median effect;
assurance: the same share when each replicate draws the effect from the posterior of the controlled
evidence, including the trial's own departure from the average (between-trial SD).</p>
<p>Comparisons: {html.escape(ANALYSIS_NOTES[summary.get("analysis", "change")])}.
Responders: change of at least {primary["responder_change"]:g} {html.escape(primary["unit"])}.
Dashed lines: the same patients' untreated twins (natural history without procedure).</p>
{_key_secondary_section(summary)}
{_tipping_section(primary)}
{_flow_and_baseline(summary)}
{_subgroup_section(summary.get("subgroups"), primary["unit"])}
{"".join(parts)}
{_forest_html(summary)}
{_responder_html(summary)}
{_adverse_section(summary.get("adverse_events"))}
{economics_section(summary.get("economics"))}
{_regulatory_section(summary.get("regulatory"))}
<h2>Notes</h2><ul>{"".join(f"<li>{html.escape(n)}</li>" for n in summary["notes"])}</ul>
</body></html>
"""


def _endpoint_figure(summary: dict, endpoint: str) -> go.Figure:
    """Mean change (or share of responders) by visit and arm, with 95% CI error bars."""
    figure = go.Figure()
    unit = ""
    for arm in summary["arms"]:
        name = arm["name"]
        data = summary["by_arm"][name][endpoint]
        unit = data["unit"]
        days = [float(d) for d in data["visits"]]
        entries = list(data["visits"].values())
        rate = "mean_change" not in entries[0]
        model = not rate and "model_mean_change" in entries[-1]  # MMRM: the model's estimates
        key = "responders" if rate else "model_mean_change" if model else "mean_change"
        interval = "model_ci95" if model else "ci95"
        values = [e.get(key, e.get("mean_change")) for e in entries]
        low = [v - e.get(interval, e["ci95"])[0] for v, e in zip(values, entries, strict=True)]
        high = [e.get(interval, e["ci95"])[1] - v for v, e in zip(values, entries, strict=True)]
        figure.add_trace(
            go.Scatter(
                x=days,
                y=values,
                name=name,
                mode="lines+markers",
                error_y={"type": "data", "array": high, "arrayminus": low},
            )
        )
        # the twin's mean (change): the arm's minus its mean effect against the twin
        twin = [
            e.get("mean_change", v) - e["effect_vs_untreated"] for v, e in zip(values, entries, strict=True)
        ]
        figure.add_trace(
            go.Scatter(x=days, y=twin, name=f"{name}: untreated twin", mode="lines", line={"dash": "dash"})
        )
    what = "responders (%)" if unit == "% of patients" else f"change from baseline ({unit})"
    if summary.get("analysis") == "mmrm" and unit != "% of patients":
        what += ", MMRM"
    figure.update_layout(
        title=f"{endpoint}: {what}, mean and 95% CI by arm", height=400, margin={"t": 50, "b": 50}
    )
    figure.update_xaxes(title="day")
    figure.update_yaxes(title=what)
    return figure


def _subgroup_section(found: dict | None, unit: str) -> str:
    """The subgroup analyses of the primary comparison: a row per subgroup and treated arm."""
    if not found:
        return ""
    rows = []
    for entry in found["analyses"]:
        cells = []
        for side in ("below", "at_or_above"):
            result = entry[side]
            low, high = result["ci95"]
            cells.append(
                f"<td>{_number(result['difference'])} ({_number(low)} to {_number(high)})</td>"
                f"<td>{sum(result['n'])}</td>"
            )
        test = entry["interaction"]
        power = f"{test['power']:.0%}" if "power" in test else "n/a (one replicate)"
        rows.append(
            f"<tr><td>{html.escape(entry['covariate'])}, cut {entry['cut']:g}</td>"
            f"<td>{html.escape(entry['arm'])}</td>{''.join(cells)}"
            f"<td>{_number(test['difference'])}</td><td>{_p(test['p_value'])}</td><td>{power}</td></tr>"
        )
    return f"""<h2>Subgroups of the primary comparison ({html.escape(unit)})</h2>
<table><tr><th>subgroup</th><th>arm</th><th>below the cut: difference (95% CI)</th><th>n</th>
<th>at or above: difference (95% CI)</th><th>n</th><th>interaction</th><th>p</th>
<th>interaction power</th></tr>{"".join(rows)}</table>
<p>{html.escape(found["note"])} A subgroup difference in a virtual trial shows what the model's
effect modifiers (docs/trials.md) and chance produce, not a finding about patients.</p>
"""


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _p(value: float | None) -> str:
    """A p-value as printed: never '0' (below double precision it reads '< 1e-16')."""
    return "n/a" if value is None else "&lt; 1e-16" if value < 1e-16 else f"{value:.2g}"


def _power(power: dict) -> str:
    """'83% of 200 replicates', or n/a for a single trial (power needs replicates)."""
    if power["replicates"] < 2:
        return "n/a (one replicate)"
    return f"{power['power']:.0%} of {power['replicates']} replicates"


def _regulatory_section(rules: dict | None) -> str:
    from infusim.report.html import _safety_section

    return _safety_section(None, rules) if rules else ""


def _adverse_section(found: dict | None) -> str:
    """Patients with each adverse event per arm (any grade; serious) and the relative risk vs control."""
    if not found:
        return ""
    rows = []
    for event, arms in found["by_event"].items():
        for arm, row in arms.items():
            if not row["any"]["events"] and not row["serious"]["events"]:
                continue
            rr = row.get("relative_risk_any")
            rr_text = f"{rr['estimate']:.2f} ({rr['low']:.2f} to {rr['high']:.2f})" if rr else "-"
            rows.append(
                f"<tr><td>{html.escape(event)}</td><td>{html.escape(arm)}</td><td>{row['patients']}</td>"
                f"<td>{_rate(row['any'])}</td><td>{_rate(row['serious'])}</td><td>{rr_text}</td></tr>"
            )
    table = "".join(rows) or "<tr><td colspan=6>no adverse event in any arm</td></tr>"
    recovery = "".join(
        f"<p>{html.escape(arm)}: {html.escape(engraftment.sentence(found_arm))}</p>"
        for arm, found_arm in found.get("neutrophil_recovery", {}).items()
    )
    return (
        "<h2>Adverse events (replicate 0)</h2><table><tr><th>event</th><th>arm</th><th>patients</th>"
        "<th>any grade (95% CI)</th><th>serious (95% CI)</th><th>relative risk vs control</th></tr>"
        f"{table}</table>{recovery}<p>{html.escape(found['note'])}</p>"
    )


def _rate(entry: dict) -> str:
    if entry["rate"] is None:
        return "-"
    return f"{entry['events']} ({entry['rate']:.1%}; {entry['low']:.1%} to {entry['high']:.1%})"


def _flow_and_baseline(summary: dict) -> str:
    """CONSORT-style counts (randomised, analysed at each visit) and the baseline table by arm."""
    primary = summary["primary"]
    endpoint = primary["endpoint"]
    arms = [a["name"] for a in summary["arms"]]
    visits = list(summary["by_arm"][arms[0]][endpoint]["visits"])
    head = "".join(f"<th>{html.escape(a)}</th>" for a in arms)
    flow = "".join(
        f"<tr><td>{'randomised (day 0)' if v == '0' else f'analysed at day {v}'}</td>"
        + "".join(f"<td>{summary['by_arm'][a][endpoint]['visits'][v]['n']}</td>" for a in arms)
        + "</tr>"
        for v in visits
    )
    out = f"<h2>Patient flow</h2><table><tr><th></th>{head}</tr>{flow}</table>"
    lost = summary.get("dropout_per_year", 0.0)
    ratio = summary.get("dropout_hazard_ratio", 1.0)
    mmrm = summary.get("analysis") == "mmrm"
    if ratio == 1.0:
        how = "at random, the same in every arm"
    elif summary.get("dropout_missing") == "not_at_random":
        how = (
            f"times {ratio:g} per measurement SD the primary endpoint will have worsened at the next "
            "visit: missing not at random, on the value the loss leaves unmeasured, so the complete-case "
            "means are biased"
            + (", and so is the MMRM comparison, which assumes missing at random" if mmrm else "")
        )
    else:
        how = (
            f"times {ratio:g} per measurement SD the primary endpoint had worsened at the last visit: "
            "missing at random on what was measured, so the complete-case means are biased"
            + (" (the MMRM comparison, which uses every visit seen, is not)" if mmrm else "")
        )
    out += (
        "<p>Patients leave by dying (the condition's own deaths and fatal harms, as in the adverse"
        " events)"
        + (f" and by loss to follow-up ({lost:.0%} a year, {how})" if lost else "")
        + (
            ": a continuous endpoint is compared by a mixed model for repeated measures from every visit a"
            " patient was seen at (the n below are those still followed); a"
            if mmrm
            else ": a continuous endpoint is analysed in those still followed at the visit (complete case); a"
        )
        + " response rate counts the dead"
        + (" and the lost" if lost else "")
        + " as non-responders."
        + ("" if lost else " No other drop-out is modelled (trial.dropout: 0).")
        + (
            f" Each administration after the first was missed by {summary['missed_doses']:.0%} of patients"
            " (at random; they stay in their arm: intention to treat; column doses_given)."
            + _adherence_text(summary.get("adherence") or {})
            if summary.get("missed_doses")
            else ""
        )
        + (
            f" Patients of allogeneic cells arms shared {summary['lots']['count']} product lots whose"
            f" potencies differ (CV {summary['lots']['potency_cv']:g}, a design assumption; column lot):"
            " the comparisons' intervals do not account for it, the power over replicates does."
            if summary.get("lots")
            else ""
        )
        + "</p>"
    )
    baseline = summary.get("baseline")
    if baseline:
        names = [k for k in baseline[arms[0]] if k != "patients"]
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td>"
            + "".join(_baseline_cell(baseline[a][name]) for a in arms)
            + "</tr>"
            for name in names
        )
        out += (
            f"<h2>Baseline by arm</h2><table><tr><th>mean (SD)</th>{head}</tr>{rows}</table>"
            "<p>female: share of patients. Drawn from the condition's trial populations (docs/trials.md).</p>"
        )
    return out


def _key_secondary_section(summary: dict) -> str:
    """The key secondary comparisons in their fixed sequence, per treated arm."""
    primary = summary["primary"]
    rows = []
    for arm, result in primary["comparisons"].items():
        power = summary["power"].get(arm, {}).get("key_secondary_power")
        for i, entry in enumerate(result.get("key_secondary") or []):
            low, high = entry["ci95"]
            claimed = "claimed" if entry["claimed"] else "not claimed"
            rows.append(
                f"<tr><td>{html.escape(arm)}</td><td>{i + 1}</td><td>{html.escape(entry['endpoint'])} at day"
                f" {html.escape(entry['time_d'])}</td><td>{_number(entry['difference'])}</td>"
                f"<td>{_number(low)} to {_number(high)}</td><td>{_p(entry['p_value'])}</td>"
                f"<td>{entry['level']:g}</td><td>{claimed}</td>"
                f"<td>{'' if power is None or summary['replicates'] < 2 else f'{power[i]:.0%}'}</td></tr>"
            )
    if not rows:
        return ""
    return (
        "<h2>Key secondary comparisons (fixed sequence)</h2><table><tr><th>arm</th><th>order</th>"
        "<th>comparison</th><th>difference</th><th>95% CI</th><th>p</th><th>level</th><th>result</th>"
        f"<th>claimed in replicates</th></tr>{''.join(rows)}</table>"
        "<p>Each is tested only if the primary and every key secondary before it were claimed in"
        " favour of cells; the level is 0.05 (0.05 / treated arms with bonferroni), so the chance of"
        " any false claim for an arm stays at 5% (across arms too with bonferroni; with"
        " multiplicity none each arm has its own 5%). A comparison not claimed is still an estimate"
        " with its interval.</p>"
    )


def _adherence_text(adherence: dict) -> str:
    """Patients given every administration, per arm (``summary['adherence']``)."""
    if not adherence:
        return ""
    parts = [
        f"{html.escape(arm)} {a['given_all']} of {a['patients']} ({a['given_all_share']:.0%}; mean"
        f" {a['administrations_mean']:.2f} of {a['administrations_scheduled']})"
        for arm, a in adherence.items()
    ]
    return " Given every administration: " + "; ".join(parts) + "."


def _tipping_section(primary: dict) -> str:
    """The delta-adjusted MMRM comparisons (``stats.tipping_point``): how much worse the treated
    patients missing at the primary visit would have to fare for the result to lose significance."""
    found = {arm: r["tipping_point"] for arm, r in primary["comparisons"].items() if "tipping_point" in r}
    if not found:
        return ""
    unit = html.escape(primary["unit"])
    rows = []
    for arm, t in found.items():
        if t["tipping_delta"] is not None:
            tip = f"{_number(t['tipping_delta'])} {unit} ({t['tipping_delta_sd']:.2f} SD)"
        else:
            tip = "none (not significant in favour of cells under MAR, or no one missing)"
        shifts = "".join(
            f"<td>{_number(x['difference'])} ({_number(x['ci95'][0])} to {_number(x['ci95'][1])}),"
            f" {_p(x['p_value'])}</td>"
            for x in t["shifts"]
        )
        rows.append(
            f"<tr><td>{html.escape(arm)}</td><td>{t['missing_share']:.0%}</td><td>{tip}</td>{shifts}</tr>"
        )
    heads = "".join(f"<th>delta {x['delta_sd']:g} SD</th>" for x in next(iter(found.values()))["shifts"])
    control = html.escape(primary["control"])
    grid = []
    for arm, t in found.items():
        cells = "".join(
            f"<td>{'none' if c['tipping_delta_sd'] is None else format(c['tipping_delta_sd'], '.2f') + ' SD'}"
            f" (p = {_p(c['p_value_at_zero'])} at delta 0)</td>"
            for c in t.get("control_shifts", [])
        )
        grid.append(f"<tr><td>{html.escape(arm)}</td><td>{t['missing_share_control']:.0%}</td>{cells}</tr>")
    grid_heads = "".join(
        f"<th>{control}'s missing {c['delta_control_sd']:+g} SD</th>"
        for c in next(iter(found.values())).get("control_shifts", [])
    )
    return (
        "<h2>If the missing patients fared worse: tipping point (MMRM)</h2>"
        f"<table><tr><th>arm</th><th>missing at the primary visit</th><th>tipping delta</th>{heads}</tr>"
        f"{''.join(rows)}</table>"
        f"<p>The treated arm's tipping delta when {control}'s missing patients also depart from MAR"
        " (worse by the shift shown; negative: better):</p>"
        f"<table><tr><th>arm</th><th>{control} missing</th>{grid_heads}</tr>{''.join(grid)}</table>"
        "<p>MMRM assumes the patients not seen at the primary visit would have followed the model's"
        " prediction from their earlier visits (missing at random). Here the treated arm's missing"
        " patients are taken to fare delta worse than that prediction (a delta-adjusted pattern-mixture"
        " analysis; in the first table the control arm's stay at MAR, in the second they shift too):"
        " the difference moves by each arm's missing share times its delta. Tipping delta: the"
        " smallest shift at which p reaches 0.05. SD: of the change at the"
        " primary visit, both arms' observed patients pooled. Whether a departure that large is"
        " plausible is a clinical judgement, not a model output.</p>"
    )


def _baseline_cell(entry: dict) -> str:
    if entry["unit"] == "share":
        return f"<td>{entry['mean']:.0%}</td>"
    return f"<td>{entry['mean']:.3g} ({entry['sd']:.2g}) {html.escape(entry['unit'])}</td>"


def _forest_html(summary: dict) -> str:
    """Every arm difference against control (each endpoint and visit) with its 95% CI."""
    rows = [c for c in summary["comparisons"] if c["difference"] is not None]
    if not rows:
        return ""
    labels = [f"{c['arm']}: {c['endpoint']} day {c['time_d']}" for c in rows]
    figure = go.Figure(
        go.Scatter(
            x=[c["difference"] for c in rows],
            y=labels,
            mode="markers",
            marker={"size": 9},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [c["ci95"][1] - c["difference"] for c in rows],
                "arrayminus": [c["difference"] - c["ci95"][0] for c in rows],
            },
            name="difference vs control",
        )
    )
    figure.add_vline(x=0, line={"color": "#888", "dash": "dash"})
    figure.update_layout(
        title=f"Differences against {summary['primary']['control']} (95% CI)",
        height=160 + 28 * len(rows),
        yaxis={"autorange": "reversed"},
        xaxis_title="difference (endpoint units; rate endpoints in percentage points)",
    )
    return figure.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})


def _responder_html(summary: dict) -> str:
    """Responders by arm at each visit of the primary endpoint."""
    primary = summary["primary"]
    endpoint = primary["endpoint"]
    figure = go.Figure()
    for arm in summary["arms"]:
        visits = summary["by_arm"][arm["name"]][endpoint]["visits"]
        days = [v for v in visits if v != "0"]
        figure.add_trace(
            go.Bar(
                x=[f"day {d}" for d in days],
                y=[visits[d].get("responders", 0) for d in days],
                name=arm["name"],
            )
        )
    figure.update_layout(
        title=f"Responders: {endpoint} change of at least {primary['responder_change']:g} {primary['unit']}",
        barmode="group",
        height=340,
        yaxis_title="% of patients",
    )
    return figure.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})


def _dropout_ratio(summary: dict) -> str:
    ratio = summary.get("dropout_hazard_ratio", 1.0)
    which = "not at random" if summary.get("dropout_missing") == "not_at_random" else "at random"
    return "" if ratio == 1.0 else f" (hazard x {ratio:g} per measurement SD worse, {which})"
