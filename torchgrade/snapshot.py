"""Stage 5: read each task's snapshot out of the executed cells, as plain typed data.

A snapshot counts only when its nonce appears exactly once, at the start of a
line, in the stdout of its own snapshot cell, followed by a valid HMAC-SHA256
signature of the document made with the execution's secret (which only the probe
holds). Forged lines printed by student cells are in other cells' output and never
read; a line printed into the snapshot cell itself (by an IPython hook, a replaced
``__torchgrade__``, a patched output stream) has no valid signature; a second line
with the nonce means something tampered with the probe. In each case the snapshot
is rejected, and the task's values count as never having arrived.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from .assignment import Assignment
from .evidence import CellError, RunEvidence, RunPlan, SnapshotError, parse_snapshot
from .execution import ExecutionResult
from .instrument import Plan
from .locate import Layout

# What one snapshot, and all snapshots of one run, may weigh: the grader's memory and the gradebook stay bounded
# whatever a notebook binds to its names (the probe sends at most max_snapshot_values numbers per snapshot).
MAX_SNAPSHOT_CHARS = 8 * 2**20
MAX_SNAPSHOT_ELEMENTS = 300_000
MAX_RUN_ELEMENTS = 1_000_000


def read_evidence(plan: Plan, execution: ExecutionResult, assignment: Assignment, layout: Layout,
                  run: RunPlan) -> RunEvidence:
    events = [str(event)[:2000] for event in list(plan.events) + list(execution.events)][:1000]
    evidence = RunEvidence(run=run, events=events,
                           markers={n for n in assignment.task_numbers if layout.has_marker(n)})
    for cell, outcome in zip(plan.cells, execution.cells):
        if cell.role == "student" and outcome.status == "error":
            evidence.errors.append(_cell_error(cell, outcome.error_name, outcome.error_value))
        elif cell.role == "student" and outcome.status == "timeout":
            evidence.errors.append(_cell_error(cell, "Timeout", outcome.error_value))
    left = MAX_RUN_ELEMENTS
    for task in assignment.tasks:
        index, nonce = plan.nonces[task.number]
        outcome = execution.cells[index]
        try:
            evidence.snapshots[task.number], weight = _parse_weighed(
                outcome.stdout, nonce, task.number, list(task.snapshot), execution.secret,
                limit=min(MAX_SNAPSHOT_ELEMENTS, left))
            left -= weight
        except SnapshotError as problem:
            evidence.unavailable[task.number] = _why_unavailable(plan, execution, task.number, outcome, problem)
    return evidence


def _cell_error(cell, name, value) -> CellError:
    return CellError(position=cell.position, task=cell.task, name=str(name)[:80], value=str(value)[:2000])


def _parse(stdout: str, nonce: str, task: int, paths: list[str], secret: str | None = None):
    return _parse_weighed(stdout, nonce, task, paths, secret)[0]


def _parse_weighed(stdout: str, nonce: str, task: int, paths: list[str], secret: str | None = None,
                   limit: int = MAX_SNAPSHOT_ELEMENTS):
    """(snapshot, its number of JSON elements); SnapshotError when it is not this task's genuine snapshot."""
    lines = [line for line in stdout.splitlines() if line.startswith(nonce)]
    if len(lines) != 1:
        raise SnapshotError("no snapshot arrived" if not lines else "the snapshot was sent more than once (tampering)")
    rest = lines[0][len(nonce):]
    if len(rest) > MAX_SNAPSHOT_CHARS:
        raise SnapshotError(f"the snapshot was larger than {MAX_SNAPSHOT_CHARS // 2**20} MiB")
    signature, _, text = ("-", "", rest) if rest.startswith("{") else rest.partition(" ")  # unsigned: "{..." or "- {..."
    if secret:
        expected = hmac.new(bytes.fromhex(secret), (nonce + text).encode("utf-8", "replace"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.encode("ascii", "replace"), expected.encode("ascii")):
            raise SnapshotError("a forged snapshot was printed in its place (tampering)")
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise SnapshotError("the snapshot was not valid JSON") from None
    weight = _elements(document)
    if weight > limit:
        raise SnapshotError(f"the snapshot held {weight} values, more than the {limit} allowed")
    snapshot = parse_snapshot(document, task, paths)
    if snapshot.integrity:
        raise SnapshotError("the grader's probes were tampered with: " + "; ".join(snapshot.integrity))
    return snapshot, weight


def _elements(document) -> int:
    """Every JSON value in the document (iteratively: depth is no risk)."""
    count, stack = 0, [document]
    while stack:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


def _why_unavailable(plan: Plan, execution: ExecutionResult, task: int, outcome, problem: SnapshotError) -> str:
    task_cells = [run for cell, run in zip(plan.cells, execution.cells) if cell.task == task]
    if any(run.status == "kernel_died" for run in task_cells):
        return f"the Python kernel died during task {task}, so its values were lost"
    if any(run.status == "timeout" for run in task_cells):
        return f"task {task} ran out of time, so its values could not be read"
    if outcome.status == "not_run":
        return f"task {task} was never reached (an earlier problem stopped the run)"
    if outcome.truncated:
        return f"the values of task {task} were too large to read"
    return f"the values of task {task} could not be read ({problem})"
