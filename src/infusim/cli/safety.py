"""`infusim doses`: the therapeutic window of a scenario (benefit and harm over doses and routes)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from infusim.cli.common import OutOption, _user_errors, app, console
from infusim.compartments import ROUTES


@app.command()
@_user_errors
def doses(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    dose_list: Annotated[str, typer.Option("--doses", help="Comma-separated doses, e.g. 1e5,1e6,1e7,1e8.")],
    per: Annotated[str, typer.Option(help="kg: doses are cells/kg; patient: cells per patient.")] = "kg",
    routes: Annotated[
        str | None,
        typer.Option(help=f"Comma-separated routes to compare ({', '.join(ROUTES)}); default its own."),
    ] = None,
    out: OutOption = Path("infusim-doses"),
) -> None:
    """The therapeutic window: benefit and serious harm over doses (and routes).

    Runs the scenario at each dose (and route) and reports the effect on the condition's primary
    endpoint with its 95% interval and the probability of each serious adverse event: where benefit
    saturates and harm begins. Writes doses.parquet, summary.json and doses.html.
    """
    from infusim import api, io
    from infusim.dose_window import parse_doses
    from infusim.simulation import DISCLAIMER

    chosen = None if routes is None else [r.strip() for r in routes.split(",") if r.strip()]
    found = api.doses(scenario, parse_doses(dose_list), per=per, routes=chosen)
    summary = found.summary

    def write(folder: Path) -> None:
        from infusim.report.doses import render

        io.write_parquet(found.rows, folder / "doses.parquet")
        (folder / "doses.html").write_text(render(summary, found.rows), encoding="utf-8")
        io.write_json(summary, folder / "summary.json")

    folder = io.write_folder(out, write)
    title = f"{escape(summary['scenario_name'])}: therapeutic window"
    if summary["endpoint"]:
        title += f" (effect on {summary['endpoint']} at day {summary['time_d']:g}, {summary['unit']})"
    table = Table(title=title)
    recovery = any((row.get("neutrophil_recovery_median_d") or 0) > 0 for row in summary["rows"])
    columns = ["route", "cells/kg", "effect: posterior mean (95%)", "P(any serious)", "largest serious risk"]
    columns += ["neutrophils >= 0.5e9/L (median day)"] if recovery else []
    for column in columns:
        table.add_column(column, justify="left" if column in ("route", "largest serious risk") else "right")
    for row in summary["rows"]:
        effect = (
            f"{row['effect_mean']:+.3g} ({row['effect_low']:+.3g} to {row['effect_high']:+.3g})"
            + (" *" if row.get("outside_evidence") else "")
            if summary["endpoint"]
            and row.get("effect_mean") is not None
            and row["effect_mean"] == row["effect_mean"]
            else "-"
        )
        serious = {
            k.removeprefix("serious_"): v
            for k, v in row.items()
            if k.startswith("serious_") and k != "serious_any"
        }
        worst = max(serious, key=serious.get)
        cells = [
            row["route"],
            f"{row['dose_cells_per_kg']:.3g}",
            effect,
            f"{row['serious_any']:.2g}",
            f"{worst} {serious[worst]:.2g}" if serious[worst] > 0 else "-",
        ]
        table.add_row(*cells, *([f"{row['neutrophil_recovery_median_d']:.1f}"] if recovery else []))
    console.print(table)
    background = max((row.get("background_serious") or 0.0) for row in summary["rows"])
    if background > 0:
        console.print(
            f"[dim]Without cells, the condition's own serious events (background_*) over the same time: "
            f"{background:.2g}, the same at every dose and not counted above.[/dim]"
        )
    scales = summary["dose_scales"]
    if len(set(scales)) > 1:
        console.print(
            f"[dim]cells/kg is administration.dose; the schedule's {len(scales)} administrations get it "
            f"times {', '.join(f'{s:g}' for s in scales)}.[/dim]"
        )
    if any(row.get("outside_evidence") for row in summary["rows"]):
        console.print(
            "[dim]* outside the doses, routes or products of the condition's trials: an extrapolation.[/dim]"
        )
    console.print(f"[dim]{DISCLAIMER}[/dim]")
    console.print(
        f"Output folder: [bold]{escape(str(folder))}[/bold] (doses.parquet, summary.json, doses.html)"
    )


@app.command()
@_user_errors
def regulatory(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    jurisdiction: Annotated[
        list[str] | None,
        typer.Option(
            "--jurisdiction", help="US, EU, UK, JP, KR, IN, CA, AU, CN or NZ (repeatable). Default: all."
        ),
    ] = None,
) -> None:
    """Regulatory status of the scenario's use in each jurisdiction, with sources.

    What is approved for the scenario's product, route and condition in each jurisdiction, under which
    framework, and whether the scenario is an approved, conditional, withdrawn or investigational use.
    """
    from infusim import regulatory as rules
    from infusim.scenario import load

    chosen = [rules.check_jurisdiction(j) for j in jurisdiction] if jurisdiction else None
    loaded = load(scenario)
    found = rules.statuses(loaded, chosen)
    product = loaded.product
    what = f"{product.donor} {product.cell_type} from {product.tissue_source}, {loaded.administration.route}"
    if loaded.condition and loaded.condition.name:
        what += f", for {loaded.condition.name}"
    table = Table(title=f"{escape(loaded.name)}: regulatory status ({escape(what)})", show_lines=True)
    for column in ("where", "status", "why", "framework"):
        table.add_column(column)
    for s in found:
        table.add_row(
            f"{s.jurisdiction} ({rules.JURISDICTIONS[s.jurisdiction]})",
            s.status,
            escape(s.reason),
            escape(s.framework.name) if s.framework else "-",
        )
    console.print(table)
    sources = sorted({url for s in found for url in s.to_dict()["sources"]})
    if sources:
        console.print("Sources:", highlight=False)
        for url in sources:
            console.print(f"  {escape(url)}", highlight=False, soft_wrap=True)
    console.print(
        f"[dim]Tables checked {rules.CHECKED} (newest source {rules.NEWEST_SOURCE}); src/infusim/data/"
        f"regulatory_*.csv. {rules.NOTE}[/dim]"
    )
