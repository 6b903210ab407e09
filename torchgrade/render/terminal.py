"""The student's report: per task, points, what passed, and what failed and why."""

from __future__ import annotations

import textwrap

from ..hidden import HiddenSummary
from ..results import CheckResult, GradeReport
from ..sanitize import visible

WIDTH = 78


def points(value: float) -> str:
    return f"{value:g}"


def _check_lines(check: CheckResult) -> list[str]:
    mark = "PASS" if check.passed else "FAIL"
    head = f"  [{mark}] {check.title}" + (" (hidden)" if check.hidden else "")
    lines = [f"{head:<{WIDTH - 8}}{points(check.score):>4}/{points(check.max_score)}"]
    for line in check.message.splitlines():
        lines.extend(textwrap.wrap(line, WIDTH, initial_indent="         ", subsequent_indent="           ") or [""])
    return lines


def render_terminal(report: GradeReport, *, hidden: HiddenSummary | None = None) -> str:
    """`hidden` (a student's run) says how many hidden checks were left out, never what they test."""
    lines = [f"{report.title}: {report.submission}",
             f"Score: {points(report.score)} / {points(report.max_score)}"]
    if hidden:
        lines.extend(textwrap.wrap(hidden.sentence(), WIDTH))
    lines.append("")
    for task in report.tasks:
        head = f"Task {task.number}: {task.title}"
        lines.append(f"{head:<{WIDTH - 6}}{points(task.score):>4}/{points(task.max_score)}")
        for check in task.checks:
            lines.extend(_check_lines(check))
        lines.append("")
    if report.notes:
        lines.append("Notes:")
        for note in report.notes:
            lines.extend(textwrap.wrap(note, WIDTH, initial_indent="  - ", subsequent_indent="    "))
        lines.append("")
    lines.append("Checked with " + "; and ".join(report.runs) + f". Took {report.execution_time:.1f} s.")
    return visible("\n".join(lines))  # student text (messages, notes, names) cannot drive the terminal
