"""Out-of-sample scores for the cell-kinetic cases: leave one study out, refit, predict it.

A case is out of sample when none of its study's numbers informed any parameter row. For a study
that informed only the fitted capture parameters (``calibrate.FITTED``, through the first-pass
anchors of ``calibrate.ANCHOR_STUDIES``), those are refitted without it and its cases are predicted
with the refit: they become out of sample. A study that informed any other row (a rate derived from
it, a case-based fit with no other data) cannot be left out and stays fitted, with the rows named.
Headline per species: the share of cases within 2-fold (AAFE <= 2) and the median AAFE.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from infusim import between_study
from infusim.calibrate import ANCHOR_STUDIES, FITTED, fit_extraction
from infusim.case_format import load_case
from infusim.parameters import bundled, with_values
from infusim.validation import CaseResult, run_case


def rows_informed_by(study: str) -> list[str]:
    """Every parameter row (``name[scope]``) whose source is ``study`` or whose note names it
    ("Toma 2009" for the key ``Toma2009``)."""
    match = re.fullmatch(r"([A-Za-z]+)(\d{4})", study)
    words = f"{match.group(1)} {match.group(2)}" if match else None
    return sorted(
        f"{e.parameter}[{e.scope}]" if e.scope else e.parameter
        for e in bundled().entries.values()
        if e.source == study or (words is not None and words in e.note)
    )


def cross_validate_cases(paths: list[Path], results: list[CaseResult]) -> dict:
    """Out-of-sample result per case (prediction cases as they are; refitted studies held out) and
    totals per species. ``results`` are ``validate(paths)``'s, in the same order."""
    refits: dict[str, dict] = {}
    records = []
    held: list[tuple[str, CaseResult]] = []
    held_points: dict[str, list[pd.DataFrame]] = {}
    for path, result in zip(paths, results, strict=True):
        if result.error is not None or result.safety:
            continue
        record = {"case": result.name, "species": result.species}
        case = load_case(path)
        study = case.source or case.name
        if not result.calibration:
            record.update(status="prediction", aafe=result.aafe)
            held.append((result.species, result))
            held_points.setdefault(study, []).append(_kinetic_points(result, result))
        else:
            rows = rows_informed_by(case.source)
            outside = [r for r in rows if r not in FITTED]
            if case.source in ANCHOR_STUDIES and not outside:
                if case.source not in refits:
                    refits[case.source] = fit_extraction(leave_out=case.source).values()
                params = with_values(bundled(), refits[case.source])
                scored = run_case(case, params, curves=False)
                record.update(status="held out (capture refit without the study)", aafe=scored.aafe)
                held.append((result.species, scored))
                held_points.setdefault(study, []).append(_kinetic_points(scored, result))
            else:
                why = ", ".join(outside) or result.calibration_reason
                record.update(status=f"fitted: the study informed {why}", aafe=result.aafe)
        records.append(record)
    by_species = {}
    for species in sorted({s for s, _ in held}):
        mine = [r for s, r in held if s == species]
        by_species[species] = _totals(mine)
    points = {s: pd.concat(p, ignore_index=True) for s, p in held_points.items()}
    return {
        "cases": records,
        "overall": _totals([r for _, r in held]),
        "by_species": by_species,
        "between_study": between_study.leave_one_study_out({s: p for s, p in points.items() if len(p)}),
        "refits": {s: {f"{k[0]}": v for k, v in values.items()} for s, values in refits.items()},
    }


def _kinetic_points(scored: CaseResult, own: CaseResult) -> pd.DataFrame:
    """Ratio-scored rows of ``scored`` with the parameter interval of ``own`` (the case run on the
    tables' values), moved by the ratio of the two predictions when ``scored`` is a refit."""
    table = scored.comparisons
    kinetic = ~table.quantity.astype(str).str.contains(":")
    mine, theirs = table[kinetic], own.comparisons[kinetic]
    shift = mine.predicted.to_numpy(float) / theirs.predicted.to_numpy(float)
    columns = ["observed", "predicted", "bound"] if "bound" in mine else ["observed", "predicted"]
    return (
        mine[columns]
        .assign(
            predicted_low=theirs.predicted_low.to_numpy(float) * shift,
            predicted_high=theirs.predicted_high.to_numpy(float) * shift,
            species=scored.species or own.species,
        )
        .reset_index(drop=True)
    )


def _totals(results: list[CaseResult]) -> dict:
    if not results:
        return {"cases": 0}
    aafe = np.array([r.aafe for r in results])
    return {
        "cases": len(results),
        "within_2fold": float(np.mean(aafe <= 2.0)),
        "median_aafe": float(np.median(aafe)),
    }
