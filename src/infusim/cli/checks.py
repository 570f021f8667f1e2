"""`infusim validate` and `infusim calibrate`: the model against published measurements."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from infusim.cli.common import (
    OutOption,
    _user_errors,
    app,
    console,
)
from infusim.errors import InfusimError


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
    95% prediction interval), points.parquet and curves.parquet (every observation against its
    prediction, and the predicted curves, for `infusim report`) and validation.html (observed points
    over predicted curves, forest plots). A bad case folder is reported with its reason; the other
    cases still run. Case format: docs/validation.md.
    """
    from infusim import api, io
    from infusim.report.validation import render

    if cross_validate:
        console.print("Cross-validating: one refit per study (a few minutes)...", highlight=False)
    elif not cases and cases_root is None:
        console.print(
            "Validating the bundled cases with their prediction intervals, and the evidence table "
            "(about 20 s on 2 cores)...",
            highlight=False,
        )
    found = api.validate(
        cases, cases_root=cases_root, evidence_file=evidence_file, cross_validate=cross_validate
    )
    results, summary = found.cases, found.summary
    if (cases or cases_root is not None) and results and all(r.error for r in results):
        first = results[0]
        raise InfusimError(
            "cases", f"none of the {len(results)} case folder(s) could run ({first.name}: {first.error})"
        )
    points: dict[str, list] = {}
    for record in summary["evidence"]:
        points.setdefault(record["condition"], []).extend(record["points"])
    kinetics, scores = summary["kinetics_cross_validation"], summary["cross_validation"]

    def write(folder: Path) -> None:
        from infusim.validation import result_tables

        points_table, curves = result_tables(results)
        io.write_parquet(points_table, folder / "points.parquet")
        io.write_parquet(curves, folder / "curves.parquet")
        io.write_json(summary, folder / "validation.json")
        (folder / "validation.html").write_text(render(results, summary), encoding="utf-8")

    folder = io.write_folder(out, write)
    _print_validation(results)
    if points:
        _print_evidence(points)
    if kinetics:
        _print_kinetic_cross_validation(kinetics)
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
        bool,
        typer.Option(
            help="Developers, in a source checkout only: also write the values into the bundled tables."
        ),
    ] = False,
) -> None:
    """Fit parameters to validation cases (least squares on log fold errors) and report fit quality.

    Writes OUT (fitted values, 95% intervals, start values, cases, the command, and
    `scenario_parameters`: the values as a scenario's `parameters:` section, to paste and use).
    The installed package is never changed; --update-tables (developers) writes the bundled tables of
    a source checkout.
    """
    import yaml

    from infusim.calibrate import fit_cases, parse_parameter
    from infusim.calibrate import update_tables as write_tables
    from infusim.errors import OutputError

    if update_tables and not _source_checkout():
        raise InfusimError(
            "--update-tables",
            "the installed package's tables are not changed; use the values in --out as a scenario's "
            "parameters: section (or run from a source checkout of infusim)",
        )
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
        "scenario_parameters": {
            (f"{v.parameter}[{v.scope}]" if v.scope else v.parameter): (
                f"{v.value:.4g} {v.unit}" if v.unit else float(f"{v.value:.4g}")
            )
            for v in fit.values
        },
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


def _source_checkout() -> bool:
    """Whether infusim runs from a git checkout of its source (its data folder inside a work tree)."""
    from infusim.parameters import _data_dir

    return any((folder / ".git").exists() for folder in _data_dir().parents)


def _inside_text(result) -> str:
    inside, points = result.interval_hits()
    return f"{inside}/{points}" if points else "n/a"


def _print_kinetic_cross_validation(found: dict) -> None:
    table = Table(
        title="Cell kinetics out of sample (prediction cases, and studies left out of the capture refit)"
    )
    for column in ("species", "cases", "within 2-fold", "median AAFE"):
        table.add_column(column, justify="left" if column == "species" else "right")
    for species, totals in [*found["by_species"].items(), ("overall", found["overall"])]:
        if totals.get("cases"):
            table.add_row(
                species, str(totals["cases"]), f"{totals['within_2fold']:.0%}", f"{totals['median_aafe']:.2f}"
            )
    console.print(table)
    between = found.get("between_study") or {}
    if between.get("points"):
        console.print(
            f"95% prediction intervals of these cases: {between['inside_95_parameter_only']:.0%} of "
            f"{between['points']} observations inside from parameter uncertainty alone, "
            f"{between['inside_95_with_between_study']:.0%} with between-study variation "
            f"(tau {between['tau_log10_all']:.2f} log10, left out per study; median width "
            f"x{between['median_width_fold']:.0f}).",
            highlight=False,
        )
    fitted = sum(r["status"].startswith("fitted") for r in found["cases"])
    console.print(
        f"[dim]{fitted} cases stay fitted: their study informed a row that cannot be refitted without it "
        "(validation.json: kinetics_cross_validation).[/dim]",
        highlight=False,
    )


def _print_validation(results) -> None:
    table = Table(title="infusim validation (AAFE: absolute average fold error)")
    table.add_column("case", overflow="fold", min_width=24)
    for column in ("species", "use", "n", "AAFE", "within 2x", "max fold", "in 95% PI", "verdict"):
        table.add_column(column, justify="left" if column in ("species", "use", "verdict") else "right")
    for r in results:
        if r.error:
            table.add_row(r.name, "", "", "", "", "", "", "", f"[red]not run: {r.error}[/red]")
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
            _inside_text(r),
            verdict,
        )
    console.print(table)
    for name, picked in (("prediction", False), ("fitted", True)):
        hits = [r.interval_hits() for r in results if r.error is None and r.calibration == picked]
        inside, points = sum(h[0] for h in hits), sum(h[1] for h in hits)
        if points:
            console.print(
                f"95% prediction intervals (parameter draws from the priors), {name} cases: "
                f"{inside} of {points} observations inside ({inside / points:.0%})",
                highlight=False,
            )
    console.print(
        "[dim]verdict: pass when AAFE is at most the case's tolerance (2-fold unless the case says "
        "otherwise; a clinical effect row only inside its study's 95% CI).[/dim]",
        highlight=False,
    )
