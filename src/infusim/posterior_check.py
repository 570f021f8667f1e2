"""Importance-sampling check of a stored evidence posterior (no Markov chain).

Shares nothing with emcee but the log posterior: draws from a multivariate t proposal (4 degrees
of freedom, centred on the stored draws with twice their covariance, so heavier-tailed than the
posterior), weighted by posterior / proposal. A proposal that missed part of the posterior would
show a few draws carrying most of the weight (``largest_weight``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.stats

from infusim import synthesis
from infusim.crossval import theta_of
from infusim.posterior import Posterior


@dataclass(frozen=True)
class ImportanceCheck:
    """Weighted 2.5/50/97.5% points per parameter (table scale) and the importance sample's quality."""

    quantiles: dict[str, tuple[float, float, float]]
    effective_size: float
    largest_weight: float  # share of the total weight carried by the heaviest draw
    draws: int


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order]) / weights.sum()
    return [float(values[order][min(np.searchsorted(cumulative, q), len(values) - 1)]) for q in qs]


def importance_check(
    problem: synthesis.Problem, stored: Posterior, draws: int = 2_000_000, seed: int = 5
) -> ImportanceCheck:
    """The posterior of ``problem`` estimated by importance sampling around ``stored``'s draws."""
    x0 = theta_of(problem, stored)
    proposal = scipy.stats.multivariate_t(loc=x0.mean(0), shape=2.0 * np.cov(x0.T), df=4, seed=seed)
    chunk, log_w, drawn = 8192, [], []
    for start in range(0, draws, chunk):
        x = np.atleast_2d(proposal.rvs(size=min(chunk, draws - start)))
        log_w.append(synthesis.log_posterior(problem, x) - proposal.logpdf(x))
        drawn.append(x)
    log_w, x = np.concatenate(log_w), np.concatenate(drawn)
    finite = np.isfinite(log_w)
    weights = np.where(finite, np.exp(log_w - log_w[finite].max()), 0.0)
    quantiles = {
        p.name: tuple(weighted_quantiles(synthesis.to_table(p.kind, x[:, j]), weights, (0.025, 0.5, 0.975)))
        for j, p in enumerate(problem.parameters)
    }
    return ImportanceCheck(
        quantiles,
        float(weights.sum() ** 2 / np.sum(weights**2)),
        float(weights.max() / weights.sum()),
        len(x),
    )


#: Proposal draws of the check stored with a fit (a few seconds per condition; AMI about 15 s).
RECORD_DRAWS = 500_000


def record(problem: synthesis.Problem, samples: dict[str, np.ndarray], draws: int = RECORD_DRAWS) -> dict:
    """The check as stored with a fit (``importance_check`` in fits.json): per parameter the
    importance-sampling 2.5/50/97.5% points (table scale) and how far the fit's draws lie from them,
    in posterior SDs on the sampled scale; the importance sample's effective size and largest weight."""
    condition = problem.condition.name
    check = importance_check(problem, Posterior(condition, samples, {}), draws=draws)
    x = theta_of(problem, Posterior(condition, samples, {}))
    found = theta_of(
        problem, Posterior(condition, {name: np.asarray(q) for name, q in check.quantiles.items()}, {})
    )
    parameters = {}
    for j, p in enumerate(problem.parameters):
        sd = max(float(np.std(x[:, j])), 1e-300)
        kept = np.percentile(x[:, j], [2.5, 50, 97.5])
        parameters[p.name] = {
            "quantiles": [round(v, 6) for v in check.quantiles[p.name]],
            "median_off_sd": round(abs(float(found[1, j] - kept[1])) / sd, 3),
            "bounds_off_sd": round(
                float(max(abs(found[0, j] - kept[0]), abs(found[2, j] - kept[2]))) / sd, 3
            ),
        }
    return {
        "method": "importance sampling, multivariate t proposal (4 df, twice the draws' covariance)",
        "draws": check.draws,
        "effective_size": round(check.effective_size),
        "largest_weight": float(f"{check.largest_weight:.3g}"),
        "parameters": parameters,
        "worst_median_off_sd": max(v["median_off_sd"] for v in parameters.values()),
        "worst_bounds_off_sd": max(v["bounds_off_sd"] for v in parameters.values()),
    }
