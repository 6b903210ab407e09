"""Grade each submission in its own worker process, several at a time.

Every submission gets a fresh process (forked from a fork server that has already
imported torch and the engine, so a worker starts in milliseconds). The worker
grades one notebook (its kernels are its children), writes the result as JSON to a
file and exits. Whatever a submission does (crash its kernel, kill its worker, loop
forever, exhaust memory) ends that one process: the batch records "could not grade:
reason" for it and the others go on. A worker that outlives its time budget is
killed together with every process below it.

Workers call ``setsid`` (so their process group can be killed as one) and ask the
kernel to kill them when their parent dies (``PR_SET_PDEATHSIG``), so a ``kill -9``
of the batch does not leave workers grading for nobody. While a batch runs, the
batch process is a child subreaper (``PR_SET_CHILD_SUBREAPER``): kernels orphaned by
a worker that died are adopted by it, found and killed.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import multiprocessing.connection
import os
import resource
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

from .. import processes
from ..config import AssignmentConfig
from ..errors import GradingError, SubmissionError
from ..evidence_store import EvidenceError, RecordingGrader, evidence_text
from ..results import GradeReport
from ..sanitize import no_surrogates
from .slots import claim, fork_server_context, release

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
LOG_TAIL_BYTES = 4000
OVERRUN = "grading took longer than {budget:g} s and was stopped"  # a worker (or Dask task) over its budget


@dataclass
class Job:
    """One submission to execute."""

    number: int
    student: str
    path: Path
    shown: str
    result_path: Path
    log_path: Path


@dataclass
class WorkerResult:
    job: Job
    status: str  # graded | failed
    report: GradeReport | None = None
    evidence_json: list[str] | None = None
    failure_kind: str | None = None  # submission | grader
    reason: str | None = None
    wall_seconds: float = 0.0
    worker_peak_rss_kb: int | None = None
    kernel_peak_rss_kb: int | None = None
    notes: list[str] = field(default_factory=list)


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


# ----------------------------------------------------------------------- in the worker

def bare(reason: str) -> str:
    """A row's reason without the "could not grade: " the row itself stands for."""
    return reason.removeprefix("could not grade: ")


def grade_to_data(config_json: str, name: str, path: str, shown: str, zygote=None) -> dict:
    """Grade one notebook; the outcome as plain JSON-able data (what a worker writes, what a Dask task returns)."""
    started = time.monotonic()
    result: dict = {}
    try:
        entry = AssignmentConfig.model_validate_json(config_json)
        grader = RecordingGrader.from_config(name, entry, executor=executor_for(entry, zygote))
        report = replace(grader.grade_notebook(path), submission=shown)
        result = {"status": "graded", "report": report.to_dict()}
        try:
            result["evidence"] = [evidence_text(e) for e in grader.recorded]
        except (EvidenceError, ValueError, TypeError) as problem:  # graded, but cannot be re-scored later
            result["evidence"] = None
            result["notes"] = [f"the snapshots could not be stored ({problem}); a re-score will run it again"]
    except SubmissionError as problem:
        result = {"status": "failed", "failure_kind": "submission", "reason": bare(problem.one_line())}
    except GradingError as problem:
        result = {"status": "failed", "failure_kind": "grader", "reason": bare(problem.one_line())}
    except BaseException as problem:  # noqa: BLE001 - anything at all becomes this submission's row
        traceback.print_exc()
        result = {"status": "failed", "failure_kind": "grader",
                  "reason": f"internal error: {type(problem).__name__}: {problem}"[:500]}
    result["wall_seconds"] = round(time.monotonic() - started, 3)
    result["worker_peak_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["kernel_peak_rss_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return result


def grade_in_worker(config_json: str, name: str, path: str, shown: str, result_path: str, log_path: str,
                    batch_pid: int, zygote=None) -> None:
    """The worker process's whole life: grade one notebook, write the result, exit."""
    os.setsid()
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() in (1, batch_pid):  # the fork server died before the line above took effect
        os._exit(1)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    result = grade_to_data(config_json, name, path, shown, zygote)
    temporary = result_path + ".partial"
    text = no_surrogates(json.dumps(result, ensure_ascii=False))  # a lone surrogate must not lose this row
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, result_path)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no atexit handlers, no waiting for stray threads


def executor_for(entry: AssignmentConfig, zygote):
    """The batch's warm zygote when it has one (a ZygoteClient); else the configured engine."""
    from ..fork_executor import FallbackExecutor, WarmExecutor, make_executor

    if zygote is not None:
        return FallbackExecutor(WarmExecutor(zygote))
    return make_executor(entry.limits.engine)


# ------------------------------------------------------------------- in the batch process

def kill_tree(pid: int) -> None:
    """Kill a process, everything below it and their process groups (never our own group)."""
    ours = os.getpgrp()
    victims = list(processes.descendants({pid})) + [pid]
    groups = set()
    for victim in victims:
        try:
            groups.add(os.getpgid(victim))
        except OSError:
            pass
    for group in groups - {ours}:
        try:
            os.killpg(group, signal.SIGKILL)
        except OSError:
            pass
    for victim in victims:
        try:
            os.kill(victim, signal.SIGKILL)
        except OSError:
            pass


class Pool:
    """Run jobs in fresh worker processes, at most `jobs` at a time, each within `budget` seconds."""

    def __init__(self, config: AssignmentConfig, name: str, jobs: int, budget: float):
        self.config_json = config.model_dump_json()
        self.name = name
        self.jobs = max(1, jobs)
        self.budget = budget
        self.context = None
        self.running: dict[int, tuple[Job, multiprocessing.process.BaseProcess, float]] = {}
        self.zygotes = claim(config)  # one zygote for every slot: started early by the command line, or now
        self.initial_children: set[int] = set()
        self.subreaper = False
        self.started = 0

    def __enter__(self) -> "Pool":
        self.initial_children = set(self._children())
        self.subreaper = _prctl(PR_SET_CHILD_SUBREAPER, 1)
        self.zygotes.start_soon()  # the zygote and the fork server start side by side
        self.context = fork_server_context()
        return self

    def __exit__(self, *exc) -> None:
        for job, process, _ in list(self.running.values()):
            kill_tree(process.pid)
            process.join(5)
        self.running.clear()
        release(self.zygotes)
        self.reap_orphans()
        if self.subreaper:
            _prctl(PR_SET_CHILD_SUBREAPER, 0)

    def _children(self) -> list[int]:
        me = os.getpid()
        return [pid for pid in processes.proc_pids() if processes.parent_pid(pid) == me]

    def reap_orphans(self) -> int:
        """Kill and reap processes adopted from dead workers (kernels a submission left behind).

        The batch's zygote is a child of this process in a session of its own, like an orphan: it is spared
        (killing it made every next job start a zygote of its own, seconds each)."""
        ours = os.getpgrp()
        killed = 0
        spared = self.initial_children | self.zygotes.pids()
        for pid in self._children():
            if pid in spared:
                continue
            try:
                if os.getpgid(pid) == ours:
                    continue  # the fork server and multiprocessing's helpers live in our group
            except OSError:
                continue
            kill_tree(pid)
            killed += 1
            deadline = time.monotonic() + 2
            while True:
                try:
                    if os.waitpid(pid, os.WNOHANG)[0] or time.monotonic() > deadline:
                        break
                except ChildProcessError:
                    break
                time.sleep(0.05)
        return killed

    @property
    def free(self) -> int:
        return self.jobs - len(self.running)

    def start(self, job: Job) -> None:
        zygote = self.zygotes.take(job.number)
        process = self.context.Process(
            target=grade_in_worker, name=f"torchgrade-worker-{job.number}", daemon=False,
            args=(self.config_json, self.name, str(job.path), job.shown, str(job.result_path), str(job.log_path),
                  os.getpid(), zygote),
        )
        process.start()
        self.started += 1
        self.running[process.sentinel] = (job, process, time.monotonic())

    def wait(self, timeout: float) -> list[WorkerResult]:
        """Wait up to timeout seconds; return the jobs that ended (finished, died or overran their budget)."""
        if not self.running:
            return []
        now = time.monotonic()
        nearest = min(started + self.budget for _, _, started in self.running.values())
        ready = multiprocessing.connection.wait(list(self.running), timeout=max(0.0, min(timeout, nearest - now)))
        ended: list[WorkerResult] = []
        for sentinel in ready:
            job, process, started = self.running.pop(sentinel)
            process.join()
            self.zygotes.give_back(job.number)
            ended.append(self._collect(job, process, time.monotonic() - started))
        now = time.monotonic()
        for sentinel, (job, process, started) in list(self.running.items()):
            if now - started > self.budget:
                del self.running[sentinel]
                kill_tree(process.pid)
                process.join()
                self.zygotes.give_back(job.number, suspect=True)
                ended.append(WorkerResult(job, "failed", failure_kind="submission", wall_seconds=now - started,
                                          reason=OVERRUN.format(budget=self.budget)))
        if ended and self.subreaper:
            self.reap_orphans()
        return ended

    def _collect(self, job: Job, process, wall: float) -> WorkerResult:
        try:
            data = json.loads(job.result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if not isinstance(data, dict) or data.get("status") not in ("graded", "failed"):
            code = process.exitcode
            how = f"killed by signal {-code} ({_signal_name(-code)})" if code is not None and code < 0 \
                else f"exit status {code}"
            return WorkerResult(job, "failed", failure_kind="submission", wall_seconds=wall,
                                reason=f"the grading process died ({how}), "
                                       "possibly stopped by the submission's code")
        return worker_result(job, data, wall)


def worker_result(job: Job, data: dict, wall: float) -> WorkerResult:
    """A worker's (or a Dask task's) JSON result as the batch records it."""
    result = WorkerResult(job, data["status"], failure_kind=data.get("failure_kind"), reason=data.get("reason"),
                          wall_seconds=data.get("wall_seconds", wall),
                          worker_peak_rss_kb=data.get("worker_peak_rss_kb"),
                          kernel_peak_rss_kb=data.get("kernel_peak_rss_kb"), notes=data.get("notes") or [])
    if result.status == "graded":
        from ..evidence_store import report_from_dict

        try:
            result.report = report_from_dict(data["report"])
        except (KeyError, TypeError, ValueError) as problem:
            return WorkerResult(job, "failed", failure_kind="grader", wall_seconds=wall,
                                reason=f"the worker's result was unreadable ({problem})")
        evidence = data.get("evidence")
        result.evidence_json = evidence if isinstance(evidence, list) else None
    return result


def log_tail(job: Job) -> str:
    try:
        with open(job.log_path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - LOG_TAIL_BYTES))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"

