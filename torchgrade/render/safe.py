"""The single call point the batch exports use to make text safe where a person reads it.

HTML is escaped by jinja2's autoescape (templates under render/templates) after ``plain``;
CSV cells go through ``csv_cell``; Markdown through ``torchgrade.sanitize`` directly. Both
functions here delegate to ``torchgrade.sanitize`` (control characters and bidi controls
shown as escapes, spreadsheet formulas neutralised), so every export follows it.
"""

from __future__ import annotations

from .. import sanitize

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # kept for callers; sanitize.csv_cell is the rule


def plain(text) -> str:
    """Text without control characters or bidirectional overrides (newlines and tabs kept)."""
    return sanitize.visible("" if text is None else text)


def csv_cell(text) -> str:
    """A CSV cell a spreadsheet shows as text: no control characters, never run as a formula."""
    return sanitize.csv_cell("" if text is None else text)
