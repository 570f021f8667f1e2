"""Every command as a Python function: give a scenario (a ``Scenario``, a mapping as read from YAML,
or a path to a YAML file) and get a result object (``infusim.results``) with ``summary``,
``to_pandas()``, ``plot()`` and ``write_report(path)``. The command line calls these.

Research use only: these are model predictions, not advice for any patient.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infusim import __version__
from infusim.errors import ScenarioError
from infusim.results import (
    BridgeResult,
    DoseWindowResult,
    PowerResult,
    SensitivityResult,
    TrialResult,
    ValidationResult,
)
from infusim.scenario import Scenario, as_scenario
from infusim.simulation import DISCLAIMER


def _as_spec(scenario: Scenario | dict | str | Path) -> dict:
    """The scenario as a mapping (what a YAML file holds), for commands that vary a field."""
    from infusim.scenario_spec import to_spec

    return scenario if isinstance(scenario, dict) else to_spec(as_scenario(scenario))


def trial(
    scenario: Scenario | dict | str | Path,
    out: str | Path | None = None,
    *,
    patients: int | None = None,
    replicates: int | None = None,
    workers: int = 1,
    chunk_size: int | None = None,
    resume: bool = False,
    scheduler: str | None = None,
    progress=None,
) -> TrialResult:
    """Run a virtual randomised trial into ``out`` (default: a new temporary folder, kept)."""
    from infusim.parameters import for_scenario
    from infusim.runner import default_chunk_size, run_trial, with_size

    loaded = with_size(as_scenario(scenario), patients, replicates)
    for_scenario(loaded)  # a bad parameters override fails here, before any output exists
    if loaded.economics is not None:
        from infusim import economics

        economics.check(loaded)  # so does a cost-effectiveness analysis that cannot be done
    folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="infusim-trial-"))
    summary = run_trial(
        loaded,
        folder,
        workers=workers,
        scheduler=scheduler,
        resume=resume,
        chunk_size=chunk_size or default_chunk_size(loaded),
        progress=progress,
    )
    return TrialResult(summary, folder)


def power(
    scenario: Scenario | dict | str | Path,
    sizes: Sequence[int],
    *,
    replicates: int = 200,
    analyses: Sequence[str] | None = None,
    target: float | None = None,
) -> PowerResult:
    """Power and assurance of the primary comparison for each total sample size in ``sizes``;
    ``analyses`` (``trial.analysis`` values, e.g. ``["change", "mmrm"]``): each applied to the same
    replicate trials (default: the scenario's own); ``target`` (0-1): also the total sample size
    that reaches that power (``PowerResult.sample_sizes``)."""
    from infusim.parameters import for_scenario
    from infusim.runner import power_curve, with_size

    sizes = [int(n) for n in sizes]
    if not sizes or any(n < 2 for n in sizes):
        raise ScenarioError("--n", "give sample sizes of at least 2, e.g. 20,40,80")
    if replicates < 2:
        raise ScenarioError("--replicates", f"{replicates}; give 2 or more")
    if target is not None and not 0 < target < 1:
        raise ScenarioError("--target", f"{target}; give a power between 0 and 1, e.g. 0.8")
    loaded = with_size(as_scenario(scenario), None, None)
    for_scenario(loaded)
    curve = power_curve(loaded, sizes, replicates, analyses=analyses)
    primary = loaded.trial.primary
    return PowerResult(
        loaded.name,
        primary.endpoint,
        primary.at_h / 24.0,
        replicates,
        curve,
        loaded.trial.multiplicity,
        target,
    )


def cost_effectiveness(scenario: Scenario | dict | str | Path, out: str | Path) -> dict:
    """Cost-effectiveness of the finished trial in ``out`` by the scenario's ``economics`` section
    (``infusim.economics``); rewrites ``summary.json`` and ``report.html`` with it and returns it."""
    import json

    from infusim import economics
    from infusim.errors import OutputError
    from infusim.report.trial import render
    from infusim.runner import MANIFEST, _write_atomic_json, with_size

    folder = Path(out)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise OutputError(
            str(folder), "not a finished infusim trial folder (no trial.json and summary.json)"
        ) from None
    if manifest.get("status") != "complete":
        raise OutputError(str(folder), "the trial in this folder did not finish; run it again with --resume")
    loaded = with_size(as_scenario(scenario), manifest["patients"], manifest["replicates"])
    if loaded.economics is None:
        raise ScenarioError("economics", "the scenario has no economics section (see docs/economics.md)")
    if loaded.hash() != summary["scenario_hash"]:
        raise ScenarioError(
            "scenario",
            f"it is not the scenario the trial in {folder} ran (its content differs outside economics)",
        )
    found = economics.analyse(loaded, folder)
    summary["economics"] = found
    (folder / ".report.html.tmp").write_text(render(summary), encoding="utf-8")
    (folder / ".report.html.tmp").replace(folder / "report.html")
    _write_atomic_json(folder / "summary.json", summary)
    return found


def validate(
    cases: Sequence[str | Path] | None = None,
    *,
    cases_root: str | Path | None = None,
    evidence_file: str | Path | None = None,
    cross_validate: bool = False,
) -> ValidationResult:
    """Hold the model against published measurements (the bundled suite when no case is given)."""
    from infusim import case_format, crossval, evidence
    from infusim import validation as checks
    from infusim.errors import InfusimError

    for path in cases or []:
        if not Path(path).exists():
            raise InfusimError("cases", f"{path} does not exist (give case folders)")
    rows = []
    if evidence_file is not None or not (cases or cases_root):
        rows = evidence.load(Path(evidence_file) if evidence_file is not None else None)
    paths = case_format.case_dirs([Path(p) for p in cases or []], Path(cases_root) if cases_root else None)
    results = checks.validate(paths)
    points = crossval.in_sample(rows) if evidence_file is None and rows else {}
    scores = kinetics = None
    if cross_validate and results:
        from infusim.kinetic_crossval import cross_validate_cases

        kinetics = cross_validate_cases(paths, results)
    if cross_validate and rows:
        scores = crossval.cross_validate(rows)
    return ValidationResult(results, checks.summary(results, points, scores, kinetics))


def sensitivity(
    scenario: Scenario | dict | str | Path,
    outputs: Sequence[str],
    *,
    method: str = "sobol",
    n: int = 1024,
    parameters: Sequence[str] = (),
    workers: int = 1,
) -> SensitivityResult:
    """Global sensitivity (SALib) of ``outputs`` (``quantity:where@time``) to the rows the scenario reads."""
    from importlib.metadata import version

    from infusim import sensitivity_analysis as analysis
    from infusim.ensemble import parse_output

    if workers < 1:
        raise ScenarioError("--workers", f"{workers}; give 1 or more")
    loaded = as_scenario(scenario)
    parsed = [parse_output(text, loaded) for text in outputs]
    result = analysis.analyse(loaded, parsed, method=method, n=n, patterns=tuple(parameters), workers=workers)
    summary: dict[str, Any] = {
        "infusim_version": __version__,
        "salib_version": version("SALib"),
        "scenario_name": loaded.name,
        "disclaimer": DISCLAIMER,
        "method": method,
        "n": n,
        "seed": result.seed,
        "evaluations": result.evaluations,
        "seconds": result.seconds,
        "parameters": len(result.priors),
        "prior_coverage": analysis.PRIOR_COVERAGE,
        "outputs": [
            {
                "output": o.text,
                "unit": o.unit,
                "at_table_values": float(result.base[j]),
                "low": float(result.spread[0, j]),
                "high": float(result.spread[1, j]),
            }
            for j, o in enumerate(parsed)
        ],
        "priors": {
            p.name: {
                "distribution": p.distribution,
                "spread": p.spread,
                "interval95": p.interval(),
                "basis": p.basis,
            }
            for p in result.priors.values()
        },
    }
    rankings = {o.text: result.ranking(o.text, len(result.priors)).to_dict("records") for o in parsed}
    return SensitivityResult(result, summary, rankings)


def doses(
    scenario: Scenario | dict | str | Path,
    doses: Sequence[float],
    *,
    per: str = "kg",
    routes: Sequence[str] | None = None,
) -> DoseWindowResult:
    """The therapeutic window: the effect (95% interval) and serious-event risks at each dose and route."""
    from infusim import dose_window
    from infusim.compartments import ROUTES

    if per not in ("kg", "patient"):
        raise ScenarioError("--per", f"{per!r}; allowed: kg, patient")
    values = sorted({float(d) for d in doses})
    if not values or any(not (0 < d < float("inf")) for d in values):
        raise ScenarioError("--doses", "give one or more positive doses, e.g. 1e5,1e6,1e7")
    chosen = list(routes) if routes is not None else None
    if chosen is not None and (not chosen or any(r not in ROUTES for r in chosen)):
        raise ScenarioError("--routes", f"{','.join(chosen)!r}; allowed: {', '.join(ROUTES)}")
    loaded = as_scenario(scenario)
    found = dose_window.window(_as_spec(scenario), values, per_kg=per == "kg", routes=chosen)
    summary = {
        "infusim_version": __version__,
        "scenario_name": loaded.name,
        "disclaimer": DISCLAIMER,
        "endpoint": found.endpoint,
        "unit": found.unit,
        "time_d": found.time_d,
        # a schedule's own doses move with the dose (the rows' dose is administration.dose)
        "dose_scales": list(loaded.administration.dose_scales),
        "rows": found.rows.astype(object).where(found.rows.notna(), None).to_dict("records"),  # NaN -> null
    }
    return DoseWindowResult(summary, found.rows)


def bridge(
    source: Scenario | dict | str | Path,
    to: Scenario | dict | str | Path,
    outputs: str | Sequence[str] = "live_cells:target@7 day",
    *,
    measure: str = "at",
    per_gram: bool = True,
    uncertainty: int = 200,
    seed: int = 1,
) -> BridgeResult:
    """The dose per administration of ``to`` (usually a patient) that gives it the exposure ``source``
    (usually an animal study) had, for each of ``outputs`` (``live_cells:where@time``), beside the same
    cells per kg and body-surface scaling."""
    import numpy as np

    from infusim import species_bridge as carry
    from infusim.parameters import citation_line

    first, second = as_scenario(source), as_scenario(to)
    texts = [outputs] if isinstance(outputs, str) else list(outputs)
    if not texts:
        raise ScenarioError("--output", "give at least one live_cells:where@time")
    found = [carry.bridge(first, second, text, measure, per_gram, uncertainty, seed) for text in texts]
    weight, per_kg = found[0].to_weight_kg, found[0].per_kg_dose_cells

    def interval(draws: np.ndarray) -> list[float] | None:
        finite = draws[np.isfinite(draws)]
        if not finite.size:
            return None
        return [float(np.percentile(finite, 2.5)) / weight, float(np.percentile(finite, 97.5)) / weight]

    doses = [
        {
            "rule": f"matched: {f.output}",
            "output": f.output,
            "exposure_unit": f.unit,
            "source_exposure": f.exposure_source,
            "dose_cells": f.matched_dose_cells,
            "dose_cells_per_kg": f.matched_dose_cells / weight,
            "ratio_to_per_kg": f.matched_dose_cells / per_kg,
            "interval_cells_per_kg": interval(f.draws_matched_cells),
            "drivers": [{"parameter": name, "spearman": round(rho, 3)} for name, rho in f.drivers],
        }
        for f in found
    ]
    for rule, cells in (
        ("same cells per kg", per_kg),
        ("body-surface scaling (FDA 2005 Km)", found[0].body_surface_dose_cells),
    ):
        doses.append(
            {
                "rule": rule,
                "dose_cells": cells,
                "dose_cells_per_kg": cells / weight,
                "ratio_to_per_kg": cells / per_kg,
                "interval_cells_per_kg": None,
            }
        )
    summary: dict[str, Any] = {
        "infusim_version": __version__,
        "disclaimer": DISCLAIMER,
        "source_scenario": first.name,
        "source_species": first.species,
        "to_scenario": second.name,
        "to_species": second.species,
        "measure": measure,
        "per_gram": per_gram,
        "source_dose_cells": found[0].source_dose_cells,
        "source_dose_cells_per_kg": found[0].source_dose_cells / found[0].source_weight_kg,
        "to_weight_kg": weight,
        "draws": uncertainty,
        "seed": seed,
        "doses": doses,
        "differences": carry.differences(first, second),
        "sources": {key: citation_line(key) for key in sorted({k for f in found for k in f.sources})},
        "assumption": "matching assumes a cell per gram (or in total) does the same in both species; "
        "docs/research/species-bridge.md",
    }
    return BridgeResult(summary, {f.output: f.draws_matched_cells for f in found})
