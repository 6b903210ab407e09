"""The single call point for making text safe where a person reads it.

HTML is escaped by jinja2's autoescape (templates under render/templates); this module
handles what autoescape does not: control characters in any text, and spreadsheet
formulas in CSV cells. When ``torchgrade/sanitize.py`` (issue 11) lands, these two
functions delegate to it, and every export follows.
"""

from __future__ import annotations

import re

_CONTROL = re.compile("[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def plain(text) -> str:
    """Text without control characters or bidirectional overrides (newlines and tabs kept)."""
    return _CONTROL.sub("", str(text if text is not None else ""))


def csv_cell(text) -> str:
    """A CSV cell a spreadsheet shows as text: no control characters, and never run as a formula."""
    value = plain(text).replace("\r", " ")
    return "'" + value if value.startswith(FORMULA_START) else value
