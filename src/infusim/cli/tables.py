"""`infusim export-sbml`, `fit-effects`, `parameters` and `conditions`: the model and its data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from infusim import __version__
from infusim.cli.common import (
    OutOption,
    _user_errors,
    app,
    console,
)
from infusim.errors import InfusimError


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
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Monte Carlo check: fit again from two other seeds (the medians' spread) and weigh the "
            "draws against importance sampling (how far their medians and 95% bounds lie, in SD).",
        ),
    ] = False,
    steps: Annotated[
        int | None,
        typer.Option(
            "--steps",
            min=1000,
            max=200_000,
            help="Sampler steps per walker (32 walkers; the first fifth discarded; default: the bundled "
            "fits' 20,000). Fewer: faster, noisier medians (see --check).",
        ),
    ] = None,
) -> None:
    """Fit each condition's effect parameters to a controlled-trial table (posterior draws, emcee).

    Writes OUT/CONDITION.csv (2,000 posterior draws per condition) and OUT/fits.json (command,
    evidence rows, priors, summaries, effective sample sizes, split R-hat; with --check the seed
    check). The installed package is never changed. About 10-60 s per condition (32 walkers x
    20,000 steps), three times that with --check.
    """
    from infusim import conditions as registry
    from infusim import evidence, io
    from infusim.synthesis import CHECK_SEEDS, evidence_conditions
    from infusim.synthesis_tables import write_fits

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
        records.update(
            write_fits(
                folder,
                rows,
                condition or None,
                command=command,
                source=source,
                check_seeds=CHECK_SEEDS if check else (),
                **({} if steps is None else {"steps": steps, "burn": steps // 5}),
            )
        )
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
    columns = ["condition", "studies", "parameter", "median", "95% interval", "min ESS"]
    columns += ["seed spread (SD)", "vs importance sampling (SD)"] if check else []
    for column in columns:
        table.add_column(column, justify="left" if column in ("condition", "parameter") else "right")
    for name, record in records.items():
        ess = min(record["diagnostics"]["effective_sample_size"].values())
        seeds = record["diagnostics"].get("seed_check", {}).get("parameters", {})
        weighed = record["diagnostics"].get("importance_check", {}).get("parameters", {})
        for parameter, s in record["summary"].items():
            spread = [f"{seeds[parameter]['median_range_sd']:.2f}"] if parameter in seeds else []
            if parameter in weighed:
                w = weighed[parameter]
                spread.append(f"median {w['median_off_sd']:.2f}, bounds {w['bounds_off_sd']:.2f}")
            table.add_row(
                name,
                str(record["n_studies"]),
                escape(parameter),
                f"{s['median']:.3g}",
                f"{s['low']:.3g} to {s['high']:.3g}",
                str(ess),
                *spread,
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
    """List every parameter row with value, unit, provenance, source and the 95% range of its prior.

    A scenario can replace any row: parameters: {"loss_rate[msc/lungs]": "0.1 1/h"}. The prior
    (data/priors.csv, or a stored posterior) is what `simulate --uncertainty` and `sensitivity` vary.
    """
    from infusim.parameters import bundled
    from infusim.uncertainty import prior_for

    params = bundled()
    rows = sorted(params.entries.values(), key=lambda e: (e.table, e.parameter, e.scope))
    if grep:
        word = grep.lower()
        rows = [e for e in rows if any(word in x.lower() for x in (e.parameter, e.scope, e.source, e.note))]
    table = Table(title=f"Parameters ({len(rows)} rows)")
    for column in ("name[scope]", "value", "unit", "provenance", "source", "prior 95%", "table"):
        right = column in ("value", "prior 95%")
        table.add_column(escape(column), justify="right" if right else "left", overflow="fold")
    for e in rows:
        name = f"{e.parameter}[{e.scope}]" if e.scope else e.parameter
        prior = prior_for(params, (e.parameter, e.scope))
        low, high = prior.interval()
        spread = f"{low:.3g}-{high:.3g}" + (" (posterior)" if prior.distribution == "posterior" else "")
        table.add_row(
            escape(name),
            f"{e.value:.4g}",
            e.unit,
            e.provenance,
            e.source,
            spread if prior.varies else "held",
            e.table,
        )
    console.print(table)


@app.command(name="conditions")
@_user_errors
def list_conditions() -> None:
    """List the conditions infusim models: endpoints, units, potencies with 95% intervals, evidence."""
    from infusim import conditions, evidence, modifiers, posterior
    from infusim.parameters import bundled
    from infusim.patient_economics import mapped_endpoints

    params = bundled()
    trials = evidence.load()
    table = Table(title="Conditions (condition.name in a scenario)", show_lines=True)
    table.add_column("name", no_wrap=True)
    for column in ("area / site", "endpoints (unit)", "potency (95% interval)", "evidence", "sources"):
        table.add_column(column, overflow="fold")
    for info in conditions.registry().values():
        valued = set(mapped_endpoints(params, info.name))
        endpoints = "\n".join(
            f"{e.name} ({e.unit}){' *' if e.primary else ''}{' $' if e.name in valued else ''}"
            for e in info.endpoints
        )
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
                f"{record['n_studies']} {'study' if record['n_studies'] == 1 else 'studies'}, "
                f"{record['n_rows']} rows; tau {tau['median']:.2f} "
                f"({tau['low']:.2g}-{tau['high']:.2g}) SMD"
            )
            k = next((v for n, v in summary.items() if n.startswith("half_saturation")), None)
            if k:
                evidence += f"; K {k['median']:.2g} ({k['low']:.2g}-{k['high']:.2g})"
        else:
            evidence = "no controlled estimate with a CI: not fitted"
        for covariate in modifiers.present(info, params):
            scope = f"{info.name}/{covariate}"
            evidence += (
                f"; modifier: {covariate} >= {modifiers.cut(info, covariate, params):g} x"
                f"{modifiers.ratio(info, covariate, params):.2g} potency"
            )
            sources.add(params.entry("effect_modifier_ratio", scope).source)
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
        "* primary endpoint; $ has a utility mapping, so a trial can add an economics section "
        "(docs/economics.md). Potency: improvement of the primary endpoint at full response, posterior "
        "median and 95% interval of the fit to all controlled trials (docs/conditions.md); tau: "
        "between-trial SD in standardised mean difference units; modifier: a covariate at or above "
        "its cut multiplies the potency (subgroup analyses of trials; docs/trials.md)."
    )
