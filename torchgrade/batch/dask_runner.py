"""Batch grading on a dask.distributed cluster: ``python grade.py SUBMISSIONS --scheduler tcp://HOST:8786``.

``DaskPool`` has the local ``Pool``'s interface (``free``, ``start``, ``wait``, ``running``), so
the batch (decisions, resume, --force, re-scoring, the gradebook, exports, progress) is the
same code either way; only where a notebook runs changes (docs/dask.md):

- one task per submission; the task carries the notebook's bytes and plain settings, and
  grades it with ``worker.grade_to_data``, in the Dask worker, with that worker's warm zygote;
- each worker keeps one zygote (``WarmZygote``, a WorkerPlugin), started on first use and
  replaced when it stops answering;
- a task's result crosses back as a JSON string (typed, plain data: never a pickled object
  made from a student's notebook), rebuilt into the same ``WorkerResult`` a local worker gives;
- the client is the single gradebook writer: the batch records each result as it arrives;
- a worker that dies loses nothing: the scheduler runs its tasks elsewhere. A submission
  that keeps killing workers (``distributed.scheduler.allowed-failures`` + 1 times; set it to
  1 to stop at the second) becomes "could not grade: reason" and the batch goes on.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path

from ..config import AssignmentConfig
from ..errors import GradingError
from .worker import Job, WorkerResult, grade_to_data, worker_result

PLUGIN = "torchgrade-zygote"


class SchedulerError(GradingError):
    label = "cannot use the Dask scheduler"


try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # distributed is optional until --scheduler is used
    WorkerPlugin = object


class WarmZygote(WorkerPlugin):
    """One warm zygote per Dask worker, for every task the worker runs (engine: warm)."""

    name = PLUGIN

    def __init__(self, sandbox_mode: str):
        self.sandbox_mode = sandbox_mode
        self.zygote = None
        self.lock = None  # made on the worker: the plugin travels pickled (it holds only the sandbox mode)

    def setup(self, worker=None):
        self.lock = threading.Lock()

    def client(self):
        """The zygote's client, starting (or replacing) the zygote when needed; None where forking cannot work."""
        from ..fork_executor import warm_problem
        from ..sandbox import isolation
        from ..zygote import WarmUnavailable, Zygote

        if warm_problem():
            return None
        if self.lock is None:
            self.setup()
        with self.lock:
            if self.zygote is not None and not self.zygote.alive():
                self.zygote.close()
                self.zygote = None
            if self.zygote is None:
                try:
                    self.zygote = Zygote(isolation(self.sandbox_mode))
                except WarmUnavailable:
                    return None
            return self.zygote.client

    def teardown(self, worker=None):
        if self.zygote is not None:
            self.zygote.close()
            self.zygote = None


def grade_task(config_json: str, name: str, filename: str, content: bytes, shown: str) -> str:
    """A Dask task: grade one notebook on this worker; the result as JSON text."""
    entry = AssignmentConfig.model_validate_json(config_json)
    zygote = None
    if entry.limits.engine == "warm":
        from distributed import get_worker

        plugin = get_worker().plugins.get(PLUGIN)
        zygote = plugin.client() if plugin is not None else None
    with tempfile.TemporaryDirectory(prefix="torchgrade-dask-") as folder:
        path = Path(folder) / (Path(filename).name or "submission.ipynb")
        path.write_bytes(content)
        result = grade_to_data(config_json, name, str(path), shown, zygote)
    return json.dumps(result, ensure_ascii=False)


class DaskPool:
    """Submissions as Dask tasks, with the interface of the local worker pool."""

    def __init__(self, config: AssignmentConfig, name: str, address: str, timeout: float = 15):
        try:
            from distributed import Client
        except ImportError:
            raise SchedulerError("dask.distributed is not installed (pip install 'dask[distributed]')") from None
        self.config, self.config_json, self.name = config, config.model_dump_json(), name
        try:
            self.client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as problem:
            raise SchedulerError(f"{address}: no Dask scheduler answers there ({problem})") from None
        self.running: dict = {}  # future -> (job, started)
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
    def workers(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    @property
    def free(self) -> int:
        return max(0, 2 * self.workers - len(self.running))  # keep every worker busy, with one queued behind

    def start(self, job: Job) -> None:
        if not self._plugin_registered and self.config.limits.engine == "warm":
            self.client.register_plugin(WarmZygote(self.config.limits.sandbox), name=PLUGIN)
            self._plugin_registered = True
        content = Path(job.path).read_bytes()
        future = self.client.submit(grade_task, self.config_json, self.name, Path(job.path).name, content, job.shown,
                                    key=f"torchgrade-{job.number}-{os.urandom(4).hex()}", pure=False)
        self.running[future] = (job, time.monotonic())
        self.started += 1

    def wait(self, timeout: float) -> list[WorkerResult]:
        from distributed import wait as dask_wait

        if not self.running:
            return []
        try:
            done, _ = dask_wait(list(self.running), timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return []
        return [self._collect(future) for future in done]

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
                reason = ("the grading process died: the Dask workers grading it stopped repeatedly, possibly "
                          "stopped by the submission's code")
            else:
                reason = f"the Dask task failed ({kind}: {str(problem)[:200]})"
            return WorkerResult(job, "failed", failure_kind="submission" if kind == "KilledWorker" else "grader",
                                wall_seconds=wall, reason=reason)
        return worker_result(job, data, wall)
