"""A virtual-trial cohort run by infusim, by a libroadrunner loop and by a solve_ivp loop.

    python benchmarks/bench_trial.py [--patients 20000] [--peer-patients 300] [--scenario FILE]
                                     [--million] [--million-patients 1000000]

Part 1, the peer benchmark. The same cohort (the scenario's trial population: body weight,
severity and log-normal kinetic variability per patient, from infusim's population module) and the
same model (each patient's assembled cell-kinetic model; the SBML that libroadrunner runs is
exported from that declaration) are solved by three engines for the task a trial needs: the cell
sums that drive the mechanism signals, on the disease-model time grid (175 times over a year).

* infusim: batched exact solution (lumping, eigen-decomposition, projected outputs), one process
  and two processes (half the cohort each);
* libroadrunner (CVODE) looping over patients in one process: per patient set every parameter and
  initial amount, reset, simulate at the grid times;
* scipy solve_ivp (LSODA) looping over patients (exact Jacobian, restarted at every breakpoint).

Each peer runs at the loosest tolerance, of rtol 1e-6, 1e-8, 1e-10, 1e-12, whose error against a
Radau reference (rtol 1e-10) is at most 1e-6 relative on the checked patients (equal accuracy);
infusim's own error is printed. The script checks that all three agree and prints patients per
second and the ratios.

Part 2 (``--million``): ``infusim trial`` end to end with 1,000,000 patients, weekly visits over a
year, two worker processes and Parquet output, with the wall time, the peak memory of the whole
process tree, and the output size per patient.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from bench_kinetics import peer_solve

from infusim.model import mechanisms
from infusim.model.declare import Model
from infusim.model.kinetics import assemble
from infusim.population import replicate_seed, sample_cohort
from infusim.scenario import load
from infusim.solve import reference_solve, solve_projected

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "src" / "infusim" / "examples" / "trial-copd.yaml"
LADDER = (1e-6, 1e-8, 1e-10, 1e-12)
TARGET_ERROR = 1e-6


def cohort_model(
    scenario, index: np.ndarray, days: float | None = None
) -> tuple[Model, np.ndarray, np.ndarray]:
    """The cell model of the cohort's patients ``index``, the signal weights and the grid (h)."""
    arm = next(a for a in scenario.trial.arms if a.kind == "cells")
    treated = scenario.for_arm(arm)
    seed = replicate_seed(scenario.simulation.seed, 0)
    cohort = sample_cohort(scenario, seed, index)
    model = assemble(
        treated,
        patients=len(index),
        rate_factors=cohort.rate_factors,
        body_weight_kg=cohort.body_weight_kg,
        severity=cohort.severity,
    )
    visits = np.asarray(scenario.trial.visits_h) / 24.0
    if days is not None:
        visits = np.array([0.0, days])
    grid_h = mechanisms.disease_grid(float(visits[-1]), visits) * 24.0
    weights = np.stack(list(mechanisms.state_weights(model).values()))
    return model, weights, grid_h


def infusim_sums(model: Model, weights: np.ndarray, grid_h: np.ndarray) -> np.ndarray:
    """(patients, times, sums) by infusim."""
    values = solve_projected(model, grid_h, weights)
    k = model.rows_per_patient
    return values.reshape(model.n_patients, k, len(grid_h), -1).sum(axis=1)


def _half(args):
    """One process's share of the cohort: assemble and solve (seconds)."""
    scenario_path, patients, part, days = args
    scenario = load(scenario_path)
    half = np.array_split(np.arange(patients), 2)[part]
    start = time.perf_counter()
    model, weights, grid_h = cohort_model(scenario, half, days)
    infusim_sums(model, weights, grid_h)
    return time.perf_counter() - start


def roadrunner_loop(
    model: Model, weights: np.ndarray, grid_h: np.ndarray, patients: int, rtol: float, atol: float
) -> tuple[np.ndarray, float]:
    """(patients, times, sums) by libroadrunner, one patient after the other; and seconds."""
    import roadrunner

    from infusim.sbml import patient_values, species_id, to_sbml

    roadrunner.Logger.setLevel(roadrunner.Logger.LOG_ERROR)
    runner = roadrunner.RoadRunner(to_sbml(model, 0))
    runner.integrator.relative_tolerance = rtol
    runner.integrator.absolute_tolerance = atol
    runner.integrator.maximum_num_steps = 1_000_000
    parameter_ids = list(runner.model.getGlobalParameterIds())
    species_ids = list(runner.model.getFloatingSpeciesIds())
    k = model.rows_per_patient
    needed = [j for j in range(len(model.states)) if np.any(weights[:, j])]
    runner.timeCourseSelections = [
        f"[{species_id(model.states[j].name, c)}]" for c in range(k) for j in needed
    ]
    inputs = []
    for p in range(patients):
        values = patient_values(model, p)
        inputs.append(
            (np.array([values[i] for i in parameter_ids]), np.array([values[i] for i in species_ids]))
        )
    out = np.zeros((patients, len(grid_h), weights.shape[0]))
    times = [0.0, *grid_h.tolist()] if grid_h[0] > 0 else grid_h.tolist()
    with _quiet_c_output():  # CVODE warns at every event ('t + h = t'); the results are checked below
        start = time.perf_counter()
        for p, (parameters, amounts) in enumerate(inputs):
            runner.resetAll()
            runner.model.setGlobalParameterValues(parameters)
            runner.model.setFloatingSpeciesInitAmounts(amounts)
            runner.reset()
            result = np.asarray(runner.simulate(times=times))[-len(grid_h) :]
            states = result.reshape(len(grid_h), k, len(needed)).sum(axis=1)
            out[p] = states @ weights[:, needed].T
        seconds = time.perf_counter() - start
    return out, seconds


@contextlib.contextmanager
def _quiet_c_output():
    """Silence what C libraries write to file descriptors 1 and 2 (SUNDIALS logs to stdout)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (devnull, *saved):
            os.close(fd)


def solve_ivp_loop(
    model: Model, weights: np.ndarray, grid_h: np.ndarray, patients: int, rtol: float, atol: float
) -> tuple[np.ndarray, float]:
    """(patients, times, sums) by scipy solve_ivp (LSODA, exact Jacobian) per patient; and seconds."""
    out = np.zeros((patients, len(grid_h), weights.shape[0]))
    start = time.perf_counter()
    for p in range(patients):
        out[p] = peer_solve(model, grid_h, p, "LSODA", rtol, atol) @ weights.T
    return out, time.perf_counter() - start


def reference_sums(model: Model, weights: np.ndarray, grid_h: np.ndarray, patients: int) -> np.ndarray:
    k = model.rows_per_patient
    out = np.zeros((patients, len(grid_h), weights.shape[0]))
    for p in range(patients):
        states = sum(reference_solve(model, grid_h, row=p * k + c) for c in range(k))
        out[p] = states @ weights.T
    return out


def relative_error(values: np.ndarray, reference: np.ndarray, dose: float) -> float:
    floor = 1e-6 * dose
    return float(np.max(np.abs(values - reference) / np.maximum(np.abs(reference), floor)))


def calibrate_tolerance(engine, model, weights, grid_h, reference, dose) -> tuple[float, float]:
    """Loosest rtol of the ladder meeting TARGET_ERROR on the reference patients; its error."""
    checked = len(reference)
    error = np.inf
    for rtol in LADDER:
        try:
            values, _ = engine(model, weights, grid_h, checked, rtol, rtol * 1e-3)
        except RuntimeError:
            continue
        error = relative_error(values, reference, dose)
        if error <= TARGET_ERROR:
            return rtol, error
    raise SystemExit(f"{engine.__name__} reaches no better than {error:.1e} on the ladder {LADDER}")


def peer_benchmark(args) -> None:
    scenario = load(args.scenario)
    model, weights, grid_h = cohort_model(scenario, np.arange(args.peer_patients), args.days)
    dose = float(model.administered(np.inf).max())
    checked = 5
    print(
        f"scenario {Path(args.scenario).name}: {len(model.states)} states x {model.rows_per_patient} size "
        f"classes, {len(model.doses)} doses, {len(model.switches)} rate switches, "
        f"{len(grid_h)} output times over {grid_h[-1] / 24:g} days, {weights.shape[0]} signal sums"
    )
    start = time.perf_counter()
    cohort, _, _ = cohort_model(scenario, np.arange(args.patients), args.days)
    ours = infusim_sums(cohort, weights, grid_h)
    ours_seconds = time.perf_counter() - start
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_half, [(str(args.scenario), 100, 0, args.days)] * 2))  # warm the workers
        start = time.perf_counter()
        jobs = [(str(args.scenario), args.patients, part, args.days) for part in (0, 1)]
        halves = list(pool.map(_half, jobs))
        two_seconds = time.perf_counter() - start
    reference = reference_sums(model, weights, grid_h, checked)
    error_ours = relative_error(ours[:checked], reference, dose)

    rr_rtol, rr_error = calibrate_tolerance(roadrunner_loop, model, weights, grid_h, reference, dose)
    rr, rr_seconds = roadrunner_loop(model, weights, grid_h, args.peer_patients, rr_rtol, rr_rtol * 1e-3)
    ivp_rtol, ivp_error = calibrate_tolerance(solve_ivp_loop, model, weights, grid_h, reference, dose)
    ivp_n = max(10, args.peer_patients // 10)
    ivp, ivp_seconds = solve_ivp_loop(model, weights, grid_h, ivp_n, ivp_rtol, ivp_rtol * 1e-3)

    agree_rr = relative_error(rr, ours[: args.peer_patients], dose)
    agree_ivp = relative_error(ivp, ours[:ivp_n], dose)
    rate = args.patients / ours_seconds
    rate_two = args.patients / two_seconds
    rr_rate = args.peer_patients / rr_seconds
    ivp_rate = ivp_n / ivp_seconds
    print(f"infusim, 1 process      : {args.patients:>7d} patients in {ours_seconds:7.2f} s = {rate:9.0f} /s")
    print(
        f"infusim, 2 processes    : {args.patients:>7d} patients in {two_seconds:7.2f} s = {rate_two:9.0f} /s"
        f" (halves {halves[0]:.2f} s, {halves[1]:.2f} s)"
    )
    print(
        f"libroadrunner loop      : {args.peer_patients:>7d} patients in {rr_seconds:7.2f} s = "
        f"{rr_rate:9.1f} /s (CVODE rtol {rr_rtol:g})"
    )
    print(
        f"solve_ivp LSODA loop    : {ivp_n:>7d} patients in {ivp_seconds:7.2f} s = "
        f"{ivp_rate:9.1f} /s (rtol {ivp_rtol:g})"
    )
    print(
        f"error vs Radau rtol 1e-10 ({checked} patients): infusim {error_ours:.1e}, "
        f"libroadrunner {rr_error:.1e}, solve_ivp {ivp_error:.1e}"
    )
    print(f"agreement with infusim: libroadrunner {agree_rr:.1e}, solve_ivp {agree_ivp:.1e}")
    print(
        f"ratio vs libroadrunner loop: {rate / rr_rate:.0f}x (1 process), "
        f"{rate_two / rr_rate:.0f}x (2 processes)"
    )
    print(
        f"ratio vs solve_ivp loop: {rate / ivp_rate:.0f}x (1 process), "
        f"{rate_two / ivp_rate:.0f}x (2 processes)"
    )
    if max(agree_rr, agree_ivp) > 10 * TARGET_ERROR or error_ours > TARGET_ERROR:
        raise SystemExit("the engines disagree by more than the accuracy they were held to")


def million(args) -> None:
    scenario = yaml.safe_load(Path(args.scenario).read_text())
    days = 365
    scenario["simulation"]["duration"] = f"{days} day"
    scenario["trial"]["visits"] = [f"{7 * i} day" for i in range(1, days // 7 + 1)] + [f"{days} day"]
    scenario["trial"]["primary"]["at"] = f"{7 * 26} day"
    with tempfile.TemporaryDirectory(dir=ROOT) as folder:
        path = Path(folder) / "trial.yaml"
        path.write_text(yaml.safe_dump(scenario, sort_keys=False))
        out = Path(folder) / "out"
        command = [
            sys.executable, "-m", "infusim", "trial", str(path), "-o", str(out),
            "--patients", str(args.million_patients), "--workers", "2",
        ]  # fmt: skip
        print("running:", " ".join(command[2:4]), "<weekly visits>", " ".join(command[5:]))
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        peak = 0
        while process.poll() is None:
            peak = max(peak, _tree_rss(process.pid))
            time.sleep(0.2)
        seconds = time.perf_counter() - start
        output = process.stdout.read()
        if process.returncode != 0:
            raise SystemExit(output)
        size = sum(f.stat().st_size for f in (out / "patients").glob("*.parquet"))
        rows = args.million_patients * len(scenario["trial"]["visits"]) + args.million_patients
    print(output.strip().splitlines()[-4])
    print(
        f"{args.million_patients:,} patients x 1 year, weekly visits ({rows:,} rows), 2 workers: "
        f"{seconds:.0f} s = {args.million_patients / seconds:,.0f} patients/s; peak memory of all "
        f"processes {peak / 2**30:.2f} GiB; Parquet {size / 2**20:,.0f} MiB = "
        f"{size / args.million_patients:.0f} bytes per patient"
    )


def _tree_rss(pid: int) -> int:
    """Resident memory (bytes) of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
        stack.extend(children.get(current, []))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=str(EXAMPLE), help="a scenario with a trial section")
    parser.add_argument("--patients", type=int, default=20_000, help="cohort size for infusim")
    parser.add_argument("--peer-patients", type=int, default=300, help="first N patients for libroadrunner")
    parser.add_argument("--days", type=float, default=None, help="horizon (default: the last visit)")
    parser.add_argument("--million", action="store_true", help="also run the 10^6-patient trial")
    parser.add_argument("--million-patients", type=int, default=1_000_000)
    args = parser.parse_args()
    peer_benchmark(args)
    if args.million:
        million(args)


if __name__ == "__main__":
    main()
