"""`infusim sensitivity`: which parameter rows a scenario's outputs depend on (SALib)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from infusim.cli.common import OutOption, _user_errors, app, console


@app.command()
@_user_errors
def sensitivity(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    output: Annotated[
        list[str],
        typer.Option(
            "--output",
            help="quantity:where@time, repeatable: live_cells:lungs@24 h, live_fraction:target@7 day, "
            "dead_cells:all@24 h, radiolabel:lungs@2 h, dna:liver@24 h, effect:lvef@180 day. With a "
            "condition the site's name is its healthy part and target the injured part; heart+target "
            "is the whole heart.",
        ),
    ],
    out: OutOption = Path("infusim-sensitivity"),
    method: Annotated[
        str, typer.Option(help="sobol (first-order and total indices) or morris (mu*).")
    ] = "sobol",
    n: Annotated[
        int, typer.Option("--n", help="Sobol base sample (a power of 2) or Morris trajectories.")
    ] = 1024,
    parameters: Annotated[
        list[str] | None,
        typer.Option(
            "--parameters", help="Glob on name[scope] (repeatable), e.g. 'loss_rate*'. Default: all."
        ),
    ] = None,
    workers: Annotated[int, typer.Option(help="Processes evaluating the design.")] = 1,
    top: Annotated[int, typer.Option(help="Rows printed per output.")] = 10,
) -> None:
    """Global sensitivity of outputs to the parameter rows the scenario reads (SALib).

    Every row the scenario reads varies over the central 95% of its prior. Writes
    sensitivity.parquet (parameter, output, first-order and total indices or mu*, their 95% CI
    half-widths, the prior range), summary.json and sensitivity.html (top ten per output).
    """
    from infusim import api, io
    from infusim.simulation import DISCLAIMER

    found = api.sensitivity(
        scenario, output, method=method, n=n, parameters=tuple(parameters or ()), workers=workers
    )
    result, summary, rankings = found.analysis, found.summary, found.rankings
    outputs = result.outputs

    def write(folder: Path) -> None:
        from infusim.report.sensitivity import render

        io.write_parquet(result.table, folder / "sensitivity.parquet")
        (folder / "sensitivity.html").write_text(render(summary, rankings), encoding="utf-8")
        io.write_json(summary, folder / "summary.json")

    folder = io.write_folder(out, write)
    console.print(
        f"{method.capitalize()}: {result.evaluations:,} evaluations of {len(result.priors)} parameter rows "
        f"in {result.seconds:.1f} s",
        highlight=False,
    )
    key = "total" if method == "sobol" else "mu_star"
    for j, o in enumerate(outputs):
        table = Table(title=f"{o.text} ({o.unit}): {result.base[j]:.4g} at table values")
        table.add_column("parameter")
        table.add_column("total" if method == "sobol" else "mu*", justify="right")
        table.add_column("first order" if method == "sobol" else "sigma", justify="right")
        table.add_column("prior 95%", justify="right")
        for row in rankings[o.text][:top]:
            other = (
                f"{row['first_order']:.3f} ± {row['first_order_conf']:.3f}"
                if method == "sobol"
                else f"{row['sigma']:.3g}"
            )
            table.add_row(
                escape(row["parameter"]),
                f"{row[key]:.3g} ± {row[key + '_conf']:.2g}",
                other,
                f"{row['prior_low']:.3g}-{row['prior_high']:.3g} {escape(row['unit'])}",
            )
        console.print(table)
    console.print(f"[dim]{DISCLAIMER}[/dim]")
    console.print(f"Output folder: [bold]{escape(str(folder))}[/bold]")
