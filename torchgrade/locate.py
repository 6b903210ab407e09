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
    unknown_tasks: list[int] = field(default_factory=list)

    def cells_of(self, task: int) -> list[StudentCell]:
        return self.tasks.get(task, [])

    def has_marker(self, task: int) -> bool:
        return task in self.tasks


def _first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip():
            return line
    return ""


def marker_of(cell: nbformat.NotebookNode) -> tuple[str, int | None] | None:
    """('task', n), ('given', None) or None for an ordinary cell."""
    first = _first_line(cell.get("source", ""))
    if match := TASK_MARKER.match(first):
        return "task", int(match.group(1))
    if GIVEN_MARKER.match(first):
        return "given", None
    for tag in cell.get("metadata", {}).get("tags", []) or []:
        if isinstance(tag, str) and (match := TASK_TAG.match(tag)):
            return "task", int(match.group(1))
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
                layout.unknown_tasks.append(number)
                current = None
                continue
            current = number
            layout.tasks.setdefault(number, [])
        target = layout.setup if not seen_marker else layout.tasks.get(current) if current is not None else None
        if target is not None:
            target.append(StudentCell(position, cell.source))
    return layout
