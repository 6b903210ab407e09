"""What a batch leaves for publishing grades: grades.csv and one feedback file per student.

- ``grades.csv``: one row per student (identity, file, one column per task in numeric
  order, total, max, percent, status, reason), every field quoted (csv.QUOTE_ALL).
  Text that a spreadsheet would run as a formula (starting with = + - @) gets a
  leading apostrophe, the usual guard against CSV injection.
- ``feedback/<student>.md`` and ``.html``: the very text of the terminal report, which
  is what the student gets when they run ``python grade.py`` on their notebook.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from ..render.terminal import render_terminal
from ..results import GradeReport
from ..sanitize import csv_cell, html_text, markdown, markdown_block, visible

SAFE_NAME = re.compile(r"[^A-Za-z0-9._@-]+")


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
    report: GradeReport | None = None
    feedback: str | None = None  # file name stem under feedback/

    @property
    def score(self) -> float:
        return self.report.score if self.report else 0.0

    @property
    def max_score(self) -> float | None:
        return self.report.max_score if self.report else None

    @property
    def flag_kinds(self) -> str:
        """The kinds of tampering flagged (details in report.html); empty when none."""
        kinds = list(dict.fromkeys(f.kind for f in self.report.flags)) if self.report else []
        return ", ".join(kinds)

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
    """Neutralise text a spreadsheet would execute as a formula, and control characters (torchgrade.sanitize)."""
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


def write_grades_csv(path: Path, rows: list[StudentRow], tasks: list[TaskInfo], max_total: float) -> None:
    tasks = sorted(tasks, key=lambda t: t.number)
    header = ["student", "file"] + [f"task_{t.number}" for t in tasks] + ["total", "max", "percent", "status", "reason",
                                                                         "flags"]
    temporary = path.with_suffix(".csv.partial")
    with open(temporary, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        writer.writerow(header)
        for row in rows:
            total = row.score if row.status == "graded" else 0.0
            maximum = row.max_score if row.max_score is not None else max_total
            percent = 100.0 * total / maximum if maximum else 0.0
            writer.writerow([cell_text(row.student), cell_text(row.file)]
                            + [number(row.task_score(t.number)) for t in tasks]
                            + [number(total), number(maximum), f"{percent:.1f}", cell_text(row.status), cell_text(row.reason),
                               cell_text(row.flag_kinds)])
    temporary.replace(path)


# ------------------------------------------------------------------------------ feedback

def feedback_text(row: StudentRow, title: str) -> str:
    if row.report is not None:
        return render_terminal(row.report)
    if row.status == "missing":
        return visible(f"{title}\nNo submission was found for you.")
    return visible(f"{title}: {row.file}\nScore: not graded\n\ncould not grade: {row.reason}")


def feedback_markdown(row: StudentRow, title: str) -> str:
    """The heading is escaped Markdown; the report is a fenced block, so nothing in it renders as markup."""
    return f"# {markdown(f'{title}: feedback for {row.student}')}\n\n{markdown_block(feedback_text(row, title))}\n"


FEEDBACK_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{page_title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; color: #1b1f24; }}
pre {{ background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: 1rem; overflow-x: auto;
       font-size: 0.9rem; line-height: 1.35; }}
.pass {{ color: #116329; font-weight: 600; }}
.fail {{ color: #a40e26; font-weight: 600; }}
</style>
</head>
<body>
<h1>{heading}</h1>
<pre id="feedback">{body}</pre>
</body>
</html>
"""


def feedback_html(row: StudentRow, title: str) -> str:
    text = html_text(feedback_text(row, title))
    text = text.replace("[PASS]", '<span class="pass">[PASS]</span>').replace("[FAIL]", '<span class="fail">[FAIL]</span>')
    heading = html_text(f"{title}: feedback for {row.student}")
    return FEEDBACK_PAGE.format(page_title=heading, heading=heading, body=text)


def write_feedback(folder: Path, rows: list[StudentRow], title: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for row in rows:
        if row.feedback is None:
            continue
        (folder / f"{row.feedback}.md").write_text(feedback_markdown(row, title), encoding="utf-8")
        (folder / f"{row.feedback}.html").write_text(feedback_html(row, title), encoding="utf-8")
