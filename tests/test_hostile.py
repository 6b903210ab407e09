"""Hostile submissions (tests/corpus/hostile, made by make_hostile.py): for each attack,

- the grader survives (a report comes back, nothing raises);
- the run ends within its time budget;
- the cheat earns nothing (each task gets exactly the points in MANIFEST.yaml);
- the student gets a clear message (MANIFEST's notes appear in the report);
- other submissions are unaffected (the solution, graded in the same process between and
  after the attacks, still gets 20/20, and no process of any attack survives).

Every notebook is graded once, three at a time, in one module fixture. Where the sandbox
starts (CI: Linux, root, bubblewrap), sandbox notebooks run in it; where it cannot, those
marked ``unsandboxed`` in MANIFEST.yaml run with the sandbox off, and the others FAIL with
the reason (test_hostile_inputs also fails when the sandbox cannot start as root with
bubblewrap installed). Nothing here skips because the sandbox is missing.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, comparable, write_config, zygote_roots
from torchgrade import processes, sandbox
from torchgrade.config import Limits, load_config
from torchgrade.errors import GradingError
from torchgrade.execution import PlannedCell, kernel_environment
from torchgrade.executor import NbclientExecutor
from torchgrade.errors import SubmissionError
from torchgrade.evidence_store import RecordingGrader, evidence_text
from torchgrade.pipeline import Grader
from torchgrade.render import render_report

HOSTILE = ROOT / "tests" / "corpus" / "hostile"
MANIFEST = yaml.safe_load((HOSTILE / "MANIFEST.yaml").read_text(encoding="utf-8"))["files"]
SOLUTION = ROOT / "solutions" / "computational_graph.ipynb"
# No attack here relies on the whole-notebook budget (test_execution_failures covers it); it is generous so a
# loaded 2-core CI machine, running three gradings with CPU burners among them, finishes the honest work. Cell
# budgets leave room too: under load, memory.ipynb's 750 MiB and processes.ipynb's fork bomb must still meet their
# limits before the clock, and cpu.ipynb its CPU limits (about 5 and 7 s of CPU) within CPU_CELL_TIMEOUT; else the
# two engines, graded one after the other, meet different limits.
CELL_TIMEOUT, NOTEBOOK_TIMEOUT, CPU_CELL_TIMEOUT, CPU_NOTEBOOK_TIMEOUT = 10, 90, 40, 120
SECRET = "hostile-secret-" + "9f2c" * 8
ORPHAN_MARK = "torchgrade-orphan-marker"
LISTEN_PORT = 47613
BWRAP, NO_SANDBOX = sandbox.probe_sandbox() if sys.platform.startswith("linux") else (None, "not Linux")
FULL = {1: 3, 2: 4, 3: 4, 4: 5, 5: 4}

GRADED = sorted(n for n in MANIFEST if not MANIFEST[n].get("refused"))
REFUSED = sorted(n for n in MANIFEST if MANIFEST[n].get("refused"))

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process isolation tests need Linux")


class Unsigned:
    """The control: the same engine with snapshot signatures NOT checked (what the grader would be without them)."""

    def __init__(self, engine=None):
        self.engine = engine or NbclientExecutor()

    def execute(self, cells, limits, workdir):
        result = self.engine.execute(cells, limits, workdir)
        result.secret = None
        return result


def grader_for(directory: Path, executor=None, kind=Grader, **overrides) -> Grader:
    settings = {"limits__cell_timeout": CELL_TIMEOUT, "limits__notebook_timeout": NOTEBOOK_TIMEOUT,
                "random_runs__count": 1, **overrides}
    directory.mkdir(parents=True, exist_ok=True)
    config = load_config(write_config(directory, **settings))
    return kind.from_config("computational_graph", config.assignments["computational_graph"], executor=executor)


def orphans() -> list[str]:
    found = []
    for pid in processes.proc_pids():
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if ORPHAN_MARK in command and pid != os.getpid():
            found.append(f"{pid}: {command}")
    return found


def is_kernel_related(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    uids = processes.status_uids(pid)
    return (b"kernel_launcher" in command or b"bwrap" in command or ORPHAN_MARK.encode() in command
            or any(sandbox.UID_BASE <= uid < sandbox.UID_BASE + sandbox.UID_SLOTS for uid in uids))


def shared_zygote_processes() -> set[int]:
    """This process's own warm zygotes (kept for its next notebook, as any in-process grading with the default
    engine leaves them): their bwrap and zygote processes, never a run forked from them."""
    from torchgrade import zygote

    kept = set()
    for shared in list(zygote._shared.values()):
        if shared.process is None:
            continue
        tree = processes.descendants({shared.process.pid}) | {shared.process.pid}
        kept |= tree - processes.descendants(zygote_roots(tree))
    return kept


def peak_memory_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024


def hostile_jobs(base: Path, engine=None) -> tuple[list, dict]:
    """(key, grader, path) for every attack, slow ones first, the solution in the middle of the attacks; and the
    graders by role. ``engine``: a factory of executors (default: each grader's configured engine).

    Without a sandbox, what is safe to run unsandboxed runs without it (the fallback); the rest is left out and
    its tests fail with the reason (report_of), so a missing sandbox never passes by skipping."""
    new = engine or NbclientExecutor  # the reference engine; graded_warm grades the same attacks warm
    off = {"limits__sandbox": "off"} if NO_SANDBOX else {}
    graders = {"sandbox": grader_for(base / "sandbox", executor=new(), **off),
               "off": grader_for(base / "off", executor=new(), limits__sandbox="off")}
    cpu = grader_for(base / "cpu", executor=new(), limits__cpu_seconds=4, limits__cpu_seconds_hard=6,
                     limits__cell_timeout=CPU_CELL_TIMEOUT, limits__notebook_timeout=CPU_NOTEBOOK_TIMEOUT, **off)
    unsigned = grader_for(base / "unsigned", executor=Unsigned(new()), **off)
    graders["recording"] = grader_for(base / "recording", executor=new(), kind=RecordingGrader, **off)
    jobs = []
    for name in sorted(MANIFEST, key=lambda n: (n not in ("timeouts.ipynb", "cpu.ipynb"), n)):
        entry = MANIFEST[name]
        if entry["mode"] == "sandbox" and NO_SANDBOX and not entry.get("unsandboxed") and not entry.get("refused"):
            continue  # report_of fails its tests, with the reason
        grader = cpu if name == "cpu.ipynb" else graders["recording"] if name == "huge_values.ipynb" \
            else graders[entry["mode"]]
        jobs.append((name, grader, HOSTILE / name))
        if name == "monkeypatch.ipynb":
            jobs.append(("solution, among the attacks", graders["sandbox"], SOLUTION))
        if entry.get("unsigned_points"):
            jobs.append((name + " (unsigned)", unsigned, HOSTILE / name))
    jobs.append(("snoop.ipynb (no sandbox)", graders["off"], HOSTILE / "snoop.ipynb"))
    return jobs, graders


def grade_job(job):
    key, grader, path = job
    started = time.monotonic()
    try:
        return key, (grader.grade_notebook(path), time.monotonic() - started)
    except BaseException as problem:  # the test of that notebook reports it
        return key, (problem, time.monotonic() - started)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """name -> (report or exception, wall seconds); plus the state seen after all of them.

    Three gradings at a time: the slow attacks (timeouts, CPU) mostly wait, and the others
    then run beside them, which is also what a batch does."""
    base = tmp_path_factory.mktemp("hostile")
    saved = {key: os.environ.get(key) for key in ("GITHUB_TOKEN", "TORCHGRADE_TEST_SECRET")}
    os.environ.update(GITHUB_TOKEN=SECRET, TORCHGRADE_TEST_SECRET=SECRET)  # the kernel must never see these
    listener = socket.socket()
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", LISTEN_PORT))
        listener.listen()
    except OSError:
        pass  # something already listens there: just as good a target
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) of this process
    memory_before = peak_memory_mib()

    jobs, graders = hostile_jobs(base)
    recording = graders["recording"]

    # A process whose initial environment holds the secret (/proc/PID/environ): the kernel must not find it.
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(900)"],
                              env={**os.environ, "GITHUB_TOKEN": SECRET})
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            results = dict(pool.map(grade_job, jobs))
        results["solution, after the attacks"] = grade_job(("", graders["sandbox"], SOLUTION))[1]
        results["_memory_growth_mib"] = peak_memory_mib() - memory_before
        results["_huge_values_evidence_bytes"] = sum(
            len(evidence_text(e)) for e in recording.recorded)
        results["_orphans"] = orphans()
        results["_children"] = [pid for pid in processes.descendants({os.getpid()}) - shared_zygote_processes()
                                if is_kernel_related(pid)]
        yield results
    finally:
        holder.kill()
        holder.wait()
        listener.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for pid in processes.kill_until_gone(lambda: [int(line.split(":")[0]) for line in orphans()]):
            pass


def report_of(graded, key):
    if key not in graded:
        pytest.fail(f"{key} is contained only by the sandbox, which cannot start here: {NO_SANDBOX}. "
                    "CI installs bubblewrap and runs as root (see docs/threat_model.md)")
    report, _ = graded[key]
    if isinstance(report, BaseException):
        raise AssertionError(f"grading {key} raised {type(report).__name__}: {report}") from report
    return report


def task_points(report) -> dict[int, float]:
    return {task.number: task.score for task in report.tasks}


def everything_said(report) -> str:
    return "\n".join(list(report.notes) + [c.found for c in report.checks] + [c.message for c in report.checks])


# ----------------------------------------------------------------------------- per attack

@pytest.mark.parametrize("name", GRADED)
def test_grader_survives_and_awards_exactly_what_was_earned(graded, name):
    report = report_of(graded, name)
    expected = {int(k): v for k, v in MANIFEST[name]["points"].items()}
    assert task_points(report) == expected, "\n" + everything_said(report)


@pytest.mark.parametrize("name", REFUSED)
def test_parser_bombs_are_refused_in_one_line(graded, name):
    problem, seconds = graded[name]
    assert isinstance(problem, SubmissionError), problem
    assert MANIFEST[name]["refused"] in problem.one_line() and "\n" not in problem.one_line()
    assert seconds < 30


@pytest.mark.parametrize("name", sorted(n for n in MANIFEST if MANIFEST[n].get("flags")))
def test_tampering_is_flagged_for_the_instructor(graded, name):
    """Each kind of attempt is flagged; the points test above shows the flags changed no score."""
    flagged = {flag.kind for flag in report_of(graded, name).flags}
    assert set(MANIFEST[name]["flags"]) <= flagged, report_of(graded, name).flags
    document = json.loads(render_report("json", report_of(graded, name)))
    assert {flag["kind"] for flag in document["flags"]} == flagged


def test_the_solution_is_never_flagged(graded):
    assert report_of(graded, "solution, among the attacks").flags == ()


@pytest.mark.parametrize("fmt", ["text", "json", "classroom", "junit"])
def test_surrogates_give_complete_reports_in_every_format(graded, fmt):
    text = render_report(fmt, report_of(graded, "surrogates.ipynb"), grading=True)
    text.encode("utf-8")
    if fmt in ("json", "classroom"):
        json.loads(text)


def test_snapshots_and_stored_evidence_stay_small(graded):
    """15 tensors of 200,000 values bound to every graded name of task 5: the stored evidence stays small."""
    report_of(graded, "huge_values.ipynb")
    assert 0 < graded["_huge_values_evidence_bytes"] < 12 * 2**20, graded["_huge_values_evidence_bytes"]


@pytest.mark.parametrize("name", GRADED)
def test_run_ends_within_its_time_budget(graded, name):
    report = report_of(graded, name)
    _, seconds = graded[name]
    budget = CPU_NOTEBOOK_TIMEOUT if name == "cpu.ipynb" else NOTEBOOK_TIMEOUT
    # the two runs go in parallel; each is bounded by the notebook budget, plus stopping its kernel
    assert seconds < budget + 15, f"{name} took {seconds:.1f} s"
    assert report.execution_time < budget + 15


@pytest.mark.parametrize("name", sorted(n for n in MANIFEST if MANIFEST[n]["notes"]))
def test_student_gets_a_clear_message(graded, name):
    said = everything_said(report_of(graded, name))
    for note in MANIFEST[name]["notes"]:
        # "a || b": either message is right; which limit stops an attack first can depend on machine load
        assert any(choice in said for choice in note.split(" || ")), f"expected {note!r} in:\n{said}"


@pytest.mark.parametrize("name", sorted(n for n in MANIFEST if MANIFEST[n].get("unsigned_points")))
def test_forgeries_are_potent_without_signatures(graded, name):
    """Control: with signatures ignored the forgery gets full marks, so its 0 when signed is the defence."""
    report = report_of(graded, name + " (unsigned)")
    assert task_points(report) == {int(k): v for k, v in MANIFEST[name]["unsigned_points"].items()}
    assert task_points(report_of(graded, name)) == {n: 0 for n in FULL}


def test_attack_probes_do_find_things_without_the_sandbox(graded):
    """Control for snoop.ipynb: outside the sandbox its network probe reaches the grader's loopback port."""
    report = report_of(graded, "snoop.ipynb (no sandbox)")
    assert task_points(report)[2] == 0
    assert "the network was reachable" in everything_said(report)


# ----------------------------------------------------------------------------- isolation

@pytest.mark.parametrize("key", ["solution, among the attacks", "solution, after the attacks"])
def test_other_submissions_are_unaffected(graded, key):
    report = report_of(graded, key)
    assert (report.score, report.max_score) == (20, 20), "\n" + everything_said(report)


def test_no_process_outlives_its_grading(graded):
    assert graded["_orphans"] == []
    assert graded["_children"] == []  # no kernel, bwrap or helper left under the grader either


def test_grader_memory_stays_bounded(graded):
    """100 MB prints, a 32 MB display, 100 MB on stderr: the grader keeps none of it."""
    report_of(graded, "output.ipynb")
    assert graded["_memory_growth_mib"] < 256, f"peak RSS grew by {graded['_memory_growth_mib']:.0f} MiB"


def test_no_host_path_or_control_character_reaches_a_student(graded):
    """leaky_errors.ipynb raises with the grader's paths and control characters in its message."""
    import site

    said = everything_said(report_of(graded, "leaky_errors.ipynb"))
    host = {sys.prefix, sys.base_prefix, sys.executable, str(ROOT), os.path.expanduser("~"), *site.getsitepackages()}
    assert [path for path in host if len(path) > 1 and path in said] == [], said
    assert [ch for ch in said if ord(ch) < 32 and ch not in "\n\t"] == [], said


def test_files_written_by_the_kernel_stay_in_the_sandbox(graded):
    report_of(graded, "files.ipynb")
    for path in (Path("/etc/torchgrade-hostile"), Path("/usr/torchgrade-hostile"), Path.cwd() / "torchgrade-hostile",
                 Path.cwd() / "results.json", Path("/autograder/results/results.json")):
        assert not path.exists(), path


# ----------------------------------------------------------------------------- without kernels

def test_kernel_environment_is_an_allow_list(monkeypatch, tmp_path):
    for key in ("GITHUB_TOKEN", "GITHUB_ACTIONS", "ACTIONS_RUNTIME_TOKEN", "AWS_SECRET_ACCESS_KEY", "PYTHONPATH",
                "LD_PRELOAD", "HOME", "SSH_AUTH_SOCK"):
        monkeypatch.setenv(key, SECRET)
    environment = kernel_environment(tmp_path)
    assert SECRET not in "".join(environment.values())
    assert not any(key.startswith("GITHUB") or "TOKEN" in key or "SECRET" in key for key in environment)
    assert environment["HOME"] == str(tmp_path)
    assert environment["OMP_NUM_THREADS"] == environment["MKL_NUM_THREADS"] == environment["OPENBLAS_NUM_THREADS"] == "1"


def test_limits_have_sane_defaults_and_soft_below_hard():
    limits = Limits()
    assert limits.address_space_mb == 2048 and limits.sandbox == "auto"
    assert limits.cpu_seconds < limits.cpu_seconds_hard
    with pytest.raises(ValueError, match="must be larger than cpu_seconds"):
        Limits(cpu_seconds=10, cpu_seconds_hard=10)
    assert Limits(sandbox=False).sandbox == "off"  # YAML reads an unquoted `off` as false


def test_config_file_rejects_soft_cpu_limit_above_hard(tmp_path):
    from torchgrade.errors import ConfigError

    with pytest.raises(ConfigError, match="cpu_seconds_hard"):
        load_config(write_config(tmp_path, limits__cpu_seconds=20, limits__cpu_seconds_hard=10))


@pytest.fixture
def no_bwrap(monkeypatch):
    monkeypatch.setattr(sandbox, "probe_sandbox", lambda: (None, "bubblewrap is not installed"))
    monkeypatch.setattr(sandbox, "_isolation_cache", {})
    monkeypatch.setattr(sandbox, "_warned", set())


def test_required_sandbox_refuses_to_grade_without_it(no_bwrap, tmp_path):
    with pytest.raises(GradingError, match="sandbox is required.*bubblewrap is not installed"):
        NbclientExecutor().execute([PlannedCell("1", "prelude")], Limits(sandbox="require"), tmp_path)


def test_required_sandbox_is_a_one_line_error_from_the_cli(tmp_path):
    config = write_config(tmp_path)  # limits.sandbox: auto; --sandbox require overrides it
    program = ("import sys, torchgrade.sandbox as s\n"
               "s.probe_sandbox = lambda: (None, 'bubblewrap is not installed')  # as on a machine without it\n"
               "from torchgrade.cli import main\n"
               "sys.exit(main(sys.argv[1:]))\n")
    result = subprocess.run([sys.executable, "-c", program, str(SOLUTION), "--config", str(config), "--format", "json",
                             "--sandbox", "require"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 5
    assert result.stderr.strip().splitlines()[-1].startswith("grade.py: could not grade: the sandbox is required")
    assert "Traceback" not in result.stderr
    assert "sandbox is required" in result.stdout  # the machine format still gets a complete document


def test_missing_sandbox_gives_one_loud_warning(no_bwrap, capsys):
    decided = sandbox.isolation("auto")
    sandbox.isolation("auto")
    assert not decided.sandbox
    err = capsys.readouterr().err
    assert err.count("WARNING") == 1 and "bubblewrap is not installed" in err


def test_sweep_kills_setsid_and_double_forked_descendants(tmp_path):
    """The cleanup used without a sandbox: processes found by marker variable and by descent."""
    token = "test" + os.urandom(6).hex()
    script = ("import os, sys, time\n"
              "if os.fork() == 0:\n"
              "    os.setsid()\n"
              "    if os.fork() == 0:\n"
              "        time.sleep(60)\n"
              "    os._exit(0)\n"
              "time.sleep(60)\n")
    process = subprocess.Popen([sys.executable, "-c", script, ORPHAN_MARK],
                               env={**os.environ, processes.MARKER: token})
    try:
        assert sandbox._wait_for(lambda: len([o for o in orphans() if "-c" in o]) >= 2, 10)
        survivors = processes.sweep(marker=token, uid=None, tree=processes.descendants({process.pid}) | {process.pid})
        assert survivors == []
        process.wait(timeout=5)
        assert not [o for o in orphans() if token in o or "-c import os, sys, time" in o]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# ----------------------------------------------------------------------------- batch

def test_a_batch_with_hostile_submissions(tmp_path):
    """python grade.py DIR: attacks, a correct notebook, surrogates, a link to the solution and an unreadable
    file in one batch, two workers, the sandbox required (a batch's default)."""
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    for student, source in (("alice", HOSTILE / "crashes.ipynb"), ("bob", SOLUTION),
                            ("carol", HOSTILE / "forged_probe.ipynb")):
        (submissions / f"{student}.ipynb").write_bytes(source.read_bytes())
    (submissions / "dave.ipynb").write_text("this is not a notebook")
    (submissions / "erin.ipynb").write_bytes((HOSTILE / "surrogates.ipynb").read_bytes())
    (submissions / "frank.ipynb").symlink_to(SOLUTION)
    config = write_config(tmp_path, limits__cell_timeout=CELL_TIMEOUT, limits__notebook_timeout=NOTEBOOK_TIMEOUT)
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(ROOT / "grade.py"), str(submissions), "--config", str(config),
                             "--output-dir", str(tmp_path / "out"), "--jobs", "2"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert time.monotonic() - started < 3 * NOTEBOOK_TIMEOUT
    with open(tmp_path / "out" / "grades.csv", newline="", encoding="utf-8") as handle:
        rows = {Path(row["file"]).stem: row for row in csv.DictReader(handle)}
    assert float(rows["bob"]["total"]) == 20
    assert float(rows["alice"]["total"]) == 7
    assert float(rows["carol"]["total"]) == 0
    assert rows["dave"]["status"] != "graded" and rows["dave"]["reason"]
    assert float(rows["erin"]["total"]) == 20  # lone surrogates: replaced, the row kept
    assert rows["frank"]["status"] == "could not grade" and "symbolic link" in rows["frank"]["reason"]
    assert rows["frank"]["file"] == "submissions/frank.ipynb"  # the link's own name, never where it points
    assert "probe-access" in rows["carol"]["flags"] and rows["bob"]["flags"] == ""
    assert "Flagged for review" in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert orphans() == []


def test_snapshot_lines_count_only_with_the_executions_signature():
    import hashlib
    import hmac
    import json

    from torchgrade.evidence import SnapshotError
    from torchgrade.snapshot import _parse

    secret, nonce = os.urandom(32).hex(), "TORCHGRADE-" + "ab" * 16 + ":"
    document = json.dumps({"task": 1, "values": {}, "calls": [], "dropped_calls": 0, "integrity": []})
    good = hmac.new(bytes.fromhex(secret), (nonce + document).encode(), hashlib.sha256).hexdigest()
    assert _parse(f"noise\n{nonce}{good} {document}\n", nonce, 1, [], secret).task == 1
    for forged in (f"{nonce}- {document}", f"{nonce}{document}", f"{nonce}{'0' * 64} {document}",
                   f"{nonce}{good} {document.replace('[]', '[1]', 1)}"):
        with pytest.raises(SnapshotError, match="forged"):
            _parse(forged + "\n", nonce, 1, [], secret)
    with pytest.raises(SnapshotError, match="more than once"):
        _parse(f"{nonce}- {document}\n{nonce}{good} {document}\n", nonce, 1, [], secret)


# ----------------------------------------------------------------------------- the warm engine

def same_story(result, name: str) -> dict:
    """All a report says (conftest.comparable, and the flags), with what may differ from run to run made equal: a
    budget's seconds, and the manifest's "a || b" notes (which limit stops an attack first depends on the load).
    A notebook refused before any engine ran: the exception and its one-line reason."""
    import re

    if isinstance(result, BaseException):
        return {"raised": type(result).__name__, "reason": getattr(result, "one_line", result.__str__)()}
    alternatives = [n.split(" || ") for n in MANIFEST.get(name.split(" (")[0], {}).get("notes", []) if " || " in n]

    def normal(text):
        if not isinstance(text, str):
            return text
        for choices in alternatives:
            if any(choice in text for choice in choices):
                return " || ".join(choices)
        return re.sub(r"(ran longer than|stopped after|budget of) \d+ s", r"\1 N s", text)

    story = comparable(result)
    story.update(points=task_points(result), notes=sorted({normal(n) for n in result.notes}),
                 checks=[tuple(normal(field) for field in check) for check in story["checks"]],
                 flags=sorted({(flag.kind, normal(flag.detail)) for flag in result.flags}))
    return story


@pytest.fixture(scope="module")
def graded_warm(tmp_path_factory, graded):
    """The same attacks graded by the warm engine (after the kernel engine, so the two never compete for CPU)."""
    from torchgrade.fork_executor import WarmExecutor, warm_problem

    if warm_problem():
        pytest.skip(warm_problem())
    jobs, graders = hostile_jobs(tmp_path_factory.mktemp("hostile-warm"), engine=WarmExecutor)
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(pool.map(grade_job, jobs))
    results["_orphans"] = orphans()
    # below this process (other test sessions on the machine use the same uid range)
    results["_kernel_uids"] = [pid for pid in processes.descendants({os.getpid()}) if any(
        sandbox.UID_BASE <= uid < sandbox.UID_BASE + sandbox.UID_SLOTS for uid in processes.status_uids(pid))]
    return results


@pytest.mark.parametrize("key", sorted(set(MANIFEST) | {n + " (unsigned)" for n in MANIFEST if MANIFEST[n].get(
    "unsigned_points")} | {"solution, among the attacks", "snoop.ipynb (no sandbox)"}))
def test_warm_engine_tells_the_same_story_as_the_kernel_engine(graded, graded_warm, key):
    if key in REFUSED:
        kernel, warm = graded[key][0], graded_warm[key][0]
    else:
        kernel, warm = report_of(graded, key), report_of(graded_warm, key)
    assert same_story(warm, key) == same_story(kernel, key)


def test_warm_engine_leaves_no_process_behind(graded_warm):
    assert graded_warm["_orphans"] == []
    assert graded_warm["_kernel_uids"] == []
