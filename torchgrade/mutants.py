"""`python grade.py --validate NAME`: prove an assignment's checks before students see it.

1. The solution earns full marks; the exercise generated from it earns at most the
   configured floor (``validation.exercise_floor``, default 0).
2. Mutation testing: each task cell of the solution is rewritten by the autograd-aware
   operators of ``mutation_ops`` (one change per mutant) and every mutant is graded
   like a submission. A mutant is *caught* by the checks that lose points on it; one
   that loses no point *survives*. A check no mutant ever fails is reported as
   "never fails". Surviving mutants fail validation unless ``validation.equivalent_mutants``
   in config.yaml names them with a reason.

Mutants are graded as a batch: in parallel (``--jobs``), and cached by content (the
mutant's bytes, the grader module, the assignment's config and the engine's source),
so a re-run grades only what changed.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import hashlib
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
import torch

from .authoring import exercise_text, is_check_cell, without_markers
from .config import pick_assignment
from .evidence_store import RecordingGrader, dumps_evidence, execution_fingerprint, recheck
from .errors import EXIT_GRADED
from .locate import marker_of
from .mutation_ops import OPERATORS, CellFacts, autograd_calls, find_formula

EXIT_INVALID = 1
DEFAULT_MAX_MUTANTS = 30
CACHE_DIR = ".torchgrade-cache/validate"


@dataclass(frozen=True)
class Mutant:
    name: str  # stable: t<task>.<operator>.<n>, the key for validation.equivalent_mutants
    operator: str
    task: int
    description: str
    notebook: str  # the mutant's file content


@dataclass
class MutantResult:
    name: str
    operator: str
    task: int
    description: str
    caught_by: list[str]
    survived: bool
    equivalent: str = ""  # the reason config.yaml gives, when declared equivalent


@dataclass
class Validation:
    assignment: str
    solution_score: float
    solution_max: float
    exercise_score: float
    exercise_floor: float
    mutants: list[MutantResult] = field(default_factory=list)
    never_fails: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def mutation_score(self) -> float:
        counted = [m for m in self.mutants if not m.equivalent]
        return round(sum(not m.survived for m in counted) / len(counted), 4) if counted else 1.0

    @property
    def valid(self) -> bool:
        return (self.solution_score == self.solution_max and self.exercise_score <= self.exercise_floor
                and not any(m.survived and not m.equivalent for m in self.mutants))

    def to_dict(self) -> dict:
        return {"assignment": self.assignment, "solution_score": self.solution_score,
                "solution_max_score": self.solution_max, "exercise_score": self.exercise_score,
                "exercise_floor": self.exercise_floor, "mutants": [asdict(m) for m in self.mutants],
                "mutation_score": self.mutation_score, "never_fails": self.never_fails, "valid": self.valid,
                "seconds": self.seconds}


# ----------------------------------------------------------------------------- the solution's task cells

def plain_solution(path: Path) -> nbformat.NotebookNode:
    """The solution as a student would hand it in: markers removed, no self-check cell."""
    notebook = nbformat.read(path, as_version=4)
    notebook.cells = [c for c in notebook.cells if not (c.cell_type == "code" and is_check_cell(c.source))]
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.source = without_markers(cell.source)
    return notebook


def task_cells(notebook) -> list[tuple[int, int]]:
    """(cell index, task number) of every code cell inside a task."""
    found, task = [], None
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        marker = marker_of(cell)
        if marker is not None:
            task = marker[1] if marker[0] == "task" else None
        if task is not None:
            found.append((index, task))
    return found


def evaluate(notebook, cells: list[tuple[int, int]]) -> dict[int, CellFacts]:
    """Run the (trusted) solution in-process once and note, after each task cell, what it computed."""
    namespace: dict = {}
    facts: dict[int, CellFacts] = {}
    wanted = dict(cells)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(code, f"<solution cell {index + 1}>", "exec"), namespace)  # noqa: S102 (the instructor's solution)
        except Exception:
            return facts  # later cells depend on this one: no value-based mutants from here on
        if index in wanted:
            try:
                facts[index] = _facts_of(ast.parse(code), namespace)
            except Exception:  # facts only enable the typed-in mutants; the others need none
                facts[index] = CellFacts()
    return facts


def _facts_of(tree: ast.Module, namespace: dict) -> CellFacts:
    leaves = {k: v for k, v in namespace.items() if isinstance(v, torch.Tensor) and v.is_leaf and v.requires_grad
              and not k.startswith("_")}
    assigned = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign) for target in node.targets
                for t in ast.walk(target) if isinstance(t, ast.Name)}
    facts = CellFacts()
    for name in sorted(assigned):
        value = namespace.get(name)
        if isinstance(value, torch.Tensor) and name not in leaves:
            facts.values[name] = value.detach().clone()
            if not value.requires_grad:
                facts.untracked.add(name)
            formula = find_formula(value, leaves)
            if formula:
                facts.formulas[name] = formula
    if any(autograd_calls(node) for node in tree.body if isinstance(node, ast.Expr)):
        for name, leaf in leaves.items():
            if leaf.grad is not None:
                facts.grads[name] = leaf.grad.detach().clone()
                formula = find_formula(leaf.grad, leaves, detached=True)
                if formula:
                    facts.formulas[name + ".grad"] = formula
    return facts


# ----------------------------------------------------------------------------- making mutants

def make_mutants(solution_path: Path, limit: int | None = DEFAULT_MAX_MUTANTS) -> list[Mutant]:
    notebook = plain_solution(solution_path)
    cells = task_cells(notebook)
    facts = evaluate(copy.deepcopy(notebook), cells)
    original = nbformat.writes(notebook)
    by_operator: dict[str, list[Mutant]] = {name: [] for name in OPERATORS}
    seen = {original}
    for index, task in cells:
        source = notebook.cells[index].source
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        head = source.splitlines()[0] if marker_of(notebook.cells[index]) else None
        for operator, make in OPERATORS.items():
            for description, mutated in make(tree, facts.get(index, CellFacts())):
                mutant = copy.deepcopy(notebook)
                body = ast.unparse(ast.fix_missing_locations(mutated))
                mutant.cells[index].source = f"{head}\n{body}" if head else body
                text = nbformat.writes(mutant)
                if text in seen:
                    continue
                seen.add(text)
                number = sum(1 for m in by_operator[operator] if m.task == task) + 1
                by_operator[operator].append(Mutant(f"t{task}.{operator}.{number}", operator, task, description, text))
    return _interleave(by_operator, limit)


def _interleave(by_operator: dict[str, list[Mutant]], limit: int | None) -> list[Mutant]:
    """Round-robin over operators, each operator's mutants spread over the tasks, so a cap keeps variety."""
    queues = []
    for mutants in by_operator.values():
        tasks = sorted({m.task for m in mutants})
        per_task = [[m for m in mutants if m.task == t] for t in tasks]
        spread = [m for group in _zip_longest(per_task) for m in group]
        queues.append(spread)
    ordered = [m for group in _zip_longest(queues) for m in group]
    return ordered if limit is None else ordered[:limit]


def _zip_longest(lists: list[list]) -> list[list]:
    depth = max((len(items) for items in lists), default=0)
    return [[items[i] for items in lists if i < len(items)] for i in range(depth)]


# ----------------------------------------------------------------------------- grading them, cached

class Cache:
    """Each graded notebook's stored evidence, by content and execution fingerprint (one JSON file each).

    What is stored is the runs' evidence, not their points: a hit is checked again by the current checks
    (evidence_store.grade_from_evidence), so editing points, checks or messages re-checks in seconds, and only
    a change to what a run produces (the engine, torch, limits, GIVEN code) runs notebooks again."""

    def __init__(self, folder: Path | None, fingerprint: str):
        self.folder, self.fingerprint = folder, fingerprint
        self.used: set[Path] = set()

    def _file(self, text: str) -> Path:
        return self.folder / (hashlib.sha256((self.fingerprint + text).encode()).hexdigest() + ".json")

    def get(self, text: str) -> str | None:
        if self.folder is None:
            return None
        stored = self._file(text)
        try:
            found = stored.read_text(encoding="utf-8")
        except OSError:
            return None
        self.used.add(stored)
        return found

    def put(self, text: str, evidence_json: str) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self._file(text)
        temporary = target.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(evidence_json, encoding="utf-8")
        temporary.replace(target)
        self.used.add(target)

    def forget_unused(self) -> None:
        """Delete every stored file this validation did not use (evidence of older engines or mutants)."""
        if self.folder is not None and self.folder.is_dir():
            for path in self.folder.glob("*.json"):
                if path not in self.used:
                    path.unlink()


def grade_or_recheck(grader, path: Path, text: str, cache: Cache):
    """The report on the notebook at path (whose content is text): its stored evidence re-checked by the current
    checks when the cache holds it for this engine, else a fresh grading whose evidence is stored."""
    if (report := recheck(grader, path, cache.get(text))) is not None:
        return report
    recording = RecordingGrader(grader.name, grader.config, grader.assignment, grader.executor, grader.parallel_runs)
    report = recording.grade_notebook(path)
    cache.put(text, dumps_evidence(recording.recorded))
    return report


def grade_texts(grader, texts: dict[str, str], jobs: int, cache: Cache, scratch: Path) -> dict[str, dict]:
    """{key: {check id: [score, max score]}} for each notebook text: stored evidence re-checked, the rest graded
    in parallel (and its evidence stored)."""
    def checks_of(report) -> dict:
        return {c.id: [c.score, c.max_score] for c in report.checks}

    def grade(key: str) -> tuple[str, dict]:
        path = scratch / f"{key}.ipynb"
        path.write_text(texts[key], encoding="utf-8")
        return key, checks_of(grade_or_recheck(grader, path, texts[key], cache))

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return dict(pool.map(grade, texts))


# ----------------------------------------------------------------------------- validate

def validate(name: str, entry, *, jobs: int | None = None, limit: int | None = DEFAULT_MAX_MUTANTS,
             cache_dir: Path | None = None, forget_unused: bool = False) -> Validation:
    """Grade the solution, the exercise and each mutant. ``cache_dir``: where evidence is kept between runs
    (one folder per assignment); ``forget_unused``: then delete what this validation did not use."""
    import tempfile
    import time

    from .pipeline import Grader

    started = time.monotonic()
    grader = Grader.from_config(name, entry)
    mutants = make_mutants(Path(entry.solution), limit)
    texts = {"solution": Path(entry.solution).read_text(encoding="utf-8"),
             "exercise": exercise_text(entry.solution, name)}
    texts.update({m.name: m.notebook for m in mutants})
    cache = Cache(cache_dir / name if cache_dir else None, execution_fingerprint(grader))
    with tempfile.TemporaryDirectory(prefix="torchgrade-validate-") as scratch:
        graded = grade_texts(grader, texts, jobs or os.cpu_count() or 1, cache, Path(scratch))
    if forget_unused:
        cache.forget_unused()
    total = lambda checks: sum(score for score, _ in checks.values())  # noqa: E731
    result = Validation(name, total(graded["solution"]), sum(m for _, m in graded["solution"].values()),
                        total(graded["exercise"]), entry.validation.exercise_floor)
    declared = entry.validation.equivalent_mutants
    for mutant in mutants:
        caught = [check for check, (score, most) in graded[mutant.name].items() if score < most]
        result.mutants.append(MutantResult(mutant.name, mutant.operator, mutant.task, mutant.description, caught,
                                           survived=not caught, equivalent=declared.get(mutant.name, "")))
    failing = {check for m in result.mutants for check in m.caught_by}
    result.never_fails = [check for check in graded["solution"] if check not in failing]
    result.seconds = round(time.monotonic() - started, 1)
    return result


def render_table(result: Validation) -> str:
    lines = [f"Validating {result.assignment}",
             f"  solution: {result.solution_score:g}/{result.solution_max:g}"
             + (" (full marks)" if result.solution_score == result.solution_max else "  NOT FULL MARKS"),
             f"  exercise: {result.exercise_score:g}/{result.solution_max:g} (floor {result.exercise_floor:g})"
             + ("" if result.exercise_score <= result.exercise_floor else "  ABOVE THE FLOOR"), ""]
    lines.append(f"  {'mutant':<30} {'operator':<19} {'caught by'}")
    for m in result.mutants:
        verdict = ", ".join(m.caught_by) if m.caught_by else (f"survived (equivalent: {m.equivalent})"
                                                                if m.equivalent else "SURVIVED")
        lines.append(f"  {m.name:<30} {m.operator:<19} {verdict}")
        lines.append(f"  {'':<30} {'':<19} ({m.description})")
    caught = sum(not m.survived for m in result.mutants)
    lines += ["", f"Mutation score: {result.mutation_score:.0%} ({caught} of {len(result.mutants)} mutants caught"
              f", {sum(bool(m.equivalent) for m in result.mutants)} declared equivalent)"]
    if result.never_fails:
        lines.append("Never fails: " + ", ".join(result.never_fails))
    lines.append(("VALID" if result.valid else "NOT VALID") + f" ({result.seconds:.0f} s)")
    return "\n".join(lines)


def run_validate(args, config) -> int:
    name, entry = pick_assignment(config, args.validate)
    cache_dir = Path(args.config).resolve().parent / CACHE_DIR
    result = validate(name, entry, jobs=args.jobs, limit=args.max_mutants or DEFAULT_MAX_MUTANTS, cache_dir=cache_dir)
    print(json.dumps(result.to_dict(), indent=1) if args.format == "json" else render_table(result))
    return EXIT_GRADED if result.valid else EXIT_INVALID
