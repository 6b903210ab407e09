"""The warm engine (fork_executor.py, zygote.py, zygote_runtime.py).

- It gives the same reports as the kernel engine on the whole computational_graph corpus
  (the kernel side is conftest's session fixture, graded once; the hostile corpus is
  compared in test_hostile.py).
- Each run is a child forked from the zygote with the kernel engine's guarantees: IPython
  behaviour, isolation (own PID, mount and network namespaces, uid, no capabilities),
  limits, "interrupt, then replace", bounded output, and nothing left running afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ASSIGNMENT, CORPUS, comparable, corpus_files, grade_all, needs_warm_engine, warm_grader
from torchgrade import fork_executor, processes, sandbox, zygote
from torchgrade.config import Limits
from torchgrade.execution import INTERRUPT_GRACE, STOP_GRACE, PlannedCell
from torchgrade.executor import NbclientExecutor
from torchgrade.fork_executor import WarmExecutor, make_executor
from torchgrade.instrument import prelude_source

BWRAP, NO_SANDBOX = sandbox.probe_sandbox() if sys.platform.startswith("linux") else (None, "not Linux")
pytestmark = [needs_warm_engine, pytest.mark.skipif(NO_SANDBOX is not None, reason=f"no sandbox here: {NO_SANDBOX}")]
LIMITS = Limits(cell_timeout=8, notebook_timeout=60)
MARK = "torchgrade-warm-test-daemon"


def execute(*sources: str, keep: bool = True, limits: Limits = LIMITS, engine=None, given: tuple[int, ...] = ()):
    cells = [PlannedCell(prelude_source(), "prelude")]
    for number, source in enumerate(sources, start=1):
        if number in given:
            cells.append(PlannedCell(source, "given", number, resumable=True))
        else:
            cells.append(PlannedCell(source, "student", number, position=number, keep_stdout=keep))
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"torchgrade-warm-{os.getpid()}-{time.monotonic_ns()}"
    workdir.mkdir()
    (workdir / "submission.ipynb").write_text("{}")
    try:
        return (engine or WarmExecutor()).execute(cells, limits, workdir)
    finally:
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


def stdout_of(result) -> list[str]:
    return [cell.stdout.strip() for cell in result.cells[1:]]


# ----------------------------------------------------------------------------- equivalence

@pytest.fixture(scope="module")
def warm_reports():
    return grade_all(warm_grader("computational_graph", ASSIGNMENT), CORPUS, corpus_files("correct", "mistake", "format"))


@pytest.mark.parametrize("name", corpus_files("correct", "mistake", "format"))
def test_warm_engine_grades_the_corpus_exactly_as_the_kernel_engine(corpus_reports, warm_reports, name):
    assert comparable(warm_reports[name]) == comparable(corpus_reports[name])


# ----------------------------------------------------------------------------- a run is a kernel

def test_cells_run_as_in_a_kernel():
    result = execute("import asyncio\nawait asyncio.sleep(0)\nprint('awaited')",
                     "%time value = 6 * 7\nprint(get_ipython().user_ns['value'])",
                     "from IPython.display import display\ndisplay('shown')\n'the last value'\nprint('ok')",
                     "raise ValueError('boom')", "print('after the error')")
    shown = stdout_of(result)
    assert "Wall time" in shown[1] and shown[1].endswith("42")  # %time works and prints, as in a kernel
    assert shown[:1] + shown[2:] == ["awaited", "ok", "", "after the error"]
    assert [c.status for c in result.cells] == ["ok", "ok", "ok", "ok", "error", "ok"]
    assert (result.cells[4].error_name, result.cells[4].error_value) == ("ValueError", "boom")


def test_what_students_write_behaves_as_in_a_kernel():
    """input() and getpass fail as in a kernel nbclient runs (no frontend answers), breakpoint() does nothing,
    `%matplotlib inline` works, `obj?` prints nothing, the process looks like a kernel's, what C code and child
    processes write to descriptors 1 and 2 reaches sys.stdout (whose fileno() works, for subprocess or faulthandler),
    and exit() ends the run as it ends a kernel: its loop stops 0.1 s later, so the next cell finds it dead."""
    sources = ("import os, subprocess, time\nos.write(1, b'fd-level\\n')\nsubprocess.run(['echo', 'from a child'])\n"
               "time.sleep(1)  # a thread reads the descriptor: give it time, in both engines\nprint('python-level')",
               "import sys, faulthandler\nfaulthandler.enable()\nprint(sys.stdout.fileno() > 2, sys.stderr.fileno() > 2)",
               "name = input('name? ')", "import getpass\ngetpass.getpass()", "exit(keep_kernel=True)",
               "breakpoint()\nprint('no debugger')", "%matplotlib inline\nimport matplotlib.pyplot as plt\n"
               "plt.plot([1, 2])\nplt.show()\nprint(plt.get_backend())", "len?",
               "import os, sys\nprint(type(get_ipython()).__name__, sys.argv[1], sys.stdout.encoding, "
               "os.environ['TERM'], 'IPKernelApp' in get_ipython().config, sorted(os.environ))",
               "quit()\nimport time\ntime.sleep(0.5)", "print('after quit')")
    warm, kernel = (execute(*sources, engine=engine) for engine in (WarmExecutor(), NbclientExecutor()))
    assert [(c.status, c.error_name, c.error_value) for c in warm.cells] == \
        [(c.status, c.error_name, c.error_value) for c in kernel.cells]
    assert stdout_of(warm) == stdout_of(kernel) and warm.events == kernel.events
    assert stdout_of(warm)[:2] == ["fd-level\nfrom a child\npython-level", "True True"]
    assert warm.cells[3].error_name == "StdinNotImplementedError"
    assert stdout_of(warm)[5:8] == ["no debugger", "module://matplotlib_inline.backend_inline", ""]
    assert [c.status for c in warm.cells[-2:]] == ["ok", "kernel_died"]


def test_a_run_finds_torch_as_a_fresh_kernel_does():
    """Forked runs do not share random numbers: unseeded, each draws afresh from torch's, numpy's and Python's
    generators, as each fresh kernel does (a fork would otherwise repeat the zygote's). The autograd operations the
    zygote ran to warm torch up (zygote_runtime.warm_autograd) leave nothing a run can see."""
    source = ("import random, numpy, torch\nprint(torch.initial_seed(), torch.rand(2).tolist(), "
              "numpy.random.rand(2).tolist(), random.random(), sep='|')\n"
              "print(torch.is_grad_enabled(), torch.is_anomaly_enabled(), torch.get_default_dtype())")
    first, second = (stdout_of(execute(source))[0].splitlines() for _ in range(2))
    kernel = stdout_of(execute(source, engine=NbclientExecutor()))[0].splitlines()
    drawn = [line[0].split("|") for line in (first, second)]
    for source_of_numbers in range(4):  # torch's seed, torch, numpy, Python's random: each draws afresh
        assert drawn[0][source_of_numbers] != drawn[1][source_of_numbers], drawn
    assert first[1] == second[1] == kernel[1] == "True False torch.float32"


def test_errors_read_as_in_a_kernel():
    """A SyntaxError's message names the cell's file: ipykernel's compiler names it the same way in both engines.
    A message is read without host paths or control characters in both."""
    sources = ("x = (1,", "import torch\ntorch.ones(2) @ torch.ones(3)",
               "import os\nraise ValueError(torch.__file__ + ' \\x1b[31mred\\x07 ' + os.getcwd())")
    warm, kernel = execute(*sources), execute(*sources, engine=NbclientExecutor())
    assert [(c.status, c.error_name, c.error_value) for c in warm.cells] == \
        [(c.status, c.error_name, c.error_value) for c in kernel.cells]
    assert warm.cells[3].error_value.startswith("<site-packages>/torch/__init__.py \\x1b[31mred\\x07 ")


def test_a_run_is_isolated_from_the_grader_the_zygote_and_other_runs(monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "warm-secret-token")
    result = execute(
        "import os\nprint(os.getpid(), os.getppid(), sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))",
        "def environ(pid):\n    try:\n        return open(f'/proc/{pid}/environ', 'rb').read()\n"
        "    except OSError:\n        return b''\n"
        "print('GITHUB_TOKEN' in os.environ, any(b'warm-secret' in environ(p) for p in os.listdir('/proc')))",
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 22), timeout=2)\n    print('network')\n"
        "except OSError:\n    print('no network')",
        "status = open('/proc/self/status').read()\nprint([l.split()[1] for l in status.splitlines() "
        "if l.startswith(('CapEff', 'CapPrm', 'NoNewPrivs'))], os.getuid() != 0)",
        "print(os.getcwd(), os.listdir('.'), os.access('submission.ipynb', os.W_OK))",
        "import sys\nprint(hasattr(sys, '_torchgrade_secret'))",
        # a session of its own, as bwrap --new-session gives a kernel: its own share of the CPU (an autogroup),
        # and kill(0, ...) reaches nothing outside the run
        "print(os.getsid(0) == os.getpgid(0) == os.getpid(), open('/proc/self/autogroup').read().split()[0])")
    shown = stdout_of(result)
    assert shown[:-1] == ["2 1 [1, 2]", "False False", "no network",
                          "['0000000000000000', '0000000000000000', '1'] True",
                          "/tmp/work ['submission.ipynb'] False", "False"]
    own_session, autogroup = shown[-1].split()
    # a grader inside a non-root cpu cgroup (as on CI) has no autogroup line at all: then any group differs from it
    graders_group = Path("/proc/self/autogroup").read_text().split()[:1]
    assert own_session == "True" and [autogroup] != graders_group
    assert "warm zygote" in result.isolation


def test_without_the_sandbox_a_run_sees_and_may_do_what_an_unsandboxed_kernel_may():
    """sandbox: off (loudly warned about) is a kernel without bwrap: it sees the machine's processes, has root's
    capabilities when the grader is root and no uid could be given, and an interrupt reaches its process group.
    The run still lives in a PID namespace of its own, which takes its processes along when it ends."""
    limits = Limits(cell_timeout=2, notebook_timeout=60, sandbox="off")
    sources = ("import os\nstatus = open('/proc/self/status').read()\n"
               "print(len([p for p in os.listdir('/proc') if p.isdigit()]) > 2, os.getuid() == 0, "
               "[l.split()[1] for l in status.splitlines() if l.startswith(('CapEff', 'CapBnd', 'NoNewPrivs'))])",
               "import subprocess, sys, time\n"
               "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\ntime.sleep(60)",
               "print(child.wait(timeout=20))", "raise OSError(os.getcwd())")
    warm, kernel = execute(*sources, limits=limits), execute(*sources, limits=limits, engine=NbclientExecutor())
    assert [c.status for c in warm.cells] == [c.status for c in kernel.cells] == ["ok", "ok", "timeout", "ok", "error"]
    assert stdout_of(warm) == stdout_of(kernel)
    assert warm.cells[4].error_value == kernel.cells[4].error_value == "<submission folder>"  # never the host folder
    assert stdout_of(warm)[0].startswith("True ") and stdout_of(warm)[2] in ("1", "-2")  # the child got SIGINT too


def leftover_daemons() -> list[int]:
    found = []
    for pid in processes.proc_pids():
        try:
            if MARK.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def test_every_process_a_run_started_is_gone_when_it_ends():
    daemon = (f"import subprocess\nsubprocess.Popen(['/bin/sh', '-c', 'exec -a {MARK} sleep 600'], "
              "start_new_session=True)\nimport os\nif os.fork() == 0:\n    os.setsid()\n"
              f"    if os.fork() == 0:\n        os.execv('/bin/sh', ['{MARK}', '-c', 'sleep 600'])\n    os._exit(0)\n"
              "print('started')")
    result = execute(daemon)
    assert stdout_of(result) == ["started"]
    assert leftover_daemons() == []


def test_a_cell_that_ignores_the_interrupt_is_replaced_and_grading_resumes_at_the_next_given_cell():
    stubborn = "import time\nwhile True:\n    try:\n        time.sleep(60)\n    except KeyboardInterrupt:\n        pass"
    result = execute("print('before')", stubborn, "print('skipped')", "value = 1", "print('resumed', value)",
                     limits=Limits(cell_timeout=3, notebook_timeout=60), given=(4,))
    assert [c.status for c in result.cells[1:]] == ["ok", "timeout", "not_run", "ok", "ok"]
    assert stdout_of(result)[-1] == "resumed 1"
    assert "cell 2 (task 2) did not stop when interrupted, so its kernel was replaced" in result.events
    assert "a fresh kernel was started; grading resumed at the grader's given cell before task 4" in result.events


def test_an_interrupted_cell_keeps_its_run():
    result = execute("import time\ntime.sleep(60)", "print('same run')", limits=Limits(cell_timeout=2))
    assert [c.status for c in result.cells[1:]] == ["timeout", "ok"]
    assert result.events == ["cell 1 (task 1) ran longer than 2 s and was interrupted"]


def test_a_cell_may_take_as_long_to_stop_as_in_a_kernel():
    """After the interrupt nbclient waits IOPUB_TIMEOUT for the cell's end, then the kernel engine INTERRUPT_GRACE
    for the kernel's answer: a cell that stops within STOP_GRACE keeps its kernel, in both engines."""
    slow = f"import time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    time.sleep({INTERRUPT_GRACE + 1.5})"
    limits = Limits(cell_timeout=2, notebook_timeout=60)
    warm, kernel = (execute(slow, "print('same run')", limits=limits, engine=engine)
                    for engine in (WarmExecutor(), NbclientExecutor()))
    assert INTERRUPT_GRACE + 1.5 < STOP_GRACE - 2
    for result in (warm, kernel):
        assert [c.status for c in result.cells[1:]] == ["timeout", "ok"] and stdout_of(result)[1] == "same run"
        assert result.events == ["cell 1 (task 1) ran longer than 2 s and was interrupted"]


def test_a_crash_is_reported_like_a_kernel_death():
    result = execute("import os\nos._exit(3)", "print('lost')")
    assert result.cells[1].status == "kernel_died"
    assert any("it exited with status 3" in event for event in result.events)


def test_the_cpu_budget_counts_the_students_code_only():
    result = execute("import resource\nsoft, hard = resource.getrlimit(resource.RLIMIT_CPU)\n"
                     "print(soft <= 2 + 4, hard <= 2 + 6)", limits=Limits(cpu_seconds=4, cpu_seconds_hard=6))
    assert stdout_of(result) == ["True True"]


def test_output_is_bounded():
    result = execute("print('x' * (17 * 2**20))", "print('y' * 5000)", given=(1,),  # a kept cell would be asked again
                     engine=WarmExecutor(probe_output_bytes=1000))
    assert "the kernel sent a message larger than 16 MiB; it was dropped" in result.events
    assert len(result.cells[2].stdout) == 1000 and result.cells[2].truncated


def test_output_leaves_in_messages_of_a_kernels_sizes():
    """ipykernel sends what is written within 0.2 s as one message, as UTF-8 JSON, and ZMQ drops one over 16 MiB: a
    forked run sizes its messages the same way. An error raised after a dropped message is still an error."""
    sources = ("print('x' * 17 * 2**20)\nraise ValueError('after a big print')",
               "for _ in range(20):\n    print('y' * 2**20)",  # 20 MiB in small prints, at once
               "print('é' * 9 * 2**20)",  # 9 Mi characters, 18 MiB on the wire
               "import time\nfor _ in range(2):\n    print('z' * 10 * 2**20)\n    time.sleep(0.5)")  # two messages
    warm, kernel = (execute(*sources, keep=False, engine=engine) for engine in (WarmExecutor(), NbclientExecutor()))
    for result in (warm, kernel):
        assert [(c.status, c.error_value) for c in result.cells[1:]] == \
            [("error", "after a big print"), ("ok", ""), ("ok", ""), ("ok", "")]
        assert result.events == ["the kernel sent a message larger than 16 MiB; it was dropped"] * 3


def test_each_run_has_its_own_secret_and_signs_with_it():
    first, second = execute("pass"), execute("pass")
    assert first.secret and second.secret and first.secret != second.secret


# ----------------------------------------------------------------------------- the zygote

def test_a_dead_zygote_is_replaced_and_the_run_retried():
    isolation = sandbox.isolation(LIMITS.sandbox)
    before = zygote.shared_zygote(isolation)
    os.killpg(before.process.pid, 9)
    before.process.wait()
    result = execute("print('fine')")
    assert stdout_of(result) == ["fine"]
    assert zygote.shared_zygote(isolation) is not before


def test_where_runs_cannot_be_forked_the_kernel_engine_takes_over_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(fork_executor, "warm_problem", lambda: "forked runs need Linux namespaces; this is darwin")
    fork_executor._said.clear()
    assert isinstance(make_executor("warm"), NbclientExecutor)
    assert isinstance(make_executor("warm"), NbclientExecutor)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["torchgrade: the warm engine is unavailable (forked runs need Linux namespaces; this is darwin); "
                     "using --engine kernel"]


def test_one_notebook_from_the_command_line_starts_its_zygote_while_the_grader_imports():
    """cli.py starts the zygote in a thread of its own before importing torch; the run waits for that very zygote."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, str(root / "grade.py"), str(root / "solutions" / "computational_graph.ipynb"),
                           "--engine", "warm", "--format", "json"], capture_output=True, text=True, cwd=root,
                          timeout=600)
    import json

    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["score"] == report["max_score"] == 20
    assert "using --engine kernel" not in done.stderr  # no fallback: the early zygote served both runs
