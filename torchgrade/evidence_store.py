"""Store what a run left for the checks, and grade again from it without running anything.

A batch keeps every submission's ``RunEvidence`` (the snapshots of extracted values,
the errors and events of the run, and the inputs the run used) as plain JSON in the
gradebook. When only points, tolerances or check messages change, the checks run
again on this stored evidence: no kernel starts, no notebook executes.

The JSON is the one evidence schema of ``evidence.py`` (pydantic), lossless and plain
data only (never pickle): floats keep their exact value, non-finite numbers are the
strings "NaN", "Infinity" and "-Infinity", and each run carries ``schema_version``.
Reading it back validates every field; anything malformed, or a row written by an
older schema, raises ``EvidenceError`` and the caller runs the notebook again
instead of misreading it.

Two fingerprints decide what a rerun has to do:
- ``execution_fingerprint``: everything that changes what a notebook run produces
  (the execution stages of the engine, torch, the limits, the random-run settings,
  and what the grader module puts into the kernel: task numbers, GIVEN code,
  bridges, snapshot paths and inputs). A change means the notebooks run again.
- ``scoring_fingerprint``: everything else that shapes a report (points, hidden
  flags, tolerances, the checks and their messages). A change alone means the
  stored evidence is checked again.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from pydantic import ValidationError

from . import __version__
from .evidence import SCHEMA_VERSION, NotStored, RunEvidence
from .loader import load_notebook
from .locate import locate_tasks
from .pipeline import Grader
from .results import GradeReport

FORMAT = SCHEMA_VERSION
PACKAGE = Path(__file__).resolve().parent
# Modules whose code cannot change what a notebook run leaves behind: changing them
# only needs the stored evidence to be checked again. Every other engine module
# (present or future) counts as part of execution, which errs on the safe side.
SCORING_ONLY_MODULES = {"__init__.py", "checks.py", "compare.py", "outcome.py", "scoring.py", "results.py", "cli.py",
                        "config.py", "errors.py", "hidden.py", "gradescope_bundle.py", "evidence_store.py",
                        "flags.py",  # static analysis and reading events: what the report says, never what runs
                        # tools beside the pipeline (authoring.py is not here: instrument uses it)
                        "mutants.py", "mutation_ops.py", "authoring_cli.py", "selfcheck.py", "selfcheck_render.py",
                        "dask_worker.py"}
# Config keys that only shape scoring and reports; every other key (limits, random runs,
# and any key added later) counts as part of execution. Paths are hashed by content.
SCORING_ONLY_KEYS = {"title", "tolerance", "checks", "grader", "exercise", "solution"}
# Config keys that shape neither a run nor a report: only the exports (late penalty, LMS columns) and mutant
# validation's verdict. A change to them runs nothing again and re-checks nothing: `--export` applies it.
EXPORT_ONLY_KEYS = {"late_policy", "lms", "validation"}


class EvidenceError(ValueError):
    """Stored evidence that cannot be read back exactly; the notebook must run again."""


def evidence_text(evidence: RunEvidence) -> str:
    """One run's evidence as strict JSON text (non-finite numbers as strings)."""
    return evidence.model_dump_json()


def dumps_evidence(evidence: list[RunEvidence]) -> str:
    """One submission's evidence (all its runs) as strict JSON text."""
    return "[" + ",".join(evidence_text(e) for e in evidence) + "]"


def loads_evidence(text: str) -> list[RunEvidence]:
    try:
        data = json.loads(text, parse_constant=_no_constants)
    except (json.JSONDecodeError, RecursionError, TypeError, ValueError) as problem:
        raise EvidenceError(f"stored evidence is not valid JSON ({problem})") from None
    if not isinstance(data, list):
        raise EvidenceError("stored evidence is not a list of runs")
    runs = []
    for item in data:
        version = item.get("schema_version", item.get("format")) if isinstance(item, dict) else None
        if version != SCHEMA_VERSION:
            raise EvidenceError(f"stored evidence has schema {version!r:.20}, this grader reads {SCHEMA_VERSION}")
        try:
            runs.append(RunEvidence.model_validate(item))
        except (ValidationError, RecursionError) as problem:
            raise EvidenceError(f"stored evidence is malformed ({str(problem)[:200]})") from None
    return runs


def _no_constants(name: str):
    raise ValueError(f"{name} is not strict JSON")


# ---------------------------------------------------------------------- grading from it

@dataclass
class RecordingGrader(Grader):
    """A Grader that also keeps each run's evidence (in run order) for the gradebook: only the values its
    checks read (a re-check that needs another value runs the notebook again)."""

    recorded: list[RunEvidence] = field(default_factory=list)

    def check_run(self, evidence: RunEvidence, read: set[tuple[int, str]] | None = None):
        read = set() if read is None else read
        outcomes = super().check_run(evidence, read)
        self.recorded.append(evidence.keep_only_read(read))
        return outcomes


class NoExecution:
    """The executor of a Grader that must never run a notebook (re-scoring from stored evidence)."""

    calls = 0

    def execute(self, cells, limits, workdir):
        type(self).calls += 1
        raise RuntimeError("re-scoring must not execute notebooks")


def stale_reason(grader: Grader, content: bytes, evidence: list[RunEvidence]) -> str | None:
    """Why this stored evidence can no longer be re-checked (None: it can).

    The runs the grader would plan for this content, and the inputs it would give
    them, must be exactly the stored ones; otherwise the notebook has to run again.
    """
    planned = grader.plan_runs(content)
    if [r.model_dump() for r in planned] != [e.run.model_dump() for e in evidence]:
        return "the planned runs changed"
    for item in evidence:
        if grader.assignment.draw(item.run) != item.inputs:
            return "the inputs changed"
    return None


def recheck(grader: Grader, path: str | Path, stored: str | None, *, execution_time: float = 0.0,
            submission: str | None = None) -> GradeReport | None:
    """The report from stored evidence (JSON text of its runs), or None when there is none or it cannot serve:
    unreadable, planned for other runs or inputs, or lacking a value a check now reads. Then the notebook runs."""
    if not stored:
        return None
    try:
        evidence = loads_evidence(stored)
        if not evidence or stale_reason(grader, Path(path).read_bytes(), evidence):
            return None
        return grade_from_evidence(grader, path, evidence, execution_time=execution_time, submission=submission)
    except (EvidenceError, NotStored):
        return None


def grade_from_evidence(grader: Grader, path: str | Path, evidence: list[RunEvidence], *,
                        execution_time: float, submission: str | None = None) -> GradeReport:
    """Check and score stored evidence again, exactly as ``Grader.grade_notebook`` does after executing.

    The notebook is read again only to locate its tasks (for the notes); nothing runs.
    """
    path = Path(path)
    layout = locate_tasks(load_notebook(path), grader.assignment.task_numbers)
    # Grader.check_run, not a subclass's override: re-scoring must not record the evidence again.
    plain = Grader(grader.name, grader.config, grader.assignment, grader.executor, grader.parallel_runs)
    return plain.report_from_evidence(path, layout, evidence, execution_time, submission)


# -------------------------------------------------------------------------- fingerprints

def _module_sources(include) -> list[tuple[str, bytes]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if include(relative):
            found.append((relative, path.read_bytes()))
    return found


def _is_execution_module(relative: str) -> bool:
    return "/" not in relative and relative not in SCORING_ONLY_MODULES


def execution_fingerprint(grader: Grader) -> str:
    """A short hash of everything that changes what running a notebook produces."""
    digest = hashlib.sha256()

    def add(label: str, payload) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload, sort_keys=True, default=str).encode()
        digest.update(label.encode() + b"\0" + data + b"\0")

    add("versions", [__version__, torch.__version__, list(sys.version_info[:2]), FORMAT])
    for name, source in _module_sources(_is_execution_module):
        add(name, source)
    settings = grader.config.model_dump(mode="json")
    add("config", {k: v for k, v in settings.items() if k not in SCORING_ONLY_KEYS | EXPORT_ONLY_KEYS})
    plans = grader.plan_runs(b"torchgrade execution fingerprint")
    for run in plans:
        inputs = grader.assignment.draw(run)
        add(f"run{run.index}", run.model_dump(mode="json"))
        add(f"inputs{run.index}", {k: v.model_dump(mode="json") for k, v in sorted(inputs.items())})
        for task in grader.assignment.tasks:
            add(f"task{task.number}", [task.number, list(task.snapshot), task.bridge,
                                       grader.assignment.given_code(task, inputs)])
    return f"{__version__}+{digest.hexdigest()[:16]}"


def scoring_fingerprint(grader: Grader, execution: str) -> str:
    """A short hash of everything else that shapes a report: points, tolerances, checks, messages."""
    digest = hashlib.sha256(execution.encode())
    settings = grader.config.model_dump(mode="json", exclude={"grader", "exercise", "solution", *EXPORT_ONLY_KEYS})
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(Path(grader.config.grader).read_bytes())
    for name, source in _module_sources(lambda relative: not relative.startswith("batch/")):
        digest.update(name.encode() + b"\0" + source)
    return digest.hexdigest()[:16]
