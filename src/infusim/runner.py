"""Running a virtual trial in chunks: in process, in local worker processes or on a Dask cluster.

The output folder holds ``trial.json`` (what is being run), ``patients/`` (a Parquet dataset, one
file per chunk of patients), ``stats/`` (each chunk's partial sums) and, once every chunk is done,
``report.html`` and ``summary.json`` (written last). Each chunk file is written to a temporary
name and renamed, so a chunk is either complete or absent; a run that was killed resumes
(``resume=True``) by computing only the chunks that are missing, and ends with the same files as
an uninterrupted run. Chunks are combined in a fixed order, and every patient's numbers depend
only on (seed, replicate, patient index), so the result does not depend on the number of workers
or the backend.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from infusim import __version__, engraftment, safety, stats
from infusim.errors import OutputError, ScenarioError
from infusim.io import write_json
from infusim.parameters import for_scenario
from infusim.population import beyond_most_severe
from infusim.scenario import Scenario
from infusim.scenario_trial import ANALYSES, MMRM_VISITS
from infusim.simulation import DISCLAIMER
from infusim.virtual_trial import (
    BASELINE_FIELDS,
    FIELDS,
    ChunkStats,
    adherence_table,
    baseline_table,
    design,
    simulate_chunk,
)

MANIFEST = "trial.json"
KIND = "infusim-trial"
DEFAULT_CHUNK = 10_000


@dataclass(frozen=True)
class Chunk:
    """Patients ``start`` to ``stop - 1`` of one replicate."""

    replicate: int
    start: int
    stop: int

    @property
    def stem(self) -> str:
        return f"part-r{self.replicate:05d}-p{self.start:09d}"


def with_size(scenario: Scenario, patients: int | None, replicates: int | None) -> Scenario:
    """The scenario with the trial's patient count and replicates replaced (command-line options)."""
    trial = scenario.trial
    if trial is None:
        raise ScenarioError("trial", "the scenario has no trial section (see README, 'Virtual trials')")
    update = {}
    if patients is not None:
        if not len(trial.arms) <= patients <= 10_000_000:
            raise ScenarioError("--patients", f"{patients} is outside {len(trial.arms)}-10000000")
        update["patients"] = patients
    if replicates is not None:
        if not 1 <= replicates <= 100_000:
            raise ScenarioError("--replicates", f"{replicates} is outside 1-100000")
        update["replicates"] = replicates
    return scenario.model_copy(update={"trial": trial.model_copy(update=update)}) if update else scenario


def default_chunk_size(scenario: Scenario) -> int:
    """Patients per chunk: at most 10,000 and about a million rows (patients x visits) per chunk."""
    return max(100, min(DEFAULT_CHUNK, 1_000_000 // len(scenario.trial.visits_h)))


def chunks(scenario: Scenario, chunk_size: int = DEFAULT_CHUNK) -> list[Chunk]:
    """The chunks of a trial, in the order they are combined."""
    trial = scenario.trial
    return [
        Chunk(r, start, min(start + chunk_size, trial.patients))
        for r in range(trial.replicates)
        for start in range(0, trial.patients, chunk_size)
    ]


def run_trial(
    scenario: Scenario,
    out: Path,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    resume: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Run every chunk not yet in ``out``, then write and return ``summary.json``'s content.

    ``progress(patients)`` is called as chunks finish (for a progress bar).
    """
    out = Path(out)
    manifest = _manifest(scenario, chunk_size)
    client = _dask_client(scheduler) if scheduler is not None else None  # fails before any output
    try:
        _prepare(out, manifest, resume)
        return _run_chunks(scenario, out, manifest, chunk_size, workers, client, progress)
    finally:
        if client is not None:
            client.close()


def _run_chunks(
    scenario: Scenario,
    out: Path,
    manifest: dict,
    chunk_size: int,
    workers: int,
    client,
    progress: Callable[[int], None] | None,
) -> dict:
    """Run the chunks not yet in ``out`` (on ``client`` when given), then summarise and mark complete."""
    plan = chunks(scenario, chunk_size)
    todo = [c for c in plan if not _done(out, c, bool(scenario.trial.subgroups))]
    if progress is not None:
        done_patients = sum(c.stop - c.start for c in plan if c not in todo)
        if done_patients:
            progress(done_patients)
    for chunk in _execute(scenario, out, todo, workers, client):
        if progress is not None:
            progress(chunk.stop - chunk.start)
    summary = summarize(scenario, out, plan)
    if scenario.economics is not None:
        from infusim import economics

        summary["economics"] = economics.analyse(scenario, out)
    from infusim.report.trial import render

    report = out / ".report.html.tmp"
    report.write_text(render(summary), encoding="utf-8")
    os.replace(report, out / "report.html")
    _write_atomic_json(out / "summary.json", summary)
    _write_atomic_json(out / MANIFEST, manifest | {"status": "complete"})
    return summary


def power_curve(
    scenario: Scenario,
    sizes: Iterable[int],
    replicates: int,
    chunk_size: int = DEFAULT_CHUNK,
    analyses: Sequence[str] | None = None,
) -> dict[int, dict]:
    """Power of the primary comparison for each total sample size (no patient rows are written):
    ``{patients: {label: {power, assurance, arm, analysis, ...}}}``, one label per treated arm, or
    with several ``analyses`` (``trial.analysis`` values) per arm and analysis (``"msc (mmrm)"``),
    each analysis applied to the same replicate trials, so their powers differ by the analysis alone."""
    own = scenario.trial.analysis
    analyses = tuple(analyses or (own,))
    unknown = sorted(set(analyses) - set(ANALYSES))
    if unknown:
        raise ScenarioError("--analysis", f"{', '.join(unknown)}; allowed: {', '.join(ANALYSES)}")
    if "mmrm" in analyses and own != "mmrm":  # its partial sums hold what the others read
        if len(scenario.trial.visits_h) > MMRM_VISITS:
            raise ScenarioError("--analysis", f"mmrm needs at most {MMRM_VISITS} visits with day 0")
        scenario = scenario.model_copy(
            update={"trial": scenario.trial.model_copy(update={"analysis": "mmrm"})}
        )
    result = {}
    for n in sizes:
        sized = with_size(scenario, n, replicates)
        plan = design(sized)
        totals = {}
        for uncertain in (False, True):
            parts = [
                simulate_chunk(sized, c.replicate, c.start, c.stop, table=False, uncertain=uncertain)[1]
                for c in chunks(sized, chunk_size)
            ]
            totals[uncertain] = stats.combine(parts, replicates, parts[0].sums.shape)
        result[n] = {}
        for analysis in analyses:
            each = dataclasses.replace(plan, analysis=analysis)
            found = {uncertain: stats.power(t, each) for uncertain, t in totals.items()}
            for arm, values in found[False].items():
                label = arm if len(analyses) == 1 else f"{arm} ({analysis})"
                result[n][label] = values | {
                    "assurance": found[True][arm]["power"],
                    "arm": arm,
                    "analysis": analysis,
                }
    return result


def summarize(scenario: Scenario, out: Path, plan_chunks: list[Chunk]) -> dict:
    """``summary.json`` from the chunks' partial sums (read back in a fixed order)."""
    plan = design(scenario)
    trial = scenario.trial
    parts = [ChunkStats(c.replicate, c.start, np.load(out / "stats" / f"{c.stem}.npy")) for c in plan_chunks]
    totals = stats.combine(parts, trial.replicates, parts[0].sums.shape)
    first = totals[0]
    baseline = sum(np.load(out / "stats" / f"{c.stem}-baseline.npy") for c in plan_chunks if c.replicate == 0)
    size = sum(f.stat().st_size for f in (out / "patients").glob("*.parquet"))
    rows = trial.patients * trial.replicates
    primary = plan.endpoints[plan.primary]
    return {
        "infusim_version": __version__,
        "kind": KIND,
        "scenario_name": scenario.name,
        "scenario_hash": scenario.hash(),
        "seed": scenario.simulation.seed,
        "disclaimer": DISCLAIMER,
        "condition": plan.condition.name,
        "patients": trial.patients,
        "replicates": trial.replicates,
        "arms": [
            {"name": a.name, "ratio": a.ratio, "kind": a.kind, "control": a.name == trial.control.name}
            for a in trial.arms
        ],
        "visit_times_d": [float(f"{d:g}") for d in plan.visits_d],
        "dropout_per_year": trial.dropout,
        "dropout_hazard_ratio": trial.dropout_hazard_ratio,
        "dropout_missing": trial.dropout_missing,
        "analysis": trial.analysis,
        "missed_doses": trial.missed_doses,
        "lots": trial.lots.model_dump() if trial.lots else None,
        "primary": {
            "endpoint": primary.name,
            "unit": primary.unit,
            "time_d": float(plan.visits_d[plan.primary_visit]),
            "responder_change": plan.responder_change,
            "control": trial.control.name,
            "comparisons": stats.primary_comparisons(first, plan),
            "multiplicity": trial.multiplicity,
        },
        "by_arm": stats.arm_summary(first, plan),
        "adverse_events": _adverse_events(out, plan_chunks, scenario),
        "baseline": baseline_table(baseline, [a.name for a in trial.arms]),
        **({"adherence": _adherence(baseline, scenario)} if trial.missed_doses else {}),
        "comparisons": stats.comparisons(first, plan),
        **({"subgroups": _subgroups(out, plan_chunks, scenario, plan)} if trial.subgroups else {}),
        "power": stats.power(totals, plan),
        "assurance": _assurance(out, plan_chunks, trial.replicates, plan, totals.shape[1:]),
        "warnings": trial_warnings(scenario),
        "regulatory": _regulatory(scenario),
        "sources": trial_sources(scenario),
        "output": {
            "patients_dataset": "patients/",
            "bytes": size,
            "bytes_per_patient": round(size / rows, 1),
        },
        "notes": [
            "by_arm and comparisons describe replicate 0 (the trial); power uses every replicate",
            "power: share of replicates that succeed with the condition's parameters at their posterior "
            "medians (the tables); assurance: the same share when each replicate draws its truth from "
            "the posterior of the controlled evidence (potencies, fitted K and the trial's own effect with "
            "the between-trial SD), i.e. power averaged over what is not known; needs replicates > 1",
            stats.ANALYSIS_NOTES[trial.analysis] + "; rate endpoints: share of responders, difference of "
            "proportions",
            "effect_vs_untreated: mean of (true value in the arm - the same patient's untreated twin), "
            "placebo response included for arms with a procedure",
        ],
    }


def _subgroups(out: Path, plan_chunks: list[Chunk], scenario: Scenario, plan) -> dict:
    """The subgroup analyses of the primary comparison (``stats.subgroups``) with their reading."""
    trial = scenario.trial
    parts = [
        ChunkStats(c.replicate, c.start, np.load(out / "stats" / f"{c.stem}-subgroups.npy"))
        for c in plan_chunks
    ]
    totals = stats.combine(parts, trial.replicates, parts[0].sums.shape)
    return {
        "analyses": stats.subgroups(totals, plan, trial.subgroups),
        "note": "primary endpoint at the primary visit, treated arm against control within patients below "
        "and at or above each cut (baseline: the primary endpoint measured at day 0); interaction: the "
        "difference of the two contrasts with a z-test, replicate 0; power: share of replicates whose "
        "interaction is significant at 5%. Effect modifiers in the model: docs/trials.md.",
    }


def _regulatory(scenario: Scenario) -> dict:
    """The regulatory note of the scenario's own product, route and condition (the treated arms that
    do not set their own product or administration)."""
    from infusim import regulatory

    found = regulatory.note(scenario)
    found["applies_to"] = (
        "the scenario's product and administration (arms that set their own are not checked)"
    )
    return found


def _adverse_events(out: Path, plan_chunks: list[Chunk], scenario: Scenario) -> dict:
    """Per event and arm of replicate 0: patients with the event, rates with 95% CIs and the relative
    risk against the control arm (``safety.trial_summary``); per cells arm after conditioning, the
    neutrophil recovery its patients are drawn from (``engraftment.recovery``)."""
    trial = scenario.trial
    counts = sum(np.load(out / "stats" / f"{c.stem}-events.npy") for c in plan_chunks if c.replicate == 0)
    arms = [a.name for a in trial.arms]
    params = for_scenario(scenario)
    recovery = {
        spec.name: found.as_dict()
        for spec in trial.arms
        if (found := engraftment.for_scenario(scenario.for_arm(spec), params, spec.kind))
    }
    return {
        "by_event": safety.trial_summary(counts, arms, arms.index(trial.control.name)),
        **({"neutrophil_recovery": recovery} if recovery else {}),
        "dataset": "adverse_events/",
        "note": "patients with at least one event (any grade; serious: CTCAE grade 3-5) in replicate 0; "
        "exact binomial 95% CIs; relative risk against the control arm (not given when either arm has "
        "no event: a ratio with a zero count is undefined). "
        "Event models and sources: docs/safety.md. A research model, not advice for any patient.",
    }


def _adherence(baseline: np.ndarray, scenario: Scenario) -> dict:
    """Patients of replicate 0 given every administration of their arm, per arm (``adherence_table``)."""
    arms = scenario.trial.arms
    scheduled = [0 if a.kind == "none" else scenario.for_arm(a).administration.count for a in arms]
    return adherence_table(baseline, [a.name for a in arms], scheduled)


def _assurance(out: Path, plan_chunks: list[Chunk], replicates: int, plan, shape) -> dict | None:
    """Power over replicates whose truth is drawn from the posterior (None for a single replicate)."""
    if replicates < 2:
        return None
    parts = [
        ChunkStats(c.replicate, c.start, np.load(out / "stats" / f"{c.stem}-assurance.npy"))
        for c in plan_chunks
    ]
    found = stats.power(stats.combine(parts, replicates, shape), plan)
    return {
        arm: {"assurance": v["power"]} | {k: x for k, x in v.items() if k != "power"}
        for arm, v in found.items()
    }


def trial_sources(scenario: Scenario) -> dict[str, str]:
    """Citations of every parameter a trial uses (recorded on one block of patients, all arms)."""
    from infusim.parameters import citation_line, for_scenario

    params = for_scenario(scenario)
    block = sum(a.ratio for a in scenario.trial.arms)
    simulate_chunk(scenario, 0, 0, min(block, scenario.trial.patients), params=params, table=False)
    return {key: citation_line(key) for key in params.sources_used()}


def trial_warnings(scenario: Scenario) -> list[str]:
    """Valid inputs a reader should know about: unused fields, arms outside the trial evidence."""
    from infusim import conditions
    from infusim.model.disease import extrapolation_warnings

    notes = list(scenario.warnings())
    if "patient" in scenario.model_fields_set:
        notes.append("patient: ignored in a trial; patients come from the condition's virtual population")
    info = conditions.get(scenario.condition.name)
    clipped = beyond_most_severe(scenario, for_scenario(scenario))
    if clipped is not None and clipped[0] > 0.05:
        primary = info.primary
        notes.append(
            f"{clipped[0]:.0%} of the patients enter with {primary.name} worse than {clipped[1]:.3g} "
            f"{primary.unit}, the most severe entry value the model represents (severity 2): they are "
            "simulated at it (docs/trials.md)"
        )
    for arm in scenario.trial.arms:
        if arm.kind == "cells":
            notes.extend(f"arm {arm.name}: {w}" for w in extrapolation_warnings(scenario.for_arm(arm), info))
    return notes


def _execute(scenario: Scenario, out: Path, todo: list[Chunk], workers: int, client) -> Iterable[Chunk]:
    if not todo:
        return
    if client is not None:
        yield from _on_dask(scenario, out, todo, client)
    elif workers > 1:
        yield from _in_processes(scenario, out, todo, workers)
    else:
        for chunk in todo:
            run_chunk(scenario, out, chunk)
            yield chunk


def _in_processes(scenario: Scenario, out: Path, todo: list[Chunk], workers: int) -> Iterable[Chunk]:
    import multiprocessing

    saved = {k: os.environ.get(k) for k in _SINGLE_THREAD}
    os.environ.update(_SINGLE_THREAD)
    try:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {pool.submit(run_chunk, scenario, out, c): c for c in todo}
            for future in as_completed(futures):
                future.result()
                yield futures[future]
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _dask_client(address: str):
    """A connected dask.distributed client, or a one-line error (before the trial writes anything)."""
    try:
        from distributed import Client
    except ImportError:
        raise OutputError(
            "--scheduler", "needs dask.distributed: pip install 'infusim[distributed]'"
        ) from None
    try:
        return Client(address, timeout="5s")
    except (OSError, TimeoutError) as exc:
        raise OutputError("--scheduler", f"cannot reach {address}: {exc}") from None


def _on_dask(scenario: Scenario, out: Path, todo: list[Chunk], client) -> Iterable[Chunk]:
    from distributed import as_completed as dask_completed

    futures = {client.submit(run_chunk, scenario, out, c, pure=False): c for c in todo}
    for future in dask_completed(futures):
        future.result()
        yield futures[future]


_SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_chunk(scenario: Scenario, out: Path, chunk: Chunk) -> Chunk:
    """Simulate one chunk and write its rows and partial sums (each by temporary file and rename;
    the patients file last, so its presence marks the chunk complete)."""
    events, counts = safety.chunk_events(scenario, chunk.replicate, chunk.start, chunk.stop)
    table, partial = simulate_chunk(scenario, chunk.replicate, chunk.start, chunk.stop, events=events)
    stats_dir = out / "stats"
    if scenario.trial.replicates > 1:
        drawn = simulate_chunk(
            scenario, chunk.replicate, chunk.start, chunk.stop, table=False, uncertain=True, events=events
        )
        _save_npy(stats_dir / f"{chunk.stem}-assurance.npy", drawn[1].sums)
    _save_npy(stats_dir / f"{chunk.stem}.npy", partial.sums)
    if chunk.replicate == 0:  # the baseline table describes the trial (replicate 0)
        _save_npy(stats_dir / f"{chunk.stem}-baseline.npy", partial.baseline)
    _save_npy(stats_dir / f"{chunk.stem}-events.npy", counts)
    if partial.subgroups is not None:
        _save_npy(stats_dir / f"{chunk.stem}-subgroups.npy", partial.subgroups)
    path = out / "adverse_events" / f"{chunk.stem}.parquet"
    tmp = path.with_name(f".{chunk.stem}.{os.getpid()}.parquet")
    events.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    part = out / "patients" / f"{chunk.stem}.parquet"
    tmp = part.with_name(f".{chunk.stem}.{os.getpid()}.parquet")
    pq.write_table(table, tmp, compression="zstd", row_group_size=1 << 20)
    os.replace(tmp, part)
    return chunk


def _save_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` through a temporary file and a rename (never half-written)."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.npy")
    with tmp.open("wb") as handle:
        np.save(handle, array)
    os.replace(tmp, path)


def _done(out: Path, chunk: Chunk, subgroups: bool = False) -> bool:
    """The patients file is written last, so its presence means the chunk is complete."""
    return all(
        path.is_file()
        for path in (
            out / "stats" / f"{chunk.stem}.npy",
            out / "stats" / f"{chunk.stem}-events.npy",
            *([out / "stats" / f"{chunk.stem}-baseline.npy"] if chunk.replicate == 0 else []),
            *([out / "stats" / f"{chunk.stem}-subgroups.npy"] if subgroups else []),
            out / "adverse_events" / f"{chunk.stem}.parquet",
            out / "patients" / f"{chunk.stem}.parquet",
        )
    )


def _manifest(scenario: Scenario, chunk_size: int) -> dict:
    trial = scenario.trial
    return {
        "kind": KIND,
        "infusim_version": __version__,
        "scenario_name": scenario.name,
        "scenario_hash": scenario.hash(),
        "patients": trial.patients,
        "replicates": trial.replicates,
        "chunk_size": chunk_size,
        "seed": scenario.simulation.seed,
        "stats_fields": list(FIELDS),  # what each chunk's partial sums hold: a resume must match
        "baseline_fields": BASELINE_FIELDS,
        "status": "running",
    }


_SAME_RUN = (
    "kind",
    "infusim_version",
    "scenario_hash",
    "patients",
    "replicates",
    "chunk_size",
    "seed",
    "stats_fields",
    "baseline_fields",
)


def _prepare(out: Path, manifest: dict, resume: bool) -> None:
    """Create, check (resume) or reset the output folder; refuse foreign or corrupt folders."""
    if out.exists() and not out.is_dir():
        raise OutputError("output", f"{out} exists and is not a folder")
    existing = out / MANIFEST
    if out.is_dir() and any(out.iterdir()):
        if not existing.is_file():
            raise OutputError(
                "output", f"{out} holds files that are not an infusim trial; choose an empty or new folder"
            )
        try:
            old = json.loads(existing.read_text(encoding="utf-8"))
            if not isinstance(old, dict) or old.get("kind") != KIND:
                raise ValueError("not an infusim trial manifest")
        except (OSError, ValueError) as exc:
            raise OutputError(
                "output", f"{existing} is corrupt ({exc}); remove the folder or choose another"
            ) from None
        if resume:
            different = [k for k in _SAME_RUN if old.get(k) != manifest[k]]
            if different:
                raise OutputError(
                    "--resume",
                    f"{out} holds a different run ({', '.join(different)} differ); "
                    "run without --resume to start over",
                )
            _check_parts(out)
            return
        for name in ("patients", "stats", "adverse_events"):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in ("summary.json", "report.html", "economics.parquet"):
            (out / name).unlink(missing_ok=True)
    elif resume:
        raise OutputError("--resume", f"{out} holds no trial to resume")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("patients", "stats", "adverse_events"):
        (out / name).mkdir(exist_ok=True)
    _write_atomic_json(out / MANIFEST, manifest)


def _check_parts(out: Path) -> None:
    """Before resuming: drop temporary files of killed writers; refuse unreadable chunk files."""
    for folder in ("patients", "stats", "adverse_events"):
        (out / folder).mkdir(exist_ok=True)
        for path in (out / folder).glob(".part-*"):
            path.unlink(missing_ok=True)
    for path in sorted((out / "patients").glob("part-*.parquet")):
        try:
            pq.read_metadata(path)
        except Exception as exc:
            raise OutputError("output", f"{path} is corrupt ({exc}); remove it and resume") from None
    for path in sorted((out / "stats").glob("part-*.npy")):
        try:
            np.load(path)
        except Exception as exc:
            raise OutputError("output", f"{path} is corrupt ({exc}); remove it and resume") from None


def _write_atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write_json(data, tmp)
    os.replace(tmp, path)
