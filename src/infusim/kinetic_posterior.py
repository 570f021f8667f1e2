"""Posterior of the fitted per-pass capture parameters, given the calibration anchors (emcee).

``python -m infusim.calibrate extraction`` gives the least-squares values in ``data/kinetics.csv``
(``size_extraction_midpoint``, ``size_extraction_width``, ``homing_extraction_max``). This module
samples their joint posterior with the same sampler as the effect fits, so that uncertainty and
sensitivity analyses vary them by what the anchors allow rather than by a default CV::

    python -m infusim.kinetic_posterior [--write]

Likelihood: each anchor's log ratio (model over published value) is normal with the log-scale SD in
``ANCHOR_LOG_SD`` (from the spread the sources report; see each entry). Priors are broad: midpoint
N(2.3, 1) in diameter-ratio units, log width N(log 0.25, 1), logit homing N(0, 2). The Abbott 2004
anchor needs the whole model: every walker is one patient of one assembled batch.
Draws: ``data/kinetic_posteriors/extraction.csv``; the record (command, anchors, diagnostics) in
``fits.json`` beside it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import emcee
import numpy as np

from infusim import posterior
from infusim.calibrate import (
    ABBOTT2004_INFARCT,
    ABBOTT2004_INFARCT_TO_HEALTHY_48H,
    ABBOTT2004_SCENARIO,
    ANCHOR_SEVERITY,
    FISCHER2009_PASSAGE_RATIO_MNC_TO_MSC,
    FITTED,
    HUMAN_INTRACORONARY_FIRST_PASS,
    population_extraction,
)
from infusim.parameters import ParameterSet, _data_dir, bundled, sampled

NAME = "extraction"
#: Log-scale SD of each anchor (model / published value).
ANCHOR_LOG_SD = {
    # Fischer 2009: one passage ratio from pooled rat experiments, no spread given: a factor of
    # about 1.6 at one SD (assumption).
    "fischer": 0.5,
    # CD34+ first-pass retention 5.5% (Blocklet 2006) and 4.9-5.1% (Musialek 2011): close, but few
    # patients per study (derived: about 25%).
    "hsc": 0.25,
    # Unselected marrow cells 1.3-2.6% (Hofmann 2005) and 1.3-5.1% (Penicka 2007) around 2.5%
    # (derived: the ranges span about x0.5-2, so 0.4).
    "bm_mnc": 0.4,
    # Abbott 2004: 80.5% more cells in infarcted than healthy mouse hearts, group means of a few
    # mice (assumption: 25%).
    "abbott": 0.25,
}
PRIOR_MEAN = np.array([2.3, np.log(0.25), 0.0])
PRIOR_SD = np.array([1.0, 1.0, 2.0])
WALKERS, STEPS, BURN = 24, 1500, 500
STORED = posterior.STORED_DRAWS


def folder() -> Path:
    """Where the bundled kinetic posterior lives."""
    return _data_dir() / "kinetic_posteriors"


def natural(theta: np.ndarray) -> np.ndarray:
    """(midpoint, width, homing) from the sampled coordinates (midpoint, log width, logit homing)."""
    theta = np.atleast_2d(theta)
    return np.stack([theta[:, 0], np.exp(theta[:, 1]), 1.0 / (1.0 + np.exp(-theta[:, 2]))], axis=1)


def anchors(theta: np.ndarray, params: ParameterSet | None = None) -> dict[str, np.ndarray]:
    """Model values of the four anchors for each row of ``theta`` (sampled coordinates)."""
    params = params or bundled()
    midpoint, width, homing = natural(theta).T

    def size(cell: str) -> tuple[float, float]:
        return params.get("diameter", cell, "um"), params.get("diameter_cv", cell, "")

    rat = params.get("capillary_diameter", "rat/lungs", "um")
    ratio = (1 - population_extraction(*size("bm_mnc"), rat, midpoint, width)) / (
        1 - population_extraction(*size("msc"), rat, midpoint, width)
    )
    heart = params.get("capillary_diameter", "human/heart", "um")
    share = ANCHOR_SEVERITY * params.get("lesion_fraction_max", "heart", "")
    out = {"fischer": ratio}
    for cell in HUMAN_INTRACORONARY_FIRST_PASS:
        e = population_extraction(*size(cell), heart, midpoint, width)
        out[cell] = (1 - share) * e + share * (1 - (1 - e) * (1 - homing * ANCHOR_SEVERITY))
    out["abbott"] = _abbott_ratio(midpoint, width, homing, params)
    return out


def _abbott_ratio(midpoint, width, homing, params: ParameterSet) -> np.ndarray:
    """Live cells in heart (and infarct) at 48 h after IV mouse marrow cells, injured over healthy,
    one patient per parameter set."""
    from infusim.model.declare import patient_sum
    from infusim.model.kinetics import SIZE_NODES, assemble
    from infusim.scenario import from_dict
    from infusim.solve import solve_projected

    values = {(FITTED[0], ""): midpoint, (FITTED[1], ""): width, (FITTED[2], ""): homing}
    heart = []
    for condition in (None, ABBOTT2004_INFARCT):
        scenario = from_dict({**ABBOTT2004_SCENARIO, **({"condition": condition} if condition else {})})
        model = assemble(
            scenario, patients=len(midpoint), params=sampled(params, values, repeat=len(SIZE_NODES))
        )
        weights = np.array(
            [[s.kind == "live" and s.compartment in ("heart", "target") for s in model.states]], float
        )
        heart.append(
            patient_sum(solve_projected(model, np.array([48.0]), weights), model.rows_per_patient)[:, 0, 0]
        )
    return heart[1] / heart[0]


OBSERVED = {
    "fischer": FISCHER2009_PASSAGE_RATIO_MNC_TO_MSC,
    **HUMAN_INTRACORONARY_FIRST_PASS,
    "abbott": ABBOTT2004_INFARCT_TO_HEALTHY_48H,
}


def log_posterior(theta: np.ndarray, params: ParameterSet | None = None, leave_out: tuple[str, ...] = ()):
    """Log posterior of each row of ``theta``; ``leave_out`` drops anchors (a leave-one-study-out
    refit)."""
    theta = np.atleast_2d(theta)
    found = anchors(theta, params)
    total = -0.5 * np.sum(((theta - PRIOR_MEAN) / PRIOR_SD) ** 2, axis=1)
    for name, observed in OBSERVED.items():
        if name in leave_out:
            continue
        z = np.log(np.clip(found[name], 1e-300, None) / observed) / ANCHOR_LOG_SD[name]
        total = total - 0.5 * z**2
    return np.where(np.isfinite(total), total, -np.inf)


def sample(seed: int = 1, params: ParameterSet | None = None, leave_out: tuple[str, ...] = ()) -> tuple:
    """Posterior draws (natural scale, (STORED, 3)) and the sampler's record."""
    from infusim.synthesis import _split_rhat

    rng = np.random.default_rng(seed)
    start = np.array([2.301, np.log(0.2165), np.log(0.2636 / (1 - 0.2636))])
    p0 = start + 0.01 * rng.standard_normal((WALKERS, 3))
    sampler = emcee.EnsembleSampler(WALKERS, 3, lambda x: log_posterior(x, params, leave_out), vectorize=True)
    sampler.random_state = np.random.RandomState(seed).get_state()  # reproducible moves
    sampler.run_mcmc(p0, STEPS, progress=False)
    chain = sampler.get_chain(discard=BURN)
    logging.getLogger("emcee.autocorr").setLevel(logging.ERROR)
    tau = emcee.autocorr.integrated_time(chain, quiet=True)
    flat = chain.reshape(-1, 3)
    pick = np.random.default_rng(seed).choice(len(flat), size=STORED, replace=False)
    draws = natural(flat[pick])
    record = {
        "command": "python -m infusim.kinetic_posterior --write",
        "sampler": f"emcee {emcee.__version__} EnsembleSampler (stretch move)",
        "walkers": WALKERS,
        "steps": STEPS,
        "burn_in": BURN,
        "seed": seed,
        "anchors": {k: {"observed": v, "log_sd": ANCHOR_LOG_SD[k]} for k, v in OBSERVED.items()},
        "left_out": list(leave_out),
        "ess": {n: round(float(len(chain) * WALKERS / t), 1) for n, t in zip(FITTED, tau, strict=True)},
        "split_rhat": {n: round(float(r), 4) for n, r in zip(FITTED, _split_rhat(chain), strict=True)},
        "acceptance": round(float(np.mean(sampler.acceptance_fraction)), 3),
    }
    return draws, record


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    draws, record = sample()
    if "--write" in argv or "--check" in argv:
        named = lambda d: {n: d[:, j] for j, n in enumerate(FITTED)}  # noqa: E731
        runs = [named(draws)] + [named(sample(seed=s)[0]) for s in posterior.CHECK_SEEDS]
        record["seed_check"] = posterior.seed_check(runs, [record["seed"], *posterior.CHECK_SEEDS])
        print(
            f"medians of seeds {record['seed_check']['seeds']} within "
            f"{record['seed_check']['worst_median_range_sd']:.2f} SD (log scale)"
        )
    for j, name in enumerate(FITTED):
        low, mid, high = np.percentile(draws[:, j], [2.5, 50, 97.5])
        print(f"{name}: median {mid:.4g}, 95% interval {low:.4g} to {high:.4g}")
    print(f"ESS {record['ess']}, split R-hat {record['split_rhat']}, acceptance {record['acceptance']}")
    if "--write" in argv:
        path = posterior.write(folder(), NAME, {n: draws[:, j] for j, n in enumerate(FITTED)}, record)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
