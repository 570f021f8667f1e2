"""Running trials in chunks: workers, a Dask cluster and a killed run all give the same output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from infusim.errors import OutputError
from infusim.runner import run_trial, with_size
from infusim.scenario import load
from tests.helpers import EXAMPLES

OA = EXAMPLES / "trial-knee-osteoarthritis.yaml"


def dataset(folder: Path):
    """All patient rows of a trial folder, parts in name order."""
    parts = sorted((folder / "patients").glob("part-*.parquet"))
    return [pq.read_table(p) for p in parts]


def same_output(a: Path, b: Path) -> None:
    tables_a, tables_b = dataset(a), dataset(b)
    assert len(tables_a) == len(tables_b)
    assert all(x.equals(y) for x, y in zip(tables_a, tables_b, strict=True))
    assert json.loads((a / "summary.json").read_text()) == json.loads((b / "summary.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "trial"
    run_trial(with_size(load(OA), 600, 2), out, chunk_size=100)
    return out


def test_two_worker_processes_give_the_in_process_result(reference, tmp_path):
    run_trial(with_size(load(OA), 600, 2), tmp_path / "trial", chunk_size=100, workers=2)
    same_output(reference, tmp_path / "trial")


def test_a_dask_cluster_gives_the_in_process_result(reference, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        run_trial(
            with_size(load(OA), 600, 2),
            tmp_path / "trial",
            chunk_size=100,
            scheduler=cluster.scheduler_address,
        )
    same_output(reference, tmp_path / "trial")


def test_a_killed_run_resumes_to_the_uninterrupted_output(tmp_path):
    out = tmp_path / "trial"
    command = [sys.executable, "-m", "infusim", "trial", str(OA), "-o", str(out), "-n", "30000"]
    command += ["--chunk-size", "500"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "patients").glob("part-*.parquet"))) < 6:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = sorted((out / "patients").glob("part-*.parquet"))
    assert 6 <= len(finished) < 60, "the run must be killed part-way"
    assert not (out / "summary.json").exists()
    before = {p.name: p.stat().st_mtime_ns for p in finished}
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert {p.name: p.stat().st_mtime_ns for p in finished} == before  # not recomputed
    complete = tmp_path / "complete"
    run_trial(with_size(load(OA), 30000, None), complete, chunk_size=500)
    same_output(out, complete)


def test_foreign_corrupt_or_different_folders_are_refused(reference, tmp_path):
    scenario = with_size(load(OA), 600, 2)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not an infusim trial"):
        run_trial(scenario, foreign, chunk_size=100)
    assert (foreign / "notes.txt").read_text() == "mine"
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "trial.json").write_text("{not json")
    with pytest.raises(OutputError, match="corrupt"):
        run_trial(scenario, corrupt, chunk_size=100, resume=True)
    with pytest.raises(OutputError, match="different run"):
        run_trial(with_size(load(OA), 700, 2), reference, chunk_size=100, resume=True)
    with pytest.raises(OutputError, match="no trial to resume"):
        run_trial(scenario, tmp_path / "new", chunk_size=100, resume=True)
    damaged = tmp_path / "damaged"
    run_trial(scenario, damaged, chunk_size=100)
    part = sorted((damaged / "patients").glob("part-*.parquet"))[0]
    part.write_bytes(b"PAR1 broken")
    with pytest.raises(OutputError, match="corrupt"):
        run_trial(scenario, damaged, chunk_size=100, resume=True)
    os.remove(part)
    run_trial(scenario, damaged, chunk_size=100, resume=True)  # a missing chunk is simply recomputed
    same_output(reference, damaged)


def test_resume_refuses_a_folder_written_by_another_version(tmp_path):
    s = with_size(load(OA), 20, 1)
    run_trial(s, tmp_path / "t", chunk_size=10)
    manifest = json.loads((tmp_path / "t" / "trial.json").read_text())
    manifest["infusim_version"] = "0.0.9"
    (tmp_path / "t" / "trial.json").write_text(json.dumps(manifest))
    with pytest.raises(OutputError, match="infusim_version"):
        run_trial(s, tmp_path / "t", chunk_size=10, resume=True)
