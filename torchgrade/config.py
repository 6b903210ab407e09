"""Load and validate config.yaml.

pydantic does the validation (it names the failing key and the expected type);
this module only turns its errors into one readable message per problem, and
resolves paths relative to the config file.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError, UsageError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tolerance(Strict):
    rtol: float = Field(1e-5, ge=0, description="relative tolerance for value comparisons")
    atol: float = Field(1e-6, ge=0, description="absolute tolerance for value comparisons")


class Limits(Strict):
    """Time and resource limits for every kernel that runs a submission (see docs/threat_model.md)."""

    cell_timeout: float = Field(60, gt=0, description="seconds one cell may run")
    notebook_timeout: float = Field(300, gt=0, description="seconds a whole run may take")
    startup_timeout: float = Field(60, gt=0, description="seconds to wait for a kernel to start")
    max_output_bytes: int = Field(1_000_000, gt=0, description="output kept per cell")
    # Bounds on the work a submission causes before its run's clock starts (loading, locating, planning).
    max_cells: int = Field(2000, gt=0, description="cells a notebook may have; more is refused (exit 3)")
    max_source_bytes: int = Field(5_000_000, gt=0, description="bytes of source in all its cells; more is refused")
    # Resource limits (setrlimit) applied to the kernel before any student code runs.
    address_space_mb: int = Field(2048, ge=512, description="virtual memory per process, MiB (enough for torch "
                                  "with OMP/OPENBLAS/MKL threads pinned to 1)")
    cpu_seconds: int = Field(300, gt=0, description="CPU seconds per kernel process; then SIGXCPU (soft limit)")
    cpu_seconds_hard: int = Field(310, gt=0, description="CPU seconds after which the kernel is killed (hard limit)")
    file_size_mb: int = Field(64, gt=0, description="largest file the kernel may write, MiB")
    open_files: int = Field(256, ge=64, description="open file descriptors per process")
    processes: int = Field(128, ge=32, description="processes and threads the kernel may run at once")
    tmp_size_mb: int = Field(256, gt=0, description="sandbox only: size of the private /tmp (also the working folder), MiB")
    engine: Literal["warm", "kernel"] = Field(
        "warm", description="warm = run each notebook in a child forked from a zygote that has imported torch "
                            "(Linux; falls back to kernel elsewhere, saying so in one line); kernel = a fresh ipykernel "
                            "per run (nbclient, the reference engine)")
    sandbox: Literal["auto", "require", "off"] = Field(
        "auto", description="bubblewrap sandbox: auto = use it when it works (warn loudly otherwise), "
                            "require = refuse to grade without it, off = never")

    @field_validator("sandbox", mode="before")
    @classmethod
    def yaml_booleans(cls, value):
        """YAML reads an unquoted `off` as false (and `on`/`yes` as true)."""
        if value is False:
            return "off"
        if value is True:
            return "require"
        return value

    @model_validator(mode="after")
    def soft_below_hard(self) -> "Limits":
        if self.cpu_seconds_hard <= self.cpu_seconds:
            raise ValueError(f"cpu_seconds_hard ({self.cpu_seconds_hard}) must be larger than cpu_seconds "
                             f"({self.cpu_seconds}), so the kernel is warned (SIGXCPU) before it is killed")
        return self


MOVED_RANDOM_KEYS = ("shape", "dtype", "low", "high")


class RandomRuns(Strict):
    """How many extra runs draw fresh inputs; what they draw is declared per input in the grader module."""

    count: int = Field(1, ge=1, le=10, description="runs with fresh random inputs (anti-hardcoding)")
    seed: int = 2026

    @model_validator(mode="before")
    @classmethod
    def moved_keys(cls, data):
        moved = [key for key in MOVED_RANDOM_KEYS if isinstance(data, dict) and key in data]
        if moved:
            raise ValueError(f"{moved[0]} moved to the grader module: each input declares its own shape, dtype "
                             "and range (Tensor(..., random_shape=..., dtype=..., low=..., high=...))")
        return data


class CheckConfig(Strict):
    points: float = Field(ge=0)
    hidden: bool = False


class Validation(Strict):
    """`grade.py --validate NAME`: what counts as a valid assignment (README, "Proving the checks")."""

    exercise_floor: float = Field(0, ge=0, description="most points the untouched exercise may earn")
    equivalent_mutants: dict[str, str] = Field(
        default_factory=dict, description="mutant name -> why it cannot be told apart from the solution")

    @field_validator("equivalent_mutants")
    @classmethod
    def reasons_given(cls, mutants: dict[str, str]) -> dict[str, str]:
        for name, reason in mutants.items():
            if not str(reason).strip():
                raise ValueError(f"{name}: give the reason why this mutant is equivalent")
        return mutants


class LatePolicy(Strict):
    """Late work (applied to exports, never to the stored autograder score; see docs/batch.md)."""

    deadline: datetime = Field(description="ISO 8601 with a time zone, e.g. 2026-12-01T23:59:00+01:00")
    grace_minutes: float = Field(0, ge=0, description="minutes after the deadline that still count as on time")
    penalty_per_day: float = Field(0, ge=0, le=100, description="percent of the maximum lost per started day late")
    max_penalty: float = Field(100, ge=0, le=100, description="percent: the penalty never exceeds this")
    late_cap: float | None = Field(None, ge=0, le=100, description="percent: a late submission scores at most this")

    @field_validator("deadline")
    @classmethod
    def has_time_zone(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-12-01T23:59:00+00:00")
        return value


class LmsExport(Strict):
    """Column headers the LMS imports expect for this assignment (see docs/batch.md, LMS exports)."""

    canvas_column: str | None = Field(None, description="Canvas gradebook column, e.g. 'Homework 1 (123456)'")
    moodle_column: str | None = Field(None, description="Moodle grade item name (default: the title)")
    gradescope_column: str | None = Field(None, description="score column in the Gradescope CSV (default: Score)")


class AssignmentConfig(Strict):
    title: str
    grader: Path
    exercise: Path
    solution: Path
    tolerance: Tolerance = Tolerance()
    limits: Limits = Limits()
    random_runs: RandomRuns = RandomRuns()
    checks: dict[str, CheckConfig]
    validation: Validation = Validation()
    late_policy: LatePolicy | None = None
    lms: LmsExport = LmsExport()


class Config(Strict):
    version: Literal[1]
    assignments: dict[str, AssignmentConfig] = Field(min_length=1)


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key (check its spelling)"
    elif error["type"] == "missing":
        message = "required key is missing"
    found = error.get("input")
    shown = "" if error["type"] in ("missing", "extra_forbidden") else f" (found {found!r})"
    return f"{where}: {message}{shown}"


def load_config(path: str | Path) -> Config:
    """Read and validate config.yaml; every problem is reported with its key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as problem:
        raise ConfigError(f"{path}: cannot read it ({problem.strerror})") from None
    except yaml.YAMLError as problem:
        raise ConfigError(f"{path}: not valid YAML ({problem})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'version' and 'assignments'")
    try:
        config = Config.model_validate(raw)
    except ValidationError as problem:
        details = "; ".join(_describe(e) for e in problem.errors())
        raise ConfigError(f"{path}: {details}") from None
    return _resolve_paths(config, path.parent.resolve())


def _resolve_paths(config: Config, base: Path) -> Config:
    assignments = {
        name: entry.model_copy(update={key: base / getattr(entry, key) for key in ("grader", "exercise", "solution")})
        for name, entry in config.assignments.items()
    }
    return config.model_copy(update={"assignments": assignments})


def pick_assignment(config: Config, name: str | None) -> tuple[str, AssignmentConfig]:
    if name is None:
        if len(config.assignments) == 1:
            return next(iter(config.assignments.items()))
        raise UsageError(f"several assignments configured; choose one with --assignment ({', '.join(config.assignments)})")
    if name not in config.assignments:
        raise ConfigError(f"assignments.{name}: no such assignment (configured: {', '.join(config.assignments)})")
    return name, config.assignments[name]


CHOOSE_WITH_FLAG = "; use --assignment NAME"  # for the instructor: a student's feedback leaves it out


def assignment_named_by(config: Config, file_name: str) -> str | None:
    """The one assignment a file's name names (its name or its exercise's, the longest match: "x_intro" beats "x" in
    "x_intro_bob.ipynb"), or None."""
    stem = Path(file_name).stem.lower()
    by_file = [name for name, entry in config.assignments.items()
               if name.lower() in stem or entry.exercise.stem.lower() in stem]
    longest = max((len(name) for name in by_file), default=0)
    by_file = [name for name in by_file if len(name) == longest]
    return by_file[0] if len(by_file) == 1 else None


def assignment_for(config: Config, notebook: Path, override: str | None = None) -> tuple[str, AssignmentConfig]:
    """--assignment, else the notebook's `metadata.torchgrade.assignment`, else its file name, else one line of choices."""
    if override is not None or len(config.assignments) == 1:
        return pick_assignment(config, override)
    named = notebook_assignment(notebook)
    if named in config.assignments:
        return named, config.assignments[named]
    by_file = assignment_named_by(config, notebook.name)
    if by_file is not None:
        return by_file, config.assignments[by_file]
    from .loader import load_notebook  # a file that is not a notebook at all: say that first (exit 3), not "which?"

    load_notebook(notebook)
    choices = ", ".join(config.assignments)
    found = f"its metadata names {named!r}, which is not configured; " if named else ""
    raise UsageError(f"{notebook.name}: cannot tell which assignment it is ({found}choices: {choices})"
                     f"{CHOOSE_WITH_FLAG}")


def notebook_assignment(notebook: Path) -> str | None:
    """The assignment a notebook names in `metadata.torchgrade.assignment` (None when unreadable or absent)."""
    import json

    try:
        if notebook.stat().st_size > 50_000_000:
            return None
        data = json.loads(notebook.read_text(encoding="utf-8"))
        name = data["metadata"]["torchgrade"]["assignment"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return name if isinstance(name, str) and len(name) <= 100 else None
