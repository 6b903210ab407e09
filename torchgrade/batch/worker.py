"""Grade each submission in its own worker process, several at a time.

Workers are forked from a fork server that has already imported torch and the
engine, so a worker starts in milliseconds. A worker grades one notebook at a time
(with the kernel engine its kernels are its children) and writes each result as JSON
to a file. With the kernel engine it then exits: every submission gets a fresh
process. With the warm engine, whose runs are forked from the batch's zygote and never
the worker's children, a worker grades up to ``JOBS_PER_WORKER[engine]`` submissions
one after another: a fresh process per submission cost about 30 ms of CPU (its first
touch of the fork server's memory: about 4,000 copy-on-write faults), a quarter of
what the worker does. Whatever a submission does (crash its kernel, kill its worker,
loop forever, exhaust memory) ends at most that one process, during that one
submission: the batch records "could not grade: reason" for it and the others go on.
A worker that outlives a submission's time budget is killed together with every
process below it.

Workers call ``setsid`` (so their process group can be killed as one) and ask the
kernel to kill them when their parent dies (``PR_SET_PDEATHSIG``), so a ``kill -9``
of the batch does not leave workers grading for nobody. While a batch runs, the
batch process is a child subreaper (``PR_SET_CHILD_SUBREAPER``): kernels orphaned by
a worker that died are adopted by it, found and killed.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import processes
from ..config import AssignmentConfig
from ..results import GradeReport
from .grading import prctl, serve_jobs
from .slots import claim, fork_server_context, release

PR_SET_CHILD_SUBREAPER = 36
LOG_TAIL_BYTES = 4000
OVERRUN = "grading took longer than {budget:g} s and was stopped"  # a worker (or Dask task) over its budget
JOBS_PER_WORKER = {"warm": 25, "kernel": 1}  # then a fresh worker: what a long life could leak stays bounded


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


# ------------------------------------------------------------------- in the batch process

@dataclass
class Worker:
    """A worker process, our end of its job pipe, and how many jobs it was given."""

    process: multiprocessing.process.BaseProcess
    link: multiprocessing.connection.Connection
    served: int = 0

    def heard_done(self) -> bool:
        """Whether it answered "done" (it lives, and may take another job); False once it died mid-job."""
        try:
            return self.link.poll() and self.link.recv_bytes() == b"done"
        except (EOFError, OSError):
            return False


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
    """Run jobs in worker processes, at most `jobs` at a time, each within `budget` seconds."""

    def __init__(self, config: AssignmentConfig, name: str, jobs: int, budget: float):
        self.config_json = config.model_dump_json()
        self.name = name
        self.jobs = max(1, jobs)
        self.budget = budget
        self.jobs_per_worker = JOBS_PER_WORKER.get(config.limits.engine, 1)
        self.context = None
        self.running: dict[int, tuple[Job, multiprocessing.process.BaseProcess, float]] = {}  # by sentinel
        self.busy: dict[int, Worker] = {}  # by sentinel: the workers of the running jobs
        self.idle: list[Worker] = []  # workers that finished a job and may take another
        self.zygotes = claim(config)  # one zygote for every slot: started early by the command line, or now
        self.initial_children: set[int] = set()
        self.subreaper = False
        self.started = 0

    def __enter__(self) -> "Pool":
        self.initial_children = set(self._children())
        self.subreaper = prctl(PR_SET_CHILD_SUBREAPER, 1)
        self.zygotes.start_soon()  # the zygote and the fork server start side by side
        self.context = fork_server_context()
        return self

    def __exit__(self, *exc) -> None:
        for job, process, _ in list(self.running.values()):
            kill_tree(process.pid)
            process.join(5)
        self.running.clear()
        while self.idle:
            self._retire(self.idle.pop())
        release(self.zygotes)
        self.reap_orphans()
        if self.subreaper:
            prctl(PR_SET_CHILD_SUBREAPER, 0)

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
        order = json.dumps({"path": str(job.path), "shown": job.shown, "result_path": str(job.result_path),
                            "log_path": str(job.log_path),
                            "zygote": [zygote.address, zygote.sandboxed] if zygote else None}).encode()
        worker = self.idle.pop() if self.idle else self._new_worker()
        try:
            worker.link.send_bytes(order)
        except OSError:  # it died while idle: the job goes to a fresh one
            self._retire(worker)
            worker = self._new_worker()
            worker.link.send_bytes(order)
        worker.served += 1
        self.running[worker.process.sentinel] = (job, worker.process, time.monotonic())
        self.busy[worker.process.sentinel] = worker

    def _new_worker(self) -> Worker:
        link, theirs = self.context.Pipe()
        process = self.context.Process(target=serve_jobs, name=f"torchgrade-worker-{self.started}", daemon=False,
                                       args=(theirs, self.config_json, self.name, os.getpid()))
        process.start()
        theirs.close()
        self.started += 1
        return Worker(process, link)

    @staticmethod
    def _retire(worker: Worker) -> None:
        """Close a worker's job pipe (it exits at once) and reap it; one that lingers is killed."""
        worker.link.close()
        worker.process.join(5)
        if worker.process.is_alive():
            kill_tree(worker.process.pid)
            worker.process.join()

    def wait(self, timeout: float) -> list[WorkerResult]:
        """Wait up to timeout seconds; return the jobs that ended (finished, died or overran their budget)."""
        if not self.running:
            return []
        now = time.monotonic()
        nearest = min(started + self.budget for _, _, started in self.running.values())
        watched = list(self.running) + [self.busy[sentinel].link for sentinel in self.running]
        ready = set(multiprocessing.connection.wait(watched, timeout=max(0.0, min(timeout, nearest - now))))
        ended: list[WorkerResult] = []
        for sentinel in [s for s in self.running if s in ready or self.busy[s].link in ready]:
            job, process, started = self.running.pop(sentinel)
            worker = self.busy.pop(sentinel)
            finished = worker.heard_done()
            if not finished:  # it died during the job: no answer will come
                worker.link.close()
                process.join()
            self.zygotes.give_back(job.number)
            ended.append(self._collect(job, process, time.monotonic() - started))
            if finished and worker.served < self.jobs_per_worker:
                self.idle.append(worker)
            elif finished:
                self._retire(worker)
        now = time.monotonic()
        for sentinel, (job, process, started) in list(self.running.items()):
            if now - started > self.budget:
                del self.running[sentinel]
                self.busy.pop(sentinel).link.close()
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
        from ..results import report_from_dict

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

