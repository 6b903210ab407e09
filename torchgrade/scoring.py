"""Stage 8: combine each check's outcomes over all runs into points.

A check earns its points only if it passed in every run. When it passed with the
example inputs but failed with random ones, the answer was right only for the
GIVEN values (typed in, or shape/dtype fixed by hand), and the message says so.
"""

from __future__ import annotations

from .assignment import Assignment
from .config import AssignmentConfig
from .evidence import RunPlan
from .outcome import Outcome
from .results import CheckResult, TaskResult

ONLY_FOR_EXAMPLE = ("Correct for the example inputs, but not for {run}. Values that are typed in, or a shape or "
                    "dtype fixed by hand, only work for one set of inputs: {advice}")


def combine(runs: list[RunPlan], outcomes: list[Outcome], advice: str = "") -> Outcome:
    for run, outcome in zip(runs, outcomes):
        if outcome.passed:
            continue
        if not run.is_example and outcomes[0].passed:
            # Its values and shapes are the other inputs', not the notebook's: say so before the student compares.
            inputs = f"with {run.describe()}: "
            return Outcome(False, expected=inputs + outcome.expected if outcome.expected else "",
                           found=inputs + outcome.found if outcome.found else "",
                           hint=ONLY_FOR_EXAMPLE.format(run=run.describe(), advice=advice), error=outcome.error)
        return outcome
    notes = [o.note for o in outcomes if o.note]
    return Outcome(True, note=notes[0] if notes else "")


def score(assignment: Assignment, config: AssignmentConfig, runs: list[RunPlan],
          per_run: list[dict[str, Outcome]], task_problems: dict[int, str] | None = None) -> tuple[TaskResult, ...]:
    """Points per check; a failed check of a task that could not run carries that reason as its error."""
    task_problems = task_problems or {}
    tasks = []
    for task in assignment.tasks:
        results = []
        for spec in assignment.checks_of(task.number):
            settings = config.checks[spec.id]
            outcome = combine(runs, [outcomes[spec.id] for outcomes in per_run], assignment.hint("only_for_example"))
            results.append(CheckResult(
                id=spec.id, task=task.number, title=spec.title,
                score=settings.points if outcome.passed else 0.0, max_score=settings.points,
                passed=outcome.passed, expected=outcome.expected, found=outcome.found,
                hint=outcome.hint, note=outcome.note, hidden=settings.hidden,
                error="" if outcome.passed else (outcome.error or task_problems.get(task.number, "")),
            ))
        tasks.append(TaskResult(task.number, task.title, tuple(results)))
    return tuple(tasks)
