"""What the trial analyses and design options cost, each against the same trial without them, in one
process (no patient rows written: the partial sums and outcomes a chunk computes).

    python benchmarks/bench_trial_analysis.py [--patients 10000]

* ``trial.analysis: mmrm`` against ``change`` (the peer: identical patients and outcomes, without
  the per-visit cross-products), knee osteoarthritis example at its 5 visits and at 25;
* ``trial.missed_doses: 50%`` against none (COPD schedules example, four-dose arms: the same cell
  model with per-patient dose amounts and the per-administration risk masks).

Best of three runs each; ratios are per core (every run in this one process). The docs quote them
(docs/trials.md, Statistics and the trial section).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

from infusim.scenario import from_dict
from infusim.virtual_trial import simulate_chunk

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "src" / "infusim" / "examples"


def best_of_three(spec: dict, patients: int) -> float:
    scenario = from_dict(spec)
    simulate_chunk(scenario, 0, 0, 200, table=False)  # warm-up: imports and caches
    times = []
    for _ in range(3):
        start = time.perf_counter()
        simulate_chunk(scenario, 0, 0, patients, table=False)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=10_000)
    args = parser.parse_args()
    knee = yaml.safe_load((EXAMPLES / "trial-knee-osteoarthritis.yaml").read_text())
    for visits in (knee["trial"]["visits"], [f"{d} day" for d in range(15, 361, 15)]):
        found = {}
        for analysis in ("change", "mmrm"):
            knee["trial"] |= {"visits": visits, "analysis": analysis, "patients": args.patients}
            found[analysis] = best_of_three(knee, args.patients)
        print(
            f"knee OA, {args.patients} patients, {len(visits) + 1} visits: change {found['change']:.2f} s, "
            f"mmrm {found['mmrm']:.2f} s (x{found['mmrm'] / found['change']:.2f}, one process)"
        )
    copd = yaml.safe_load((EXAMPLES / "trial-copd-schedules.yaml").read_text())
    found = {}
    for missed in (0.0, 0.5):
        copd["trial"] |= {"missed_doses": missed, "patients": args.patients}
        found[missed] = best_of_three(copd, args.patients)
    print(
        f"COPD schedules, {args.patients} patients: no missed doses {found[0.0]:.2f} s, half the later "
        f"doses missed {found[0.5]:.2f} s (x{found[0.5] / found[0.0]:.2f}, one process)"
    )


if __name__ == "__main__":
    main()
