"""Stage 3: turn a located submission into the cells the executor runs.

The executed notebook is built fresh (the submitted file's outputs, ids and
metadata never count):

    prelude (probe) | student setup cells | for each task:
        grader's GIVEN code (if the task has one) | marker + bridge | student cells | snapshot

Student cells are passed through ``neutralize_magics`` so shell escapes
(`!pip ...`, `%pip ...`, `%%bash`) cannot install packages or stop grading.
Each snapshot cell carries a fresh random nonce that no student cell has seen.
"""

from __future__ import annotations

import json
import re
import secrets
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from .assignment import Assignment
from .evidence import Drawn
from .authoring import without_self_check
from .execution import PlannedCell
from .locate import Layout, StudentCell
from .zygote_io import probe_definition, probe_source

PROBE_SOURCE = probe_source(Path(__file__).parent)  # probe_kernel.py and its parts, joined
PROBE_SETTINGS = {"max_values": 200_000, "max_snapshot_values": 200_000, "max_nodes": 20_000, "max_calls_per_task": 200}

KEPT_CELL_MAGICS = {"capture", "time"}  # run the body as it is
UNWRAPPED_CELL_MAGICS = {"timeit", "prun"}  # run the body once, without the magic
KEPT_LINE_MAGICS = {"matplotlib", "config", "load_ext", "autoreload"}
UNWRAPPED_LINE_MAGICS = {"time", "timeit", "prun"}
MAGIC = re.compile(r"^(\s*)(%{1,2})(\w+)\s*(.*)$")


@dataclass
class Plan:
    cells: list[PlannedCell]
    nonces: dict[int, tuple[int, str]] = field(default_factory=dict)  # task -> (cell index, nonce)
    events: list[str] = field(default_factory=list)


def prelude_source() -> str:
    """The probe as one string, compiled from source by the cell: IPython compiles a cell's AST node by node, 0.3 s
    for the probe's 700 lines in every run of either engine; from source it takes 0.01 s, and it defines the same."""
    return (probe_definition(PROBE_SOURCE) +
            f"__torchgrade__ = _torchgrade_install({json.dumps(PROBE_SETTINGS)})\n"
            "del _torchgrade_install\n")


def neutralize_magics(cell: StudentCell) -> tuple[str, list[str]]:
    """Remove shell escapes and magics that could install software or need a shell; keep harmless ones."""
    lines, removed = cell.source.splitlines(), []
    first = lines[0].strip() if lines else ""
    if first.startswith("%%"):
        name = first[2:].split()[0] if len(first) > 2 else ""
        if name in KEPT_CELL_MAGICS:
            return cell.source, []
        if name in UNWRAPPED_CELL_MAGICS:
            return "\n".join(lines[1:]), []
        return "pass", [f"cell {cell.position}: the `%%{name}` cell was not run (shell and cell magics are skipped during grading)"]
    output = []
    for line in lines:
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        if stripped.startswith("!"):
            output.append(f"{indent}pass  # grader: shell command removed")
            removed.append(stripped)
            continue
        match = MAGIC.match(line)
        if match and match.group(2) == "%":
            name, rest = match.group(3), match.group(4)
            if name in KEPT_LINE_MAGICS:
                output.append(line)
            elif name in UNWRAPPED_LINE_MAGICS:
                output.append(f"{indent}{rest}" if rest else f"{indent}pass")
            else:
                output.append(f"{indent}pass  # grader: magic removed")
                removed.append(stripped)
            continue
        output.append(line)
    events = [f"cell {cell.position}: `{text[:60]}` was not run (shell commands and magics are skipped during grading)"
              for text in removed]
    return "\n".join(output), events


def instrument(layout: Layout, assignment: Assignment, inputs: dict[str, Drawn]) -> Plan:
    plan = Plan([PlannedCell(prelude_source(), "prelude")])
    _add_student_cells(plan, layout.setup, task=0)
    for task in assignment.tasks:
        given = assignment.given_code(task, inputs)
        if given is not None:
            plan.cells.append(PlannedCell(given, "given", task.number, resumable=True))
        marker = f"__torchgrade__.begin_task({task.number})"
        if task.bridge:  # grader code: its autograd calls are not the student's (recorded under task -1)
            marker = (f"__torchgrade__.begin_task(-1)\ntry:\n{textwrap.indent(task.bridge.strip(), '    ')}\n"
                      f"finally:\n    {marker}")
        plan.cells.append(PlannedCell(marker, "marker", task.number))
        _add_student_cells(plan, layout.cells_of(task.number), task=task.number)
        nonce = "TORCHGRADE-" + secrets.token_hex(16) + ":"
        plan.nonces[task.number] = (len(plan.cells), nonce)
        source = f"__torchgrade__.snapshot({task.number}, {list(task.snapshot)!r}, {nonce!r})"
        plan.cells.append(PlannedCell(source, "snapshot", task.number, keep_stdout=True))
    return plan


def _add_student_cells(plan: Plan, cells: list[StudentCell], task: int) -> None:
    for cell in cells:
        source, events = neutralize_magics(cell)
        source = without_self_check(source)  # the notebook's own check() cell: skipped, and no note about it
        plan.events.extend(events)
        plan.cells.append(PlannedCell(source, "student", task, position=cell.position))
