"""Clinical evidence held against the fitted effects: in-sample points and leave-one-study-out scores.

Every evidence row becomes a ``point`` (``time_h, quantity, compartment, observed, predicted,
predicted_low, predicted_high``): ``predicted`` is the posterior mean of what the study's design
would estimate, and the low/high bounds a 95% prediction interval for the study run again as a new
trial (posterior, between-trial SD tau and the study's own sampling error).

``cross_validate`` refits each condition once per study with that study's rows left out (all of
them: fitted or predicted is decided per study) and scores the held-out rows: coverage of the 95%
prediction interval and the interval score of Gneiting and Raftery (2007), which penalises both
misses and needless width.
"""

from __future__ import annotations

import numpy as np

from infusim import posterior
from infusim.evidence import EvidenceRow
from infusim.parameters import informed_studies
from infusim.synthesis import Problem, build, evidence_conditions, fit, interval_score, predictive, to_sampled

#: Seed of the prediction draws (sampling error and new-trial effects).
PREDICTION_SEED = 7


def theta_of(problem: Problem, fitted: posterior.Posterior) -> np.ndarray:
    """Stored table-scale draws -> the sampler's coordinates of ``problem`` (draws, parameters)."""
    columns = []
    for p in problem.parameters:
        if p.name not in fitted.samples:
            raise KeyError(f"{p.name} is not in the stored posterior of {problem.condition.name}: refit")
        columns.append(to_sampled(p.kind, fitted.samples[p.name]))
    return np.stack(columns, axis=1)


def points(problem: Problem, samples: np.ndarray, members: np.ndarray | None = None) -> list[dict]:
    """One point per row (``members``: indices into ``problem.bases``; default all)."""
    members = np.arange(len(problem.bases)) if members is None else np.asarray(members)
    sub = problem.subset(members)
    rng = np.random.default_rng(PREDICTION_SEED)
    expected = predictive(sub, samples, rng, new_trial=False)
    draws = predictive(sub, samples, rng, new_trial=True)
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    out = []
    for j, b in enumerate(sub.bases):
        r = b.row
        out.append(
            {
                "study": r.study,
                "arm": r.arm,
                "time_h": r.time_d * 24.0,
                "quantity": f"effect:{r.endpoint}",
                "compartment": "",
                "observed": r.estimate,
                "observed_low": r.ci_low,
                "observed_high": r.ci_high,
                "predicted": float(np.mean(expected[:, j])),
                "predicted_low": float(low[j]),
                "predicted_high": float(high[j]),
                "endpoint_sd": b.scale,
                "design": r.design,
                "source": r.source_key,
            }
        )
    return out


def in_sample(rows: list[EvidenceRow]) -> dict[str, list[dict]]:
    """Points of every condition with a bundled posterior, against its own fit (calibration)."""
    result = {}
    for condition in evidence_conditions(rows):
        fitted = posterior.load(condition)
        if fitted is None:
            continue
        problem = build(condition, rows)
        result[condition] = points(problem, theta_of(problem, fitted))
    return result


#: Chains of each leave-one-study-out refit: shorter than a stored fit's (``synthesis.FIT_STEPS``) to
#: keep the 46 refits to minutes; three seeds of ischemic stroke's potency agreed within 5% at this
#: length (0.20-0.22; the stored fit's 32 x 20,000 steps: 0.217-0.223).
CROSS_VALIDATION_SAMPLING = {"walkers": 24, "steps": 6000, "burn": 1000}


def cross_validate(rows: list[EvidenceRow], progress=None, **sampling) -> dict:
    """Leave-one-study-out predictions and scores, per condition and overall.

    A condition with a single study is predicted from its priors alone when that study is out.
    Each held-out point names in ``informed`` the parameter row its study informed, if any (a
    baseline, natural history or population value read in that trial): ``strict`` scores only the
    points whose study informed nothing, which alone are out of sample in the strict sense.
    """
    sampling = {**CROSS_VALIDATION_SAMPLING, **sampling}
    informed = informed_studies(r.source_key for r in rows)
    by_condition, everything = {}, []
    for condition in evidence_conditions(rows):
        problem = build(condition, rows)
        held = []
        for members in problem.studies:
            keep = np.setdiff1d(np.arange(len(problem.bases)), members)
            train = problem.subset(keep)
            result = fit(train, **sampling)
            held += [
                p | {"informed": informed.get(p["source"])} for p in points(problem, result.samples, members)
            ]
            if progress is not None:
                progress(condition, problem.bases[members[0]].row.study)
        by_condition[condition] = {"scores": scores(held), "points": held}
        everything += held
    strict = [p for p in everything if p["informed"] is None]
    return {"overall": scores(everything), "strict": scores(strict), "conditions": by_condition}


def scores(held: list[dict]) -> dict:
    """Coverage of the 95% intervals, mean interval score and width, and the number of rows."""
    if not held:
        return {"rows": 0, "studies": 0, "coverage": None, "interval_score_smd": None, "mean_width_smd": None}
    y = np.array([p["observed"] for p in held])
    low = np.array([p["predicted_low"] for p in held])
    high = np.array([p["predicted_high"] for p in held])
    sd = np.array([p["endpoint_sd"] for p in held])
    inside = (y >= low) & (y <= high)
    return {
        "rows": len(held),
        "studies": len({p["study"] for p in held}),
        "coverage": float(np.mean(inside)),
        "interval_score_smd": float(np.mean(interval_score(low, high, y) / sd)),
        "mean_width_smd": float(np.mean((high - low) / sd)),
    }
