"""JSON compatible with Gradescope's results.json (score, max_score, execution_time, output, tests)."""

from __future__ import annotations

import json

from ..results import GradeReport


def report_payload(report: GradeReport) -> dict:
    output = [f"{report.title}: {report.score:g} / {report.max_score:g}"] + [f"Note: {n}" for n in report.notes]
    return {
        "score": report.score,
        "max_score": report.max_score,
        "execution_time": report.execution_time,
        "output": "\n".join(output),
        "tests": [
            {
                "name": f"Task {check.task}: {check.title}",
                "score": check.score,
                "max_score": check.max_score,
                "status": "passed" if check.passed else "failed",
                "output": check.message,
                "task": check.task,
                "check": check.id,
            }
            for check in report.checks
        ],
    }


def render_gradescope_json(report: GradeReport) -> str:
    return json.dumps(report_payload(report), indent=2, ensure_ascii=False)


def render_gradescope_failure(reason: str) -> str:
    return json.dumps({"score": 0, "max_score": 0, "execution_time": 0, "output": reason, "tests": []}, indent=2)
