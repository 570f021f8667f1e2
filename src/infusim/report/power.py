"""The HTML report of `infusim power`: power and assurance against sample size."""

from __future__ import annotations

import html

import pandas as pd

from infusim.report import page_start


def _adjusted(multiplicity: str) -> str:
    return "" if multiplicity == "none" else f", {html.escape(multiplicity)}-adjusted across the treated arms"


def render(summary: dict, table: pd.DataFrame) -> str:
    """A standalone page: the curve (plotly embedded) and the table behind it."""
    from infusim.results import PowerResult

    curve: dict[int, dict[str, dict]] = {}
    several = table.analysis.nunique() > 1
    for row in table.itertuples():
        label = f"{row.arm} ({row.analysis})" if several else row.arm
        curve.setdefault(int(row.patients), {})[label] = {
            "power": row.power,
            "assurance": row.assurance,
            "arm": row.arm,
            "analysis": row.analysis,
        }
    multiplicity = summary.get("multiplicity", "none")
    found = PowerResult(
        summary["scenario_name"],
        summary["endpoint"],
        summary["time_d"],
        summary["replicates"],
        curve,
        multiplicity,
    )
    plot = found.plot().to_html(full_html=False, include_plotlyjs=True, config={"displaylogo": False})
    tipping = "tipping_delta_sd_median" in table and table.tipping_delta_sd_median.notna().any()
    secondary = [c for c in table.columns if c.startswith("key_secondary_")]
    rows = "".join(
        f"<tr><td>{r['patients']}</td><td>{html.escape(str(r['arm']))}</td>"
        f"<td>{html.escape(str(r['analysis']))}</td><td>{r['power']:.0%}</td><td>{r['assurance']:.0%}</td>"
        + (f"<td>{_sd(r['tipping_delta_sd_median'])}</td>" if tipping else "")
        + "".join(f"<td>{r[c]:.0%}</td>" for c in secondary)
        + "</tr>"
        for r in table.to_dict("records")
    )
    return f"""{page_start(f"infusim power: {summary['scenario_name']}", summary["disclaimer"])}
<p>Primary endpoint {html.escape(summary["endpoint"])} at day {summary["time_d"]:g};
{summary["replicates"]} replicate trials per sample size. Power: the share of replicates in which the
treated arm beats control (two-sided p &lt; 0.05{_adjusted(multiplicity)}) at the posterior-median
effect; assurance: the same
share when each replicate draws its effect from the posterior of the controlled evidence, with the
between-trial SD.</p>
{plot}
<p>Analysis of continuous endpoints: change, change from day 0 (Welch); ancova, adjusted for the day-0
value; mmrm, mixed model for repeated measures from every visit seen (docs/trials.md). Several
analyses are applied to the same replicate trials.</p>
{_sample_size_html(summary)}
{_tipping_note() if tipping else ""}
<table><tr><th>patients (total)</th><th>arm</th><th>analysis</th><th>power</th><th>assurance</th>
{"<th>median tipping point of the successes (SD)</th>" if tipping else ""}
{"".join(f"<th>key secondary {c.split('_')[2]} claimed</th>" for c in secondary)}</tr>
{rows}</table>
</body></html>"""


def _sd(value) -> str:
    return "" if value is None or value != value else f"{value:.2f}"


def _tipping_note() -> str:
    return (
        "<p>Median tipping point (mmrm): in the replicates that succeed, how much worse (in SDs of the"
        " change at the primary visit) the treated patients missing there would have to fare than the"
        " missing-at-random model predicts for p to reach 0.05 (unadjusted; docs/trials.md).</p>"
    )


def _sample_size_html(summary: dict) -> str:
    """The total sample size for the target power per arm (``PowerResult.sample_sizes``)."""
    found = summary.get("sample_size")
    if not found:
        return ""
    target = summary["target_power"]
    rows = []
    for label, size in found.items():
        if size["patients"] is None:
            cell = f"<td colspan=2>not estimable: {html.escape(size['reason'])}</td>"
        else:
            low, high = size["ci95"]
            cell = (
                f"<td>{size['patients']}{' (extrapolated)' if size['extrapolated'] else ''}</td>"
                f"<td>{low} to {'beyond reach' if high is None else high}</td>"
            )
        rows.append(f"<tr><td>{html.escape(label)}</td>{cell}</tr>")
    return (
        f"<h2>Patients for {target:.0%} power</h2><table><tr><th>arm</th><th>total patients</th>"
        f"<th>95% CI</th></tr>{''.join(rows)}</table><p>{html.escape(summary['sample_size_note'])}."
        " The interval carries the Monte Carlo error of the simulated powers, not the uncertainty of the"
        " effect itself (that is what assurance is for).</p>"
    )
