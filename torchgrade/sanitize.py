"""One text-sanitising step for everything a person reads: terminal, Markdown, HTML, CSV.

Student content (``!`` lines, error messages, printed values, class names, file and
folder names) is written by someone who has read this code. Every renderer passes such
text through one of these functions at the point where it is written (the "sink"):

- ``visible``: for a terminal or a plain-text file. Control characters (C0 except newline
  and tab, DEL, C1) and the invisible bidirectional controls that reorder what a reader
  sees are shown as escapes (``\\x1b``, ``\\u202e``); a carriage return becomes a line
  break (a bare CR would let a line overwrite "Score: 0 / 20"); lone UTF-16 surrogates
  (which cannot even be encoded) become U+FFFD.
- ``one_line``: ``visible``, then every run of whitespace (line breaks, tabs) is one space.
  For progress lines, summaries, names.
- ``markdown``: inline Markdown text that renders exactly as written: every ASCII
  punctuation character is backslash-escaped (CommonMark allows it for all of them), so
  no emphasis, link, image, HTML tag, table pipe, heading or autolink
  (``https\\://``, ``www\\.``, ``a\\@b``) is formed. ``markdown_cell`` is the same for a
  table cell, with line breaks as ``<br>``. ``markdown_code`` is an inline code span and
  ``markdown_block`` a fenced block, each with a fence longer than any backtick run
  inside.
- ``html_text``: ``visible``, then HTML-escaped (quotes too).
- ``csv_cell``: ``visible``, and a cell a spreadsheet would run as a formula (starting with
  ``=``, ``+``, ``-``, ``@``, a tab or a carriage return, also after leading spaces, also in
  their full-width forms) gets a leading apostrophe.
"""

from __future__ import annotations

import html
import re

# C0 controls except \t (09) and \n (0a), DEL, C1 controls; the bidi embedding/override/isolate controls and
# marks (Trojan Source); the BOM. \r is handled before (it becomes a line break).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_LINE_BREAKS = re.compile("\r\n|[\r\u2028\u2029\x85]")
_MARKDOWN_SPECIAL = re.compile(r"""([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])""")
_FORMULA = re.compile("^[\\s\u3000]*[=+\\-@\t\r\uff1d\uff0b\uff0d\uff20]")
_BACKTICKS = re.compile("`+")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: object, limit: int | None = None) -> str:
    """Plain text safe for a terminal or a text file (newlines and tabs kept). Cut to `limit` characters."""
    text = _SURROGATE.sub("\ufffd", str(text))
    text = _CONTROL.sub(_escape, _LINE_BREAKS.sub("\n", text))
    return _cut(text, limit)


def one_line(text: object, limit: int | None = None) -> str:
    """``visible`` on one line: every run of whitespace (newlines, tabs) is one space."""
    return _cut(" ".join(visible(text).split()), limit)


def markdown(text: object, limit: int | None = None) -> str:
    """Inline Markdown that renders as the literal text: nothing in it becomes markup, a link or an image."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", one_line(text, limit))


def markdown_cell(text: object, limit: int | None = None) -> str:
    """Text for one cell of a Markdown table: escaped like ``markdown``, line breaks as ``<br>``."""
    lines = [line.strip() for line in visible(text, limit).split("\n")]
    return "<br>".join(_MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(line.split())) for line in lines if line)


def markdown_code(text: object, limit: int | None = None, *, in_table: bool = False) -> str:
    """An inline code span holding the literal text (pipes escaped when it sits in a table, as GFM requires)."""
    text = one_line(text, limit)
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    if in_table:
        text = text.replace("|", "\\|")
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def markdown_block(text: object, info: str = "text") -> str:
    """A fenced code block holding the literal text (its fence is longer than any backtick run inside)."""
    text = visible(text)
    fence = "`" * max(3, max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def html_text(text: object, limit: int | None = None) -> str:
    """Text for an HTML page: visible, then escaped (quotes included, so it is safe in attributes too)."""
    return html.escape(visible(text, limit), quote=True)


def csv_cell(text: object, limit: int | None = None) -> str:
    """A CSV text cell that a spreadsheet shows as text: never a formula, no control characters."""
    raw = str(text)
    text = visible(raw, limit)
    return "'" + text if _FORMULA.match(raw) or _FORMULA.match(text) else text


def _cut(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[: max(0, limit - 1)].rstrip() + "…"


__all__ = ["csv_cell", "html_text", "markdown", "markdown_block", "markdown_cell", "markdown_code", "one_line",
           "visible"]
