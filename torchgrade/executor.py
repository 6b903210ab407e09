"""Stage 4: execute an instrumented notebook in a fresh kernel, behind one small interface.

``Executor.execute(cells, limits, workdir)`` takes planned cells and returns, per cell,
its status, the stdout it printed and the error it raised. The default engine is
nbclient driving an ipykernel; another engine only has to honour the same interface.

Policy (why it is written this way):
- Each cell gets ``min(cell_timeout, time left of the notebook budget)``; a timed-out
  cell is interrupted and execution goes on, so later tasks are still graded.
- A dead kernel is replaced by a fresh one, the prelude is run again and execution
  resumes at the next resumable cell (a grader-owned GIVEN cell), so one crash costs
  only the tasks it hit.
- Only what grading needs is kept from outputs (stdout of probe cells, bounded), and
  ZMQ's MAXMSGSIZE bounds each incoming message, so a giant print cannot exhaust
  the grader's memory.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import nbformat
import zmq
import zmq.asyncio
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from .config import Limits
from .errors import GradingError

LAUNCHER = Path(__file__).with_name("kernel_launcher.py")
TIMEOUT_ERROR = "CellTimeoutError"
KEPT_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT")
PINNED_THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class PlannedCell:
    source: str
    role: str  # prelude | given | bridge | student | snapshot | marker
    task: int = 0
    position: int = 0  # cell position in the submitted notebook (student cells)
    resumable: bool = False  # after a kernel death, execution may restart here
    keep_stdout: bool = False


@dataclass
class CellRun:
    status: str = "not_run"  # ok | error | timeout | kernel_died | not_run
    stdout: str = ""
    error_name: str = ""
    error_value: str = ""
    truncated: bool = False


@dataclass
class ExecutionResult:
    cells: list[CellRun]
    events: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Executor(Protocol):
    def execute(self, cells: list[PlannedCell], limits: Limits, workdir: Path) -> ExecutionResult: ...


class GraderKernelManager(AsyncKernelManager):
    """An ipykernel started through our launcher, in isolated mode, with limits applied."""

    def format_kernel_cmd(self, extra_arguments=None):
        return [sys.executable, "-I", str(LAUNCHER), "-f", self.connection_file]


def kernel_environment(workdir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """An allow-list: nothing of the grader's environment (tokens, secrets, GITHUB_*) reaches the kernel."""
    env = {key: os.environ[key] for key in KEPT_ENVIRONMENT if key in os.environ}
    env.update(PINNED_THREADS)
    env.update({"HOME": str(workdir), "TMPDIR": str(workdir), "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1",
                "JUPYTER_PLATFORM_DIRS": "1", "IPYTHONDIR": str(workdir / ".ipython")})
    env.update(extra or {})
    return env


class _BoundedClient(NotebookClient):
    """Keeps only stdout (bounded) and nothing else from the kernel's output messages."""

    def __init__(self, *args, plan: list[PlannedCell], runs: list[CellRun], max_output_bytes: int, **kwargs):
        super().__init__(*args, **kwargs)
        self._plan, self._runs, self._max_output = plan, runs, max_output_bytes
        self.replies: dict[int, dict] = {}
        self.on_cell_executed = self._remember_reply

    def _remember_reply(self, cell, cell_index, execute_reply):
        self.replies[cell_index] = execute_reply or {}

    def output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        run = self._runs[cell_index]
        if msg.get("msg_type") == "stream" and content.get("name") == "stdout" and self._plan[cell_index].keep_stdout:
            room = self._max_output - len(run.stdout)
            text = content.get("text", "")
            if len(text) > room:
                run.truncated = True
            run.stdout += text[: max(room, 0)]
        elif msg.get("msg_type") == "error" and not run.error_name:
            run.error_name = str(content.get("ename", ""))[:200]
            run.error_value = str(content.get("evalue", ""))[:500]
        return None


class NbclientExecutor:
    """The default engine: nbclient + ipykernel, a fresh kernel per execution."""

    def __init__(self, limits_for_kernel: dict | None = None, probe_output_bytes: int = 64 * 2**20):
        self.limits_for_kernel = limits_for_kernel or {"core": 0}
        self.probe_output_bytes = probe_output_bytes

    def execute(self, cells: list[PlannedCell], limits: Limits, workdir: Path) -> ExecutionResult:
        return asyncio.run(self._execute(cells, limits, workdir))

    async def _execute(self, cells: list[PlannedCell], limits: Limits, workdir: Path) -> ExecutionResult:
        import json

        runs = [CellRun() for _ in cells]
        result = ExecutionResult(runs)
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c.source) for c in cells])
        context = zmq.asyncio.Context()
        # MAXMSGSIZE applies to every socket made from this context: oversized messages are dropped.
        context.setsockopt(zmq.MAXMSGSIZE, self.probe_output_bytes + 2**20)
        env = kernel_environment(workdir, {"TORCHGRADE_LIMITS": json.dumps(self.limits_for_kernel)})
        manager = GraderKernelManager(kernel_name="python3", context=context)
        client = _BoundedClient(
            notebook, km=manager, plan=cells, runs=runs, max_output_bytes=self.probe_output_bytes,
            allow_errors=True, interrupt_on_timeout=True, startup_timeout=int(limits.startup_timeout),
            error_on_timeout={"ename": TIMEOUT_ERROR, "evalue": "", "traceback": []},
            iopub_timeout=4, shell_timeout_interval=1, store_widget_state=False,
        )
        started = time.monotonic()
        try:
            await self._start(client, env, workdir)
            await self._run_cells(client, cells, runs, limits, started, result, env, workdir)
        finally:
            await self._stop(client)
            context.destroy(linger=0)
            result.seconds = time.monotonic() - started
        return result

    async def _start(self, client: NotebookClient, env: dict, workdir: Path) -> None:
        try:
            # The kernel's own stdout/stderr (startup warnings, C-level prints) must not reach the report.
            await client.async_start_new_kernel(env=env, cwd=str(workdir), stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            await client.async_start_new_kernel_client()
        except Exception as problem:
            raise GradingError(f"the Python kernel could not be started ({type(problem).__name__}: {problem})") from None

    async def _stop(self, client: NotebookClient) -> None:
        manager = client.km
        pgid = getattr(getattr(manager, "provisioner", None), "pgid", None)
        try:
            if client.kc is not None:
                client.kc.stop_channels()
            if manager is not None and manager.has_kernel:
                await manager.shutdown_kernel(now=True)
        except Exception:
            pass
        if pgid:  # whatever the kernel started in its process group goes too
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    async def _run_cells(self, client, cells, runs, limits, started, result, env, workdir) -> None:
        index, consecutive_timeouts = 0, 0
        while index < len(cells):
            left = limits.notebook_timeout - (time.monotonic() - started)
            if left <= 0:
                result.events.append(f"the whole-notebook time budget of {limits.notebook_timeout:g} s ran out; "
                                     "the remaining cells were not run")
                return
            client.timeout = max(1, int(min(limits.cell_timeout, left)))
            run = runs[index]
            try:
                await client.async_execute_cell(client.nb.cells[index], index, store_history=False)
            except DeadKernelError:
                run.status = "kernel_died"
                result.events.append(self._death_message(cells[index]))
                index = await self._resume_after_death(client, cells, runs, index, env, workdir, result)
                consecutive_timeouts = 0
                continue
            if self._timed_out(client, index):
                run.status, run.error_name = "timeout", TIMEOUT_ERROR
                run.error_value = f"stopped after {client.timeout} s"
                consecutive_timeouts += 1
                result.events.append(f"{self._cell_name(cells[index])} ran longer than {client.timeout} s and was interrupted")
                if consecutive_timeouts >= 2:
                    result.events.append("the kernel stopped responding after a timeout; the remaining cells were not run")
                    return
            else:
                consecutive_timeouts = 0
                run.status = "error" if run.error_name else "ok"
            index += 1

    @staticmethod
    def _timed_out(client, index: int) -> bool:
        reply = client.replies.get(index) or {}
        return reply.get("content", {}).get("ename") == TIMEOUT_ERROR

    async def _resume_after_death(self, client, cells, runs, index, env, workdir, result) -> int:
        """Start a new kernel, rerun the prelude, and continue at the next resumable cell."""
        await self._stop(client)
        client.km = GraderKernelManager(kernel_name="python3", context=client.km.context)
        client.kc = None
        await self._start(client, env, workdir)
        prelude = next((i for i, c in enumerate(cells) if c.role == "prelude"), None)
        if prelude is not None:
            await client.async_execute_cell(client.nb.cells[prelude], prelude, store_history=False)
        following = next((i for i in range(index + 1, len(cells)) if cells[i].resumable), len(cells))
        if following < len(cells):
            result.events.append(f"a fresh kernel was started; grading resumed at {self._cell_name(cells[following])}")
        return following

    @staticmethod
    def _cell_name(cell: PlannedCell) -> str:
        if cell.role == "student":
            return f"cell {cell.position} (task {cell.task})"
        return f"the grader's {cell.role} cell before task {cell.task}" if cell.role != "snapshot" else \
            f"the grader's snapshot after task {cell.task}"

    def _death_message(self, cell: PlannedCell) -> str:
        return (f"the Python kernel died while running {self._cell_name(cell)} "
                "(a crash, os._exit, or the memory limit)")
