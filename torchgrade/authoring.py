"""`python grade.py --assign solutions/NAME.ipynb`: the exercise notebook, generated from the solution.

The solution notebook is the one source. Its solution regions are marked the way
instructors already mark them:

* ``# BEGIN SOLUTION`` ... ``# END SOLUTION`` blocks (nbgrader's ``### BEGIN SOLUTION`` too);
* a line ending with ``# SOLUTION`` (otter's style): an assignment keeps its left-hand
  side (``f = x**3 + y**2  # SOLUTION`` becomes ``f = ...``), any other line is removed.

Every region becomes a placeholder, every output is cleared, ``# GIVEN``/``# TASK n``
cells, markdown and set-up cells are kept, ``metadata.torchgrade.assignment`` is set and
the notebook ends with the self-check cell. The bytes depend only on the solution's
content (no time stamps, ids kept or derived from content and position), so CI can
regenerate an exercise in memory and compare it with the shipped file.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .errors import EXIT_BAD_SUBMISSION, GradingError
from .loader import load_notebook
from .locate import marker_of

BEGIN = re.compile(r"^\s*#+\s*BEGIN\s+SOLUTION\s*$", re.IGNORECASE)
END = re.compile(r"^\s*#+\s*END\s+SOLUTION\s*$", re.IGNORECASE)
TRAILING = re.compile(r"^(?P<code>.*\S)\s*#\s*SOLUTION\s*$")
PLACEHOLDER = "# your code here"
CHECK_SOURCE = "from torchgrade import check; check()"
CHECK_CELL_ID = "torchgrade-check"
CHECK_LINE = re.compile(r"^\s*(from\s+torchgrade\s+import\s+check\b|import\s+torchgrade\s*$|(torchgrade\s*\.\s*)?check\s*\()")
IMPORTS_CHECK = re.compile(r"^\s*(from\s+torchgrade\s+import\s+check\b|import\s+torchgrade\b)", re.MULTILINE)
VALID_ID = re.compile(r"^[a-zA-Z0-9-_]{1,64}$")
DROPPED_CELL_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime")


class MarkerError(GradingError):
    """The solution notebook's solution markers are wrong; the reason names the cell."""

    exit_status = EXIT_BAD_SUBMISSION
    label = "cannot generate the exercise"


@dataclass(frozen=True)
class Region:
    """One solution region found in a cell (for the mutants: which code belongs to the solution)."""

    cell: int  # 1-based position in the solution notebook
    task: int | None  # the task the cell belongs to, None for set-up cells
    source: str  # the solution code of the region


# ------------------------------------------------------------------------------ lines

def _assignment_target(code: str) -> str | None:
    """`lhs` of a one-line assignment (`a, b = ...`, `x: T = ...`, `a = b = ...`), else None."""
    try:
        tree = ast.parse(code.strip())
    except SyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], (ast.Assign, ast.AnnAssign)):
        return None
    node = tree.body[0]
    text = code.strip()
    if isinstance(node, ast.AnnAssign):
        return ast.get_source_segment(text, node.target) + ": " + ast.get_source_segment(text, node.annotation)
    return " = ".join(ast.get_source_segment(text, target) for target in node.targets)


def strip_solution(source: str, where: str) -> tuple[str, list[str]]:
    """The source with its solution regions replaced, and the regions' code."""
    output: list[str] = []
    regions: list[str] = []
    block: list[str] | None = None
    indent = ""
    for line in source.splitlines():
        if BEGIN.match(line):
            if block is not None:
                raise MarkerError(f"{where}: `BEGIN SOLUTION` inside a solution block (a missing `END SOLUTION`?)")
            block, indent = [], line[: len(line) - len(line.lstrip())]
            continue
        if END.match(line):
            if block is None:
                raise MarkerError(f"{where}: `END SOLUTION` without a `BEGIN SOLUTION` before it")
            regions.append("\n".join(block))
            # `...` keeps an indented body valid (a comment alone would leave it empty) and reads as "fill me in".
            output.append(f"{indent}...  {PLACEHOLDER}")
            block = None
            continue
        if block is not None:
            block.append(line)
            continue
        if match := TRAILING.match(line):
            code = match.group("code")
            regions.append(code.strip())
            lead = code[: len(code) - len(code.lstrip())]
            target = _assignment_target(code)
            output.append(f"{lead}{target} = ...  {PLACEHOLDER}" if target else f"{lead}...  {PLACEHOLDER}")
            continue
        output.append(line)
    if block is not None:
        raise MarkerError(f"{where}: `BEGIN SOLUTION` is never closed by `END SOLUTION`")
    return "\n".join(output), regions


def without_markers(source: str) -> str:
    """The solution's code as students would write it: marker lines and `# SOLUTION` comments removed."""
    kept = [line for line in source.splitlines() if not (BEGIN.match(line) or END.match(line))]
    return "\n".join(match.group("code") if (match := TRAILING.match(line)) else line for line in kept)


def _check_statements(line: str) -> bool:
    parts = [part.strip() for part in line.split(";") if part.strip()]
    return bool(parts) and all(CHECK_LINE.match(part) for part in parts)


def is_check_cell(source: str) -> bool:
    """A cell that only runs the self-check (`from torchgrade import check; check()`)."""
    lines = [line for line in source.splitlines() if line.strip() and not line.strip().startswith("#")]
    return bool(lines) and all(_check_statements(line) for line in lines)


def without_self_check(source: str) -> str:
    """The cell with its self-check lines replaced by `pass` (while grading, the check must not run).

    Only a cell that imports `check` from torchgrade loses lines, so a student's own
    function named `check` still runs."""
    if not IMPORTS_CHECK.search(source):
        return source
    return "\n".join(line[: len(line) - len(line.lstrip())] + "pass" if _check_statements(line) else line
                     for line in source.splitlines())


# ------------------------------------------------------------------------------ cells

def _where(position: int, cell) -> str:
    marker = marker_of(cell)
    label = "" if marker is None else " (# GIVEN)" if marker[0] == "given" else f" (# TASK {marker[1]})"
    return f"cell {position}{label}"


def solution_regions(notebook: nbformat.NotebookNode) -> list[Region]:
    """Every solution region with its cell and task; raises MarkerError on a marker mistake."""
    regions: list[Region] = []
    task: int | None = None
    task_cells: dict[int, tuple[int, bool]] = {}  # task -> (first cell, has a region)
    for position, cell in enumerate(notebook.cells, start=1):
        if cell.get("cell_type") != "code":
            continue
        marker = marker_of(cell)
        where = _where(position, cell)
        if marker is not None:
            task = marker[1] if marker[0] == "task" else None
            if task is not None and task in task_cells:
                raise MarkerError(f"{where}: a second `# TASK {task}` cell (task numbers must be unique)")
        _, found = strip_solution(cell.source, where)
        if found and marker is not None and marker[0] == "given":
            raise MarkerError(f"{where}: a solution region in a `# GIVEN` cell (the grader owns these cells)")
        if task is not None:
            first, seen = task_cells.get(task, (position, False))
            task_cells[task] = (first, seen or bool(found))
        regions.extend(Region(position, task, text) for text in found)
    for number, (first, seen) in task_cells.items():
        if not seen:
            raise MarkerError(f"cell {first} (# TASK {number}): the task has no solution marker "
                              "(`# BEGIN SOLUTION`/`# END SOLUTION` or a line ending with `# SOLUTION`)")
    return regions


def _cell_id(cell, position: int, used: set[str]) -> str:
    """Keep the solution's id when it is valid and unused, else derive one from content and position."""
    given = cell.get("id")
    if isinstance(given, str) and VALID_ID.match(given) and given not in used:
        return given
    digest = hashlib.sha256(f"{position}\0{cell.cell_type}\0{cell.source}".encode()).hexdigest()
    candidate, n = digest[:12], 0
    while candidate in used:
        n += 1
        candidate = f"{digest[:12]}-{n}"
    return candidate


def exercise_from_solution(solution: nbformat.NotebookNode, assignment: str) -> nbformat.NotebookNode:
    """The exercise notebook (a new object; the solution is not changed)."""
    solution_regions(solution)  # marker errors first, each naming its cell
    cells, used = [], set()
    for position, cell in enumerate(solution.cells, start=1):
        if cell.cell_type == "code" and is_check_cell(cell.source):
            continue  # the self-check cell is appended once, at the end
        new = copy.deepcopy(cell)
        for key in DROPPED_CELL_METADATA:
            new.metadata.pop(key, None)
        if new.cell_type == "code":
            new.source, _ = strip_solution(cell.source, _where(position, cell))
            new.outputs, new.execution_count = [], None
        new.id = _cell_id(cell, position, used)
        used.add(new.id)
        cells.append(new)
    cells.append(nbformat.v4.new_code_cell(CHECK_SOURCE, id=CHECK_CELL_ID if CHECK_CELL_ID not in used else
                                           _cell_id(nbformat.v4.new_code_cell(CHECK_SOURCE), len(cells) + 1, used)))
    exercise = nbformat.v4.new_notebook(cells=cells, metadata=copy.deepcopy(solution.metadata))
    exercise.nbformat, exercise.nbformat_minor = 4, 5
    exercise.metadata.setdefault("torchgrade", {})["assignment"] = assignment
    return exercise


def exercise_text(solution_path: str | Path, assignment: str) -> str:
    """The exercise's exact file content: same solution, same text."""
    solution = load_notebook(solution_path)
    exercise = exercise_from_solution(solution, assignment)
    nbformat.validate(exercise)
    return nbformat.writes(exercise) + "\n"


# ------------------------------------------------------------------------------ targets

def exercise_target(solution_path: Path, config) -> tuple[str, Path]:
    """(assignment name, exercise path): the config entry whose solution this is, else by file name."""
    resolved = solution_path.resolve()
    for name, entry in config.assignments.items():
        if Path(entry.solution).resolve() == resolved:
            return name, Path(entry.exercise)
    name = solution_path.stem
    return name, resolved.parent.parent / "exercises" / f"{name}.ipynb"


def assign(solution_path: Path, config) -> Path:
    """Write the exercise for `solution_path`; returns where it went."""
    name, target = exercise_target(solution_path, config)
    text = exercise_text(solution_path, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8", newline="\n")
    return target
