"""Isolation of student kernels: a bubblewrap sandbox, an unprivileged user, no orphans.

The executor asks ``kernel_box.KernelBox`` for each kernel start; this module decides the
isolation (``isolation``), and ``bwrap_box.py`` builds the bubblewrap command line. A box decides how the
kernel is launched and cleans up everything it started, whatever the student did (it
finds the processes with ``processes.py``).

What a box gives, from strongest to weakest (see docs/threat_model.md):

- **Sandbox** (Linux with bubblewrap, ``limits.sandbox: auto|require``): the kernel runs
  in new PID, network, IPC, UTS and mount namespaces. It sees a read-only system
  (``/usr``, ``/etc``, the Python installation), a private size-limited ``/tmp`` that is
  also its working folder (holding a read-only copy of the submission), and nothing of
  the grader's files, home or solutions. No network: the kernel talks to the grader over
  jupyter_client's ``ipc`` transport, with its sockets inside the sandbox's ``/tmp``; the
  grader reaches them through ``/proc/<sandbox pid>/root``, so no host folder is writable
  from inside. ``--die-with-parent`` and the PID namespace take every process with it
  when the grader kills bwrap. bwrap starts with a clean environment (only PATH), because
  its own PID 1 would otherwise show the grader's variables in ``/proc/1/environ``.
- **Unprivileged user** (grader running as root): the kernel drops to a uid of its own
  (one per running kernel, from a reserved range, without a passwd entry) before any
  student code runs, so it can neither signal nor read the grader, nor other kernels,
  and the per-user process limit applies to this kernel alone. With the sandbox the
  drop happens inside it (bwrap keeps only CAP_SETUID/CAP_SETGID for the launcher);
  without it, only if the Python installation is readable by other users.
- **Cleanup**: the kernel's process group, a cgroup when one can be created (killed
  through ``cgroup.kill``), every process of the kernel's own uid, and every process
  that carries the box's marker variable or descends from the kernel.

``auto`` mode probes once per process whether the sandbox works here (bwrap installed,
user namespaces allowed) and prints one loud warning on stderr when it does not.
"""

from __future__ import annotations

import functools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .bwrap_box import BOX_RUN, BOX_WORKDIR, SAFE_PATH, HandOver, python_paths, sandbox_command
from .config import Limits
from .errors import GradingError

# Unprivileged uids for kernels when the grader runs as root: one per running kernel, from a
# reserved range (inside what /proc/self/uid_map allows, for root in a rootless container).
UID_BASE = 1_600_000_000
UID_SLOTS = 4096
UID_LOCKS = Path("/run/lock/torchgrade-uids") if Path("/run/lock").is_dir() else Path(tempfile.gettempdir()) / "torchgrade-uids"

_warned: set[str] = set()
_warn_lock = threading.Lock()


def warn_once(message: str) -> None:
    """A loud warning on stderr, once per process (reports on stdout stay clean)."""
    with _warn_lock:
        if message in _warned:
            return
        _warned.add(message)
    bar = "!" * 78
    print(f"{bar}\ntorchgrade: WARNING: {message}\n{bar}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- decisions

@dataclass(frozen=True)
class Isolation:
    """How kernels are isolated in this process, for one sandbox setting."""

    sandbox: bool
    bwrap: str | None
    drop_user: bool  # the kernel runs as an unprivileged uid of its own
    problems: tuple[str, ...] = ()  # what is missing, for the warning and for docs/tests

    def describe(self) -> str:
        if self.sandbox:
            who = "an unprivileged user of its own" if self.drop_user else "your user (in a user namespace)"
            return f"bubblewrap sandbox, kernel running as {who}"
        return "no sandbox" + ("; kernel running as an unprivileged user" if self.drop_user else "")


_isolation_cache: dict[str, Isolation] = {}
_isolation_lock = threading.Lock()


def isolation(mode: str) -> Isolation:
    """Decide (once per process and mode) how kernels run; raise if the sandbox is required but missing."""
    with _isolation_lock:
        if mode not in _isolation_cache:
            _isolation_cache[mode] = _decide(mode)
    decided = _isolation_cache[mode]
    if mode == "require" and not decided.sandbox:
        raise GradingError("the sandbox is required (a batch, limits.sandbox or --sandbox: require) but cannot be "
                           "used here: " + "; ".join(decided.problems)
                           + ". To grade without it anyway, pass --sandbox off (see docs/threat_model.md)")
    if decided.problems:
        warn_once("student code is NOT fully isolated: " + "; ".join(decided.problems)
                  + ". See docs/threat_model.md.")
    return decided


def _decide(mode: str) -> Isolation:
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    problems: list[str] = []
    bwrap = None
    sandbox = False
    if mode != "off":
        bwrap, why_not = probe_sandbox()
        sandbox = why_not is None
        if why_not:
            problems.append(f"no sandbox ({why_not})")
    else:
        problems.append("the sandbox is turned off (limits.sandbox: off, or --sandbox off)")
    drop = False
    if root:
        unreadable = None if sandbox else python_unreadable_by_others()
        no_uids = kernel_uid_base() is None
        drop = unreadable is None and not no_uids and sys.platform.startswith("linux")
        if not drop:
            problems.append(f"the kernel runs as root, because {unreadable} cannot be read by other users"
                            if unreadable else "the kernel runs as root, because this user namespace maps too "
                            "few user ids for kernels of their own" if no_uids else "the kernel runs as root")
            problems.append(f"it can WRITE the grader's own files ({GRADER_DIR}) and change every later grade")
        elif not sandbox and writable_by_others():
            problems.append(f"{writable_by_others()} is writable by every user, so the kernel could change the "
                            "grader and every later grade")
    elif not sandbox and os.name == "posix":
        problems.append(f"the kernel runs as your own user: it can WRITE the grader's own files ({GRADER_DIR}) and "
                        "change every later grade, read your files and signal the grader")
    return Isolation(sandbox, bwrap if sandbox else None, drop, tuple(problems))


@functools.lru_cache(maxsize=1)
def probe_sandbox() -> tuple[str | None, str | None]:
    """(bwrap path, None) when a sandbox can be started here, else (None, the reason)."""
    if not sys.platform.startswith("linux"):
        return None, f"bubblewrap needs Linux; this is {sys.platform}"
    bwrap = shutil.which("bwrap") or shutil.which("bwrap", path=SAFE_PATH)
    if not bwrap:
        return None, "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    if python_unbindable():
        return None, python_unbindable()
    root = os.geteuid() == 0
    scratch = Path(tempfile.mkdtemp(prefix="torchgrade-probe-"))
    probe_uid = (kernel_uid_base() or 0) + UID_SLOTS  # the range's last uid is the probe's
    drop = f"os.setgroups([]); os.setgid({probe_uid}); os.setuid({probe_uid})\n" if root and kernel_uid_base() else ""
    # The kernel's Python must start and find its packages (site-packages) in there, as the kernel's user.
    code = ("import os, time, importlib.util\n" + drop + "assert importlib.util.find_spec('ipykernel')\n"
            "open('/tmp/ready', 'w').close()\ntime.sleep(20)\n")
    read_end, write_end = os.pipe()
    handover = HandOver()
    command = sandbox_command(bwrap, info_fd=write_end, workdir_files=[], connection=None, tmp_size_mb=1,
                              environment={}, root=root, handover=handover,
                              inner=[sys.executable, "-I", "-c", code])
    try:
        process = subprocess.Popen(command, env={"PATH": SAFE_PATH}, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   pass_fds=(write_end, *handover.fds), cwd=scratch, start_new_session=True)
    except OSError as problem:
        os.close(read_end)
        os.close(write_end)
        handover.close()
        shutil.rmtree(scratch, ignore_errors=True)
        return None, f"bwrap could not be run ({problem.strerror})"
    os.close(write_end)
    handover.close()
    try:
        init = _read_child_pid(read_end, deadline=time.monotonic() + 10)
        ready = init is not None and _wait_for(lambda: os.path.exists(f"/proc/{init}/root/tmp/ready"), 10)
        if ready:
            return bwrap, None
        process.kill()
        error = (process.communicate(timeout=5)[1] or b"").decode(errors="replace").strip().splitlines()
        reason = error[-1] if error else "the test sandbox did not start (or its Python could not find ipykernel)"
        if "namespace" in reason or "uid map" in reason or "Permission denied" in reason:
            reason += " - user namespaces seem to be forbidden on this machine"
        return None, f"bwrap failed: {reason}"
    finally:
        os.close(read_end)
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stderr:
            process.stderr.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except OSError:
            pass
        time.sleep(0.02)
    return False


def _read_child_pid(fd: int, deadline: float) -> int | None:
    """bwrap's --info-fd: a JSON document with the sandbox's PID 1 as seen from outside."""
    data = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
        try:
            return int(json.loads(data.decode())["child-pid"])
        except (ValueError, KeyError):
            continue
    return None


GRADER_DIR = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def writable_by_others() -> str | None:
    """The first folder or file of the grader (package, Python installation) that any user may write, if any.

    Without the sandbox a kernel that runs as a user of its own can write exactly these."""
    import stat

    def open_to_all(path: str) -> bool:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return False
        return bool(mode & stat.S_IWOTH) and not (stat.S_ISDIR(mode) and mode & stat.S_ISVTX)

    tops = [str(GRADER_DIR), str(GRADER_DIR.parent)] + python_paths()
    for top in tops:
        parts = Path(top).parts
        for depth in range(2, len(parts) + 1):  # the folders above it: a writable one lets it be replaced
            if open_to_all(str(Path(*parts[:depth]))):
                return str(Path(*parts[:depth]))
    for root, dirs, files in os.walk(GRADER_DIR):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in [root] + [os.path.join(root, f) for f in files]:
            if open_to_all(name):
                return name
    for top in python_paths():
        for key in ("purelib", "platlib", "stdlib"):
            path = sysconfig.get_paths().get(key)
            if path and path.startswith(top) and open_to_all(path):
                return path
    return None


def python_unbindable() -> str | None:
    """Why the kernel's Python cannot be bound into the sandbox, if it cannot (it lives where the sandbox puts its own)."""
    for path in python_paths():
        for reserved in (BOX_RUN, BOX_WORKDIR, "/proc", "/dev"):
            if path == reserved or path.startswith(reserved + "/") or reserved.startswith(path.rstrip("/") + "/"):
                return f"Python is installed at {path}, which the sandbox uses for its own {reserved}"
    return None


def python_unreadable_by_others() -> str | None:
    """The first path of the Python installation that a user with no groups cannot read, if any."""
    import stat

    for top in python_paths() + [os.path.realpath(sys.executable)]:
        parts = Path(top).parts
        for depth in range(1, len(parts) + 1):
            path = Path(*parts[:depth])
            try:
                mode = path.stat().st_mode
            except OSError:
                return str(path)
            if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
                return str(path)
        mode = Path(top).stat().st_mode
        if not mode & stat.S_IROTH:
            return top
    return None


# ----------------------------------------------------------------------------- kernel uids

@functools.lru_cache(maxsize=1)
def kernel_uid_base() -> int | None:
    """First uid of the kernels' range (UID_SLOTS + 1 uids, the last one for the sandbox probe), or None."""
    try:
        ranges = [tuple(int(v) for v in line.split()) for line in Path("/proc/self/uid_map").read_text().splitlines()]
        gids = [tuple(int(v) for v in line.split()) for line in Path("/proc/self/gid_map").read_text().splitlines()]
    except (OSError, ValueError):
        return UID_BASE

    def mapped(table, first, count):
        return any(start <= first and first + count <= start + length for start, _, length in table)

    if mapped(ranges, UID_BASE, UID_SLOTS + 1) and mapped(gids, UID_BASE, UID_SLOTS + 1):
        return UID_BASE
    for start, _, length in sorted(ranges, key=lambda r: -r[2]):  # a rootless container: use the top of its map
        base = start + length - UID_SLOTS - 3  # below 65534/65535 (nobody) in a 65536-uid map
        if base > start + 1000 and mapped(gids, base, UID_SLOTS + 1):
            return base
    return None


def describe_exit_code(code: int | None, bwrap_convention: bool, limits: Limits, out_of_memory: bool = False) -> str:
    """Why a kernel died, from its exit status: negative = signal (Popen), or 128 + signal as bwrap reports it.

    Shared by both engines, so a death reads the same whichever ran the notebook."""
    if code is None:
        return ""
    number = -code if code < 0 else code - 128 if bwrap_convention and code > 128 else None
    if number is not None and number == getattr(signal, "SIGXCPU", None):
        return f"it used more than {limits.cpu_seconds} s of CPU time"
    if number is not None and number == getattr(signal, "SIGKILL", None):
        if out_of_memory:
            return ("it was killed for using more memory than allowed "
                    f"({limits.address_space_mb + limits.tmp_size_mb} MiB for all its processes)")
        return (f"it was killed (SIGKILL): it ignored the warning at {limits.cpu_seconds} s of CPU time and "
                f"reached the hard limit of {limits.cpu_seconds_hard} s, or it killed itself")
    if number is not None and number == getattr(signal, "SIGSEGV", None):
        return "it crashed with a segmentation fault"
    if number is not None and number == getattr(signal, "SIGXFSZ", None):
        return f"it wrote a file larger than {limits.file_size_mb} MiB"
    if number is not None:
        try:
            return f"it was stopped by signal {signal.Signals(number).name}"
        except ValueError:
            return f"it was stopped by signal {number}"
    return f"it exited with status {code} (os._exit, sys.exit in a thread, or a crash)"
