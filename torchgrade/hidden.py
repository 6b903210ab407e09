"""Hidden checks: run at grading time, never described in a student's own report.

A check marked ``hidden: true`` in config.yaml is always executed and scored, but
which report shows it depends on who is running the grader:

* **Student / local run** (the default for ``python grade.py NOTEBOOK``): every
  format drops hidden checks and their points; the text report says only how many
  hidden checks there are and how many points they are worth.
* **Grading run**: ``grade.py --grading``, or the environment variable
  ``TORCHGRADE_GRADING=1`` (set by the Gradescope ``run_autograder`` script; set it in
  an instructor's batch job too). Every check is reported; Gradescope gets
  ``visibility: hidden`` (or ``after_due_date`` / ``after_published``) for hidden ones.

* **Batch grading** (``python grade.py FOLDER``) always scores every check: it is the grade
  of record. What it writes for students (``feedback/<student>.html`` and ``.md``) is the
  student view, with one line saying how many hidden checks there were, what they were
  worth and how many of those points were earned; the instructor's views (``report.html``,
  ``feedback/instructor/``) show everything. ``--grading`` changes nothing for a batch.

``view_for`` is the one function that decides what an audience sees; every renderer
(terminal, JSON, Classroom, JUnit, feedback pages, the class report) goes through it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Mapping

from .results import GradeReport

GRADING_ENV = "TORCHGRADE_GRADING"
VISIBILITY_ENV = "TORCHGRADE_HIDDEN_VISIBILITY"
VISIBILITIES = ("hidden", "after_due_date", "after_published")
DEFAULT_VISIBILITY = "hidden"
_TRUE = {"1", "true", "yes", "on"}


def grading_requested(flag: bool = False, environ: Mapping[str, str] | None = None) -> bool:
    """True for a grading run: the --grading flag, or TORCHGRADE_GRADING=1 in the environment."""
    environ = os.environ if environ is None else environ
    return bool(flag) or environ.get(GRADING_ENV, "").strip().lower() in _TRUE


def hidden_visibility(environ: Mapping[str, str] | None = None) -> str:
    """Gradescope visibility for hidden checks: TORCHGRADE_HIDDEN_VISIBILITY, else 'hidden'."""
    environ = os.environ if environ is None else environ
    value = environ.get(VISIBILITY_ENV, "").strip().lower()
    return value if value in VISIBILITIES else DEFAULT_VISIBILITY


@dataclass(frozen=True)
class HiddenSummary:
    """What a student may know about the checks left out of their report."""

    count: int = 0
    points: float = 0.0

    def __bool__(self) -> bool:
        return self.count > 0

    def sentence(self) -> str:
        """One sentence for a student's report; never names or describes the checks."""
        if not self.count:
            return ""
        checks = "1 hidden check" if self.count == 1 else f"{self.count} hidden checks"
        worth = f"{self.points:g} point" + ("" if self.points == 1 else "s")
        pronoun = "it is" if self.count == 1 else "they are"
        return f"{checks} ({worth}) will also run when your notebook is graded; {pronoun} not shown or counted here."

    def released_sentence(self, earned: float) -> str:
        """For feedback released after grading: the hidden checks counted in the grade, never named."""
        if not self.count:
            return ""
        checks = "1 hidden check" if self.count == 1 else f"{self.count} hidden checks"
        worth = f"{self.points:g} point" + ("" if self.points == 1 else "s")
        return f"Your grade also includes {checks} worth {worth}; you earned {earned:g} of them."


def student_view(report: GradeReport) -> tuple[GradeReport, HiddenSummary]:
    """The report without hidden checks (tasks left with no visible check are dropped), and what was removed."""
    hidden = [c for c in report.checks if c.hidden]
    if not hidden:
        return report, HiddenSummary()
    tasks = tuple(replace(t, checks=tuple(c for c in t.checks if not c.hidden)) for t in report.tasks)
    view = replace(report, tasks=tuple(t for t in tasks if t.checks))
    return view, HiddenSummary(len(hidden), sum(c.max_score for c in hidden))


AUDIENCES = ("student", "instructor")


def view_for(report: GradeReport, audience: str) -> tuple[GradeReport, HiddenSummary]:
    """What `audience` may see of a report: a student never sees a hidden check, an instructor sees all."""
    if audience not in AUDIENCES:
        raise ValueError(f"audience must be one of {AUDIENCES}, not {audience!r}")
    return student_view(report) if audience == "student" else (report, HiddenSummary())


def configured_hidden(entry) -> HiddenSummary:
    """Hidden checks of an assignment from its config (for reports written when grading failed)."""
    hidden = [c for c in entry.checks.values() if c.hidden]
    return HiddenSummary(len(hidden), sum(c.points for c in hidden))


def configured_points(entry, *, include_hidden: bool) -> float:
    return sum(c.points for c in entry.checks.values() if include_hidden or not c.hidden)
