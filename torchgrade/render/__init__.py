"""Renderers: each turns the one results model (results.GradeReport) into one format."""

from .gradescope import render_gradescope_json
from .terminal import render_terminal

RENDERERS = {"text": render_terminal, "json": render_gradescope_json}

__all__ = ["RENDERERS", "render_gradescope_json", "render_terminal"]
