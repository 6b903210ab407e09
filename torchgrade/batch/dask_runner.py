"""Batch grading on a dask.distributed cluster: ``python grade.py SUBMISSIONS --scheduler tcp://HOST:8786``.

``DaskPool`` has the local ``Pool``'s interface (``free``, ``start``, ``wait``, ``running``), so
the batch (decisions, resume, --force, re-scoring, the gradebook, exports, progress) is the
same code either way; only where a notebook runs changes (docs/dask.md):

- one task per submission; the task (``torchgrade.dask_worker.grade_task``) carries the
  notebook's bytes and plain settings, and grades it with ``grading.grade_to_data`` in the Dask
  worker, with that worker's warm zygote;
- each worker keeps one zygote (``WarmZygote``, a WorkerPlugin), started on first use and
  replaced when it stops answering;
- a task's result crosses back as a JSON string (typed, plain data: never a pickled object
  made from a student's notebook), rebuilt into the same ``WorkerResult`` a local worker gives;
- the client is the single gradebook writer: the batch records each result as it arrives;
- a worker that dies loses nothing: the scheduler runs its tasks elsewhere. A submission
  whose workers keep dying (``distributed.scheduler.allowed-failures`` + 1 times; set it to
  1 to stop at the second) becomes "could not grade: reason" and the batch goes on;
- a task that overruns the local workers' wall-clock budget is given up in the same words:
  its future is cancelled and the batch goes on. Dask cannot stop a running thread, so the
  task's own limits (each cell's timeout, the notebook's budget) end the work in the worker.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import time
from pathlib import Path

from ..config import AssignmentConfig
from ..dask_worker import WarmZygote, grade_task, plugin_name
from ..errors import GradingError
from .worker import OVERRUN, Job, WorkerResult, worker_result

KILLED = ("the grading process died: {deaths} Dask workers died while grading it, possibly stopped by the "
          "submission's code")


class SchedulerError(GradingError):
    label = "cannot use the Dask scheduler"


def connect(address: str, timeout: float):
    """A Dask client of the scheduler at address; a refused or unreachable address fails at once, in one line."""
    try:
        from distributed import Client
        from distributed.comm import get_address_host_port
    except ImportError:
        raise SchedulerError("dask.distributed is not installed (pip install 'dask[distributed]')") from None
    try:
        host, port = get_address_host_port(address)
    except ValueError as problem:
        raise SchedulerError(f"{address}: not a scheduler address like tcp://HOST:8786 ({problem})") from None
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as problem:
        raise SchedulerError(f"{address}: no Dask scheduler answers there ({problem})") from None


class DaskPool:
    """Submissions as Dask tasks, with the interface of the local worker pool."""

    def __init__(self, config: AssignmentConfig, name: str, address: str, budget: float, timeout: float = 15):
        self.config, self.config_json, self.name = config, config.model_dump_json(), name
        self.budget = budget  # seconds a task may take, from its submission
        self.client = connect(address, timeout)
        self.running: dict = {}  # future -> (job, started)
        self.finished: queue.Queue = queue.Queue()  # futures that ended, in the order they did
        self.started = 0
        self._plugin_registered = False

    def __enter__(self) -> "DaskPool":
        return self

    def __exit__(self, *exc) -> None:
        for future in list(self.running):
            future.cancel()
        self.running.clear()
        self.client.close()

    @property
    def capacity(self) -> int:
        """Submissions graded at once: the cluster's worker threads (what the gradebook records as the jobs)."""
        return max(1, self.client.scheduler_info(n_workers=0).get("total_threads", 0))

    @property
    def free(self) -> int:
        """One task per worker thread: a worker's death counts against every task it holds (allowed-failures),
        so a submission that kills its worker must not take an innocent one queued behind it down with it."""
        return max(0, self.capacity - len(self.running))

    def start(self, job: Job) -> None:
        if not self._plugin_registered and self.config.limits.engine == "warm":
            mode = self.config.limits.sandbox
            self.client.register_plugin(WarmZygote(mode), name=plugin_name(mode))
            self._plugin_registered = True
        content = Path(job.path).read_bytes()
        future = self.client.submit(grade_task, self.config_json, self.name, Path(job.path).name, content, job.shown,
                                    key=f"torchgrade-{job.number}-{os.urandom(4).hex()}", pure=False)
        self.running[future] = (job, time.monotonic())
        self.started += 1
        future.add_done_callback(self.finished.put)  # called from Dask's callback thread

    def wait(self, timeout: float) -> list[WorkerResult]:
        """The tasks that ended within timeout seconds (at least one, unless none ended in time)."""
        if not self.running:
            return []
        nearest = min(started + self.budget for _, started in self.running.values())
        ended = []
        try:
            ended.append(self.finished.get(timeout=max(0.0, min(timeout, nearest - time.monotonic()))))
            while True:
                ended.append(self.finished.get_nowait())
        except queue.Empty:
            pass
        results = [self._collect(future) for future in ended if future in self.running]
        return results + self._give_up_overrun()

    def _give_up_overrun(self) -> list[WorkerResult]:
        now, given_up = time.monotonic(), []
        for future, (job, started) in list(self.running.items()):
            if now - started > self.budget:
                del self.running[future]
                future.cancel()
                given_up.append(WorkerResult(job, "failed", failure_kind="submission", wall_seconds=now - started,
                                             reason=OVERRUN.format(budget=self.budget)))
        return given_up

    def _collect(self, future) -> WorkerResult:
        job, started = self.running.pop(future)
        wall = time.monotonic() - started
        try:
            data = json.loads(future.result())
            if not isinstance(data, dict) or data.get("status") not in ("graded", "failed"):
                raise ValueError("not a result")
        except Exception as problem:  # noqa: BLE001 - KilledWorker, a lost connection, an unreadable result
            kind = type(problem).__name__
            if kind == "KilledWorker":
                return WorkerResult(job, "failed", failure_kind="submission", wall_seconds=wall,
                                    reason=KILLED.format(deaths=getattr(problem, "allowed_failures", 0) + 1))
            # The row (which feedback shows the student) names the kind; the details, which may hold a worker's
            # paths and addresses, go to the instructor's terminal as a warning.
            return WorkerResult(job, "failed", failure_kind="grader", wall_seconds=wall,
                                reason=f"the Dask task failed ({kind}); the batch's warnings say why",
                                notes=[f"the Dask task failed: {kind}: {problem}"[:500]])
        return worker_result(job, data, wall)
