"""Between-study variation in the cell-kinetic prediction intervals.

A case's 95% prediction interval over parameter draws (``validate.prediction_intervals``) is the
spread the model's own parameters allow. Studies also differ in what no parameter row carries:
animals, labelling, imaging and counting, and mechanisms the model lacks. Per observation of an
out-of-sample case, ``r = log10(predicted / observed)`` (0 when a ``<x`` or ``>x`` bound is
respected). Its spread beyond the parameter spread is the between-study standard deviation

    tau^2 = max(0, (1.4826 * median |r|)^2 - median(s^2)),     s = log10(high / low) / (2 * 1.96),

over the points of the *other* out-of-sample studies, so no study widens its own interval. The
scale is the median absolute residual (a normal's sd is 1.4826 x that), not the root mean square,
because the residuals hold structural misses (assis2010 is 42-fold low) that would set a mean-square
scale by one study. Each interval is then widened on the log scale from ``s`` to
``sqrt(s^2 + tau^2)`` about its own bounds. This is the prediction interval of a random-effects
meta-analysis (Higgins, Thompson and Spiegelhalter 2009, J R Stat Soc A 172:137) with the study
effect estimated from the model's own out-of-sample misses.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

Z95 = 1.959963984540054
MAD_TO_SD = 1.4826


def log_residuals(points: pd.DataFrame) -> np.ndarray:
    """|log10(predicted / observed)| per row, 0 where a ``<``/``>`` bound is respected."""
    ratio = points.predicted.to_numpy(float) / points.observed.to_numpy(float)
    bound = points.get("bound", pd.Series("", index=points.index)).fillna("").to_numpy()
    ratio = np.where((bound == "<") & (ratio <= 1), 1.0, ratio)
    ratio = np.where((bound == ">") & (ratio >= 1), 1.0, ratio)
    return np.abs(np.log10(np.maximum(ratio, 1e-300)))


def parameter_sd(points: pd.DataFrame) -> np.ndarray:
    """Log10 standard deviation implied by each row's 95% parameter interval (NaN without one)."""
    low = points.predicted_low.to_numpy(float)
    high = points.predicted_high.to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(np.maximum(high, 1e-300) / np.maximum(low, 1e-300)) / (2 * Z95)


def tau(points: pd.DataFrame) -> float:
    """Between-study log10 sd from out-of-sample ``points`` (columns of ``run_case`` comparisons)."""
    if points.empty:
        return float("nan")
    scale = MAD_TO_SD * float(np.median(log_residuals(points)))
    s = parameter_sd(points)
    s = s[np.isfinite(s)]
    own = float(np.median(s**2)) if len(s) else 0.0
    return float(np.sqrt(max(scale**2 - own, 0.0)))


def widened(points: pd.DataFrame, tau_log10: float) -> pd.DataFrame:
    """``points`` with ``between_low``/``between_high``: each parameter interval widened on the log
    scale from its own sd ``s`` to ``sqrt(s^2 + tau^2)`` about its bounds."""
    s = np.nan_to_num(parameter_sd(points), nan=0.0)
    extra = Z95 * (np.sqrt(s**2 + tau_log10**2) - s)
    factor = 10.0**extra
    return points.assign(
        between_low=points.predicted_low.to_numpy(float) / factor,
        between_high=points.predicted_high.to_numpy(float) * factor,
    )


def inside(points: pd.DataFrame, low: str, high: str) -> np.ndarray:
    """Whether each observation lies inside [``low``, ``high``]; a ``<x`` bound needs ``low <= x``,
    a ``>x`` bound ``high >= x``."""
    observed = points.observed.to_numpy(float)
    lo, hi = points[low].to_numpy(float), points[high].to_numpy(float)
    bound = points.get("bound", pd.Series("", index=points.index)).fillna("").to_numpy()
    return np.where(
        bound == "<",
        lo <= observed,
        np.where(bound == ">", hi >= observed, (lo <= observed) & (observed <= hi)),
    )


def leave_one_study_out(held: dict[str, pd.DataFrame]) -> dict:
    """Coverage of out-of-sample points with and without between-study variation.

    ``held``: study -> its out-of-sample points (``observed, predicted, predicted_low, predicted_high``,
    optional ``bound``, ``species``). Each study's tau comes from the other studies' points.
    """
    rows = []
    taus = {}
    for study, points in held.items():
        others = [p for s, p in held.items() if s != study]
        t = tau(pd.concat(others, ignore_index=True)) if others else float("nan")
        taus[study] = t
        if not np.isfinite(t):
            continue
        wide = widened(points, t)
        rows.append(
            wide.assign(
                study=study,
                inside_parameter=inside(wide, "predicted_low", "predicted_high"),
                inside_between=inside(wide, "between_low", "between_high"),
                width_fold=wide.between_high / wide.between_low,
            )
        )
    if not rows:
        return {"points": 0, "note": "fewer than two out-of-sample studies"}
    table = pd.concat(rows, ignore_index=True)

    def totals(part: pd.DataFrame) -> dict:
        return {
            "points": len(part),
            "inside_95_parameter_only": float(part.inside_parameter.mean()),
            "inside_95_with_between_study": float(part.inside_between.mean()),
            "median_width_fold": float(np.median(part.width_fold)),
        }

    by_species = {}
    if "species" in table:
        by_species = {sp: totals(table[table.species == sp]) for sp in sorted(table.species.unique())}
    return {
        **totals(table),
        "by_species": by_species,
        "tau_log10_by_study": {s: round(t, 4) for s, t in taus.items()},
        "tau_log10_all": round(tau(pd.concat(held.values(), ignore_index=True)), 4),
        "note": "tau: between-study log10 sd from the other out-of-sample studies' median absolute "
        "residual beyond the parameter spread (infusim.between_study); width_fold: high/low of the "
        "widened 95% interval",
    }
