"""What a local batch starts before its first job: the workers' warm zygote and the fork server.

Both take seconds (each imports torch), so they start at once and as early as possible: the command
line starts them (``start_soon``) before the batch's own process imports torch, and the pool takes
the zygote over (``claim``). Nothing here imports torch.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from pathlib import Path

from ..config import AssignmentConfig

FORK_SERVER_PRELOAD = ["torchgrade.batch.preload"]
# What one worker slot may use at its peak: a kernel-engine worker holds two kernels with torch loaded; a warm
# worker holds two forked runs and its share of the batch's zygote (measured: 296 MiB PSS per worker, with --jobs 2).
MEMORY_PER_WORKER = {"kernel": int(1.2 * 2**30), "warm": int(0.5 * 2**30)}


def default_jobs(engine: str = "kernel") -> tuple[int, str]:
    """As many workers as cores, unless free memory holds fewer; and why."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    each = MEMORY_PER_WORKER.get(engine, MEMORY_PER_WORKER["kernel"])
    if available is not None and available // each < cores:
        return max(1, available // each), f"{cores} cores, limited by {available / 2**30:.1f} GiB of free memory"
    return cores, "the number of cores"


def batch_sandbox(entry: AssignmentConfig) -> AssignmentConfig:
    """A batch runs a whole class's code: the sandbox is required unless turned off explicitly (--sandbox off or
    limits.sandbox: off), and then the gradebook and the class report say so."""
    if entry.limits.sandbox != "auto":
        return entry
    return entry.model_copy(update={"limits": entry.limits.model_copy(update={"sandbox": "require"})})


def fork_server_context():
    """The batch's multiprocessing context; its fork server is started now (it imports torch and warms up while
    the caller goes on) with this very torchgrade on its path."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(FORK_SERVER_PRELOAD)
    # The fork server is a fresh interpreter that ignores our sys.path (Python 3.11 drops it): make it import this
    # very torchgrade (a checkout run as `python path/grade.py` from elsewhere, or beside an installed one).
    saved = os.environ.get("PYTHONPATH")
    package_root = str(Path(__file__).resolve().parents[2])
    os.environ["PYTHONPATH"] = os.pathsep.join([package_root] + ([saved] if saved else []))
    try:
        from multiprocessing import forkserver

        forkserver.ensure_running()
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    return context


class BatchZygote:
    """One warm zygote for all the worker slots of a local batch (engine: warm), as a Dask worker's threads share
    its zygote: a zygote serves several runs at once (it only forks), so a second one would cost its start (torch,
    IPython, sympy: 3-4 s of CPU) and its memory (about 170 MiB of its own) for nothing.

    It starts in the background (``start_soon``); the first ``take`` waits for it. A zygote that no longer answers
    when a job ends is closed, and the next ``take`` starts another."""

    def __init__(self, config: AssignmentConfig):
        self.mode, self.wanted = config.limits.sandbox, config.limits.engine == "warm"
        self.zygote = None
        self.lent: set[int] = set()  # the jobs running on it
        self.starting: threading.Thread | None = None
        self.failure: Exception | None = None

    def start_soon(self, wait_spawned: bool = False) -> None:
        """Start the zygote in a thread, unless it runs or is starting; returns at once, or (``wait_spawned``) once
        its process exists: a caller about to import torch holds the GIL for seconds, and would stall the start
        before it got that far."""
        if not self.wanted or self.starting is not None or self.zygote is not None:
            return
        from ..fork_executor import warm_problem
        from ..zygote import WarmUnavailable

        self.failure = None
        problem = warm_problem()
        if problem:
            self.failure = WarmUnavailable(problem)
            return
        spawned = threading.Event()

        def start() -> None:
            from ..sandbox import isolation
            from ..zygote import Zygote

            try:
                self.zygote = Zygote(isolation(self.mode), spawned=spawned)
            except Exception as failure:  # noqa: BLE001 - met and said by take()
                self.failure = failure
            finally:
                spawned.set()

        # its own thread: a zygote's keeper thread (which bwrap --die-with-parent follows) must outlive this call
        self.starting = threading.Thread(target=start, name="torchgrade-batch-zygote", daemon=True)
        self.starting.start()
        if wait_spawned:
            spawned.wait(10)

    def _finish_start(self) -> None:
        """Wait for the zygote being started (starting it first, when it is not)."""
        if self.starting is None:
            self.start_soon()
        if self.starting is not None:
            self.starting.join()
            self.starting = None

    def take(self, job: int):
        """The zygote's client for this job; None (said once) where the warm engine cannot work."""
        if not self.wanted:
            return None
        if self.zygote is None:
            self._finish_start()  # the early start, or a replacement for a zygote that was closed
        if self.zygote is None:
            from ..fork_executor import say_fallback
            from ..zygote import WarmUnavailable, ZygoteFailure

            if self.failure is not None and not isinstance(self.failure, (WarmUnavailable, ZygoteFailure)):
                raise self.failure
            reason = getattr(self.failure, "reason", None) or "no zygote started"
            say_fallback(f"the warm engine is unavailable ({reason})")
            self.wanted = False
            return None
        self.lent.add(job)
        return self.zygote.client

    def give_back(self, job: int, suspect: bool = False) -> None:
        """A job ended (``suspect``: it overran its budget). Its runs died with its worker's sockets; the zygote is
        kept if it still answers, since other jobs' runs may be forking from it."""
        if job not in self.lent:
            return
        self.lent.discard(job)
        if self.zygote is not None and not self.zygote.alive():
            self.zygote.close()
            self.zygote = None

    def pids(self) -> set[int]:
        """The process this batch started for its zygote (a bwrap, or the zygote itself without a sandbox)."""
        process = self.zygote.process if self.zygote is not None else None
        return {process.pid} if process is not None else set()

    def close(self) -> None:
        if self.starting is not None:
            self.starting.join()
            self.starting = None
        if self.zygote is not None:
            self.zygote.close()
        self.zygote, self.lent = None, set()


# ------------------------------------------------------------------ started early by the command line

_early: dict[str, BatchZygote] = {}


def start_soon(entry: AssignmentConfig) -> None:
    """Start the fork server and (engine: warm) the batch's zygote now, for the batch that follows to claim."""
    fork_server_context()
    if entry.limits.engine == "warm" and entry.limits.sandbox not in _early:
        early = BatchZygote(entry)
        early.start_soon(wait_spawned=True)
        _early[entry.limits.sandbox] = early
        atexit.register(close_unclaimed)


def claim(entry: AssignmentConfig) -> BatchZygote:
    """The zygote started early for this sandbox mode, or a new one (started by the pool)."""
    early = _early.pop(entry.limits.sandbox, None) if entry.limits.engine == "warm" else None
    if early is None:
        return BatchZygote(entry)
    early.early = True
    return early


def release(zygote: BatchZygote) -> None:
    """A pool's zygote when its batch ends: kept for the next assignment's batch when the command line started it
    (``close_unclaimed`` ends it with the command), else closed."""
    if getattr(zygote, "early", False) and zygote.wanted and zygote.mode not in _early:
        zygote.lent.clear()  # the batch's workers are gone, and their runs with them
        _early[zygote.mode] = zygote
    else:
        zygote.close()


def close_unclaimed() -> None:
    """Zygotes started for a batch that executed nothing (every submission unchanged, or a usage error)."""
    while _early:
        _early.popitem()[1].close()
