"""Fast unit tests of single stages: locate, instrument, values/snapshot parsing, comparisons, config."""

from __future__ import annotations

import json

import nbformat
import pytest
import torch

from conftest import ROOT, write_config
from torchgrade.compare import compare_tensor
from torchgrade.config import Tolerance, load_config
from torchgrade.errors import ConfigError
from torchgrade.execution import CellRun, ExecutionResult
from torchgrade.instrument import neutralize_magics
from torchgrade.locate import StudentCell, locate_tasks
from torchgrade.snapshot import _parse
from torchgrade.evidence import Missing, NoneValue, Sequence, SnapshotError, TensorValue, parse_value

TOL = Tolerance()


def notebook(*sources, tags=None):
    cells = [nbformat.v4.new_code_cell(s) for s in sources]
    for cell, tag in zip(cells, tags or []):
        if tag:
            cell.metadata["tags"] = [tag]
    return nbformat.v4.new_notebook(cells=cells)


class TestLocate:
    def test_tasks_run_until_the_next_marker_and_given_cells_are_dropped(self):
        layout = locate_tasks(notebook("import torch", "# GIVEN\nx = 1", "# TASK 1\nf = 1", "print(f)",
                                       "# TASK 2\ng = 2", "# GIVEN\nx = 2", "after_given = 1"), [1, 2])
        assert [c.source for c in layout.setup] == ["import torch"]
        assert [c.position for c in layout.cells_of(1)] == [3, 4]
        assert [c.source for c in layout.cells_of(2)] == ["# TASK 2\ng = 2"]
        assert layout.given_positions == [2, 6]

    def test_markers_are_lenient_about_spacing_and_case(self):
        layout = locate_tasks(notebook("\n#task 1: build f\nf = 1", "#  TASK 2\ng = 2"), [1, 2])
        assert layout.has_marker(1) and layout.has_marker(2)

    def test_metadata_tags_work_too(self):
        layout = locate_tasks(notebook("f = 1", "g = 2", tags=["task-1", "task-2"]), [1, 2])
        assert layout.cells_of(1)[0].source == "f = 1"

    def test_unknown_task_numbers_are_reported(self):
        assert locate_tasks(notebook("# TASK 9\nx = 1"), [1]).unknown_tasks == [9]


class TestMagics:
    def test_shell_escapes_and_pip_are_removed(self):
        source, events = neutralize_magics(StudentCell(3, "!pip install torch\n%pip install x\ny = 1\nif y:\n  !ls"))
        assert source.splitlines() == ["pass  # grader: shell command removed", "pass  # grader: magic removed",
                                       "y = 1", "if y:", "  pass  # grader: shell command removed"]
        assert len(events) == 3 and events[0].startswith("cell 3: `!pip install torch` was not run")
        compile(source, "cell", "exec")

    def test_timing_magics_keep_the_code(self):
        source, events = neutralize_magics(StudentCell(1, "%time f = x**3\n%matplotlib inline"))
        assert source.splitlines() == ["f = x**3", "%matplotlib inline"] and events == []

    def test_shell_cell_magics_are_skipped(self):
        source, events = neutralize_magics(StudentCell(1, "%%bash\nrm -rf /"))
        assert source == "pass" and "%%bash" in events[0]


def tensor_json(values, shape, **extra):
    base = {"kind": "tensor", "token": 1, "dtype": "float32", "shape": shape, "numel": len(values), "values": values,
            "requires_grad": False, "is_leaf": True, "has_grad": False, "grad_fn": None, "grad_fn_token": None,
            "leaf_tokens": []}
    base.update(extra)
    return base


class TestValues:
    def test_a_tensor_round_trips(self):
        value = parse_value(tensor_json([1.0, 2.0], [2]))
        assert isinstance(value, TensorValue) and value.as_torch().tolist() == [1.0, 2.0]

    @pytest.mark.parametrize("bad", [
        tensor_json([1.0, 2.0], [3]),                 # values do not match the shape
        tensor_json(["1", 2.0], [2]),                 # not numbers
        tensor_json([1.0], [1], token="0x1"),         # wrong type
        tensor_json([1.0], [1], id=1),                # unknown key (the old wire format)
        tensor_json([1.0] * 200_001, [200_001]),     # too many values
        {"kind": "rocket"},
        [],
    ])
    def test_malformed_values_are_rejected(self, bad):
        with pytest.raises(SnapshotError):
            parse_value(bad)

    def test_only_one_nonce_line_from_the_snapshot_cell_counts(self):
        payload = json.dumps({"task": 1, "values": {}, "calls": [], "dropped_calls": 0, "integrity": []})
        assert _parse("noise\nN:" + payload + "\n", "N:", 1, []).task == 1
        with pytest.raises(SnapshotError, match="more than once"):
            _parse(f"N:{payload}\nN:{payload}\n", "N:", 1, [])
        with pytest.raises(SnapshotError, match="no snapshot"):
            _parse("prefix N:" + payload, "N:", 1, [])


class TestCompare:
    expected = torch.tensor([[1.0, 2.0], [3.0, 4.0]])

    def compare(self, found, **kw):
        return compare_tensor(found, self.expected, name="f", what="w", hint="h", tolerance=TOL, **kw)

    def found(self, values, shape=(2, 2), dtype="float32"):
        return parse_value(tensor_json(values, list(shape), dtype=dtype, numel=len(values)))

    def test_right_values_pass(self):
        assert self.compare(self.found([1, 2, 3, 4 + 1e-7])).passed

    @pytest.mark.parametrize("found, text", [
        (Missing(), "nothing"),
        (NoneValue(), "None"),
        (None, "shape (4,)"),
        ("dtype", "float64"),
        ("nan", "NaN"),
        ("wrong", "at [1, 1] expected 4.0, found 5.0"),
    ])
    def test_each_failure_says_what_was_found(self, found, text):
        if found is None:
            found = self.found([1, 2, 3, 4], shape=(4,))
        elif found == "dtype":
            found = self.found([1, 2, 3, 4], dtype="float64")
        elif found == "nan":
            found = self.found([1, 2, 3, float("nan")])
        elif found == "wrong":
            found = self.found([1, 2, 3, 5])
        outcome = self.compare(found)
        assert not outcome.passed and text in outcome.found

    def test_a_one_tuple_passes_only_when_allowed(self):
        one = Sequence(container="tuple", length=1, items=(self.found([1, 2, 3, 4]),))
        assert not self.compare(one).passed
        assert "1-tuple" in self.compare(one, accept_one_tuple=True).note


class TestConfig:
    def test_the_shipped_config_is_valid(self):
        assert "computational_graph" in load_config(ROOT / "config.yaml").assignments

    @pytest.mark.parametrize("override, text", [
        ({"checks__t1_f_value__points": "two"}, "assignments.computational_graph.checks.t1_f_value.points"),
        ({"limits__cell_timout": 5}, "limits.cell_timout: unknown key"),
        ({"random_runs__shape": [0, 3]}, "shape moved to the grader module"),
        ({"random_runs__count": 0}, "random_runs.count"),
        ({"tolerance__rtol": -1}, "tolerance.rtol"),
    ])
    def test_mistakes_name_the_key(self, tmp_path, override, text):
        with pytest.raises(ConfigError) as caught:
            load_config(write_config(tmp_path, **override))
        assert text in caught.value.reason

    def test_checks_must_match_the_grader_module(self, tmp_path):
        from torchgrade.pipeline import Grader
        config = load_config(write_config(tmp_path, checks__t9_bogus={"points": 1}))
        with pytest.raises(ConfigError, match="checks.t9_bogus: no such check"):
            Grader.from_config("computational_graph", config.assignments["computational_graph"])

    def test_a_grader_module_runs_afresh_each_time_from_code_compiled_once_per_content(self, tmp_path):
        """A worker loads the grader for every submission (nothing carried over between submissions), but compiles
        its source only when the source changed."""
        from torchgrade.assignment import grader_code, load_assignment

        source = (ROOT / "graders" / "computational_graph.py").read_text(encoding="utf-8")
        grader = tmp_path / "copied_grader.py"
        grader.write_text(source + "\nLOADS = globals().get('LOADS', 0) + 1\n", encoding="utf-8")
        checks = load_config(ROOT / "config.yaml").assignments["computational_graph"].checks
        first, second = load_assignment(grader, checks), load_assignment(grader, checks)
        assert first is not second and grader_code(grader) is grader_code(grader)
        import sys
        assert sys.modules["torchgrade_graders.copied_grader"].LOADS == 1  # a fresh module: no state kept
        grader.write_text(source + "\nLOADS = 10\n", encoding="utf-8")
        changed = grader_code(grader)
        load_assignment(grader, checks)
        assert sys.modules["torchgrade_graders.copied_grader"].LOADS == 10 and changed is grader_code(grader)

    def test_unreadable_yaml(self, tmp_path):
        path = tmp_path / "config.yaml"
        path.write_text("version: [1\n")
        with pytest.raises(ConfigError, match="not valid YAML"):
            load_config(path)


def test_execution_result_defaults_mean_not_run():
    assert ExecutionResult([CellRun()]).cells[0].status == "not_run"


def test_the_probe_is_its_file_with_each_part_indented_in_once_and_bound_in_the_box(tmp_path):
    from torchgrade import zygote, zygote_io
    from torchgrade.instrument import PROBE_SOURCE

    folder = ROOT / "torchgrade"
    named = zygote_io.PROBE_PART.findall((folder / "probe_kernel.py").read_text(encoding="utf-8"))
    assert sorted(named) == sorted(zygote_io.PROBE_FILES[1:])  # each part joined once
    assert {p.name for p in folder.glob("probe_*.py")} == set(zygote_io.PROBE_FILES)  # no part left out
    assert set(zygote_io.PROBE_FILES) <= {p.name for p in zygote.RUNTIME_FILES}  # the zygote joins them in its box
    assert PROBE_SOURCE == zygote_io.probe_source(folder) and not zygote_io.PROBE_PART.search(PROBE_SOURCE)
    for name in named:
        part = (folder / name).read_text(encoding="utf-8")
        assert "\n".join("    " + line if line.strip() else line for line in part.splitlines()) in PROBE_SOURCE
    namespace: dict = {}
    exec(compile(PROBE_SOURCE, zygote_io.PROBE_NAME, "exec"), namespace)  # noqa: S102 - our own probe
    assert [name for name in namespace if name != "__builtins__"] == ["__doc__", "_torchgrade_install"]

    (tmp_path / "probe_kernel.py").write_text("def f():\n    # probe part: probe_other.py\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown part: probe_other.py"):
        zygote_io.probe_source(tmp_path)


def test_a_zygotes_folder_goes_in_the_parent_given_only_where_its_socket_path_fits(tmp_path):
    from torchgrade.zygote import SOCKET_PATH_MAX, socket_folder

    assert socket_folder(str(tmp_path)) == str(tmp_path)
    assert socket_folder(None) is None and socket_folder(str(tmp_path / "missing")) is None
    deep = tmp_path / ("d" * (SOCKET_PATH_MAX - len(str(tmp_path))))
    deep.mkdir()
    assert socket_folder(str(deep)) is None  # a socket cannot be bound there: the system's temporary folder instead


def test_late_policy_lms_columns_and_validation_settings_run_nothing_again_and_recheck_nothing():
    """They shape only the exports (and mutant validation's verdict): a change must not re-run a class's notebooks
    (the execution fingerprint) nor re-check them (the scoring one); `--export` applies it. Points do re-check."""
    from torchgrade.config import LatePolicy, LmsExport, load_config
    from torchgrade.evidence_store import execution_fingerprint, scoring_fingerprint
    from torchgrade.evidence_store import NoExecution
    from torchgrade.pipeline import Grader

    entry = load_config(ROOT / "config.yaml").assignments["computational_graph"]

    def fingerprints(config):
        grader = Grader.from_config("computational_graph", config, executor=NoExecution())
        execution = execution_fingerprint(grader)
        return execution, scoring_fingerprint(grader, execution)

    base = fingerprints(entry)
    changed = entry.model_copy(update={
        "late_policy": LatePolicy(deadline="2026-12-01T00:00:00+00:00", penalty_per_day=10),
        "lms": LmsExport(canvas_column="HW1 (77)"),
        "validation": entry.validation.model_copy(update={"exercise_floor": 0.5})})
    assert fingerprints(changed) == base
    points = entry.checks["t1_f_value"].model_copy(update={"points": 5})
    execution, scoring = fingerprints(entry.model_copy(update={"checks": {**entry.checks, "t1_f_value": points}}))
    assert execution == base[0] and scoring != base[1]  # control: points are re-checked, not re-run


def test_a_quoted_error_is_cut_at_a_word_and_says_it_was_cut():
    from torchgrade.outcome import excerpt

    message = ("One of the differentiated Tensors appears to not have been used in the graph. Set allow_unused=True "
               "if this is the desired behavior.")
    assert excerpt(message, 500) == message and excerpt("a\n  b") == "a b"
    short = excerpt(message, 120)
    assert short.endswith("…") and len(short) <= 120 and message.startswith(short[:-1])
    assert short == ("One of the differentiated Tensors appears to not have been used in the graph. Set "
                     "allow_unused=True if this is the…")
    assert excerpt("x" * 300, 100) == "x" * 99 + "…"  # one long word: cut where it must be


def test_a_warm_cell_ends_at_its_deadline_however_many_frames_its_run_sends():
    """A run that sends a big piece of output, then floods its socket with tiny frames (each one the grader must
    read and keep), cannot hold the grader past the cell's deadline: keeping output costs linear time (appending
    to one ever longer string copied it for every frame: minutes of the grader's CPU for seconds of the run's)."""
    import socket
    import struct
    import threading
    import time

    from torchgrade.execution import CellRun, PlannedCell
    from torchgrade.fork_child import Child
    from torchgrade.fork_executor import Run, WarmExecutor

    ctl, child_end = socket.socketpair()
    mon, mon_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    run = object.__new__(Run)
    run.engine = WarmExecutor(probe_output_bytes=64 * 2**20)
    run.cells = [PlannedCell("pass", "snapshot", keep_stdout=True)]
    run.runs = [CellRun()]
    run.child = Child(ctl, mon, max_frame=2**23)
    stop = threading.Event()

    def flood():  # for 4 s at most: a grader that overran its deadline returns late instead of hanging the suite
        big = "é".encode() * 2**21
        tiny = (struct.pack(">IB", 1, ord("O")) + b"!") * 10_000
        until = time.monotonic() + 4
        try:
            child_end.sendall(struct.pack(">IB", len(big), ord("O")) + big)
            while not stop.is_set() and time.monotonic() < until:
                child_end.sendall(tiny)
        except OSError:
            pass

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    started = time.monotonic()
    try:
        assert run.wait_done(0, started + 1.0) is None
        took = time.monotonic() - started
    finally:
        stop.set()
        for sock in (ctl, child_end, mon, mon_child):
            sock.close()
        sender.join(5)
    kept = run.runs[0]
    assert 1.0 <= took < 1.5, f"the cell's deadline was 1 s; the grader returned after {took:.1f} s"
    assert kept.stdout.startswith("é" * 2**21 + "!!!") and kept.kept_bytes == len(kept.stdout.encode())


def test_kept_output_is_bounded_in_bytes_and_never_splits_a_character():
    from torchgrade.execution import CellRun

    run = CellRun()
    run.keep("ab", 10)
    run.keep("\U0001F600" * 3, 10)  # 12 bytes: the third character would pass the bound, and is not cut in two
    assert run.stdout == "ab" + "\U0001F600" * 2 and run.truncated
    run.keep("c", 10)  # it would fit, but the output was cut: nothing after the cut is kept
    assert run.stdout == "ab" + "\U0001F600" * 2
    run.forget()
    assert (run.stdout, run.kept_bytes, run.truncated) == ("", 0, False)


def test_a_locked_down_process_cannot_use_the_kernels_keyrings():
    """A uid's keyring outlives every process (until reboot) and a run's uid is leased again later: a key left there
    would pass data from one submission to another. After the lock-down (both engines call it) the keyring calls
    fail with EPERM, and everything else still works. Control: the same call succeeds before it."""
    import platform
    import subprocess
    import sys

    if platform.machine() != "x86_64":  # CI's machine is; the filter itself also covers i386, aarch64 and arm
        pytest.skip("the system call numbers in this test are x86_64's")
    script = r"""
import ctypes, json, os, sys
sys.path.insert(0, sys.argv[1])
import kernel_launcher

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def add_key():
    ctypes.set_errno(0)
    serial = libc.syscall(248, b"user", b"torchgrade-test", b"x", 1, -2)  # into the process's session keyring
    return serial, ctypes.get_errno()

before = add_key()
if before[0] > 0:
    libc.syscall(250, 3, before[0])  # KEYCTL_REVOKE: leave nothing behind
kernel_launcher.no_new_privileges()
kernel_launcher.deny_keyrings()
after = add_key()
ctypes.set_errno(0)
keyctl = libc.syscall(250, 0, -3, 0), ctypes.get_errno()  # KEYCTL_GET_KEYRING_ID of the user keyring
status = open("/proc/self/status").read()
print(json.dumps({"before": before, "after": after, "keyctl": keyctl, "pid": os.getpid(),
                  "seccomp": "Seccomp:\t2" in status}))
"""
    result = subprocess.run([sys.executable, "-c", script, str(ROOT / "torchgrade")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["before"][0] > 0, seen  # control: the call works without the filter
    assert seen["after"] == [-1, 1] and seen["keyctl"] == [-1, 1]  # EPERM
    assert seen["pid"] > 0 and seen["seccomp"]


def test_a_kernel_session_reads_anything_a_kernel_signs_without_raising():
    """The kernel holds its session's key: a replayed, short, undelimited or malformed message (signed) must become
    a message no loop waits for, never an exception in the grader. Control: jupyter_client's own session raises."""
    from jupyter_client.session import Session

    from torchgrade.kernel_session import tolerant

    def attacks(session):
        parent = session.msg("execute_request", {})
        good = session.serialize(session.msg("stream", {"name": "stdout", "text": "x"}, parent=parent))
        no_id = [b"{}", b"{}", b"{}", b"{}"]
        yield [b"<IDS|MSG>", session.sign(no_id)] + no_id  # a header without msg_id
        yield [b"no delimiter"]
        yield [b"<IDS|MSG>", b"x"]  # too few frames
        yield good  # the first time: read as it is
        yield good  # replayed
        deep = [session.pack(parent["header"]), b"{}", b"{}", b"[" * 200_000]
        yield [b"<IDS|MSG>", session.sign(deep)] + deep

    def read(session, frames):
        identities, message = session.feed_identities(frames)
        return session.deserialize(message)

    plain = Session(key=b"k")
    with pytest.raises(Exception):
        for frames in attacks(plain):
            read(plain, frames)
    session = Session(key=b"k")
    tolerant(session)
    seen = [read(session, frames) for frames in attacks(session)]
    assert [m["msg_type"] for m in seen] == ["torchgrade_unreadable"] * 3 + ["stream"] + ["torchgrade_unreadable"] * 2
    assert all(m["parent_header"] == {} for m in seen if m["msg_type"] == "torchgrade_unreadable")
    assert seen[5]["msg_type"] == "torchgrade_unreadable"  # JSON nested past Python's stack: ignored whole
