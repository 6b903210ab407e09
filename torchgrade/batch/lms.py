"""LMS-ready grade files, written beside grades.csv from every row of the gradebook.

- ``canvas.csv``: Canvas's gradebook import. Columns ``Student``, ``ID``, ``SIS User ID``,
  ``SIS Login ID``, ``Section`` (what Canvas's own export starts with; Canvas matches rows
  on them), then one column for this assignment, headed ``lms.canvas_column`` from
  config.yaml (Canvas's export names it ``Title (assignment id)``; use that to update an
  existing column) or else the assignment's title.
- ``moodle.csv``: Moodle's grade import (Grades → Import → CSV file). One identifier
  column, chosen by the roster: ``Email address`` when every student has one, else ``Username``,
  else ``ID number``, else the one most students have (the summary names who is left out;
  map it under "Identify user by"), then the grade column (``lms.moodle_column`` or the
  title). Not written when no student has any of them.
- ``gradescope.csv``: keyed like a Gradescope roster: ``Name``, ``Email``, ``SID`` and the
  score (``lms.gradescope_column`` or ``Score``).

The score is the final one (overrides and late penalty applied). A submission that could
not be graded, and a roster student without one, export a blank cell, never 0: every LMS
reads blank as "no grade yet" and leaves the gradebook cell alone.
"""

from __future__ import annotations

from pathlib import Path

from .exports import StudentRow, _write_csv, cell_text, number

MOODLE_IDENTIFIERS = (("email", "Email address"), ("username", "Username"), ("id_number", "ID number"))


def _id(row: StudentRow, name: str) -> str:
    return getattr(row.ids, name, "") if row.ids is not None else ""


def _score(row: StudentRow) -> str:
    return number(row.final)  # None (not graded, missing) -> ""


CANVAS_IDS = ("lms_id", "sis_user_id", "sis_login_id")  # what Canvas matches an imported row on


def write_canvas(path: Path, rows: list[StudentRow], column: str) -> str | None:
    """Writes canvas.csv; returns who Canvas will not be able to match (no ID of any kind), or None."""
    lines = [[cell_text(_id(row, "name") or row.student), cell_text(_id(row, "lms_id")), cell_text(_id(row, "sis_user_id")),
              cell_text(_id(row, "sis_login_id")), cell_text(_id(row, "section")), _score(row)] for row in rows]
    _write_csv(path, ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", cell_text(column)], lines)
    unmatched = [row.student for row in rows if not any(_id(row, name) for name in CANVAS_IDS)]
    if not unmatched:
        return None
    if len(unmatched) == len(rows):
        return ("canvas.csv has no Canvas ID, SIS User ID or SIS Login ID for anyone, so Canvas cannot match its "
                "rows: give a Canvas gradebook export as --roster to import it into Canvas")
    return f"canvas.csv: Canvas cannot match {len(unmatched)} student(s) with no Canvas ID in the roster ({_names(unmatched)})"


def _names(students: list[str]) -> str:
    return ", ".join(students[:5]) + (f" and {len(students) - 5} more" if len(students) > 5 else "")


def moodle_identifier(rows: list[StudentRow]) -> tuple[str, str] | None:
    """The roster field (and Moodle header) to identify users by: the first every student has, else the one most
    students have (the first of equals); None when no student has any."""
    counts = [(sum(1 for row in rows if _id(row, name)), name, header) for name, header in MOODLE_IDENTIFIERS]
    for count, name, header in counts:
        if rows and count == len(rows):
            return name, header
    best = max(counts, key=lambda item: item[0])  # max keeps the first of equals: email before username
    return (best[1], best[2]) if best[0] else None


def write_moodle(path: Path, rows: list[StudentRow], column: str) -> str | None:
    """Writes moodle.csv; returns why it was not written, or who it leaves out, or None."""
    chosen = moodle_identifier(rows)
    if chosen is None:
        if path.exists():
            path.unlink()
        return "moodle.csv not written: the roster has no email, username or ID number column"
    name, header = chosen
    lines = [[cell_text(_id(row, name)), _score(row)] for row in rows if _id(row, name)]
    _write_csv(path, [header, cell_text(column)], lines)
    left_out = [row.student for row in rows if not _id(row, name)]
    if not left_out:
        return None
    return (f"moodle.csv leaves out {len(left_out)} student(s) with no {header.lower()} in the roster "
            f"({_names(left_out)}): "
            "enter their grades in Moodle by hand, or add the column to the roster")


def write_gradescope(path: Path, rows: list[StudentRow], column: str) -> None:
    lines = [[cell_text(_id(row, "name") or row.student), cell_text(_id(row, "email")), cell_text(_id(row, "id_number")),
              _score(row)] for row in rows]
    _write_csv(path, ["Name", "Email", "SID", cell_text(column)], lines)


def write_lms_exports(output: Path, rows: list[StudentRow], entry) -> list[str]:
    """canvas.csv, moodle.csv and gradescope.csv; returns notes for the summary."""
    lms = entry.lms
    notes = [write_canvas(output / "canvas.csv", rows, lms.canvas_column or entry.title),
             write_moodle(output / "moodle.csv", rows, lms.moodle_column or entry.title)]
    notes = [note for note in notes if note]
    write_gradescope(output / "gradescope.csv", rows, lms.gradescope_column or "Score")
    return notes
