"""Plain typed data that crossed the kernel boundary, parsed defensively.

The kernel is hostile, so every field of a snapshot is type-checked here; anything
malformed raises SnapshotError and the values count as never having arrived
(a failure, never a pass).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


class SnapshotError(ValueError):
    pass


DTYPES = {
    "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64,
    "int8": torch.int8, "int16": torch.int16, "int32": torch.int32, "int64": torch.int64,
    "uint8": torch.uint8, "bool": torch.bool,
}


@dataclass(frozen=True)
class Missing:
    reason: str = ""

    def describe(self) -> str:
        return "nothing (the name is not defined)"


@dataclass(frozen=True)
class NoneValue:
    def describe(self) -> str:
        return "None"


@dataclass(frozen=True)
class Number:
    value: float

    def describe(self) -> str:
        return f"the plain number {self.value!r}"


@dataclass(frozen=True)
class Other:
    type_name: str

    def describe(self) -> str:
        return f"an object of type {self.type_name}"


@dataclass(frozen=True)
class TensorSubclass:
    type_name: str

    def describe(self) -> str:
        return f"a {self.type_name} (a subclass of torch.Tensor, which the grader does not accept)"


@dataclass(frozen=True)
class Sequence:
    kind: str  # "tuple" or "list"
    length: int
    items: tuple

    def describe(self) -> str:
        return f"a {self.kind} of {self.length} item{'s' if self.length != 1 else ''}"


@dataclass(frozen=True)
class TensorValue:
    id: int
    dtype: str
    shape: tuple[int, ...]
    numel: int
    values: tuple | None
    requires_grad: bool
    is_leaf: bool
    has_grad: bool
    grad_fn: str | None
    grad_fn_id: int | None
    leaf_ids: frozenset[int] = field(default_factory=frozenset)
    too_large: bool = False
    unreadable: str | None = None

    def describe(self) -> str:
        return f"a {self.dtype} tensor of shape {shape_text(self.shape)}"

    def as_torch(self) -> torch.Tensor:
        if self.values is None:
            raise SnapshotError("tensor values were not transferred")
        dtype = DTYPES.get(self.dtype)
        if dtype is None:
            raise SnapshotError(f"unsupported dtype {self.dtype}")
        return torch.tensor(self.values, dtype=torch.float64).reshape(self.shape).to(dtype)


Value = Missing | NoneValue | Number | Other | TensorSubclass | Sequence | TensorValue


@dataclass(frozen=True)
class Raised:
    type: str
    message: str


@dataclass(frozen=True)
class CallRecord:
    """One recorded call of Tensor.backward, torch.autograd.backward or torch.autograd.grad."""

    api: str
    task: int
    create_graph: bool
    retain_graph: bool | None
    gradient_given: bool
    allow_unused: bool
    materialize_grads: bool
    output_shapes: tuple[tuple[int, ...], ...]
    output_ids: frozenset[int]
    graph_nodes: frozenset[int]
    leaf_ids: frozenset[int]
    result_ids: frozenset[int]
    raised: Raised | None

    @property
    def succeeded(self) -> bool:
        return self.raised is None

    @property
    def on_scalar(self) -> bool:
        return all(math.prod(shape) == 1 for shape in self.output_shapes)

    @property
    def keeps_graph(self) -> bool:
        """retain_graph defaults to create_graph in torch."""
        return self.retain_graph if self.retain_graph is not None else self.create_graph

    @property
    def is_backward(self) -> bool:
        return self.api in ("Tensor.backward", "autograd.backward")


@dataclass(frozen=True)
class Snapshot:
    task: int
    values: dict[str, Value]
    calls: tuple[CallRecord, ...]
    dropped_calls: int
    integrity: tuple[str, ...]


def shape_text(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


# ---------------------------------------------------------------- parsing

def _get(obj: dict, key: str, kind, optional: bool = False):
    if not isinstance(obj, dict):
        raise SnapshotError("expected an object")
    value = obj.get(key)
    if value is None and optional:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool):
        raise SnapshotError(f"{key}: expected int")
    if not isinstance(value, kind):
        raise SnapshotError(f"{key}: expected {getattr(kind, '__name__', kind)}")
    return value


def _ints(obj: dict, key: str, limit: int = 1_000_000) -> frozenset[int]:
    items = _get(obj, key, list)
    if len(items) > limit or not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
        raise SnapshotError(f"{key}: expected a list of integers")
    return frozenset(items)


def _shape(items) -> tuple[int, ...]:
    if not isinstance(items, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in items):
        raise SnapshotError("shape: expected a list of sizes")
    return tuple(items)


def parse_value(obj) -> Value:
    kind = _get(obj, "kind", str)
    if kind == "missing":
        return Missing()
    if kind == "none":
        return NoneValue()
    if kind == "number":
        value = obj.get("value")
        if not isinstance(value, (int, float)):
            raise SnapshotError("number: expected a numeric value")
        return Number(float(value))
    if kind == "other":
        return Other(_get(obj, "type", str)[:80])
    if kind == "tensor_subclass":
        return TensorSubclass(_get(obj, "type", str)[:80])
    if kind in ("tuple", "list"):
        items = _get(obj, "items", list)
        return Sequence(kind, _get(obj, "length", int), tuple(parse_value(i) for i in items[:8]))
    if kind == "tensor":
        return _parse_tensor(obj)
    raise SnapshotError(f"unknown value kind {kind!r}")


def _parse_tensor(obj: dict) -> TensorValue:
    shape = _shape(obj.get("shape"))
    numel = _get(obj, "numel", int)
    values = obj.get("values")
    if values is not None:
        if not isinstance(values, list) or len(values) != numel or numel != math.prod(shape):
            raise SnapshotError("tensor values do not match the tensor's shape")
        if not all(isinstance(v, (int, float)) for v in values):
            raise SnapshotError("tensor values must be numbers")
        values = tuple(float(v) for v in values)
    return TensorValue(
        id=_get(obj, "id", int),
        dtype=_get(obj, "dtype", str)[:40],
        shape=shape,
        numel=numel,
        values=values,
        requires_grad=_get(obj, "requires_grad", bool),
        is_leaf=_get(obj, "is_leaf", bool),
        has_grad=_get(obj, "has_grad", bool),
        grad_fn=_get(obj, "grad_fn", str, optional=True),
        grad_fn_id=_get(obj, "grad_fn_id", int, optional=True),
        leaf_ids=_ints(obj, "leaf_ids"),
        too_large=bool(obj.get("too_large", False)),
        unreadable=(obj.get("unreadable") or None) if isinstance(obj.get("unreadable"), (str, type(None))) else "?",
    )


def parse_call(obj) -> CallRecord:
    raised = obj.get("raised") if isinstance(obj, dict) else None
    outputs = _get(obj, "outputs", list)
    return CallRecord(
        api=_get(obj, "api", str),
        task=_get(obj, "task", int),
        create_graph=bool(obj.get("create_graph", False)),
        retain_graph=obj.get("retain_graph") if isinstance(obj.get("retain_graph"), bool) else None,
        gradient_given=bool(obj.get("gradient_given", False)),
        allow_unused=bool(obj.get("allow_unused", False)),
        materialize_grads=bool(obj.get("materialize_grads", False)),
        output_shapes=tuple(_shape(o.get("shape") if isinstance(o, dict) else None) for o in outputs),
        output_ids=frozenset(_get(o, "id", int) for o in outputs),
        graph_nodes=_ints(obj, "graph_nodes"),
        leaf_ids=_ints(obj, "leaf_ids"),
        result_ids=_ints(obj, "result_ids"),
        raised=None if raised is None else Raised(_get(raised, "type", str)[:80], _get(raised, "message", str)[:400]),
    )


def parse_snapshot(obj, expected_task: int, paths: list[str]) -> Snapshot:
    if _get(obj, "task", int) != expected_task:
        raise SnapshotError("snapshot is for another task")
    raw_values = _get(obj, "values", dict)
    values = {path: parse_value(raw_values[path]) if path in raw_values else Missing() for path in paths}
    return Snapshot(
        task=expected_task,
        values=values,
        calls=tuple(parse_call(c) for c in _get(obj, "calls", list)),
        dropped_calls=_get(obj, "dropped_calls", int),
        integrity=tuple(str(p)[:200] for p in _get(obj, "integrity", list)),
    )
