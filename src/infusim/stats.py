"""Trial statistics from partial sums: arm means with 95% CIs, comparisons with control, power.

Continuous endpoints are compared as change from baseline (Welch's t-test and its interval), or with
``trial.analysis: ancova`` as that change adjusted for the day-0 value: the least-squares fit of
``change = a + d x treated + b x baseline`` to the two arms' patients counted at the visit, whose
``d`` has the classical standard error ``s sqrt(1/n1 + 1/n0 + (mean baseline difference)^2 / Sxx)``
(``Sxx``, ``s``: within-arm baseline sum of squares and residual SD, ``n1 + n0 - 3`` degrees of
freedom) and a t-test; a test holds it to statsmodels' OLS on the rows. Response-rate endpoints
as the share of responders in % (difference in percentage points, normal interval, pooled z-test).
``responders`` is always a percentage of the arm. Power is the share of replicate trials whose
primary comparison is significant at two-sided 5% in favour of the treated arm.

With ``mmrm`` each primary comparison also gets a delta-adjusted tipping-point analysis (``tipping_point``):
the treated arm's patients not seen at the primary visit are taken to fare ``delta`` worse there than
the missing-at-random model predicts (a pattern-mixture departure from MAR, the form regulators ask
for: EMA 2010 guideline on missing data; Ratitch, O'Kelly and Tosiello 2013, Pharm Stat 12:337), and
the ``delta`` at which the comparison stops being significant is reported.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import scipy.optimize
import scipy.stats

from infusim.virtual_trial import FIELDS, ChunkStats, Design, is_rate

ALPHA = 0.05
#: How continuous endpoints are compared (``trial.analysis``), for the summary's notes.
ANALYSIS_NOTES = {
    "change": "continuous endpoints: change from the day-0 visit, Welch t-test",
    "ancova": "continuous endpoints: change from the day-0 visit adjusted for the day-0 value (ANCOVA of "
    "the two arms compared, common slope, t-test)",
    "mmrm": "continuous endpoints: change from the day-0 visit by maximum likelihood from every visit seen "
    "(mixed model for repeated measures: day 0 a response, arm-by-visit means, unstructured covariance "
    "per arm; valid under dropout missing at random; Wald test, normal)",
}
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
                    model = _mmrm_change(totals[a, e], v) if plan.analysis == "mmrm" else None
                    if model is not None:  # every visit seen, not only those still followed
                        half = scipy.stats.norm.ppf(1 - ALPHA / 2) * np.sqrt(model[1])
                        entry["model_mean_change"] = model[0]
                        entry["model_ci95"] = [model[0] - half, model[0] + half]
                entry["effect_vs_untreated"] = s[_F["sum_effect"]] / n
                visits[_day(day)] = _rounded(entry)
            endpoints[endpoint.name] = {"unit": endpoint.unit, "visits": visits}
        out[arm] = endpoints
    return out


def compare(totals: np.ndarray, plan: Design, arm: int, endpoint: int, visit: int) -> dict:
    """Treated arm minus control at one visit: difference, 95% CI and two-sided p-value."""
    found = _contrast(totals, plan, arm, endpoint, visit)
    if found is None:
        n1, n0 = totals[arm, endpoint, visit, _F["n"]], totals[plan.control, endpoint, visit, _F["n"]]
        return {"difference": None, "ci95": [None, None], "p_value": None, "n": [int(n1), int(n0)]}
    difference, _se, half, p, n = found
    return _rounded(
        {"difference": difference, "ci95": [difference - half, difference + half], "p_value": p, "n": n}
    )


def _contrast(
    totals: np.ndarray, plan: Design, arm: int, endpoint: int, visit: int
) -> tuple[float, float, float, float, list[int]] | None:
    """(difference, its standard error, 95% CI half-width, two-sided p, [n treated, n control]) of
    the treated arm against control (percentage points for rates), or None below two per arm."""
    treated, control = totals[arm, endpoint, visit], totals[plan.control, endpoint, visit]
    n1, n0 = treated[_F["n"]], control[_F["n"]]
    if n1 < 2 or n0 < 2:
        return None
    if is_rate(plan.endpoints[endpoint]):
        p1, p0 = treated[_F["sum_value"]] / n1, control[_F["sum_value"]] / n0
        difference = p1 - p0
        se = np.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
        half = 1.96 * se
        pooled = (treated[_F["sum_value"]] + control[_F["sum_value"]]) / (n1 + n0)
        se0 = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
        p = 2 * scipy.stats.norm.sf(abs(difference) / se0) if se0 > 0 else 1.0
        difference, se, half = 100 * difference, 100 * se, 100 * half
    elif plan.analysis == "mmrm":
        found = [_mmrm_change(totals[a, endpoint], visit) for a in (arm, plan.control)]
        if found[0] is None or found[1] is None:
            return None
        difference = found[0][0] - found[1][0]
        se = float(np.sqrt(found[0][1] + found[1][1]))
        p = 2 * scipy.stats.norm.sf(abs(difference) / se) if se > 0 else float(difference == 0)
        half = scipy.stats.norm.ppf(1 - ALPHA / 2) * se
    elif plan.analysis == "ancova":
        difference, se, df = _ancova(treated, control)
        if se == 0:
            p, half = (1.0 if difference == 0 else 0.0), 0.0
        else:
            p = 2 * scipy.stats.t.sf(abs(difference) / se, df)
            half = _t(df) * se
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
    return float(difference), float(se), float(half), float(p), [int(n1), int(n0)]


def subgroups(all_totals: np.ndarray, plan: Design, groups) -> list[dict]:
    """Per subgroup of ``groups`` (``trial.subgroups``) and treated arm, the primary comparison below
    and at or above the cut in replicate 0, and their difference (the interaction: z-test on the two
    independent contrasts); with replicates, the share whose interaction is significant at 5%.

    ``all_totals``: (replicates, subgroups, 2, arms, endpoints, visits, fields)."""
    out = []
    e, v = plan.primary, plan.primary_visit
    for g, group in enumerate(groups):
        for a, arm in enumerate(plan.arms):
            if a == plan.control:
                continue
            entry = {"covariate": group.covariate, "cut": group.cut, "arm": arm}
            for side, name in enumerate(("below", "at_or_above")):
                entry[name] = compare(all_totals[0, g, side], plan, a, e, v)
            tests = [_interaction(all_totals[r, g], plan, a) for r in range(all_totals.shape[0])]
            entry["interaction"] = tests[0]
            if len(tests) > 1:
                significant = [t["p_value"] is not None and t["p_value"] < ALPHA for t in tests]
                entry["interaction"]["power"] = float(np.mean(significant))
            out.append(entry)
    return out


def _interaction(totals: np.ndarray, plan: Design, arm: int) -> dict:
    """At-or-above minus below contrast of one replicate's subgroup totals (2, arms, ...): difference,
    95% CI and two-sided p of a z-test (the two subgroups hold different patients)."""
    below, above = (_contrast(totals[side], plan, arm, plan.primary, plan.primary_visit) for side in (0, 1))
    if below is None or above is None:
        return {"difference": None, "ci95": [None, None], "p_value": None}
    difference = above[0] - below[0]
    se = float(np.hypot(above[1], below[1]))
    p = 2 * scipy.stats.norm.sf(abs(difference) / se) if se > 0 else float(difference == 0)
    half = 1.96 * se
    return _rounded({"difference": difference, "ci95": [difference - half, difference + half], "p_value": p})


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


def primary_comparisons(totals: np.ndarray, plan: Design) -> dict[str, dict]:
    """Each treated arm against control on the primary endpoint at the primary visit (``compare``);
    with ``trial.multiplicity``, each also carries ``p_adjusted`` across the treated arms."""
    found = {
        arm: compare(totals, plan, a, plan.primary, plan.primary_visit)
        for a, arm in enumerate(plan.arms)
        if a != plan.control
    }
    if plan.multiplicity != "none":
        adjusted = adjust([r["p_value"] for r in found.values()], plan.multiplicity)
        for result, p in zip(found.values(), adjusted, strict=True):
            result["p_adjusted"] = None if p is None else float(f"{p:.10g}")
    for a, arm in enumerate(plan.arms):
        if arm not in found:
            continue
        if (tipping := tipping_point(totals, plan, a)) is not None:
            found[arm]["tipping_point"] = tipping
        if plan.key_secondary:
            found[arm]["key_secondary"] = key_secondary(totals, plan, a, found[arm])
    return found


def key_secondary(totals: np.ndarray, plan: Design, arm: int, primary: dict) -> list[dict]:
    """The key secondary comparisons of ``arm`` (``trial.key_secondary``) in their fixed sequence:
    each is ``claimed`` when it favours the arm at two-sided p below the level and every comparison
    before it, the primary first, was claimed (the primary by its adjusted p with ``multiplicity``).
    The level is 0.05, or 0.05 / treated arms with ``bonferroni`` (each arm's sequence its share of
    the error), so each arm's family-wise error stays at 5%, and the whole trial's with bonferroni
    (Westfall and Krishen 2001; EMA 2017 guideline on multiplicity)."""
    arms = len(plan.arms) - 1
    level = ALPHA / arms if plan.multiplicity == "bonferroni" else ALPHA
    key = "p_value" if plan.multiplicity == "none" else "p_adjusted"
    direction = plan.endpoints[plan.primary].direction
    gate = _favours(primary["difference"], primary[key], direction, ALPHA)
    out = []
    for e, v in plan.key_secondary:
        found = compare(totals, plan, arm, e, v)
        gate = gate and _favours(found["difference"], found["p_value"], plan.endpoints[e].direction, level)
        out.append(
            {
                "endpoint": plan.endpoints[e].name,
                "unit": plan.endpoints[e].unit,
                "time_d": _day(plan.visits_d[v]),
            }
            | found
            | {"level": level, "claimed": gate}
        )
    return out


def _favours(difference: float | None, p: float | None, direction: float, level: float) -> bool:
    return difference is not None and p is not None and p < level and difference * direction > 0


#: ``trial.multiplicity`` -> statsmodels' multipletests method.
MULTIPLICITY = {"bonferroni": "bonferroni", "holm": "holm", "hochberg": "simes-hochberg"}


def adjust(p_values: list[float | None], method: str) -> list[float | None]:
    """Two-sided p-values adjusted for testing them together (statsmodels' ``multipletests``,
    family-wise error); None (no comparison) stays None and is not counted."""
    if method == "none":
        return list(p_values)
    from statsmodels.stats.multitest import multipletests

    present = [i for i, p in enumerate(p_values) if p is not None]
    out = list(p_values)
    if present:
        found = multipletests([p_values[i] for i in present], alpha=ALPHA, method=MULTIPLICITY[method])[1]
        for i, p in zip(present, found, strict=True):
            out[i] = float(p)
    return out


def power(all_totals: np.ndarray, plan: Design) -> dict:
    """Per treated arm: share of replicates whose primary comparison favours it at p < 0.05 (the
    adjusted p with ``trial.multiplicity``)."""
    endpoint = plan.endpoints[plan.primary]
    better = endpoint.direction
    per_replicate = [primary_comparisons(t, plan) for t in all_totals]
    key = "p_value" if plan.multiplicity == "none" else "p_adjusted"
    out = {}
    for a, arm in enumerate(plan.arms):
        if a == plan.control:
            continue
        results = [found[arm] for found in per_replicate]
        differences = np.array([r["difference"] for r in results if r["difference"] is not None])
        hits = [r[key] is not None and r[key] < ALPHA and r["difference"] * better > 0 for r in results]
        entry = {
            "power": float(np.mean(hits)),
            "replicates": len(results),
            "difference_mean": float(differences.mean()) if differences.size else None,
            "difference_p2.5": float(np.percentile(differences, 2.5)) if differences.size else None,
            "difference_p97.5": float(np.percentile(differences, 97.5)) if differences.size else None,
        }
        if plan.key_secondary:  # each key secondary claimed in its fixed sequence
            entry["key_secondary_power"] = [
                float(np.mean([r["key_secondary"][i]["claimed"] for r in results]))
                for i in range(len(plan.key_secondary))
            ]
        if plan.analysis == "mmrm" and not is_rate(endpoint):  # how robust the successes are
            tipping = [
                r["tipping_point"]["tipping_delta_sd"]
                for r, hit in zip(results, hits, strict=True)
                if hit and r.get("tipping_point", {}).get("tipping_delta_sd") is not None
            ]
            entry["tipping_delta_sd_median"] = float(np.median(tipping)) if tipping else None
        out[arm] = _rounded(entry)
    return out


#: Shifts of the tipping-point table, in SDs of the change at the primary visit (both arms pooled).
TIPPING_SHIFTS_SD = (0.25, 0.5, 1.0)
#: Shifts of the control arm's missing patients (SD of the change; positive = worse than MAR) at which
#: the treated arm's tipping point is recomputed: the two-dimensional tipping point.
CONTROL_SHIFTS_SD = (-0.5, 0.5, 1.0)


def delta_adjusted(
    totals: np.ndarray, plan: Design, arm: int, delta: float, delta_control: float = 0.0
) -> tuple[float, float, float] | None:
    """(difference, standard error, two-sided p) of ``arm`` against control on the primary endpoint
    at the primary visit by MMRM when the arm's patients not seen there fare ``delta`` worse
    (endpoint units, unfavourable direction) than missing at random predicts, and the control's
    ``delta_control`` worse; None without a comparison.

    With a share ``pi`` of an arm's day-0 patients (``n``) not seen at the visit, its mean moves by
    ``pi delta``: difference = MAR difference - direction (pi_t delta - pi_c delta_control). The
    variance adds ``delta^2 pi (1 - pi) / n`` per arm for the estimated share (under MAR the data
    model's and the losses' estimates are asymptotically independent); Wald test, normal."""
    found = _contrast(totals, plan, arm, plan.primary, plan.primary_visit)
    if found is None:
        return None
    losses = (_missing(totals, plan, arm), _missing(totals, plan, plan.control))
    return _shifted(found, losses, plan, delta, delta_control)


def _missing(totals: np.ndarray, plan: Design, arm: int) -> tuple[float, float]:
    """(share of the arm's day-0 patients not seen at the primary visit, those day-0 patients)."""
    n = totals[arm, plan.primary, 0, _F["n"]]
    return float(1 - totals[arm, plan.primary, plan.primary_visit, _F["n"]] / n), float(n)


def _shifted(
    found: tuple, losses: tuple, plan: Design, delta: float, delta_control: float = 0.0
) -> tuple[float, float, float]:
    """``delta_adjusted`` from the MAR comparison ``found`` (``_contrast``), computed once;
    ``losses``: ``_missing`` of the treated arm, then of the control."""
    (share, n), (share_c, n_c) = losses
    moved = found[0] - plan.endpoints[plan.primary].direction * (share * delta - share_c * delta_control)
    variance = (
        found[1] ** 2 + delta**2 * share * (1 - share) / n + delta_control**2 * share_c * (1 - share_c) / n_c
    )
    se = float(np.sqrt(variance))
    p = 2 * scipy.stats.norm.sf(abs(moved) / se) if se > 0 else float(moved == 0)
    return float(moved), se, float(p)


def _tipping(found: tuple, losses: tuple, plan: Design, delta_control: float) -> float | None:
    """The smallest treated-arm shift >= 0 at which p reaches 0.05, with the control's missing
    patients ``delta_control`` worse than MAR; None unless that comparison favours cells at p < 0.05
    with someone missing in the treated arm."""
    direction = plan.endpoints[plan.primary].direction
    z = scipy.stats.norm.ppf(1 - ALPHA / 2)
    share = losses[0][0]

    def gap(delta: float) -> float:
        moved, se, _p = _shifted(found, losses, plan, delta, delta_control)
        return direction * moved - z * se

    if share <= 0 or gap(0.0) <= 0:  # not significant in favour of cells before any shift
        return None
    favourable = direction * _shifted(found, losses, plan, 0.0, delta_control)[0]  # > 0 here
    # at delta = favourable / share the difference is 0, so p has passed 0.05: brentq's bracket
    return float(scipy.optimize.brentq(gap, 0.0, favourable / share, xtol=1e-12 * favourable))


def tipping_point(totals: np.ndarray, plan: Design, arm: int) -> dict | None:
    """The delta-adjusted MMRM comparison (``delta_adjusted``) at shifts of ``TIPPING_SHIFTS_SD``
    SDs of the change at the primary visit (both arms' observed patients pooled), and the
    ``tipping_delta``: the smallest delta >= 0 at which p reaches 0.05, given only for a comparison
    significant in favour of the arm under MAR with someone missing; ``control_shifts``: the same
    tipping point with the control's missing patients ``CONTROL_SHIFTS_SD`` worse than MAR (a
    two-dimensional tipping point). None unless the analysis is ``mmrm`` and the primary endpoint
    continuous."""
    e, v = plan.primary, plan.primary_visit
    if plan.analysis != "mmrm" or is_rate(plan.endpoints[e]):
        return None
    found = _contrast(totals, plan, arm, e, v)
    if found is None:
        return None
    losses = (_missing(totals, plan, arm), _missing(totals, plan, plan.control))
    cells = [totals[a, e, v] for a in (arm, plan.control)]
    m = sum(c[_F["n"]] for c in cells)
    spread = sum(c[_F["sumsq_change"]] for c in cells) - sum(c[_F["sum_change"]] for c in cells) ** 2 / m
    sd = float(np.sqrt(max(spread, 0.0) / (m - 1)))
    z = scipy.stats.norm.ppf(1 - ALPHA / 2)
    tipping = _tipping(found, losses, plan, 0.0)
    rows = []
    for k in TIPPING_SHIFTS_SD:
        moved, se, p = _shifted(found, losses, plan, k * sd)
        entry = {
            "delta_sd": k,
            "delta": k * sd,
            "difference": moved,
            "ci95": [moved - z * se, moved + z * se],
        }
        rows.append(_rounded(entry | {"p_value": p}))
    by_control = []
    for k in CONTROL_SHIFTS_SD:
        tip = _tipping(found, losses, plan, k * sd)
        by_control.append(
            _rounded(
                {
                    "delta_control_sd": k,
                    "p_value_at_zero": _shifted(found, losses, plan, 0.0, k * sd)[2],
                    "tipping_delta": tip,
                    "tipping_delta_sd": None if tip is None or sd == 0 else tip / sd,
                }
            )
        )
    return _rounded(
        {
            "missing_share": losses[0][0],
            "missing_share_control": losses[1][0],
            "sd_change": sd,
            "tipping_delta": tipping,
            "tipping_delta_sd": None if tipping is None or sd == 0 else tipping / sd,
        }
    ) | {"shifts": rows, "control_shifts": by_control}


def _ancova(treated: np.ndarray, control: np.ndarray) -> tuple[float, float, float]:
    """(baseline-adjusted difference in mean change, its standard error, degrees of freedom) of two
    arms' partial sums (see the module). Without baseline spread the slope is 0 (a pooled t-test)."""
    n = np.array([treated[_F["n"]], control[_F["n"]]])
    x = np.array([treated[_F["sum_baseline"]], control[_F["sum_baseline"]]]) / n
    y = np.array([treated[_F["sum_change"]], control[_F["sum_change"]]]) / n
    sxx = sum(s[_F["sumsq_baseline"]] for s in (treated, control)) - float(np.sum(n * x * x))
    sxy = sum(s[_F["sum_baseline_change"]] for s in (treated, control)) - float(np.sum(n * x * y))
    syy = sum(s[_F["sumsq_change"]] for s in (treated, control)) - float(np.sum(n * y * y))
    spread = sxx > 1e-12 * max(sum(s[_F["sumsq_baseline"]] for s in (treated, control)), 1e-300)
    slope = sxy / sxx if spread else 0.0
    df = float(n.sum() - (3 if spread else 2))
    residual = max(syy - slope * sxy, 0.0) / df
    gap = x[0] - x[1]
    se = np.sqrt(residual * (1 / n[0] + 1 / n[1] + (gap * gap / sxx if spread else 0.0)))
    return float(y[0] - y[1] - slope * gap), float(se), df


def _mmrm_change(cells: np.ndarray, visit: int) -> tuple[float, float] | None:
    """(mean change from day 0 to visit ``visit``, its variance) of one arm's endpoint by maximum
    likelihood under monotone missingness at random (``cells``: (visits, fields) partial sums with
    ``moment_fields``), or None when a visit has too few patients for its regression.

    The arm's visits are multivariate normal with unstructured covariance; its likelihood factors
    into the day-0 mean and, for each later visit k, the regression of the value at k on the values
    at every earlier visit among the patients seen at k (Anderson 1957; Little and Rubin 2019,
    section 7.2). The mean at k is that regression at the means before it, so a patient lost after
    visit j still informs the later means through what was seen up to j. The factors' estimates
    are asymptotically independent; the variance is the delta method over them (OLS covariance of
    each regression, residual variance on n - k - 1 degrees of freedom)."""
    size = cells.shape[0] + 1
    moments = [cells[k, len(FIELDS) :].reshape(size, size) for k in range(visit + 1)]
    n0, total, squares = moments[0][0, 0], moments[0][0, 1], moments[0][1, 1]
    if n0 < 2:
        return None
    means = [total / n0]
    variances = [np.array([[(squares - n0 * means[0] ** 2) / (n0 - 1) / n0]])]  # of each factor
    gradients = [[np.ones(1)]]  # gradients[k][b]: d mean_k / d (factor b's parameters)
    for k in range(1, visit + 1):
        m = moments[k]
        n = m[0, 0]
        if n <= k + 1:
            return None
        inverse = np.linalg.pinv(m[: k + 1, : k + 1])  # (1, value at visits 0..k-1)
        beta = inverse @ m[: k + 1, k + 1]
        residual = max(m[k + 1, k + 1] - beta @ m[: k + 1, k + 1], 0.0) / (n - k - 1)
        variances.append(residual * inverse)
        gradients.append(
            [sum(beta[j + 1] * gradients[j][b] for j in range(b, k)) for b in range(k)]
            + [np.concatenate([[1.0], means])]
        )
        means.append(beta[0] + beta[1:] @ np.asarray(means))
    change = list(gradients[visit])
    change[0] = change[0] - gradients[0][0]  # of mean_visit - mean_0
    variance = sum(g @ v @ g for g, v in zip(change, variances, strict=True))
    return float(means[visit] - means[0]), float(variance)


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
