"""Gradescope's results.json (https://gradescope-autograders.readthedocs.io/en/latest/specs/).

Top level: ``score``, ``execution_time``, ``output`` (plus ``max_score`` for other tools);
``tests[]``: ``name``, ``number``, ``score``, ``max_score``, ``status`` (passed/failed),
``output``, ``visibility``, and this grader's own ``task`` and ``check`` ids.
Hidden checks (``hidden: true`` in config.yaml) get ``visibility: hidden`` by default,
or ``after_due_date`` / ``after_published`` (bundle option ``--hidden-visibility`` or the
environment variable TORCHGRADE_HIDDEN_VISIBILITY). This is also ``--format json``.
"""

from __future__ import annotations

import json

from ..hidden import VISIBILITIES, HiddenSummary, configured_hidden, hidden_visibility
from ..results import GradeReport
from .status import STATUS_WORDS, check_status


def _number(value: float) -> int | float:
    value = round(float(value), 6)  # no 0.30000000000000004 in a total of decimal points
    return int(value) if value.is_integer() else value


def report_payload(report: GradeReport, *, hidden: HiddenSummary | None = None,
                   visibility: str | None = None) -> dict:
    """results.json for a graded notebook. `hidden` describes checks left out (student view)."""
    visibility = visibility or hidden_visibility()
    if visibility not in VISIBILITIES:
        raise ValueError(f"hidden-check visibility must be one of {', '.join(VISIBILITIES)}, not {visibility!r}")
    output = [f"{report.title}: {report.score:g} / {report.max_score:g}"] + [f"Note: {n}" for n in report.notes]
    if hidden:
        output.append(hidden.sentence())
    tests = []
    for task in report.tasks:
        for position, check in enumerate(task.checks, start=1):
            tests.append({
                "name": f"Task {check.task}: {check.title}",
                "number": f"{check.task}.{position}",
                "score": _number(check.score),
                "max_score": _number(check.max_score),
                "status": STATUS_WORDS["json"][check_status(check)],
                "outcome": check_status(check),  # passed | failed | error (Gradescope ignores it)
                "output": check.message,
                "visibility": visibility if check.hidden else "visible",
                "task": check.task,
                "check": check.id,
            })
    return {
        "score": _number(report.score),
        "max_score": _number(report.max_score),
        "execution_time": round(report.execution_time, 3),
        "output": "\n".join(output),
        "tests": tests,
    }


def render_gradescope_json(report: GradeReport, *, hidden: HiddenSummary | None = None,
                           visibility: str | None = None) -> str:
    return json.dumps(report_payload(report, hidden=hidden, visibility=visibility), indent=2, ensure_ascii=False)


def failure_payload(reason: str, *, entry=None, grading: bool = False) -> dict:
    """A valid results.json for a notebook that could not be graded: score 0 and the reason, in plain words."""
    output = [f"Your notebook could not be graded, so this submission scores 0. Reason: {reason}",
              "Fix the problem and submit again; if you think the grader is wrong, contact your instructor."]
    max_score = 0
    if entry is not None:
        max_score = sum(c.points for c in entry.checks.values() if grading or not c.hidden)
        if not grading and configured_hidden(entry):
            output.append(configured_hidden(entry).sentence())
    return {"score": 0, "max_score": _number(max_score), "execution_time": 0, "output": "\n".join(output), "tests": []}


def render_gradescope_failure(reason: str, *, name: str | None = None, entry=None, grading: bool = False) -> str:
    return json.dumps(failure_payload(reason, entry=entry, grading=grading), indent=2, ensure_ascii=False)
