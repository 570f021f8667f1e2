"""Command line: a thin layer over the Python API (parse arguments, call, print with rich).

Every user error prints one line ``error: <field>: <what is wrong and what is allowed>`` and exits
with status 2; nothing half-written is left looking complete.
"""

from __future__ import annotations

import functools
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from infusim import __version__
from infusim.errors import InfusimError

app = typer.Typer(
    name="infusim",
    help=(
        "Simulate stem cell infusion therapy: where infused cells go in a human, mouse or rat, and what "
        "live-cell, DNA and radiolabel measurements would show. Research use only; not medical advice."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
#: Tables are read in terminals and in logs; off a terminal use a width that keeps rows whole.
console = Console(width=None if sys.stdout.isatty() else 140)
errors = Console(stderr=True)

DEMO_EXAMPLE = "msc-iv-human.yaml"


def _user_errors(command):
    """Turn ``InfusimError`` into one line on stderr and exit status 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except InfusimError as exc:
            errors.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        console.print(f"infusim {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """infusim command line."""


OutOption = Annotated[
    Path,
    typer.Option(
        "--out",
        "-o",
        help="Output folder. Created if missing; an earlier infusim output there is replaced, "
        "anything else is refused.",
    ),
]


@app.command()
@_user_errors
def simulate(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file (see README, 'Scenario file').")],
    out: OutOption,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the output folder.")] = False,
    report: Annotated[bool, typer.Option(help="Also write report.html (self-contained).")] = True,
) -> None:
    """Simulate one patient and write cells.parquet, observations.parquet, summary.json and report.html.

    cells.parquet: live cells per compartment and dead cells by cause at each output time.
    observations.parquet: what live-cell assays, human-DNA qPCR and the radiolabel (simulation.label)
    would measure at the same times. summary.json: dose, mass balance, live fraction of dose per
    compartment, version, scenario hash, seed and the sources of the parameters used.
    """
    _run(scenario, out, quiet, report)


@app.command()
@_user_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("infusim-demo"),
) -> None:
    """Run the bundled example (intravenous MSCs in a 70 kg adult with a heart injury)."""
    example = Path(str(resources.files("infusim") / "examples" / DEMO_EXAMPLE))
    console.print(f"Running the bundled example {example.name}")
    _run(example, out, quiet=False, report=True)


@app.command()
@_user_errors
def validate(
    cases: Annotated[
        list[Path] | None, typer.Argument(help="Case folders (scenario.yaml, observations.csv, case.yaml).")
    ] = None,
    cases_root: Annotated[
        Path | None, typer.Option("--cases", help="A folder whose sub-folders are cases.")
    ] = None,
    out: OutOption = Path("infusim-validation"),
    strict: Annotated[
        bool, typer.Option(help="Exit with status 1 if a prediction case misses its tolerance.")
    ] = False,
    evidence_file: Annotated[
        Path | None,
        typer.Option("--evidence", help="Controlled-trial table (docs/conditions.md); default: bundled."),
    ] = None,
    cross_validate: Annotated[
        bool,
        typer.Option(
            "--cross-validate",
            help="Refit each condition leaving out one study at a time and score the held-out study.",
        ),
    ] = False,
) -> None:
    """Hold the model against published measurements (the bundled suite when no case is given).

    Writes validation.json (per case: n, AAFE, share within 2-fold and 3-fold, largest fold error,
    whether the case's study informed the fit, and its points; every controlled-trial estimate with a
    95% prediction interval) and validation.html (observed points over predicted curves, forest
    plots). A bad case folder is reported with its reason; the other cases still run. Case format:
    docs/validation.md.
    """
    from infusim import crossval, evidence, io
    from infusim import validate as validation
    from infusim.report.validation import render

    for path in cases or []:
        if not Path(path).exists():
            raise InfusimError("cases", f"{path} does not exist (give case folders)")
    rows = []
    if evidence_file is not None or not (cases or cases_root):
        rows = evidence.load(evidence_file)
    results = validation.validate(validation.case_dirs(cases, cases_root))
    points = crossval.in_sample(rows) if evidence_file is None and rows else {}
    scores = None
    if cross_validate and rows:
        console.print("Cross-validating: one refit per study (a few minutes)...", highlight=False)
        scores = crossval.cross_validate(rows)

    def write(folder: Path) -> None:
        summary = validation.summary(results, points, scores)
        io.write_json(summary, folder / "validation.json")
        (folder / "validation.html").write_text(render(results, summary), encoding="utf-8")

    folder = io.write_folder(out, write)
    _print_validation(results)
    if points:
        _print_evidence(points)
    if scores:
        _print_cross_validation(scores)
    console.print(f"Output folder: [bold]{escape(str(folder))}[/bold] (validation.json, validation.html)")
    misses = [r for r in results if not r.calibration and not r.passed]
    if strict and misses:
        raise typer.Exit(1)


@app.command()
@_user_errors
def calibrate(
    cases: Annotated[list[Path], typer.Argument(help="Case folders to fit (observations.csv of each).")],
    parameter: Annotated[
        list[str],
        typer.Option("--parameter", "-p", help="Parameter to fit, as name[scope] of data/*.csv (repeat)."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="YAML file for the fitted values.")] = Path(
        "params.yaml"
    ),
    update_tables: Annotated[
        bool, typer.Option(help="Also write the fitted values into infusim's bundled parameter tables.")
    ] = False,
) -> None:
    """Fit parameters to validation cases (least squares on log fold errors) and report fit quality.

    Writes OUT (fitted values, 95% intervals, start values, cases, the command); with
    --update-tables the values go into the package's data tables with provenance 'calibrated'.
    """
    import yaml

    from infusim.calibrate import fit_cases, parse_parameter
    from infusim.calibrate import update_tables as write_tables
    from infusim.errors import OutputError

    keys = [parse_parameter(p) for p in parameter]
    try:
        fit = fit_cases(cases, keys)
    except ValueError as exc:
        raise InfusimError("--parameter", str(exc)) from None
    command = "infusim calibrate " + " ".join([*(str(c) for c in cases), *(f"-p '{p}'" for p in parameter)])
    record = {
        "command": command,
        "cases": list(fit.cases),
        "observations": fit.n,
        "residual_sd_log": round(fit.residual_sd, 4),
        "parameters": [
            {
                "parameter": v.parameter,
                "scope": v.scope,
                "value": float(f"{v.value:.4g}"),
                "unit": v.unit,
                "ci95": [float(f"{v.low:.4g}"), float(f"{v.high:.4g}")],
                "start": v.start,
            }
            for v in fit.values
        ],
        "aafe_before": {k: round(v, 3) for k, v in fit.aafe_before.items()},
        "aafe_after": {k: round(v, 3) for k, v in fit.aafe_after.items()},
    }
    try:
        out.write_text(yaml.safe_dump(record, sort_keys=False), encoding="utf-8")
    except OSError as exc:
        raise OutputError("--out", f"cannot write {out}: {exc.strerror}") from None
    table = Table(title="fitted parameters")
    for column in ("parameter", "start", "fitted", "95% interval"):
        table.add_column(column)
    for v in fit.values:
        table.add_row(
            f"{v.parameter}[{v.scope}]",
            f"{v.start:.3g}",
            f"{v.value:.3g}",
            f"{v.low:.3g}-{v.high:.3g} {v.unit}",
        )
    console.print(table)
    for name in fit.cases:
        console.print(f"{name}: AAFE {fit.aafe_before[name]:.2f} -> {fit.aafe_after[name]:.2f}")
    if update_tables:
        for row in write_tables(fit, command):
            console.print(f"updated {row}")
    console.print(f"Fitted values: [bold]{escape(str(out))}[/bold]")


def _print_evidence(points: dict) -> None:
    inside = [p["predicted_low"] <= p["observed"] <= p["predicted_high"] for v in points.values() for p in v]
    studies = sum(len({p["study"] for p in v}) for v in points.values())
    console.print(
        f"Clinical evidence: {len(inside)} rows of {studies} studies against their own fit: "
        f"{sum(inside)} inside the 95% prediction interval (in sample; --cross-validate gives "
        "the out-of-sample score).",
        highlight=False,
    )


def _print_cross_validation(scores: dict) -> None:
    table = Table(title="Leave one study out: held-out estimates against their 95% prediction interval")
    for column in ("condition", "studies", "rows", "coverage", "interval score (SMD)", "mean width (SMD)"):
        table.add_column(column, justify="left" if column == "condition" else "right")
    parts = [
        *scores["conditions"].items(),
        ("overall", {"scores": scores["overall"]}),
        ("strictly out of sample", {"scores": scores["strict"]}),
    ]
    for name, found in parts:
        s = found["scores"]
        table.add_row(
            name,
            str(s["studies"]),
            str(s["rows"]),
            f"{s['coverage']:.0%}",
            f"{s['interval_score_smd']:.2f}",
            f"{s['mean_width_smd']:.2f}",
        )
    console.print(table)
    console.print(
        "[dim]strictly out of sample: only studies none of whose numbers informed any parameter row "
        "(a baseline, natural history or population value read in a trial also counts).[/dim]",
        highlight=False,
    )


def _print_validation(results) -> None:
    table = Table(title="infusim validation (AAFE: absolute average fold error)")
    table.add_column("case", overflow="fold", min_width=24)
    for column in ("species", "use", "n", "AAFE", "within 2x", "max fold", "verdict"):
        table.add_column(column, justify="left" if column in ("species", "use", "verdict") else "right")
    for r in results:
        if r.error:
            table.add_row(r.name, "", "", "", "", "", "", f"[red]not run: {r.error}[/red]")
            continue
        verdict = "pass" if r.passed else "[red]miss[/red]"
        use = "fitted" if r.calibration else "prediction"
        table.add_row(
            r.name,
            r.species,
            use,
            str(r.n),
            f"{r.aafe:.2f}",
            f"{r.within_2fold:.0%}",
            f"{r.max_fold_error:.1f}",
            verdict,
        )
    console.print(table)
    console.print(
        "[dim]verdict: pass when AAFE is at most the case's tolerance (2-fold unless the case says "
        "otherwise; a clinical effect row only inside its study's 95% CI).[/dim]",
        highlight=False,
    )


def _run(scenario_path: Path, out: Path, quiet: bool, report: bool) -> None:
    from infusim import io
    from infusim.scenario import load
    from infusim.simulation import DISCLAIMER, simulate

    scenario = load(scenario_path)
    for warning in scenario.warnings():
        errors.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    result = simulate(scenario)

    def write(folder: Path) -> None:
        io.write_parquet(result.cells, folder / "cells.parquet")
        io.write_parquet(result.observations, folder / "observations.parquet")
        if len(result.endpoints):
            io.write_parquet(result.endpoints, folder / "endpoints.parquet")
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
    if result.summary["endpoints"]:
        _print_endpoints(result)
    console.print(f"[dim]{DISCLAIMER}[/dim]")
    console.print(f"Output folder: [bold]{escape(str(folder))}[/bold]")
    if report:
        console.print(f"Report: [bold]{escape(str(folder / 'report.html'))}[/bold]")


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
        f"dose {summary['dose_cells']:.3g} cells ({summary['dose_cells_per_kg']:.3g} cells/kg) "
        f"x {summary['doses']}; "
        f"mass balance error {summary['mass_balance_max_rel_error']:.1e}"
    )


def _print_endpoints(result) -> None:
    effects = result.summary["endpoints"]
    table = Table(
        title=f"{result.summary['condition']}: treated vs untreated twin (effect = treated - untreated)"
    )
    for column in ("endpoint", "time", "untreated", "treated", "effect", "95% interval", "unit"):
        table.add_column(column, justify="left" if column in ("endpoint", "unit") else "right")
    for time_key, endpoints in effects.items():
        hours = float(time_key.split()[0])
        for name, values in endpoints.items():
            band = "n/a" if values.get("low") is None else f"{values['low']:+.3g} to {values['high']:+.3g}"
            table.add_row(
                name,
                _time_label(hours),
                f"{values['untreated']:.3g}",
                f"{values['treated']:.3g}",
                f"{values['effect']:+.3g}",
                band,
                values["unit"],
            )
    console.print(table)
    evidence = result.summary.get("evidence") or {}
    if evidence.get("studies"):
        tau = evidence["tau_smd"]["median"]
        console.print(
            f"[dim]Effect at the posterior median; 95% interval over the posterior of "
            f"{evidence['studies']} controlled studies (between-trial SD {tau:.2f} SMD).[/dim]",
            highlight=False,
        )
    else:
        console.print("[dim]No controlled evidence with a CI: the effect has no interval.[/dim]")
    console.print(f"[dim]{result.summary['endpoint_note']}[/dim]", highlight=False)


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
    p-value; power and assurance over replicates), OUT/report.html and OUT/trial.json. Chunks stream to disk,
    so a run killed part-way continues with --resume. Results do not depend on --workers,
    --scheduler or --chunk-size.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from infusim.parameters import for_scenario
    from infusim.runner import default_chunk_size, run_trial, with_size
    from infusim.scenario import load

    loaded = with_size(load(scenario), patients, replicates)
    for_scenario(loaded)  # a bad parameters override fails here, before any output exists
    total = loaded.trial.patients * loaded.trial.replicates
    columns = (TextColumn("patients"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"))
    shown = errors.is_terminal
    with Progress(*columns, TimeRemainingColumn(), console=errors, transient=True, disable=not shown) as bar:
        task = bar.add_task("trial", total=total)
        summary = run_trial(
            loaded,
            out,
            workers=workers,
            scheduler=scheduler,
            resume=resume,
            chunk_size=chunk_size or default_chunk_size(loaded),
            progress=lambda n: bar.advance(task, n),
        )
    for warning in summary["warnings"]:
        errors.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    if quiet:
        console.print(str(out), markup=False, highlight=False)
        return
    _print_trial(summary)
    console.print(f"[dim]{summary['disclaimer']}[/dim]")
    console.print(f"Output folder: [bold]{escape(str(out))}[/bold] (patients/, summary.json, report.html)")


@app.command()
@_user_errors
def power(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file with a trial section.")],
    n: Annotated[str, typer.Option("--n", help="Total sample sizes, comma-separated (e.g. 20,40,80,160).")],
    replicates: Annotated[
        int, typer.Option("--replicates", "-r", help="Replicate trials per sample size.", min=2)
    ] = 200,
) -> None:
    """Print the power of the primary comparison against total sample size.

    Power: the share of replicate trials in which a treated arm beats control on the primary
    endpoint at the primary visit (two-sided p < 0.05).
    """
    from infusim.parameters import for_scenario
    from infusim.runner import power_curve, with_size
    from infusim.scenario import load

    try:
        sizes = [int(part) for part in n.split(",") if part.strip()]
    except ValueError:
        raise InfusimError("--n", f"{n!r} is not a comma-separated list of integers") from None
    if not sizes or any(size < 2 for size in sizes):
        raise InfusimError("--n", "give sample sizes of at least 2, e.g. 20,40,80")
    loaded = with_size(load(scenario), None, None)
    for_scenario(loaded)
    curve = power_curve(loaded, sizes, replicates)
    trial_spec = loaded.trial
    table = Table(
        title=f"{escape(loaded.name)}: power on {trial_spec.primary.endpoint} at "
        f"{trial_spec.primary.at_h / 24:g} day ({replicates} replicates per size)"
    )
    table.add_column("patients (total)", justify="right")
    arms = [a.name for a in trial_spec.arms if a.name != trial_spec.control.name]
    for arm in arms:
        table.add_column(escape(f"{arm} vs {trial_spec.control.name}: power / assurance"), justify="right")
    for size, result in curve.items():
        table.add_row(
            str(size), *(f"{result[arm]['power']:.0%} / {result[arm]['assurance']:.0%}" for arm in arms)
        )
    console.print(table)
    console.print(
        "[dim]power: at the posterior-median effect; assurance: averaged over the posterior of the "
        "controlled evidence, each replicate with its own trial effect (between-trial SD).[/dim]"
    )
    console.print(
        "[dim]infusim is a research tool. Its results are model predictions for research and teaching, "
        "not advice for any patient.[/dim]"
    )


def _print_trial(summary: dict) -> None:
    primary = summary["primary"]
    unit = primary["unit"]
    visit = f"{primary['visit_day']:g}"
    table = Table(
        title=f"{escape(summary['scenario_name'])}: {primary['endpoint']} at day {visit} "
        f"({summary['patients']} patients, {summary['condition']})"
    )
    for column in ("arm", "n", "mean change or share (95% CI)", "responders", "vs untreated twin"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    for arm in summary["arms"]:
        entry = summary["by_arm"][arm["name"]][primary["endpoint"]]["visits"][visit]
        if "mean_change" in entry:
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
    for arm, result in primary["comparisons"].items():
        if result["difference"] is None:
            continue
        low, high = result["ci95"]
        line = (
            f"{arm} vs {primary['control']}: {result['difference']:+.3g} {unit} "
            f"(95% CI {low:+.3g} to {high:+.3g}), {_p_text(result['p_value'])}"
        )
        if summary["replicates"] > 1:
            line += f"; power {summary['power'][arm]['power']:.0%} over {summary['replicates']} replicates"
            if summary.get("assurance"):
                line += f", assurance {summary['assurance'][arm]['assurance']:.0%}"
        console.print(line)


@app.command(name="export-sbml")
@_user_errors
def export_sbml(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="SBML file to write (.xml).")] = Path("model.xml"),
) -> None:
    """Write the scenario's cell-kinetics model for one patient as SBML Level 3 (validated by libsbml).

    Species are cells per state and size class, reactions first-order transfers (rates in 1/h, time
    in hours), doses initial amounts, events or switched infusions. Use it to run the model in
    another tool (libroadrunner, COPASI, tellurium) or to check infusim independently.
    """
    import os

    from infusim.errors import OutputError
    from infusim.model.kinetics import assemble
    from infusim.sbml import to_sbml, validation_errors
    from infusim.scenario import load

    loaded = load(scenario)
    text = to_sbml(assemble(loaded), model_id=loaded.name)
    problems = validation_errors(text)
    if problems:
        raise InfusimError("sbml", f"libsbml found {len(problems)} errors; first: {problems[0]}")
    partial = out.with_name(f".{out.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise OutputError("--out", f"cannot write {out}: {exc.strerror}") from None
    console.print(
        f"SBML Level 3 model of {escape(loaded.name)}: [bold]{escape(str(out))}[/bold] "
        f"({text.count('<species ')} species, {text.count('<reaction ')} reactions, "
        f"{text.count('<event ')} events; libsbml: no errors)"
    )


@app.command(name="fit-effects")
@_user_errors
def fit_effects(
    out: OutOption = Path("infusim-effects"),
    evidence_file: Annotated[
        Path | None,
        typer.Option("--evidence", help="Controlled-trial table (docs/conditions.md); default: bundled."),
    ] = None,
    condition: Annotated[
        list[str] | None, typer.Option("--condition", "-c", help="Fit only this condition (repeatable).")
    ] = None,
) -> None:
    """Fit each condition's effect parameters to a controlled-trial table (posterior draws, emcee).

    Writes OUT/<condition>.csv (2,000 posterior draws per condition) and OUT/fits.json (command,
    evidence rows, priors, summaries, effective sample sizes, split R-hat). The installed package is
    never changed. About 3 s per condition.
    """
    from infusim import conditions as registry
    from infusim import evidence, io
    from infusim.synthesis import evidence_conditions, write_fits

    rows = evidence.load(evidence_file)
    for name in condition or []:
        if name not in registry.names():
            raise InfusimError(
                "--condition", f"unknown condition {name!r}; allowed: {', '.join(registry.names())}"
            )
        if name not in evidence_conditions(rows):
            raise InfusimError("--condition", f"{name} has no row with an estimate and CI in the evidence")
    command = " ".join(["infusim", "fit-effects", *sys.argv[2:]])
    source = str(evidence_file or "data/evidence.csv")
    records: dict = {}

    def write(folder: Path) -> None:
        records.update(write_fits(folder, rows, condition or None, command=command, source=source))
        io.write_json(
            {
                "infusim_version": __version__,
                "kind": "effect posteriors",
                "command": command,
                "conditions": list(records),
            },
            folder / "summary.json",
        )

    folder = io.write_folder(out, write)
    table = Table(title="Posterior medians and 95% intervals")
    for column in ("condition", "studies", "parameter", "median", "95% interval", "min ESS"):
        table.add_column(column, justify="left" if column in ("condition", "parameter") else "right")
    for name, record in records.items():
        ess = min(record["diagnostics"]["effective_sample_size"].values())
        for parameter, s in record["summary"].items():
            table.add_row(
                name,
                str(record["n_studies"]),
                escape(parameter),
                f"{s['median']:.3g}",
                f"{s['low']:.3g} to {s['high']:.3g}",
                str(ess),
            )
    console.print(table)
    console.print(
        f"Output folder: [bold]{escape(str(folder))}[/bold] (<condition>.csv draws, fits.json, summary.json)"
    )


@app.command(name="parameters")
@_user_errors
def list_parameters(
    grep: Annotated[
        str | None,
        typer.Option("--grep", "-g", help="Only rows whose name, scope, source or note hold WORD."),
    ] = None,
) -> None:
    """List every parameter row with value, unit, provenance and source.

    A scenario can replace any row: parameters: {"loss_rate[msc/lungs]": "0.1 1/h"}.
    """
    from infusim.parameters import bundled

    rows = sorted(bundled().entries.values(), key=lambda e: (e.table, e.parameter, e.scope))
    if grep:
        word = grep.lower()
        rows = [e for e in rows if any(word in x.lower() for x in (e.parameter, e.scope, e.source, e.note))]
    table = Table(title=f"Parameters ({len(rows)} rows)")
    for column in ("name[scope]", "value", "unit", "provenance", "source", "table"):
        table.add_column(escape(column), justify="right" if column == "value" else "left", overflow="fold")
    for e in rows:
        name = f"{e.parameter}[{e.scope}]" if e.scope else e.parameter
        table.add_row(escape(name), f"{e.value:.4g}", e.unit, e.provenance, e.source, e.table)
    console.print(table)


@app.command(name="conditions")
@_user_errors
def list_conditions() -> None:
    """List the conditions infusim models: endpoints, units, potencies with 95% intervals, evidence."""
    from infusim import conditions, evidence, posterior
    from infusim.parameters import bundled

    params = bundled()
    trials = evidence.load()
    table = Table(title="Conditions (condition.name in a scenario)", show_lines=True)
    table.add_column("name", no_wrap=True)
    for column in ("area / site", "endpoints (unit)", "potency (95% interval)", "evidence", "sources"):
        table.add_column(column, overflow="fold")
    for info in conditions.registry().values():
        endpoints = "\n".join(f"{e.name} ({e.unit}){' *' if e.primary else ''}" for e in info.endpoints)
        mechanisms, sources = [], set()
        fitted = posterior.load(info.name)
        summary = fitted.record.get("summary", {}) if fitted else {}
        for mechanism in info.mechanisms:
            entry = params.entry("potency", f"{info.name}/{mechanism}")
            band = summary.get(f"potency[{info.name}/{mechanism}]")
            text = f"{mechanism}: {entry.value:.3g}"
            text += f" ({band['low']:.2g}-{band['high']:.2g})" if band else f" ({entry.provenance})"
            mechanisms.append(text)
            sources.add(entry.source)
        if fitted:
            record = fitted.record
            sources |= {r.source_key for r in trials if r.study in set(record["studies"])}
            tau = summary["tau_smd"]
            evidence = (
                f"{record['n_studies']} studies, {record['n_rows']} rows; tau {tau['median']:.2f} "
                f"({tau['low']:.2g}-{tau['high']:.2g}) SMD"
            )
            k = next((v for n, v in summary.items() if n.startswith("half_saturation")), None)
            if k:
                evidence += f"; K {k['median']:.2g} ({k['low']:.2g}-{k['high']:.2g})"
        else:
            evidence = "no controlled estimate with a CI: not fitted"
        for endpoint in info.endpoints:
            sources.add(params.entry("annual_change", f"{info.name}/{endpoint.name}").source)
        table.add_row(
            info.name,
            f"{info.area} / {info.site}",
            endpoints,
            "\n".join(mechanisms),
            evidence,
            ", ".join(sorted(sources)),
        )
    console.print(table)
    console.print(
        "* primary endpoint. Potency: improvement of the primary endpoint at full response, posterior "
        "median and 95% interval of the fit to all controlled trials (docs/conditions.md); tau: "
        "between-trial SD in standardised mean difference units."
    )


def _p_text(p: float | None) -> str:
    """'p = 0.031', or 'p < 1e-16' where the value underflows (never 'p = 0')."""
    if p is None:
        return "p n/a"
    return "p < 1e-16" if p < 1e-16 else f"p = {p:.2g}"


def _time_label(hours: float) -> str:
    """'5 min', '24 h', '7 d': the unit a reader expects for each time scale."""
    if hours < 1:
        return f"{hours * 60:.3g} min"
    if hours < 72:
        return f"{hours:.3g} h"
    return f"{hours / 24:.4g} d"


def _percent(value: float) -> str:
    percent = 100 * value
    if percent == 0:
        return "0"
    if percent < 0.01:
        return f"{percent:.1e}"
    return f"{percent:.2f}"


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
