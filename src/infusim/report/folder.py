"""`infusim report OUT`: redraw the self-contained report of any output folder infusim wrote.

What the folder holds decides the kind: a trial (``trial.json``), a therapeutic window
(``doses.parquet``), a sensitivity analysis (``sensitivity.parquet``), a power curve
(``power.parquet``), a validation
(``validation.json`` with ``points.parquet``) or one simulation (``cells.parquet`` with
``scenario.yaml``). Trials, windows, analyses and validations are drawn from what they wrote; a
simulation is run again from its ``scenario.yaml`` (deterministic: the scenario hash and every
live fraction must match what the folder holds, else nothing is written).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from infusim.errors import OutputError

KINDS = ("trial", "doses", "sensitivity", "power", "validation", "simulation")


def kind_of(folder: Path) -> str:
    """Which command wrote ``folder``, or an ``OutputError`` naming what was expected."""
    folder = Path(folder)
    if not folder.is_dir():
        raise OutputError("OUT", f"{folder} is not a folder (give an output folder infusim wrote)")
    marks = {
        "trial": ("trial.json", "summary.json"),
        "doses": ("doses.parquet", "summary.json"),
        "sensitivity": ("sensitivity.parquet", "summary.json"),
        "power": ("power.parquet", "summary.json"),
        "validation": ("validation.json", "points.parquet"),
        "simulation": ("cells.parquet", "summary.json", "scenario.yaml"),
    }
    for kind, files in marks.items():
        if all((folder / f).is_file() for f in files):
            return kind
    raise OutputError(
        "OUT",
        f"{folder} holds no infusim output infusim can redraw (expected the files of simulate, trial, doses, "
        "sensitivity, power -o or validate; a simulation needs the scenario.yaml it writes; a bridge "
        "folder's bridge.html is not redrawn: run bridge again)",
    )


#: The page each command writes (``infusim report`` redraws that page, not a second one beside it).
PAGES = {"doses": "doses.html", "sensitivity": "sensitivity.html", "validation": "validation.html"}


def page_name(kind: str) -> str:
    """The file name of the report page of an output folder of this kind."""
    return PAGES.get(kind, "report.html")


def render_folder(folder: Path) -> tuple[str, str]:
    """(kind, report HTML) for an output folder."""
    folder = Path(folder)
    kind = kind_of(folder)
    summary = _json(folder / ("validation.json" if kind == "validation" else "summary.json"))
    if kind == "trial":
        from infusim.report.trial import render

        return kind, render(summary)
    if kind == "doses":
        from infusim.report.doses import render

        return kind, render(summary, pd.read_parquet(folder / "doses.parquet"))
    if kind == "sensitivity":
        from infusim.report.sensitivity import render

        return kind, render(summary, _rankings(pd.read_parquet(folder / "sensitivity.parquet"), summary))
    if kind == "power":
        from infusim.report.power import render

        return kind, render(summary, pd.read_parquet(folder / "power.parquet"))
    if kind == "validation":
        from infusim.report.validation import render

        return kind, render(_case_results(folder, summary), summary)
    return kind, _simulation(folder, summary)


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputError("OUT", f"{path} cannot be read: {exc}") from None


def _rankings(table: pd.DataFrame, summary: dict) -> dict[str, list[dict]]:
    key = "total" if summary["method"] == "sobol" else "mu_star"
    return {
        o["output"]: table[table["output"] == o["output"]]
        .sort_values(key, ascending=False, na_position="last")
        .to_dict("records")
        for o in summary["outputs"]
    }


def _case_results(folder: Path, summary: dict) -> list:
    """Each case of ``validation.json`` with its comparisons and curves (``points.parquet``,
    ``curves.parquet``) as written by ``infusim validate``."""
    from infusim.validation import CaseResult

    points = pd.read_parquet(folder / "points.parquet")
    curves_path = folder / "curves.parquet"
    curves = pd.read_parquet(curves_path) if curves_path.is_file() else pd.DataFrame(columns=["case"])
    results = []
    for record in summary["cases"]:
        name = record["case"]
        results.append(
            CaseResult(
                name=name,
                calibration=record["calibration"],
                n=record["n"],
                aafe=number(record["aafe"]),
                within_2fold=number(record["within_2fold"]),
                within_3fold=number(record["within_3fold"]),
                max_fold_error=number(record["max_fold_error"]),
                tolerance_fold=record["tolerance_fold"],
                species=record["species"],
                description=record.get("description", ""),
                citation=record["citation"],
                skipped=record["skipped_rows"],
                error=record["error"],
                comparisons=points[points.case == name].drop(columns="case").reset_index(drop=True),
                curves=curves[curves.case == name].drop(columns="case").reset_index(drop=True),
                calibration_reason=record["calibration_reason"],
            )
        )
    return results


def number(value) -> float:
    """A score from validation.json (null where the case could not run) as a float."""
    return math.nan if value is None else value


def _simulation(folder: Path, summary: dict) -> str:
    """Run the folder's ``scenario.yaml`` again and check it reproduces the folder before drawing."""
    import numpy as np

    from infusim.report.html import render
    from infusim.scenario import load
    from infusim.simulation import simulate

    scenario = load(folder / "scenario.yaml")
    if scenario.hash() != summary.get("scenario_hash"):
        raise OutputError("OUT", f"{folder}/scenario.yaml is not the scenario of summary.json (hash differs)")
    draws = (summary.get("uncertainty") or {}).get("draws", 0)
    result = simulate(scenario, uncertainty=draws)
    for key, fractions in summary["live_fraction_of_dose"].items():
        again = result.summary["live_fraction_of_dose"].get(key, {})
        if set(again) != set(fractions) or not all(
            np.isclose(again[c], v, rtol=1e-6, atol=1e-15) for c, v in fractions.items()
        ):
            raise OutputError(
                "OUT",
                f"running {folder}/scenario.yaml again does not reproduce summary.json at {key} "
                f"(written by infusim {summary.get('infusim_version')})",
            )
    return render(result)
