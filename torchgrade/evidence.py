"""The one evidence schema: what crosses the kernel boundary, what the gradebook stores, what checks read.

Every model here is pydantic and strict (unknown keys are refused, sizes are
bounded), so the probe's JSON, a stored gradebook row and a re-scored run are
parsed by the same code; adding a field to a value or a call record is one edit
here. The kernel is hostile: anything malformed raises ``SnapshotError`` and the
values count as never having arrived (a failure, never a pass). Stored rows carry
``schema``; a row of another version is refused, and the batch runs the notebook
again instead of misreading it.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

import torch
from pydantic import BaseModel, BeforeValidator, StrictBool, StrictInt, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

SCHEMA_VERSION = 2

MAX_VALUES = 200_000  # numbers per tensor (the probe sends no more)
MAX_TOKENS = 20_000  # graph nodes or leaves per record
MAX_ITEMS = 8  # items of a tuple/list kept
MAX_ENTRIES = 64  # dict entries, module parameters or buffers kept
MAX_CALLS = 200  # calls per task
SHORT, LONG = 80, 400

APIS = ("Tensor.backward", "autograd.backward", "autograd.grad",
        "functional.jacobian", "functional.hessian", "functional.vjp", "functional.jvp", "functional.hvp",
        "func.grad", "func.grad_and_value", "func.vjp", "func.jacrev", "func.jacfwd", "func.hessian", "func.vmap")
Api = Literal[APIS]  # type: ignore[valid-type]

DTYPES = {
    "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64,
    "int8": torch.int8, "int16": torch.int16, "int32": torch.int32, "int64": torch.int64,
    "uint8": torch.uint8, "bool": torch.bool,
}


class NotStored(KeyError):
    """A check read a value the gradebook did not keep (only the values the checks read are stored):
    the notebook must run again instead of being re-checked."""


class SnapshotError(ValueError):
    """Evidence that cannot be trusted or read back exactly."""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="strings")


def _real(value):
    """A number as JSON carries it (non-finite ones as the strings pydantic writes); never other text."""
    if isinstance(value, str) and value not in ("NaN", "Infinity", "-Infinity"):
        raise ValueError("expected a number, found text")
    return value


Real = Annotated[float, BeforeValidator(_real)]
Flag = StrictBool  # "yes" or 1 is not a boolean
Int = StrictInt
Tokens = Annotated[frozenset[int], Field(max_length=MAX_TOKENS)]
Shape = Annotated[tuple[Annotated[int, Field(ge=0)], ...], Field(max_length=16)]


def shape_text(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


# ------------------------------------------------------------------------------- values

class Missing(Model):
    kind: Literal["missing"] = "missing"
    reason: str = Field("", max_length=LONG)

    def describe(self) -> str:
        return "nothing (the name is not defined)"


class NoneValue(Model):
    kind: Literal["none"] = "none"

    def describe(self) -> str:
        return "None"


class Number(Model):
    kind: Literal["number"] = "number"
    value: Real
    integer: Flag = False

    def describe(self) -> str:
        return f"the plain number {self.value!r}"


class Other(Model):
    kind: Literal["other"] = "other"
    type_name: str = Field(max_length=SHORT)

    def describe(self) -> str:
        if self.type_name == "ellipsis":  # what every `... # your code here` line of an exercise leaves
            return "`...`, the exercise's placeholder (this part is not written yet)"
        return f"an object of type {self.type_name}"


class TensorSubclass(Model):
    kind: Literal["tensor_subclass"] = "tensor_subclass"
    type_name: str = Field(max_length=SHORT)

    def describe(self) -> str:
        return f"a {self.type_name} (a subclass of torch.Tensor, which the grader does not accept)"


class Origin(Model):
    """Which recorded autograd call produced this very object (see the probe's registry)."""

    call: int  # index of the recorded call (for a .grad: the last pass that filled it)
    via: Literal["result", "grad"]
    passes: tuple[int, ...] = Field((), max_length=MAX_CALLS)  # .grad: every pass accumulated into it
    modified: Flag = False  # its values changed after autograd produced them
    replaced_before: Flag = False  # .grad: accumulated onto a .grad that was assigned by hand


class TensorValue(Model):
    kind: Literal["tensor"] = "tensor"
    token: int
    dtype: str = Field(max_length=40)
    shape: Shape
    numel: int = Field(ge=0)
    values: tuple[Real, ...] | None = Field(None, max_length=MAX_VALUES)
    requires_grad: Flag
    is_leaf: Flag
    is_parameter: Flag = False
    has_grad: Flag
    grad_fn: str | None = Field(None, max_length=SHORT)
    grad_fn_token: int | None = None
    leaf_tokens: Tokens = frozenset()
    origin: Origin | None = None
    too_large: Flag = False
    unreadable: str | None = Field(None, max_length=LONG)

    @model_validator(mode="after")
    def values_fit_shape(self) -> "TensorValue":
        if self.numel != math.prod(self.shape):
            raise ValueError("numel does not match the shape")
        if self.values is not None and len(self.values) != self.numel:
            raise ValueError("tensor values do not match the tensor's shape")
        return self

    def describe(self) -> str:
        return f"a {self.dtype} tensor of shape {shape_text(self.shape)}"

    def as_torch(self) -> torch.Tensor:
        if self.values is None:
            raise SnapshotError("tensor values were not transferred")
        dtype = DTYPES.get(self.dtype)
        if dtype is None:
            raise SnapshotError(f"unsupported dtype {self.dtype}")
        return torch.tensor(self.values, dtype=torch.float64).reshape(self.shape).to(dtype)


class Parameter(Model):
    """One named parameter or buffer of a module, with its .grad (None when it has none)."""

    value: TensorValue
    grad: TensorValue | None = None


class ModuleValue(Model):
    kind: Literal["module"] = "module"
    type_name: str = Field(max_length=SHORT)
    parameters: dict[Annotated[str, Field(max_length=SHORT)], Parameter] = Field(default_factory=dict,
                                                                                max_length=MAX_ENTRIES)
    buffers: dict[Annotated[str, Field(max_length=SHORT)], TensorValue] = Field(default_factory=dict,
                                                                              max_length=MAX_ENTRIES)
    truncated: Flag = False

    def describe(self) -> str:
        return f"a {self.type_name} module with {len(self.parameters)} parameters"


class Sequence(Model):
    kind: Literal["sequence"] = "sequence"
    container: Literal["tuple", "list"]
    length: int = Field(ge=0)
    items: tuple["Value", ...] = Field((), max_length=MAX_ITEMS)

    def describe(self) -> str:
        return f"a {self.container} of {self.length} item{'s' if self.length != 1 else ''}"


class Mapping(Model):
    kind: Literal["mapping"] = "mapping"
    length: int = Field(ge=0)
    entries: dict[Annotated[str, Field(max_length=SHORT)], "Value"] = Field(default_factory=dict,
                                                                          max_length=MAX_ENTRIES)

    def describe(self) -> str:
        return f"a dict of {self.length} entr{'ies' if self.length != 1 else 'y'}"


Value = Annotated[Union[Missing, NoneValue, Number, Other, TensorSubclass, TensorValue, ModuleValue, Sequence,
                        Mapping], Field(discriminator="kind")]
Sequence.model_rebuild()
Mapping.model_rebuild()
VALUE = TypeAdapter(Value)


def parse_value(data) -> Value:
    """One value as the probe sends it, validated (SnapshotError when malformed)."""
    try:
        return VALUE.validate_python(data)
    except (ValidationError, RecursionError) as problem:
        raise SnapshotError(_first_error(problem)) from None


# ------------------------------------------------------------------------------- calls

class Raised(Model):
    type: str = Field(max_length=SHORT)
    message: str = Field(max_length=LONG)


class CallRecord(Model):
    """One recorded autograd entry-point call (never one made inside another recorded call)."""

    index: int = Field(ge=0)
    api: Api
    task: int
    create_graph: Flag = False  # func.*: the result has a graph of its own
    retain_graph: Flag | None = None
    gradient_given: Flag = False
    allow_unused: Flag = False
    materialize_grads: Flag = False
    output_shapes: tuple[Shape, ...] = Field((), max_length=MAX_ENTRIES)
    output_tokens: Tokens = frozenset()
    input_tokens: Tokens = frozenset()
    graph_nodes: Tokens = frozenset()
    leaf_tokens: Tokens = frozenset()
    result_tokens: Tokens = frozenset()
    filled_tokens: Tokens = frozenset()  # the .grad tensors this pass filled or accumulated into
    inner_apis: frozenset[Api] = frozenset()  # entry points run inside it, at any depth
    order: int = Field(0, ge=0)  # how many derivatives deep: 1 for one grad, 2 for grad of grad or a hessian
    transform: int | None = None  # func.*: the index of the transform call that made the function
    unreadable_arguments: str | None = Field(None, max_length=LONG)
    raised: Raised | None = None

    @property
    def succeeded(self) -> bool:
        return self.raised is None

    @property
    def on_scalar(self) -> bool:
        return bool(self.output_shapes) and all(math.prod(shape) == 1 for shape in self.output_shapes)

    @property
    def keeps_graph(self) -> bool:
        """retain_graph defaults to create_graph in torch."""
        return self.retain_graph if self.retain_graph is not None else self.create_graph

    @property
    def is_backward(self) -> bool:
        return self.api in ("Tensor.backward", "autograd.backward")

    def is_kind(self, kinds) -> bool:
        return self.api in kinds or bool(self.inner_apis & set(kinds))


class Snapshot(Model):
    task: int
    values: dict[Annotated[str, Field(max_length=200)], Value] = Field(max_length=MAX_ENTRIES)
    calls: tuple[CallRecord, ...] = Field((), max_length=MAX_CALLS)
    dropped_calls: int = Field(0, ge=0)
    integrity: tuple[Annotated[str, Field(max_length=200)], ...] = Field((), max_length=16)


def parse_snapshot(document, expected_task: int, paths: list[str]) -> Snapshot:
    """The probe's JSON document for one task, validated; every requested path has a value."""
    try:
        snapshot = Snapshot.model_validate(document)
    except (ValidationError, RecursionError) as problem:
        raise SnapshotError(_first_error(problem)) from None
    if snapshot.task != expected_task:
        raise SnapshotError("snapshot is for another task")
    values = {path: snapshot.values.get(path, Missing()) for path in paths}
    return snapshot.model_copy(update={"values": values})


def _first_error(problem: Exception) -> str:
    if isinstance(problem, ValidationError) and problem.errors():
        error = problem.errors()[0]
        where = ".".join(str(p) for p in error["loc"])[:120]
        return f"malformed snapshot at {where}: {error['msg'][:120]}"
    return "malformed snapshot"


# ------------------------------------------------------------------- runs and their inputs

class RunPlan(Model):
    """One execution of a submission: the example inputs (index 0) or freshly drawn ones."""

    index: int = Field(ge=0)
    is_example: Flag
    seed: int = 0
    description: str = Field("", max_length=LONG)  # "other inputs (...)", from the assignment

    def describe(self) -> str:
        return "the example inputs from the GIVEN cells" if self.is_example else self.description


class DrawnTensor(Model):
    kind: Literal["tensor"] = "tensor"
    dtype: str = Field(max_length=40)
    shape: Shape
    values: tuple[Real, ...] = Field(max_length=MAX_VALUES)
    requires_grad: Flag = False

    @model_validator(mode="after")
    def values_fit_shape(self) -> "DrawnTensor":
        if len(self.values) != math.prod(self.shape) or self.dtype not in DTYPES:
            raise ValueError("an input's values do not match its shape and dtype")
        return self

    def as_torch(self) -> torch.Tensor:
        dtype = DTYPES.get(self.dtype)
        if dtype is None or len(self.values) != math.prod(self.shape):
            raise SnapshotError("a stored input tensor cannot be rebuilt")
        tensor = torch.tensor(self.values, dtype=torch.float64).reshape(self.shape).to(dtype)
        return tensor.requires_grad_(True) if self.requires_grad else tensor

    @classmethod
    def of(cls, tensor: torch.Tensor) -> "DrawnTensor":
        dtype = str(tensor.dtype).replace("torch.", "")
        return cls(dtype=dtype, shape=tuple(tensor.shape), values=tuple(float(v) for v in tensor.detach().reshape(-1)
                                                                          .tolist()),
                   requires_grad=bool(tensor.requires_grad))


class DrawnNumber(Model):
    kind: Literal["number"] = "number"
    value: float
    integer: Flag = False

    def as_python(self) -> int | float:
        return int(self.value) if self.integer else self.value


class DrawnSeed(Model):
    kind: Literal["seeded"] = "seeded"
    seed: int


Drawn = Annotated[Union[DrawnTensor, DrawnNumber, DrawnSeed], Field(discriminator="kind")]


class CellError(Model):
    """An exception raised by a student cell (from the kernel's error message, as text)."""

    position: int
    task: int
    name: str = Field(max_length=SHORT)
    value: str = Field(max_length=2000)

    def describe(self) -> str:
        return f"cell {self.position} raised {self.name}: {self.value}"


class RunEvidence(BaseModel):
    """Everything one execution left for the checks; also the gradebook's stored row (one per run)."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")

    schema_version: Literal[SCHEMA_VERSION] = SCHEMA_VERSION  # type: ignore[valid-type]
    run: RunPlan
    snapshots: dict[int, Snapshot] = Field(default_factory=dict)
    unavailable: dict[int, Annotated[str, Field(max_length=LONG)]] = Field(default_factory=dict)
    errors: list[CellError] = Field(default_factory=list, max_length=1000)
    events: list[Annotated[str, Field(max_length=2000)]] = Field(default_factory=list, max_length=1000)
    markers: set[StrictInt] = Field(default_factory=set)  # tasks whose marker cell was found
    inputs: dict[str, Drawn] = Field(default_factory=dict)  # what this run gave the GIVEN cells
    # True in the gradebook: each snapshot keeps only the values the checks read (see keep_only_read).
    values_pruned: Flag = False

    def keep_only_read(self, read: set[tuple[int, str]]) -> "RunEvidence":
        """This evidence as the gradebook stores it: every value no check read is left out, so what a
        student binds to a name nobody grades never costs storage."""
        def kept_values(task: int, snapshot: Snapshot) -> dict:  # a read path it never had was read as Missing()
            return {path: snapshot.values.get(path, Missing()) for (number, path) in sorted(read) if number == task}

        kept = {task: snapshot.model_copy(update={"values": kept_values(task, snapshot)})
                for task, snapshot in self.snapshots.items()}
        return self.model_copy(update={"snapshots": kept, "values_pruned": True})

    def all_calls(self) -> tuple[CallRecord, ...]:
        calls = {c.index: c for snapshot in self.snapshots.values() for c in snapshot.calls}
        return tuple(calls[i] for i in sorted(calls))
