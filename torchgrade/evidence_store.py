"""Store what a run left for the checks, and grade again from it without running anything.

A batch keeps every submission's ``RunEvidence`` (the snapshots of extracted values,
the errors and events of the run, and the inputs the run used) as plain JSON in the
gradebook. When only points, tolerances or check messages change, the checks run
again on this stored evidence: no kernel starts, no notebook executes.

The JSON is lossless and plain data only (never pickle): floats keep their exact
value (Python's float repr round-trips), non-finite numbers are written as the
strings "nan", "inf" and "-inf", sets become sorted lists, and input tensors are
written as dtype, shape and a flat list of values. Reading it back validates every
field; anything malformed raises ``EvidenceError`` and the caller runs the notebook
again instead of trusting it.

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
import math
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from . import __version__
from .assignment import RunPlan
from .checks import CellError, RunEvidence
from .loader import load_notebook
from .locate import locate_tasks
from .pipeline import Grader
from .results import CheckResult, Flag, GradeReport, TaskResult
from .values import (
    DTYPES, CallRecord, Missing, NoneValue, Number, Other, Raised, Sequence, Snapshot, TensorSubclass, TensorValue,
    Value,
)

FORMAT = 1
PACKAGE = Path(__file__).resolve().parent
# Modules whose code cannot change what a notebook run leaves behind: changing them
# only needs the stored evidence to be checked again. Every other engine module
# (present or future) counts as part of execution, which errs on the safe side.
SCORING_ONLY_MODULES = {"__init__.py", "checks.py", "scoring.py", "results.py", "cli.py", "config.py", "errors.py",
                        "hidden.py", "gradescope_bundle.py",
                        "evidence_store.py"}
# Config keys that only shape scoring and reports; every other key (limits, random runs,
# and any key added later) counts as part of execution. Paths are hashed by content.
SCORING_ONLY_KEYS = {"title", "tolerance", "checks", "grader", "exercise", "solution"}


class EvidenceError(ValueError):
    """Stored evidence that cannot be read back exactly; the notebook must run again."""


# ----------------------------------------------------------------------------- numbers

def _float_out(value: float):
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _float_in(value) -> float:
    if isinstance(value, bool):
        raise EvidenceError("expected a number, found a boolean")
    if isinstance(value, (int, float)):
        return float(value)
    if value in ("nan", "inf", "-inf"):
        return float(value)
    raise EvidenceError(f"expected a number, found {value!r:.40}")


def _int_in(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EvidenceError(f"expected an integer, found {value!r:.40}")
    return value


def _str_in(value, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise EvidenceError(f"expected text, found {value!r:.40}")
    return value


def _bool_in(value) -> bool:
    if not isinstance(value, bool):
        raise EvidenceError(f"expected true/false, found {value!r:.40}")
    return value


def _list_in(value) -> list:
    if not isinstance(value, list):
        raise EvidenceError(f"expected a list, found {type(value).__name__}")
    return value


def _dict_in(value) -> dict:
    if not isinstance(value, dict):
        raise EvidenceError(f"expected an object, found {type(value).__name__}")
    return value


def _ints_in(value) -> frozenset[int]:
    return frozenset(_int_in(i) for i in _list_in(value))


def _shape_in(value) -> tuple[int, ...]:
    return tuple(_int_in(d) for d in _list_in(value))


# ------------------------------------------------------------------------------ values

def value_to_data(value: Value) -> dict:
    if isinstance(value, Missing):
        return {"kind": "missing", "reason": value.reason}
    if isinstance(value, NoneValue):
        return {"kind": "none"}
    if isinstance(value, Number):
        return {"kind": "number", "value": _float_out(value.value)}
    if isinstance(value, Other):
        return {"kind": "other", "type": value.type_name}
    if isinstance(value, TensorSubclass):
        return {"kind": "tensor_subclass", "type": value.type_name}
    if isinstance(value, Sequence):
        return {"kind": "sequence", "sequence": value.kind, "length": value.length,
                "items": [value_to_data(item) for item in value.items]}
    if isinstance(value, TensorValue):
        return {
            "kind": "tensor", "id": value.id, "dtype": value.dtype, "shape": list(value.shape), "numel": value.numel,
            "values": None if value.values is None else [_float_out(v) for v in value.values],
            "requires_grad": value.requires_grad, "is_leaf": value.is_leaf, "has_grad": value.has_grad,
            "grad_fn": value.grad_fn, "grad_fn_id": value.grad_fn_id, "leaf_ids": sorted(value.leaf_ids),
            "too_large": value.too_large, "unreadable": value.unreadable,
        }
    raise EvidenceError(f"cannot store a value of type {type(value).__name__}")


def value_from_data(data) -> Value:
    data = _dict_in(data)
    kind = data.get("kind")
    if kind == "missing":
        return Missing(_str_in(data.get("reason")))
    if kind == "none":
        return NoneValue()
    if kind == "number":
        return Number(_float_in(data.get("value")))
    if kind == "other":
        return Other(_str_in(data.get("type")))
    if kind == "tensor_subclass":
        return TensorSubclass(_str_in(data.get("type")))
    if kind == "sequence":
        return Sequence(_str_in(data.get("sequence")), _int_in(data.get("length")),
                        tuple(value_from_data(item) for item in _list_in(data.get("items"))))
    if kind == "tensor":
        values = data.get("values")
        return TensorValue(
            id=_int_in(data.get("id")), dtype=_str_in(data.get("dtype")), shape=_shape_in(data.get("shape")),
            numel=_int_in(data.get("numel")),
            values=None if values is None else tuple(_float_in(v) for v in _list_in(values)),
            requires_grad=_bool_in(data.get("requires_grad")), is_leaf=_bool_in(data.get("is_leaf")),
            has_grad=_bool_in(data.get("has_grad")), grad_fn=_str_in(data.get("grad_fn"), optional=True),
            grad_fn_id=None if data.get("grad_fn_id") is None else _int_in(data.get("grad_fn_id")),
            leaf_ids=_ints_in(data.get("leaf_ids")), too_large=_bool_in(data.get("too_large")),
            unreadable=_str_in(data.get("unreadable"), optional=True),
        )
    raise EvidenceError(f"unknown value kind {kind!r:.40}")


def call_to_data(call: CallRecord) -> dict:
    return {
        "api": call.api, "task": call.task, "create_graph": call.create_graph, "retain_graph": call.retain_graph,
        "gradient_given": call.gradient_given, "allow_unused": call.allow_unused,
        "materialize_grads": call.materialize_grads, "output_shapes": [list(s) for s in call.output_shapes],
        "output_ids": sorted(call.output_ids), "graph_nodes": sorted(call.graph_nodes),
        "leaf_ids": sorted(call.leaf_ids), "result_ids": sorted(call.result_ids),
        "raised": None if call.raised is None else {"type": call.raised.type, "message": call.raised.message},
    }


def call_from_data(data) -> CallRecord:
    data = _dict_in(data)
    raised = data.get("raised")
    retain = data.get("retain_graph")
    return CallRecord(
        api=_str_in(data.get("api")), task=_int_in(data.get("task")), create_graph=_bool_in(data.get("create_graph")),
        retain_graph=None if retain is None else _bool_in(retain), gradient_given=_bool_in(data.get("gradient_given")),
        allow_unused=_bool_in(data.get("allow_unused")), materialize_grads=_bool_in(data.get("materialize_grads")),
        output_shapes=tuple(_shape_in(s) for s in _list_in(data.get("output_shapes"))),
        output_ids=_ints_in(data.get("output_ids")), graph_nodes=_ints_in(data.get("graph_nodes")),
        leaf_ids=_ints_in(data.get("leaf_ids")), result_ids=_ints_in(data.get("result_ids")),
        raised=None if raised is None else Raised(_str_in(_dict_in(raised).get("type")), _str_in(raised.get("message"))),
    )


def snapshot_to_data(snapshot: Snapshot) -> dict:
    return {"task": snapshot.task, "values": {path: value_to_data(v) for path, v in snapshot.values.items()},
            "calls": [call_to_data(c) for c in snapshot.calls], "dropped_calls": snapshot.dropped_calls,
            "integrity": list(snapshot.integrity)}


def snapshot_from_data(data) -> Snapshot:
    data = _dict_in(data)
    values = _dict_in(data.get("values"))
    return Snapshot(task=_int_in(data.get("task")), values={_str_in(k): value_from_data(v) for k, v in values.items()},
                    calls=tuple(call_from_data(c) for c in _list_in(data.get("calls"))),
                    dropped_calls=_int_in(data.get("dropped_calls")),
                    integrity=tuple(_str_in(p) for p in _list_in(data.get("integrity"))))


# ------------------------------------------------------------------------- runs, inputs

def tensor_to_data(tensor: torch.Tensor) -> dict:
    dtype = str(tensor.dtype).replace("torch.", "")
    if dtype not in DTYPES:
        raise EvidenceError(f"cannot store an input tensor of dtype {dtype}")
    flat = tensor.detach().reshape(-1).tolist()
    return {"dtype": dtype, "shape": list(tensor.shape), "requires_grad": bool(tensor.requires_grad),
            "values": [_float_out(float(v)) if isinstance(v, float) else v for v in flat]}


def tensor_from_data(data) -> torch.Tensor:
    data = _dict_in(data)
    dtype = DTYPES.get(_str_in(data.get("dtype")))
    if dtype is None:
        raise EvidenceError(f"unknown dtype {data.get('dtype')!r:.40}")
    shape = _shape_in(data.get("shape"))
    raw = _list_in(data.get("values"))
    if len(raw) != math.prod(shape):
        raise EvidenceError("input values do not match the input's shape")
    if dtype.is_floating_point:
        values = [_float_in(v) for v in raw]
    elif dtype == torch.bool:
        values = [_bool_in(v) for v in raw]
    else:
        values = [_int_in(v) for v in raw]
    tensor = torch.tensor(values, dtype=dtype).reshape(shape)
    return tensor.requires_grad_(True) if _bool_in(data.get("requires_grad")) else tensor


def run_to_data(run: RunPlan) -> dict:
    return {"index": run.index, "is_example": run.is_example,
            "shape": None if run.shape is None else list(run.shape),
            "dtype": None if run.dtype is None else str(run.dtype).replace("torch.", ""),
            "low": _float_out(run.low), "high": _float_out(run.high), "seed": run.seed}


def run_from_data(data) -> RunPlan:
    data = _dict_in(data)
    dtype = data.get("dtype")
    if dtype is not None and _str_in(dtype) not in DTYPES:
        raise EvidenceError(f"unknown dtype {dtype!r:.40}")
    return RunPlan(index=_int_in(data.get("index")), is_example=_bool_in(data.get("is_example")),
                   shape=None if data.get("shape") is None else _shape_in(data.get("shape")),
                   dtype=None if dtype is None else DTYPES[dtype], low=_float_in(data.get("low")),
                   high=_float_in(data.get("high")), seed=_int_in(data.get("seed")))


def evidence_to_data(evidence: RunEvidence) -> dict:
    return {
        "format": FORMAT,
        "run": run_to_data(evidence.run),
        "snapshots": {str(task): snapshot_to_data(s) for task, s in sorted(evidence.snapshots.items())},
        "unavailable": {str(task): why for task, why in sorted(evidence.unavailable.items())},
        "errors": [asdict(error) for error in evidence.errors],
        "events": list(evidence.events),
        "markers": sorted(evidence.markers),
        "inputs": {name: tensor_to_data(t) for name, t in evidence.inputs.items()},
    }


def evidence_from_data(data) -> RunEvidence:
    data = _dict_in(data)
    if data.get("format") != FORMAT:
        raise EvidenceError(f"stored evidence has format {data.get('format')!r:.20}, this grader reads {FORMAT}")
    errors = []
    for item in _list_in(data.get("errors")):
        item = _dict_in(item)
        errors.append(CellError(_int_in(item.get("position")), _int_in(item.get("task")), _str_in(item.get("name")),
                                _str_in(item.get("value"))))
    return RunEvidence(
        run=run_from_data(data.get("run")),
        snapshots={_task(k): snapshot_from_data(v) for k, v in _dict_in(data.get("snapshots")).items()},
        unavailable={_task(k): _str_in(v) for k, v in _dict_in(data.get("unavailable")).items()},
        errors=errors,
        events=[_str_in(e) for e in _list_in(data.get("events"))],
        markers={_int_in(m) for m in _list_in(data.get("markers"))},
        inputs={_str_in(k): tensor_from_data(v) for k, v in _dict_in(data.get("inputs")).items()},
    )


def _task(key) -> int:
    try:
        return int(_str_in(key))
    except ValueError:
        raise EvidenceError(f"task key {key!r:.20} is not a number") from None


def dumps_evidence(evidence: list[RunEvidence]) -> str:
    """One submission's evidence (all its runs) as strict JSON text (no NaN literals)."""
    return json.dumps([evidence_to_data(e) for e in evidence], allow_nan=False, ensure_ascii=False,
                      separators=(",", ":"))


def loads_evidence(text: str) -> list[RunEvidence]:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError, TypeError) as problem:
        raise EvidenceError(f"stored evidence is not valid JSON ({problem})") from None
    return [evidence_from_data(item) for item in _list_in(data)]


# ------------------------------------------------------------------------------ reports

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


# ---------------------------------------------------------------------- grading from it

@dataclass
class RecordingGrader(Grader):
    """A Grader that also keeps each run's evidence (in run order) for the gradebook."""

    recorded: list[RunEvidence] = field(default_factory=list)

    def check_run(self, evidence: RunEvidence):
        self.recorded.append(evidence)
        return super().check_run(evidence)


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
    if [run_to_data(r) for r in planned] != [run_to_data(e.run) for e in evidence]:
        return "the planned runs changed"
    for item in evidence:
        expected = grader.assignment.make_inputs(item.run)
        if set(expected) != set(item.inputs):
            return "the inputs changed"
        for name, tensor in expected.items():
            stored = item.inputs[name]
            if tensor.dtype != stored.dtype or tensor.shape != stored.shape or not torch.equal(tensor.detach(), stored.detach()):
                return "the inputs changed"
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
    add("config", {k: v for k, v in settings.items() if k not in SCORING_ONLY_KEYS})
    plans = grader.plan_runs(b"torchgrade execution fingerprint")
    for run in plans:
        inputs = grader.assignment.make_inputs(run)
        add(f"run{run.index}", run_to_data(run))
        add(f"inputs{run.index}", {k: tensor_to_data(v) for k, v in sorted(inputs.items())})
        for task in grader.assignment.tasks:
            add(f"task{task.number}", [task.number, list(task.snapshot), task.bridge,
                                       task.given(inputs) if task.given else None])
    return f"{__version__}+{digest.hexdigest()[:16]}"


def scoring_fingerprint(grader: Grader, execution: str) -> str:
    """A short hash of everything else that shapes a report: points, tolerances, checks, messages."""
    digest = hashlib.sha256(execution.encode())
    settings = grader.config.model_dump(mode="json", exclude={"grader", "exercise", "solution"})
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(Path(grader.config.grader).read_bytes())
    for name, source in _module_sources(lambda relative: not relative.startswith("batch/")):
        digest.update(name.encode() + b"\0" + source)
    return digest.hexdigest()[:16]
