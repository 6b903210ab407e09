"""One kernel start's isolation and its cleanup: a ``KernelBox`` per start (see sandbox.py for
what the sandbox gives), an unprivileged uid leased from the reserved range, and a cgroup
when one can be created."""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import Limits
from .errors import GradingError
from .processes import MARKER, parent_pid, proc_pids, status_uids, descendants, kill_until_gone, processes_of_uid, sweep
from .bwrap_box import BOX_CONNECTION, BOX_IPC, BOX_LAUNCHER, LAUNCHER, SAFE_PATH, HandOver, sandbox_command
from .sandbox import UID_LOCKS, UID_SLOTS, Isolation, _read_child_pid, describe_exit_code, kernel_uid_base

class UidLease:
    """An unused uid from the reserved range, held (flock) while the kernel lives."""

    def __init__(self) -> None:
        import fcntl  # POSIX only, like running as root

        self._fcntl = fcntl
        UID_LOCKS.mkdir(mode=0o700, parents=True, exist_ok=True)
        start = random.randrange(UID_SLOTS)
        for step in range(UID_SLOTS):
            slot = (start + step) % UID_SLOTS
            handle = open(UID_LOCKS / f"{slot}.lock", "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            self.uid = self.gid = kernel_uid_base() + slot
            self._handle = handle
            kill_until_gone(lambda: processes_of_uid(self.uid))  # leftovers of a crashed grader
            return
        raise GradingError("no free user id for the kernel (too many kernels running at once)")

    def release(self) -> None:
        self._fcntl.flock(self._handle, self._fcntl.LOCK_UN)
        self._handle.close()


# ----------------------------------------------------------------------------- cgroups

class Cgroup:
    """A cgroup v2 of the kernel's own, when this process may create one: killed as a whole at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, name: str, limits: Limits) -> "Cgroup | None":
        mount = _cgroup2_mount()
        if mount is None:
            return None
        own = _own_cgroup2()
        parents = [mount] + ([mount / own.lstrip("/")] if own and own != "/" else [])
        for parent in parents:
            path = parent / name
            try:
                path.mkdir()
            except OSError:
                continue
            if not os.access(path / "cgroup.procs", os.W_OK):
                path.rmdir()
                continue
            group = cls(path)
            group._write("pids.max", str(limits.processes))
            group._write("memory.max", str((limits.address_space_mb + limits.tmp_size_mb) * 2**20))
            group._write("memory.swap.max", "0")
            return group
        return None

    def _write(self, name: str, value: str) -> bool:
        try:
            (self.path / name).write_text(value)
            return True
        except OSError:
            return False

    @property
    def procs_file(self) -> str:
        return str(self.path / "cgroup.procs")

    def members(self) -> list[int]:
        try:
            return [int(line) for line in (self.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def out_of_memory(self) -> bool:
        try:
            events = dict(line.split() for line in (self.path / "memory.events").read_text().splitlines())
            return int(events.get("oom_kill", 0)) > 0
        except (OSError, ValueError):
            return False

    def destroy(self) -> None:
        self._write("cgroup.kill", "1")
        kill_until_gone(self.members)
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.02)


def _cgroup2_mount() -> Path | None:
    try:
        with open("/proc/self/mountinfo") as handle:
            for line in handle:
                fields = line.split()
                if " - cgroup2 " in line and len(fields) > 4:
                    return Path(fields[4])
    except OSError:
        pass
    return None


def _own_cgroup2() -> str | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    except OSError:
        pass
    return None


# ----------------------------------------------------------------------------- one kernel

@dataclass
class KernelBox:
    """Everything that isolates one kernel start, and cleans up after it."""

    isolation: Isolation
    limits: Limits
    workdir: Path
    secret: str
    environment: dict[str, str]  # the kernel's environment (an allow-list), with paths as the kernel sees them
    dir: Path = field(init=False)
    uid: UidLease | None = field(init=False, default=None)
    cgroup: Cgroup | None = field(init=False, default=None)
    init_pid: int | None = field(init=False, default=None)  # the sandbox's PID 1, seen from outside
    process: subprocess.Popen | None = field(init=False, default=None)
    token: str = field(init=False, default_factory=lambda: secrets.token_hex(12))
    handover: HandOver = field(init=False, default_factory=HandOver)

    def __post_init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="torchgrade-kernel-"))
        self._info_read, self._info_write = os.pipe() if self.isolation.sandbox else (None, None)
        try:
            if self.isolation.drop_user:
                self.uid = UidLease()
            self.cgroup = Cgroup.create(f"torchgrade-{self.token}", self.limits)
            if self.uid and not self.isolation.sandbox:  # the kernel works in the host folders: give them to it
                for path in [self.dir, self.workdir, *self.workdir.rglob("*")]:
                    os.chown(path, self.uid.uid, self.uid.gid)
        except BaseException:
            self.close()
            raise

    # ---- how jupyter_client starts the kernel
    @property
    def sandboxed(self) -> bool:
        return self.isolation.sandbox

    @property
    def connection_file(self) -> str:
        return str(self.dir / "kernel.json")

    def transport(self) -> tuple[str, str]:
        """(transport, ip) written to the connection file, as the kernel will see them."""
        return ("ipc", BOX_IPC) if self.sandboxed else ("tcp", "127.0.0.1")

    def launcher_settings(self) -> dict:
        rlimits = {
            "address_space": self.limits.address_space_mb * 2**20,
            "cpu_seconds": [self.limits.cpu_seconds, self.limits.cpu_seconds_hard],
            "file_size": self.limits.file_size_mb * 2**20,
            "open_files": self.limits.open_files,
            "processes": self._process_limit(),
            "core": 0,
        }
        settings = {"rlimits": rlimits, "secret_on_stdin": True, "no_new_privileges": True}
        if self.uid:
            settings["uid"], settings["gid"] = self.uid.uid, self.uid.gid
        return settings

    def _process_limit(self) -> int:
        """RLIMIT_NPROC counts every process and thread of the real uid (in its user namespace)."""
        if self.uid or self.sandboxed or not hasattr(os, "geteuid") or os.geteuid() == 0:
            # a uid of its own, or a fresh user namespace: the count starts from this kernel.
            # (Root ignores the limit; then only the sandbox's PID namespace or a cgroup bounds it.)
            return self.limits.processes
        me = os.getuid()  # the grader's own user, without a sandbox: add what it already runs
        running = 0
        for pid in proc_pids():
            if status_uids(pid)[:1] == (me,):
                try:
                    running += len(os.listdir(f"/proc/{pid}/task"))
                except OSError:
                    pass
        return running + self.limits.processes

    def popen_environment(self) -> dict[str, str]:
        settings = json.dumps(self.launcher_settings())
        if self.sandboxed:  # bwrap itself gets nothing: its PID 1 would show it in /proc/1/environ
            return {"PATH": SAFE_PATH}
        return {**self.environment, "TORCHGRADE_LIMITS": settings, MARKER: self.token}

    def command(self) -> list[str]:
        """Called by the kernel manager once the connection file is written."""
        os.chmod(self.connection_file, 0o644 if self.sandboxed else 0o600)
        if self.uid and not self.sandboxed:
            os.chown(self.connection_file, self.uid.uid, self.uid.gid)
        settings = json.dumps(self.launcher_settings())
        if self.sandboxed:
            environment = {**self.environment, "TORCHGRADE_LIMITS": settings}
            files = sorted(p for p in self.workdir.iterdir() if p.is_file() and not p.is_symlink())
            self.handover.close()  # a restart of the same box: fresh descriptors
            command = sandbox_command(self.isolation.bwrap, inner=[sys.executable, "-I", BOX_LAUNCHER, "-f", BOX_CONNECTION],
                                      workdir_files=files, connection=Path(self.connection_file).read_bytes(),
                                      tmp_size_mb=self.limits.tmp_size_mb, environment=environment,
                                      root=os.geteuid() == 0, info_fd=self._info_write, handover=self.handover)
        else:
            command = [sys.executable, "-I", str(LAUNCHER), "-f", self.connection_file]
        if self.cgroup:  # join the cgroup before anything else runs
            command = ["/bin/sh", "-c", 'echo $$ > "$0" 2>/dev/null; exec "$@"', self.cgroup.procs_file] + command
        return command

    def pass_fds(self) -> tuple[int, ...]:
        """Descriptors the launch must hand to bwrap (known once ``command()`` has run)."""
        return (self._info_write, *self.handover.fds) if self.sandboxed and self._info_write is not None else ()

    def popen_arguments(self) -> dict:
        arguments = {"env": self.popen_environment(), "stdin": subprocess.PIPE,
                     "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        if self.sandboxed:
            arguments["cwd"] = str(self.dir)  # pass_fds: see pass_fds(), added at launch
        else:
            arguments["cwd"] = str(self.workdir)
        return arguments

    def after_launch(self, process: subprocess.Popen) -> str | None:
        """Hand the secret to the launcher; in the sandbox, find its PID 1. Returns the ip for the grader's side."""
        self.process = process
        try:
            if process.stdin:
                process.stdin.write((self.secret + "\n").encode())
                process.stdin.close()
        except OSError:
            pass  # died at once: the manager notices
        if not self.sandboxed:
            return None
        os.close(self._info_write)
        self._info_write = None
        self.handover.close()
        self.init_pid = _read_child_pid(self._info_read, deadline=time.monotonic() + self.limits.startup_timeout)
        if self.init_pid is None:
            raise GradingError("the sandbox did not start (bwrap reported no process)")
        return f"/proc/{self.init_pid}/root{BOX_IPC}"

    def kernel_pid(self) -> int | None:
        """The kernel process (the sandbox's PID 2), as seen from outside."""
        if self.init_pid is None:
            return self.process.pid if self.process else None
        try:
            children = Path(f"/proc/{self.init_pid}/task/{self.init_pid}/children").read_text().split()
        except OSError:
            children = [str(pid) for pid in descendants({self.init_pid}) if parent_pid(pid) == self.init_pid]
        return int(children[0]) if children else None

    def interrupt(self) -> bool:
        """SIGINT to the kernel only (bwrap would die of it); False when there is no kernel to signal."""
        pid = self.kernel_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, signal.SIGINT)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def describe_exit(self) -> str:
        """Why the kernel died, from its exit status (bwrap reports 128 + signal)."""
        code = self.process.poll() if self.process else None
        out_of_memory = self.cgroup is not None and self.cgroup.out_of_memory()
        return describe_exit_code(code, self.sandboxed, self.limits, out_of_memory)

    # ---- the end
    def close(self) -> None:
        """Kill everything the kernel started, release its uid, remove its files. Idempotent."""
        process, self.process = self.process, None
        alive = process is not None and process.returncode is None  # not reaped: its pid is still ours
        tree = descendants({process.pid}) if alive and not self.sandboxed else set()
        if alive:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # bwrap (its sandbox dies with it) or the kernel's group
            except (ProcessLookupError, PermissionError, AttributeError):  # AttributeError: Windows
                process.kill()
        if self.cgroup:
            self.cgroup.destroy()
            self.cgroup = None
        sweep(marker=None if self.sandboxed else self.token, uid=self.uid.uid if self.uid else None, tree=tree)
        if process is not None:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self.uid:
            self.uid.release()
            self.uid = None
        for fd in (self._info_read, self._info_write):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._info_read = self._info_write = None
        self.handover.close()
        shutil.rmtree(self.dir, ignore_errors=True)
