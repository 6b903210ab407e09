"""The class report: ``DIR/report.html``, one static file that opens offline, for deciding
what to teach next.

Sections (linked from the navigation at the top): summary cards; a student × check grid
(coloured by status, short cells with the reason on hover or click, sortable by total and
by any check); checks ordered by difficulty with their titles; failure messages grouped by
check, then by message (numbers may vary), with counts and students; the score
distribution in integer bins; tasks; submissions that could not be graded; integrity
flags; the students table. Blank submissions (the untouched exercise) are counted as such
and kept out of the failure counts and the difficulty ranking.

The page is a jinja2 template (render/templates/report.html.j2, autoescaped: whatever a
submission wrote arrives as text). Charts are inline SVG (batch/charts.py draws them, from
numbers only); the Content-Security-Policy forbids loading anything. Tables sort by
clicking a header, or from the address: ``report.html#sort=total:desc`` (the students
table) or ``#grid-sort=t1_f_value:asc`` (the grid).
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..hidden import view_for
from ..render.html import render_page
from ..render.status import check_status
from .charts import integer_bins, rate_bars, rate_color, score_histogram
from .exports import StudentRow, TaskInfo, number

NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
STUDENTS_SHOWN = 12


@dataclass
class CheckInfo:
    id: str
    task: int
    title: str
    max_score: float


@dataclass
class MessageGroup:
    message: str  # as the first student got it
    students: list[str] = field(default_factory=list)
    variants: set[str] = field(default_factory=set)


@dataclass
class CheckFailures:
    check: CheckInfo
    rate: float  # pass rate among graded, non-blank submissions
    attempted: int
    failed: int
    errors: int
    hidden: bool = False
    messages: list[MessageGroup] = field(default_factory=list)


def normalise(message: str) -> str:
    return NUMBER.sub("#", message)


def short(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_failures(rows: list[StudentRow], checks: list[CheckInfo]) -> list[CheckFailures]:
    """Per check, hardest first: pass rate, and its failures grouped by message (blank submissions left out)."""
    attempted = [r for r in rows if r.graded and not r.blank]
    result = []
    for info in checks:
        results = [(r.student, c) for r in attempted for c in view_for(r.report, "instructor")[0].checks
                   if c.id == info.id]
        groups: dict[str, MessageGroup] = {}
        for student, check in results:
            if check.passed:
                continue
            group = groups.setdefault(normalise(check.message), MessageGroup(check.message))
            group.students.append(student)
            group.variants.add(check.message)
        passed = sum(c.passed for _, c in results)
        result.append(CheckFailures(
            info, passed / len(results) if results else 1.0, len(results), len(results) - passed,
            sum(check_status(c) == "error" for _, c in results), any(c.hidden for _, c in results),
            sorted(groups.values(), key=lambda g: (-len(g.students), g.message))))
    return sorted(result, key=lambda f: (f.rate, f.check.task, f.check.id))


def grid_cells(row: StudentRow, checks: list[CheckInfo]) -> list[dict]:
    by_id = {c.id: c for c in view_for(row.report, "instructor")[0].checks} if row.graded else {}
    cells = []
    for info in checks:
        check = by_id.get(info.id)
        if check is None:
            cells.append({"status": "none", "text": "–", "value": "", "reason": row.reason or row.status})
            continue
        status = check_status(check)
        reason = "passed" if check.passed else (check.message.splitlines()[0] if check.message else status)
        if row.blank:
            status, reason = "blank", "untouched exercise"
        cells.append({"status": status, "text": f"{check.score:g}", "value": check.score, "reason": reason,
                      "message": "" if check.passed else check.message})
    return cells


def render_report(*, title: str, assignment: str, rows: list[StudentRow], tasks: list[TaskInfo],
                  checks: list[CheckInfo], max_total: float, summary_lines: list[str]) -> str:
    tasks = sorted(tasks, key=lambda t: t.number)
    graded = [r for r in rows if r.graded]
    blank = [r for r in graded if r.blank]
    failed = [r for r in rows if r.status == "could not grade"]
    missing = [r for r in rows if r.status == "missing"]
    finals = [r.final for r in graded]
    mean = statistics.fmean(finals) if finals else None
    median = statistics.median(finals) if finals else None
    cards = [("submissions", len(rows) - len(missing)), ("graded", len(graded)), ("could not grade", len(failed))]
    if missing:
        cards.append(("missing", len(missing)))
    if blank:
        cards.append(("blank", len(blank)))
    cards += [("mean", "–" if mean is None else f"{mean:.2f} / {max_total:g}"),
              ("median", "–" if median is None else f"{median:g} / {max_total:g}")]

    task_rows = []
    attempted = [r for r in graded if not r.blank]  # as for the checks: an untouched exercise says nothing of a task
    for task in tasks:
        full = sum(1 for r in attempted if (r.task_score(task.number) or 0) >= task.max_score - 1e-9)
        share = statistics.fmean([(r.task_score(task.number) or 0) / task.max_score for r in attempted]) \
            if attempted and task.max_score else 0.0
        task_rows.append({"task": task, "rate": full / len(attempted) if attempted else 0.0, "mean": share})
    difficulty = check_failures(rows, checks)
    plots = {}
    if finals:
        plots["score-histogram"] = score_histogram(finals, max_total)
    if graded and tasks:
        plots["task-plot"] = rate_bars([f"Task {t['task'].number}" for t in task_rows], [t["rate"] for t in task_rows],
                                       "Full marks per task")
    if graded and checks:
        plots["check-plot"] = rate_bars([short(f"T{f.check.task}: {f.check.title}", 40) for f in difficulty],
                                        [f.rate for f in difficulty], "Pass rate per check, hardest first")
    reasons: dict[str, list[str]] = defaultdict(list)
    for row in failed:
        reasons[row.reason].append(row.student)
    grid = [{"row": r, "cells": grid_cells(r, checks)} for r in rows if r.status != "missing"]
    visible_checks = checks  # report.html is an instructor's view: every check, hidden ones marked
    labels, counters = {}, defaultdict(int)
    for check in checks:  # T<task>.<n-th check of the task>: short enough for a grid column
        counters[check.task] += 1
        labels[check.id] = f"T{check.task}.{counters[check.task]}"
    return render_page(
        "report.html.j2", title=title, assignment=assignment, rows=rows, tasks=tasks, checks=visible_checks,
        max_total=max_total, summary_lines=summary_lines, cards=cards, task_rows=task_rows, difficulty=difficulty,
        plots=plots, bins=integer_bins(finals, max_total) if finals else [], reasons=sorted(reasons.items()),
        grid=grid, labels=labels, flagged=[r for r in rows if r.flags],
        tampered=[r for r in rows if r.graded and r.report.flags], number=number, students_shown=STUDENTS_SHOWN,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), blank=blank, rate_color=rate_color)
