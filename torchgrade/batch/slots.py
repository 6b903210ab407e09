"""What a local batch starts before its first job: the worker slots' zygotes and the fork server.

Both take seconds (each imports torch), so they start at once and as early as possible: the command
line starts them (``start_soon``) before the batch's own process imports torch, and the pool takes
them over (``claim``). Nothing here imports torch.
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
# worker holds its slot's zygote and two forked runs (measured: 366 MiB PSS with a run going).
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


class ZygoteSlots:
    """One warm zygote per worker slot (engine: warm), lent to one job at a time.

    All slots' zygotes start at once, in the background (``start_soon``); the first ``take`` waits for them.
    A zygote that no longer answers when its job ends (or whose job overran its budget) is replaced."""

    def __init__(self, config: AssignmentConfig, slots: int):
        self.mode, self.wanted, self.slots = config.limits.sandbox, config.limits.engine == "warm", slots
        self.free: list = []
        self.lent: dict[int, object] = {}
        self.starting: threading.Thread | None = None
        self.failure: Exception | None = None

    @property
    def count(self) -> int:
        """Zygotes running: free or lent."""
        return len(self.free) + len(self.lent)

    def start_soon(self, minimum: int = 0, wait_spawned: bool = False) -> None:
        """Start the missing zygotes (at least ``minimum``) in a thread; returns at once, or (``wait_spawned``) once
        their processes exist: a caller about to import torch holds the GIL for seconds, and would stall the start
        before it got that far."""
        missing = max(minimum, self.slots - self.count)
        if not self.wanted or self.starting is not None or missing < 1:
            return
        from ..fork_executor import warm_problem
        from ..zygote import WarmUnavailable

        self.failure = None
        problem = warm_problem()
        if problem:
            self.failure = WarmUnavailable(problem)
            return

        spawned = [threading.Event() for _ in range(missing)]

        def start() -> None:
            try:
                self._start(spawned)
            except Exception as failure:  # noqa: BLE001 - met and said by take()
                self.failure = failure
            finally:
                for event in spawned:
                    event.set()

        self.starting = threading.Thread(target=start, name="torchgrade-zygote-slots", daemon=True)
        self.starting.start()
        for event in spawned if wait_spawned else ():
            event.wait(10)

    def _finish_start(self, minimum: int = 0) -> None:
        """Wait for the zygotes being started (starting them first, when none are)."""
        if self.starting is None:
            self.start_soon(minimum)
        if self.starting is not None:
            self.starting.join()
            self.starting = None

    def resize(self, slots: int) -> None:
        """Keep at most ``slots`` zygotes (a batch with fewer notebooks than the slots started early)."""
        self.slots = slots
        if self.starting is not None:
            self._finish_start()
        while self.count > slots and self.free:
            self.free.pop().close()

    def take(self, job: int):
        if not self.wanted:
            return None
        if not self.free:
            self._finish_start(minimum=1)  # the early start, or a replacement for a zygote that was closed
        if not self.free:
            from ..fork_executor import say_fallback
            from ..zygote import WarmUnavailable, ZygoteFailure

            if self.failure is not None and not isinstance(self.failure, (WarmUnavailable, ZygoteFailure)):
                raise self.failure
            reason = getattr(self.failure, "reason", None) or "no zygote started"
            say_fallback(f"the warm engine is unavailable ({reason})")
            self.wanted = False
            return None
        zygote = self.free.pop()
        self.lent[job] = zygote
        return zygote.client

    def _start(self, spawned: list[threading.Event]) -> None:
        """Start a zygote per event at once (each event is set once its process exists); they are free when this
        returns (so none is ever reaped half-started)."""
        from concurrent.futures import ThreadPoolExecutor

        from ..sandbox import isolation
        from ..zygote import Zygote

        # a zygote's keeper thread (which bwrap --die-with-parent follows) is its own, not this pool's
        where = isolation(self.mode)
        with ThreadPoolExecutor(max_workers=len(spawned), thread_name_prefix="torchgrade-zygote-start") as pool:
            futures = [pool.submit(Zygote, where, spawned=event) for event in spawned]
        for future in futures:
            if future.exception() is None:
                self.free.append(future.result())
        for future in futures:
            future.result()  # raises the first failure (the started ones are closed with the others)

    def give_back(self, job: int, suspect: bool = False) -> None:
        zygote = self.lent.pop(job, None)
        if zygote is None:
            return
        if suspect or not zygote.alive():
            zygote.close()
        else:
            self.free.append(zygote)

    def pids(self) -> set[int]:
        """The processes this batch started for its zygotes (each a bwrap, or the zygote itself without a sandbox)."""
        return {zygote.process.pid for zygote in self.free + list(self.lent.values()) if zygote.process is not None}

    def close(self) -> None:
        if self.starting is not None:
            self.starting.join()
            self.starting = None
        for zygote in self.free + list(self.lent.values()):
            zygote.close()
        self.free, self.lent = [], {}


# ------------------------------------------------------------------ started early by the command line

_early: dict[str, ZygoteSlots] = {}


def start_soon(entry: AssignmentConfig, slots: int) -> None:
    """Start the fork server and (engine: warm) the slots' zygotes now, for the batch that follows to claim."""
    fork_server_context()
    if entry.limits.engine == "warm" and not _early:
        early = ZygoteSlots(entry, slots)
        early.start_soon(wait_spawned=True)
        _early[entry.limits.sandbox] = early
        atexit.register(close_unclaimed)


def claim(entry: AssignmentConfig, slots: int) -> ZygoteSlots:
    """The zygotes started early for this sandbox mode (resized to ``slots``), or new ones."""
    early = _early.pop(entry.limits.sandbox, None) if entry.limits.engine == "warm" else None
    if early is None:
        return ZygoteSlots(entry, slots)
    early.resize(slots)
    early.early = True
    return early


def release(zygotes: ZygoteSlots) -> None:
    """A pool's zygotes when its batch ends: kept for the next assignment's batch when the command line started
    them (``close_unclaimed`` ends them with the command), else closed."""
    if getattr(zygotes, "early", False) and zygotes.wanted and zygotes.mode not in _early:
        for job in list(zygotes.lent):  # a job stopped mid-run (the batch was interrupted): not to be trusted
            zygotes.give_back(job, suspect=True)
        _early[zygotes.mode] = zygotes
    else:
        zygotes.close()


def close_unclaimed() -> None:
    """Zygotes started for a batch that executed nothing (every submission unchanged, or a usage error)."""
    while _early:
        _early.popitem()[1].close()
