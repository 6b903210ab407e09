"""The grader's side of the warm engine's zygote: start it, reach it, replace it.

A ``Zygote`` is one long-lived process that has imported torch and IPython and forks a
run per request (``zygote_runtime.py`` is what runs inside). With the sandbox it lives in
its own bubblewrap box, kept with exactly the capabilities it needs to give each run new
namespaces and a uid of its own (CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID, CAP_SETPCAP,
CAP_KILL); every run drops all of them before student code exists. The zygote listens on
a Unix socket in a folder only the grader's user can enter; any process of the grader
(a batch worker, a Dask worker's task) reaches it with a ``ZygoteClient`` and that path.

The zygote is started from a thread of its own that lives as long as it does: bwrap's
``--die-with-parent`` follows the thread that started it, and a pool thread that ends
would take the zygote along.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import bwrap_box, sandbox, zygote_io
from .errors import GradingError

RUNTIME = Path(__file__).with_name("zygote_runtime.py")
BOX_RUNTIME = f"{bwrap_box.BOX_RUN}/zygote_runtime.py"
RUNTIME_FILES = tuple(RUNTIME.with_name(name) for name in  # bound side by side
                      (RUNTIME.name, "zygote_io.py", "run_lockdown.py", "run_namespaces.py", "hugepages.py",
                       *zygote_io.PROBE_FILES))
CAPABILITIES = ("CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_KILL")
ZYGOTE_TMP_MB = 16


class ZygoteFailure(GradingError):
    """The zygote is gone or misbehaves: replace it and retry the run once."""

    label = "the warm engine failed"


class WarmUnavailable(GradingError):
    """Forking runs cannot work here (no fork, no namespaces): the kernel engine takes over."""

    label = "the warm engine is unavailable"


@dataclass(frozen=True)
class ZygoteClient:
    """How any process of the grader asks a zygote for a run (picklable: just the socket's path)."""

    address: str
    sandboxed: bool

    def spawn(self, timeout: float = 15.0) -> tuple[socket.socket, socket.socket]:
        """A new run: (ctl, mon), the grader's ends of its two sockets. Raises ZygoteFailure."""
        ctl, ctl_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        mon, mon_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as line:
                line.settimeout(timeout)
                line.connect(self.address)
                socket.send_fds(line, [b'{"op": "spawn"}'], [ctl_child.fileno(), mon_child.fileno()])
                answer = json.loads(line.recv(4096).decode() or "{}")
            if not isinstance(answer.get("run"), int):
                raise ZygoteFailure(f"the zygote answered {answer!r} instead of starting a run")
        except (OSError, ValueError) as problem:
            ctl.close()
            mon.close()
            raise ZygoteFailure(f"the zygote could not start a run ({problem})") from None
        finally:
            ctl_child.close()
            mon_child.close()
        return ctl, mon

    def ping(self, timeout: float = 5.0) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as line:
                line.settimeout(timeout)
                line.connect(self.address)
                line.send(b'{"op": "ping"}')
                return json.loads(line.recv(256).decode() or "{}") == {"pong": True}
        except (OSError, ValueError):
            return False


SOCKET_PATH_MAX = 107  # a Unix socket's path, in bytes (sun_path holds 108 with its NUL)


def socket_folder(parent: str | None) -> str | None:
    """Where the zygote's folder goes: ``parent`` (a Dask worker's own folder, which Dask removes when the worker
    died without cleaning up), unless the socket's path would be too long there; None: the system's temporary
    folder."""
    room = len(os.fsencode(parent or "")) + len("/torchgrade-zygote-12345678/zygote.sock")
    return parent if parent and os.path.isdir(parent) and room <= SOCKET_PATH_MAX else None


class Zygote:
    """One zygote process, in the sandbox when ``isolation.sandbox``; ``close()`` kills it and all its runs."""

    def __init__(self, isolation: sandbox.Isolation, startup_timeout: float = 120.0,
                 spawned: threading.Event | None = None, lean: bool = False, parent: str | None = None):
        self.isolation = isolation
        self.lean = lean  # see zygote_runtime.warm: for one notebook's two runs, ready a second sooner
        self.spawned = spawned or threading.Event()  # set once its process exists (or could not be started)
        self.dir = Path(tempfile.mkdtemp(prefix="torchgrade-zygote-", dir=socket_folder(parent)))
        os.chmod(self.dir, 0o700)
        self.address = str(self.dir / "zygote.sock")
        self.process: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._started = threading.Event()
        self._problem: BaseException | None = None
        self._keeper = threading.Thread(target=self._keep, args=(startup_timeout,), name="torchgrade-zygote",
                                        daemon=True)
        self._keeper.start()
        self._started.wait()
        if self._problem is not None:
            self.close()
            raise self._problem

    @property
    def client(self) -> ZygoteClient:
        return ZygoteClient(self.address, self.isolation.sandbox)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None and self.client.ping()

    def _keep(self, startup_timeout: float) -> None:
        try:
            self._start(startup_timeout)
        except BaseException as problem:  # noqa: BLE001 - handed to the constructor's thread
            self._problem = problem
        finally:
            self.spawned.set()
            self._started.set()
        self._stop.wait()

    def _command(self, listener_fd: int, info_fd: int | None, handover: "bwrap_box.HandOver") -> list[str]:
        lean = ["lean"] if self.lean else []
        if not self.isolation.sandbox:
            return [sys.executable, "-I", str(RUNTIME), str(listener_fd), "off"] + lean
        from .execution import kernel_environment

        # The runtime arrives beside the launcher through a descriptor (no host path in the box), and the zygote
        # keeps the capabilities it needs to isolate each run; every run drops them.
        return bwrap_box.sandbox_command(
            self.isolation.bwrap, inner=[sys.executable, "-I", BOX_RUNTIME, str(listener_fd), "sandbox"] + lean,
            workdir_files=[], connection=None, tmp_size_mb=ZYGOTE_TMP_MB,
            environment=kernel_environment(bwrap_box.BOX_WORKDIR, tmp="/tmp"), root=os.geteuid() == 0,
            info_fd=info_fd, handover=handover,
            run_files={f"{bwrap_box.BOX_RUN}/{path.name}": path.read_bytes() for path in RUNTIME_FILES},
            capabilities=tuple(CAPABILITIES))

    def _start(self, startup_timeout: float) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        listener.bind(self.address)
        listener.listen(64)
        info_read, info_write = os.pipe() if self.isolation.sandbox else (None, None)
        from .execution import kernel_environment

        environment = {"PATH": bwrap_box.SAFE_PATH} if self.isolation.sandbox else kernel_environment(self.dir)
        handover = bwrap_box.HandOver()
        command = self._command(listener.fileno(), info_write, handover)
        fds = (listener.fileno(),) + ((info_write,) if info_write is not None else ()) + tuple(handover.fds)
        log = open(self.dir / "zygote.log", "wb")  # the zygote's own errors (never a student's: runs drop theirs)
        try:
            self.process = subprocess.Popen(command, env=environment,
                                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=log, pass_fds=fds, cwd=self.dir,
                                            start_new_session=True)
        finally:
            self.spawned.set()
            log.close()
            listener.close()
            handover.close()
            if info_write is not None:
                os.close(info_write)
        try:
            line = self._first_line(startup_timeout)
        finally:
            if info_read is not None:
                os.close(info_read)
        if line == "ready":
            return
        if line.startswith("no-namespaces"):
            raise WarmUnavailable(f"runs cannot get namespaces of their own here ({line.partition(':')[2].strip()})")
        tail = (self.dir / "zygote.log").read_text(errors="replace").strip().splitlines()[-1:]
        raise ZygoteFailure(f"the zygote did not start ({line or 'no answer'}{': ' + tail[0] if tail else ''})")

    def _first_line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        data = b""
        out = self.process.stdout
        while time.monotonic() < deadline and not data.endswith(b"\n"):
            ready, _, _ = select.select([out], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(out.fileno(), 4096)
            if not chunk:
                break
            data += chunk
        return data.decode(errors="replace").strip()

    def close(self) -> None:
        """Kill the zygote and every run it started (they live in its session and, sandboxed, its PID namespace)."""
        process, self.process = self.process, None
        if process is not None:
            try:
                os.killpg(process.pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            if process.stdout:
                process.stdout.close()
        self._stop.set()
        shutil.rmtree(self.dir, ignore_errors=True)


_shared: dict[str, Zygote] = {}
_shared_lock = threading.Lock()


def shared_zygote(isolation: sandbox.Isolation, replace: Zygote | None = None,
                  spawned: threading.Event | None = None, lean: bool = False) -> Zygote:
    """This process's zygote for an isolation (started on first use; replaced when ``replace`` is it)."""
    key = repr(isolation)
    with _shared_lock:
        current = _shared.get(key)
        if current is not None and current is replace:
            current.close()
            current = None
        if current is None:
            if not _shared:
                atexit.register(close_shared)
            current = _shared[key] = Zygote(isolation, spawned=spawned, lean=lean)
        return current


def start_shared_soon(sandbox_mode: str) -> None:
    """Start this process's zygote in a thread of its own (one notebook: while the grader imports torch, instead
    of after). Whatever goes wrong is left for the run itself to meet and report (it calls shared_zygote again).

    Returns once the zygote's process exists: importing torch holds the GIL for seconds (libtorch's initialisers),
    which would stall the thread before it got that far."""
    spawned = threading.Event()

    def start() -> None:
        try:
            shared_zygote(sandbox.isolation(sandbox_mode), spawned=spawned, lean=True)
        except GradingError:
            pass
        finally:
            spawned.set()

    if sys.platform.startswith("linux") and hasattr(os, "pidfd_open"):
        threading.Thread(target=start, name="torchgrade-zygote-soon", daemon=True).start()
        spawned.wait(10)


def close_shared() -> None:
    with _shared_lock:
        for zygote in _shared.values():
            zygote.close()
        _shared.clear()
