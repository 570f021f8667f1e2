"""`infusim doses`: the therapeutic window of a scenario (benefit and harm over doses and routes)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from infusim.cli.common import OutOption, _user_errors, app, console


@app.command()
@_user_errors
def doses(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    dose_list: Annotated[str, typer.Option("--doses", help="Comma-separated doses, e.g. 1e5,1e6,1e7,1e8.")],
    per: Annotated[str, typer.Option(help="kg: doses are cells/kg; patient: cells per patient.")] = "kg",
    routes: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated routes to compare (intravenous, intra_arterial, local); default its own."
        ),
    ] = None,
    out: OutOption = Path("infusim-doses"),
) -> None:
    """Run the scenario at each dose (and route) and report the effect on the condition's primary
    endpoint with its 95% interval and the probability of each serious adverse event: where benefit
    saturates and harm begins. Writes doses.parquet, summary.json and doses.html.
    """
    import yaml

    from infusim import __version__, io
    from infusim import doses as analysis
    from infusim.compartments import ROUTES
    from infusim.errors import ScenarioError
    from infusim.scenario import load
    from infusim.simulation import DISCLAIMER

    if per not in ("kg", "patient"):
        raise ScenarioError("--per", f"{per!r}; allowed: kg, patient")
    values = analysis.parse_doses(dose_list)
    chosen = None
    if routes is not None:
        chosen = [r.strip() for r in routes.split(",") if r.strip()]
        unknown = [r for r in chosen if r not in ROUTES]
        if unknown or not chosen:
            raise ScenarioError("--routes", f"{routes!r}; allowed: {', '.join(ROUTES)}")
    loaded = load(scenario)
    spec = yaml.safe_load(scenario.read_text(encoding="utf-8"))
    found = analysis.window(spec, values, per_kg=per == "kg", routes=chosen)
    summary = {
        "infusim_version": __version__,
        "scenario_name": loaded.name,
        "disclaimer": DISCLAIMER,
        "endpoint": found.endpoint,
        "unit": found.unit,
        "time_d": found.time_d,
        "rows": found.rows.to_dict("records"),
    }

    def write(folder: Path) -> None:
        from infusim.report.doses import render

        io.write_parquet(found.rows, folder / "doses.parquet")
        (folder / "doses.html").write_text(render(summary, found.rows), encoding="utf-8")
        io.write_json(summary, folder / "summary.json")

    folder = io.write_folder(out, write)
    title = f"{escape(loaded.name)}: therapeutic window"
    if found.endpoint:
        title += f" (effect on {found.endpoint} at day {found.time_d:g}, {found.unit})"
    table = Table(title=title)
    for column in ("route", "cells/kg", "effect (95% interval)", "P(any serious)", "largest serious risk"):
        table.add_column(column, justify="left" if column in ("route", "largest serious risk") else "right")
    for row in summary["rows"]:
        effect = (
            f"{row['effect_mean']:+.3g} ({row['effect_low']:+.3g} to {row['effect_high']:+.3g})"
            + (" *" if row.get("outside_evidence") else "")
            if found.endpoint and row["effect_mean"] == row["effect_mean"]
            else "-"
        )
        serious = {
            k.removeprefix("serious_"): v
            for k, v in row.items()
            if k.startswith("serious_") and k != "serious_any"
        }
        worst = max(serious, key=serious.get)
        table.add_row(
            row["route"],
            f"{row['dose_cells_per_kg']:.3g}",
            effect,
            f"{row['serious_any']:.2g}",
            f"{worst} {serious[worst]:.2g}" if serious[worst] > 0 else "-",
        )
    console.print(table)
    if any(row.get("outside_evidence") for row in summary["rows"]):
        console.print(
            "[dim]* outside the doses, routes or products of the condition's trials: an extrapolation.[/dim]"
        )
    console.print(f"[dim]{DISCLAIMER}[/dim]")
    console.print(
        f"Output folder: [bold]{escape(str(folder))}[/bold] (doses.parquet, summary.json, doses.html)"
    )
