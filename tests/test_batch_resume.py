"""An interrupted batch (kill -9) resumes without losing or duplicating rows; a dying worker stays alone.

The batch grades a zip as an LMS exports it (a wrapping folder, one notebook per
student), one submission at a time, and is killed with SIGKILL (the whole process
group: batch and fork server) as soon as the first row is committed. Running the
same command again must keep that row as it was and grade only the others.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from conftest import CORPUS, ROOT, slow_notebook, write_config

GRADE = [sys.executable, str(ROOT / "grade.py")]
SOLUTION = ROOT / "solutions" / "computational_graph.ipynb"


def rows(database: Path) -> list[tuple]:
    if not database.exists():
        return []
    try:
        with sqlite3.connect(database, timeout=5) as db:
            return db.execute("SELECT id, student, status, score, finished_at, content_hash FROM submissions "
                              "ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # the schema is being created right now
        return []


def process_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def test_a_killed_batch_resumes_without_losing_or_duplicating_rows(tmp_path):
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.write(SOLUTION, "hw1/alice.ipynb")
        # bob's grading takes seconds: the batch is still grading him when alice's row is seen (a warm worker
        # grades the next notebook within a tenth of a second, before a poll could see one row and not two)
        bundle.write(sleeper(tmp_path, CORPUS / "wrong_function.ipynb", seconds=4), "hw1/bob.ipynb")
        bundle.writestr("hw1/notes.txt", "not a notebook")
    config = write_config(tmp_path, limits__cell_timeout=30, limits__notebook_timeout=120)
    output = tmp_path / "out"
    database = output / "gradebook.sqlite"
    command = GRADE + [str(archive), "--config", str(config), "--output-dir", str(output)]

    batch = subprocess.Popen(command + ["--jobs", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             start_new_session=True)
    deadline = time.monotonic() + 240
    while not rows(database) and batch.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert batch.poll() is None, "the batch ended before it could be interrupted: " + batch.stderr.read().decode()[-2000:]
    first = rows(database)
    assert len(first) == 1, first
    os.killpg(batch.pid, signal.SIGKILL)  # the batch and its fork server; workers die with their parent
    batch.wait(10)
    batch.stderr.close()
    assert rows(database) == first  # what was committed survived the kill

    deadline = time.monotonic() + 15  # the worker that was grading the next notebook is gone too
    while workers_logging_into(output) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not workers_logging_into(output)

    again = subprocess.run(command + ["--jobs", "2"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    final = rows(database)
    assert [r[1] for r in final].count(first[0][1]) == 1 and len(final) == 2
    assert {r[1]: (r[2], r[3]) for r in final} == {"alice": ("graded", 20.0), "bob": ("graded", 18.0)}
    assert first[0] in final  # the row graded before the kill was kept as it was, not graded again
    assert "unchanged:        1" in again.stdout and "notebooks run:    1" in again.stdout
    assert "class.zip:hw1/alice.ipynb" in (output / "grades.csv").read_text(encoding="utf-8")
    with sqlite3.connect(database) as db:
        batches = db.execute("SELECT finished_at IS NOT NULL FROM batches ORDER BY id").fetchall()
    assert batches == [(0,), (1,)]  # the killed batch never finished; the second did


def workers_logging_into(output: Path) -> list[int]:
    """Living worker processes of a batch: their stdout is a log file in the batch's .work folder."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            target = os.readlink(f"/proc/{pid}/fd/1")
        except OSError:
            continue
        if target.startswith(str(output / ".work")) and process_alive(int(pid)):
            found.append(int(pid))
    return found


# ------------------------------------------------------------------- the worker pool alone

@pytest.fixture(scope="module")
def quick_entry(tmp_path_factory):
    from torchgrade.config import load_config

    directory = tmp_path_factory.mktemp("pool-config")
    return load_config(write_config(directory, limits__cell_timeout=30)).assignments["computational_graph"]


def sleeper(tmp_path: Path, source: Path = SOLUTION, seconds: int = 25) -> Path:
    return slow_notebook(source, tmp_path / f"sleeper-{source.stem}.ipynb", seconds)


def finish(pool, count: int, timeout: float = 240) -> dict:
    ended, deadline = {}, time.monotonic() + timeout
    while len(ended) < count and time.monotonic() < deadline:
        for result in pool.wait(0.5):
            ended[result.job.student] = result
    return ended


def test_a_worker_killed_from_outside_costs_only_its_own_submission(quick_entry, tmp_path):
    """Like the OOM killer taking one worker: its row says why, the submission next to it is unaffected."""
    from torchgrade.batch.worker import Job, Pool

    def job(number, student, path):
        return Job(number, student, path, path.name, tmp_path / f"{number}.json", tmp_path / f"{number}.log")

    with Pool(quick_entry, "computational_graph", jobs=2, budget=300) as pool:
        pool.start(job(0, "good", SOLUTION))
        pool.start(job(1, "victim", sleeper(tmp_path)))
        victim = next(p for j, p, _ in pool.running.values() if j.student == "victim")
        time.sleep(3)
        os.kill(victim.pid, signal.SIGKILL)
        ended = finish(pool, 2)
    assert ended["victim"].status == "failed"
    assert ended["victim"].reason.startswith("the grading process died (killed by signal 9 (SIGKILL))")
    good = ended["good"]
    assert good.status == "graded" and good.report.score == good.report.max_score == 20
    assert good.evidence_json and len(good.evidence_json) == 2
    assert good.worker_peak_rss_kb > 10_000


def runs_of(zygote_pids: set[int]) -> list[int]:
    """The processes of the runs forked from these zygotes (each zygote's descendants; a run's processes are forks
    of the zygote, so the zygote is the one whose parent is not one of them)."""
    from conftest import zygote_roots
    from torchgrade.processes import descendants

    return list(descendants(zygote_roots(descendants(zygote_pids))))


@pytest.mark.parametrize("engine", ["kernel", "warm"])
def test_a_worker_over_its_time_budget_is_stopped_with_everything_below_it(quick_entry, tmp_path, engine):
    """Kernel engine: the worker's kernels are its children. Warm engine: its runs are forked from the slot's zygote,
    and each dies with the worker's end of its socket; the zygote, still answering, is kept for the other jobs."""
    from torchgrade.batch.worker import Job, Pool
    from torchgrade.processes import descendants

    entry = quick_entry.model_copy(update={"limits": quick_entry.limits.model_copy(update={"engine": engine})})
    path = sleeper(tmp_path)
    with Pool(entry, "computational_graph", jobs=1, budget=6) as pool:
        pool.start(Job(0, "slow", path, path.name, tmp_path / "0.json", tmp_path / "0.log"))
        worker = next(iter(pool.running.values()))[1]
        time.sleep(4.5)
        # the kernels or runs (and whatever they started) at that moment
        below = list(descendants({worker.pid})) if engine == "kernel" else runs_of(pool.zygotes.pids())
        ended = finish(pool, 1, timeout=60)
        if engine == "warm":
            assert pool.zygotes.zygote is not None and pool.zygotes.zygote.alive()
    result = ended["slow"]
    assert result.status == "failed" and result.reason.startswith("grading took longer than 6 s and was stopped")
    time.sleep(1)
    assert not process_alive(worker.pid)
    assert below and not [pid for pid in below if process_alive(pid)]


def test_a_warm_batch_forks_every_run_from_one_zygote(quick_entry, tmp_path):
    """Both slots' runs fork from one zygote, started once for the batch. The orphan reaper spares it (in a session
    of its own, like an orphan): killing it made every next job start a zygote of its own, seconds each."""
    from conftest import needs_warm_engine
    from torchgrade.batch.worker import Job, Pool

    if needs_warm_engine.args[0]:
        pytest.skip(needs_warm_engine.kwargs["reason"])
    entry = quick_entry.model_copy(update={"limits": quick_entry.limits.model_copy(update={"engine": "warm"})})
    graded, zygotes = [], []
    with Pool(entry, "computational_graph", jobs=2, budget=300) as pool:
        for number in range(4):
            while not pool.free:
                graded += [r for r in pool.wait(0.5)]
            pool.start(Job(number, f"s{number}", SOLUTION, SOLUTION.name, tmp_path / f"{number}.json",
                           tmp_path / f"{number}.log"))
            zygotes.append(pool.zygotes.pids())
        assert len(pool.zygotes.lent) == 2  # two jobs on one zygote at once
        graded += finish(pool, 4 - len(graded)).values()
        assert pool.zygotes.zygote.alive() and not pool.zygotes.lent
        zygotes.append(pool.zygotes.pids())
    assert len(zygotes[-1]) == 1 and all(found == zygotes[-1] for found in zygotes)
    assert [(r.status, r.report.score) for r in graded] == [("graded", 20)] * 4


def warm_pool_entry(quick_entry):
    from conftest import needs_warm_engine

    if needs_warm_engine.args[0]:
        pytest.skip(needs_warm_engine.kwargs["reason"])
    return quick_entry.model_copy(update={"limits": quick_entry.limits.model_copy(update={"engine": "warm"})})


def test_a_warm_worker_grades_its_jobs_one_after_another_each_as_if_alone(quick_entry, tmp_path, monkeypatch):
    """A warm worker grades several submissions in turn (a process per submission cost about 30 ms of CPU): a wrong
    notebook before or after does not change a correct one's report, each job has its own peak memory, and after
    JOBS_PER_WORKER jobs a fresh worker takes over."""
    from torchgrade.batch import worker
    from torchgrade.batch.worker import Job, Pool

    entry = warm_pool_entry(quick_entry)
    monkeypatch.setitem(worker.JOBS_PER_WORKER, "warm", 3)
    wrong = CORPUS / "missing_retain_graph.ipynb"
    order = [wrong, SOLUTION, wrong, SOLUTION]
    pids, results = [], []
    with Pool(entry, "computational_graph", jobs=1, budget=300) as pool:
        for number, path in enumerate(order):
            pool.start(Job(number, f"s{number}", path, path.name, tmp_path / f"{number}.json", tmp_path / f"{number}.log"))
            pids.append(next(iter(pool.running.values()))[1].pid)
            results += finish(pool, 1).values()
        assert len(pool.idle) == 1  # the fourth job's worker, waiting for a fifth
    assert pids[0] == pids[1] == pids[2] != pids[3]
    assert [r.status for r in results] == ["graded"] * 4
    failing = [sorted(c.id for t in r.report.tasks for c in t.checks if not c.passed) for r in results]
    assert failing == [["t5_grad_values", "t5_retain_graph"], [], ["t5_grad_values", "t5_retain_graph"], []]  # MANIFEST
    assert [r.report.score for r in results][1::2] == [20, 20]
    assert results[0].report.tasks == results[2].report.tasks and results[1].report.tasks == results[3].report.tasks
    assert results[0].report.flags == results[2].report.flags and results[1].report.notes == results[3].report.notes
    assert all(r.worker_peak_rss_kb > 10_000 for r in results)
    assert not process_alive(pids[0]) and not process_alive(pids[3])  # retired, and closed with the pool


def test_a_worker_that_died_while_waiting_for_a_job_is_replaced(quick_entry, tmp_path):
    """Killed between two jobs (the OOM killer, an administrator): the next job goes to a fresh worker."""
    from torchgrade.batch.worker import Job, Pool

    entry = warm_pool_entry(quick_entry)
    with Pool(entry, "computational_graph", jobs=1, budget=300) as pool:
        pool.start(Job(0, "first", SOLUTION, SOLUTION.name, tmp_path / "0.json", tmp_path / "0.log"))
        first = finish(pool, 1)["first"]
        idle = pool.idle[0].process
        os.kill(idle.pid, signal.SIGKILL)
        time.sleep(0.5)
        pool.start(Job(1, "second", SOLUTION, SOLUTION.name, tmp_path / "1.json", tmp_path / "1.log"))
        replacement = next(iter(pool.running.values()))[1]
        second = finish(pool, 1)["second"]
    assert replacement.pid != idle.pid
    assert [(r.status, r.report.score) for r in (first, second)] == [("graded", 20), ("graded", 20)]
