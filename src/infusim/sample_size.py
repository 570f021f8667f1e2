"""Total sample size for a target power, read from a simulated power curve.

Each replicate trial at ``n`` patients succeeds or not, so the successes at each size are binomial.
Power is taken to rise as a probit in the square root of n, ``P(n) = Phi(a + b sqrt(n))``: the form
of the power of a z-test of a fixed difference (``Phi(delta sqrt(n) / (2 sigma) - z)`` for two
equal arms), with ``a`` and ``b`` free so that t-tests, unequal arms, losses and a shifting effect
bend it; fitted by a binomial GLM with a probit link (statsmodels). The size for ``target`` solves
``a + b sqrt(n) = Phi^-1(target)``; its 95% interval comes from the fit's coefficient covariance
(draws from their normal approximation). Sizes beyond the simulated range are flagged.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.stats

#: Parametric draws of (a, b) for the interval.
DRAWS = 4000


def for_target(sizes: list[int], power: list[float], replicates: int, target: float) -> dict:
    """``{"patients", "ci95", "extrapolated"}`` for ``target`` (0-1) from the simulated ``power`` at
    each total size in ``sizes`` (each from ``replicates`` trials), or ``{"patients": None, "reason"}``
    when the curve cannot say (power flat, falling, or 0 or 1 everywhere)."""
    import statsmodels.api as sm

    if not 0 < target < 1:
        raise ValueError(f"target power {target} is not between 0 and 1")
    sizes_arr = np.asarray(sizes, dtype=float)
    hits = np.rint(np.asarray(power, dtype=float) * replicates)
    if len(set(sizes)) < 2:
        return {"patients": None, "reason": "needs two or more sample sizes (--n)"}
    if hits.sum() == 0 or hits.sum() == replicates * len(hits):
        return {"patients": None, "reason": "power is 0 or 1 at every size simulated: widen --n"}
    design = sm.add_constant(np.sqrt(sizes_arr))
    outcome = np.column_stack([hits, replicates - hits])
    link = sm.families.links.Probit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # near-separation warnings: judged by the slope's SE below
        fit = sm.GLM(outcome, design, family=sm.families.Binomial(link=link)).fit()
    a, b = fit.params
    if not b > 0 or not np.isfinite(fit.bse[1]) or b < 2 * fit.bse[1]:
        return {"patients": None, "reason": "power does not rise clearly with size over --n: widen it"}
    goal = scipy.stats.norm.ppf(target)
    if goal <= a:
        return {
            "patients": None,
            "reason": "the fitted curve meets the target at no patients: give smaller --n",
        }
    patients = ((goal - a) / b) ** 2
    rng = np.random.default_rng(0)
    draws = rng.multivariate_normal(fit.params, fit.cov_params(), DRAWS)
    with np.errstate(divide="ignore", invalid="ignore"):  # a draw whose power does not rise: never
        found = np.where(draws[:, 1] > 0, np.maximum((goal - draws[:, 0]) / draws[:, 1], 0.0) ** 2, np.inf)
    low, high = np.percentile(found, [2.5, 97.5])
    return {
        "patients": math.ceil(patients),
        "ci95": [math.floor(low), None if not np.isfinite(high) else math.ceil(high)],
        "extrapolated": bool(patients < sizes_arr.min() or patients > sizes_arr.max()),
    }
