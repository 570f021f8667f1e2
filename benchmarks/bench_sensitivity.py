"""A Sobol sensitivity analysis by infusim, and the same SALib design evaluated by a libroadrunner loop.

    python benchmarks/bench_sensitivity.py [--scenario FILE] [--n 1024] [--peer-sets 300]

The scenario's varying parameter rows (every row it reads that has a non-fixed prior) span the
central 95% of their priors; SALib's Sobol design (N (D + 2) parameter sets, no second-order terms)
is evaluated by

* infusim: ``infusim.sensitivity_analysis.analyse`` end to end (design, batched assembly and exact solution of
  every set, indices with bootstrap CIs), in one process and in two;
* libroadrunner (CVODE) looping over the first ``--peer-sets`` sets of the same design in one process:
  per set, the set's assembled rate constants and initial amounts are set on one loaded SBML model
  (exported from the same declaration), reset, and simulated at the output times only; the outputs
  are the same weighted sums of species. Assembly of the sets is not timed for the peer (it would be
  infusim's own code): the peer is timed for integration alone, which favours it.

The peer runs at the loosest rtol of 1e-6, 1e-8, 1e-10, 1e-12 whose error against Radau (rtol 1e-10)
is at most 1e-6 relative on 5 sets (matched accuracy); the ratio is per core: infusim's one-process
evaluation rate against the one-process peer.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from bench_trial import calibrate_tolerance, reference_sums, relative_error, roadrunner_loop

from infusim import ensemble
from infusim import sensitivity_analysis as sensitivity
from infusim.model.kinetics import assemble
from infusim.parameters import for_scenario, sampled
from infusim.scenario import load

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "src" / "infusim" / "examples" / "msc-allogeneic-iv-human.yaml"
OUTPUTS = (
    "live_cells:lungs@24 h",
    "live_cells:liver@24 h",
    "live_cells:whole_body@7 day",
    "dead_cells:all@7 day",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=EXAMPLE)
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--peer-sets", type=int, default=300)
    args = parser.parse_args()
    scenario = load(args.scenario)
    outputs = [ensemble.parse_output(t, scenario) for t in OUTPUTS]
    priors = sensitivity.varied_priors(scenario, outputs)
    print(
        f"scenario {args.scenario.name}: {len(priors)} varying parameter rows, outputs {', '.join(OUTPUTS)}"
    )

    timings = {}
    for workers in (1, 2):
        start = time.perf_counter()
        result = sensitivity.analyse(scenario, outputs, n=args.n, workers=workers)
        timings[workers] = time.perf_counter() - start
        print(
            f"infusim, {workers} process(es): {result.evaluations:,} evaluations, analysis end to end "
            f"{timings[workers]:.1f} s ({result.evaluations / timings[workers]:,.0f} sets/s)"
        )
    evaluations = result.evaluations

    _, design = sensitivity.design("sobol", priors, args.n, scenario.simulation.seed)
    values = sensitivity.to_values(priors, design)
    start = time.perf_counter()
    ours = sensitivity.evaluate_all(scenario, outputs, values, workers=1)
    ours_seconds = time.perf_counter() - start
    ours_rate = evaluations / ours_seconds
    print(f"infusim evaluation only, 1 process: {ours_seconds:.1f} s = {ours_rate:,.0f} sets/s")

    peer = args.peer_sets
    subset = {k: v[:peer] for k, v in values.items()}
    kinetic = {k: v for k, v in subset.items() if k[0] not in ensemble.POSTERIOR_PARAMETERS}
    model = assemble(scenario, patients=peer, params=sampled(for_scenario(scenario), kinetic, repeat=3))
    times = np.unique([o.time_h for o in outputs])
    weights = np.stack([ensemble._state_weights(model, o) for o in outputs])
    dose = float(model.administered(np.inf)[:3].sum())
    reference = reference_sums(model, weights, times, 5)
    rtol, error = calibrate_tolerance(roadrunner_loop, model, weights, times, reference, dose)
    sums, peer_seconds = roadrunner_loop(model, weights, times, peer, rtol, rtol * 1e-3)
    peer_rate = peer / peer_seconds
    picked = np.stack([sums[:, np.searchsorted(times, o.time_h), j] for j, o in enumerate(outputs)], axis=1)
    agreement = relative_error(picked, ours[:peer], dose)
    ours_error = relative_error(
        np.stack([reference[:, np.searchsorted(times, o.time_h), j] for j, o in enumerate(outputs)], axis=1),
        ours[:5],
        dose,
    )
    print(
        f"libroadrunner loop, 1 process: {peer} sets in {peer_seconds:.2f} s = {peer_rate:,.1f} sets/s "
        f"(rtol {rtol:g})"
    )
    print(f"error vs Radau rtol 1e-10 (5 sets): infusim {ours_error:.1e}, libroadrunner {error:.1e}")
    print(
        f"agreement infusim vs libroadrunner on {peer} sets: {agreement:.1e} "
        "(relative, floor 1e-6 of the dose)"
    )
    print(f"ratio per core (evaluation, 1 process each): {ours_rate / peer_rate:.0f}x")
    print(
        f"libroadrunner would need {evaluations / peer_rate:,.0f} s for the {evaluations:,} sets "
        "on one core; "
        f"infusim's whole analysis took {timings[2]:.1f} s on 2 processes"
    )


if __name__ == "__main__":
    main()
