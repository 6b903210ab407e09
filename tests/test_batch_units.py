"""Fast tests of the batch's parts: discovery, zips, rosters, stored evidence, fingerprints, exports, gradebook."""

from __future__ import annotations

import csv
import importlib
import io
import json
import math
import stat
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import ROOT, write_config
from torchgrade.batch.discover import discover, extract_zip
from torchgrade.batch.exports import (
    StudentRow, TaskInfo, feedback_for, feedback_markdown, feedback_names, write_grades_csv,
)
from torchgrade.batch.gradebook import Gradebook, Outcome
from torchgrade.batch.progress import Progress
from torchgrade.batch.roster import RosterError, assign, load_roster
from torchgrade.config import load_config
from torchgrade.errors import SubmissionError
from torchgrade.evidence_store import (
    EvidenceError, NoExecution, dumps_evidence, execution_fingerprint, loads_evidence, scoring_fingerprint,
    stale_reason,
)
from torchgrade.loader import MAX_NOTEBOOK_BYTES
from torchgrade.pipeline import Grader
from torchgrade.results import report_from_dict
from torchgrade.results import CheckResult, GradeReport, TaskResult
from torchgrade.evidence import (
    CallRecord, CellError, DrawnNumber, DrawnSeed, DrawnTensor, Mapping, Missing, ModuleValue, NoneValue, Number, Origin,
    Other, Parameter, Raised, RunEvidence, RunPlan, Sequence, Snapshot, TensorSubclass, TensorValue,
)

discover_module = importlib.import_module("torchgrade.batch.discover")  # the module, not the function
EXERCISE = "computational_graph.ipynb"
NOTEBOOK = (ROOT / "solutions" / EXERCISE).read_bytes()


def put(path: Path, content: bytes = NOTEBOOK) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


# ------------------------------------------------------------------------------ discovery

class TestDiscover:
    def test_classroom_repositories_are_students_and_the_exercise_notebook_counts(self, tmp_path):
        root = tmp_path / "hw-submissions"
        put(root / "hw-mary-jane" / ".git" / "HEAD", b"ref")
        put(root / "hw-mary-jane" / EXERCISE)
        put(root / "hw-mary-jane" / "scratch.ipynb")
        put(root / "hw-mary-jane" / ".ipynb_checkpoints" / "computational_graph-checkpoint.ipynb")
        put(root / "hw-bob" / ".git" / "HEAD", b"ref")
        put(root / "hw-bob" / "work" / "answers.ipynb")  # one notebook, any name, any depth
        found = {f.key: f for f in discover([root], tmp_path / "unpack", EXERCISE)}
        assert set(found) == {"hw-mary-jane", "hw-bob"}  # folder names as they are, never split on '-'
        assert found["hw-mary-jane"].path == root / "hw-mary-jane" / EXERCISE
        assert found["hw-mary-jane"].shown == f"{root.as_posix()}/hw-mary-jane/{EXERCISE}"
        assert len(found["hw-mary-jane"].candidates) == 2  # the checkpoint copy is not one
        assert found["hw-bob"].relative == "hw-bob/work/answers.ipynb"

    def test_a_repository_with_several_notebooks_and_none_named_like_the_exercise_is_ambiguous(self, tmp_path):
        put(tmp_path / "subs" / "hw-eve" / ".git" / "HEAD", b"ref")
        put(tmp_path / "subs" / "hw-eve" / "a.ipynb")
        put(tmp_path / "subs" / "hw-eve" / "b.ipynb")
        (item,) = discover([tmp_path / "subs"], tmp_path / "unpack", EXERCISE)
        assert item.key == "hw-eve" and item.path is None
        assert "2 notebooks" in item.problem and "a.ipynb" in item.problem and "identifier,file" in item.problem

    def test_flat_files_are_students_and_plain_folders_of_notebooks_are_containers(self, tmp_path):
        put(tmp_path / "subs" / "alice.ipynb")
        put(tmp_path / "subs" / "section-b" / "bob.ipynb")
        put(tmp_path / "subs" / "section-b" / "carol.ipynb")
        put(tmp_path / "subs" / "dan" / "homework.ipynb")  # a folder with one notebook: dan's
        keys = sorted(f.key for f in discover([tmp_path / "subs"], tmp_path / "unpack", EXERCISE))
        assert keys == ["alice", "bob", "carol", "dan"]

    def test_the_output_folder_is_not_searched(self, tmp_path):
        put(tmp_path / "subs" / "alice.ipynb")
        put(tmp_path / "subs" / "grading-output" / ".work" / "unpacked" / "x.ipynb")
        found = discover([tmp_path / "subs"], tmp_path / "u", EXERCISE, skip=(tmp_path / "subs" / "grading-output",))
        assert [f.key for f in found] == ["alice"]

    def test_bad_paths_are_one_line_errors(self, tmp_path):
        with pytest.raises(SubmissionError, match="no such file or folder"):
            discover([tmp_path / "nope"], tmp_path / "u", EXERCISE)
        (tmp_path / "empty").mkdir()
        with pytest.raises(SubmissionError, match="no notebooks"):
            discover([tmp_path / "empty"], tmp_path / "u", EXERCISE)
        put(tmp_path / "bad.zip", b"PK not really")
        with pytest.raises(SubmissionError, match="not a readable zip"):
            discover([tmp_path / "bad.zip"], tmp_path / "u", EXERCISE)


class TestZips:
    def test_an_lms_zip_with_a_wrapping_folder(self, tmp_path):
        archive = tmp_path / "class.zip"
        with zipfile.ZipFile(archive, "w") as bundle:
            bundle.writestr("hw1/alice.ipynb", NOTEBOOK)
            bundle.writestr("hw1/bob-smith/computational_graph.ipynb", NOTEBOOK)
            bundle.writestr("hw1/readme.txt", "x")
            bundle.writestr("__MACOSX/hw1/._alice.ipynb", b"junk")
        found = {f.key: f for f in discover([archive], tmp_path / "unpack", EXERCISE)}
        assert set(found) == {"alice", "bob-smith"}
        assert found["alice"].shown == "class.zip:hw1/alice.ipynb"
        assert found["alice"].path.read_bytes() == NOTEBOOK

    def test_zip_slip_absolute_paths_and_links_are_never_written(self, tmp_path):
        archive = tmp_path / "evil.zip"
        with zipfile.ZipFile(archive, "w") as bundle:
            bundle.writestr("../escaped.ipynb", NOTEBOOK)
            bundle.writestr("a/../../escaped2.ipynb", NOTEBOOK)
            bundle.writestr("/tmp/absolute.ipynb", NOTEBOOK)
            bundle.writestr("..\\windows.ipynb", NOTEBOOK)
            link = zipfile.ZipInfo("link.ipynb")
            link.external_attr = (stat.S_IFLNK | 0o777) << 16
            bundle.writestr(link, "/etc/passwd")
            bundle.writestr("ok/alice.ipynb", NOTEBOOK)
        target = tmp_path / "deep" / "unpack"
        refused = extract_zip(archive, target)
        written = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
        assert written == ["link.ipynb", "ok/alice.ipynb"]  # the link only as an empty placeholder, for its row
        assert (target / "link.ipynb").read_bytes() == b"" and "symbolic link" in refused[target / "link.ipynb"]
        assert not (tmp_path / "deep" / "escaped.ipynb").exists() and not (tmp_path / "escaped2.ipynb").exists()
        assert not any(p.is_symlink() for p in target.rglob("*"))

    def test_a_zip_bomb_member_stops_at_the_notebook_size_limit(self, tmp_path):
        archive = tmp_path / "bomb.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
            with bundle.open("bomb.ipynb", "w", force_zip64=True) as member:
                block = b"\0" * (1 << 20)
                for _ in range(MAX_NOTEBOOK_BYTES // len(block) + 8):
                    member.write(block)
            bundle.writestr("alice.ipynb", NOTEBOOK)
        assert archive.stat().st_size < 1_000_000
        found = {f.key: f for f in discover([archive], tmp_path / "unpack", EXERCISE)}
        assert found["bomb"].path.stat().st_size == MAX_NOTEBOOK_BYTES + 1  # the loader refuses it by its size

    def test_too_much_in_total_or_too_many_members_refuses_the_zip(self, tmp_path, monkeypatch):
        archive = tmp_path / "big.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
            for i in range(5):
                bundle.writestr(f"s{i}.ipynb", NOTEBOOK)
        monkeypatch.setattr(discover_module, "MAX_ZIP_TOTAL_BYTES", 3 * len(NOTEBOOK))
        with pytest.raises(SubmissionError, match="zip bomb"):
            extract_zip(archive, tmp_path / "a")
        monkeypatch.setattr(discover_module, "MAX_ZIP_MEMBERS", 4)
        with pytest.raises(SubmissionError, match="5 entries"):
            extract_zip(archive, tmp_path / "b")

    def test_a_damaged_member_becomes_that_students_row(self, tmp_path):
        archive = tmp_path / "damaged.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
            bundle.writestr("alice.ipynb", NOTEBOOK)
            bundle.writestr("bob.ipynb", NOTEBOOK)
        data = bytearray(archive.read_bytes())
        offset = data.find(b"bob.ipynb") + len("bob.ipynb") + 10  # inside bob's compressed bytes
        data[offset:offset + 40] = b"\xff" * 40
        archive.write_bytes(bytes(data))
        found = {f.key: f for f in discover([archive], tmp_path / "unpack", EXERCISE)}
        assert found["alice"].problem is None
        assert "could not be extracted from damaged.zip" in found["bob"].problem


# ---------------------------------------------------------------------------------- rosters

def classroom_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    lines = ["\ufeffassignment_name,assignment_url,starter_code_url,github_username,roster_identifier,"
             "student_repository_name,student_repository_url,submission_timestamp,points_awarded,points_available"]
    lines += [f"hw,u,,{user},{ident},{repo},https://github.com/o/{repo},,0,20" for user, ident, repo in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class TestRoster:
    def test_classroom_export_maps_repositories_exactly(self, tmp_path):
        root = tmp_path / "subs"
        for repo in ("hw-mary-jane", "hw-bob", "hw-bobby", "hw-x"):
            put(root / repo / ".git" / "HEAD", b"ref")
            put(root / repo / EXERCISE)
        roster = load_roster(classroom_csv(tmp_path / "grades.csv", [
            ("mary-jane", "Mary Jane", "hw-mary-jane"), ("bob", "", "hw-bob"), ("zoe", "Zoe", ""),
            ("hw-x", "X by username", "")]))
        result = assign(discover([root], tmp_path / "u", EXERCISE), roster)
        identities = {item.folder: identity for identity, item in result.submissions}
        assert identities == {"hw-mary-jane": "Mary Jane", "hw-bob": "bob",  # no identifier: the username
                              "hw-bobby": "hw-bobby",  # 'bobby' is not 'bob': no guessing
                              "hw-x": "X by username"}  # a folder named like a username matches too
        assert [m.identity for m in result.missing] == ["Zoe"]
        assert any("hw-bobby" in w and "not on the roster" in w for w in result.warnings)

    def test_plain_identifier_file_mapping(self, tmp_path):
        put(tmp_path / "subs" / "a1.ipynb")
        put(tmp_path / "subs" / "b2.ipynb")
        put(tmp_path / "subs" / "carl" / ".git" / "HEAD", b"ref")
        put(tmp_path / "subs" / "carl" / "one.ipynb")
        put(tmp_path / "subs" / "carl" / "two.ipynb")  # ambiguous without the roster
        roster_path = tmp_path / "roster.csv"
        roster_path.write_text("identifier,file\nAnn Lee,a1.ipynb\nBen,subs/b2.ipynb\nCarl,carl/two.ipynb\n"
                               "Dora,d.ipynb\nEd,\n", encoding="utf-8")  # Ed: on the roster, no file yet
        found = discover([tmp_path / "subs"], tmp_path / "u", EXERCISE)
        result = assign(found, load_roster(roster_path))
        mapped = {identity: item for identity, item in result.submissions}
        assert set(mapped) == {"Ann Lee", "Ben", "Carl"}
        assert mapped["Carl"].problem is None and mapped["Carl"].path.name == "two.ipynb"
        assert [m.identity for m in result.missing] == ["Dora", "Ed"]

    @pytest.mark.parametrize("text, message", [
        ("name,path\na,b\n", "unrecognised header"),
        ("identifier,file\na,x.ipynb\na,y.ipynb\n", "already on line 2"),
        ("identifier,file\n,x.ipynb\n", "the identifier is needed"),
        ("", "empty"),
    ])
    def test_bad_rosters_are_usage_errors(self, tmp_path, text, message):
        path = tmp_path / "r.csv"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(RosterError, match=message) as problem:
            load_roster(path)
        assert problem.value.exit_status == 2

    def test_same_names_from_two_paths_are_kept_apart(self, tmp_path):
        put(tmp_path / "a" / "alice.ipynb")
        put(tmp_path / "b" / "alice.ipynb")
        result = assign(discover([tmp_path / "a", tmp_path / "b"], tmp_path / "u", EXERCISE), None)
        assert [identity for identity, _ in result.submissions] == ["alice", "alice (2)"]
        assert result.warnings


# ------------------------------------------------------------------------- stored evidence

def full_evidence() -> RunEvidence:
    tensor = TensorValue(token=7, dtype="float32", shape=(2, 2), numel=4, values=(1.5, -0.0, math.inf, math.nan),
                         requires_grad=True, is_leaf=False, has_grad=False, grad_fn="PowBackward0", grad_fn_token=99,
                         leaf_tokens=frozenset({3, 1}), origin=Origin(call=4, via="result"))
    grad = TensorValue(token=9, dtype="float64", shape=(), numel=1, values=(2.0,), requires_grad=False, is_leaf=True,
                       has_grad=False, origin=Origin(call=5, via="grad", passes=(4, 5), replaced_before=True))
    call = CallRecord(index=4, api="autograd.grad", task=3, create_graph=True, gradient_given=True,
                      output_shapes=((2, 3), ()), output_tokens=frozenset({5}), graph_nodes=frozenset({1, 2, 3}),
                      leaf_tokens=frozenset({1}), result_tokens=frozenset({7}), inner_apis=frozenset({"func.grad"}),
                      raised=Raised(type="RuntimeError", message="element 0 of tensors"))
    module = ModuleValue(type_name="Sequential", parameters={"0.weight": Parameter(value=grad, grad=grad)})
    values = {"f": tensor, "g": Missing(reason="why"), "h": NoneValue(), "n": Number(value=0.1 + 0.2),
              "o": Other(type_name="set"), "s": TensorSubclass(type_name="MyTensor"), "m": module,
              "d": Mapping(length=1, entries={"k": NoneValue()}),
              "t": Sequence(container="tuple", length=3, items=(tensor, NoneValue())),
              "big": TensorValue(token=8, dtype="float64", shape=(1000,), numel=1000, requires_grad=False,
                                 is_leaf=True, has_grad=False, too_large=True)}
    run = RunPlan(index=1, is_example=False, seed=12345678901, description="other inputs (x: a random 3×4 tensor)")
    return RunEvidence(
        run=run, snapshots={3: Snapshot(task=3, values=values, calls=(call,), dropped_calls=2)},
        unavailable={4: "the kernel died"},
        errors=[CellError(position=9, task=3, name="NameError", value="name 'yy' is not defined")],
        events=["a cell ran too long"], markers={1, 2, 3},
        inputs={"x": DrawnTensor.of(torch.tensor([[0.1, 2.5]], dtype=torch.float64)),
                "y": DrawnTensor.of(torch.tensor([1.0, float("nan")], dtype=torch.float32).requires_grad_(True)),
                "omega": DrawnNumber(value=2.5), "model": DrawnSeed(seed=7)})


class TestEvidence:
    def test_round_trip_is_exact_and_strict_json(self):
        evidence = full_evidence()
        text = dumps_evidence([evidence])
        assert '"NaN"' in text and '"Infinity"' in text  # strings: strict JSON
        json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
        (back,) = loads_evidence(text)
        assert dumps_evidence([back]) == text
        assert back.run == evidence.run and back.errors == evidence.errors and back.markers == evidence.markers
        assert back.unavailable == evidence.unavailable and back.events == evidence.events
        original, restored = evidence.snapshots[3], back.snapshots[3]
        assert restored.calls == original.calls and restored.dropped_calls == 2
        for path, value in original.values.items():
            if path in ("f", "t"):
                continue  # NaN != NaN: compared through the JSON text above
            assert restored.values[path] == value, path
        assert restored.values["f"].values[:3] == (1.5, -0.0, math.inf) and math.isnan(restored.values["f"].values[3])
        assert math.copysign(1, restored.values["f"].values[1]) == -1
        assert restored.values["n"].value == 0.1 + 0.2
        for name in ("x", "y"):
            a, b = evidence.inputs[name].as_torch(), back.inputs[name].as_torch()
            assert a.dtype == b.dtype and a.shape == b.shape and a.requires_grad == b.requires_grad
            assert torch.equal(torch.nan_to_num(a.detach(), 7.0), torch.nan_to_num(b.detach(), 7.0))
        assert back.inputs["omega"] == evidence.inputs["omega"] and back.inputs["model"] == evidence.inputs["model"]
        assert restored.values["m"] == original.values["m"] and restored.values["d"] == original.values["d"]

    @pytest.mark.parametrize("change", [
        lambda d: d.update(schema_version=1),
        lambda d: d.update(schema_version=None, format=1),  # a row of the first gradebook format
        lambda d: d["snapshots"]["3"]["values"]["f"].update(leaf_ids=[1]),  # an old field: refused, not misread
        lambda d: d["snapshots"]["3"]["values"]["f"].update(values=["1", 2]),
        lambda d: d["snapshots"]["3"]["values"]["f"].update(requires_grad="yes"),
        lambda d: d["inputs"]["x"].update(shape=[5]),
        lambda d: d["snapshots"]["3"]["values"]["f"].update(values=[1.0] * 200_001, numel=200_001, shape=[200_001]),
        lambda d: d["snapshots"]["3"]["values"].update(z={"kind": "pickle"}),
        lambda d: d.update(markers=[True]),
    ])
    def test_malformed_evidence_is_refused(self, change):
        data = json.loads(dumps_evidence([full_evidence()]))[0]
        change(data)
        with pytest.raises(EvidenceError):
            loads_evidence(json.dumps([data]))

    def test_a_report_round_trips_through_its_dict(self):
        check = CheckResult("c", 1, "t", 1.0, 2.0, False, "e", "f", "h", "", True)
        report = GradeReport("a", "T", "s.ipynb", (TaskResult(1, "one", (check,)),), 1.5, ("n",), ("r",), "0.1")
        assert report_from_dict(json.loads(json.dumps(report.to_dict()))) == report


class TestStoredValues:
    """The gradebook keeps only the values the checks read; a re-check that needs another one runs again."""

    def evidence_and_grader(self, tmp_path):
        entry = load_config(write_config(tmp_path)).assignments["computational_graph"]
        grader = Grader.from_config("computational_graph", entry, executor=NoExecution())
        run = grader.plan_runs(NOTEBOOK)[0]
        inputs = grader.assignment.draw(run)
        f = grader.assignment.expected_references(inputs)[1]["f"]
        value = TensorValue(token=1, dtype="float32", shape=tuple(f.shape), numel=f.numel(),
                            values=tuple(f.detach().flatten().tolist()), requires_grad=True, is_leaf=False,
                            has_grad=False, grad_fn="AddBackward0", grad_fn_token=2, leaf_tokens=frozenset({3, 4}))
        huge = TensorValue(token=5, dtype="float64", shape=(100_000,), numel=100_000, values=(0.5,) * 100_000,
                           requires_grad=False, is_leaf=True, has_grad=False)
        snapshot = Snapshot(task=1, values={"f": value, "bound_by_the_student": huge})
        return grader, RunEvidence(run=run, inputs=inputs, snapshots={1: snapshot}, markers={1})

    def test_only_what_the_checks_read_is_stored_and_re_checks_the_same(self, tmp_path):
        grader, evidence = self.evidence_and_grader(tmp_path)
        read: set = set()
        outcomes = grader.check_run(evidence, read)
        assert (1, "f") in read and (1, "bound_by_the_student") not in read
        stored = evidence.keep_only_read(read)
        assert {path for task, path in read if task == 1} == set(stored.snapshots[1].values) and stored.values_pruned
        assert "f" in stored.snapshots[1].values and "bound_by_the_student" not in stored.snapshots[1].values
        assert len(dumps_evidence([stored])) < len(dumps_evidence([evidence])) / 50
        (back,) = loads_evidence(dumps_evidence([stored]))
        assert grader.check_run(back) == outcomes

    def test_a_re_check_that_reads_a_value_not_stored_asks_for_a_new_run(self, tmp_path):
        from torchgrade.evidence import NotStored

        grader, evidence = self.evidence_and_grader(tmp_path)
        stored = evidence.keep_only_read(set())  # as if an earlier version of the checks read nothing
        with pytest.raises(NotStored):
            grader.check_run(stored)
        read: set = set()
        grader.check_run(evidence, read)
        assert grader.check_run(evidence.keep_only_read(read))  # every value it reads is stored: no new run


class TestFingerprints:
    def grader(self, tmp_path, **overrides) -> Grader:
        directory = tmp_path / str(len(list(tmp_path.iterdir())))
        directory.mkdir()
        entry = load_config(write_config(directory, **overrides)).assignments["computational_graph"]
        return Grader.from_config("computational_graph", entry, executor=NoExecution())

    def test_points_tolerances_and_hidden_flags_change_only_scoring(self, tmp_path):
        base = self.grader(tmp_path)
        execution = execution_fingerprint(base)
        scoring = scoring_fingerprint(base, execution)
        for overrides in ({"checks__t1_f_value__points": 7}, {"tolerance__atol": 1e-3},
                          {"checks__t2_grad_values__hidden": True}, {"title": "Renamed"}):
            other = self.grader(tmp_path, **overrides)
            assert execution_fingerprint(other) == execution, overrides
            assert scoring_fingerprint(other, execution) != scoring, overrides

    def test_limits_and_random_runs_change_execution(self, tmp_path):
        execution = execution_fingerprint(self.grader(tmp_path))
        for overrides in ({"limits__cell_timeout": 5}, {"random_runs__seed": 1}, {"random_runs__count": 2}):
            assert execution_fingerprint(self.grader(tmp_path, **overrides)) != execution, overrides

    def test_stored_evidence_goes_stale_when_the_inputs_would_differ(self, tmp_path):
        grader = self.grader(tmp_path)
        runs = grader.plan_runs(NOTEBOOK)
        evidence = [RunEvidence(run=r, inputs=grader.assignment.draw(r)) for r in runs]
        assert stale_reason(grader, NOTEBOOK, evidence) is None
        assert stale_reason(grader, NOTEBOOK + b" ", evidence) == "the planned runs changed"  # seeds follow content
        evidence[0].inputs["x"] = DrawnTensor.of(evidence[0].inputs["x"].as_torch().detach() + 1)
        assert stale_reason(grader, NOTEBOOK, evidence) == "the inputs changed"


# ------------------------------------------------------------------------------- exports

def report_with(scores: dict[int, float]) -> GradeReport:
    tasks = tuple(TaskResult(n, f"T{n}", (CheckResult(f"c{n}", n, "c", s, 1.0, s == 1.0),)) for n, s in scores.items())
    return GradeReport("a", "Title", "f.ipynb", tasks, 1.0)


class TestExports:
    def test_csv_columns_in_numeric_task_order_every_field_quoted_and_formulas_neutralised(self, tmp_path):
        tasks = [TaskInfo(n, f"T{n}", 1.0) for n in (10, 2, 1, 11, 9)]
        rows = [StudentRow('=HYPERLINK("http://x")', "a,b.ipynb", "graded", "", report_with({n: 1.0 for n in (1, 2, 9, 10, 11)})),
                StudentRow('Quote "Q" Smith', "q.ipynb", "could not grade", "not JSON, line 1"),
                StudentRow("Zed", "", "missing", "no submission found")]
        path = tmp_path / "grades.csv"
        write_grades_csv(path, rows, tasks, 5.0)
        text = path.read_text(encoding="utf-8")
        table = list(csv.reader(io.StringIO(text)))
        assert table[0][2:7] == ["task_1", "task_2", "task_9", "task_10", "task_11"]
        assert table[1][0] == "'=HYPERLINK(\"http://x\")" and table[1][1] == "a,b.ipynb"
        assert table[1][7:11] == ["5", "5", "100.0", "graded"]
        # could not grade: blank scores, never 0
        assert table[2][0] == 'Quote "Q" Smith' and table[2][7:12] == ["", "5", "", "could not grade", "not JSON, line 1"]
        assert table[0][12:] == ["raw_total", "late_penalty", "submitted_at", "integrity", "flags", "overrides", "comments"]
        assert all(line.startswith('"') and line.endswith('"') for line in text.splitlines())

    def test_feedback_names_are_safe_and_unique(self):
        names = feedback_names(["Ann Lee", "ann lee", "../../etc/passwd", "bob@x.edu", "", "Ünïcode"])
        assert names["Ann Lee"] == "Ann_Lee" and names["ann lee"] == "ann_lee_2"
        assert names["../../etc/passwd"] == "etc_passwd" and names["bob@x.edu"] == "bob@x.edu"
        assert names[""] == "student" and "/" not in "".join(names.values())
        assert len(set(n.lower() for n in names.values())) == len(names)

    def test_markdown_feedback_survives_backticks_in_messages(self):
        row = StudentRow("s", "f", "could not grade", "a ``` fence")
        text = feedback_markdown(feedback_for(row, "Title", "student"))
        assert "````text" in text and text.rstrip().endswith("````")


def test_the_report_escapes_student_text_and_copes_with_nothing_graded():
    from torchgrade.batch.report import CheckInfo, render_report

    rows = [StudentRow("<script>alert(1)</script>", "x.ipynb", "could not grade", "<img src=x onerror=alert(2)>",
                       feedback="x"),
            StudentRow("Zed", "", "missing", "no submission found", feedback="Zed")]
    page = render_report(title="T <b>", assignment="a", rows=rows, tasks=[TaskInfo(1, "one", 2.0)],
                         checks=[CheckInfo("c1", 1, "check", 2.0)], max_total=2.0, summary_lines=["x & y"])
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "T &lt;b&gt;" in page and "x &amp; y" in page
    assert "No submission could be graded." in page and "<svg" not in page


def test_the_score_histogram_draws_one_bar_per_filled_bin_to_scale_with_the_mean_where_it_falls():
    from torchgrade.batch.charts import BLUE, RED, score_histogram

    chart = score_histogram([20, 20, 20, 18.5, 3], 20)
    bars = {rect.tip: rect for rect in chart.rects}
    assert set(bars) == {"score 20: 3 students", "score 18: 1 student", "score 3: 1 student"}
    assert {rect.fill for rect in chart.rects} == {BLUE}
    assert bars["score 20: 3 students"].height == pytest.approx(3 * bars["score 3: 1 student"].height)
    floor = bars["score 3: 1 student"].y + bars["score 3: 1 student"].height
    assert all(rect.y + rect.height == pytest.approx(floor) for rect in chart.rects)  # every bar stands on the axis
    centre = {tip: rect.x + rect.width / 2 for tip, rect in bars.items()}
    slot = (centre["score 20: 3 students"] - centre["score 3: 1 student"]) / 17
    mean = [line for line in chart.lines if line.stroke == RED and line.x1 == line.x2]
    assert len(mean) == 1 and mean[0].dashed
    assert mean[0].x1 == pytest.approx(centre["score 3: 1 student"] + (16.3 - 3) * slot)  # at 16.3, between bins
    ticks = [int(text.text) for text in chart.texts if text.anchor == "end"]
    assert ticks[0] == 0 and ticks[-1] >= 3 and all(b > a for a, b in zip(ticks, ticks[1:]))
    assert "mean 16.3" in [text.text for text in chart.texts]


def test_rate_bars_keep_their_order_scale_and_colours_and_their_labels_arrive_as_text():
    from torchgrade.batch.charts import AMBER, GREEN, RED, rate_bars
    from torchgrade.render.html import environment

    chart = rate_bars(["T1: <script>alert(1)</script>", "T2: b & c", "T3"], [0.25, 0.6, 1.0], "Pass rate")
    assert [rect.fill for rect in chart.rects] == [RED, AMBER, GREEN]
    assert [rect.y for rect in chart.rects] == sorted(rect.y for rect in chart.rects)  # first label on top
    widths = [rect.width for rect in chart.rects]
    assert widths[0] == pytest.approx(widths[2] / 4) and widths[1] == pytest.approx(widths[2] * 0.6)
    assert [rect.tip for rect in chart.rects][2] == "T3: 100%"
    svg = environment().from_string('{% from "chart.svg.j2" import svg_chart %}{{ svg_chart(c, "plot") }}').render(c=chart)
    assert "<script>" not in svg and "&lt;script&gt;alert(1)&lt;/script&gt;" in svg and "b &amp; c" in svg
    assert svg.count("<rect ") == 3 and 'id="plot"' in svg and 'aria-labelledby="plot-title"' in svg


# ------------------------------------------------------------------------------ gradebook

def test_the_gradebook_keeps_one_row_per_student_and_replaces_checks(tmp_path):
    book = Gradebook(tmp_path / "g.sqlite")
    common = dict(source_name="s", file="f", content_hash="h1", grader_version="g", scoring_version="s",
                  started_at="2026-01-01T00:00:00+00:00")
    book.save("a", Outcome(student="ann", status="graded", graded_by="execution", report=report_with({1: 1.0, 2: 0.0}),
                           evidence_json=['{"x":1}', '{"x":2}'], **common), None)
    book.save("a", Outcome(student="ann", status="graded", graded_by="rescore", report=report_with({1: 0.0}),
                           evidence_json=None, **common), None)
    assert book.db.execute("SELECT count(*) FROM submissions").fetchone()[0] == 1
    assert book.db.execute("SELECT count(*) FROM checks").fetchone()[0] == 1
    assert book.evidence_json(book.row("a", "ann").id) == ['{"x":1}', '{"x":2}']  # kept: not replaced
    book.save("a", Outcome(student="ann", status="failed", graded_by="execution", failure_kind="submission",
                           reason="broken", **{**common, "content_hash": "h2"}), None)
    row = book.row("a", "ann")
    assert (row.status, row.score, row.reason) == ("failed", None, "broken")
    assert book.evidence_json(row.id) == [] and book.graded_with_content("a", "h1", "g") is None
    assert book.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_progress_in_a_log_prints_one_line_per_submission_with_the_time_left():
    stream = io.StringIO()
    progress = Progress(total=4, to_execute=3, workers=2, stream=stream)
    progress.advance("ann: 20/20 (8.0 s)", executed_seconds=8.0)
    progress.advance("bob: could not grade: broken", failed=True, executed_seconds=2.0)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[1/4] ann: 20/20 (8.0 s)  (1/4 done, 0 failed")
    assert "2/4 done, 1 failed" in lines[1] and "~0:05 left" in lines[1]  # one left, 5 s average
    progress.began("carl")
    assert 4.0 < progress.eta() <= 5.0  # carl just started: about one average submission left


def test_gradebook_commands_find_the_gradebook_of_a_batch_over_several_assignments(tmp_path):
    """A batch over the shipped config writes OUTPUT/<assignment>/; --export, --override and --comment given OUTPUT
    (as the README's quick start does) find the one gradebook there, or ask which one, in one line."""
    from torchgrade.batch.decisions import DecisionError, gradebook_folder

    config = load_config(ROOT / "config.yaml")
    flat, nested = tmp_path / "flat", tmp_path / "hw1-grades"
    flat.mkdir()
    (flat / "gradebook.sqlite").write_bytes(b"")
    assert gradebook_folder(flat, None, config) == flat
    (nested / "computational_graph").mkdir(parents=True)
    (nested / "computational_graph" / "gradebook.sqlite").write_bytes(b"")
    assert gradebook_folder(nested, None, config) == nested / "computational_graph"
    assert gradebook_folder(nested, "computational_graph", config) == nested / "computational_graph"
    with pytest.raises(DecisionError, match="holds no gradebook for pinn_residual, only for computational_graph"):
        gradebook_folder(nested, "pinn_residual", config)  # never another assignment's gradebook
    (nested / "pinn_residual").mkdir()
    (nested / "pinn_residual" / "gradebook.sqlite").write_bytes(b"")
    with pytest.raises(DecisionError, match="holds a gradebook for each of computational_graph, pinn_residual: say "
                                            "which with --assignment NAME"):
        gradebook_folder(nested, None, config)
    assert gradebook_folder(nested, "pinn_residual", config) == nested / "pinn_residual"
    (nested / "gradebook.sqlite").write_bytes(b"")  # OUTPUT's own (an --assignment batch went there once)
    assert gradebook_folder(nested, "pinn_residual", config) == nested / "pinn_residual"
    assert gradebook_folder(nested, None, config) == nested
    with pytest.raises(DecisionError, match="no gradebook.sqlite here"):
        gradebook_folder(tmp_path / "empty", None, config)


def test_moodle_csv_never_leaves_a_student_out_without_saying_so(tmp_path):
    from types import SimpleNamespace

    from torchgrade.batch.exports import StudentRow
    from torchgrade.batch.lms import write_moodle

    def row(student, **ids):
        known = {"email": "", "username": "", "id_number": "", **ids}
        return StudentRow(student=student, file="f", status="missing", ids=SimpleNamespace(**known))

    path = tmp_path / "moodle.csv"
    everyone = [row("ann", email="ann@x.edu", username="ann"), row("bo", email="bo@x.edu")]
    assert write_moodle(path, everyone, "HW1") is None
    assert path.read_text(encoding="utf-8").splitlines()[0] == '"Email address","HW1"'
    # every student has a username, not every one an email: usernames, nobody left out
    usernames = [row("ann", email="ann@x.edu", username="ann"), row("bo", username="bo")]
    assert write_moodle(path, usernames, "HW1") is None and path.read_text().count("\n") == 3
    # a Classroom roster with one email among five: that one row, and a note naming the four others
    classroom = [row("mary", email="mary@x.edu")] + [row(name) for name in ("al", "bea", "cy", "di")]
    note = write_moodle(path, classroom, "HW1")
    assert note == ("moodle.csv leaves out 4 student(s) with no email address in the roster (al, bea, cy, di): enter "
                    "their grades in Moodle by hand, or add the column to the roster")
    assert path.read_text(encoding="utf-8").count("\n") == 2
    # a student not on the roster counts too
    stranger = StudentRow(student="zed", file="f", status="missing")
    assert "(zed)" in write_moodle(path, everyone + [stranger], "HW1")
    assert write_moodle(path, [row("al"), stranger], "HW1").startswith("moodle.csv not written")
    assert not path.exists()


def test_a_notebook_naming_no_assignment_gets_advice_a_student_can_follow(tmp_path):
    """The reason names --assignment for the instructor; the student's feedback leaves the flag out and says what
    to do instead (not the generic 'check that it opens and runs')."""
    from torchgrade.config import assignment_for
    from torchgrade.errors import UsageError
    from torchgrade.render.feedback import advice_for, student_reason

    notebook = tmp_path / "mystery.ipynb"
    notebook.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    with pytest.raises(UsageError) as raised:
        assignment_for(load_config(ROOT / "config.yaml"), notebook)
    reason = str(raised.value)
    assert reason.endswith("; use --assignment NAME")
    assert student_reason(reason) == ("mystery.ipynb: cannot tell which assignment it is (choices: computational_graph, "
                                      "computational_graph_intro, pinn_residual)")
    assert advice_for(reason).startswith("The grader could not tell which assignment this notebook is for")
