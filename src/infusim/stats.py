"""Trial statistics from partial sums: arm means with 95% CIs, comparisons with control, power.

Continuous endpoints are compared as change from baseline (Welch's t-test and its interval);
response-rate endpoints as the share of responders in % (difference in percentage points, normal
interval, pooled z-test). ``responders`` is always a percentage of the arm. Power is the share of
replicate trials whose primary comparison is significant at two-sided 5% in favour of the treated
arm.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import scipy.stats

from infusim.virtual_trial import FIELDS, ChunkStats, Design, is_rate

ALPHA = 0.05
_F = {name: i for i, name in enumerate(FIELDS)}


def combine(chunks: Iterable[ChunkStats], replicates: int, shape: tuple[int, ...]) -> np.ndarray:
    """Sum chunk partial sums in (replicate, start) order -> (replicates, arms, endpoints, visits, fields)."""
    totals = np.zeros((replicates, *shape))
    for chunk in sorted(chunks, key=lambda c: (c.replicate, c.start)):
        totals[chunk.replicate] += chunk.sums
    return totals


def arm_summary(totals: np.ndarray, plan: Design) -> dict:
    """Per arm, endpoint and visit: n, mean (change or share) with 95% CI, effect vs untreated twin."""
    out = {}
    for a, arm in enumerate(plan.arms):
        endpoints = {}
        for e, endpoint in enumerate(plan.endpoints):
            visits = {}
            for v, day in enumerate(plan.visits_d):
                s = totals[a, e, v]
                n = s[_F["n"]]
                if n == 0:
                    continue
                if is_rate(endpoint):
                    share = s[_F["sum_value"]] / n
                    half = 1.96 * np.sqrt(max(share * (1 - share), 0.0) / n)
                    entry = {
                        "n": int(n),
                        "responders": 100 * share,
                        "ci95": [100 * (share - half), 100 * (share + half)],
                    }
                else:
                    mean, sd = _mean_sd(s[_F["sum_change"]], s[_F["sumsq_change"]], n)
                    half = _t(n - 1) * sd / np.sqrt(n) if n > 1 else np.nan
                    entry = {
                        "n": int(n),
                        "mean_value": s[_F["sum_value"]] / n,
                        "mean_change": mean,
                        "sd_change": sd,
                        "ci95": [mean - half, mean + half],
                    }
                    if e == plan.primary:
                        entry["responders"] = 100 * s[_F["responders"]] / n
                entry["effect_vs_untreated"] = s[_F["sum_effect"]] / n
                visits[_day(day)] = _rounded(entry)
            endpoints[endpoint.name] = {"unit": endpoint.unit, "visits": visits}
        out[arm] = endpoints
    return out


def compare(totals: np.ndarray, plan: Design, arm: int, endpoint: int, visit: int) -> dict:
    """Treated arm minus control at one visit: difference, 95% CI and two-sided p-value."""
    treated, control = totals[arm, endpoint, visit], totals[plan.control, endpoint, visit]
    n1, n0 = treated[_F["n"]], control[_F["n"]]
    if n1 < 2 or n0 < 2:
        return {"difference": None, "ci95": [None, None], "p_value": None, "n": [int(n1), int(n0)]}
    if is_rate(plan.endpoints[endpoint]):
        p1, p0 = treated[_F["sum_value"]] / n1, control[_F["sum_value"]] / n0
        difference = p1 - p0
        se = np.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
        half = 1.96 * se
        pooled = (treated[_F["sum_value"]] + control[_F["sum_value"]]) / (n1 + n0)
        se0 = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
        p = 2 * scipy.stats.norm.sf(abs(difference) / se0) if se0 > 0 else 1.0
        difference, half = 100 * difference, 100 * half
    else:
        m1, s1 = _mean_sd(treated[_F["sum_change"]], treated[_F["sumsq_change"]], n1)
        m0, s0 = _mean_sd(control[_F["sum_change"]], control[_F["sumsq_change"]], n0)
        difference = m1 - m0
        v1, v0 = s1**2 / n1, s0**2 / n0
        se = np.sqrt(v1 + v0)
        if se == 0:
            p, half = (1.0 if difference == 0 else 0.0), 0.0
        else:
            df = (v1 + v0) ** 2 / (v1**2 / (n1 - 1) + v0**2 / (n0 - 1)) if v1 + v0 > 0 else n1 + n0 - 2
            p = 2 * scipy.stats.t.sf(abs(difference) / se, df)
            half = _t(df) * se
    return _rounded(
        {
            "difference": difference,
            "ci95": [difference - half, difference + half],
            "p_value": float(p),
            "n": [int(n1), int(n0)],
        }
    )


def comparisons(totals: np.ndarray, plan: Design) -> list[dict]:
    """Every treated arm against control, for every endpoint and visit after baseline."""
    rows = []
    for a, arm in enumerate(plan.arms):
        if a == plan.control:
            continue
        for e, endpoint in enumerate(plan.endpoints):
            for v, day in enumerate(plan.visits_d):
                if day == 0 and not is_rate(endpoint):
                    continue
                rows.append(
                    {"arm": arm, "endpoint": endpoint.name, "time_d": _day(day)}
                    | compare(totals, plan, a, e, v)
                )
    return rows


def power(all_totals: np.ndarray, plan: Design) -> dict:
    """Per treated arm: share of replicates whose primary comparison favours it at p < 0.05."""
    endpoint = plan.endpoints[plan.primary]
    better = endpoint.direction
    out = {}
    for a, arm in enumerate(plan.arms):
        if a == plan.control:
            continue
        results = [compare(t, plan, a, plan.primary, plan.primary_visit) for t in all_totals]
        differences = np.array([r["difference"] for r in results if r["difference"] is not None])
        hits = [
            r["p_value"] is not None and r["p_value"] < ALPHA and r["difference"] * better > 0
            for r in results
        ]
        out[arm] = _rounded(
            {
                "power": float(np.mean(hits)),
                "replicates": len(results),
                "difference_mean": float(differences.mean()) if differences.size else None,
                "difference_p2.5": float(np.percentile(differences, 2.5)) if differences.size else None,
                "difference_p97.5": float(np.percentile(differences, 97.5)) if differences.size else None,
            }
        )
    return out


def _mean_sd(total: float, squares: float, n: float) -> tuple[float, float]:
    mean = total / n
    variance = max(squares - n * mean * mean, 0.0) / (n - 1) if n > 1 else 0.0
    return float(mean), float(np.sqrt(variance))


def _t(df: float) -> float:
    return float(scipy.stats.t.ppf(1 - ALPHA / 2, df))


def _day(day: float) -> str:
    return f"{day:g}"


def _rounded(entry: dict) -> dict:
    """Round floats to 10 significant digits: summaries do not depend on the chunking's last bits."""

    def r(value):
        if isinstance(value, float | np.floating):
            return None if not np.isfinite(value) else float(f"{float(value):.10g}")
        if isinstance(value, list):
            return [r(v) for v in value]
        return value

    return {k: r(v) for k, v in entry.items()}
