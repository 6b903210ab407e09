"""`grade.py SUBMISSIONS --scheduler tcp://HOST:PORT`: a real `dask scheduler` and two `dask worker`
processes grade a batch; its gradebook equals a local batch's, resuming on the cluster
keeps what was graded, and workers that die lose no row.

Cost: one local batch and one Dask batch of four corpus notebooks (module fixtures), one
resume, and one batch during which the test kills three workers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ASSIGNMENT, CORPUS, ROOT, slow_notebook, write_config

distributed = pytest.importorskip("distributed", reason="dask[distributed] is a dependency (pyproject.toml)")

SUBMISSIONS = ["correct_solution.ipynb", "wrong_function.ipynb", "error_in_task1.ipynb", "not_json.ipynb"]
DASK = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and two workers, each a separate process, as an instructor would start them."""
    base = tmp_path_factory.mktemp("dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}
    logs = [open(base / f"{name}.log", "wb") for name in ("scheduler", "worker1", "worker2")]
    # Short, as Dask's default (/tmp/dask-scratch-space): a warm zygote's socket goes in its worker's folder when the
    # path fits in a Unix socket's 107 bytes, and pytest's own folders are long.
    scratch = tempfile.mkdtemp(prefix="tgdask-")
    processes = [subprocess.Popen(DASK + ["--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"],
                                  cwd=base, env=env, stdout=logs[0], stderr=subprocess.STDOUT)]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        for log in logs[1:]:
            processes.append(subprocess.Popen(WORKER + [address, "--nworkers", "1", "--nthreads", "1",
                                                        "--no-dashboard", "--memory-limit", "0",
                                                        "--local-directory", scratch],
                                              cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT))
        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()
        shutil.rmtree(scratch, ignore_errors=True)


def submissions(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in SUBMISSIONS:
        shutil.copyfile(CORPUS / name, folder / name)
    return folder


def grade(folder: Path, output: Path, config: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "grade.py"), str(folder), "--output-dir", str(output), "--config",
               str(config), "--engine", "warm", *extra]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)


def gradebook(output: Path) -> dict:
    """Every row as the instructor reads it (no timings, no ids), with the snapshots a re-score would read."""
    with sqlite3.connect(output / "gradebook.sqlite") as db:
        rows = db.execute("SELECT id, student, status, failure_kind, reason, score, max_score, report_json, "
                          "grader_version, scoring_version, content_hash FROM submissions ORDER BY student").fetchall()
        snapshots = {}
        for submission, evidence in db.execute("SELECT submission_id, evidence_json FROM snapshots ORDER BY run"):
            snapshots.setdefault(submission, []).append(json.loads(evidence))
    table = {}
    for row_id, student, status, kind, reason, score, max_score, report, *versions in rows:
        report = json.loads(report) if report else None
        if report:
            report.pop("execution_time", None)
        table[student] = (status, kind, reason, score, max_score, report, *versions, snapshots.get(row_id))
    return table


@pytest.fixture(scope="module")
def batches(cluster, tmp_path_factory):
    """The same four submissions graded by a local batch and by the cluster (the warm engine both times)."""
    base = tmp_path_factory.mktemp("batches")
    folder = submissions(base / "class")
    config = write_config(base, random_runs__count=1)
    local = grade(folder, base / "local", config, "--jobs", "2")
    assert local.returncode == 0, local.stdout + local.stderr
    remote = grade(folder, base / "dask", config, "--scheduler", cluster)
    assert remote.returncode == 0, remote.stdout + remote.stderr
    return base, folder, config, remote


def test_a_dask_batch_writes_the_gradebook_a_local_batch_writes(batches):
    base, _, _, remote = batches
    assert "To do: execute 4," in remote.stdout, remote.stdout
    assert "Traceback" not in remote.stdout + remote.stderr
    assert gradebook(base / "dask") == gradebook(base / "local")
    with sqlite3.connect(base / "dask" / "gradebook.sqlite") as db:  # notebooks graded at once: one per thread
        assert db.execute("SELECT jobs FROM batches").fetchall() == [(2,)]
    for export in ("grades.csv", "checks.csv"):
        assert (base / "dask" / export).read_text() == (base / "local" / export).read_text(), export


def test_grading_again_on_the_cluster_runs_nothing_and_keeps_every_row(batches, cluster):
    base, folder, config, _ = batches
    before = gradebook(base / "dask")
    again = grade(folder, base / "dask", config, "--scheduler", cluster)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "To do: execute 0, re-check stored snapshots of 0, unchanged 4" in again.stdout, again.stdout
    assert gradebook(base / "dask") == before


def test_no_scheduler_there_is_a_one_line_error(tmp_path):
    folder = submissions(tmp_path / "class")
    result = grade(folder, tmp_path / "out", write_config(tmp_path), "--scheduler", f"tcp://127.0.0.1:{free_port()}")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "no Dask scheduler answers there" in result.stderr


def test_a_task_that_fails_on_a_worker_keeps_the_workers_paths_out_of_the_row(cluster):
    """A Dask task that raises (here a real one: os.stat of a worker path) becomes a grader failure whose row, which
    feedback shows the student, names only the kind; the details are a warning for the instructor."""
    from torchgrade.batch.dask_runner import DaskPool
    from torchgrade.batch.worker import Job

    with DaskPool(ASSIGNMENT, "computational_graph", cluster, budget=600) as pool:
        job = Job(0, "alice", Path("alice.ipynb"), "alice.ipynb", Path("result.json"), Path("worker.log"))
        future = pool.client.submit(os.stat, "/srv/worker-secret/alice.ipynb", pure=False)
        pool.running[future] = (job, time.monotonic())
        future.add_done_callback(pool.finished.put)
        [result] = pool.wait(120)
    assert (result.status, result.failure_kind) == ("failed", "grader")
    assert result.reason == "the Dask task failed (FileNotFoundError); the batch's warnings say why"
    assert "/srv/worker-secret/alice.ipynb" in result.notes[0]


def test_a_task_over_the_wall_clock_budget_is_given_up_as_a_local_worker_would_be(cluster):
    """The local Pool kills a worker past its budget; on Dask the task is cancelled and its row says the same."""
    from torchgrade.batch.dask_runner import DaskPool
    from torchgrade.batch.worker import OVERRUN, Job

    with DaskPool(ASSIGNMENT, "computational_graph", cluster, budget=1) as pool:
        job = Job(0, "bob", Path("bob.ipynb"), "bob.ipynb", Path("result.json"), Path("worker.log"))
        future = pool.client.submit(time.sleep, 4, pure=False)
        pool.running[future] = (job, time.monotonic())
        future.add_done_callback(pool.finished.put)
        began = time.monotonic()
        ended = []
        while not ended and time.monotonic() - began < 30:
            ended = pool.wait(10)  # returns when the budget runs out, not after the 10 s asked for
        assert time.monotonic() - began < 3.5
    [result] = ended
    assert (result.status, result.failure_kind) == ("failed", "submission")
    assert result.reason == OVERRUN.format(budget=1) == "grading took longer than 1 s and was stopped"
    assert not pool.running


def kill_worker_grading(client, number: int, spared: set, zygote_folders: list, timeout: float = 300) -> str:
    """SIGKILL the worker process running the batch's submission `number` and nothing else (Dask counts a death
    against every task the worker holds), never one of the `spared` workers (already killed). Its warm zygote's
    folders (socket and log) are added to `zygote_folders`."""
    prefix = f"torchgrade-{number}-"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker, keys in client.processing().items():
            if worker not in spared and len(keys) == 1 and str(keys[0]).startswith(prefix):
                pid = client.run(os.getpid, workers=[worker])[worker]
                folder = Path(client.run(lambda dask_worker: dask_worker.local_directory, workers=[worker])[worker])
                while not list(folder.glob("torchgrade-zygote-*")) and time.monotonic() < deadline:
                    time.sleep(0.1)  # the task is running, but its zygote may still be starting
                zygote_folders += folder.glob("torchgrade-zygote-*")
                os.kill(pid, signal.SIGKILL)
                return worker
        time.sleep(0.2)
    raise AssertionError(f"submission {number} was never seen running alone on a worker")


def test_workers_that_die_lose_no_row_and_a_submission_they_keep_dying_on_is_given_up(batches, cluster):
    """No notebook can kill its Dask worker (the sandbox's pid namespace and uid keep it from the worker's
    process), so the test kills the workers itself, with SIGKILL, as the kernel's OOM killer or a lost machine
    would. Submissions are numbered in discovery (name) order; two run at once (one per worker thread), the
    third starts when one of them ends, so each victim can be killed while it is alone on its worker."""
    base, _, config, _ = batches
    folder = base / "killed"
    folder.mkdir()
    slow_notebook(CORPUS / "correct_solution.ipynb", folder / "a_once.ipynb", 10)  # dies once, graded on its retry
    shutil.copyfile(CORPUS / "wrong_function.ipynb", folder / "wrong_function.ipynb")  # never on a dying worker
    slow_notebook(CORPUS / "correct_solution.ipynb", folder / "z_twice.ipynb", 50)  # dies twice: given up
    command = [sys.executable, str(ROOT / "grade.py"), str(folder), "--output-dir", str(base / "killed-out"),
               "--config", str(config), "--engine", "warm", "--scheduler", cluster]
    batch = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        zygote_folders = []
        with distributed.Client(cluster, timeout=60) as client:
            killed = {kill_worker_grading(client, 0, set(), zygote_folders)}
            killed.add(kill_worker_grading(client, 2, killed, zygote_folders))
            killed.add(kill_worker_grading(client, 2, killed, zygote_folders))
            out, err = batch.communicate(timeout=600)
            client.wait_for_workers(2, timeout=120)  # the nannies restart killed workers: the cluster is whole again
    finally:
        if batch.poll() is None:
            batch.kill()
    assert batch.returncode == 0, out + err
    assert "Traceback" not in out + err
    rows = gradebook(base / "killed-out")
    status, kind, reason, *_ = rows["z_twice"]
    assert (status, kind) == ("failed", "submission")
    assert reason == ("the grading process died: 2 Dask workers died while grading it, possibly stopped by the "
                      "submission's code")
    assert "z_twice: could not grade: the grading process died" in err  # the progress log
    status, _, _, score, max_score, *_ = rows["a_once"]
    assert status == "graded" and score == max_score
    assert rows["wrong_function"] == gradebook(base / "local")["wrong_function"]
    # A killed worker's zygote lived in the worker's own folder, which Dask removed when the next worker started:
    # nothing of it is left behind.
    assert len(zygote_folders) == 3 and all(folder.parent.name.startswith("worker-") for folder in zygote_folders)
    assert [folder for folder in zygote_folders if folder.exists()] == []
