"""The contract between the engine and one assignment's grader module.

A grader module (``graders/<name>.py``) builds an ``Assignment``: its tasks (what
the grader owns before each task, what to snapshot after it), how to make inputs
for a run, the reference values for those inputs, and its checks. The engine
knows nothing else about the assignment, so adding one never touches the engine.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .errors import ConfigError


@dataclass(frozen=True)
class RunPlan:
    """One execution of a submission: the example inputs or fresh random ones."""

    index: int
    is_example: bool
    shape: tuple[int, ...] | None = None
    dtype: torch.dtype | None = None
    low: float = 0.0
    high: float = 1.0
    seed: int = 0

    def describe(self) -> str:
        if self.is_example:
            return "the example inputs from the GIVEN cells"
        dtype = str(self.dtype).replace("torch.", "")
        return f"other inputs (random {'×'.join(map(str, self.shape))} {dtype} tensors)"


Inputs = dict[str, torch.Tensor]
Reference = dict[int, dict[str, object]]  # task -> path -> expected value


@dataclass(frozen=True)
class TaskSpec:
    number: int
    title: str
    snapshot: tuple[str, ...]
    given: Callable[[Inputs], str] | None = None  # grader-owned code run before the task
    bridge: str | None = None  # grader code run before the task to repair what an earlier task broke


@dataclass(frozen=True)
class CheckSpec:
    id: str
    task: int
    title: str
    function: Callable


@dataclass
class Assignment:
    name: str
    title: str
    tasks: list[TaskSpec] = field(default_factory=list)
    checks: list[CheckSpec] = field(default_factory=list)
    make_inputs: Callable[[RunPlan], Inputs] | None = None
    reference: Callable[[Inputs], Reference] | None = None

    def task(self, number: int, title: str, *, snapshot, given=None, bridge=None) -> None:
        self.tasks.append(TaskSpec(number, title, tuple(snapshot), given, bridge))

    def inputs(self, function: Callable[[RunPlan], Inputs]) -> Callable:
        self.make_inputs = function
        return function

    def references(self, function: Callable[[Inputs], Reference]) -> Callable:
        self.reference = function
        return function

    def check(self, check_id: str, *, task: int, title: str) -> Callable:
        def register(function: Callable) -> Callable:
            self.checks.append(CheckSpec(check_id, task, title, function))
            return function

        return register

    @property
    def task_numbers(self) -> list[int]:
        return [t.number for t in self.tasks]

    def checks_of(self, task: int) -> list[CheckSpec]:
        return [c for c in self.checks if c.task == task]

    def validate(self, origin: str) -> None:
        if self.make_inputs is None or self.reference is None:
            raise ConfigError(f"{origin}: the assignment must register @inputs and @references functions")
        numbers = self.task_numbers
        if len(set(numbers)) != len(numbers):
            raise ConfigError(f"{origin}: task numbers must be unique")
        for spec in self.checks:
            if spec.task not in numbers:
                raise ConfigError(f"{origin}: check {spec.id} belongs to unknown task {spec.task}")
        ids = [c.id for c in self.checks]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"{origin}: check ids must be unique")


def load_assignment(grader_path: Path, check_config: dict) -> Assignment:
    """Import a grader module by path and cross-check its checks with config.yaml."""
    origin = str(grader_path)
    if not grader_path.is_file():
        raise ConfigError(f"grader: {grader_path} does not exist")
    module_name = f"torchgrade_graders.{grader_path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, grader_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    assignment = getattr(module, "ASSIGNMENT", None)
    if not isinstance(assignment, Assignment):
        raise ConfigError(f"{origin}: must define ASSIGNMENT = Assignment(...)")
    assignment.validate(origin)
    declared = {c.id for c in assignment.checks}
    unknown = sorted(set(check_config) - declared)
    if unknown:
        raise ConfigError(f"checks.{unknown[0]}: no such check in {grader_path.name} (known: {', '.join(sorted(declared))})")
    missing = sorted(declared - set(check_config))
    if missing:
        raise ConfigError(f"checks.{missing[0]}: required key is missing (every check of {grader_path.name} needs points)")
    return assignment
