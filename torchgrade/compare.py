"""Value comparison: a snapshot value against the reference, with one feedback shape.

Tensors: exists, type, shape, dtype, NaN/Inf, then values within rtol/atol. Numbers,
None, modules (every named parameter, and its .grad when the reference has one) and
dicts of tensors are compared the same way, item by item.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .config import Tolerance
from .evidence import (
    Mapping, Missing, ModuleValue, NoneValue, Number, Sequence, SnapshotError, TensorValue, Value, shape_text,
)
from .outcome import Outcome, failed, first_failure, passed


def unwrap_tensor(value: Value) -> TensorValue | None:
    if isinstance(value, Sequence) and value.length == 1 and isinstance(value.items[0], TensorValue):
        return value.items[0]
    return value if isinstance(value, TensorValue) else None


def describe_found(value: Value, why_missing: Callable[[], str]) -> str:
    if isinstance(value, Missing):
        return f"nothing: {value.reason or why_missing()}"
    return value.describe()


def compare_value(found: Value, expected, *, name: str, what: str, hint: str, tolerance: Tolerance,
                  accept_one_tuple: bool = False, diagnose: Callable | None = None,
                  why_missing: Callable[[], str] = lambda: "", shape_hint: str = "", dtype_hint: str = "") -> Outcome:
    common = dict(what=what, hint=hint, tolerance=tolerance, why_missing=why_missing)
    if isinstance(expected, torch.nn.Module):
        expected = {"parameters": dict(expected.named_parameters()), "buffers": dict(expected.named_buffers())}
        return _compare_module(found, expected, name=name, shape_hint=shape_hint, dtype_hint=dtype_hint, **common)
    if isinstance(expected, dict):
        return _compare_mapping(found, expected, name=name, shape_hint=shape_hint, dtype_hint=dtype_hint, **common)
    if expected is None:
        return passed() if isinstance(found, NoneValue) else \
            failed(f"`{name}` = {what}: None", describe_found(found, why_missing), hint)
    if isinstance(expected, (bool, int, float)):
        return _compare_number(found, float(expected), name=name, **common)
    return compare_tensor(found, expected, name=name, accept_one_tuple=accept_one_tuple, diagnose=diagnose,
                          shape_hint=shape_hint, dtype_hint=dtype_hint, **common)


def _compare_number(found: Value, expected: float, *, name, what, hint, tolerance, why_missing) -> Outcome:
    wanted = f"`{name}` = {what}: a number"
    tensor = unwrap_tensor(found)
    if isinstance(found, Number):
        actual = found.value
    elif tensor is not None and tensor.numel == 1 and tensor.values is not None:
        actual = tensor.values[0]
    else:
        return failed(wanted, describe_found(found, why_missing), hint)
    if math.isclose(actual, expected, rel_tol=tolerance.rtol, abs_tol=tolerance.atol) or actual == expected:
        return passed()
    return failed(wanted, f"{_number(torch.tensor(actual))} instead of {_number(torch.tensor(expected))}", hint)


def _compare_module(found: Value, expected: dict, *, name, shape_hint, dtype_hint, **common) -> Outcome:
    if not isinstance(found, ModuleValue):
        return failed(f"`{name}` = {common['what']}: a module", describe_found(found, common["why_missing"]),
                      common["hint"])
    outcomes = []
    for key, parameter in expected["parameters"].items():
        item = found.parameters.get(key)
        outcomes.append(compare_tensor(item.value if item else Missing(reason="the module has no such parameter"),
                                       parameter.detach(), name=f"{name}.{key}", shape_hint=shape_hint,
                                       dtype_hint=dtype_hint, **common))
        if parameter.grad is not None:
            grad = item.grad if item and item.grad is not None else NoneValue()
            outcomes.append(compare_tensor(grad, parameter.grad, name=f"{name}.{key}.grad", shape_hint=shape_hint,
                                           dtype_hint=dtype_hint, **common))
    for key, buffer in expected["buffers"].items():
        outcomes.append(compare_tensor(found.buffers.get(key, Missing(reason="the module has no such buffer")),
                                       buffer, name=f"{name}.{key}", shape_hint=shape_hint, dtype_hint=dtype_hint,
                                       **common))
    return first_failure(*outcomes)


def _compare_mapping(found: Value, expected: dict, *, name, shape_hint, dtype_hint, **common) -> Outcome:
    if not isinstance(found, Mapping):
        return failed(f"`{name}` = {common['what']}: a dict", describe_found(found, common["why_missing"]),
                      common["hint"])
    return first_failure(*(
        compare_value(found.entries.get(key, Missing(reason=f"the dict has no key {key!r}")), value,
                      name=f"{name}[{key!r}]", shape_hint=shape_hint, dtype_hint=dtype_hint, **common)
        for key, value in expected.items()))


def compare_tensor(found: Value, expected: torch.Tensor, *, name: str, what: str, hint: str,
                   tolerance: Tolerance, accept_one_tuple: bool = False, diagnose: Callable | None = None,
                   why_missing: Callable[[], str] = lambda: "", shape_hint: str = "", dtype_hint: str = "") -> Outcome:
    """Existence, type, shape, dtype, NaN/Inf, then values within rtol/atol."""
    expected = expected.detach()
    wanted = f"`{name}` = {what}: a {str(expected.dtype).replace('torch.', '')} tensor of shape {shape_text(expected.shape)}"
    if accept_one_tuple and isinstance(found, Sequence) and found.length == 1 and isinstance(found.items[0], TensorValue):
        inner = compare_tensor(found.items[0], expected, name=f"{name}[0]", what=what, hint=hint,
                               tolerance=tolerance, diagnose=diagnose, shape_hint=shape_hint, dtype_hint=dtype_hint)
        if inner.passed:
            return passed(note=f"`{name}` is a 1-tuple holding the right tensor; torch.autograd.grad returns a tuple, "
                               f"so unpack it (`{name}, = ...` or `[0]`) to get the tensor itself.")
        return inner
    if not isinstance(found, TensorValue):
        return failed(wanted, describe_found(found, why_missing), hint)
    if found.too_large or found.values is None:
        return failed(wanted, f"a tensor of shape {shape_text(found.shape)} whose values could not be read", hint)
    if tuple(found.shape) != tuple(expected.shape):
        return failed(wanted, f"a tensor of shape {shape_text(found.shape)}", shape_hint or hint)
    if found.dtype != str(expected.dtype).replace("torch.", ""):
        return failed(wanted, f"a {found.dtype} tensor", dtype_hint or hint)
    try:
        actual = found.as_torch()
    except SnapshotError as problem:
        return failed(wanted, f"a tensor whose values could not be read ({problem})", hint)
    expected64, actual64 = expected.to(torch.float64), actual.to(torch.float64)
    if bool(torch.isfinite(expected64).all()) and not bool(torch.isfinite(actual64).all()):
        bad = int((~torch.isfinite(actual64)).sum())
        return failed(wanted, f"a tensor with {bad} NaN or infinite value{'s' if bad != 1 else ''}", hint)
    close = torch.isclose(actual64, expected64, rtol=tolerance.rtol, atol=tolerance.atol, equal_nan=True)
    if bool(close.all()):
        return passed()
    if diagnose is not None:
        targeted = diagnose(actual64, expected64)
        if targeted is not None:
            return targeted
    return failed(wanted, _mismatch_text(actual64, expected64, close), hint)


def _mismatch_text(actual: torch.Tensor, expected: torch.Tensor, close: torch.Tensor) -> str:
    wrong = int((~close).sum())
    first = tuple(int(i) for i in torch.nonzero(~close)[0].tolist())
    where = "[" + ", ".join(map(str, first)) + "]"
    return (f"wrong values at {wrong} of {close.numel()} positions; at {where} expected "
            f"{_number(expected[first])}, found {_number(actual[first])}")


def _number(value: torch.Tensor) -> str:
    number = float(value)
    return repr(round(number, 6)) if math.isfinite(number) else str(number)
