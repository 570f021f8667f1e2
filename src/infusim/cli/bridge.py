"""`infusim bridge`: carry a dose from one species to another by matched exposure."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from infusim.cli.common import OutOption, _user_errors, app, console


@app.command()
@_user_errors
def bridge(
    source: Annotated[Path, typer.Argument(help="Scenario the dose comes from (usually the animal study).")],
    to: Annotated[
        Path, typer.Argument(help="Scenario to carry it to (usually the patient); its dose is the template.")
    ],
    output: Annotated[
        list[str] | None,
        typer.Option(
            "--output",
            help="live_cells:where@time to match, repeatable (default live_cells:target@7 day; target: "
            "the injured part); e.g. also live_cells:lungs@1 h for the lung load.",
        ),
    ] = None,
    measure: Annotated[
        str, typer.Option(help="at: cells at that time; auc: their integral from the first dose.")
    ] = "at",
    per_gram: Annotated[
        bool,
        typer.Option("--per-gram/--total", help="Match cells per gram of the compartments, or in total."),
    ] = True,
    uncertainty: Annotated[int, typer.Option(help="Parameter draws for the 95% intervals (0: none).")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the parameter draws.")] = 1,
    out: OutOption = Path("infusim-bridge"),
) -> None:
    """Carry a dose between species: the dose that matches the source's exposure, beside per-kg and
    body-surface scaling.

    The cell kinetics are linear in the dose, so a matched dose is the template dose times the ratio
    of exposures. Writes summary.json and bridge.html.
    """
    from infusim import api, io
    from infusim.simulation import DISCLAIMER

    found = api.bridge(
        source,
        to,
        output or ["live_cells:target@7 day"],
        measure=measure,
        per_gram=per_gram,
        uncertainty=uncertainty,
        seed=seed,
    )
    summary = found.summary

    def write(folder: Path) -> None:
        io.write_json(summary, folder / "summary.json")
        found.write_report(folder / "bridge.html")

    folder = io.write_folder(out, write)
    how = ("integral to that time" if measure == "auc" else "at that time") + (
        ", per gram" if per_gram else ""
    )
    console.print(
        f"{escape(summary['source_scenario'])} ({summary['source_species']}): "
        f"{summary['source_dose_cells']:.3g} cells ({summary['source_dose_cells_per_kg']:.3g}/kg); "
        f"live cells {how}:",
        highlight=False,
    )
    table = Table(
        title=f"Dose per administration for {escape(summary['to_scenario'])} ({summary['to_weight_kg']:g} kg)"
    )
    for column in ("rule", "source exposure", "cells", "cells/kg", "95% interval, cells/kg", "x per-kg dose"):
        table.add_column(column, justify="left" if column == "rule" else "right")
    for d in summary["doses"]:
        interval = d["interval_cells_per_kg"]
        table.add_row(
            escape(d["rule"]),
            f"{d['source_exposure']:.3g} {escape(d['exposure_unit'])}" if "output" in d else "",
            f"{d['dose_cells']:.3g}",
            f"{d['dose_cells_per_kg']:.3g}",
            "" if interval is None else f"{interval[0]:.3g} to {interval[1]:.3g}",
            f"{d['ratio_to_per_kg']:.3g}",
        )
    console.print(table)
    for d in summary["doses"]:
        if d.get("drivers"):
            top = ", ".join(f"{escape(x['parameter'])} ({x['spearman']:+.2f})" for x in d["drivers"][:3])
            console.print(f"{escape(d['output'])}: the interval rests most on {top}.", highlight=False)
    if summary["differences"]:
        console.print(
            "The scenarios also differ in "
            + escape("; ".join(summary["differences"]))
            + ": the matched dose carries that too.",
            highlight=False,
        )
    console.print("Matching assumes a cell does the same in both species (docs/model.md, Carrying a dose).")
    console.print(f"[dim]{DISCLAIMER}[/dim]")
    console.print(f"Output folder: [bold]{escape(str(folder))}[/bold]")
