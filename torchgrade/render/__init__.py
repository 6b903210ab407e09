"""Renderers: each turns the one results model (results.GradeReport) into one format.

RENDERERS maps a --format name to ``render(report) -> str``. FAILURE_RENDERERS maps
machine formats to ``render(reason) -> str``: the document written when a notebook
could not be graded at all, so tools downstream never receive nothing.

Call them through ``render_report`` and ``render_failure``, which apply the hidden-check
policy (see ``torchgrade.hidden``): in a student's run, hidden checks are removed from the
report first, and a renderer that accepts ``hidden=`` is told how many were removed.
A failure renderer may accept ``name=``, ``entry=`` (the assignment's config) and
``grading=``, to fill in the assignment's points; it gets only the ones it declares.
"""

from __future__ import annotations

import inspect

from ..hidden import grading_requested, view_for
from ..results import GradeReport
from .classroom import render_classroom, render_classroom_failure
from .gradescope import render_gradescope_failure, render_gradescope_json
from .junit import render_junit, render_junit_failure
from .terminal import render_terminal

RENDERERS = {
    "text": render_terminal,
    "json": render_gradescope_json,
    "classroom": render_classroom,
    "junit": render_junit,
}
FAILURE_RENDERERS = {
    "json": render_gradescope_failure,
    "classroom": render_classroom_failure,
    "junit": render_junit_failure,
}


def _accepts(function, name: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def render_report(fmt: str, report: GradeReport, *, grading: bool = False) -> str:
    """Render in `fmt`; a student's run (not `grading`, no TORCHGRADE_GRADING=1) never shows hidden checks."""
    renderer = RENDERERS[fmt]
    report, hidden = view_for(report, "instructor" if grading_requested(grading) else "student")
    return renderer(report, hidden=hidden) if _accepts(renderer, "hidden") else renderer(report)


def render_failure(fmt: str, reason: str, *, name: str | None = None, entry=None, grading: bool = False) -> str:
    """The complete document for a notebook that could not be graded (only for formats in FAILURE_RENDERERS)."""
    renderer = FAILURE_RENDERERS[fmt]
    offered = {"name": name, "entry": entry, "grading": grading_requested(grading)}
    return renderer(reason, **{key: value for key, value in offered.items() if _accepts(renderer, key)})


__all__ = ["FAILURE_RENDERERS", "RENDERERS", "render_failure", "render_report"]
