"""Grader for the computational-graph assignment: f(x, y) = x³ + y² and autograd.

Everything specific to this assignment lives here: its inputs, the code the grader
owns (GIVEN cells and the bridges that isolate tasks), the reference results, and
the checks with their feedback. Points and tolerances live in config.yaml.
"""

from __future__ import annotations

import torch

from torchgrade.assignment import Assignment, Given, Tensor
from torchgrade.checks import GRAD, CheckContext, Outcome, excerpt, failed, first_failure, passed
from torchgrade.evidence import CallRecord, NoneValue, shape_text

EXAMPLE_X = [[2.0, 3.0, 2.0], [2.0, 3.0, 3.0]]
EXAMPLE_Y = [[4.0, 5.0, 5.0], [4.0, 5.0, 5.0]]
NON_SCALAR = "grad can be implicitly created only for scalar outputs"
SECOND_PASS = "backward through the graph a second time"


def leaf(example) -> Tensor:
    """x and y: float32 in the GIVEN cells; random runs use another shape and dtype (catches hard-coding)."""
    return Tensor(example=example, dtype="float32", random_shape=(3, 4), random_dtype="float64", low=0.5, high=3.0,
                  requires_grad=True)


ASSIGNMENT = Assignment(
    name="computational_graph", title="Computational graphs and autograd",
    inputs={"x": leaf(EXAMPLE_X), "y": leaf(EXAMPLE_Y)},
    random_description="random 3×4 float64 tensors",
    hints={
        "shape": "Elementwise operations on x and y keep their shape; check for reductions or reshapes.",
        "dtype": "Compute it from x and y so it inherits their dtype; avoid creating new tensors with a fixed dtype.",
        "only_for_example": "compute everything from `x` and `y`.",
    },
)

# Bridges run before a task (not recorded as the student's calls) so that one mistake costs
# points only in its own task. Task 2 always starts from a correct f: a task-1 f can look
# right (values) yet carry a wrong graph, and a fresh correct f changes nothing for a
# student whose f was right. f_x/f_y are replaced only when unusable, keeping their
# tuple-or-tensor form, because task 4 code indexes them the way task 3 made them.
REPAIR_F = "f = x**3 + y**2"

REPAIR_FIRST_DERIVATIVES = """
def __torchgrade_repair(value, correct):
    one_tuple = isinstance(value, tuple) and len(value) == 1
    if __torchgrade__.values_match(value[0] if one_tuple else value, correct):
        return value
    return (correct,) if one_tuple else correct
__torchgrade_fx, __torchgrade_fy = torch.autograd.grad(x**3 + y**2, (x, y), torch.ones_like(x), create_graph=True)
f_x = __torchgrade_repair(globals().get("f_x"), __torchgrade_fx)
f_y = __torchgrade_repair(globals().get("f_y"), __torchgrade_fy)
del __torchgrade_repair, __torchgrade_fx, __torchgrade_fy
"""

ASSIGNMENT.task(1, "Build f = x³ + y²", snapshot=["x", "y", "f"], given=Given("x", "y"))
ASSIGNMENT.task(2, "Gradients with backward()", snapshot=["x", "y", "f", "x.grad", "y.grad"], bridge=REPAIR_F)
ASSIGNMENT.task(3, "First derivatives with torch.autograd.grad",
                snapshot=["x", "y", "f", "f_x", "f_y", "x.grad", "y.grad"],
                given=Given("x", "y", then="f = x**3 + y**2"))
ASSIGNMENT.task(4, "Second derivatives", snapshot=["x", "y", "f_x", "f_y", "f_xx", "f_yy", "f_xy"],
                bridge=REPAIR_FIRST_DERIVATIVES)
ASSIGNMENT.task(5, "Backpropagating through one graph twice",
                snapshot=["x", "y", "z", "a", "b", "x.grad", "y.grad"], given=Given("x", "y"))


# -------------------------------------------------------------------------- reference

@ASSIGNMENT.references
def reference(inputs) -> dict[int, dict[str, object]]:
    """The same computations as the tasks, done by torch in the grader process."""
    x, y = (inputs[k].detach().clone().requires_grad_(True) for k in ("x", "y"))
    f = x**3 + y**2
    f.sum().backward()
    task2 = {"f": f.detach(), "x.grad": x.grad.clone(), "y.grad": y.grad.clone()}

    x, y = (inputs[k].detach().clone().requires_grad_(True) for k in ("x", "y"))
    f = x**3 + y**2
    f_x, f_y = torch.autograd.grad(f, (x, y), torch.ones_like(f), create_graph=True)
    f_xx, f_xy = torch.autograd.grad(f_x, (x, y), torch.ones_like(f_x), retain_graph=True, materialize_grads=True)
    (f_yy,) = torch.autograd.grad(f_y, y, torch.ones_like(f_y))

    x5, y5 = (inputs[k].detach().clone().requires_grad_(True) for k in ("x", "y"))
    z = x5 * y5
    a, b = z.sum(), (z**2).sum()
    a.backward(retain_graph=True)
    b.backward()

    plain = {"x": inputs["x"].detach(), "y": inputs["y"].detach()}
    return {
        1: {**plain, "f": task2["f"]},
        2: {**plain, **task2},
        3: {**plain, "f_x": f_x.detach(), "f_y": f_y.detach()},
        4: {**plain, "f_xx": f_xx.detach(), "f_yy": f_yy.detach(), "f_xy": f_xy.detach()},
        5: {**plain, "z": z.detach(), "a": a.detach(), "b": b.detach(), "x.grad": x5.grad, "y.grad": y5.grad},
    }


# ---------------------------------------------------------------------- shared helpers

def raised(calls, text: str) -> CallRecord | None:
    return next((c for c in calls if c.raised and text in c.raised.message), None)


def multiple_of_expected(name: str, hint: str):
    """Diagnose gradients that were accumulated several times."""
    def diagnose(actual, expected):
        if not bool(expected.abs().sum()):
            return None
        factor = float((actual * expected).sum() / (expected * expected).sum())
        if round(factor) >= 2 and torch.allclose(actual, round(factor) * expected, rtol=1e-4, atol=1e-5):
            return failed(f"`{name}` holding the gradient once",
                          f"exactly {round(factor)} times the expected gradient", hint)
        return None
    return diagnose


ACCUMULATED = ("Gradients accumulate in `.grad`: every backward pass adds to what is there. Run one backward pass "
               "per gradient you need, or reset `.grad` to None before running another.")


# ---------------------------------------------------------------------------- task 1

def wrong_function(x, y):
    """Recognize the usual slips in f so the hint can name them (without showing the answer)."""
    slips = [
        (lambda: x**2 + y**3, "The exponents look swapped between x and y."),
        (lambda: 3 * x + 2 * y, "`*` multiplies; Python's power operator is `**`."),
        (lambda: x * 3 + y * 2, "`*` multiplies; Python's power operator is `**`."),
        (lambda: x**3 * y**2, "The two terms should be added, not multiplied."),
        (lambda: (x + y) ** 3, "Each variable has its own power; the powers are not applied to the sum."),
    ]

    def diagnose(actual, expected):
        for compute, hint in slips:
            candidate = compute().to(torch.float64)
            if candidate.shape == actual.shape and torch.allclose(actual, candidate, rtol=1e-5, atol=1e-6):
                return failed("`f` = x³ + y², elementwise", "values of a different function of x and y", hint)
        return None
    return diagnose


@ASSIGNMENT.check("t1_f_value", task=1, title="f equals x³ + y²")
def f_value(ctx: CheckContext) -> Outcome:
    return ctx.compare("f", what="x³ + y², elementwise",
                       hint="Build f from x and y with `**` for powers; the result keeps x's shape.",
                       diagnose=wrong_function(ctx.expected("x").double(), ctx.expected("y").double()))


@ASSIGNMENT.check("t1_f_graph", task=1, title="f is connected to x and y in the graph")
def f_graph(ctx: CheckContext) -> Outcome:
    expected = "`f` computed from `x` and `y`, so it has a `grad_fn` leading back to both"
    f = ctx.tensor("f")
    if f is None:
        return failed(expected, "no tensor named `f`: " + ctx.why_missing(), "Assign your result to `f` in TASK 1.")
    if f.grad_fn is None:
        return failed(expected, "`f` has no grad_fn: autograd did not record how it was computed",
                      "Compute f from x and y directly; typed-in tensors, `.detach()` or `torch.no_grad()` cut the graph.")
    return ctx.graph_reaches("f", ("x", "y"), what=expected, hint="Use the given x and y themselves, not copies of them.")


# ---------------------------------------------------------------------------- task 2

@ASSIGNMENT.check("t2_grad_values", task=2, title="x.grad and y.grad hold ∂f/∂x and ∂f/∂y")
def grad_values(ctx: CheckContext) -> Outcome:
    hint = "After a backward pass from a scalar made of f, x.grad holds ∂f/∂x (here 3x²) and y.grad holds ∂f/∂y."
    if isinstance(ctx.value("x.grad"), NoneValue):
        crash = raised(ctx.calls(), NON_SCALAR)
        found = ("None: your backward() call raised “" + crash.raised.message + "”") if crash else \
            "None: no backward pass reached x" + _error_suffix(ctx)
        return failed("`x.grad` = ∂f/∂x, filled by a backward pass", found, hint)
    return first_failure(
        ctx.compare("x.grad", what="∂f/∂x", hint=hint, diagnose=multiple_of_expected("x.grad", ACCUMULATED)),
        ctx.compare("y.grad", what="∂f/∂y", hint=hint, diagnose=multiple_of_expected("y.grad", ACCUMULATED)),
    )


@ASSIGNMENT.check("t2_backward_scalar", task=2, title="backward() ran on a scalar made from f")
def backward_scalar(ctx: CheckContext) -> Outcome:
    expected = "x.grad and y.grad filled by a backward() call on a scalar made from f (or with a `gradient` argument)"
    calls = ctx.calls()
    crash = raised(calls, NON_SCALAR)
    if crash and ctx.tensor("x.grad") is None:
        shape = shape_text(crash.output_shapes[0]) if crash.output_shapes else "?"
        return failed(expected, f"backward() was called on a tensor of shape {shape} and raised “{crash.raised.message}”",
                      "Without arguments, backward() needs a single number. f is elementwise, so a reduction that "
                      "adds all f_ij gives every x_ij exactly its own derivative.")
    if not any(c.is_backward and c.succeeded for c in calls):
        if any(c.api == "autograd.grad" for c in calls):
            return failed(expected, "torch.autograd.grad was used, and .grad was filled some other way",
                          "This task is about backward(), which stores gradients in .grad by itself.")
        if ctx.tensor("x.grad") is not None:
            return failed(expected, "`x.grad` was set, but no backward() call ran in task 2 (assigned by hand?)",
                          "Let autograd fill .grad: call backward() on a scalar built from f.")
        return failed(expected, "no backward() call ran in task 2" + _error_suffix(ctx),
                      "Make a scalar from f and call .backward() on it.")
    hint = "Let autograd fill .grad: call backward() on a scalar built from f, and do not assign .grad yourself."
    return first_failure(ctx.grad_filled("x.grad", passes=None, source="f", what=expected, hint=hint),
                         ctx.grad_filled("y.grad", passes=None, source="f", what=expected, hint=hint))


def _error_suffix(ctx: CheckContext) -> str:
    errors = ctx.errors()
    return f" ({errors[0].describe()})" if errors else ""


# ---------------------------------------------------------------------------- task 3

@ASSIGNMENT.check("t3_values", task=3, title="f_x and f_y are the first derivatives")
def first_derivatives(ctx: CheckContext) -> Outcome:
    hint = "torch.autograd.grad(f, x, grad_outputs=...) returns ∂f/∂x; grad_outputs must have f's shape."
    return first_failure(
        ctx.compare("f_x", what="∂f/∂x", hint=hint, accept_one_tuple=True),
        ctx.compare("f_y", what="∂f/∂y", hint=hint, accept_one_tuple=True),
    )


@ASSIGNMENT.check("t3_create_graph", task=3, title="f_x and f_y carry a graph (create_graph=True)")
def create_graph(ctx: CheckContext) -> Outcome:
    expected = "f_x and f_y from torch.autograd.grad with a graph of their own, so they can be differentiated again"
    if ctx.tensor("f_x") is None or ctx.tensor("f_y") is None:
        return failed(expected, "f_x or f_y is not a tensor: " + ctx.why_missing(), "Compute both in TASK 3.")
    grads = [c for c in ctx.calls() if c.api == "autograd.grad" and c.succeeded]
    producers = [ctx.producer(name) for name in ("f_x", "f_y")]
    if not grads or any(c is not None and c.is_backward for c in producers):
        used = "backward()" if any(c.is_backward for c in ctx.calls()) else "no autograd call"
        return failed(expected, f"{used} in task 3; torch.autograd.grad was not used for f_x and f_y",
                      "torch.autograd.grad returns the derivatives instead of storing them in .grad; use it here.")
    for name, call in zip(("f_x", "f_y"), producers):
        if call is not None and call.api == "autograd.grad" and not call.create_graph:
            if call.retain_graph:
                return failed(expected, f"retain_graph=True was used: it keeps the graph of f, but {name} itself has "
                              "no grad_fn", "Keeping f's graph is not the same as recording how the derivative was "
                              "computed; read what create_graph does in torch.autograd.grad's documentation.")
            return failed(expected, f"{name} has no grad_fn, so it cannot be differentiated again",
                          "Ask torch.autograd.grad to build a graph of the derivative computation itself "
                          "(see its create_graph argument).")
    hint = "Keep the tensors torch.autograd.grad returns as f_x and f_y (unpack the tuple); do not retype them."
    return first_failure(ctx.produced_by("f_x", GRAD, create_graph=True, what=expected, hint=hint),
                         ctx.produced_by("f_y", GRAD, create_graph=True, what=expected, hint=hint))


@ASSIGNMENT.check("t3_grad_untouched", task=3, title="x.grad and y.grad stay None")
def grad_untouched(ctx: CheckContext) -> Outcome:
    expected = "x.grad and y.grad still None: torch.autograd.grad returns gradients without storing them"
    if ctx.tensor("f_x") is None or ctx.tensor("f_y") is None:
        return failed(expected, "not checked yet: f_x and f_y were not produced", "Complete TASK 3 first.")
    if any(c.is_backward for c in ctx.calls()) or not isinstance(ctx.value("x.grad"), NoneValue) \
            or not isinstance(ctx.value("y.grad"), NoneValue):
        return failed(expected, "x.grad or y.grad was filled (backward() was used in task 3)",
                      "Use torch.autograd.grad for both derivatives and leave .grad alone.")
    return passed()


# ---------------------------------------------------------------------------- task 4

@ASSIGNMENT.check("t4_pure_second", task=4, title="f_xx and f_yy are the second derivatives")
def pure_second(ctx: CheckContext) -> Outcome:
    hint = "Differentiate f_x with respect to x (and f_y with respect to y), with grad_outputs of f_x's shape."
    return first_failure(
        ctx.compare("f_xx", what="∂²f/∂x²", hint=hint, accept_one_tuple=True),
        ctx.compare("f_yy", what="∂²f/∂y²", hint=hint, accept_one_tuple=True),
    )


@ASSIGNMENT.check("t4_mixed", task=4, title="f_xy is the mixed derivative")
def mixed(ctx: CheckContext) -> Outcome:
    hint = "The mixed derivative is ∂/∂y of f_x; it is a tensor of x's shape."
    if isinstance(ctx.value("f_xy"), NoneValue) or _is_none_tuple(ctx.value("f_xy")):
        return failed("`f_xy` = ∂²f/∂x∂y: a tensor of x's shape", "None",
                      "With allow_unused=True, torch.autograd.grad returns None for an input the output does not "
                      "depend on. Mathematically that derivative still exists: turn it into a tensor of x's shape.")
    unused = raised(ctx.calls(), "appears to not have been used in the graph")
    if unused and ctx.tensor("f_xy") is None:
        return failed("`f_xy` = ∂²f/∂x∂y: a tensor of x's shape",
                      f"torch.autograd.grad raised “{excerpt(unused.raised.message, 120)}”",
                      "f_x does not depend on y; read about allow_unused (and materialize_grads) in torch.autograd.grad.")
    return ctx.compare("f_xy", what="∂²f/∂x∂y", hint=hint, accept_one_tuple=True)


def _is_none_tuple(value) -> bool:
    return getattr(value, "length", 0) == 1 and isinstance(value.items[0], NoneValue)


@ASSIGNMENT.check("t4_from_first", task=4, title="second derivatives come from differentiating f_x and f_y")
def from_first(ctx: CheckContext) -> Outcome:
    expected = "f_xx and f_yy obtained by differentiating f_x and f_y with autograd"
    if ctx.tensor("f_xx") is None or ctx.tensor("f_yy") is None:
        return failed(expected, "f_xx or f_yy is not a tensor: " + ctx.why_missing(), "Compute both in TASK 4.")
    hint = "Second derivatives should come from autograd, not from a formula worked out by hand."
    outcomes = []
    for name, source in (("f_xx", "f_x"), ("f_yy", "f_y")):
        outcome = ctx.differentiated_through(name, source, what=expected, hint=hint)
        if not outcome.passed and ctx.tensor(name).origin is None and not _differentiated(ctx, source):
            outcome = failed(expected, f"no autograd call in task 4 differentiated {source}; {outcome.found}", hint)
        outcomes.append(outcome)
    return first_failure(*outcomes)


def _differentiated(ctx: CheckContext, source: str) -> bool:
    tensor = ctx.tensor(source)
    return tensor is not None and any(tensor.grad_fn_token in c.graph_nodes for c in ctx.calls() if c.succeeded)


# ---------------------------------------------------------------------------- task 5

@ASSIGNMENT.check("t5_forward", task=5, title="z, a and b are computed from x and y")
def forward(ctx: CheckContext) -> Outcome:
    return first_failure(
        ctx.compare("z", what="x · y, elementwise", hint="z is the elementwise product of x and y."),
        ctx.compare("a", what="the sum of z", hint="a is the sum of all entries of z."),
        ctx.compare("b", what="the sum of z²", hint="b is the sum of the squares of z's entries."),
    )


@ASSIGNMENT.check("t5_grad_values", task=5, title="x.grad and y.grad hold the gradients of a and b together")
def both_gradients(ctx: CheckContext) -> Outcome:
    hint = "Backpropagate a and b; .grad then holds ∂a/∂x + ∂b/∂x (and the same for y)."
    if isinstance(ctx.value("x.grad"), NoneValue) or isinstance(ctx.value("y.grad"), NoneValue):
        second = raised(ctx.calls(), SECOND_PASS)
        found = "None: the second backward pass raised “Trying to backward through the graph a second time”" \
            if second else "None: no backward pass reached x and y" + _error_suffix(ctx)
        return failed("x.grad and y.grad filled by backpropagating both a and b", found, hint)
    second = raised(ctx.calls(), SECOND_PASS)
    if second:
        return failed("x.grad and y.grad filled by backpropagating both a and b",
                      "only the first pass ran: the second raised “Trying to backward through the graph a second time”",
                      "The first backward pass frees the graph that a and b share; ask it to keep the graph.")
    return first_failure(
        ctx.compare("x.grad", what="∂a/∂x + ∂b/∂x", hint=hint),
        ctx.compare("y.grad", what="∂a/∂y + ∂b/∂y", hint=hint),
    )


@ASSIGNMENT.check("t5_retain_graph", task=5, title="retain_graph used exactly where the graph is reused")
def retain_graph(ctx: CheckContext) -> Outcome:
    expected = "retain_graph=True on a backward pass whose graph is used again, and not on the last pass"
    second = raised(ctx.calls(), SECOND_PASS)
    if second:
        return failed(expected, "a later backward pass raised “Trying to backward through the graph a second time”",
                      "The first pass frees the saved values of the graph a and b share; keep them for the next pass.")
    if not any(c.is_backward and c.succeeded for c in ctx.calls()):
        return failed(expected, "no backward pass from a or b reached x and y" + _error_suffix(ctx),
                      "Call backward on a and on b (or on their sum).")
    return ctx.retain_graph_where_reused(("x.grad", "y.grad"), what=expected,
                                         hint="Keeping a graph costs memory; only a pass whose graph is used again "
                                              "needs to keep it, and .grad must be what those passes left.")
