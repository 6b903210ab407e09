"""GitHub Classroom: the payload of ``classroom-resources/autograding-grading-reporter``.

The workflow base64-encodes what ``grade.py --format classroom`` prints into the
grading step's ``result`` output; the reporter decodes it, prints every test in the
job log and posts ``Points <sum of tests[].score>/<max_score>`` to Classroom::

    {"version": 1, "status": "pass|fail|error", "max_score": <int>,
     "tests": [{"name", "status", "score", "message", "test_code", "filename", "line_no", "duration"}]}

Rules this module enforces, because the reporter does not:
- one test per check, so partial credit shows up as points;
- ``max_score`` is an integer (a non-integer total is rounded and the scores scaled to keep
  the percentage) and every score is an exact binary fraction (a multiple of 1/64) whose
  sum is exact in JavaScript too: no 0.30000000000000004;
- names and messages are single-spaced, control-character free, truncated to a few hundred
  characters, and no line of them starts with ``::`` (or ``##[``), which the Actions runner
  would execute as a workflow command when the reporter prints it;
- a notebook that cannot be graded still gets a complete payload (status ``error``, score 0).

When ``$GITHUB_STEP_SUMMARY`` is set, a Markdown table of tasks, points and messages is
appended to it (the job's summary page).
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

from ..hidden import HiddenSummary, configured_hidden, configured_points
from ..results import GradeReport
from .status import STATUS_WORDS, check_status

QUANTUM = 64  # scores are multiples of 1/64: exact in binary floating point
NAME_LIMIT = 120
MESSAGE_LIMIT = 400
SUMMARY_MESSAGE_LIMIT = 300
_CONTROL = re.compile("[\u0000-\u0008\u000b-\u001f\u007f-\u009f]")  # keeps \t and \n
_COMMAND_START = re.compile(r"^(\s*)(::|##\[)", re.MULTILINE)


def safe_text(text: str, limit: int, *, single_line: bool = False) -> str:
    """Text the reporter can print: no control characters, no workflow commands, at most `limit` characters."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    if single_line:
        text = " ".join(text.split())
    # ': :' and '# #[' read the same to a person and are inert to the runner. Cutting the end
    # afterwards cannot make a new line start with '::'.
    text = _COMMAND_START.sub(lambda m: m.group(1) + (": :" if m.group(2) == "::" else "# #["), text)
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def exact(value: float) -> int | float:
    """An int when whole, else the float as is (callers pass multiples of 1/64)."""
    return int(value) if float(value).is_integer() else float(value)


def integer_scale(total: float) -> tuple[int, float]:
    """(integer max_score, factor to multiply points by). Whole totals keep factor 1."""
    if float(total).is_integer():
        return int(total), 1.0
    whole = max(1, round(total))
    return whole, whole / total


def quantized(scores: list[float]) -> list[float]:
    """Each score as a multiple of 1/64, chosen so the running total is the best rounding of the true total."""
    result, running, previous = [], 0.0, 0
    for score in scores:
        running += score
        current = round(running * QUANTUM)
        result.append((current - previous) / QUANTUM)
        previous = current
    return result


def _test(name: str, status: str, score: float, message: str, test_code: str, filename: str,
          duration_ms: int) -> dict:
    return {
        "name": safe_text(name, NAME_LIMIT, single_line=True) or "check",
        "status": status,
        "score": exact(score),
        "message": safe_text(message, MESSAGE_LIMIT),
        "test_code": safe_text(test_code, NAME_LIMIT, single_line=True),
        "filename": safe_text(filename, NAME_LIMIT, single_line=True),
        "line_no": 0,
        "duration": max(0, int(duration_ms)),
    }


def _points(value: float) -> str:
    return f"{value:g}"


def classroom_payload(report: GradeReport) -> dict:
    """The reporter's payload: one test per check of `report` (already without hidden checks in a student's run)."""
    max_score, factor = integer_scale(report.max_score)
    checks = report.checks
    scores = quantized([c.score * factor for c in checks])
    filename = Path(report.submission).name
    tests = []
    for check, score in zip(checks, scores):
        status = STATUS_WORDS["classroom"][check_status(check)]
        head = f"{_points(check.score)}/{_points(check.max_score)} points."
        body = check.message or ("Passed." if check.passed else "")
        tests.append(_test(f"Task {check.task}: {check.title}", status, score, f"{head} {body}".strip(),
                           f"check {check.id}", filename, 0))  # the engine times runs, not checks
    passed = all(c.passed for c in checks)
    return {"version": 1, "status": "pass" if passed else "fail", "max_score": max_score, "tests": tests}


def render_classroom(report: GradeReport, *, hidden: HiddenSummary | None = None) -> str:
    payload = classroom_payload(report)
    append_step_summary(summary_markdown(report, payload, hidden))
    return json.dumps(payload, ensure_ascii=False)


def failure_payload(reason: str, *, entry=None, grading: bool = False) -> dict:
    total = configured_points(entry, include_hidden=grading) if entry is not None else 0
    max_score, _ = integer_scale(total)
    title = getattr(entry, "title", None) or "the notebook"
    test = _test(f"Grading {title}", "error", 0, f"0 points: the notebook could not be graded. {reason}",
                 "python grade.py", "", 0)
    return {"version": 1, "status": "error", "max_score": max_score, "tests": [test]}


def render_classroom_failure(reason: str, *, name: str | None = None, entry=None, grading: bool = False) -> str:
    payload = failure_payload(reason, entry=entry, grading=grading)
    hidden = configured_hidden(entry) if entry is not None and not grading else HiddenSummary()
    title = getattr(entry, "title", None) or name or "Notebook"
    lines = [f"### {_cell(title)}: not graded", "", f"**0 / {payload['max_score']} points.** "
             f"The notebook could not be graded: {_cell(reason)}", ""]
    if hidden:
        lines += [hidden.sentence(), ""]
    append_step_summary("\n".join(lines))
    return json.dumps(payload, ensure_ascii=False)


# ---- the job summary -----------------------------------------------------------------

def _cell(text: str, limit: int = SUMMARY_MESSAGE_LIMIT) -> str:
    """Text safe inside one Markdown table cell: escaped HTML, no pipes, line breaks as <br>."""
    text = safe_text(text, limit)
    text = html.escape(text, quote=False).replace("|", "\\|").replace("`", "'")
    return "<br>".join(line.strip() for line in text.split("\n") if line.strip())


def summary_markdown(report: GradeReport, payload: dict, hidden: HiddenSummary | None = None) -> str:
    total = sum(test["score"] for test in payload["tests"])
    lines = [f"### {_cell(report.title)}: {_points(total)} / {payload['max_score']} points", "",
             f"Submission: `{_cell(Path(report.submission).name, 200)}`", "",
             "| Task | Check | Points | Result |", "| --- | --- | ---: | --- |"]
    for task in report.tasks:
        for check in task.checks:
            mark = {"pass": "✅", "fail": "❌", "error": "⚠️ error"}[STATUS_WORDS["classroom"][check_status(check)]]
            message = check.message or ("passed" if check.passed else "")
            lines.append(f"| {task.number}. {_cell(task.title, 80)} | {_cell(check.title, 120)} | "
                         f"{_points(check.score)} / {_points(check.max_score)} | {mark} {_cell(message)} |")
    lines.append("")
    for note in report.notes:
        lines.append(f"- Note: {_cell(note)}")
    if hidden:
        lines.append(f"- {hidden.sentence()}")
    return "\n".join(lines).rstrip() + "\n"


def append_step_summary(markdown: str) -> None:
    """Append to $GITHUB_STEP_SUMMARY when it is set; a summary that cannot be written never stops grading."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return
    try:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(markdown.rstrip("\n") + "\n\n")
    except OSError:
        pass
