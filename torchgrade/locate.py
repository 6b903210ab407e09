"""Stage 2: find the GIVEN cells and each task's cells by the contract's marker lines.

The contract: a code cell whose first line is ``# GIVEN`` holds inputs (the grader
owns it); a task starts at the code cell whose first line is ``# TASK n`` and runs
until the next GIVEN or TASK cell. Markers are read from the source, so grading works
when metadata was stripped or cell ids are missing or duplicated. A cell tag
``task-n`` or ``given`` (nbgrader-style metadata) is honoured as well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import nbformat

TASK_MARKER = re.compile(r"^\s*#\s*TASK\s+(\d+)\b", re.IGNORECASE)
MAX_TASK_DIGITS = 9  # "# TASK 99999...": a longer number is no task of any assignment (and int() of it is slow or fails)
MAX_UNKNOWN_LISTED = 10
GIVEN_MARKER = re.compile(r"^\s*#\s*GIVEN\b", re.IGNORECASE)
TASK_TAG = re.compile(r"^task-(\d+)$")


@dataclass(frozen=True)
class StudentCell:
    position: int  # 1-based position among all cells of the submitted notebook
    source: str


@dataclass
class Layout:
    """The submission's code, sorted by where the contract says it belongs."""

    setup: list[StudentCell] = field(default_factory=list)  # code before the first marker
    tasks: dict[int, list[StudentCell]] = field(default_factory=dict)
    given_positions: list[int] = field(default_factory=list)
    unknown_tasks: list[int | str] = field(default_factory=list)  # at most MAX_UNKNOWN_LISTED, each once

    def cells_of(self, task: int) -> list[StudentCell]:
        return self.tasks.get(task, [])

    def has_marker(self, task: int) -> bool:
        return task in self.tasks


def _first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip():
            return line
    return ""


def _task_number(digits: str) -> int | str:
    """The task number; a number too long for any assignment stays text (shown shortened)."""
    return int(digits) if len(digits) <= MAX_TASK_DIGITS else digits[:MAX_TASK_DIGITS] + "…"


def marker_of(cell: nbformat.NotebookNode) -> tuple[str, int | str | None] | None:
    """('task', n), ('given', None) or None for an ordinary cell."""
    source = cell.get("source", "")
    first = _first_line(source if isinstance(source, str) else "")
    if match := TASK_MARKER.match(first):
        return "task", _task_number(match.group(1))
    if GIVEN_MARKER.match(first):
        return "given", None
    metadata = cell.get("metadata")
    tags = metadata.get("tags") if isinstance(metadata, dict) else None
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, str) and (match := TASK_TAG.match(tag)):
            return "task", _task_number(match.group(1))
        if tag == "given":
            return "given", None
    return None


def locate_tasks(notebook: nbformat.NotebookNode, task_numbers: list[int]) -> Layout:
    layout = Layout()
    current: int | None = None  # None: before any marker, or inside a GIVEN block
    seen_marker = False
    for position, cell in enumerate(notebook.cells, start=1):
        if cell.get("cell_type") != "code":
            continue
        cell_marker = marker_of(cell)
        if cell_marker is not None:
            seen_marker = True
            kind, number = cell_marker
            if kind == "given":
                layout.given_positions.append(position)
                current = None
                continue
            if number not in task_numbers:
                if number not in layout.unknown_tasks and len(layout.unknown_tasks) < MAX_UNKNOWN_LISTED:
                    layout.unknown_tasks.append(number)
                current = None
                continue
            current = number
            layout.tasks.setdefault(number, [])
        target = layout.setup if not seen_marker else layout.tasks.get(current) if current is not None else None
        if target is not None:
            target.append(StudentCell(position, cell.source))
    return layout
