"""Instructor batch grading end to end: a GitHub Classroom folder of a whole (small) class.

One batch runs once per session as a real `python grade.py FOLDER --roster ... --jobs 2`
subprocess (see `graded_class`): correct, wrong and unreadable submissions, hostile ones
(a kernel that exits, an endless loop, a cell that tries to kill the grading process),
a roster student who handed nothing in, and a repository not on the roster. The tests
then read the gradebook, grades.csv, the feedback files, the report and the summary;
re-running and re-scoring reuse the same gradebook, so no notebook runs twice.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from conftest import CORPUS, ROOT, write_config

GRADE = [sys.executable, str(ROOT / "grade.py")]
SOLUTION = ROOT / "solutions" / "computational_graph.ipynb"
PREFIX = "computational-graph"  # GitHub Classroom repositories: <assignment prefix>-<username>
CELL_TIMEOUT = 8


def variant(path: Path, task: int, code: str, *, before: bool = False) -> Path:
    """The solution with code added to (the start or the end of) a task's cell."""
    notebook = nbformat.read(SOLUTION, as_version=4)
    cell = next(c for c in notebook.cells if c.source.startswith(f"# TASK {task}"))
    cell.source = f"# TASK {task}\n{code}\n{cell.source}" if before else f"{cell.source}\n{code}"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def repository(root: Path, username: str, source: Path | None = None, notebook: str = "computational_graph.ipynb") -> Path:
    """A cloned student repository as `gh classroom clone student-repos` leaves it."""
    repo = root / f"{PREFIX}-{username}"
    (repo / ".git").mkdir(parents=True, exist_ok=True)
    (repo / "README.md").write_text("# Assignment\n", encoding="utf-8")
    if source is not None:
        shutil.copyfile(source, repo / notebook)
    return repo / notebook


# The class: username -> (how the notebook is made, expected outcome)
#   expected: ("graded", score) or ("failed", text in the reason) or ("graded-or-failed", None)
EXPECTED = {
    "alice-smith": ("graded", 20.0),        # correct
    "bob": ("graded", 18.0),                # wrong_function: loses t1_f_value (2)
    "carol-ann": ("graded", 17.0),          # error_in_task1: loses t1_f_value and t1_f_graph (3)
    "dave": ("failed", "not JSON"),         # not_json.ipynb
    "eve": ("graded", 16.0),                # os._exit(1) in task 2: the kernel dies, task 2 (4) lost
    "frank": ("graded", 16.0),              # endless loop at the start of task 3: interrupted, task 3 (4) lost
    "mallory": ("graded-or-failed", None),  # tries to kill the grading process from task 1
}
ROSTER_NAMES = {"alice-smith": "Alice Smith", "bob": "bob@example.edu", "carol-ann": "Carol-Ann Jones",
                "dave": "Dave", "eve": "Eve", "mallory": "Mallory"}  # frank is not on the roster


@dataclass
class ClassBatch:
    root: Path
    submissions: Path
    output: Path
    config: Path
    roster: Path
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    started_at: float = 0.0  # time.time() when the batch started

    def identity(self, username: str) -> str:
        return ROSTER_NAMES.get(username, f"{PREFIX}-{username}")

    def rows(self) -> dict[str, sqlite3.Row]:
        with sqlite3.connect(self.output / "gradebook.sqlite") as db:
            db.row_factory = sqlite3.Row
            return {r["student"]: r for r in db.execute("SELECT * FROM submissions")}

    def command(self, *extra) -> list[str]:
        return GRADE + [str(self.submissions), "--config", str(self.config), "--roster", str(self.roster),
                        "--jobs", "2"] + [str(e) for e in extra]


def build_class(root: Path) -> ClassBatch:
    submissions = root / f"{PREFIX}-submissions"
    repository(submissions, "alice-smith", SOLUTION)
    repository(submissions, "bob", CORPUS / "wrong_function.ipynb")
    repository(submissions, "carol-ann", CORPUS / "error_in_task1.ipynb")
    repository(submissions, "dave", CORPUS / "not_json.ipynb")
    variant(repository(submissions, "eve"), 2, "import os\nos._exit(1)")
    variant(repository(submissions, "frank"), 3, "while True:\n    pass", before=True)
    variant(repository(submissions, "mallory"), 1,
            "import os, signal\ntry:\n    os.kill(os.getppid(), signal.SIGKILL)\nexcept Exception:\n    pass",
            before=True)
    # Alice's repository also holds her scratch notebook: the one named like the exercise counts.
    shutil.copyfile(CORPUS / "untouched_exercise.ipynb", submissions / f"{PREFIX}-alice-smith" / "scratch.ipynb")
    (submissions / f"{PREFIX}-alice-smith" / ".ipynb_checkpoints").mkdir()
    shutil.copyfile(CORPUS / "not_json.ipynb",
                    submissions / f"{PREFIX}-alice-smith" / ".ipynb_checkpoints" / "computational_graph-checkpoint.ipynb")
    roster = root / "classroom_grades.csv"
    lines = ['"assignment_name","assignment_url","starter_code_url","github_username","roster_identifier",'
             '"student_repository_name","student_repository_url","submission_timestamp","points_awarded",'
             '"points_available"']
    for username, identity in ROSTER_NAMES.items():
        lines.append(f'"computational-graph","https://classroom.github.com/x","","{username}","{identity}",'
                     f'"{PREFIX}-{username}","https://github.com/org/{PREFIX}-{username}","2026-01-01","0","20"')
    lines.append('"computational-graph","https://classroom.github.com/x","","zoe","Zoe Quinn","","","","0","20"')
    lines.append('"computational-graph","https://classroom.github.com/x","","zed","Zed","'
                 f'{PREFIX}-zed","https://github.com/org/{PREFIX}-zed","","0","20"')
    roster.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config_dir = root / "config"
    config_dir.mkdir()
    config = write_config(config_dir, limits__cell_timeout=CELL_TIMEOUT, limits__notebook_timeout=90)
    batch = ClassBatch(root, submissions, root / "grading-output", config, roster, -1, "", "", 0.0, time.time())
    started = time.monotonic()
    result = subprocess.run(batch.command(), capture_output=True, text=True, timeout=600, cwd=root)
    batch.returncode, batch.stdout, batch.stderr = result.returncode, result.stdout, result.stderr
    batch.seconds = time.monotonic() - started
    return batch


def graded_class(tmp_path_factory) -> ClassBatch:
    """The class batch, run once per session (test_report_chromium.py reads it too)."""
    root = tmp_path_factory.getbasetemp() / "class-batch"
    done = root / "done.json"
    if done.exists():
        data = json.loads(done.read_text(encoding="utf-8"))
        return ClassBatch(**{**data, **{k: Path(data[k]) for k in ("root", "submissions", "output", "config", "roster")}})
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    batch = build_class(root)
    done.write_text(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in batch.__dict__.items()}),
                    encoding="utf-8")
    return batch


@pytest.fixture(scope="session")
def class_batch(tmp_path_factory) -> ClassBatch:
    return graded_class(tmp_path_factory)


# --------------------------------------------------------------------------- the rows

def test_the_batch_exits_0_and_says_where_its_output_went(class_batch):
    assert class_batch.returncode == 0, class_batch.stderr[-3000:]
    assert f"Output folder: {class_batch.output}" in class_batch.stdout
    assert "the default, beside the submissions" in class_batch.stdout
    assert "Traceback" not in class_batch.stdout + class_batch.stderr


def test_every_submission_has_the_right_row(class_batch):
    rows = class_batch.rows()
    assert set(rows) == {class_batch.identity(u) for u in EXPECTED}  # zoe and zed handed nothing in
    for username, (status, expected) in EXPECTED.items():
        row = rows[class_batch.identity(username)]
        # relative to the folder holding the PATH given: never the instructor's absolute path
        assert row["file"].startswith(f"{class_batch.submissions.name}/{PREFIX}-{username}/"), row["file"]
        assert row["content_hash"].startswith("sha256:") and row["grader_version"] and row["scoring_version"]
        assert row["started_at"] <= row["finished_at"]
        if status == "graded":
            assert (row["status"], row["score"], row["max_score"]) == ("graded", expected, 20.0), (username, dict(row))
            assert row["graded_by"] == "execution" and row["execution_seconds"] > 0 and row["wall_seconds"] > 0
        elif status == "failed":
            assert row["status"] == "failed" and row["failure_kind"] == "submission"
            assert row["reason"].startswith("could not read the submission: ") and expected in row["reason"]
            assert row["score"] is None
    mallory = rows["Mallory"]
    if mallory["status"] == "failed":  # no sandbox, no user of its own: the kernel killed its worker, and only it
        assert "the grading process died (killed by signal 9" in mallory["reason"]
    else:  # isolated kernel (issue 5): the kill could not reach the grader, so the solution's code earns it all
        assert (mallory["status"], mallory["score"]) == ("graded", 20.0)


def test_the_endless_loop_and_the_dead_kernel_are_explained(class_batch):
    rows = class_batch.rows()
    frank = json.loads(rows[f"{PREFIX}-frank"]["report_json"])
    assert any(f"ran longer than {CELL_TIMEOUT} s" in note for note in frank["notes"])
    eve = json.loads(rows["Eve"]["report_json"])
    assert any("kernel died" in note for note in eve["notes"])


def test_checks_and_snapshots_are_stored_as_plain_data(class_batch):
    with sqlite3.connect(class_batch.output / "gradebook.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        bob_id = db.execute("SELECT id FROM submissions WHERE student='bob@example.edu'").fetchone()[0]
        checks = db.execute("SELECT check_id, task, points, max_points, passed, message FROM checks "
                            "WHERE submission_id=? ORDER BY task, check_id", (bob_id,)).fetchall()
        assert len(checks) == 13 and sum(c[2] for c in checks) == 18
        failed = [c for c in checks if not c[4]]
        assert [(c[0], c[1], c[2], c[3]) for c in failed] == [("t1_f_value", 1, 0.0, 2.0)]
        assert "Expected:" in failed[0][5] and "Found:" in failed[0][5]
        runs = db.execute("SELECT run, evidence_json FROM snapshots WHERE submission_id=? ORDER BY run",
                          (bob_id,)).fetchall()
        assert [r[0] for r in runs] == [0, 1]  # the example inputs and one random run
        first = json.loads(runs[0][1])
        assert first["run"]["is_example"] is True and first["inputs"]["x"]["shape"] == [2, 3]
        f = first["snapshots"]["1"]["values"]["f"]
        assert f["kind"] == "tensor" and f["shape"] == [2, 3] and len(f["values"]) == 6
        assert not db.execute("SELECT count(*) FROM snapshots WHERE submission_id IN "
                              "(SELECT id FROM submissions WHERE status='failed')").fetchone()[0]


def test_the_roster_names_students_and_lists_who_is_missing(class_batch):
    rows = class_batch.rows()
    assert "Carol-Ann Jones" in rows and rows["Carol-Ann Jones"]["source_name"] == f"{PREFIX}-carol-ann"
    assert f"{PREFIX}-frank" in rows  # not on the roster: the folder name, never a guess
    assert f"{PREFIX}-frank" in class_batch.stderr and "not on the roster" in class_batch.stderr
    table = list(csv.DictReader(io.StringIO((class_batch.output / "grades.csv").read_text(encoding="utf-8"))))
    missing = {r["student"] for r in table if r["status"] == "missing"}
    assert missing == {"Zoe Quinn", "Zed"}
    assert "missing:" in class_batch.stdout and "Zoe Quinn" in class_batch.stdout


# ----------------------------------------------------------------------------- exports

def test_grades_csv_parses_with_csv_and_quotes_every_field(class_batch):
    text = (class_batch.output / "grades.csv").read_text(encoding="utf-8")
    table = list(csv.reader(io.StringIO(text)))
    header = table[0]
    assert header == ["student", "file", "task_1", "task_2", "task_3", "task_4", "task_5", "total", "max", "percent",
                      "status", "reason", "raw_total", "late_penalty", "submitted_at", "integrity", "flags", "overrides",
                      "comments"]
    assert len(table) == 1 + len(EXPECTED) + 2
    for line in text.splitlines():
        assert re.fullmatch(r'"([^"]|"")*"(,"([^"]|"")*")*', line), line
    by_student = {r[0]: dict(zip(header, r)) for r in table[1:]}
    bob = by_student["bob@example.edu"]
    assert (bob["task_1"], bob["task_2"], bob["total"], bob["max"], bob["percent"], bob["status"]) == \
        ("1", "4", "18", "20", "90.0", "graded")
    dave = by_student["Dave"]
    assert dave["status"] == "could not grade" and "not JSON" in dave["reason"] and dave["task_1"] == ""
    assert dave["total"] == dave["percent"] == ""  # blank, never 0
    assert bob["file"] == f"{PREFIX}-submissions/{PREFIX}-bob/computational_graph.ipynb"  # relative, never absolute
    assert not any(cell.startswith("/") for row in table for cell in row)
    assert [r[0] for r in table[1:]] == sorted((r[0] for r in table[1:]), key=str.casefold)


def test_feedback_is_the_terminal_report_the_student_would_see(class_batch):
    from dataclasses import replace

    from torchgrade.results import report_from_dict
    from torchgrade.render.terminal import render_terminal

    row = class_batch.rows()["bob@example.edu"]
    report = report_from_dict(json.loads(row["report_json"]))
    expected = render_terminal(replace(report, submission="computational_graph.ipynb"))  # no instructor folders
    markdown = (class_batch.output / "feedback" / "bob@example.edu.md").read_text(encoding="utf-8")
    assert expected in markdown and "Score: 18 / 20" in markdown
    page = (class_batch.output / "feedback" / "bob@example.edu.html").read_text(encoding="utf-8")
    assert "Score: 18 / 20" in page and '<li class="failed" id="check-t1_f_value">' in page and "<pre" not in page
    assert str(class_batch.root) not in page and str(class_batch.root) not in markdown
    dave = (class_batch.output / "feedback" / "Dave.md").read_text(encoding="utf-8")
    assert "not graded" in dave and "not JSON" in dave and "What to do:" in dave
    names = {p.name for p in (class_batch.output / "feedback").iterdir()}
    assert {"Alice_Smith.md", "Alice_Smith.html", "Carol-Ann_Jones.html", "Zoe_Quinn.md", "instructor"} <= names
    assert (class_batch.output / "feedback" / "instructor" / "bob@example.edu.html").is_file()


def test_lms_exports_and_checks_csv_sit_beside_grades_csv(class_batch):
    canvas = list(csv.DictReader(open(class_batch.output / "canvas.csv", encoding="utf-8")))
    assert list(canvas[0])[:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    scores = {r["Student"]: r["Computational graphs and autograd"] for r in canvas}
    assert scores["bob@example.edu"] == "18" and scores["Dave"] == "" and scores["Zoe Quinn"] == ""
    moodle = list(csv.DictReader(open(class_batch.output / "moodle.csv", encoding="utf-8")))
    assert {r["Email address"]: r["Computational graphs and autograd"] for r in moodle} == {"bob@example.edu": "18"}
    checks = list(csv.DictReader(open(class_batch.output / "checks.csv", encoding="utf-8")))
    carol = {r["check"]: r["status"] for r in checks if r["student"] == "Carol-Ann Jones"}
    assert carol["t1_f_value"] == "failed" and carol["t2_grad_values"] == "passed"


def test_the_report_is_one_offline_file_with_embedded_plots(class_batch):
    page = (class_batch.output / "report.html").read_text(encoding="utf-8")
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing loaded from anywhere
    assert "<img" not in page
    charts = re.findall(r'<svg class="plot" id="([a-z-]+)" role="img"(.*?)</svg>', page, re.S)
    assert [name for name, _ in charts] == ["score-histogram", "check-plot", "task-plot"]
    assert all("<rect " in body and "<title" in body for _, body in charts)
    failures = page[page.index('id="failure-messages"'):]
    assert "t1_f_value" in failures and "bob@example.edu" in failures
    assert 'href="feedback/instructor/bob@example.edu.html"' in page
    assert 'id="grid"' in page and 'id="nav"' in page and 'id="legend"' in page


def test_the_summary_counts_and_explains(class_batch):
    out = class_batch.stdout
    graded = sum(1 for status, _ in EXPECTED.values() if status == "graded")
    assert re.search(r"graded:\s+(\d+)", out) and int(re.search(r"graded:\s+(\d+)", out).group(1)) >= graded
    assert re.search(r"could not grade:\s+[12]\b", out)
    assert "Dave" in out and "not JSON" in out
    assert re.search(r"score:\s+mean \d+\.\d\d / 20, median [\d.]+", out)
    assert re.search(r"wall time:\s+\d+:\d\d", out)
    assert re.search(r"\[\d+/7\] ", class_batch.stderr)  # progress lines (not a terminal: one per submission)


# ------------------------------------------------------------------ rerun and re-score

@pytest.fixture(scope="module")
def copied_output(class_batch, tmp_path_factory):
    """A private copy of the graded class (gradebook included) for tests that write to it."""
    def copy(name: str) -> Path:
        target = tmp_path_factory.mktemp(name) / "grading-output"
        shutil.copytree(class_batch.output, target)
        return target
    return copy


def skip_if_the_engine_changed_since(batch: ClassBatch) -> None:
    """Re-running compares fingerprints of the engine's source: an edit made meanwhile (a shared working tree
    with other engineers at work) rightly means running the notebooks again, which these tests forbid."""
    changed = [p.name for p in (ROOT / "torchgrade").rglob("*.py") if p.stat().st_mtime > batch.started_at - 1]
    if changed:
        pytest.skip(f"torchgrade's source changed while the tests ran ({', '.join(sorted(changed))})")


def run_in_process(monkeypatch, capsys, argv: list[str]):
    """cli.main in this process, with worker processes forbidden: any execution fails the test."""
    from torchgrade import cli
    from torchgrade.batch import worker
    from torchgrade.evidence_store import NoExecution

    def refuse(self, job):
        raise AssertionError(f"a notebook was executed: {job.student}")

    monkeypatch.setattr(worker.Pool, "start", refuse)
    NoExecution.calls = 0
    status = cli.main(argv)
    assert NoExecution.calls == 0
    return status, capsys.readouterr()


def test_a_rerun_skips_what_is_already_graded(class_batch, copied_output, monkeypatch, capsys):
    skip_if_the_engine_changed_since(class_batch)
    output = copied_output("rerun")
    before = {k: dict(v) for k, v in ClassBatch(**{**class_batch.__dict__, "output": output}).rows().items()}
    argv = [str(class_batch.submissions), "--config", str(class_batch.config), "--roster", str(class_batch.roster),
            "--output-dir", str(output), "--jobs", "2"]
    status, captured = run_in_process(monkeypatch, capsys, argv)
    assert status == 0
    assert "notebooks run:    0" in captured.out and "unchanged:        7" in captured.out
    after = {k: dict(v) for k, v in ClassBatch(**{**class_batch.__dict__, "output": output}).rows().items()}
    assert after == before  # nothing regraded, nothing duplicated


def test_a_points_change_rescores_stored_snapshots_without_running_notebooks(class_batch, copied_output, tmp_path,
                                                                           monkeypatch, capsys):
    skip_if_the_engine_changed_since(class_batch)
    output = copied_output("rescore")
    config = write_config(tmp_path, limits__cell_timeout=CELL_TIMEOUT, limits__notebook_timeout=90,
                          checks__t1_f_value__points=5, checks__t5_retain_graph__points=3,
                          tolerance__rtol=1e-4)
    argv = [str(class_batch.submissions), "--config", str(config), "--roster", str(class_batch.roster),
            "--output-dir", str(output), "--jobs", "2"]
    started = time.monotonic()
    status, captured = run_in_process(monkeypatch, capsys, argv)
    assert status == 0 and time.monotonic() - started < 60
    assert "notebooks run:    0" in captured.out
    assert re.search(r"re-checked:\s+\d+ from stored snapshots, without running their notebooks \(\d+ because "
                     r"points, tolerances or messages changed\)", captured.out)
    rows = ClassBatch(**{**class_batch.__dict__, "output": output}).rows()
    assert (rows["Alice Smith"]["score"], rows["Alice Smith"]["max_score"]) == (25.0, 25.0)
    assert rows["bob@example.edu"]["score"] == 20.0  # lost t1_f_value, now worth 5
    assert rows["Carol-Ann Jones"]["score"] == 19.0  # lost t1_f_value (5) and t1_f_graph (1)
    assert rows["bob@example.edu"]["graded_by"] == "rescore"
    original = class_batch.rows()
    for student in ("Alice Smith", "bob@example.edu"):
        assert rows[student]["execution_seconds"] == original[student]["execution_seconds"]
    assert rows["Dave"]["status"] == "failed"
    csv_rows = {r["student"]: r for r in csv.DictReader(open(output / "grades.csv", encoding="utf-8"))}
    assert csv_rows["bob@example.edu"]["max"] == "25" and csv_rows["bob@example.edu"]["task_1"] == "1"


def test_force_regrades_even_unchanged_submissions(class_batch, tmp_path, capsys):
    """Bob's file under a new name reuses its stored snapshots; --force runs it again and replaces its row."""
    from torchgrade import cli

    skip_if_the_engine_changed_since(class_batch)

    output = tmp_path / "out"
    shutil.copytree(class_batch.output, output)
    copy = tmp_path / "bob.ipynb"
    shutil.copyfile(class_batch.submissions / f"{PREFIX}-bob" / "computational_graph.ipynb", copy)
    argv = [str(copy), str(class_batch.submissions / f"{PREFIX}-dave"), "--config", str(class_batch.config),
            "--output-dir", str(output), "--jobs", "2"]
    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    assert "re-checked:       1" in first and "identical to a file graded before" in first, first
    assert "notebooks run:    1" in first  # Dave's unreadable file, now under another name
    assert cli.main(argv + ["--force"]) == 0
    forced = capsys.readouterr().out
    assert "notebooks run:    2" in forced
    with sqlite3.connect(output / "gradebook.sqlite") as db:
        assert db.execute("SELECT count(*) FROM submissions WHERE student='bob'").fetchone()[0] == 1
        assert db.execute("SELECT graded_by, score FROM submissions WHERE student='bob'").fetchone() == ("execution", 18.0)
        assert db.execute("SELECT count(*) FROM batches").fetchone()[0] == 3  # the class batch and these two


# ------------------------------------------------- the whole gradebook, after grading

def test_grading_one_notebook_into_the_class_folder_keeps_every_row_in_the_exports(class_batch, copied_output,
                                                                                  tmp_path, monkeypatch, capsys):
    """One notebook with --output-dir is a batch of one; the exports still describe the whole class."""
    skip_if_the_engine_changed_since(class_batch)
    output = copied_output("subset")
    bob = tmp_path / "bob@example.edu.ipynb"  # bob's file, named as the gradebook knows him; no --roster:
    shutil.copyfile(class_batch.submissions / f"{PREFIX}-bob" / "computational_graph.ipynb", bob)  # it is stored
    argv = [str(bob), "--config", str(class_batch.config), "--output-dir", str(output)]
    status, captured = run_in_process(monkeypatch, capsys, argv)
    assert status == 0 and "unchanged:        1" in captured.out
    table = list(csv.DictReader(open(output / "grades.csv", encoding="utf-8")))
    assert len(table) == len(EXPECTED) + 2  # every student, not only the one just graded
    page = (output / "report.html").read_text(encoding="utf-8")
    assert f'<b>{len(EXPECTED)}</b>submissions' in page
    # the summary counts the whole gradebook too: the class's earlier failures are still there, and listed
    failed = [r["student"] for r in table if r["status"] == "could not grade"]
    assert failed and f"could not grade:  {len(failed)}" in captured.out
    assert all(f"    - {student} (" in captured.out for student in failed)
    # with the roster: of its students not in this batch, only those with no row at all are "without one"
    argv += ["--roster", str(class_batch.roster)]
    status, captured = run_in_process(monkeypatch, capsys, argv)
    table = list(csv.DictReader(open(output / "grades.csv", encoding="utf-8")))
    missing = [r["student"] for r in table if r["status"] == "missing"]
    assert status == 0 and missing and f"1 submission and {len(missing)} roster student(s) without one" in captured.out


def test_export_override_and_comment_work_on_the_gradebook_without_grading(class_batch, copied_output, monkeypatch,
                                                                           capsys):
    output = copied_output("decisions")
    base = ["--config", str(class_batch.config), "--output-dir", str(output)]
    (output / "grades.csv").unlink()
    status, captured = run_in_process(monkeypatch, capsys, base + ["--export"])
    assert status == 0 and (output / "grades.csv").is_file() and "Rebuilt the exports" in captured.out
    status, captured = run_in_process(monkeypatch, capsys, base + ["--override", "bob@example.edu", "t1_f_value", "2",
                                                                   "--reason", "right idea, typo in an exponent"])
    assert status == 0 and "t1_f_value = 2/2" in captured.out
    status, _ = run_in_process(monkeypatch, capsys, base + ["--comment", "bob@example.edu", "Nice `backward()` work."])
    assert status == 0
    table = {r["student"]: r for r in csv.DictReader(open(output / "grades.csv", encoding="utf-8"))}
    assert (table["bob@example.edu"]["total"], table["bob@example.edu"]["raw_total"]) == ("20", "18")
    assert "right idea" in table["bob@example.edu"]["overrides"] and "Nice" in table["bob@example.edu"]["comments"]
    page = (output / "feedback" / "bob@example.edu.html").read_text(encoding="utf-8")
    assert "Changed by your instructor" in page and "right idea, typo in an exponent" in page
    assert "Nice <code>backward()</code> work." in page
    report = (output / "report.html").read_text(encoding="utf-8")
    assert "right idea, typo in an exponent" in report
    # a regrade keeps the instructor's decisions
    skip_if_the_engine_changed_since(class_batch)
    bob = output.parent / "bob@example.edu.ipynb"
    shutil.copyfile(class_batch.submissions / f"{PREFIX}-bob" / "computational_graph.ipynb", bob)
    (output.parent / "points").mkdir()
    config = write_config(output.parent / "points", limits__cell_timeout=CELL_TIMEOUT, limits__notebook_timeout=90,
                          checks__t5_forward__points=2)  # bob's row is re-scored (max 21), not kept as it was
    argv = [str(bob), "--config", str(config), "--output-dir", str(output)]
    status, captured = run_in_process(monkeypatch, capsys, argv)
    assert "re-checked:       1" in captured.out
    table = {r["student"]: r for r in csv.DictReader(open(output / "grades.csv", encoding="utf-8"))}
    assert status == 0 and (table["bob@example.edu"]["raw_total"], table["bob@example.edu"]["total"]) == ("19", "21")
    base = ["--config", str(config), "--output-dir", str(output)]
    status, _ = run_in_process(monkeypatch, capsys, base + ["--clear-override", "bob@example.edu"])
    table = {r["student"]: r for r in csv.DictReader(open(output / "grades.csv", encoding="utf-8"))}
    assert status == 0 and table["bob@example.edu"]["total"] == "19"
    # an override for a student with nothing graded is kept (it counts once graded), and the instructor is told
    dave = next(r["student"] for r in csv.DictReader(open(output / "grades.csv", encoding="utf-8"))
                if r["status"] == "could not grade")
    status, captured = run_in_process(monkeypatch, capsys, base + ["--override", dave, "t1_f_value", "1", "--reason",
                                                                   "x"])
    assert status == 0 and f"note: {dave} has no graded submission (it could not be graded)" in captured.out
    # mistakes are one-line usage errors (exit 2)
    for extra, words in ((["--override", "nobody", "t1_f_value", "1", "--reason", "x"], "no student"),
                         (["--override", "bob@example.edu", "t9_nope", "1", "--reason", "x"], "no check"),
                         (["--override", "bob@example.edu", "t1_f_value", "7", "--reason", "x"], "between 0 and 2"),
                         (["--override", "bob@example.edu", "t1_f_value", "1"], "needs --reason")):
        status, captured = run_in_process(monkeypatch, capsys, base + extra)
        assert status == 2 and words in captured.err, (extra, captured.err)
