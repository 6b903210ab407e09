"""Load and validate config.yaml.

pydantic does the validation (it names the failing key and the expected type);
this module only turns its errors into one readable message per problem, and
resolves paths relative to the config file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError


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
    # Resource limits (setrlimit) applied to the kernel before any student code runs.
    address_space_mb: int = Field(2048, ge=512, description="virtual memory per process, MiB (enough for torch "
                                  "with OMP/OPENBLAS/MKL threads pinned to 1)")
    cpu_seconds: int = Field(300, gt=0, description="CPU seconds per kernel process; then SIGXCPU (soft limit)")
    cpu_seconds_hard: int = Field(310, gt=0, description="CPU seconds after which the kernel is killed (hard limit)")
    file_size_mb: int = Field(64, gt=0, description="largest file the kernel may write, MiB")
    open_files: int = Field(256, ge=64, description="open file descriptors per process")
    processes: int = Field(128, ge=32, description="processes and threads the kernel may run at once")
    tmp_size_mb: int = Field(256, gt=0, description="sandbox only: size of the private /tmp (also the working folder), MiB")
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


class RandomRuns(Strict):
    count: int = Field(1, ge=1, le=10, description="runs with fresh random inputs (anti-hardcoding)")
    shape: tuple[int, ...] = (3, 4)
    dtype: Literal["float32", "float64"] = "float64"
    low: float = 0.5
    high: float = 3.0
    seed: int = 2026

    @field_validator("shape")
    @classmethod
    def positive_dims(cls, shape: tuple[int, ...]) -> tuple[int, ...]:
        if not shape or any(d <= 0 for d in shape):
            raise ValueError("must be a non-empty list of positive sizes, e.g. [3, 4]")
        return shape


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
        raise ConfigError(f"several assignments configured; choose one with --assignment ({', '.join(config.assignments)})")
    if name not in config.assignments:
        raise ConfigError(f"assignments.{name}: no such assignment (configured: {', '.join(config.assignments)})")
    return name, config.assignments[name]
