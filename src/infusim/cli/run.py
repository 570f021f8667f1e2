"""`infusim simulate` and `infusim demo`: one patient end to end, printed and written."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from infusim import engraftment, safety
from infusim.cli.common import (
    DEMO_EXAMPLE,
    OutOption,
    _percent,
    _time_label,
    _user_errors,
    app,
    console,
    errors,
)
from infusim.simulation import doses_text, effect_texts


@app.command()
@_user_errors
def simulate(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file (see README, 'Scenario file').")],
    out: OutOption,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the output folder.")] = False,
    report: Annotated[bool, typer.Option(help="Also write report.html (self-contained).")] = True,
    uncertainty: Annotated[
        int,
        typer.Option(
            help="Parameter sets drawn from the priors of every row used (posteriors for fitted effects); "
            "adds a 95% band to every output (uncertainty.parquet). 0: off.",
            min=0,
        ),
    ] = 0,
) -> None:
    """Simulate one patient and write cells.parquet, observations.parquet, summary.json and report.html.

    cells.parquet: live cells per compartment and dead cells by cause at each output time.
    exposure.parquet: per compartment the peak of live cells and its time, the area under the curve
    (live cell-days), the cell-days per cell given and the half-life at the end.
    observations.parquet: what live-cell assays, human-DNA qPCR and the radiolabel (simulation.label)
    would measure at the same times. adverse_events.parquet: the adverse events drawn for the patient
    (docs/safety.md). summary.json: dose, mass balance, live fraction of dose per compartment, each
    adverse event's probability, the regulatory status by jurisdiction, version, scenario hash, seed
    and the sources of the parameters used.
    """
    _run(scenario, out, quiet, report, uncertainty)


@app.command()
@_user_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("infusim-demo"),
) -> None:
    """Run the bundled example (intravenous MSCs in a 70 kg adult with a heart injury)."""
    example = Path(str(resources.files("infusim") / "examples" / DEMO_EXAMPLE))
    console.print(f"Running the bundled example {example.name}")
    _run(example, out, quiet=False, report=True)


def _run(scenario_path: Path, out: Path, quiet: bool, report: bool, uncertainty: int = 0) -> None:
    from infusim import io
    from infusim.scenario import load
    from infusim.simulation import DISCLAIMER, simulate

    scenario = load(scenario_path)
    for warning in scenario.warnings():
        errors.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    result = simulate(scenario, uncertainty=uncertainty)

    def write(folder: Path) -> None:
        import yaml

        from infusim.scenario_spec import to_spec

        text = yaml.safe_dump(to_spec(scenario), sort_keys=False, allow_unicode=True)
        (folder / "scenario.yaml").write_text(text, encoding="utf-8")
        io.write_parquet(result.cells, folder / "cells.parquet")
        io.write_parquet(result.observations, folder / "observations.parquet")
        io.write_parquet(result.adverse_events, folder / "adverse_events.parquet")
        io.write_parquet(result.exposure, folder / "exposure.parquet")
        if len(result.endpoints):
            io.write_parquet(result.endpoints, folder / "endpoints.parquet")
        if result.summary["uncertainty"]:
            io.write_parquet(
                pd.DataFrame(result.summary["uncertainty"]["rows"]), folder / "uncertainty.parquet"
            )
        if report:
            from infusim.report.html import render

            (folder / "report.html").write_text(render(result), encoding="utf-8")
        io.write_json(result.summary, folder / "summary.json")

    folder = io.write_folder(out, write)
    for warning in result.summary["warnings"][len(scenario.warnings()) :]:
        errors.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    if quiet:
        console.print(str(folder))
        return
    _print_summary(result)
    _print_exposure(result.exposure, result.summary["uncertainty"])
    if result.summary["uncertainty"]:
        _print_bands(result.summary)
    if result.summary["endpoints"]:
        _print_endpoints(result)
    _print_adverse_events(result.summary["adverse_events"], result.summary.get("uncertainty"))
    console.print(f"[dim]{DISCLAIMER}[/dim]")
    console.print(f"Output folder: [bold]{escape(str(folder))}[/bold]")
    if report:
        console.print(f"Report: [bold]{escape(str(folder / 'report.html'))}[/bold]")


#: Compartments shown in the exposure table (by live cell-days; exposure.parquet has all).
EXPOSURE_ROWS = 8


def _short_time(hours: float) -> str:
    """A time to three significant digits: '42 s', '5.2 min', '25.6 h', '45.8 d'."""
    for unit, size, below in (("s", 1 / 3600, 1 / 60), ("min", 1 / 60, 1), ("h", 1, 72)):
        if hours < below:
            return f"{hours / size:.3g} {unit}"
    return f"{hours / 24:.3g} d"


def _print_exposure(table: pd.DataFrame, found: dict | None) -> None:
    shown = table.head(EXPOSURE_ROWS)
    out = Table(title="Exposure to live cells (to the end of the simulation)")
    bands = {r["where"]: r for r in (found or {}).get("rows", []) if r["quantity"] == "live_cell_days"}
    columns = ["compartment", "peak cells", "at", "live cell-days"]
    columns += ["95% band, all parameters"] if bands else []
    for column in (*columns, "per g", "days per cell given", "half-life at end"):
        out.add_column(column, justify="left" if column == "compartment" else "right")
    for row in shown.itertuples():
        band = bands.get(row.compartment)
        extra = [f"{band['low']:.3g} to {band['high']:.3g}" if band else "-"] if bands else []
        half = row.half_life_at_end_h
        out.add_row(
            row.compartment,
            f"{row.peak_cells:.3g}",
            _short_time(row.peak_time_h),
            f"{row.live_cell_days:.3g}",
            *extra,
            "-" if row.live_cell_days_per_g is None else f"{row.live_cell_days_per_g:.3g}",
            f"{row.days_per_cell_given:.3g}",
            "-" if half is None or half != half else _short_time(half),
        )
    console.print(out)
    console.print(
        f"[dim]Top {len(shown)} of {len(table)} by live cell-days (all: exposure.parquet). Peak: largest "
        "live cells on a dense grid; per g: live cell-days per gram of the compartment; days per cell "
        "given: live cell-days over all cells given; half-life at end: ln 2 over the rate the compartment "
        "is losing cells at the end.[/dim]"
    )


def _print_summary(result) -> None:
    summary = result.summary
    fractions = summary["live_fraction_of_dose"]
    times = list(fractions)
    compartments = sorted(
        {c for values in fractions.values() for c in values},
        key=lambda c: -max(values.get(c, 0.0) for values in fractions.values()),
    )
    table = Table(title=f"{escape(summary['scenario_name'])}: live cells, % of cells given", show_lines=False)
    table.add_column("compartment")
    for hours in summary["output_times_h"]:
        table.add_column(_time_label(hours), justify="right")
    for compartment in compartments:
        table.add_row(compartment, *(_percent(fractions[t].get(compartment, 0.0)) for t in times))
    table.add_section()
    for cause in next(iter(summary["dead_fraction_of_dose"].values())):
        table.add_row(cause, *(_percent(summary["dead_fraction_of_dose"][t][cause]) for t in times))
    console.print(table)
    console.print(
        f"dose {doses_text(summary)}; mass balance error {summary['mass_balance_max_rel_error']:.1e}"
    )


def _band(row: dict | None) -> str:
    return "n/a" if row is None else f"{row['low']:+.3g} to {row['high']:+.3g}"


def _banded(row: dict) -> str:
    return f"{_percent(row['median'])} ({_percent(row['low'])}-{_percent(row['high'])})"


def _print_bands(summary: dict) -> None:
    """Live cells per compartment, % of cells given: median (95% band) over the parameter draws."""
    found = summary["uncertainty"]
    rows = [r for r in found["rows"] if r["quantity"] == "live_fraction"]
    times = sorted({r["time_h"] for r in rows})
    by = {(r["where"], r["time_h"]): r for r in rows}
    order = sorted({r["where"] for r in rows}, key=lambda c: -max(by[(c, t)]["median"] for t in times))
    table = Table(
        title=f"Parameter uncertainty ({found['draws']} draws of {found['parameters_varied']} rows): "
        "live cells, % of cells given, median (95% band)"
    )
    table.add_column("compartment")
    for t in times:
        table.add_column(_time_label(t), justify="right")
    for c in order[:8]:
        table.add_row(
            c,
            *(_banded(by[(c, t)]) for t in times),
        )
    console.print(table)
    console.print("[dim]All compartments, dead cells and effects: uncertainty.parquet.[/dim]")


def _print_endpoints(result) -> None:
    effects = result.summary["endpoints"]
    table = Table(
        title=f"{result.summary['condition']}: treated vs untreated twin (effect = treated - untreated)"
    )
    found = result.summary.get("uncertainty")
    bands = {
        (r["where"], _time_label(r["time_h"])): r
        for r in (found or {}).get("rows", [])
        if r["quantity"] == "effect"
    }
    columns = ["endpoint", "time", "untreated", "treated", "effect at posterior median", "95% interval"]
    columns += ["new trial, 95%"]
    columns += ["95% band, all parameters"] if bands else []
    for column in (*columns, "unit"):
        table.add_column(column, justify="left" if column in ("endpoint", "unit") else "right")
    for time_key, endpoints in effects.items():
        for name, values in endpoints.items():
            table.add_row(
                name,
                time_key,
                f"{values['untreated']:.3g}",
                f"{values['treated']:.3g}",
                *effect_texts(values),
                *([_band(bands.get((name, time_key)))] if bands else []),
                values["unit"],
            )
    console.print(table)
    evidence = result.summary.get("evidence") or {}
    if evidence.get("studies"):
        tau = evidence["tau_smd"]["median"]
        console.print(
            f"[dim]Effect at the posterior median; 95% interval over the posterior of "
            f"{evidence['studies']} controlled {'study' if evidence['studies'] == 1 else 'studies'} "
            f"(the average effect: positive, since cells cannot harm in the model); new trial: with the "
            f"between-trial SD the fit found ({tau:.2f} SMD), where an unbiased new trial's true effect "
            "may lie (it adds that SD at every visit, as the fit does, so it overstates the spread "
            "before cells act).[/dim]",
            highlight=False,
        )
    else:
        console.print(
            "[dim]No controlled evidence with a CI: the effect is not estimated (the potency row is a "
            "placeholder 0, not a measured null).[/dim]"
        )
    console.print(f"[dim]{result.summary['endpoint_note']}[/dim]", highlight=False)


def _print_adverse_events(found: dict, uncertainty: dict | None = None) -> None:
    """Each event's probability over the simulation for this patient (all grades and serious); with
    ``--uncertainty``, the serious probability's 95% band over the parameter draws."""
    bands = safety.event_bands(uncertainty)
    table = Table(title="Adverse events: probability over the simulation (this patient)")
    numbers = ("any grade", "serious (grade 3-5)", *(["serious, 95% band"] if bands else []))
    for column in ("event", *numbers, "basis"):
        table.add_column(column, justify="right" if column in numbers else "left")
    for name, row in found["events"].items():
        table.add_row(
            name,
            safety.probability_text(row["probability"]),
            safety.serious_text(row),
            *([bands.get(("serious_event_probability", name), "-")] if bands else []),
            escape(row["basis"]),
        )
    console.print(table)
    load = found.get("lung_load")
    if load:
        console.print(
            f"[dim]Peak lung load {load['peak_cells_per_g']:.3g} cells/g = "
            f"{load['share_of_lethal']:.2%} of the lethal load (Kwon 2024a bolus in mice). "
            "Events drawn for this patient: adverse_events.parquet.[/dim]"
        )
    if found.get("neutrophil_recovery"):
        console.print(f"[dim]{escape(engraftment.sentence(found['neutrophil_recovery']))}[/dim]")
    brain = found.get("brain_load")
    if brain:
        console.print(
            f"[dim]Peak brain load {brain['peak_cells_per_g']:.3g} cells/g = "
            f"{brain['share_of_stroke_load']:.2%} of the load that gave half the rats a stroke "
            "(Janowski 2013, intracarotid MSC).[/dim]"
        )
