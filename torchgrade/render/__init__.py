"""Renderers: each turns the one results model (results.GradeReport) into one format.

RENDERERS maps a --format name to ``render(report) -> str``. FAILURE_RENDERERS maps
machine formats to ``render(reason) -> str``: the document written when a notebook
could not be graded at all, so tools downstream never receive nothing.
"""

from .gradescope import render_gradescope_failure, render_gradescope_json
from .terminal import render_terminal

RENDERERS = {"text": render_terminal, "json": render_gradescope_json}
FAILURE_RENDERERS = {"json": render_gradescope_failure}

__all__ = ["FAILURE_RENDERERS", "RENDERERS"]
