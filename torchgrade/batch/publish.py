"""Rebuild every export from the whole gradebook: grades.csv, checks.csv, the LMS files,
feedback/ and report.html.

Called after each batch (so grading a subset never shrinks the exports), and alone by
``python grade.py --output-dir OUT --export`` and after ``--override``/``--comment``.
Nothing here runs a notebook: rows, overrides, comments and the roster come from the
gradebook; the late policy and points from config.yaml.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..config import AssignmentConfig
from ..results import CheckResult, GradeReport
from .exports import (
    StudentRow, feedback_names, prune_feedback, write_checks_csv, write_feedback, write_grades_csv,
)
from .facts import GraderFacts
from .gradebook import Gradebook, Override, RosterStudent
from .integrity import code_hash, integrity_flags
from .late import lateness
from .lms import write_lms_exports
from .report import render_report


def apply_overrides(report: GradeReport, overrides: dict[str, Override]) -> GradeReport:
    """The report with the instructor's points in place of the autograder's for overridden checks."""
    if not overrides:
        return report

    def changed(check: CheckResult) -> CheckResult:
        made = overrides.get(check.id)
        if made is None:
            return check
        points = min(max(made.points, 0.0), check.max_score)
        passed = points >= check.max_score
        note = f"Score set to {points:g} by your instructor: {made.reason}" if passed else check.note
        return replace(check, score=points, passed=passed, note=note, error="" if passed else check.error)

    tasks = tuple(replace(t, checks=tuple(changed(c) for c in t.checks)) for t in report.tasks)
    return replace(report, tasks=tasks)


def student_rows(book: Gradebook, name: str, entry: AssignmentConfig, max_total: float) -> list[StudentRow]:
    roster = {s.identity: s for s in book.roster()}
    overrides: dict[str, dict[str, Override]] = {}
    for made in book.overrides(name):
        overrides.setdefault(made.student, {})[made.check_id] = made
    comments: dict[str, list] = {}
    for comment in book.comments(name):
        comments.setdefault(comment.student, []).append((comment.text, comment.author, comment.created_at))
    stored = book.rows(name)
    flags = integrity_flags(stored, code_hash(Path(entry.exercise)))
    rows: list[StudentRow] = []
    for row in stored:
        report = row.report() if row.status == "graded" else None
        mine = overrides.get(row.student, {})
        student = StudentRow(row.student, row.file, "graded" if report else "could not grade",
                             "" if report else (row.reason or ""), ids=roster.get(row.student),
                             submitted_at=row.submitted_at, comments=comments.get(row.student, []),
                             flags=flags.get(row.student, []), content_hash=row.content_hash, code_hash=row.code_hash)
        if report is not None:
            adjusted = apply_overrides(report, mine)
            points = {c.id: c.max_score for c in report.checks}
            student.report, student.raw_score = adjusted, report.score
            student.overrides = [(o.check_id, o.points, points.get(o.check_id, 0.0), o.reason, o.author, o.created_at)
                                 for o in mine.values() if o.check_id in points]
            student.late = lateness(entry.late_policy, row.submitted_at, bool(row.late_mark), adjusted.max_score,
                                    adjusted.score)
        rows.append(student)
    graded = {r.student for r in rows}
    rows += [StudentRow(s.identity, "", "missing", "no submission found", ids=s, comments=comments.get(s.identity, []))
             for s in roster.values() if s.identity not in graded]
    rows.sort(key=lambda r: (r.student.casefold(), r.student))
    return rows


def export_gradebook(book: Gradebook, name: str, entry: AssignmentConfig, facts: GraderFacts, output: Path,
                     notes: list[str]) -> tuple[list[StudentRow], list[str]]:
    """Write every export from every row, laid out by the grader's tasks and checks; returns the rows and notes for
    the summary."""
    tasks, checks, max_total = list(facts.tasks), list(facts.checks), facts.max_total
    rows = student_rows(book, name, entry, max_total)
    names = feedback_names([r.student for r in rows])
    for row in rows:
        row.feedback = names[row.student]
    write_grades_csv(output / "grades.csv", rows, tasks, max_total)
    write_checks_csv(output / "checks.csv", rows)
    said = write_lms_exports(output, rows, entry)
    feedback = output / "feedback"
    prune_feedback(feedback, set(names.values()))
    write_feedback(feedback, rows, entry.title)
    html_text = render_report(title=entry.title, assignment=name, rows=rows, tasks=tasks, checks=checks,
                              max_total=max_total, summary_lines=notes)
    (output / "report.html").write_text(html_text, encoding="utf-8")
    return rows, said


def roster_students(entries) -> list[RosterStudent]:
    """The roster's entries as the gradebook stores them."""
    return [RosterStudent(e.identity, **{k: v for k, v in e.ids}) for e in entries]
