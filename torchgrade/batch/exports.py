"""What a batch leaves for publishing grades, always built from every row of the gradebook.

- ``grades.csv``: one row per student: identity, file (relative to the submissions'
  folder), one column per task in numeric order, ``total`` (the final score: overrides
  and late penalty applied), ``max``, ``percent``, ``status``, ``reason``, then
  ``raw_total`` (the autograder's), ``late_penalty``, ``submitted_at``, ``integrity``,
  ``overrides`` and ``comments``. A submission that could not be graded has blank
  scores, never 0. Every field quoted (csv.QUOTE_ALL); text passes ``render.safe.csv_cell``.
- ``checks.csv``: one row per student and check, with the one status vocabulary
  (passed / failed / error, ``render/status.py``), for pivot tables.
- ``feedback/<student>.html`` and ``.md``: the student's copy (no hidden check named);
  ``feedback/instructor/<student>.html``: everything (``render/feedback.py``).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..render.feedback import build_feedback, feedback_html, feedback_markdown
from ..render.safe import FORMULA_START, csv_cell
from ..render.status import STATUS_WORDS, check_status
from ..results import GradeReport
from .late import ON_TIME, Lateness

SAFE_NAME = re.compile(r"[^A-Za-z0-9._@-]+")
__all__ = ["FORMULA_START", "StudentRow", "TaskInfo", "cell_text", "feedback_markdown", "feedback_names", "number",
           "write_checks_csv", "write_feedback", "write_grades_csv"]


@dataclass
class TaskInfo:
    number: int
    title: str
    max_score: float


@dataclass
class StudentRow:
    student: str
    file: str
    status: str  # "graded" | "could not grade" | "missing"
    reason: str = ""
    report: GradeReport | None = None  # with the instructor's overrides applied (every check, hidden ones too)
    feedback: str | None = None  # file name stem under feedback/
    raw_score: float | None = None  # the autograder's total, before overrides and late penalty
    late: Lateness = ON_TIME
    submitted_at: str | None = None
    overrides: list = field(default_factory=list)  # (check_id, points, max_points, reason, author, when)
    comments: list = field(default_factory=list)  # (text, author, when)
    flags: list = field(default_factory=list)  # integrity flags (batch/integrity.py)
    ids: object = None  # the roster's RosterStudent, when the roster knows this student
    content_hash: str = ""
    code_hash: str | None = None

    @property
    def graded(self) -> bool:
        return self.status == "graded" and self.report is not None

    @property
    def blank(self) -> bool:
        return "untouched exercise" in self.flags

    @property
    def score(self) -> float:
        """The score after overrides (before the late penalty); 0 when not graded."""
        return self.report.score if self.report else 0.0

    @property
    def final(self) -> float | None:
        """What the student gets: overrides applied, late penalty taken; None when not graded."""
        if not self.graded:
            return None
        return round(max(0.0, self.score - self.late.penalty), 6)

    @property
    def max_score(self) -> float | None:
        return self.report.max_score if self.report else None

    def task_score(self, number: int) -> float | None:
        if not self.report:
            return None
        for task in self.report.tasks:
            if task.number == number:
                return task.score
        return None


def number(value: float | None) -> str:
    if value is None:
        return ""
    value = round(float(value), 4)
    return f"{value:g}" if abs(value) < 1e15 else repr(value)


def cell_text(value: str) -> str:
    """Neutralise text a spreadsheet would execute as a formula (one call point: render.safe)."""
    return csv_cell(value)


def feedback_names(students: list[str]) -> dict[str, str]:
    """A safe, unique file name stem for each student."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for student in students:
        base = SAFE_NAME.sub("_", student).strip("._") or "student"
        base = base[:100]
        name, counter = base, 2
        while name.lower() in taken:
            name = f"{base}_{counter}"
            counter += 1
        taken.add(name.lower())
        names[student] = name
    return names


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    temporary = path.with_suffix(".csv.partial")
    with open(temporary, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        writer.writerow(header)
        writer.writerows(rows)
    temporary.replace(path)


def write_grades_csv(path: Path, rows: list[StudentRow], tasks: list[TaskInfo], max_total: float) -> None:
    tasks = sorted(tasks, key=lambda t: t.number)
    header = (["student", "file"] + [f"task_{t.number}" for t in tasks]
              + ["total", "max", "percent", "status", "reason", "raw_total", "late_penalty", "submitted_at",
                 "integrity", "overrides", "comments"])
    lines = []
    for row in rows:
        maximum = row.max_score if row.max_score is not None else max_total
        final = row.final
        percent = "" if final is None else f"{100.0 * final / maximum if maximum else 0.0:.1f}"
        overrides = "; ".join(f"{o[0]}={number(o[1])} ({o[3]}, {o[4]})" for o in row.overrides)
        comments = "; ".join(f"{c[0]} ({c[1]})" for c in row.comments)
        lines.append([cell_text(row.student), cell_text(row.file)]
                     + [number(row.task_score(t.number)) for t in tasks]
                     + [number(final), number(maximum), percent, row.status, cell_text(row.reason),
                        number(row.raw_score if row.graded else None), number(row.late.penalty) if row.late.days else "",
                        row.submitted_at or "", cell_text("; ".join(row.flags)), cell_text(overrides),
                        cell_text(comments)])
    _write_csv(path, header, lines)


def write_checks_csv(path: Path, rows: list[StudentRow]) -> None:
    """One row per student and check, in the one status vocabulary."""
    words = STATUS_WORDS["csv"]
    lines = []
    for row in rows:
        for check in row.report.checks if row.graded else ():
            lines.append([cell_text(row.student), check.id, str(check.task), cell_text(check.title), number(check.score),
                          number(check.max_score), words[check_status(check)], "yes" if check.hidden else "",
                          cell_text(check.message)])
    _write_csv(path, ["student", "check", "task", "title", "points", "max_points", "status", "hidden", "message"], lines)


# ------------------------------------------------------------------------------ feedback

def feedback_for(row: StudentRow, title: str, audience: str):
    return build_feedback(title=title, student=row.student, audience=audience, status=row.status,
                          report=row.report if row.graded else None, reason=row.reason, blank=row.blank,
                          raw_score=row.score if row.graded else None, final_score=row.final,
                          max_score=row.max_score, late=row.late.why, overrides=row.overrides,
                          comments=row.comments, flags=row.flags)


def write_feedback(folder: Path, rows: list[StudentRow], title: str) -> None:
    """The student's copy (.html, .md) and the instructor's copy (instructor/*.html) of each student's feedback."""
    instructor = folder / "instructor"
    instructor.mkdir(parents=True, exist_ok=True)
    for row in rows:
        if row.feedback is None:
            continue
        mine = feedback_for(row, title, "student")
        (folder / f"{row.feedback}.md").write_text(feedback_markdown(mine), encoding="utf-8")
        (folder / f"{row.feedback}.html").write_text(feedback_html(mine), encoding="utf-8")
        (instructor / f"{row.feedback}.html").write_text(feedback_html(feedback_for(row, title, "instructor")),
                                                         encoding="utf-8")


def prune_feedback(folder: Path, keep_stems: set[str]) -> None:
    """Drop feedback of students no longer in the gradebook."""
    for directory in (folder, folder / "instructor"):
        if not directory.is_dir():
            continue
        for old in directory.iterdir():
            if old.suffix in (".md", ".html") and old.stem not in keep_stems:
                old.unlink()
