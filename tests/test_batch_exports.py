"""Exports built from a gradebook, without running a notebook: the corpus reports (graded once per
session in conftest.py) are saved into a gradebook as a small class, with a roster, overrides,
comments, a late policy, a copied submission, a blank one and an unreadable one. Then every
export is rebuilt and read back: grades.csv, checks.csv, the LMS files, feedback and the report.
"""

from __future__ import annotations

import csv
import sqlite3
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import ASSIGNMENT, CORPUS, ROOT
from torchgrade.batch.gradebook import Gradebook, Outcome, RosterStudent
from torchgrade.batch.gradebook_schema import SCHEMA
from torchgrade.batch.integrity import code_hash, normalised_code
from torchgrade.batch.late import lateness
from torchgrade.batch.facts import grader_facts
from torchgrade.batch.publish import export_gradebook
from torchgrade.batch.roster import assign, load_roster, parse_lms_name
from torchgrade.batch.discover import discover
from torchgrade.config import LatePolicy, LmsExport

NAME = "computational_graph"
CLASS = {  # student -> corpus notebook
    "alice": "correct_solution.ipynb",
    "bob": "wrong_function.ipynb",
    "carol": "missing_retain_graph.ipynb",
    "dan": "untouched_exercise.ipynb",
    "erin": "error_in_task1.ipynb",
    "fay": "task_cell_deleted.ipynb",
    "gus": "wrong_function.ipynb",  # bob's file, byte for byte
    "<b>hal</b>": "hardcoded_f.ipynb",
}
DEADLINE = datetime(2026, 12, 1, tzinfo=timezone.utc)
HIDDEN = "t5_retain_graph"


def outcome(student: str, report, **changes) -> Outcome:
    base = dict(student=student, source_name=student, file=f"subs/{student}/computational_graph.ipynb",
                content_hash="sha256:" + CLASS.get(student, student), grader_version="g", scoring_version="s",
                status="graded", graded_by="execution", started_at="2026-11-30T10:00:00+00:00", report=report,
                code_hash=code_hash(CORPUS / CLASS[student]) if student in CLASS else None,
                submitted_at="2026-11-30T12:00:00+00:00")
    return Outcome(**{**base, **changes})


def hide(report):
    tasks = tuple(replace(t, checks=tuple(replace(c, hidden=c.id == HIDDEN) for c in t.checks)) for t in report.tasks)
    return replace(report, tasks=tasks)


@pytest.fixture(scope="module")
def entry():
    checks = {k: (v.model_copy(update={"hidden": True}) if k == HIDDEN else v) for k, v in ASSIGNMENT.checks.items()}
    return ASSIGNMENT.model_copy(update={
        "checks": checks,
        "late_policy": LatePolicy(deadline=DEADLINE, grace_minutes=30, penalty_per_day=10, max_penalty=30),
        "lms": LmsExport(canvas_column="Homework 1 (4242)")})


@pytest.fixture(scope="module")
def exported(corpus_reports, entry, tmp_path_factory):
    output = tmp_path_factory.mktemp("exports")
    book = Gradebook(output / "gradebook.sqlite")
    for student, notebook in CLASS.items():
        late = {"bob": "2026-12-03T10:00:00+00:00", "erin": "2026-12-01T00:20:00+00:00"}
        book.save(NAME, outcome(student, hide(corpus_reports[notebook]),
                                submitted_at=late.get(student, "2026-11-30T12:00:00+00:00")), None)
    book.save(NAME, outcome("ivy", None, status="failed", graded_by="none", failure_kind="submission",
                            reason="/home/prof/course/subs/ivy/computational_graph.ipynb: not JSON (line 1)",
                            content_hash="sha256:ivy"), None)
    book.replace_roster([RosterStudent("alice", name="Alice Smith", email="alice@x.edu", lms_id="101",
                                       sis_user_id="S101", sis_login_id="alice", section="A"),
                         RosterStudent("bob", email="bob@x.edu", id_number="2002"),
                         RosterStudent("zoe", name="Zoe Quinn", email="zoe@x.edu")])
    book.set_override(NAME, "carol", "t5_grad_values", 1, "half right: the order of the passes")
    book.add_comment(NAME, "carol", "Come and see me about `retain_graph=True`.")
    rows, notes = export_gradebook(book, NAME, entry, grader_facts(NAME, entry), output, ["a note"])
    book.close()
    return output, {r.student: r for r in rows}, notes


def table(path: Path) -> list[dict]:
    return list(csv.DictReader(open(path, encoding="utf-8")))


def test_grades_csv_has_every_row_blank_for_ungradeable_and_final_after_overrides_and_lateness(exported):
    output, rows, _ = exported
    grades = {r["student"]: r for r in table(output / "grades.csv")}
    assert set(grades) == set(CLASS) | {"ivy", "zoe"}
    assert grades["ivy"]["total"] == grades["ivy"]["percent"] == "" and grades["ivy"]["status"] == "could not grade"
    assert grades["zoe"]["status"] == "missing" and grades["zoe"]["total"] == ""
    assert (grades["carol"]["raw_total"], grades["carol"]["total"]) == ("17", "18")  # +1 by override
    # bob: 2 days 9.5 h after the deadline and grace: 3 started days, 30% of 20 = 6 points
    assert (grades["bob"]["raw_total"], grades["bob"]["late_penalty"], grades["bob"]["total"]) == ("18", "6", "12")
    assert grades["erin"]["late_penalty"] == ""  # 20 minutes late: inside the 30-minute grace period
    assert grades["dan"]["integrity"] == "untouched exercise"
    assert grades["bob"]["integrity"] == "identical file to gus" and grades["gus"]["integrity"] == "identical file to bob"
    assert grades["<b>hal</b>"]["total"] == "17"  # markup in a name is text in a CSV


def test_lms_files_follow_their_formats_and_leave_ungradeable_blank(exported):
    output, _, notes = exported
    canvas = table(output / "canvas.csv")
    assert list(canvas[0]) == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Homework 1 (4242)"]
    by_name = {r["Student"]: r for r in canvas}
    assert by_name["Alice Smith"] == {"Student": "Alice Smith", "ID": "101", "SIS User ID": "S101",
                                      "SIS Login ID": "alice", "Section": "A", "Homework 1 (4242)": "20"}
    assert by_name["ivy"]["Homework 1 (4242)"] == "" and by_name["Zoe Quinn"]["Homework 1 (4242)"] == ""
    assert by_name["bob"]["Homework 1 (4242)"] == "12"  # the final score
    moodle = table(output / "moodle.csv")  # the roster's students have emails: Moodle identifies users by them
    assert list(moodle[0]) == ["Email address", "Computational graphs and autograd"]
    assert {r["Email address"]: r["Computational graphs and autograd"] for r in moodle} == \
        {"alice@x.edu": "20", "bob@x.edu": "12", "zoe@x.edu": ""}
    gradescope = table(output / "gradescope.csv")
    assert list(gradescope[0]) == ["Name", "Email", "SID", "Score"]
    assert {r["Email"]: (r["SID"], r["Score"]) for r in gradescope if r["Email"]}["bob@x.edu"] == ("2002", "12")
    # the students the roster does not know cannot be matched by Canvas nor be in moodle.csv: the summary says who
    canvas_note, note = notes
    assert canvas_note.startswith("canvas.csv: Canvas cannot match 9 student(s) with no Canvas ID in the roster (")
    assert "bob" in canvas_note and "Alice" not in canvas_note  # bob is on the roster, with an email only
    assert note.startswith("moodle.csv leaves out 7 student(s) with no email address in the roster (") and \
        note.endswith(" and 2 more): enter their grades in Moodle by hand, or add the column to the roster")


def test_student_feedback_never_names_a_hidden_check_the_instructor_copy_does(exported, corpus_reports):
    output, _, _ = exported
    hidden = next(c for c in corpus_reports["correct_solution.ipynb"].checks if c.id == HIDDEN)
    for name in ("carol", "alice", "bob"):
        for path in (output / "feedback" / f"{name}.html", output / "feedback" / f"{name}.md"):
            text = path.read_text(encoding="utf-8")
            assert HIDDEN not in text and hidden.title not in text, path
            assert "1 hidden check worth 1 point" in text, path
        instructor = (output / "feedback" / "instructor" / f"{name}.html").read_text(encoding="utf-8")
        assert hidden.title in instructor and "instructor copy" in instructor
    carol = (output / "feedback" / "carol.md").read_text(encoding="utf-8")
    assert "you earned 0 of them" in carol  # carol lost the hidden retain_graph check
    report = (output / "report.html").read_text(encoding="utf-8")
    assert hidden.title in report  # the class report is an instructor's view


def test_feedback_pages_read_well_and_leak_no_instructor_path(exported):
    output, _, _ = exported
    carol = (output / "feedback" / "carol.html").read_text(encoding="utf-8")
    assert "<pre" not in carol and 'name="viewport"' in carol and "<h2" in carol
    assert carol.index('id="fix-first"') < carol.index('id="task-1"')  # what failed comes first
    assert "<code>retain_graph=True</code>" in carol and "half right: the order of the passes" in carol
    assert "missing_retain_graph.ipynb" in carol and str(CORPUS) not in carol
    dan = (output / "feedback" / "dan.md").read_text(encoding="utf-8")
    assert "none of the tasks was attempted" in dan and "Expected:" not in dan  # one message, not 13 failures
    ivy = (output / "feedback" / "ivy.html").read_text(encoding="utf-8")
    assert "/home/prof" not in ivy and "computational_graph.ipynb: not JSON" in ivy and "What to do:" in ivy
    hal = (output / "feedback" / "instructor" / "b_hal_b.html").read_text(encoding="utf-8")
    assert "<b>hal</b>" not in hal and "&lt;b&gt;hal&lt;/b&gt;" in hal


def test_the_report_groups_failures_by_check_and_leaves_blank_submissions_out(exported):
    from html.parser import HTMLParser

    output, rows, _ = exported
    page = (output / "report.html").read_text(encoding="utf-8")

    class Rows(HTMLParser):
        def __init__(self):
            super().__init__()
            self.checks: list[str] = []

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "tr" and attrs.get("class") == "failure":
                self.checks.append(attrs["data-check"])

    parser = Rows()
    parser.feed(page)
    order = parser.checks
    assert order and all(order.index(c) == i or order[i - 1] == c for i, c in enumerate(order))  # grouped by check
    failures = page[page.index('id="failure-messages"'):page.index('id="tasks"')]
    assert ">dan<" not in failures  # the blank submission is not counted in the failures
    import re

    attempted = [r for r in rows.values() if r.graded and not r.blank]  # nor in the tasks' rates (dan scores 0)
    full_task1 = sum(1 for r in attempted if r.task_score(1) == 3) / len(attempted)
    [shown] = re.findall(r'<td>Task 1</td>.*?data-rate="([0-9.]+)"', page)
    assert float(shown) == pytest.approx(full_task1, abs=1e-4) and rows["dan"].blank
    assert 'id="nav"' in page and 'id="grid"' in page and 'id="legend"' in page and 'id="score-bins"' in page
    assert "&lt;b&gt;hal&lt;/b&gt;" in page and "<b>hal</b>" not in page
    for key in ("Task 1: f equals", "untouched exercise", "identical file to gus"):
        assert key in page


def test_late_policy_counts_started_days_caps_and_honours_the_lms_mark():
    policy = LatePolicy(deadline=DEADLINE, grace_minutes=0, penalty_per_day=20, max_penalty=50)
    assert lateness(policy, "2026-11-30T23:00:00+00:00", False, 20, 18).days == 0
    assert lateness(policy, "2026-12-01T00:00:01+00:00", False, 20, 18).penalty == 4
    assert lateness(policy, "2026-12-09T00:00:00+00:00", False, 20, 18).penalty == 10  # capped at 50%
    assert lateness(policy, None, True, 20, 18).days == 1  # Canvas said LATE, no time known: one day
    capped = LatePolicy(deadline=DEADLINE, late_cap=60)
    assert lateness(capped, "2026-12-02T00:00:00+00:00", False, 20, 18).penalty == 6  # scores at most 12
    assert lateness(None, "2030-01-01T00:00:00+00:00", True, 20, 18).penalty == 0


def test_lms_download_names_are_parsed_exactly_as_the_lms_writes_them(tmp_path):
    late = parse_lms_name("jonescarol_LATE_234567_8901234_name-1")
    assert (late.lms, late.name, late.user_id, late.late, late.original) == \
        ("canvas", "jonescarol", "234567", True, "name-1")
    assert parse_lms_name("smithann_1001_777_computational_graph").late is False
    moodle = parse_lms_name("Carol Ann Jones_4321_assignsubmission_file_")
    assert (moodle.lms, moodle.name, moodle.user_id) == ("moodle", "Carol Ann Jones", "4321")
    for other in ("computational-graph-mary-jane", "alice", "smith_ann", "a_1_b"):
        assert parse_lms_name(other) is None  # never guessed from - or _
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "jonescarol_LATE_234567_8901234_name-1.ipynb").write_text("{}", encoding="utf-8")
    (subs / "smithann_1001_777_computational_graph.ipynb").write_text("{}", encoding="utf-8")
    found = discover([subs], tmp_path / "u", "computational_graph.ipynb")
    result = assign(found, None)
    assert sorted(i for i, _ in result.submissions) == ["jonescarol", "smithann"]
    assert result.lms_names["jonescarol"].late and not result.lms_names["smithann"].late
    roster = tmp_path / "canvas.csv"
    roster.write_text('Student,ID,SIS User ID,SIS Login ID,Section,Homework 1 (4242)\n'
                      '    Points Possible,,,,,20\n"Jones, Carol",234567,S1,cjones,A,\n"Smith, Ann",1001,S2,asmith,B,\n',
                      encoding="utf-8")
    by_id = assign(found, load_roster(roster))
    assert sorted(i for i, _ in by_id.submissions) == ["Jones, Carol", "Smith, Ann"]
    assert by_id.lms_names["Jones, Carol"].late


def test_code_hash_ignores_comments_and_layout(tmp_path):
    assert normalised_code("x = 1  # one\n\n\ny=  2\n") == normalised_code("x=1\ny = 2")
    assert code_hash(CORPUS / "untouched_exercise.ipynb") == code_hash(ROOT / "exercises" / "computational_graph.ipynb")
    assert code_hash(CORPUS / "correct_solution.ipynb") != code_hash(CORPUS / "untouched_exercise.ipynb")
    assert code_hash(CORPUS / "not_json.ipynb") is None


def test_a_schema_1_gradebook_is_upgraded_in_place(tmp_path):
    path = tmp_path / "g.sqlite"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute("INSERT INTO submissions (assignment, student, source_name, file, content_hash, grader_version, "
               "scoring_version, status, graded_by, started_at, finished_at) VALUES "
               "('a', 'old', 'old', 'f', 'h', 'g', 's', 'failed', 'none', 't', 't')")
    db.commit()
    db.close()
    book = Gradebook(path)
    assert [r.student for r in book.rows("a")] == ["old"] and book.rows("a")[0].code_hash is None
    book.set_override("a", "old", "c", 1, "why")
    assert book.overrides("a")[0].author and book.db.execute(
        "SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "2"


def test_submission_time_prefers_the_commit_then_the_lms_name_then_the_file(tmp_path):
    import os
    import subprocess

    from torchgrade.batch.late import submission_time

    repo = tmp_path / "hw-ann"
    repo.mkdir()
    notebook = repo / "computational_graph.ipynb"
    notebook.write_text("{}", encoding="utf-8")
    env = {**os.environ, "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@x", "GIT_COMMITTER_NAME": "a",
           "GIT_COMMITTER_EMAIL": "a@x", "GIT_COMMITTER_DATE": "2026-12-02T08:00:00+01:00"}
    for command in (["init", "-q"], ["add", "."], ["commit", "-qm", "hw"]):
        subprocess.run(["git", "-C", str(repo), *command], check=True, env=env, capture_output=True)
    committed = submission_time(notebook, repo, False, None)
    assert (committed.at, committed.via) == ("2026-12-02T07:00:00+00:00", "commit")  # committer time, in UTC
    os.utime(notebook, (1_700_000_000, 1_700_000_000))
    plain = submission_time(notebook, None, False, None)
    assert (plain.via, plain.at) == ("file", "2023-11-14T22:13:20+00:00")
    lms = submission_time(notebook, None, False, True)
    assert (lms.via, lms.late_mark) == ("lms", True)
    assert submission_time(notebook, None, True, None).at is None  # a zip member's time says nothing
    fake = tmp_path / "not-a-repo"
    (fake / ".git").mkdir(parents=True)
    assert submission_time(notebook, fake, False, None).via == "file"  # a broken .git: fall back to the file
