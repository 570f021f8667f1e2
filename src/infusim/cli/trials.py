"""`infusim trial` and `infusim power`: virtual trials and their power and assurance."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from infusim import engraftment
from infusim.cli.common import (
    _p_text,
    _user_errors,
    app,
    console,
    errors,
)
from infusim.errors import InfusimError


@app.command()
@_user_errors
def trial(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file with a trial section.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the trial.")],
    patients: Annotated[
        int | None, typer.Option("--patients", "-n", help="Total patients (overrides trial.patients).")
    ] = None,
    replicates: Annotated[
        int | None, typer.Option("--replicates", "-r", help="Repeat the trial to estimate power.")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Local worker processes.", min=1)] = 1,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="Dask scheduler address (tcp://host:port).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue a killed run in OUT: compute only missing chunks.")
    ] = False,
    chunk_size: Annotated[
        int | None,
        typer.Option("--chunk-size", help="Patients per chunk (default: about a million rows).", min=1),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the output folder.")] = False,
) -> None:
    """Run a virtual randomised trial: every patient in every arm, and its untreated twin.

    Writes OUT/patients/ (Parquet dataset: one row per patient and visit with covariates, arm,
    recorded endpoints and the untreated twin's), OUT/summary.json (per arm: n, mean change with
    95% CI and responder rate at each visit; each arm against control: difference, 95% CI and
    p-value; power and assurance over replicates; baseline by arm; adverse events per arm with
    relative risks), OUT/adverse_events/ (one row per event), OUT/report.html and OUT/trial.json.
    With an economics section also summary.json's economics and OUT/economics.parquet (see
    `infusim economics`); with trial.dropout, patients lost to follow-up (more often when the
    primary endpoint worsens with trial.dropout_hazard_ratio); with trial.exposure, each patient's
    exposure to live cells up to each visit; with trial.subgroups, the primary comparison within
    each subgroup and the interaction; with trial.eligibility, an enriched population.
    trial.analysis: how continuous endpoints are compared (change, ancova or mmrm; with mmrm each
    primary comparison also gets its tipping point). trial.key_secondary: comparisons tested after
    the primary in a fixed sequence.
    trial.missed_doses: the chance each later administration is missed (intention to treat).
    trial.lots: lots of an allogeneic product whose potencies differ; trial.multiplicity: p-values
    adjusted across several treated arms (bonferroni, holm or hochberg).
    Chunks stream to disk, so a run killed part-way continues with --resume. Results do not depend
    on --workers, --scheduler or --chunk-size.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from infusim import api
    from infusim.runner import with_size

    loaded = with_size(api.as_scenario(scenario), patients, replicates)
    total = loaded.trial.patients * loaded.trial.replicates
    columns = (TextColumn("patients"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"))
    shown = errors.is_terminal
    with Progress(*columns, TimeRemainingColumn(), console=errors, transient=True, disable=not shown) as bar:
        task = bar.add_task("trial", total=total)
        summary = api.trial(
            loaded,
            out,
            workers=workers,
            scheduler=scheduler,
            resume=resume,
            chunk_size=chunk_size,
            progress=lambda n: bar.advance(task, n),
        ).summary
    for warning in summary["warnings"]:
        errors.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    if quiet:
        console.print(str(out), markup=False, highlight=False)
        return
    _print_trial(summary)
    if summary.get("economics"):
        _print_economics(summary["economics"])
    console.print(f"[dim]{summary['disclaimer']}[/dim]")
    console.print(f"Output folder: [bold]{escape(str(out))}[/bold] (patients/, summary.json, report.html)")


@app.command()
@_user_errors
def economics(
    scenario: Annotated[Path, typer.Argument(help="The trial's scenario YAML, with an economics section.")],
    out: Annotated[Path, typer.Argument(help="Folder of the finished trial (from infusim trial).")],
) -> None:
    """Cost-effectiveness of a finished virtual trial: each cells arm against control.

    Discounted QALYs (the condition's utility mapping of an endpoint) and costs (product, delivery,
    harvest, transplant, serious adverse events, health states) per arm; incremental cost, QALYs and
    ICER; net monetary benefit and the probability of being cost-effective at each threshold, over
    the trial's sampling error and the cost and utility rows' priors. Within the trial's horizon
    (no extrapolation). Adds `economics` to OUT/summary.json and redraws OUT/report.html; the
    settings come from the scenario's economics section (docs/economics.md), which may change
    after the trial ran.
    """
    from infusim import api

    found = api.cost_effectiveness(scenario, out)
    _print_economics(found)
    console.print(f"[dim]{found['disclaimer']}[/dim]")
    console.print(f"Updated: [bold]{escape(str(out))}[/bold] (summary.json economics, report.html)")


def _print_economics(found: dict) -> None:
    """Per arm costs and QALYs, then each cells arm against control."""
    chosen = found["settings"]
    cur = chosen["currency"]
    table = Table(
        title=f"Cost-effectiveness over {chosen['horizon_d']:g} days ({cur}; utility of "
        f"{chosen['endpoint']}; discount {chosen['discount_costs']:.1%} costs, "
        f"{chosen['discount_qalys']:.1%} QALYs)"
    )
    for column in ("arm", "patients", "cost per patient (95% interval)", "QALYs per patient (95% interval)"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    for arm, row in found["by_arm"].items():
        cost, qalys = row["cost"], row["qalys"]
        table.add_row(
            escape(arm),
            str(row["patients"]),
            f"{cost['mean']:,.0f} ({cost['ci95'][0]:,.0f} to {cost['ci95'][1]:,.0f})",
            f"{qalys['mean']:.4f} ({qalys['ci95'][0]:.4f} to {qalys['ci95'][1]:.4f})",
        )
    console.print(table)
    for arm, result in found["comparisons"].items():
        d_cost, d_qalys = result["incremental_cost"], result["incremental_qalys"]
        icer = "" if result["icer"] is None else f"; ICER {result['icer']:,.0f} {cur}/QALY"
        console.print(
            f"{escape(arm)} vs {escape(found['control'])}: {d_cost['mean']:+,.0f} {cur} "
            f"({d_cost['ci95'][0]:+,.0f} to {d_cost['ci95'][1]:+,.0f}), {d_qalys['mean']:+.4f} QALYs "
            f"({d_qalys['ci95'][0]:+.4f} to {d_qalys['ci95'][1]:+.4f}){icer} ({result['quadrant']})",
            highlight=False,
        )
        chances = ", ".join(
            f"{float(t):,.0f}: {v['probability_cost_effective']:.0%}" for t, v in result["thresholds"].items()
        )
        console.print(f"  probability cost-effective at {cur}/QALY {chances}", highlight=False)
        price = result.get("value_based_price")
        if price:
            prices = ", ".join(
                f"{float(t):,.0f}: {v['mean']:,.0f} ({v['ci95'][0]:,.0f} to {v['ci95'][1]:,.0f})"
                for t, v in price["by_threshold"].items()
            )
            console.print(
                f"  highest cost-effective product price {price['unit']} at {cur}/QALY {prices}",
                highlight=False,
            )
    if found.get("value_of_information"):
        worth = ", ".join(f"{float(t):,.0f}: {v:,.0f}" for t, v in found["value_of_information"].items())
        console.print(
            f"expected value of perfect information per patient ({cur}) at {cur}/QALY {worth}",
            highlight=False,
        )
    for event, arms in found["events_not_costed"].items():
        counts = ", ".join(f"{a} {n}" for a, n in arms.items())
        console.print(f"[dim]not costed (no {cur} row): {escape(event)} ({counts} serious episodes)[/dim]")


@app.command()
@_user_errors
def power(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file with a trial section.")],
    n: Annotated[str, typer.Option("--n", help="Total sample sizes, comma-separated (e.g. 20,40,80,160).")],
    replicates: Annotated[
        int, typer.Option("--replicates", "-r", help="Replicate trials per sample size.", min=2)
    ] = 200,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Also write power.parquet, summary.json and report.html here."),
    ] = None,
    analysis: Annotated[
        str | None,
        typer.Option(
            "--analysis",
            help="Analyses of continuous endpoints to compare on the same replicate trials, comma-separated "
            "(change, ancova, mmrm; default: the scenario's trial.analysis).",
        ),
    ] = None,
    target: Annotated[
        float | None,
        typer.Option(
            "--target",
            help="Also estimate the total sample size that reaches this power (e.g. 0.8), with its 95% "
            "interval, from the simulated curve.",
        ),
    ] = None,
) -> None:
    """Print the power of the primary comparison against total sample size.

    Power: the share of replicate trials in which a treated arm beats control on the primary
    endpoint at the primary visit (two-sided p < 0.05). With --analysis change,ancova,mmrm each
    analysis is applied to the same replicate trials, so the powers differ by the analysis alone.
    """
    from infusim import api
    from infusim.results import monte_carlo

    try:
        sizes = [int(part) for part in n.split(",") if part.strip()]
    except ValueError:
        raise InfusimError("--n", f"{n!r} is not a comma-separated list of integers") from None
    analyses = [part.strip() for part in analysis.split(",") if part.strip()] if analysis else None
    found = api.power(scenario, sizes, replicates=replicates, analyses=analyses, target=target)
    if out is not None:
        from infusim import io
        from infusim.report.power import render

        summary = found.summary

        def write(folder: Path) -> None:
            io.write_parquet(found.to_pandas(), folder / "power.parquet")
            (folder / "report.html").write_text(render(summary, found.to_pandas()), encoding="utf-8")
            io.write_json(summary, folder / "summary.json")

        io.write_folder(out, write)
    loaded = api.as_scenario(scenario)
    curve = found.curve
    trial_spec = loaded.trial
    table = Table(
        title=f"{escape(loaded.name)}: power on {trial_spec.primary.endpoint} at "
        f"{trial_spec.primary.at_h / 24:g} day ({replicates} replicates per size)"
    )
    table.add_column("patients (total)", justify="right")
    labels = list(next(iter(curve.values())))
    for label in labels:
        table.add_column(escape(f"{label} vs {trial_spec.control.name}: power / assurance"), justify="right")
    for size, result in curve.items():
        cells = []
        for label in labels:
            power = result[label]["power"]
            band = monte_carlo("power", power, replicates)
            cells.append(
                f"{power:.0%} ({band['power_low']:.0%}-{band['power_high']:.0%}) / "
                f"{result[label]['assurance']:.0%}"
            )
        table.add_row(str(size), *cells)
    console.print(table)
    _print_power_extras(found.to_pandas(), trial_spec)
    if target is not None:
        for label, size in found.sample_sizes().items():
            if size["patients"] is None:
                console.print(
                    escape(f"{label}: sample size for {target:.0%} power not estimable: {size['reason']}")
                )
                continue
            low, high = size["ci95"]
            console.print(
                escape(
                    f"{label}: {size['patients']} patients in total for {target:.0%} power (95% CI {low} to "
                    f"{'beyond reach' if high is None else high})"
                    + (", extrapolated beyond the sizes simulated" if size["extrapolated"] else "")
                )
            )
    console.print(
        "[dim]power: at the posterior-median effect, with its Monte Carlo 95% interval over the "
        f"{replicates} replicates (Wilson; more replicates narrow it); assurance: averaged over the "
        "posterior of the controlled evidence, each replicate with its own trial effect (between-trial "
        "SD).[/dim]"
    )
    console.print(f"[dim]{found.summary['disclaimer']}[/dim]")


def _print_power_extras(rows, trial_spec) -> None:
    """Key-secondary powers and the successes' median tipping point, when the design has them."""
    keys = [c for c in rows.columns if c.startswith("key_secondary_") and c.endswith("_power")]
    tipping = "tipping_delta_sd_median" in rows and rows.tipping_delta_sd_median.notna().any()
    if not keys and not tipping:
        return
    table = Table(title="key secondary claims, and how robust the primary's successes are to missing data")
    for column in ("patients (total)", "arm", *(["analysis"] if rows.analysis.nunique() > 1 else [])):
        table.add_column(column, justify="right" if column.startswith("patients") else "left")
    for i, key in enumerate(trial_spec.key_secondary or ()):
        table.add_column(
            escape(f"key secondary {i + 1}: {key.endpoint} day {key.at_h / 24:g}"), justify="right"
        )
    if tipping:
        table.add_column("median tipping point (SD)", justify="right")
    for row in rows.to_dict("records"):
        table.add_row(
            str(row["patients"]),
            escape(row["arm"]),
            *([row["analysis"]] if rows.analysis.nunique() > 1 else []),
            *(f"{row[k]:.0%}" if row.get(k) == row.get(k) and row.get(k) is not None else "" for k in keys),
            *(
                [
                    f"{row['tipping_delta_sd_median']:.2f}"
                    if row["tipping_delta_sd_median"] is not None
                    and row["tipping_delta_sd_median"] == row["tipping_delta_sd_median"]
                    else "-"
                ]
                if tipping
                else []
            ),
        )
    console.print(table)
    console.print(
        "[dim]key secondary: share of replicates claiming it in the fixed sequence after the primary; "
        "tipping point: how much worse than MAR predicts the treated arm's missing patients must fare at "
        "the primary visit before a success stops being significant (median over successes).[/dim]"
    )


def _print_trial(summary: dict) -> None:
    primary = summary["primary"]
    unit = primary["unit"]
    visit = f"{primary['time_d']:g}"
    table = Table(
        title=f"{escape(summary['scenario_name'])}: {primary['endpoint']} at day {visit} "
        f"({summary['patients']} patients, {summary['condition']})"
    )
    for column in ("arm", "n", "mean change or share (95% CI)", "responders", "vs untreated twin"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    for arm in summary["arms"]:
        entry = summary["by_arm"][arm["name"]][primary["endpoint"]]["visits"][visit]
        if "model_mean_change" in entry:
            low, high = entry["model_ci95"]
            change = f"{entry['model_mean_change']:+.3g} ({low:+.3g} to {high:+.3g}) MMRM"
        elif "mean_change" in entry:
            low, high = entry["ci95"]
            change = f"{entry['mean_change']:+.3g} ({low:+.3g} to {high:+.3g})"
        else:
            low, high = entry["ci95"]
            change = f"{entry['responders']:.0f}% ({low:.0f}% to {high:.0f}%)"
        table.add_row(
            arm["name"] + (" (control)" if arm["control"] and arm["name"] != "control" else ""),
            str(entry["n"]),
            change,
            f"{entry['responders']:.0f}%" if "responders" in entry else "",
            f"{entry['effect_vs_untreated']:+.3g}",
        )
    console.print(table)
    if summary.get("adherence"):
        console.print(
            "Given every administration (trial.missed_doses): "
            + "; ".join(
                f"{escape(arm)} {a['given_all']}/{a['patients']} ({a['given_all_share']:.0%}, mean "
                f"{a['administrations_mean']:.2f} of {a['administrations_scheduled']})"
                for arm, a in summary["adherence"].items()
            )
        )
    for arm, result in primary["comparisons"].items():
        if result["difference"] is None:
            continue
        low, high = result["ci95"]
        how = {"ancova": " (ANCOVA)", "mmrm": " (MMRM)"}.get(summary.get("analysis", "change"), "")
        line = (
            f"{arm} vs {primary['control']}{how}: {result['difference']:+.3g} {unit} "
            f"(95% CI {low:+.3g} to {high:+.3g}), {_p_text(result['p_value'])}"
        )
        if "p_adjusted" in result:
            line += f" ({primary['multiplicity']}-adjusted {_p_text(result['p_adjusted'])})"
        tipping = result.get("tipping_point") or {}
        if tipping.get("tipping_delta") is not None:
            line += (
                f"; tipping point: significance is lost if the {tipping['missing_share']:.0%} of {arm} not"
                f" seen at day {primary['time_d']:g} fared {tipping['tipping_delta']:.3g} {unit}"
                f" ({tipping['tipping_delta_sd']:.2f} SD) worse than MMRM assumes"
            )
            by_control = [
                f"{c['tipping_delta_sd']:.2f} SD" if c["tipping_delta_sd"] is not None else "none"
                for c in tipping.get("control_shifts", [])
            ]
            if by_control:
                shifts = "/".join(f"{c['delta_control_sd']:+g}" for c in tipping["control_shifts"])
                line += f" ({'/'.join(by_control)} if {primary['control']}'s missing fared {shifts} SD worse)"
        if summary["replicates"] > 1:
            line += f"; power {summary['power'][arm]['power']:.0%} over {summary['replicates']} replicates"
            if summary["power"][arm].get("tipping_delta_sd_median") is not None:
                median = summary["power"][arm]["tipping_delta_sd_median"]
                line += f" (median tipping point of the successes {median:.2f} SD)"
            if summary.get("assurance"):
                line += f", assurance {summary['assurance'][arm]['assurance']:.0%}"
        console.print(line)
        _print_key_secondary(
            result.get("key_secondary"), summary["power"].get(arm, {}), summary["replicates"]
        )
    _print_subgroups(summary.get("subgroups"), unit)
    _print_adverse_events(summary.get("adverse_events"))


def _print_key_secondary(found: list | None, power: dict, replicates: int) -> None:
    """Each key secondary in its fixed sequence: the comparison, whether it is claimed, its power."""
    for i, entry in enumerate(found or []):
        if entry["difference"] is None:
            text = "no comparison"
        else:
            low, high = entry["ci95"]
            text = (
                f"{entry['difference']:+.3g} {entry['unit']} (95% CI {low:+.3g} to {high:+.3g}),"
                f" {_p_text(entry['p_value'])}"
                f" at level {entry['level']:g}"
            )
        claimed = "claimed" if entry["claimed"] else "not claimed"
        line = f"  key secondary {i + 1}, {entry['endpoint']} at day {entry['time_d']}: {text}: {claimed}"
        if replicates > 1 and "key_secondary_power" in power:
            line += f"; claimed in {power['key_secondary_power'][i]:.0%} of replicates"
        console.print(escape(line))


def _print_subgroups(found: dict | None, unit: str) -> None:
    """Each subgroup's contrast below and at or above its cut, and the interaction."""
    if not found:
        return
    for entry in found["analyses"]:
        parts = []
        for side, label in (("below", "<"), ("at_or_above", ">=")):
            result = entry[side]
            if result["difference"] is None:
                parts.append(f"{label} {entry['cut']:g}: n/a")
                continue
            low, high = result["ci95"]
            parts.append(
                f"{label} {entry['cut']:g}: {result['difference']:+.3g} ({low:+.3g} to {high:+.3g}; "
                f"n {sum(result['n'])})"
            )
        test = entry["interaction"]
        interaction = "n/a" if test["difference"] is None else f"{_p_text(test['p_value'])}"
        if "power" in test:
            interaction += f", significant in {test['power']:.0%} of replicates"
        console.print(
            f"  subgroup {entry['covariate']} ({entry['arm']}, {unit}): {'; '.join(parts)}; "
            f"interaction {interaction}",
            highlight=False,
            markup=False,
        )


def _print_adverse_events(found: dict | None) -> None:
    """Patients with each adverse event per arm; the relative risk against control where both have some."""
    if not found:
        return
    lines = []
    for event, arms in found["by_event"].items():
        parts = []
        for arm, row in arms.items():
            if row["any"]["events"]:
                text = f"{arm} {row['any']['events']}/{row['patients']}"
                if row["serious"]["events"]:
                    text += f" ({row['serious']['events']} serious)"
                rr = row.get("relative_risk_any")
                if rr:
                    text += f", RR {rr['estimate']:.2f} ({rr['low']:.2f}-{rr['high']:.2f})"
                parts.append(text)
        if parts:
            lines.append(f"  {event}: " + "; ".join(parts))
    console.print("Adverse events (patients with the event, replicate 0):", highlight=False)
    for line in lines or ["  none in any arm"]:
        console.print(escape(line), highlight=False)
    for arm, recovery in found.get("neutrophil_recovery", {}).items():
        console.print(f"[dim]{escape(arm)}: {escape(engraftment.sentence(recovery))}[/dim]")
