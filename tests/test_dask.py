"""`grade.py SUBMISSIONS --scheduler tcp://HOST:PORT`: a real `dask scheduler` and two `dask worker`
processes grade a batch; its gradebook equals a local batch's, and resuming on the cluster
keeps what was graded."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import CORPUS, ROOT, write_config

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
                                                        "--no-dashboard", "--memory-limit", "0"],
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
    """Every row as the instructor reads it (no timings, no ids)."""
    with sqlite3.connect(output / "gradebook.sqlite") as db:
        rows = db.execute("SELECT student, status, failure_kind, reason, score, max_score, report_json, "
                          "grader_version, scoring_version, content_hash FROM submissions ORDER BY student").fetchall()
    table = {}
    for student, status, kind, reason, score, max_score, report, *versions in rows:
        report = json.loads(report) if report else None
        if report:
            report.pop("execution_time", None)
        table[student] = (status, kind, reason, score, max_score, report, *versions)
    return table


def test_no_scheduler_there_is_a_one_line_error(tmp_path):
    folder = submissions(tmp_path / "class")
    result = grade(folder, tmp_path / "out", write_config(tmp_path), "--scheduler", f"tcp://127.0.0.1:{free_port()}")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "no Dask scheduler answers there" in result.stderr
