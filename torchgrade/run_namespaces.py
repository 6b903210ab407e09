"""A warm run's namespaces: the zygote forks each run's init into a PID namespace of its own (``OwnPidNamespace``),
the init gives the run its mount, network, IPC and UTS namespaces and its own /tmp, /dev/shm and /proc
(``isolate``), and empties the namespace when the run ends (``empty_the_namespace``). Part of the warm engine's
runtime (see zygote_runtime.py), bound read-only beside it at /run/torchgrade/ in the sandbox; not imported by the
grader.
"""

import ctypes
import os
import signal

from run_lockdown import check  # bound beside this file

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
WORKDIR = "/tmp/work"


libc = ctypes.CDLL(None, use_errno=True)


def mount(source, target, fstype, flags, data=""):
    check(libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                     data.encode() if data else None), f"mount {target}")


class OwnPidNamespace:
    """The zygote's way to fork each run as PID 1 of a namespace of its own, with no supervisor in between.

    ``unshare(CLONE_NEWPID)`` changes only the namespace of the caller's next children, and a second one fails while
    the first is in force; entering the caller's own (active) namespace again with ``setns`` undoes it, so the
    zygote can do it before every run's fork."""

    def __init__(self):
        self.own = os.open("/proc/self/ns/pid", os.O_RDONLY)

    def fork(self):
        check(libc.unshare(CLONE_NEWPID), "unshare")
        pid = -1
        try:
            pid = os.fork()
        finally:
            # In the zygote (the child is PID 1 of the new namespace, and stays there). A zygote that cannot go back
            # could start no other run, yet would still answer pings: it ends, and the grader replaces it.
            if pid != 0 and libc.setns(self.own, CLONE_NEWPID) != 0:
                os._exit(1)
        return pid


def isolate(settings, files):
    """New namespaces for this run (its PID namespace is the zygote's doing), then its own /tmp, /dev/shm and /proc
    (sandbox), or its host folder (no sandbox)."""
    flags = CLONE_NEWNS
    if settings["sandbox"]:
        flags |= CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    check(libc.unshare(flags), "unshare")
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    if not settings["sandbox"]:
        return
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={settings['tmp_size_mb']}m,mode=1777")
    if os.path.isdir("/dev/shm"):
        mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777")
    os.mkdir(WORKDIR)
    os.chmod(WORKDIR, 0o777)
    for name, data in files:
        path = f"{WORKDIR}/{name}"
        with open(path, "wb") as handle:
            handle.write(data)
        os.chmod(path, 0o444)
        mount(path, path, None, MS_BIND)
        mount(path, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def empty_the_namespace():
    """Kill every other process of the run (PID 1's kill(-1) reaches its own namespace only) and reap them all: they
    are this init's children or, once their parents are dead, its orphans."""
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return
        except InterruptedError:
            continue


def self_test(sandboxed, namespaces):
    """Can a run get its namespaces here, twice (the zygote's own PID namespace restored in between)? Answered once,
    before the zygote says it is ready."""
    return all(isolated_child(sandboxed, namespaces) for _ in range(2))


def isolated_child(sandboxed, namespaces):
    try:
        pid = namespaces.fork()
    except OSError as problem:
        print(f"no-namespaces: {problem}", flush=True)
        return False
    if pid == 0:
        try:
            isolate({"sandbox": sandboxed, "tmp_size_mb": 1}, [])
            os._exit(0)
        except BaseException as problem:  # noqa: BLE001
            os.write(1, f"no-namespaces: {problem}\n".encode())
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return status == 0
