"""Batched exact cell kinetics against scipy's solve_ivp looping over the same patients.

    python benchmarks/bench_kinetics.py [--patients 10000] [--peer-patients 500] [--method LSODA]

Both solve the same assembled model (the bundled msc-iv-human example; three size classes per
patient) with the same per-patient parameter draws (log-normal variability on loss, release,
homing, rejection and cardiac output). The script checks that the two agree, measures each one's
error against a tight Radau reference on a few patients, and prints patients per second and the
ratio. The peer loops over the first ``--peer-patients`` of the same patients (all with 0; at
about 10-40 patients/s a full 10,000-patient loop takes several minutes). The peer gets the exact
Jacobian and restarts at every dose/rate breakpoint, as infusim does.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import scipy.integrate
import scipy.linalg

from infusim.model.declare import Model, patient_sum
from infusim.model.kinetics import assemble
from infusim.population import lognormal_factors
from infusim.scenario import load
from infusim.solve import reference_solve, solve

EXAMPLE = Path(__file__).resolve().parents[1] / "src" / "infusim" / "examples" / "msc-iv-human.yaml"
VARIABILITY = {"loss": 0.3, "release": 0.3, "homing": 0.3, "rejection": 0.3, "cardiac_output": 0.2}


def peer_solve(
    model: Model, times: np.ndarray, patient: int, method: str, rtol: float, atol: float
) -> np.ndarray:
    """One patient (all its size classes as one block-diagonal system) with solve_ivp.

    The peer first takes the patient's own sub-model, so building its rate matrices costs what one
    patient costs, not the whole cohort (inside the timed loop: a solve_ivp user does the same work).
    """
    model = model.take_patients(np.array([patient]))
    patient = 0
    k = model.rows_per_patient
    rows = np.arange(patient * k, (patient + 1) * k)
    n = len(model.states)
    grid = np.union1d(model.breakpoints(float(times[-1])), times)
    x = np.zeros(k * n)
    out = np.zeros((len(times), n))
    wanted = {t: i for i, t in enumerate(times.tolist())}
    matrices = {}
    for j, t0 in enumerate(grid):
        x = x + model.boluses_at(t0)[rows].reshape(-1)
        if t0 in wanted:
            out[wanted[t0]] = x.reshape(k, n).sum(axis=0)
        if j + 1 == len(grid):
            break
        t1 = grid[j + 1]
        key = tuple(t0 >= s.time_h[rows[0]] for s in model.switches)
        if key not in matrices:
            full = model.rate_matrix(model.parameters_at(t0))
            matrices[key] = scipy.linalg.block_diag(*full[rows])
        a = matrices[key]
        u = model.input_rate(t0, t1)[rows].reshape(-1)
        solution = scipy.integrate.solve_ivp(
            lambda _t, y, a=a, u=u: a @ y + u,
            (t0, t1),
            x,
            method=method,
            jac=lambda _t, _y, a=a: a,
            rtol=rtol,
            atol=atol,
        )
        if not solution.success:
            raise RuntimeError(f"solve_ivp failed at rtol {rtol:g}: {solution.message}")
        x = solution.y[:, -1]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument(
        "--peer-patients", type=int, default=500, help="first N of the same patients for the peer (0: all)"
    )
    parser.add_argument("--method", default="LSODA", help="solve_ivp method of the peer")
    parser.add_argument("--rtol", type=float, default=1e-6, help="peer relative tolerance")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    scenario = load(EXAMPLE)
    times = np.asarray(scenario.simulation.outputs_h)
    patients = np.arange(args.patients)
    dose = scenario.dose_cells

    start = time.perf_counter()
    factors = lognormal_factors(args.seed, patients, VARIABILITY)
    model = assemble(scenario, patients=args.patients, rate_factors=factors)
    trajectory = solve(model, times)
    ours = trajectory.patient_states()
    ours_seconds = time.perf_counter() - start
    ours_rate = args.patients / ours_seconds

    n_peer = args.peer_patients or args.patients
    atol = 1e-9 * dose
    start = time.perf_counter()
    peer = np.stack([peer_solve(model, times, p, args.method, args.rtol, atol) for p in range(n_peer)])
    peer_seconds = time.perf_counter() - start
    peer_rate = n_peer / peer_seconds

    floor = 1e-6 * dose
    agree = np.abs(ours[:n_peer] - peer) / np.maximum(np.abs(peer), floor)
    checked = min(5, n_peer)
    reference = np.stack(
        [
            patient_sum(np.stack([reference_solve(model, times, row=r) for r in range(3 * p, 3 * p + 3)]), 3)[
                0
            ]
            for p in range(checked)
        ]
    )
    error_ours = np.max(np.abs(ours[:checked] - reference) / np.maximum(np.abs(reference), floor))
    error_peer = np.max(np.abs(peer[:checked] - reference) / np.maximum(np.abs(reference), floor))

    print(
        f"model: {len(model.states)} states x {model.rows_per_patient} size classes, "
        f"{len(times)} outputs over {times[-1] / 24:g} days"
    )
    print(
        f"infusim batched exact : {args.patients:>7d} patients in {ours_seconds:8.2f} s = "
        f"{ours_rate:10.0f} patients/s"
    )
    print(
        f"solve_ivp {args.method:<6s} loop  : {n_peer:>7d} patients in {peer_seconds:8.2f} s = "
        f"{peer_rate:10.1f} "
        f"patients/s (rtol {args.rtol:g})"
    )
    print(f"agreement infusim vs peer: max relative difference {agree.max():.2e} (states above 1e-6 of dose)")
    print(f"error vs Radau rtol 1e-10 on {checked} patients: infusim {error_ours:.1e}, peer {error_peer:.1e}")
    print(f"fallback rows (expm): {len(trajectory.fallback_rows)}")
    print(f"throughput ratio infusim / solve_ivp loop: {ours_rate / peer_rate:.0f}x")
    if agree.max() > 10 * max(error_peer, args.rtol) or error_ours > 1e-6:
        raise SystemExit("infusim and the peer disagree by more than the peer's own error")


if __name__ == "__main__":
    main()
