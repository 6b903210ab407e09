"""The contract between the engine and one assignment's grader module.

A grader module (``graders/<name>.py``) builds an ``Assignment``: its inputs (one
declaration per name), its tasks (the code the grader owns before each task, what
to snapshot after it), the reference values for a run's inputs, its checks, and the
texts that speak about its variables (run descriptions, hints). The engine knows
nothing else about the assignment, so adding one never touches the engine.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .errors import ConfigError
from .evidence import DTYPES, Drawn, DrawnNumber, DrawnSeed, DrawnTensor, RunPlan

Inputs = dict[str, object]  # name -> torch.Tensor | int | float | a built object (what reference() gets)
Reference = dict[int, dict[str, object]]  # task -> path -> expected value

DEFAULT_HINTS = {
    "shape": "Check for reductions, reshapes or broadcasting that change the shape.",
    "dtype": "Compute it from the given inputs so it inherits their dtype; avoid creating tensors with a fixed dtype.",
    "only_for_example": "compute everything from the given inputs.",
}


# ------------------------------------------------------------------------- input declarations

@dataclass(frozen=True)
class Tensor:
    """A tensor input: the example value, and how random runs draw another one."""

    example: object  # nested list or number (a number makes a 0-d tensor)
    random_shape: tuple[int, ...] | None = None  # default: the example's shape
    dtype: str = "float64"
    random_dtype: str | None = None  # default: dtype (another dtype catches a dtype fixed by hand)
    low: float = 0.0
    high: float = 1.0
    requires_grad: bool = False
    integer: bool = False  # draw whole numbers in [low, high]

    def draw(self, generator: torch.Generator | None) -> DrawnTensor:
        dtype = DTYPES[self.dtype]
        if generator is None:
            tensor = torch.tensor(self.example, dtype=dtype)
        else:
            dtype = DTYPES[self.random_dtype or self.dtype]
            shape = self.random_shape if self.random_shape is not None else tuple(torch.tensor(self.example).shape)
            tensor = torch.empty(shape, dtype=torch.float64).uniform_(self.low, self.high, generator=generator)
            tensor = (tensor.round() if self.integer else tensor).to(dtype)
        return DrawnTensor.of(tensor).model_copy(update={"requires_grad": self.requires_grad})

    def describe(self) -> str:
        shape = self.random_shape if self.random_shape is not None else tuple(torch.tensor(self.example).shape)
        size = "scalar" if shape == () else "×".join(map(str, shape))
        return f"a random {size} {self.random_dtype or self.dtype} tensor"


@dataclass(frozen=True)
class Number:
    """A plain Python number; random runs draw uniformly from [low, high] unless fixed."""

    example: float | int
    low: float | None = None
    high: float | None = None
    integer: bool = False
    fixed: bool = False

    def draw(self, generator: torch.Generator | None) -> DrawnNumber:
        integer = self.integer or isinstance(self.example, int) and not isinstance(self.example, bool)
        if generator is None or self.fixed or self.low is None or self.high is None:
            return DrawnNumber(value=float(self.example), integer=integer)
        value = self.low + (self.high - self.low) * float(torch.rand((), generator=generator, dtype=torch.float64))
        return DrawnNumber(value=float(round(value)) if integer else value, integer=integer)

    def describe(self) -> str:
        return "the same number" if self.fixed or self.low is None else "another number"


@dataclass(frozen=True)
class Seeded:
    """An object the grader builds from code and a seed (a small nn.Module with seeded weights)."""

    code: str  # a Python expression; may use `torch` and `nn`
    example_seed: int = 0
    fixed: bool = False

    def draw(self, generator: torch.Generator | None) -> DrawnSeed:
        if generator is None or self.fixed:
            return DrawnSeed(seed=self.example_seed)
        return DrawnSeed(seed=int(torch.randint(1, 2**31 - 1, (), generator=generator)))

    def build(self, seed: int):
        with SEEDING, torch.random.fork_rng(devices=[]):  # the RNG is process-wide: one build at a time
            torch.manual_seed(seed)
            return eval(self.code, {"torch": torch, "nn": torch.nn})  # grader-owned code, never a student's

    def describe(self) -> str:
        return "the same object" if self.fixed else "other seeded weights"


Declaration = Tensor | Number | Seeded
SEEDING = threading.Lock()


def python_literal(drawn: Drawn, declaration: Declaration) -> str:
    """The code that makes a drawn input inside the kernel (for GIVEN cells)."""
    if isinstance(drawn, DrawnTensor):
        values = torch.tensor(drawn.values, dtype=torch.float64).reshape(drawn.shape).to(DTYPES[drawn.dtype])
        grad = ", requires_grad=True" if drawn.requires_grad else ""
        return f"torch.tensor({values.tolist()!r}, dtype=torch.{drawn.dtype}{grad})"
    if isinstance(drawn, DrawnNumber):
        return repr(drawn.as_python())
    return declaration.code


@dataclass(frozen=True)
class Given:
    """GIVEN code written from declared inputs: ``Given("t", "model", then="u = model(t)")``."""

    names: tuple[str, ...]
    then: str = ""
    imports: str = "import torch\nimport torch.nn as nn"

    def __init__(self, *names: str, then: str = "", imports: str = "import torch\nimport torch.nn as nn"):
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "then", then)
        object.__setattr__(self, "imports", imports)

    def code(self, assignment: "Assignment", drawn: dict[str, Drawn]) -> str:
        lines = ["# GIVEN (the grader's inputs)", self.imports]
        for name in self.names:
            declaration = assignment.declarations[name]
            if isinstance(declaration, Seeded):
                lines.append(f"torch.manual_seed({drawn[name].seed})")
            lines.append(f"{name} = {python_literal(drawn[name], declaration)}")
        if self.then:
            lines.append(self.then)
        return "\n".join(lines)


# ------------------------------------------------------------------------------- tasks, checks

@dataclass(frozen=True)
class TaskSpec:
    number: int
    title: str
    snapshot: tuple[str, ...]
    given: Given | Callable[[dict[str, Drawn]], str] | None = None  # grader-owned code run before the task
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
    inputs: dict[str, Declaration] = field(default_factory=dict)
    random_description: str = ""  # "other inputs (...)"; generated from the declarations when empty
    hints: dict[str, str] = field(default_factory=dict)
    tasks: list[TaskSpec] = field(default_factory=list)
    checks: list[CheckSpec] = field(default_factory=list)
    reference: Callable[[Inputs], Reference] | None = None

    @property
    def declarations(self) -> dict[str, Declaration]:
        return self.inputs

    def hint(self, key: str) -> str:
        return self.hints.get(key) or DEFAULT_HINTS[key]

    # ---- registration (used by grader modules)
    def task(self, number: int, title: str, *, snapshot, given=None, bridge=None) -> None:
        self.tasks.append(TaskSpec(number, title, tuple(snapshot), given, bridge))

    def references(self, function: Callable[[Inputs], Reference]) -> Callable:
        self.reference = function
        return function

    def check(self, check_id: str, *, task: int, title: str) -> Callable:
        def register(function: Callable) -> Callable:
            self.checks.append(CheckSpec(check_id, task, title, function))
            return function

        return register

    # ---- runs and inputs (used by the engine)
    def describe_random_run(self) -> str:
        if self.random_description:
            return f"other inputs ({self.random_description})"
        parts = [f"{name}: {d.describe()}" for name, d in self.inputs.items()
                 if not getattr(d, "fixed", False)]
        return "other inputs (" + "; ".join(parts) + ")"

    def plan_run(self, index: int, seed: int) -> RunPlan:
        if index == 0:
            return RunPlan(index=0, is_example=True)
        return RunPlan(index=index, is_example=False, seed=seed, description=self.describe_random_run())

    def draw(self, run: RunPlan) -> dict[str, Drawn]:
        """Each input from its own declaration; a random run seeds each name on its own."""
        drawn = {}
        for name, declaration in self.inputs.items():
            generator = None
            if not run.is_example:
                salt = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")
                generator = torch.Generator().manual_seed((run.seed * 1_000_003 + salt) % 2**63)
            drawn[name] = declaration.draw(generator)
        return drawn

    def build(self, drawn: dict[str, Drawn]) -> Inputs:
        """Fresh objects for the reference: tensors (new copies each call), numbers, built objects."""
        built: Inputs = {}
        for name, value in drawn.items():
            if isinstance(value, DrawnTensor):
                built[name] = value.as_torch()
            elif isinstance(value, DrawnNumber):
                built[name] = value.as_python()
            else:
                built[name] = self.inputs[name].build(value.seed)
        return built

    def given_code(self, task: TaskSpec, drawn: dict[str, Drawn]) -> str | None:
        if task.given is None:
            return None
        return task.given.code(self, drawn) if isinstance(task.given, Given) else task.given(drawn)

    def expected_references(self, drawn: dict[str, Drawn]) -> Reference:
        return self.reference(self.build(drawn))

    @property
    def task_numbers(self) -> list[int]:
        return [t.number for t in self.tasks]

    def checks_of(self, task: int) -> list[CheckSpec]:
        return [c for c in self.checks if c.task == task]

    def validate(self, origin: str) -> None:
        if self.reference is None:
            raise ConfigError(f"{origin}: the assignment must register a @references function")
        numbers = self.task_numbers
        if len(set(numbers)) != len(numbers):
            raise ConfigError(f"{origin}: task numbers must be unique")
        for spec in self.checks:
            if spec.task not in numbers:
                raise ConfigError(f"{origin}: check {spec.id} belongs to unknown task {spec.task}")
        ids = [c.id for c in self.checks]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"{origin}: check ids must be unique")
        for task in self.tasks:
            unknown = [n for n in getattr(task.given, "names", ()) if n not in self.inputs]
            if unknown:
                raise ConfigError(f"{origin}: task {task.number} gives undeclared input {unknown[0]!r}")
        for name, declaration in self.inputs.items():
            for dtype in (getattr(declaration, "dtype", None), getattr(declaration, "random_dtype", None)):
                if dtype is not None and dtype not in DTYPES:
                    raise ConfigError(f"{origin}: input {name!r} has unknown dtype {dtype!r}")


_COMPILED: dict[tuple[str, bytes], object] = {}  # the last grader module compiled, by path and content


def grader_code(grader_path: Path):
    """The grader module's code, compiled once per content: a batch's worker loads the module afresh for every
    submission it grades (no state carried over) and compiling it from source took a few ms each time (the fork
    server runs with -B, so no .pyc is written for it)."""
    source = grader_path.read_bytes()
    key = (str(grader_path), hashlib.sha256(source).digest())
    if key not in _COMPILED:
        _COMPILED.clear()
        _COMPILED[key] = compile(source, str(grader_path), "exec", dont_inherit=True)
    return _COMPILED[key]


def load_assignment(grader_path: Path, check_config: dict) -> Assignment:
    """Import a grader module by path (a fresh module every time, from code compiled once) and cross-check its
    checks with config.yaml."""
    origin = str(grader_path)
    if not grader_path.is_file():
        raise ConfigError(f"grader: {grader_path} does not exist")
    module_name = f"torchgrade_graders.{grader_path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, grader_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    exec(grader_code(grader_path), module.__dict__)  # noqa: S102 - what spec.loader.exec_module does, minus compiling
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
