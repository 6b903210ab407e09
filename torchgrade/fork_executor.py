"""Stage 4, the warm engine: run the planned cells in a child forked from a zygote, not in a new kernel.

``WarmExecutor`` honours the same ``Executor`` interface as the nbclient engine and the same
policy (see executor.py), so both engines give the same report:

- each cell gets ``min(cell_timeout, time left of the notebook budget)``; the prelude gets the
  startup timeout;
- a timed-out cell is interrupted (SIGINT, like a kernel interrupt); a child that has not
  finished the cell ``STOP_GRACE`` seconds later (what the kernel engine waits in all) is
  killed and replaced, and a run that died resumes in a fresh child at the next GIVEN cell,
  after the prelude;
- only the stdout of snapshot cells is kept (bounded); a single piece of output or a display
  larger than ``max_message_bytes`` is dropped with the event the kernel engine reports;
- each run has a fresh secret, written to the child's socket before any student code exists;
- limits, environment allow-list and uid as for a kernel; the child's namespaces (see
  zygote_runtime.py) take every process it started when the run ends.

A zygote that dies or fails is replaced and the run tried once more. Where runs cannot be
forked (not Linux, no namespaces), ``make_executor`` says so in one line and returns the
kernel engine.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

from . import bwrap_box, kernel_box, processes, sandbox
from .config import Limits
from .errors import GradingError
from .execution import (OUTPUT_KEPT_BYTES, STOP_GRACE, TIMEOUT_ERROR, CellRun, ExecutionResult, PlannedCell,
                        kernel_environment, probe_handshake)
from .executor import NbclientExecutor
from .fork_child import Child, RunDied
from .zygote import WarmUnavailable, ZygoteClient, ZygoteFailure, shared_zygote

ENGINES = ("warm", "kernel")
# A kernel's address space once started (ipykernel, its 12 threads and their malloc arenas, torch), measured with
# torch 2.13: 1297 MiB. A forked run starts at about 650 MiB; it reserves the difference so that address_space_mb
# leaves a student the same room in both engines (a 1 GB string fails in both, as the hostile corpus expects).
KERNEL_ADDRESS_SPACE_MB = 1300


class WarmExecutor:
    """The warm engine: a zygote per process (or the one ``client`` names), a forked child per run."""

    def __init__(self, client: ZygoteClient | None = None, probe_output_bytes: int = OUTPUT_KEPT_BYTES,
                 max_message_bytes: int = 16 * 2**20):
        self.client = client
        self.probe_output_bytes = probe_output_bytes
        self.max_message_bytes = max_message_bytes

    def execute(self, cells: list[PlannedCell], limits: Limits, workdir: Path) -> ExecutionResult:
        isolation = sandbox.isolation(limits.sandbox)  # raises when the sandbox is required but missing
        for attempt in (1, 2):
            client = self.client
            zygote = None
            if client is None:
                zygote = shared_zygote(isolation)
                client = zygote.client
            try:
                return Run(self, client, isolation, cells, limits, workdir).execute()
            except ZygoteFailure as problem:
                if attempt == 2:
                    raise GradingError(f"the warm engine failed twice ({problem.one_line()})") from None
                if zygote is not None:
                    shared_zygote(isolation, replace=zygote)
                elif self.client is not None:
                    self.client = None  # the pool's zygote is gone: retry on a zygote of this process
        raise AssertionError("unreachable")


class Run:
    """One execution of the planned cells: a child per start, the kernel engine's policy."""

    def __init__(self, engine: WarmExecutor, client: ZygoteClient, isolation: sandbox.Isolation,
                 cells: list[PlannedCell], limits: Limits, workdir: Path):
        self.engine, self.client, self.isolation = engine, client, isolation
        self.cells, self.limits, self.workdir = cells, limits, workdir
        self.runs = [CellRun() for _ in cells]
        self.result = ExecutionResult(self.runs, secret=secrets.token_hex(32),
                                      isolation=isolation.describe().replace("kernel running", "run forked from a "
                                                                             "warm zygote, running"))
        self.child: Child | None = None
        self.generation = 0  # children started so far: the probe numbers calls from it (see probe_handshake)
        self.uid: kernel_box.UidLease | None = None
        self.started = 0.0

    def execute(self) -> ExecutionResult:
        self.started = time.monotonic()
        try:
            self.start_child()
            self.run_cells()
        finally:
            self.stop_child()
            self.result.seconds = time.monotonic() - self.started
        return self.result

    # ---- children
    def settings(self) -> dict:
        limits = self.limits
        sandboxed = self.isolation.sandbox
        workdir = bwrap_box.BOX_WORKDIR if sandboxed else str(self.workdir)
        environment = kernel_environment(workdir, tmp="/tmp") if sandboxed else kernel_environment(workdir)
        settings = {
            "sandbox": sandboxed, "tmp_size_mb": limits.tmp_size_mb, "cwd": workdir, "environment": environment,
            "rlimits": {"address_space": limits.address_space_mb * 2**20,
                        "cpu_seconds": [limits.cpu_seconds, limits.cpu_seconds_hard],
                        "file_size": limits.file_size_mb * 2**20, "open_files": limits.open_files,
                        "processes": limits.processes, "core": 0},
            "kernel_address_space_mb": KERNEL_ADDRESS_SPACE_MB,
            "probe_output_bytes": self.engine.probe_output_bytes, "max_message_bytes": self.engine.max_message_bytes,
            "files": 0, "argv": self.kernel_argv(),
        }
        if self.uid is not None:
            settings["uid"] = settings["gid"] = self.uid.uid
        return settings

    def kernel_argv(self) -> list[str]:
        """sys.argv as a kernel has it: the launcher, -f and its connection file (in the box, or in a folder of its
        own; the run has none, so the name is only shown)."""
        if self.isolation.sandbox:
            return [bwrap_box.BOX_LAUNCHER, "-f", bwrap_box.BOX_CONNECTION]
        return [str(bwrap_box.LAUNCHER), "-f", str(Path(tempfile.gettempdir()) / "torchgrade-kernel-warm" / "kernel.json")]

    def start_child(self) -> None:
        if self.isolation.drop_user and self.uid is None:
            self.uid = kernel_box.UidLease()
            if not self.isolation.sandbox:  # the run works in the host folder: give it to the run's uid
                for path in [self.workdir, *self.workdir.rglob("*")]:
                    os.chown(path, self.uid.uid, self.uid.gid)
        ctl, mon = self.client.spawn()
        # The run cuts its pieces by characters (up to 4 bytes each in UTF-8); the grader keeps the bytes' bound.
        self.child = Child(ctl, mon, max_frame=4 * self.engine.probe_output_bytes + 2**20)
        settings = self.settings()
        files = sorted(p for p in self.workdir.iterdir() if p.is_file()) if self.isolation.sandbox else []
        settings["files"] = len(files)
        self.child.send("S", json.dumps(settings))
        for path in files:
            self.child.send("F", path.name.encode() + b"\0" + path.read_bytes())
        self.child.send("K", probe_handshake(self.result.secret, self.generation))
        self.generation += 1
        try:
            frame = self.child.next_frame(time.monotonic() + self.limits.startup_timeout)
        except RunDied as died:
            raise ZygoteFailure(f"a forked run died before it was ready (status {died.code})") from None
        if frame is None or frame[0] != "R":
            raise ZygoteFailure("a forked run did not become ready")

    def stop_child(self) -> None:
        child, self.child = self.child, None
        if child is not None:
            child.stop()
        uid, self.uid = self.uid, None
        if uid is not None:  # the namespace took every process; this only catches what escaped it
            processes.kill_until_gone(lambda: processes.processes_of_uid(uid.uid))
            uid.release()

    # ---- the cells (the same policy as NbclientExecutor._run_cells)
    def run_cells(self) -> None:
        cells, limits, result = self.cells, self.limits, self.result
        index = 0
        folder = str(self.workdir.resolve())  # an error's text names it (scrubbed); once a run, not once a cell
        while index < len(cells):
            left = limits.notebook_timeout - (time.monotonic() - self.started)
            if left <= 0:
                result.events.append(f"the whole-notebook time budget of {limits.notebook_timeout:g} s ran out; "
                                     "the remaining cells were not run")
                return
            own = limits.startup_timeout if cells[index].role == "prelude" else limits.cell_timeout
            timeout = max(1, int(min(own, left)))
            run = self.runs[index]
            try:
                done = self.execute_cell(index, timeout)
            except RunDied as died:
                run.status = "kernel_died"
                result.events.append(self.death_message(cells[index], died.code))
                index = self.resume_after_death(index)
                continue
            if done is None:
                run.status, run.error_name, run.error_value = "timeout", TIMEOUT_ERROR, f"stopped after {timeout} s"
                name = NbclientExecutor._cell_name(cells[index])
                result.events.append(f"{name} ran longer than {timeout} s and was interrupted")
                if not self.interrupt(index):
                    result.events.append(f"{name} did not stop when interrupted, so its kernel was replaced")
                    index = self.resume_after_death(index)
                    continue
            else:
                run.record_error(done.get("error_name", ""), done.get("error_value", ""), folder)
                run.status = "error" if run.error_name else "ok"
                run.truncated = run.truncated or bool(done.get("truncated"))  # the grader's own bound, or the run's
                NbclientExecutor._explain_error(cells[index], run, limits, result)
                if done.get("big") and NbclientExecutor._message_dropped(cells[index], run, result,
                                                                         self.engine.max_message_bytes):
                    continue
            index += 1

    def execute_cell(self, index: int, timeout: float) -> dict | None:
        """Run one cell; its "done" frame, or None when it timed out (RunDied when the child died)."""
        cell, run = self.cells[index], self.runs[index]
        run.forget()
        self.child.send("C", json.dumps({"index": index, "source": cell.source, "keep_stdout": cell.keep_stdout}))
        return self.wait_done(index, time.monotonic() + timeout)

    def wait_done(self, index: int, deadline: float) -> dict | None:
        """The cell's "done" frame; None at the deadline, which holds however many frames arrive before it."""
        run, keep = self.runs[index], self.cells[index].keep_stdout
        while time.monotonic() < deadline:
            frame = self.child.next_frame(deadline)
            if frame is None:
                return None
            kind, payload = frame
            if kind == "O" and keep:
                run.keep(payload.decode("utf-8", "replace"), self.engine.probe_output_bytes)
            elif kind == "D":
                try:
                    done = json.loads(payload)
                except (ValueError, RecursionError):  # any bytes: a JSON nested past Python's stack, too
                    done = {}
                if isinstance(done, dict) and done.get("index") == index:
                    return done
        return None

    def interrupt(self, index: int) -> bool:
        """SIGINT to the runner; True when it finished the cell within the grace period (it stays in use)."""
        self.child.order(b"interrupt")
        try:
            return self.wait_done(index, time.monotonic() + STOP_GRACE) is not None
        except RunDied:
            return False

    def resume_after_death(self, index: int) -> int:
        """A fresh child, the prelude again, and on at the next resumable cell (as the kernel engine does)."""
        self.stop_child()
        cells, limits = self.cells, self.limits
        following = next((i for i in range(index + 1, len(cells)) if cells[i].resumable), len(cells))
        if following >= len(cells) or limits.notebook_timeout - (time.monotonic() - self.started) <= 0:
            return len(cells) if following >= len(cells) else following
        self.start_child()
        prelude = next((i for i, c in enumerate(cells) if c.role == "prelude"), None)
        if prelude is not None:
            try:
                self.execute_cell(prelude, max(1, int(limits.startup_timeout)))
            except RunDied:
                self.result.events.append("the fresh kernel died at once as well; the remaining cells were not run")
                return len(cells)
        self.result.events.append(f"a fresh kernel was started; grading resumed at "
                                  f"{NbclientExecutor._cell_name(cells[following])}")
        return following

    def death_message(self, cell: PlannedCell, code: int | None) -> str:
        why = sandbox.describe_exit_code(code, True, self.limits) if code is not None else ""
        return (f"the Python kernel died while running {NbclientExecutor._cell_name(cell)}"
                + (f": {why}" if why else " (a crash, os._exit, or a resource limit)"))


# ----------------------------------------------------------------------------- choosing an engine

def warm_problem() -> str | None:
    """Why runs cannot be forked here, or None."""
    if not sys.platform.startswith("linux"):
        return f"forked runs need Linux namespaces; this is {sys.platform}"
    if not hasattr(os, "fork") or not hasattr(os, "pidfd_open"):
        return "this Python cannot fork runs (os.fork and os.pidfd_open are needed)"
    return None


class FallbackExecutor:
    """The warm engine, until the zygote finds it cannot isolate runs here: then the kernel engine, said once."""

    def __init__(self, warm: WarmExecutor):
        self.warm, self.kernel = warm, None

    def execute(self, cells, limits, workdir):
        if self.kernel is None:
            try:
                return self.warm.execute(cells, limits, workdir)
            except WarmUnavailable as problem:
                say_fallback(problem.one_line())
                self.kernel = NbclientExecutor()
        return self.kernel.execute(cells, limits, workdir)


_said: set[str] = set()


def say_fallback(reason: str) -> None:
    """One line on stderr, once per process."""
    if reason not in _said:
        _said.add(reason)
        print(f"torchgrade: {reason}; using --engine kernel", file=sys.stderr, flush=True)


def make_executor(engine: str, client: ZygoteClient | None = None):
    """The executor for ``engine`` (warm | kernel); warm falls back to kernel where it cannot work, in one line."""
    if engine == "kernel":
        return NbclientExecutor()
    problem = warm_problem()
    if problem:
        say_fallback(f"the warm engine is unavailable ({problem})")
        return NbclientExecutor()
    return FallbackExecutor(WarmExecutor(client))
