"""Feedback fit to release: one page (HTML) and one Markdown file per student.

The student's copy goes through ``hidden.view_for(report, "student")``: hidden checks are
counted and their worth given, never named. The instructor's copy shows everything.
A blank submission (the untouched exercise) gets one short message instead of a failure
per check; a submission that could not be graded says what to do about it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import PurePath

from .. import sanitize
from ..config import CHOOSE_WITH_FLAG
from ..hidden import HiddenSummary, view_for
from ..results import GradeReport
from .html import render_page
from .safe import plain
from .status import STATUS_WORDS, check_status
from .terminal import render_terminal

BLANK_MESSAGE = ("This is the exercise notebook as it was handed out: none of the tasks was attempted, so it "
                 "scores 0. Write your code in the `# TASK` cells, run the whole notebook "
                 "(Kernel → Restart & Run All), save it, and submit that file.")
GENERIC_ADVICE = ("Open your notebook in Jupyter and check that it opens and runs from top to bottom "
                  "(Kernel → Restart & Run All), save it, and submit the `.ipynb` file again. If it still cannot be "
                  "graded, write to your instructor.")
ADVICE = (  # (words in the reason, what to do), first match wins
    (("not JSON", "not a notebook", "not a Jupyter", "invalid", "truncated", "empty"),
     "The file is not a complete Jupyter notebook. Submit the `.ipynb` file you worked in (File → Save, then "
     "upload that file), not a copy, an export (.py, .html, .pdf) or a renamed file."),
    (("too large", "larger than"),
     "The file is too large. Clear the outputs (Edit → Clear All Outputs), save, and submit again."),
    (("took longer", "timed out", "ran out of time", "time limit"),
     "Your code ran too long. Look for an endless loop or a very large computation, and check that the "
     "notebook finishes in a few seconds when you run it from the top."),
    (("died", "killed", "memory"),
     "Your code stopped the grader's Python process (it used too much memory, or exited). Remove calls such as "
     "`os._exit` or `sys.exit`, and very large tensors, then submit again."),
    (("cannot tell which assignment",),
     "The grader could not tell which assignment this notebook is for: the information the exercise notebook "
     "carries was removed (for example by copying the cells into a new notebook). Open the exercise notebook you "
     "were given, copy your answers into its `# TASK` cells, save it, and submit that file."),
    (("ambiguous", "several notebooks"),
     "Your submission holds several notebooks and none is named like the exercise. Keep one notebook, named "
     "like the exercise, and submit again."),
)
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][^\s\\/:'\"]+)+[\\/]([^\s\\/:'\"]+)")


def student_reason(reason: str) -> str:
    """The reason without the instructor's folders (any path becomes its file name) or the instructor's flags."""
    return _PATH.sub(lambda m: m.group(1), plain(reason)).replace(CHOOSE_WITH_FLAG, "")


def advice_for(reason: str) -> str:
    lowered = reason.lower()
    for words, advice in ADVICE:
        if any(w.lower() in lowered for w in words):
            return advice
    return GENERIC_ADVICE


@dataclass
class Feedback:
    """Everything a feedback page shows, already filtered for its audience."""

    title: str
    student: str
    audience: str  # student | instructor
    status: str  # graded | could not grade | missing
    report: GradeReport | None = None
    hidden: HiddenSummary = field(default_factory=HiddenSummary)
    hidden_earned: float | None = None
    reason: str = ""
    blank: bool = False
    raw_score: float | None = None
    final_score: float | None = None
    max_score: float | None = None
    late: str = ""
    overrides: list = field(default_factory=list)  # (check title, points, max, reason, author, when)
    comments: list = field(default_factory=list)  # (text, author, when)
    flags: list = field(default_factory=list)  # integrity, instructor copy only

    @property
    def advice(self) -> str:
        return advice_for(self.reason)


def build_feedback(*, title: str, student: str, audience: str, status: str, report: GradeReport | None,
                   reason: str = "", blank: bool = False, raw_score=None, final_score=None, max_score=None,
                   late: str = "", overrides=(), comments=(), flags=()) -> Feedback:
    shown, hidden = view_for(report, audience) if report is not None else (None, HiddenSummary())
    if shown is not None:  # the file's name only: never the instructor's folders
        shown = replace(shown, submission=PurePath(shown.submission.replace("\\", "/")).name)
    earned = None
    if report is not None and hidden:
        earned = sum(c.score for c in report.checks if c.hidden)
    if audience == "student":
        reason = student_reason(reason)
        hidden_ids = {c.id for c in report.checks if c.hidden} if report is not None else set()
        overrides = [o for o in overrides if o[0] not in hidden_ids]
        flags = ()
    titles = {c.id: c.title for c in report.checks} if report is not None else {}
    overrides = [(titles.get(o[0], o[0]),) + tuple(o[1:]) for o in overrides]
    return Feedback(title, student, audience, status, shown, hidden, earned, reason, blank, raw_score, final_score,
                    max_score, late, list(overrides), list(comments), list(flags))


def failed_first(report: GradeReport) -> list:
    return [c for c in report.checks if not c.passed]


def feedback_html(feedback: Feedback) -> str:
    return render_page("feedback.html.j2", f=feedback, status_of=check_status, words=STATUS_WORDS["html"],
                       failed=failed_first(feedback.report) if feedback.report and not feedback.blank else [],
                       blank_message=BLANK_MESSAGE)


def feedback_text(feedback: Feedback) -> str:
    """The plain-text report: what `python grade.py` prints, plus the release's own lines."""
    lines: list[str] = []
    if feedback.status == "missing":
        return f"{feedback.title}\nNo submission was found for you."
    if feedback.report is None:
        return (f"{feedback.title}\nScore: not graded\n\nYour notebook could not be graded: {feedback.reason}\n"
                f"What to do: {feedback.advice}")
    if feedback.blank:
        lines = [f"{feedback.title}: {feedback.report.submission}",
                 f"Score: 0 / {feedback.max_score:g}", "", BLANK_MESSAGE]
    else:
        lines = [render_terminal(feedback.report)]
    extra = []
    if feedback.hidden and feedback.hidden_earned is not None:
        extra.append(feedback.hidden.released_sentence(feedback.hidden_earned))
    for title, pts, maximum, reason, author, when in feedback.overrides:
        extra.append(f"Changed by your instructor: {title}: {pts:g}/{maximum:g} ({reason})")
    if feedback.late:
        extra.append(f"Late: {feedback.late}")
    if feedback.final_score is not None and (feedback.late or feedback.overrides or feedback.hidden):
        extra.append(f"Your grade: {feedback.final_score:g} / {feedback.max_score:g}")
    for text, author, when in feedback.comments:
        extra.append(f"Comment from {author}: {text}")
    return "\n".join(lines + ([""] + extra if extra else []))


def feedback_markdown(feedback: Feedback) -> str:
    heading = f"{sanitize.markdown(feedback.title)}: feedback for {sanitize.markdown(feedback.student)}"
    return f"# {heading}\n\n{sanitize.markdown_block(feedback_text(feedback))}\n"
