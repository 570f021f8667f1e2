"""What the exposure outputs cost, each against the same run without them, in one process.

    python benchmarks/bench_exposure.py [--patients 20000] [--n 256]

* a virtual trial (knee osteoarthritis example) with ``trial.exposure: true`` against the same trial
  without it (the peer: identical work but the per-patient exposure columns);
* a Sobol analysis of ``live_cell_days:target@28 day`` (the area on the coarse grid) against the same
  design read on the dense grid and against ``live_cells:target@28 day`` (one time point), with the
  areas' largest relative difference, coarse against dense, on the design's first 200 sets.

Ratios are per core (every run in this one process); the docs quote them (docs/trials.md, trial.exposure;
docs/model.md, Exposure).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from infusim import api, ensemble, exposure
from infusim import sensitivity_analysis as sensitivity
from infusim.scenario import load

ROOT = Path(__file__).resolve().parents[1]
TRIAL = ROOT / "src" / "infusim" / "examples" / "trial-knee-osteoarthritis.yaml"
SCENARIO = ROOT / "src" / "infusim" / "examples" / "msc-iv-human.yaml"


def time_trial(patients: int, with_exposure: bool) -> float:
    spec = yaml.safe_load(TRIAL.read_text())
    spec["trial"]["patients"] = patients
    spec["trial"]["exposure"] = with_exposure
    out = Path(tempfile.mkdtemp())
    try:
        start = time.perf_counter()
        api.trial(spec, out / "t")
        return time.perf_counter() - start
    finally:
        shutil.rmtree(out)


def time_sobol(text: str, n: int, points: int) -> float:
    scenario = load(SCENARIO)
    saved = exposure.COARSE_POINTS
    exposure.COARSE_POINTS = points
    try:
        start = time.perf_counter()
        sensitivity.analyse(scenario, [ensemble.parse_output(text, scenario)], method="sobol", n=n)
        return time.perf_counter() - start
    finally:
        exposure.COARSE_POINTS = saved


def coarse_error(n_sets: int = 200) -> float:
    """Largest relative difference of live_cell_days, coarse grid against dense, over prior draws."""
    from infusim import uncertainty
    from infusim.parameters import for_scenario

    scenario = load(SCENARIO)
    output = ensemble.parse_output("live_cell_days:target@28 day", scenario)
    params = for_scenario(scenario)
    values = uncertainty.draw(uncertainty.priors(params, ensemble.read_keys(scenario, [output])), n_sets, 1)
    coarse = ensemble.evaluate(scenario, [output], values, n_sets, params)[:, 0]
    saved = exposure.COARSE_POINTS
    exposure.COARSE_POINTS = exposure.POINTS_PER_ADMINISTRATION
    try:
        dense = ensemble.evaluate(scenario, [output], values, n_sets, params)[:, 0]
    finally:
        exposure.COARSE_POINTS = saved
    return float(np.max(np.abs(coarse / dense - 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--n", type=int, default=256)
    args = parser.parse_args()
    time_trial(200, True)  # warm-up: imports and caches
    plain = time_trial(args.patients, False)
    with_exposure = time_trial(args.patients, True)
    print(
        f"trial, {args.patients} patients: {plain:.2f} s without exposure, {with_exposure:.2f} s with it "
        f"(x{with_exposure / plain:.2f}, one process)"
    )
    point = time_sobol("live_cells:target@28 day", args.n, exposure.COARSE_POINTS)
    coarse = time_sobol("live_cell_days:target@28 day", args.n, exposure.COARSE_POINTS)
    dense = time_sobol("live_cell_days:target@28 day", args.n, exposure.POINTS_PER_ADMINISTRATION)
    print(
        f"Sobol N = {args.n}: live_cells {point:.2f} s; live_cell_days coarse grid {coarse:.2f} s, "
        f"dense grid {dense:.2f} s (dense / coarse x{dense / coarse:.1f}, one process)"
    )
    print(
        f"live_cell_days, coarse against dense, 200 prior draws: largest relative difference "
        f"{coarse_error():.2e}"
    )


if __name__ == "__main__":
    main()
