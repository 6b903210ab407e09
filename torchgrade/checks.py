"""Stage 7: the context a check runs in, and the vocabulary checks are written with.

Checks in grader modules are small functions ``check(ctx) -> Outcome``. They say
*what* to verify; this module (with ``compare.py`` for values) says *how*, with one
feedback shape: what was expected, what was found, and a hint a student can act on.
A "how" check judges the graded value's own history: the probe tells which recorded
autograd call produced each object (``TensorValue.origin``), so a value typed in by
hand never earns a point that says it came from autograd. Everything here runs in
the grader process on plain data from the snapshot, and names no assignment's variables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .assignment import Assignment, Reference
from .compare import compare_value, describe_found, unwrap_tensor
from .config import Tolerance
from .evidence import (
    NotStored,
    CallRecord, CellError, Missing, RunEvidence, RunPlan, TensorValue, Value,
)
from .outcome import Outcome, excerpt, failed, first_failure, passed

__all__ = ["ANY_AUTOGRAD", "BACKWARD", "FUNC", "FUNCTIONAL", "GRAD", "CellError", "CheckContext", "Outcome",
           "RunEvidence", "excerpt", "failed", "first_failure", "passed", "run_checks", "task_problem"]

BACKWARD = frozenset({"Tensor.backward", "autograd.backward"})
GRAD = frozenset({"autograd.grad"})
FUNCTIONAL = frozenset({"functional.jacobian", "functional.hessian", "functional.vjp", "functional.jvp",
                        "functional.hvp"})
FUNC = frozenset({"func.grad", "func.grad_and_value", "func.vjp", "func.jacrev", "func.jacfwd", "func.hessian"})
ANY_AUTOGRAD = BACKWARD | GRAD | FUNCTIONAL | FUNC

NOT_FROM_AUTOGRAD = "the value did not come from autograd: no recorded autograd call produced this tensor"


@dataclass
class CheckContext:
    task: int
    evidence: RunEvidence
    reference: Reference
    tolerance: Tolerance
    assignment: Assignment | None = None
    read: set[tuple[int, str]] = field(default_factory=set)  # (task, path) of every value a check looked at

    @property
    def run(self) -> RunPlan:
        return self.evidence.run

    @property
    def inputs(self) -> dict:
        return self.evidence.inputs

    # ---- reading the evidence
    def value(self, path: str, task: int | None = None) -> Value:
        task = self.task if task is None else task
        snapshot = self.evidence.snapshots.get(task)
        if snapshot is None:
            return Missing(reason=self.evidence.unavailable.get(task, "the task did not run"))
        self.read.add((task, path))
        if path not in snapshot.values and self.evidence.values_pruned:
            raise NotStored(f"task {task}'s {path} was not stored")
        return snapshot.values.get(path, Missing())

    def tensor(self, path: str, task: int | None = None) -> TensorValue | None:
        """The tensor at path, unwrapping a 1-tuple; None when it is not a tensor."""
        return unwrap_tensor(self.value(path, task))

    def expected(self, path: str, task: int | None = None):
        return self.reference[self.task if task is None else task][path]

    def calls(self, task: int | None = None) -> tuple[CallRecord, ...]:
        snapshot = self.evidence.snapshots.get(self.task if task is None else task)
        return snapshot.calls if snapshot else ()

    def all_calls(self) -> tuple[CallRecord, ...]:
        return self.evidence.all_calls()

    def call(self, index: int) -> CallRecord | None:
        return next((c for c in self.all_calls() if c.index == index), None)

    def producer(self, path: str, task: int | None = None) -> CallRecord | None:
        """The recorded call that produced the value at path (None: typed in or computed by hand)."""
        tensor = self.tensor(path, task)
        return self.call(tensor.origin.call) if tensor is not None and tensor.origin else None

    def errors(self, task: int | None = None) -> list[CellError]:
        task = self.task if task is None else task
        return [e for e in self.evidence.errors if e.task == task]

    def why_missing(self, task: int | None = None) -> str:
        """Best explanation of why a name is missing: no marker, an exception, a dead kernel."""
        task = self.task if task is None else task
        return task_problem(self.evidence, task) or f"the TASK {task} cells never assigned it"

    def hint(self, key: str) -> str:
        return self.assignment.hint(key) if self.assignment else ""

    # ---- the vocabulary: values
    def compare(self, path: str, *, what: str, hint: str, task: int | None = None,
                accept_one_tuple: bool = False, diagnose: Callable | None = None) -> Outcome:
        """Exists, type, shape, dtype, NaN/Inf, then values within rtol/atol (tensors, numbers, modules)."""
        return compare_value(self.value(path, task), self.expected(path, task), name=path, what=what, hint=hint,
                             tolerance=self.tolerance, accept_one_tuple=accept_one_tuple, diagnose=diagnose,
                             why_missing=lambda: self.why_missing(task),
                             shape_hint=self.hint("shape"), dtype_hint=self.hint("dtype"))

    # ---- the vocabulary: how a value was made
    def produced_by(self, path: str, kinds=GRAD, *, create_graph: bool | None = None, what: str = "",
                    hint: str = "", task: int | None = None) -> Outcome:
        """The graded value itself is a result of a successful call of one of `kinds`, with create_graph as asked."""
        names = " or ".join(sorted(kinds))
        expected = what or f"`{path}` returned by {names}" + ("" if create_graph is None else
                                                              f" with create_graph={create_graph}")
        tensor, refused = self._autograd_tensor(path, task, via="result", expected=expected, hint=hint)
        if refused:
            return refused
        call = self.producer(path, task)
        if call is None or not call.is_kind(kinds):
            found = f"`{path}` came from {call.api if call else 'an unknown call'}, not from {names}"
            return failed(expected, found, hint)
        if create_graph is not None and call.create_graph != create_graph:
            found = (f"`{path}` came from a call without create_graph=True, so it has no graph of its own"
                     if create_graph else f"`{path}` came from a call with create_graph=True")
            return failed(expected, found, hint)
        return passed()

    def graph_reaches(self, path: str, inputs: tuple[str, ...], *, what: str = "", hint: str = "",
                      task: int | None = None) -> Outcome:
        """The value has a grad_fn and its graph reaches each of the input tensors (by the probe's identity)."""
        expected = what or f"`{path}` computed from {', '.join(f'`{n}`' for n in inputs)}, with a graph back to them"
        tensor = self.tensor(path, task)
        if tensor is None:
            return failed(expected, describe_found(self.value(path, task), lambda: self.why_missing(task)), hint)
        if tensor.grad_fn is None:
            return failed(expected, f"`{path}` has no grad_fn: autograd did not record how it was computed", hint)
        missing = [n for n in inputs if (t := self.tensor(n, task)) is None or t.token not in tensor.leaf_tokens]
        if missing:
            return failed(expected, f"`{path}` has a grad_fn ({tensor.grad_fn}) but its graph does not reach "
                          + ", ".join(f"`{n}`" for n in missing), hint)
        return passed()

    def grad_filled(self, path: str, *, passes: int | None = 1, scalar: bool = True, source: str | None = None,
                    what: str = "", hint: str = "", task: int | None = None) -> Outcome:
        """The .grad at path is the tensor backward pass(es) filled, not assigned or changed by hand."""
        expected = what or f"`{path}` filled by " + ("one backward pass" if passes == 1 else "backward passes")
        tensor, refused = self._autograd_tensor(path, task, via="grad", expected=expected, hint=hint)
        if refused:
            return refused
        runs = [self.call(i) for i in tensor.origin.passes]
        if any(c is None for c in runs):
            return failed(expected, f"`{path}` was filled by a pass the grader could not see", hint)
        if passes is not None and len(runs) != passes:
            return failed(expected, f"`{path}` holds the sum of {len(runs)} backward passes", hint)
        if scalar and not all(c.on_scalar or c.gradient_given for c in runs):
            return failed(expected, "a backward pass ran on a tensor with several elements, without `gradient`", hint)
        if source is not None:
            origin = self.tensor(source, task)
            if origin is None or origin.grad_fn_token is None or \
                    not all(origin.grad_fn_token in c.graph_nodes for c in runs):
                return failed(expected, f"the backward pass that filled `{path}` did not go through `{source}`", hint)
        return passed()

    def retain_graph_where_reused(self, paths: tuple[str, ...], *, what: str = "", hint: str = "",
                                  task: int | None = None) -> Outcome:
        """The passes that filled these .grad values keep the graph exactly when a later one of them reuses it."""
        expected = what or "retain_graph=True on a backward pass whose graph is used again, and not on the last pass"
        indices: set[int] = set()
        for path in paths:
            tensor = self.tensor(path, task)
            if tensor is None:
                return failed(expected, f"`{path}` was not filled by a backward pass", hint)
            problem = self._origin_problem(path, tensor, via="grad")
            if problem:
                return failed(expected, problem, hint)
            indices.update(tensor.origin.passes)
        runs = [c for c in (self.call(i) for i in sorted(indices)) if c is not None]
        nodes = frozenset().union(*(c.graph_nodes for c in runs)) if runs else frozenset()
        crashed = next((c for c in self.calls(task) if not c.succeeded and c.graph_nodes & nodes), None)
        if crashed is not None:
            return failed(expected, f"a later backward pass raised “{excerpt(crashed.raised.message)}”", hint)
        for position, call in enumerate(runs):
            reused_later = any(call.graph_nodes & later.graph_nodes for later in runs[position + 1:])
            if reused_later and not call.keeps_graph:
                return failed(expected, "a pass freed a graph that a later pass used again", hint)
            if not reused_later and call.retain_graph and not call.create_graph:
                return failed(expected, "the last backward pass through the graph also used retain_graph=True", hint)
        return passed()

    def differentiated_through(self, path: str, source: str, *, kinds=ANY_AUTOGRAD, what: str = "",
                               hint: str = "", task: int | None = None, source_task: int | None = None) -> Outcome:
        """The value is a result of an autograd call whose graph went through `source` (a higher derivative)."""
        expected = what or f"`{path}` obtained by differentiating `{source}` with autograd"
        tensor, refused = self._autograd_tensor(path, task, via="result", expected=expected, hint=hint)
        if refused:
            return refused
        call = self.producer(path, task)
        origin = self.tensor(source, task if source_task is None else source_task)
        if origin is None or origin.grad_fn_token is None:
            return failed(expected, f"`{source}` has no graph, so nothing can be differentiated through it", hint)
        if call is None or not call.is_kind(kinds) or origin.grad_fn_token not in call.graph_nodes:
            return failed(expected, f"`{path}` came from an autograd call that did not differentiate `{source}`",
                          hint)
        return passed()

    def _autograd_tensor(self, path: str, task: int | None, *, via: str, expected: str,
                         hint: str) -> tuple[TensorValue | None, Outcome | None]:
        """The graded tensor, or the failure that says it is missing or did not come from autograd."""
        tensor = self.tensor(path, task)
        if tensor is None:
            return None, failed(expected, describe_found(self.value(path, task), lambda: self.why_missing(task)), hint)
        problem = self._origin_problem(path, tensor, via=via)
        return tensor, (failed(expected, problem, hint) if problem else None)

    def _origin_problem(self, path: str, tensor: TensorValue, *, via: str) -> str:
        origin = tensor.origin
        if origin is None:
            return f"{NOT_FROM_AUTOGRAD} (`{path}` was typed in, computed by hand or copied)"
        if origin.via != via:
            return (f"`{path}` is a .grad that a backward pass filled, not a result returned by the call"
                    if via == "result" else f"`{path}` was assigned from a returned result, not filled by backward()")
        if origin.modified:
            return f"`{path}` came from autograd but its values were changed afterwards"
        if origin.replaced_before:
            return f"`{path}` was assigned by hand before backward() added to it"
        return ""


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


def run_checks(assignment: Assignment, evidence: RunEvidence, reference: Reference,
               tolerance: Tolerance, read: set[tuple[int, str]] | None = None) -> dict[str, Outcome]:
    """Every check of the assignment against one run's evidence. A crashing check fails, with its reason.
    ``read`` collects the (task, path) of every value the checks looked at."""
    outcomes = {}
    for spec in assignment.checks:
        context = CheckContext(spec.task, evidence, reference, tolerance, assignment, read if read is not None else set())
        try:
            outcome = spec.function(context)
        except NotStored:
            raise  # stored evidence lacks what this check reads: the caller runs the notebook again
        except Exception as problem:  # a grader bug must not take the other checks down
            reason = f"the check itself failed ({type(problem).__name__}: {problem})"
            outcome = Outcome(False, "the check to run", reason,
                              "This is a grader problem, not yours: tell your instructor.", error=reason)
        outcomes[spec.id] = outcome
    return outcomes
