"""Stage 7: the vocabulary of checks, and the context a check runs in.

Checks in grader modules are small functions ``check(ctx) -> Outcome``. They say
*what* to verify; this module says *how*, with one consistent feedback shape:
what was expected, what was found, and a hint a student can act on.
Everything here runs in the grader process on plain data from the snapshot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .assignment import Assignment, Reference, RunPlan
from .config import Tolerance
from .values import (
    CallRecord, Missing, Sequence, Snapshot, SnapshotError, TensorValue, Value, shape_text,
)


@dataclass(frozen=True)
class Outcome:
    passed: bool
    expected: str = ""
    found: str = ""
    hint: str = ""
    note: str = ""
    error: str = ""  # why the check could not judge the answer at all (a grader problem)


def passed(note: str = "") -> Outcome:
    return Outcome(True, note=note)


def failed(expected: str, found: str, hint: str = "") -> Outcome:
    return Outcome(False, expected=expected, found=found, hint=hint)


@dataclass(frozen=True)
class CellError:
    """An exception raised by a student cell (from the kernel's error message, as text)."""

    position: int
    task: int
    name: str
    value: str

    def describe(self) -> str:
        return f"cell {self.position} raised {self.name}: {self.value}"


@dataclass
class RunEvidence:
    """Everything one execution left for the checks: snapshots per task, errors, events."""

    run: RunPlan
    snapshots: dict[int, Snapshot] = field(default_factory=dict)
    unavailable: dict[int, str] = field(default_factory=dict)  # task -> why its snapshot is missing
    errors: list[CellError] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # timeouts, kernel deaths, removed shell lines
    markers: set[int] = field(default_factory=set)  # tasks whose marker cell was found
    inputs: dict = field(default_factory=dict)  # the inputs this run gave the GIVEN cells


@dataclass
class CheckContext:
    task: int
    evidence: RunEvidence
    reference: Reference
    tolerance: Tolerance

    @property
    def run(self) -> RunPlan:
        return self.evidence.run

    # ---- reading the evidence
    def value(self, path: str, task: int | None = None) -> Value:
        task = self.task if task is None else task
        snapshot = self.evidence.snapshots.get(task)
        if snapshot is None:
            return Missing(self.evidence.unavailable.get(task, "the task did not run"))
        return snapshot.values.get(path, Missing())

    def expected(self, path: str, task: int | None = None):
        return self.reference[self.task if task is None else task][path]

    def calls(self, task: int | None = None) -> tuple[CallRecord, ...]:
        snapshot = self.evidence.snapshots.get(self.task if task is None else task)
        return snapshot.calls if snapshot else ()

    def errors(self, task: int | None = None) -> list[CellError]:
        task = self.task if task is None else task
        return [e for e in self.evidence.errors if e.task == task]

    def why_missing(self, task: int | None = None) -> str:
        """Best explanation of why a name is missing: no marker, an exception, a dead kernel."""
        task = self.task if task is None else task
        return task_problem(self.evidence, task) or f"the TASK {task} cells never assigned it"

    # ---- the vocabulary
    def compare(self, path: str, *, what: str, hint: str, task: int | None = None,
                accept_one_tuple: bool = False, diagnose: Callable | None = None) -> Outcome:
        return compare_tensor(self.value(path, task), self.expected(path, task), name=path, what=what,
                              hint=hint, tolerance=self.tolerance, accept_one_tuple=accept_one_tuple,
                              diagnose=diagnose, why_missing=lambda: self.why_missing(task))

    def tensor(self, path: str, task: int | None = None) -> TensorValue | None:
        """The tensor at path, unwrapping a 1-tuple; None when it is not a tensor."""
        return unwrap_tensor(self.value(path, task))


def task_not_run(evidence: RunEvidence, task: int) -> str:
    """Why a task could not run at all in this run: no cell, or its values were lost ("" when it ran)."""
    if task not in evidence.markers:
        return f"no cell starting with `# TASK {task}` was found"
    return evidence.unavailable.get(task, "")


def task_problem(evidence: RunEvidence, task: int) -> str:
    """Why a task's code did not run to the end in this run ("" when it did): not run, or raised."""
    reason = task_not_run(evidence, task)
    if reason:
        return reason
    errors = [e for e in evidence.errors if e.task == task]
    return f"your code stopped with an error: {errors[0].describe()}" if errors else ""


def unwrap_tensor(value: Value) -> TensorValue | None:
    if isinstance(value, Sequence) and value.length == 1 and isinstance(value.items[0], TensorValue):
        return value.items[0]
    return value if isinstance(value, TensorValue) else None


def describe_found(value: Value, why_missing: Callable[[], str]) -> str:
    if isinstance(value, Missing):
        return f"nothing: {value.reason or why_missing()}"
    return value.describe()


def compare_tensor(found: Value, expected: torch.Tensor, *, name: str, what: str, hint: str,
                   tolerance: Tolerance, accept_one_tuple: bool = False, diagnose: Callable | None = None,
                   why_missing: Callable[[], str] = lambda: "") -> Outcome:
    """Existence, type, shape, dtype, NaN/Inf, then values within rtol/atol."""
    wanted = f"`{name}` = {what}: a {str(expected.dtype).replace('torch.', '')} tensor of shape {shape_text(expected.shape)}"
    if accept_one_tuple and isinstance(found, Sequence) and found.length == 1 and isinstance(found.items[0], TensorValue):
        inner = compare_tensor(found.items[0], expected, name=f"{name}[0]", what=what, hint=hint,
                               tolerance=tolerance, diagnose=diagnose)
        if inner.passed:
            return passed(note=f"`{name}` is a 1-tuple holding the right tensor; torch.autograd.grad returns a tuple, "
                               f"so unpack it (`{name}, = ...` or `[0]`) to get the tensor itself.")
        return inner
    if not isinstance(found, TensorValue):
        return failed(wanted, describe_found(found, why_missing), hint)
    if found.too_large or found.values is None:
        return failed(wanted, f"a tensor of shape {shape_text(found.shape)} whose values could not be read", hint)
    if tuple(found.shape) != tuple(expected.shape):
        return failed(wanted, f"a tensor of shape {shape_text(found.shape)}",
                      "Elementwise operations on x and y keep their shape; check for reductions or reshapes.")
    if found.dtype != str(expected.dtype).replace("torch.", ""):
        return failed(wanted, f"a {found.dtype} tensor",
                      "Compute it from x and y so it inherits their dtype; avoid creating new tensors with a fixed dtype.")
    try:
        actual = found.as_torch()
    except SnapshotError as problem:
        return failed(wanted, f"a tensor whose values could not be read ({problem})", hint)
    expected64, actual64 = expected.to(torch.float64), actual.to(torch.float64)
    if bool(torch.isfinite(expected64).all()) and not bool(torch.isfinite(actual64).all()):
        bad = int((~torch.isfinite(actual64)).sum())
        return failed(wanted, f"a tensor with {bad} NaN or infinite value{'s' if bad != 1 else ''}", hint)
    close = torch.isclose(actual64, expected64, rtol=tolerance.rtol, atol=tolerance.atol)
    if bool(close.all()):
        return passed()
    if diagnose is not None:
        targeted = diagnose(actual64, expected64)
        if targeted is not None:
            return targeted
    return failed(wanted, _mismatch_text(actual64, expected64, close), hint)


def _mismatch_text(actual: torch.Tensor, expected: torch.Tensor, close: torch.Tensor) -> str:
    wrong = int((~close).sum())
    first = tuple(int(i) for i in torch.nonzero(~close)[0].tolist())
    where = "[" + ", ".join(map(str, first)) + "]"
    return (f"wrong values at {wrong} of {close.numel()} positions; at {where} expected "
            f"{_number(expected[first])}, found {_number(actual[first])}")


def _number(value: torch.Tensor) -> str:
    number = float(value)
    return repr(round(number, 6)) if math.isfinite(number) else str(number)


def run_checks(assignment: Assignment, evidence: RunEvidence, reference: Reference,
               tolerance: Tolerance) -> dict[str, Outcome]:
    """Every check of the assignment against one run's evidence. A crashing check fails, with its reason."""
    outcomes = {}
    for spec in assignment.checks:
        context = CheckContext(spec.task, evidence, reference, tolerance)
        try:
            outcome = spec.function(context)
        except Exception as problem:  # a grader bug must not take the other checks down
            reason = f"the check itself failed ({type(problem).__name__}: {problem})"
            outcome = Outcome(False, "the check to run", reason,
                              "This is a grader problem, not yours: tell your instructor.", error=reason)
        outcomes[spec.id] = outcome
    return outcomes
