"""The grading pipeline, stage by stage:

    load and validate -> locate tasks -> instrument -> execute -> snapshot
    -> reference -> check -> score -> report

Each stage is its own module; this file only wires them, so the whole policy
reads top to bottom in ``grade_notebook``.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .assignment import Assignment, load_assignment
from .checks import Outcome, run_checks, task_not_run
from .config import AssignmentConfig
from .evidence import RunEvidence, RunPlan
from .execution import Executor
from .flags import flag_observations, flag_sources
from .instrument import instrument
from .loader import load_notebook
from .locate import Layout, locate_tasks
from .results import GradeReport
from .scoring import score
from .snapshot import read_evidence


def warm_references() -> None:
    """The first autograd.grad with grad_outputs imports torch's symbolic shapes (and sympy: about 1 s of CPU);
    the references need it, so it is imported before (in the batch's fork server) or while the runs execute.
    No torch op runs here: a process forked afterwards would hang on the thread pool it started."""
    try:
        import torch.fx.experimental.symbolic_shapes  # noqa: F401
    except ImportError:
        pass


@dataclass
class Grader:
    """One assignment, ready to grade any number of submissions."""

    name: str
    config: AssignmentConfig
    assignment: Assignment
    executor: Executor
    parallel_runs: bool = True

    @classmethod
    def from_config(cls, name: str, config: AssignmentConfig, executor: Executor | None = None) -> "Grader":
        assignment = load_assignment(config.grader, {k: v for k, v in config.checks.items()})
        if executor is None:
            from .fork_executor import make_executor

            executor = make_executor(config.limits.engine)
        return cls(name, config, assignment, executor)

    def grade_notebook(self, path: str | Path) -> GradeReport:
        started = time.monotonic()
        path = Path(path)
        limits = self.config.limits
        notebook = load_notebook(path, limits.max_cells, limits.max_source_bytes)  # 1. load and validate
        layout = locate_tasks(notebook, self.assignment.task_numbers)           # 2. locate tasks
        runs = self.plan_runs(path.read_bytes())
        with tempfile.TemporaryDirectory(prefix="torchgrade-") as scratch:
            workers = len(runs) if self.parallel_runs else 1
            with ThreadPoolExecutor(max_workers=workers) as pool:
                pending = pool.map(lambda run: self.execute_run(run, layout, path, Path(scratch)), runs)
                warm_references()  # while the runs execute
                evidence = list(pending)
        return self.report_from_evidence(path, layout, evidence, time.monotonic() - started)

    def report_from_evidence(self, path: Path, layout: Layout, evidence: list[RunEvidence], execution_time: float,
                             submission: str | None = None) -> GradeReport:
        """Check and score the evidence of every run; also used to re-score stored evidence without executing."""
        runs = [item.run for item in evidence]
        per_run = [self.check_run(item) for item in evidence]                   # 6-7. reference, check
        problems = {n: next((p for p in (task_not_run(item, n) for item in evidence) if p), "")
                    for n in self.assignment.task_numbers}
        tasks = score(self.assignment, self.config, runs, per_run, problems)    # 8. score
        return GradeReport(                                                      # 9. report (rendered by callers)
            assignment=self.name, title=self.config.title, submission=submission or str(path), tasks=tasks,
            execution_time=round(execution_time, 3), notes=self.notes(layout, evidence),
            runs=tuple(run.describe() for run in runs), grader_version=__version__,
            flags=self.flags(layout, evidence),
        )

    def plan_runs(self, content: bytes) -> list[RunPlan]:
        """The example run, then random runs seeded by the config seed and the file's content (reproducible)."""
        settings = self.config.random_runs
        digest = int.from_bytes(hashlib.sha256(content).digest()[:4], "big")
        return [self.assignment.plan_run(0, 0)] + [
            self.assignment.plan_run(i, settings.seed * 1_000_003 + digest + i) for i in range(1, settings.count + 1)
        ]

    def execute_run(self, run: RunPlan, layout: Layout, submission: Path, scratch: Path) -> RunEvidence:
        inputs = self.assignment.draw(run)                                      # each input from its declaration
        plan = instrument(layout, self.assignment, inputs)                      # 3. instrument
        workdir = scratch / f"run{run.index}"
        workdir.mkdir()
        shutil.copyfile(submission, workdir / submission.name)  # the kernel sees only the submission
        execution = self.executor.execute(plan.cells, self.config.limits, workdir)  # 4. execute
        evidence = read_evidence(plan, execution, self.assignment, layout, run)  # 5. snapshot
        evidence.inputs = inputs
        return evidence

    def check_run(self, evidence: RunEvidence, read: set[tuple[int, str]] | None = None) -> dict[str, Outcome]:
        reference = self.assignment.expected_references(evidence.inputs)
        return run_checks(self.assignment, evidence, reference, self.config.tolerance, read)

    @staticmethod
    def flags(layout: Layout, evidence: list[RunEvidence]) -> tuple:
        """Possible tampering (static analysis of the student's cells, and what the runs showed); never scored."""
        cells = layout.setup + [cell for number in sorted(layout.tasks) for cell in layout.tasks[number]]
        found = flag_sources((cell.position, cell.source) for cell in cells)
        sends_signals = any(flag.kind == "signal" for flag in found)
        unavailable = [(task, why) for item in evidence for task, why in sorted(item.unavailable.items())]
        events = [event for item in evidence for event in item.events]
        return tuple(found + flag_observations(unavailable, events, sends_signals))

    def notes(self, layout: Layout, evidence: list[RunEvidence]) -> tuple[str, ...]:
        notes: list[str] = []
        missing = [n for n in self.assignment.task_numbers if not layout.has_marker(n)]
        if missing:
            notes.append("No cell starts with " + ", ".join(f"`# TASK {n}`" for n in missing)
                         + ": keep the marker line at the top of each task's first cell.")
        if layout.unknown_tasks:
            notes.append("Cells marked " + ", ".join(f"`# TASK {n}`" for n in layout.unknown_tasks)
                         + " belong to no task of this assignment and were not run.")
        for item in evidence:
            label = "" if item.run.is_example else f" (with {item.run.describe()})"
            for event in item.events:
                text = event + label if "kernel" in event or "time" in event else event
                if text not in notes:
                    notes.append(text)
        return tuple(notes)
