"""Speed and a cross-check of the evidence fit: emcee posterior against a Laplace approximation.

For every condition with evidence: the time of the shipped emcee fit (32 walkers x 20,000 steps,
vectorised over walkers), the time of a Laplace approximation of the same posterior (the peer:
scipy BFGS to the mode, then a finite-difference Hessian; no sampling), and how far apart their
95% intervals of the primary potency are (log scale, in units of the emcee interval's half-width).
Then the leave-one-study-out cross-validation of the whole bundled evidence. Both run on one core.

    python benchmarks/bench_synthesis.py [--no-cv]
"""

from __future__ import annotations

import sys
import time

import numpy as np
import scipy.optimize

from infusim import crossval, evidence, synthesis


def laplace(problem: synthesis.Problem) -> tuple[np.ndarray, np.ndarray]:
    """Mode and covariance of the log posterior (finite-difference Hessian at the BFGS mode)."""
    start = np.array([p.prior_mean for p in problem.parameters])

    def negative(x: np.ndarray) -> float:
        return -float(synthesis.log_posterior(problem, x[None, :])[0])

    mode = scipy.optimize.minimize(negative, start, method="BFGS").x
    n, h = len(mode), 1e-3
    hessian = np.zeros((n, n))
    for i in range(n):
        for j in range(i, n):
            e_i, e_j = np.eye(n)[i] * h, np.eye(n)[j] * h
            value = (
                negative(mode + e_i + e_j)
                - negative(mode + e_i - e_j)
                - negative(mode - e_i + e_j)
                + negative(mode - e_i - e_j)
            ) / (4 * h * h)
            hessian[i, j] = hessian[j, i] = value
    return mode, np.linalg.pinv(hessian)


def main() -> None:
    rows = evidence.load()
    print(
        f"{'condition':28s} {'rows':>4s} {'emcee s':>8s} {'Laplace s':>9s} {'ratio':>6s} "
        f"{'interval shift':>14s}"
    )
    total_emcee = total_laplace = 0.0
    for condition in synthesis.evidence_conditions(rows):
        problem = synthesis.build(condition, rows)
        start = time.perf_counter()
        result = synthesis.fit(problem)
        emcee_s = time.perf_counter() - start
        start = time.perf_counter()
        mode, covariance = laplace(problem)
        laplace_s = time.perf_counter() - start
        total_emcee, total_laplace = total_emcee + emcee_s, total_laplace + laplace_s
        i = 0  # the first parameter is the condition's first potency (sampled on the log scale)
        low, high = np.percentile(result.samples[:, i], [2.5, 97.5])
        sd = np.sqrt(max(covariance[i, i], 0.0))
        shift = max(abs(mode[i] - 1.96 * sd - low), abs(mode[i] + 1.96 * sd - high)) / (0.5 * (high - low))
        print(
            f"{condition:28s} {len(problem.bases):4d} {emcee_s:8.2f} {laplace_s:9.2f} "
            f"{emcee_s / laplace_s:6.1f} {shift:14.2f}"
        )
    print(f"all conditions: emcee {total_emcee:.1f} s, Laplace {total_laplace:.1f} s (one core)")
    if "--no-cv" not in sys.argv:
        start = time.perf_counter()
        scores = crossval.cross_validate(rows)
        o = scores["overall"]
        print(
            f"leave-one-study-out cross-validation: {time.perf_counter() - start:.0f} s for "
            f"{o['studies']} refits; coverage {o['coverage']:.1%} of {o['rows']} held-out rows, "
            f"interval score {o['interval_score_smd']:.2f} SMD, mean width {o['mean_width_smd']:.2f} SMD"
        )


if __name__ == "__main__":
    main()
