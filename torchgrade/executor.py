"""Stage 4: execute an instrumented notebook in a fresh kernel, behind one small interface.

``Executor.execute(cells, limits, workdir)`` (execution.py, with what both engines share) takes planned cells and
returns, per cell, its status, the stdout it printed and the error it raised. This is the reference engine: nbclient
driving an ipykernel; the warm engine (fork_executor.py) honours the same interface.

Policy (why it is written this way):
- Each cell gets ``min(cell_timeout, time left of the notebook budget)``; a timed-out
  cell is interrupted and execution goes on, so later tasks are still graded.
- A dead kernel is replaced by a fresh one, the prelude is run again and execution
  resumes at the next resumable cell (a grader-owned GIVEN cell), so one crash costs
  only the tasks it hit.
- A timed-out cell that ignores the interrupt (it catches KeyboardInterrupt, or sits in
  C code) leaves a busy kernel: it is killed and replaced like a dead one.
- Only what grading needs is kept from outputs (stdout of probe cells, bounded), and
  ZMQ's MAXMSGSIZE bounds each incoming message, so a giant print cannot exhaust
  the grader's memory.
- Every kernel starts inside a ``kernel_box.KernelBox``: bubblewrap when it works here, an
  unprivileged uid when the grader is root, resource limits from ``config.limits``, an
  allow-listed environment, and a cleanup that leaves no process behind.
- Each execution has a fresh secret, handed to the kernel's launcher on stdin before any
  student code exists; the probe signs every snapshot with it (see ``snapshot.py``).
  With it goes the kernel's generation (0, then 1 after the first replacement, ...), from
  which the probe numbers its calls and tokens, so a replacement kernel's calls never
  take the numbers of its predecessor's (see ``probe_handshake``).
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import signal
import time
from pathlib import Path

import nbformat
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionComplete, DeadKernelError

from . import sandbox
from .config import Limits
from .errors import GradingError
from .kernel_box import KernelBox
from .kernel_session import tolerant
from .bwrap_box import BOX_WORKDIR
from .execution import (INTERRUPT_GRACE, IOPUB_TIMEOUT, OUTPUT_KEPT_BYTES, TIMEOUT_ERROR, CellRun, ExecutionResult,
                        PlannedCell, kernel_environment, probe_handshake)

RECEIVE_QUEUE = 32  # messages waiting per socket: with max_message_bytes, a bound on what the kernel can make us hold


class GraderKernelClient(AsyncKernelClient):
    """A kernel client that notices when its IOPub connection was dropped, and makes a new one.

    A message over MAXMSGSIZE makes libzmq drop the connection it came on, for good (no
    reconnect). On IOPub that would silence every later cell, snapshots included; so between
    cells the executor asks ``restore_iopub``, which replaces a dropped connection.
    """

    _iopub_monitor = None

    def connect_iopub(self, identity=None):
        socket = super().connect_iopub(identity=identity)
        self._iopub_monitor = socket.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED)
        return socket

    async def _events(self, wait: float) -> list[int]:
        events = []
        while True:
            try:
                frames = await asyncio.wait_for(self._iopub_monitor.recv_multipart(), wait)
            except (asyncio.TimeoutError, zmq.ZMQError):
                return events
            events.append(parse_monitor_message(frames)["event"])
            wait = 0.01

    async def restore_iopub(self) -> bool:
        """True when the IOPub connection had been dropped and was replaced."""
        if self._iopub_monitor is None or zmq.EVENT_DISCONNECTED not in await self._events(0.01):
            return False
        try:
            self._iopub_channel.socket.disable_monitor()
        except zmq.ZMQError:
            pass
        self._iopub_monitor.close(linger=0)
        self._iopub_channel.close()
        self._iopub_channel = None
        self.iopub_channel  # noqa: B018 - the property connects a new socket (and its monitor)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and zmq.EVENT_HANDSHAKE_SUCCEEDED not in await self._events(0.1):
            pass
        await asyncio.sleep(0.05)  # and let the subscription reach the kernel
        return True


class GraderKernelManager(AsyncKernelManager):
    """An ipykernel started through our launcher, inside the KernelBox that isolates and cleans it up."""

    box: KernelBox | None = None

    def format_kernel_cmd(self, extra_arguments=None):
        return self.box.command()

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        kw["pass_fds"] = tuple(kw.get("pass_fds", ())) + self.box.pass_fds()  # bwrap's --args, --info-fd, data
        await super()._async_launch_kernel(kernel_cmd, **kw)
        ip = self.box.after_launch(self.provisioner.process)
        if ip:  # the sandbox's sockets, reached through /proc/<its PID 1>/root
            self.ip = ip

    def client(self, **kwargs):
        kwargs.setdefault("context", self.context)  # our context, whose socket options bound every message
        self.client_factory = GraderKernelClient
        client = super().client(**kwargs)
        tolerant(client.session)  # its own copy of the manager's session: the one its channels read with
        return client

    async def _async_signal_kernel(self, signum):
        if self.box is not None and self.box.sandboxed and signum == signal.SIGINT:
            self.box.interrupt()  # the process group holds bwrap, which SIGINT would kill
            return
        await super()._async_signal_kernel(signum)


def _code_cell(source: str, number: int) -> nbformat.NotebookNode:
    """A code cell without nbformat's per-cell schema validation (the cells are the grader's own plan)."""
    return nbformat.NotebookNode(id=f"cell-{number}", cell_type="code", execution_count=None,
                                 metadata=nbformat.NotebookNode(), outputs=[], source=source)


class _BoundedClient(NotebookClient):
    """Keeps only stdout (bounded) and nothing else from the kernel's output messages."""

    def __init__(self, *args, plan: list[PlannedCell], runs: list[CellRun], max_output_bytes: int,
                 workdir: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self._plan, self._runs, self._max_output, self._workdir = plan, runs, max_output_bytes, workdir
        self.replies: dict[int, dict] = {}
        self.on_cell_executed = self._remember_reply

    def _remember_reply(self, cell, cell_index, execute_reply):
        self.replies[cell_index] = execute_reply or {}

    def process_message(self, msg, cell, cell_index):
        """nbclient's, except that a message it cannot handle (a status without its state, a display whose transient
        part is not an object: the kernel signs what it likes) is ignored, not raised in the grader."""
        try:
            return super().process_message(msg, cell, cell_index)
        except CellExecutionComplete:
            raise
        except Exception:  # noqa: BLE001
            return None

    async def _check_raise_for_error(self, cell, cell_index, exec_reply):
        if not isinstance((exec_reply or {}).get("content"), dict) or "status" not in exec_reply["content"]:
            return None  # a reply forged without its status: nothing to raise (errors are allowed anyway)
        return await super()._check_raise_for_error(cell, cell_index, exec_reply)

    def error_from_reply(self, cell_index: int) -> None:
        """The cell's error from its execute_reply, when IOPub lost it: a cell that raised never reads as ok."""
        reply = (self.replies.get(cell_index) or {}).get("content", {})
        run = self._runs[cell_index]
        if not run.error_name and reply.get("status") == "error":
            run.record_error(reply.get("ename", ""), reply.get("evalue", ""), self._workdir)

    def output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        run = self._runs[cell_index]
        if msg.get("msg_type") == "stream" and content.get("name") == "stdout" and self._plan[cell_index].keep_stdout:
            text = content.get("text", "")
            run.keep(text if isinstance(text, str) else "", self._max_output)
        elif msg.get("msg_type") == "error" and not run.error_name:
            run.record_error(content.get("ename", ""), content.get("evalue", ""), self._workdir)
        return None


class NbclientExecutor:
    """The default engine: nbclient + ipykernel, a fresh isolated kernel per execution."""

    def __init__(self, probe_output_bytes: int = OUTPUT_KEPT_BYTES, max_message_bytes: int = 16 * 2**20):
        self.probe_output_bytes = probe_output_bytes  # all snapshot output kept for one cell
        self.max_message_bytes = max_message_bytes  # any one message from the kernel (the probe sends 1 MiB pieces)

    def execute(self, cells: list[PlannedCell], limits: Limits, workdir: Path) -> ExecutionResult:
        return asyncio.run(self._execute(cells, limits, workdir))

    async def _execute(self, cells: list[PlannedCell], limits: Limits, workdir: Path) -> ExecutionResult:
        started = time.monotonic()  # preparing the cells counts against the notebook's budget too
        isolation = sandbox.isolation(limits.sandbox)  # raises when the sandbox is required but missing
        runs = [CellRun() for _ in cells]
        result = ExecutionResult(runs, secret=secrets.token_hex(32), isolation=isolation.describe())
        notebook = nbformat.v4.new_notebook(cells=[_code_cell(c.source, n) for n, c in enumerate(cells)])
        context = zmq.asyncio.Context()
        # Every socket made from this context (the manager's and, through GraderKernelManager.client, the
        # client's): a message over MAXMSGSIZE is refused before it is read, and at most RCVHWM messages wait.
        context.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        context.setsockopt(zmq.RCVHWM, RECEIVE_QUEUE)
        if isolation.sandbox:
            environment = kernel_environment(BOX_WORKDIR, tmp="/tmp")
        else:
            environment = kernel_environment(workdir)

        generations = itertools.count()

        def new_manager() -> GraderKernelManager:
            box = KernelBox(isolation, limits, workdir, probe_handshake(result.secret, next(generations)), environment)
            transport, ip = box.transport()
            manager = GraderKernelManager(kernel_name="python3", context=context, transport=transport, ip=ip,
                                          connection_file=box.connection_file)
            manager.box = box
            return manager

        try:
            first = new_manager()
        except BaseException:
            context.destroy(linger=0)
            raise
        client = _BoundedClient(
            notebook, km=first, plan=cells, runs=runs, max_output_bytes=self.probe_output_bytes,
            workdir=str(workdir.resolve()),
            allow_errors=True, interrupt_on_timeout=True, startup_timeout=int(limits.startup_timeout),
            error_on_timeout={"ename": TIMEOUT_ERROR, "evalue": "", "traceback": []},
            iopub_timeout=IOPUB_TIMEOUT, shell_timeout_interval=1, store_widget_state=False,
        )
        client.new_manager = new_manager
        try:
            await self._start(client)
            await self._run_cells(client, cells, runs, limits, started, result)
        finally:
            await self._stop(client)
            context.destroy(linger=0)
            result.seconds = time.monotonic() - started
        return result

    async def _start(self, client: NotebookClient) -> None:
        box = client.km.box
        try:
            # The kernel's own stdout/stderr (startup warnings, C-level prints) must not reach the report.
            await client.async_start_new_kernel(**box.popen_arguments())
            await client.async_start_new_kernel_client()
        except GradingError:
            await self._stop(client)
            raise
        except Exception as problem:
            await self._stop(client)
            raise GradingError(f"the Python kernel could not be started ({type(problem).__name__}: {problem})") from None

    async def _stop(self, client: NotebookClient) -> None:
        """Kill the kernel and everything it started; then let jupyter_client forget it."""
        manager = client.km
        try:
            if client.kc is not None:
                client.kc.stop_channels()
        except Exception:
            pass
        if manager is not None and manager.box is not None:
            await asyncio.to_thread(manager.box.close)
        try:
            if manager is not None and manager.has_kernel:
                await manager.shutdown_kernel(now=True)
        except Exception:
            pass

    async def _run_cells(self, client, cells, runs, limits, started, result) -> None:
        index = 0
        while index < len(cells):
            left = limits.notebook_timeout - (time.monotonic() - started)
            if left <= 0:
                result.events.append(f"the whole-notebook time budget of {limits.notebook_timeout:g} s ran out; "
                                     "the remaining cells were not run")
                return
            # The prelude is the grader's (it imports torch, slow on a busy machine): it gets the startup timeout.
            own = limits.startup_timeout if cells[index].role == "prelude" else limits.cell_timeout
            client.timeout = max(1, int(min(own, left)))
            run = runs[index]
            if await client.kc.restore_iopub():
                result.events.append("the kernel sent a message larger than "
                                     f"{self.max_message_bytes // 2**20} MiB; it was dropped")
            try:
                await client.async_execute_cell(client.nb.cells[index], index, store_history=False)
            except DeadKernelError:
                run.status = "kernel_died"
                result.events.append(self._death_message(cells[index], client.km.box))
                index = await self._resume_after_death(client, cells, index, result, started, limits)
                continue
            if self._timed_out(client, index):
                run.status, run.error_name = "timeout", TIMEOUT_ERROR
                run.error_value = f"stopped after {client.timeout} s"
                result.events.append(f"{self._cell_name(cells[index])} ran longer than {client.timeout} s and was interrupted")
                if not await self._responsive(client):
                    result.events.append(f"{self._cell_name(cells[index])} did not stop when interrupted, "
                                         "so its kernel was replaced")
                    index = await self._resume_after_death(client, cells, index, result, started, limits)
                    continue
            else:
                # A giant message dropped the IOPub connection, and all the cell sent after it: its error is in the
                # reply; a snapshot is asked for again.
                dropped = await client.kc.restore_iopub()
                if dropped:
                    client.error_from_reply(index)
                run.status = "error" if run.error_name else "ok"
                self._explain_error(cells[index], run, limits, result)
                if dropped and self._message_dropped(cells[index], run, result, self.max_message_bytes):
                    continue
            index += 1

    @staticmethod
    def _message_dropped(cell: PlannedCell, run: CellRun, result: ExecutionResult, max_message_bytes: int) -> bool:
        """A message over the size bound was dropped (both engines): say so. True for a snapshot cell, whose
        output is then void and which is run again."""
        result.events.append(f"the kernel sent a message larger than {max_message_bytes // 2**20} MiB; it was dropped")
        if not cell.keep_stdout:
            return False
        run.forget()
        return True

    @staticmethod
    def _timed_out(client, index: int) -> bool:
        reply = client.replies.get(index) or {}
        return reply.get("content", {}).get("ename") == TIMEOUT_ERROR

    @staticmethod
    async def _responsive(client) -> bool:
        """After an interrupt: does the kernel answer on its shell channel again within the grace period?"""
        try:
            msg_id = client.kc.kernel_info()
            deadline = time.monotonic() + INTERRUPT_GRACE
            while time.monotonic() < deadline:
                reply = await client.kc.shell_channel.get_msg(timeout=max(0.05, deadline - time.monotonic()))
                if reply.get("parent_header", {}).get("msg_id") == msg_id:
                    return True
        except Exception:
            pass
        return False

    @staticmethod
    def _explain_error(cell: PlannedCell, run: CellRun, limits: Limits, result: ExecutionResult) -> None:
        """Errors caused by a limit get a sentence that names the limit."""
        if cell.role != "student" or run.status != "error":
            return
        text = f"{run.error_name}: {run.error_value}"
        name = NbclientExecutor._cell_name(cell)
        if run.error_name == "MemoryError" or "can't allocate memory" in text or "not enough memory" in text:
            result.events.append(f"{name} ran out of memory (the limit is {limits.address_space_mb} MiB per process)")
        elif "File too large" in text or "No space left on device" in text:
            result.events.append(f"{name} wrote too much to disk (files up to {limits.file_size_mb} MiB; "
                                 f"{limits.tmp_size_mb} MiB in all when sandboxed)")
        elif "Resource temporarily unavailable" in text or run.error_name == "BlockingIOError":
            result.events.append(f"{name} started too many processes or threads (the limit is {limits.processes})")

    async def _resume_after_death(self, client, cells, index, result, started, limits) -> int:
        """Start a new kernel, rerun the prelude, and continue at the next resumable cell."""
        await self._stop(client)
        following = next((i for i in range(index + 1, len(cells)) if cells[i].resumable), len(cells))
        if following >= len(cells) or limits.notebook_timeout - (time.monotonic() - started) <= 0:
            return len(cells) if following >= len(cells) else following
        client.km = client.new_manager()
        client.kc = None
        await self._start(client)
        prelude = next((i for i, c in enumerate(cells) if c.role == "prelude"), None)
        if prelude is not None:
            client.timeout = max(1, int(limits.startup_timeout))
            try:
                await client.async_execute_cell(client.nb.cells[prelude], prelude, store_history=False)
            except DeadKernelError:
                result.events.append("the fresh kernel died at once as well; the remaining cells were not run")
                return len(cells)
        result.events.append(f"a fresh kernel was started; grading resumed at {self._cell_name(cells[following])}")
        return following

    @staticmethod
    def _cell_name(cell: PlannedCell) -> str:
        if cell.role == "student":
            return f"cell {cell.position} (task {cell.task})"
        return f"the grader's {cell.role} cell before task {cell.task}" if cell.role != "snapshot" else \
            f"the grader's snapshot after task {cell.task}"

    def _death_message(self, cell: PlannedCell, box: KernelBox | None) -> str:
        why = box.describe_exit() if box is not None else ""
        return (f"the Python kernel died while running {self._cell_name(cell)}"
                + (f": {why}" if why else " (a crash, os._exit, or a resource limit)"))
