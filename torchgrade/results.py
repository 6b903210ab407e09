"""The one results model every renderer reads (terminal, JSON, and the formats built on them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass(frozen=True)
class CheckResult:
    id: str
    task: int
    title: str
    score: float
    max_score: float
    passed: bool
    expected: str = ""
    found: str = ""
    hint: str = ""
    note: str = ""
    hidden: bool = False
    error: str = ""  # set on a failed check whose task could not run to the end (an error, not a wrong answer)

    @property
    def message(self) -> str:
        """The full feedback text: what was expected, what was found, and what to try."""
        if self.passed:
            return self.note
        parts = [f"Expected: {self.expected}", f"Found: {self.found}"]
        if self.hint:
            parts.append(f"Hint: {self.hint}")
        return "\n".join(parts)


@dataclass(frozen=True)
class Flag:
    """Something in a submission an instructor should look at (torchgrade.flags); never changes a score."""

    kind: str
    detail: str


@dataclass(frozen=True)
class TaskResult:
    number: int
    title: str
    checks: tuple[CheckResult, ...]

    @property
    def score(self) -> float:
        return sum(c.score for c in self.checks)

    @property
    def max_score(self) -> float:
        return sum(c.max_score for c in self.checks)


@dataclass(frozen=True)
class GradeReport:
    assignment: str
    title: str
    submission: str
    tasks: tuple[TaskResult, ...]
    execution_time: float
    notes: tuple[str, ...] = field(default_factory=tuple)
    runs: tuple[str, ...] = field(default_factory=tuple)
    grader_version: str = ""
    flags: tuple[Flag, ...] = field(default_factory=tuple)  # possible tampering, for the instructor

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tasks)

    @property
    def max_score(self) -> float:
        return sum(t.max_score for t in self.tasks)

    @property
    def checks(self) -> list[CheckResult]:
        return [c for t in self.tasks for c in t.checks]

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(score=self.score, max_score=self.max_score)
        for task, task_data in zip(self.tasks, data["tasks"]):
            task_data.update(score=task.score, max_score=task.max_score)
        return data


def report_from_dict(data: dict) -> GradeReport:
    """The inverse of ``GradeReport.to_dict`` (extra keys such as the computed scores are ignored)."""
    def pick(cls, item: dict) -> dict:
        names = {f.name for f in fields(cls)}
        return {k: v for k, v in item.items() if k in names}

    tasks = tuple(
        TaskResult(**{**pick(TaskResult, task), "checks": tuple(CheckResult(**pick(CheckResult, c)) for c in task["checks"])})
        for task in data["tasks"]
    )
    flags = tuple(Flag(str(f.get("kind", "")), str(f.get("detail", ""))) for f in data.get("flags", ()) if isinstance(f, dict))
    return GradeReport(**{**pick(GradeReport, data), "tasks": tasks, "notes": tuple(data.get("notes", ())),
                          "runs": tuple(data.get("runs", ())), "flags": flags})
