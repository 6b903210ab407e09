"""JUnit XML for CI dashboards (Jenkins, GitLab, GitHub test reporters).

Valid against the Jenkins/pytest ``junit-10.xsd``: ``<testsuites>`` holds one
``<testsuite>`` per task and one ``<testcase>`` per check. A check that lost points
gets ``<failure>`` with its message (also when the student's code raised: it ran, and
the answer is wrong); a check whose task could not run at all (its cell is missing, it
timed out or killed the kernel) gets ``<error>``: see ``render/status.py``. A notebook that cannot be graded at all still yields a valid
document whose test cases all carry ``<error>`` with the reason.
"""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from ..hidden import HiddenSummary, configured_hidden
from ..results import CheckResult, GradeReport
from .status import ERROR, check_status

# Characters XML 1.0 cannot carry at all (student output may contain them).
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
MESSAGE_ATTRIBUTE_LIMIT = 300


def could_not_run(check: CheckResult) -> bool:
    """True when a check failed because its task could not run (an error, not a wrong answer)."""
    return check_status(check) == ERROR


def xml_text(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _one_line(text: str, limit: int = MESSAGE_ATTRIBUTE_LIMIT) -> str:
    line = " ".join(xml_text(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _seconds(value: float) -> str:
    return f"{max(0.0, value):.3f}"


def _points(value: float) -> str:
    return f"{value:g}"


def _suite(parent: ET.Element, name: str, cases: list[ET.Element], properties: dict[str, str],
           timestamp: str) -> ET.Element:
    failures = sum(1 for case in cases if case.find("failure") is not None)
    errors = sum(1 for case in cases if case.find("error") is not None)
    suite = ET.SubElement(parent, "testsuite", {
        "name": xml_text(name), "tests": str(len(cases)), "failures": str(failures), "errors": str(errors),
        "skipped": "0", "timestamp": timestamp, "hostname": xml_text(socket.gethostname()),
    })
    if properties:
        props = ET.SubElement(suite, "properties")
        for key, value in properties.items():
            ET.SubElement(props, "property", {"name": key, "value": xml_text(value)})
    suite.extend(cases)
    return suite


def _case(classname: str, check_id: str, title: str) -> ET.Element:
    # No time attribute: the engine times whole runs, not checks (the root <testsuites> has the run's time).
    return ET.Element("testcase", {"classname": xml_text(classname), "name": xml_text(f"{check_id}: {title}")})


def _document(root: ET.Element) -> str:
    root.set("tests", str(sum(int(s.get("tests")) for s in root.iter("testsuite"))))
    root.set("failures", str(sum(int(s.get("failures")) for s in root.iter("testsuite"))))
    root.set("errors", str(sum(int(s.get("errors")) for s in root.iter("testsuite"))))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def _timestamp() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None).isoformat()


def render_junit(report: GradeReport, *, hidden: HiddenSummary | None = None) -> str:
    hidden = hidden or HiddenSummary()
    root = ET.Element("testsuites", {"name": xml_text(f"torchgrade: {report.title}"),
                                     "time": _seconds(report.execution_time)})
    timestamp = _timestamp()
    for position, task in enumerate(report.tasks):
        classname = f"{report.assignment}.task{task.number}"
        cases = []
        for check in task.checks:
            title = check.title + (" (hidden)" if check.hidden else "")
            case = _case(classname, check.id, title)
            lost = f"{_points(check.score)}/{_points(check.max_score)} points"
            if could_not_run(check):
                ET.SubElement(case, "error", {"type": "TaskDidNotRun",
                                              "message": _one_line(f"{lost}: {check.found}")}).text = xml_text(check.message)
            elif not check.passed:
                ET.SubElement(case, "failure", {"type": "LostPoints",
                                                "message": _one_line(f"{lost}: {check.message}")}).text = xml_text(check.message)
            elif check.note:
                ET.SubElement(case, "system-out").text = xml_text(check.note)
            cases.append(case)
        properties = {"task": str(task.number), "title": task.title,
                      "score": _points(task.score), "max_score": _points(task.max_score)}
        if position == 0:
            properties.update(submission=report.submission, assignment=report.assignment,
                              total_score=_points(report.score), total_max_score=_points(report.max_score),
                              grader_version=report.grader_version)
        suite = _suite(root, f"Task {task.number}: {task.title}", cases, properties, timestamp)
        if position == 0 and (report.notes or hidden):
            lines = [f"Note: {note}" for note in report.notes] + ([hidden.sentence()] if hidden else [])
            ET.SubElement(suite, "system-out").text = xml_text("\n".join(lines))
    if not report.tasks:  # every check hidden in a student's run: still a valid, non-empty document
        suite = _suite(root, report.title, [], {"submission": report.submission}, timestamp)
        if hidden:
            ET.SubElement(suite, "system-out").text = hidden.sentence()
    return _document(root)


def render_junit_failure(reason: str, *, name: str | None = None, entry=None, grading: bool = False) -> str:
    """The notebook could not be graded: every check (or one 'grading' case) carries <error> with the reason."""
    root = ET.Element("testsuites", {"name": "torchgrade", "time": "0.000"})
    timestamp = _timestamp()
    assignment = name or "torchgrade"
    cases = []
    if entry is not None:
        for check_id, settings in entry.checks.items():
            if settings.hidden and not grading:
                continue
            case = _case(assignment, check_id, "not graded")
            ET.SubElement(case, "error", {"type": "NotGraded", "message": _one_line(reason)}).text = xml_text(reason)
            cases.append(case)
    if not cases:
        case = _case(assignment, "grading", "the notebook could not be graded")
        ET.SubElement(case, "error", {"type": "NotGraded", "message": _one_line(reason)}).text = xml_text(reason)
        cases.append(case)
    title = getattr(entry, "title", None) or assignment
    suite = _suite(root, title, cases, {"assignment": assignment}, timestamp)
    if entry is not None and not grading and configured_hidden(entry):
        ET.SubElement(suite, "system-out").text = configured_hidden(entry).sentence()
    return _document(root)
