"""The bubblewrap command line a sandboxed kernel (kernel_box.py) or zygote (zygote.py) starts with.

What the box holds: a read-only system and Python installation, a private size-limited /tmp whose working folder
holds a read-only copy of the submission, the grader's launcher (and the warm engine's runtime) under /run/torchgrade,
and nothing else of the host. Everything bwrap reads comes through file descriptors (``HandOver``), never host
paths. Whether a sandbox is used at all is sandbox.py's decision.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import tempfile
from pathlib import Path

from .errors import GradingError

LAUNCHER = Path(__file__).with_name("kernel_launcher.py")
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"

# Inside the sandbox
BOX_RUN = "/run/torchgrade"
BOX_LAUNCHER = f"{BOX_RUN}/kernel_launcher.py"
BOX_CONNECTION = f"{BOX_RUN}/kernel.json"
BOX_WORKDIR = "/tmp/work"
BOX_IPC = "/tmp/.torchgrade-kernel"  # ipc socket prefix: /tmp/.torchgrade-kernel-<n>



def python_paths() -> list[str]:
    """Folders the kernel's Python needs (installation, standard library, site-packages), outermost only."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  os.path.dirname(os.path.realpath(sys.executable))}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            candidates.add(path)
    paths = sorted({os.path.realpath(p) for p in candidates if p and os.path.isdir(p)})
    return [p for p in paths if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in paths)]


def system_binds() -> list[str]:
    args: list[str] = []
    for path in ("/usr", "/etc"):
        if os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"):
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def python_binds() -> list[str]:
    """The Python installation, read-only. Bound after the private /tmp, so a Python under /tmp is not hidden by it."""
    args: list[str] = []
    made = {"/", "/usr", "/etc", "/tmp", "/run", "/proc", "/dev"}
    for path in python_paths():
        if any(path == p or path.startswith(p + "/") for p in ("/usr", "/etc")):
            continue
        parts = Path(path).parts
        for depth in range(2, len(parts)):  # parents readable by the kernel's user, whatever the host's modes
            parent = str(Path(*parts[:depth]))
            if parent not in made:
                made.add(parent)
                args += ["--perms", "0755", "--dir", parent]
        args += ["--ro-bind", path, path]
    return args


class HandOver:
    """What bwrap receives through file descriptors rather than host paths: its arguments (``--args``), the
    launcher and connection file (``--ro-bind-data``) and the submission (``--file``). So neither the sandbox's
    ``/proc/1/cmdline`` nor its mount table names the grader's folders. Pass ``fds`` to the child; close after."""

    def __init__(self) -> None:
        self.fds: list[int] = []

    def data(self, content: bytes) -> int:
        with tempfile.TemporaryFile() as handle:  # unlinked at once; the descriptor keeps it
            handle.write(content)
            handle.flush()
            fd = os.dup(handle.fileno())
        os.lseek(fd, 0, os.SEEK_SET)
        self.fds.append(fd)
        return fd

    def file(self, path: Path) -> int:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        self.fds.append(fd)
        return fd

    def close(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []


def sandbox_command(bwrap: str, *, inner: list[str], workdir_files: list[Path], connection: bytes | None,
                    tmp_size_mb: int, environment: dict[str, str], root: bool, info_fd: int,
                    handover: HandOver, run_files: dict[str, bytes] | None = None,
                    capabilities: tuple[str, ...] = ()) -> list[str]:
    """The bwrap command that runs ``inner`` in the sandbox: ``bwrap --args FD``, everything else in ``handover``."""
    args = ["--die-with-parent", "--new-session",
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", "torchgrade"]
    if not root:
        args.append("--unshare-user")
    args += system_binds()
    args += ["--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(tmp_size_mb * 2**20), "--tmpfs", "/tmp",
             "--perms", "0777", "--dir", BOX_WORKDIR]
    args += python_binds()  # after the private /tmp: a Python installed under /tmp stays visible
    for path in workdir_files:
        args += ["--perms", "0444", "--file", str(handover.file(path)), f"{BOX_WORKDIR}/{path.name}"]
    args += ["--perms", "0755", "--dir", BOX_RUN,
             "--perms", "0444", "--ro-bind-data", str(handover.data(LAUNCHER.read_bytes())), BOX_LAUNCHER]
    if connection is not None:
        args += ["--perms", "0444", "--ro-bind-data", str(handover.data(connection)), BOX_CONNECTION]
    for box_path, content in (run_files or {}).items():  # more grader files (the warm engine's runtime)
        args += ["--perms", "0444", "--ro-bind-data", str(handover.data(content)), box_path]
    args += ["--chdir", BOX_WORKDIR, "--remount-ro", "/", "--clearenv"]
    for key, value in environment.items():
        args += ["--setenv", key, value]
    if root:  # the launcher needs these two to drop to the kernel's own uid; nothing else survives
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    elif capabilities:
        args += ["--cap-drop", "ALL"]
    for capability in capabilities:  # the warm engine's zygote needs a few more to isolate each run
        args += ["--cap-add", capability]
    args += ["--info-fd", str(info_fd)]
    if any("\0" in arg for arg in args):
        raise GradingError("a sandbox argument holds a NUL character")
    # bwrap takes the command itself only on its command line: the Python and the sandbox's own neutral paths.
    fd = handover.data(b"\0".join(a.encode("utf-8", "surrogateescape") for a in args) + b"\0")
    return [bwrap, "--args", str(fd), "--"] + inner
