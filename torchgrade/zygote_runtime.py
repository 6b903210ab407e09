"""The warm engine's zygote, and the runs it forks: the only engine code that runs where students do.

Not imported by the grader. Started as ``python -I zygote_runtime.py LISTEN_FD`` (inside the
bubblewrap sandbox, bound read-only at /run/torchgrade/ beside kernel_launcher.py, whose
lock-down functions run_lockdown.py reuses for each run, run_namespaces.py, which gives each run its
namespaces, and zygote_io.py, what the cells talk to). It imports torch,
IPython and what autograd imports lazily, builds one pristine ``InteractiveShell`` and never
runs student code itself. Then it waits on the grader's listening socket. Each request carries two sockets of a new run (``ctl`` for
cells and results, ``mon`` for the run's init) and is served by a fork:

    zygote ─ fork, into a new PID namespace ─▶ init (PID 1): own mount, network, IPC and UTS
                     namespaces; a fresh tmpfs on /tmp (the working folder /tmp/work holds a read-only
                     copy of the submission) and on /dev/shm; its own /proc (sandbox); answers
                     "interrupt"/"kill" on mon; when the runner ends, kills and reaps every other
                     process of the namespace (daemons included), then reports how the run ended
                 └─ fork ─▶ runner (PID 2): its own session, rlimits, its own uid (as root), a
                            kernel's capabilities (none in the sandbox), no_new_privs; reads the
                            run's secret; runs each cell with the shell, keeps only
                            what grading needs

Why two processes: the runner must not be PID 1 (PID 1 ignores SIGXCPU and a SIGKILL it sends itself, which a
kernel would die of). The runner cannot stop its init: PID 1 of a namespace ignores every signal from inside it that
it does not handle, and the runner has no capabilities (and, where the grader is root, a uid of its own), so it cannot
trace it either. The most it could do (same uid: prlimit on its init) costs its own run its exit status. The zygote enters a new PID namespace for its next
child only and goes back to its own after the fork (``OwnPidNamespace``), so nothing in a run sees the zygote or
another run, and a run costs two forks (it cost three, with a supervisor outside the run's namespace).

Frames on ctl: 4-byte big-endian length, one type byte, payload. Grader -> run: S settings
(JSON), F file (name NUL bytes), K secret, C cell (JSON), Q quit. Run -> grader: R ready,
O stdout of a kept cell, D cell done (JSON), E event (text). On mon (datagrams): grader ->
init "interrupt" | "kill"; init -> grader {"exit": code} once every other process of the run is gone (``code`` as
bwrap reports it: the runner's exit status, or 128 + the signal; 137 for a run killed on the grader's order).
"""

import ctypes
import gc
import json
import os
import signal
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from hugepages import collapse_to_huge_pages  # noqa: E402
from run_lockdown import lock_down  # noqa: E402
from run_namespaces import OwnPidNamespace, empty_the_namespace, isolate, self_test  # noqa: E402
from zygote_io import (PROBE_NAME, Kernel, Outbox, Output, Session, like_a_kernel, make_shell,  # noqa: E402
                       probe_definition, probe_source, recv_frame, send_frame)

del sys.path[0]

PR_SET_PDEATHSIG = 1
libc = ctypes.CDLL(None, use_errno=True)


# ----------------------------------------------------------------------------- the zygote

def warm(lean):
    """Import now what every run needs; run torch ops only as warm_autograd does (a forked child hangs on a pool).

    ``lean`` (one notebook from the command line: two runs, then the end) leaves sympy to the first run that needs it
    (0.3 s in that run, as in a kernel, against 0.7 s before the zygote is ready); see also serve()."""
    import torch  # noqa: F401
    if not lean:
        import torch.fx.experimental.symbolic_shapes  # noqa: F401 - the first autograd.grad(grad_outputs=...) imports sympy
    import torch.autograd.functional  # noqa: F401
    import inspect  # noqa: F401
    import hmac  # noqa: F401
    import _hashlib  # noqa: F401
    import asyncio  # noqa: F401 - top-level await
    try:
        import numpy  # noqa: F401
    except ImportError:
        pass
    if not lean and not accelerated(torch):
        warm_autograd()
    source = probe_source(HERE)
    PROBE[:] = [probe_definition(source), compile(source, PROBE_NAME, "exec", dont_inherit=True)]
    return make_shell()


def accelerated(torch):
    """Was this torch built for a GPU? Its first autograd pass may then start device threads, after which autograd
    refuses to run in any forked child: the zygote must not warm it up."""
    return any(getattr(torch.version, name, None) for name in ("cuda", "hip", "xpu"))


def warm_autograd():
    """Run a few tensor and autograd operations once, on one thread, so that the lazy set-up of a process's first ones
    is done here, once, and not in every run: about 12 ms of CPU a run. A fork of a process whose thread pool has run
    hangs, so the pool is set to one thread first (every run sets it to one too). Nothing of it stays: its tensors are
    freed and the random generator's state is put back, so a run finds torch as a fresh kernel would."""
    import torch

    torch.set_num_threads(1)
    state = torch.random.get_rng_state()
    x = torch.tensor([[2.0, 3.0], [4.0, 5.0]], requires_grad=True)
    f = x ** 3 + x * x
    first = torch.autograd.grad(f, x, grad_outputs=torch.ones_like(f), create_graph=True)[0]
    first.sum().backward()
    repr(x.grad), str(first)  # printing a tensor loads its formatter
    torch.random.set_rng_state(state)


PROBE = []  # the prelude's first line, and the probe it compiles (compiled here once: see probe_definition)


def run_cell(shell, source):
    """A cell as a kernel runs it; the prelude's probe definition from the code compiled in the zygote (the same
    code a kernel compiles from the same text, in the same namespace)."""
    if PROBE and source.startswith(PROBE[0]):
        exec(PROBE[1], shell.user_ns)  # noqa: S102 - the grader's own probe, bound read-only beside this file
        source = source[len(PROBE[0]):]
    shell.run_cell(source, store_history=False)


def serve(listener, shell, lean, namespaces):
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the runs' inits are reaped by the kernel
    gc.freeze()  # keep the collector from touching (copying) the zygote's pages in every child
    if not lean:  # 0.3 s that the forks of a batch win back (2 forks a run, 14 ms less each); two runs do not
        collapse_to_huge_pages()  # a fork then copies a page-table entry per 2 MiB, not per 4 KiB
    print("ready", flush=True)
    while True:
        try:
            connection, _ = listener.accept()
        except InterruptedError:
            continue
        try:
            message, fds, _, _ = socket.recv_fds(connection, 65536, 2)
            request = json.loads(message.decode() or "{}")
            if request.get("op") == "ping":
                connection.send(b'{"pong": true}')
            elif request.get("op") == "spawn" and len(fds) == 2:
                pid = namespaces.fork()
                if pid == 0:
                    be_init(fds[0], fds[1], listener, connection, namespaces, shell)  # never returns
                connection.send(json.dumps({"run": pid}).encode())
        except (OSError, ValueError):
            pass
        finally:
            for fd in locals().get("fds", ()):
                try:
                    os.close(fd)
                except OSError:
                    pass
            connection.close()


# ----------------------------------------------------------------------------- one run: its init

def close_other_fds(keep):
    for fd in sorted(int(n) for n in os.listdir("/proc/self/fd") if int(n) > 2 and int(n) not in keep):
        try:
            os.close(fd)
        except OSError:
            pass


def be_init(ctl_fd, mon_fd, listener, connection, namespaces, shell):
    """PID 1 of a run: its namespaces and /proc, then the runner; it relays the grader's orders and reports the end.

    Without the sandbox the run keeps the host's /proc, as an unsandboxed kernel sees every process of the machine
    (the namespace still takes all of the run's processes when it ends)."""
    code, runner = 255, None
    try:
        die_with_parent()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE):
            signal.signal(number, signal.SIG_IGN)
        listener.close()
        connection.close()
        os.close(namespaces.own)
        close_other_fds({ctl_fd, mon_fd})
        ctl = socket.socket(fileno=ctl_fd)
        mon = socket.socket(fileno=mon_fd)
        settings, files = receive_run(ctl)
        isolate(settings, files)
        runner = os.fork()
        if runner == 0:
            mon.close()
            be_runner(ctl, settings, shell)
        ctl.close()
        code = watch(mon, runner, settings["sandbox"])
    except BaseException:  # noqa: BLE001 - whatever happened, the grader hears how the run ended (mon closes)
        import traceback

        traceback.print_exc()
        if runner:  # this init failed after starting the runner: nothing of the run outlives it, even here
            try:
                empty_the_namespace()
            except BaseException:  # noqa: BLE001 - its exit kills the namespace all the same
                pass
    os._exit(code & 0xFF)


def receive_run(ctl):
    """The run's settings (S) and its files (F): the first frames on ctl."""
    kind, payload = recv_frame(ctl)
    settings = json.loads(payload)
    files = []
    for _ in range(settings["files"]):
        kind, payload = recv_frame(ctl)
        name, _, data = payload.partition(b"\0")
        files.append((os.path.basename(name.decode()), data))
    return settings, files


def watch(mon, runner, sandboxed):
    """Relay the grader's interrupt and kill until the runner ends (the run dies with the grader's end of mon), then
    empty the namespace and report the end: the grader hears it only when nothing of the run is left."""
    import select

    pidfd = os.pidfd_open(runner)
    code = None
    while code is None:
        ready, _, _ = select.select([mon, pidfd], [], [])
        if pidfd in ready:
            _, status = os.waitpid(runner, 0)
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code
            break
        try:
            order = mon.recv(64)
        except OSError:
            order = b""
        if order == b"interrupt":
            try:  # as the kernel engine interrupts: the kernel alone in the sandbox, else its process group
                (os.kill if sandboxed else os.killpg)(runner, signal.SIGINT)
            except OSError:
                pass
        else:  # "kill", or the grader went away: as bwrap reports a kernel killed by SIGKILL
            code = 128 + signal.SIGKILL
    empty_the_namespace()
    try:
        mon.send(json.dumps({"exit": code}).encode())
    except OSError:
        pass
    return code


# ----------------------------------------------------------------------------- the runner

def be_runner(ctl, settings, shell):
    """PID 2 of the run. A session of its own, as bwrap --new-session gives a kernel: the scheduler then shares the
    CPU between runs as between kernels (one autogroup each, not one for every run of the zygote), and kill(0, ...)
    reaches only the run's own processes, never the zygote's process group."""
    code = 0
    try:
        os.setsid()
        for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(number, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as in any Python process
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        lock_down(settings)
        kind, secret = recv_frame(ctl)
        sys._torchgrade_secret = secret.decode("ascii", "replace") if kind == "K" else ""
        del secret
        os.environ.clear()
        os.environ.update(settings["environment"])
        os.chdir(settings["cwd"])
        import torch

        torch.set_num_threads(1)
        draw_afresh(torch)
        serve_cells(ctl, settings, shell)
    except (EOFError, OSError):
        code = 0
    os._exit(code)


def draw_afresh(torch):
    """Seed torch's global generator from the system's entropy, as a fresh kernel's is: a fork would otherwise draw the
    zygote's numbers again, the same in every run. numpy's is seeded when a run first imports numpy.random (the zygote
    does not; reseeded here if it ever does), and Python's random reseeds itself at a fork."""
    torch.random.default_generator.seed()
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def serve_cells(ctl, settings, shell):
    outbox = Outbox(ctl, settings)
    session = Session(outbox)
    shell.kernel = Kernel(session)
    streams = Output("stdout", session), Output("stderr", session)
    for fd, stream in zip((1, 2), streams):
        stream.capture(fd)
    sys.stdout, sys.stderr = streams
    sys.__stdout__, sys.__stderr__ = streams
    like_a_kernel(shell, settings["argv"])
    send_frame(ctl, "R")
    while True:
        try:
            kind, payload = recv_frame(ctl)
        except KeyboardInterrupt:
            continue
        stop_at = shell.kernel.stop_at
        if kind != "C" or (stop_at is not None and time.monotonic() >= stop_at):
            return  # asked to quit; or exit() ran, and a kernel's loop would have stopped before this cell
        cell = json.loads(payload)
        outbox.start(bool(cell["keep_stdout"]))
        try:
            with shell.kernel.forward_input():
                run_cell(shell, cell["source"])
        except KeyboardInterrupt:
            outbox.error = outbox.error or {"name": "KeyboardInterrupt", "value": ""}
        for stream in streams:  # as a kernel flushes its streams before it replies
            try:
                stream.flush()
            except KeyboardInterrupt:
                pass
        outbox.keep = False
        done = {"index": cell["index"], "error_name": outbox.error.get("name", ""),
                "error_value": outbox.error.get("value", ""), "truncated": outbox.truncated, "big": outbox.big}
        send_frame(ctl, "D", json.dumps(done))


def die_with_parent():
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def main():
    die_with_parent()
    listener = socket.socket(fileno=int(sys.argv[1]))
    namespaces = OwnPidNamespace()
    if not self_test(sys.argv[2] == "sandbox", namespaces):
        return
    lean = sys.argv[3:] == ["lean"]
    shell = warm(lean)
    serve(listener, shell, lean, namespaces)


if __name__ == "__main__":
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != HERE]
    main()
