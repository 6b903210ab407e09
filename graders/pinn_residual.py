"""Grader for the physics-informed residual assignment: derivatives of a network's output.

The grader gives a small seeded MLP ``model`` (u as a function of t), collocation points
``t`` (a column, requires_grad), the frequency ``omega`` and the learning rate ``lr``.
Students compute u, du/dt and d²u/dt² with autograd, the residual u'' + ω²u, the
mean-squared loss, backpropagate it into the parameters and take one SGD step.

Everything specific to this assignment lives here; points and tolerances live in config.yaml.
"""

from __future__ import annotations

import torch

from torchgrade.assignment import Assignment, Given, Number, Seeded, Tensor
from torchgrade.checks import FUNC, FUNCTIONAL, GRAD, CheckContext, Outcome, excerpt, failed, first_failure, passed

MODEL_CODE = ("nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))"
              ".double()")
EXAMPLE_T = torch.linspace(0.0, 2.0, 20, dtype=torch.float64).reshape(20, 1).tolist()
# The derivative "how" checks accept every API that returns a derivative (not backward(),
# which accumulates into t.grad, a tensor the loss's own backward pass adds to later).
DERIVATIVE_KINDS = frozenset(GRAD) | frozenset(FUNCTIONAL) | frozenset(FUNC)
SECOND_PASS = "backward through the graph a second time"

ASSIGNMENT = Assignment(
    name="pinn_residual",
    title="Derivatives of a network's output (PINN residual)",
    inputs={
        "model": Seeded(MODEL_CODE, example_seed=0),
        "t": Tensor(example=EXAMPLE_T, random_shape=(16, 1), dtype="float64", low=0.0, high=3.0,
                    requires_grad=True),
        "omega": Number(example=3.0, low=1.0, high=4.0),
        "lr": Number(example=0.05, low=0.01, high=0.1),
    },
    random_description="other collocation points t, another omega, another lr and other network weights",
    hints={
        "shape": "u and its derivatives have the shape of t (one row per point); check for squeezes or reductions.",
        "dtype": "Compute it from `model` and `t` so it stays float64; avoid creating tensors with a fixed dtype.",
        "only_for_example": "compute everything from `model`, `t`, `omega` and `lr`.",
    },
)

PARAMETERS = [name for name, _ in torch.nn.Sequential(
    torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1),
).named_parameters()]
GRAD_PATHS = [f"model.{name}.grad" for name in PARAMETERS]
PARAM_PATHS = [f"model.{name}" for name in PARAMETERS]


# ---------------------------------------------------------------------- grader-owned code

# Bridges run before a task so that one mistake costs points in its own task only. Each
# replaces a name only when the student's value is unusable for the next task (wrong
# values, or no live graph where a later task must differentiate through it: a derivative
# taken without create_graph frees the graph of u that it went through), never a correct
# one. d2u_dt2 and the loss are repaired on their values only: a d2u_dt2 without a graph
# is exactly the mistake whose consequence Task 4's gradients must show.
_REFERENCE_IN_KERNEL = """
def __torchgrade_reference():
    u = model(t)
    du = torch.autograd.grad(u, t, torch.ones_like(u), create_graph=True)[0]
    d2u = torch.autograd.grad(du, t, torch.ones_like(du), create_graph=True)[0]
    return u, du, d2u, ((d2u + omega**2 * u) ** 2).mean()

def __torchgrade_usable(value, expected, need_graph):
    if not __torchgrade__.values_match(value, expected, need_graph=need_graph):
        return False
    try:  # a graph whose saved values were freed cannot be differentiated again
        need_graph and torch.autograd.grad(value.sum(), [t, *model.parameters()], retain_graph=True,
                                           allow_unused=True)
        return True
    except RuntimeError:
        return False
"""
_HELPERS = "__torchgrade_reference, __torchgrade_usable"


def repair(**targets: tuple[int, bool]) -> str:
    """Bridge code replacing each name whose value is unusable: name=(index in the reference, need_graph)."""
    lines = ["try:", "    __torchgrade_values = __torchgrade_reference()"]
    for name, (index, need_graph) in targets.items():
        value = f"__torchgrade_values[{index}]"
        lines += [f"    if not __torchgrade_usable(globals().get({name!r}), {value}, {need_graph}):",
                  f"        {name} = {value}"]
    lines += ["    del __torchgrade_values", "finally:", f"    del {_HELPERS}"]
    return _REFERENCE_IN_KERNEL + "\n".join(lines) + "\n"


# Task 5 starts from the right gradients: the step is judged on its own.
REPAIR_GRADIENTS = _REFERENCE_IN_KERNEL + """
try:
    __torchgrade_parameters = list(model.parameters())
    __torchgrade_grads = torch.autograd.grad(__torchgrade_reference()[3], __torchgrade_parameters)
    for __torchgrade_p, __torchgrade_g in zip(__torchgrade_parameters, __torchgrade_grads):
        if __torchgrade_p.grad is None or __torchgrade_p.grad.shape != __torchgrade_g.shape \\
                or not torch.allclose(__torchgrade_p.grad, __torchgrade_g, rtol=1e-9, atol=1e-12):
            __torchgrade_p.grad = __torchgrade_g.detach().clone()
    del __torchgrade_parameters, __torchgrade_grads, __torchgrade_p, __torchgrade_g
finally:
    del """ + _HELPERS + "\n"

ASSIGNMENT.task(1, "The output u and its first derivative", snapshot=["t", "u", "du_dt"],
                given=Given("model", "t", "omega", "lr", imports="import torch\nfrom torch import nn"))
ASSIGNMENT.task(2, "The second derivative", snapshot=["t", "u", "du_dt", "d2u_dt2"],
                bridge=repair(u=(0, True), du_dt=(1, True)))
ASSIGNMENT.task(3, "Residual and loss", snapshot=["u", "d2u_dt2", "residual", "loss"],
                bridge=repair(u=(0, True), d2u_dt2=(2, False)))
ASSIGNMENT.task(4, "Gradients of the loss with respect to the parameters",
                snapshot=["loss", "model", *GRAD_PATHS], bridge=repair(loss=(3, False)))
ASSIGNMENT.task(5, "One SGD step", snapshot=["model", *PARAM_PATHS], bridge=REPAIR_GRADIENTS)


# -------------------------------------------------------------------------- reference

def _loss_gradients(model, t, omega, *, cut_second_derivative: bool) -> dict[str, torch.Tensor]:
    u = model(t)
    du = torch.autograd.grad(u, t, torch.ones_like(u), create_graph=True)[0]
    # Cut: d2u without a graph of its own, its graph kept alive (retain_graph) for the loss's pass.
    d2u = torch.autograd.grad(du, t, torch.ones_like(du), create_graph=not cut_second_derivative,
                              retain_graph=True)[0]
    loss = ((d2u + omega**2 * u) ** 2).mean()
    names, parameters = zip(*model.named_parameters())
    return dict(zip(names, torch.autograd.grad(loss, parameters)))


@ASSIGNMENT.references
def reference(inputs) -> dict[int, dict[str, object]]:
    """The tasks' computations, done by torch in the grader process on fresh copies of the inputs."""
    model, t, omega, lr = inputs["model"], inputs["t"], inputs["omega"], inputs["lr"]
    u = model(t)
    du_dt = torch.autograd.grad(u, t, torch.ones_like(u), create_graph=True)[0]
    d2u_dt2 = torch.autograd.grad(du_dt, t, torch.ones_like(du_dt), create_graph=True)[0]
    residual = d2u_dt2 + omega**2 * u
    loss = (residual**2).mean()
    grads = _loss_gradients(model, t, omega, cut_second_derivative=False)
    cut = _loss_gradients(model, t, omega, cut_second_derivative=True)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    stepped = {name: before[name] - lr * grads[name] for name in PARAMETERS}
    plain = {"t": t.detach()}
    return {
        1: {**plain, "u": u.detach(), "du_dt": du_dt.detach()},
        2: {**plain, "u": u.detach(), "du_dt": du_dt.detach(), "d2u_dt2": d2u_dt2.detach()},
        3: {"u": u.detach(), "du_dt": du_dt.detach(), "d2u_dt2": d2u_dt2.detach(), "residual": residual.detach(),
            "loss": loss.detach(), "omega": omega},
        4: {**{f"model.{n}.grad": g for n, g in grads.items()},
            "grads without d2u": cut, "parameters before": before},
        5: {**{f"model.{n}": s for n, s in stepped.items()}, "parameters before": before,
            "gradients": grads, "lr": lr},
    }


# ---------------------------------------------------------------------- shared helpers

def found_tensors(ctx: CheckContext, paths: list[str]) -> dict[str, torch.Tensor] | None:
    """The float64 values at every path, or None when one of them is not a readable tensor."""
    found = {}
    for path in paths:
        value = ctx.tensor(path)
        if value is None or value.values is None:
            return None
        found[path] = value.as_torch().to(torch.float64)
    return found


def along(found: dict[str, torch.Tensor], direction: dict[str, torch.Tensor]) -> float | None:
    """k such that found ≈ k · direction for every tensor (None when they are not parallel)."""
    pairs = [(found[key].flatten(), direction[key].flatten()) for key in direction]
    norm = sum(float((d * d).sum()) for _, d in pairs)
    if not norm or any(f.shape != d.shape for f, d in pairs):
        return None
    k = sum(float((f * d).sum()) for f, d in pairs) / norm
    if all(torch.allclose(f, k * d, rtol=1e-5, atol=1e-8) for f, d in pairs):
        return k
    return None


def producer_kind(ctx: CheckContext, path: str) -> str:
    """How the value at path came about, in words, for a "found" text."""
    call = ctx.producer(path)
    if call is None:
        return "a tensor that no autograd call returned (a formula or numbers computed by hand?)"
    return f"the result of {call.api}"


# ---------------------------------------------------------------------------- task 1

@ASSIGNMENT.check("t1_u", task=1, title="u is the network's output at t")
def u_value(ctx: CheckContext) -> Outcome:
    return first_failure(
        ctx.compare("u", what="model(t), one output per point",
                    hint="Call the network on the whole column t at once; the output keeps one row per point."),
        ctx.graph_reaches("u", inputs=("t",), what="`u` computed from `t`, so that it can be differentiated with respect to t",
                          hint="Apply the model to t itself, not to a copy made with .detach() or torch.tensor(...)."),
    )


@ASSIGNMENT.check("t1_du_value", task=1, title="du_dt is du/dt at every point")
def du_value(ctx: CheckContext) -> Outcome:
    return ctx.compare("du_dt", what="du/dt at every point", accept_one_tuple=True,
                       hint="torch.autograd.grad(u, t, grad_outputs=...) returns a tuple; grad_outputs is a tensor "
                            "of ones shaped like u, which gives one derivative per point.")


def _derivative_from_autograd(ctx: CheckContext, path: str, source: str) -> Outcome:
    via_backward = _filled_by_backward(ctx, path)
    if via_backward is not None:
        return via_backward
    return ctx.produced_by(path, DERIVATIVE_KINDS, what=f"`{path}` returned by torch.autograd.grad applied to `{source}`",
                           hint=f"Keep the tensor that torch.autograd.grad returns as `{path}`; a derivative worked "
                                "out by hand or by finite differences does not count, even when its values are right.")


def _filled_by_backward(ctx: CheckContext, path: str) -> Outcome | None:
    call = ctx.producer(path)
    if call is None or not call.is_backward:
        return None
    return failed(f"`{path}` returned by torch.autograd.grad", f"`{path}` is the .grad of t filled by {call.api}",
                  "backward() accumulates into t.grad, and Task 4's backward pass adds to the same tensor. "
                  "torch.autograd.grad returns the derivative instead; use it here.")


@ASSIGNMENT.check("t1_du_autograd", task=1, title="du_dt came from autograd")
def du_autograd(ctx: CheckContext) -> Outcome:
    return _derivative_from_autograd(ctx, "du_dt", "u")


def _has_graph(ctx: CheckContext, path: str, source: str, later: str) -> Outcome:
    origin = _derivative_from_autograd(ctx, path, source)
    if not origin.passed:
        return failed(f"`{path}` from an autograd call with create_graph=True",
                      f"not judged: {path} did not come from autograd ({producer_kind(ctx, path)})",
                      "Compute it with torch.autograd.grad first; then this check looks at how it was called.")
    judged = ctx.produced_by(path, DERIVATIVE_KINDS, create_graph=True,
                             what=f"`{path}` with a graph of its own (create_graph=True), so that {later}",
                             hint="Ask torch.autograd.grad to record the graph of the derivative computation "
                                  "itself (see its create_graph argument).")
    if judged.passed:
        return judged
    call = ctx.producer(path)
    if call is not None and call.retain_graph:
        return failed(f"`{path}` with a graph of its own (create_graph=True), so that {later}",
                      "retain_graph=True was used: it keeps u's graph alive, but the derivative itself has no grad_fn",
                      "Keeping the existing graph is not the same as recording how the derivative was computed; "
                      "read what create_graph does in torch.autograd.grad's documentation.")
    return judged


@ASSIGNMENT.check("t1_du_create_graph", task=1, title="du_dt carries a graph (create_graph=True)")
def du_create_graph(ctx: CheckContext) -> Outcome:
    return _has_graph(ctx, "du_dt", "u", "Task 2 can differentiate it again")


# ---------------------------------------------------------------------------- task 2

@ASSIGNMENT.check("t2_d2u_value", task=2, title="d2u_dt2 is the second derivative")
def d2u_value(ctx: CheckContext) -> Outcome:
    return ctx.compare("d2u_dt2", what="d²u/dt² at every point", accept_one_tuple=True,
                       hint="Differentiate du_dt (not u) with respect to t, with grad_outputs shaped like du_dt.")


def _second_order_transform(ctx: CheckContext, path: str) -> bool:
    """A torch.func / functional call that differentiated twice by itself (grad of grad, hessian), vmapped or not."""
    call = ctx.producer(path)
    return call is not None and call.api not in GRAD and not call.is_backward and call.order >= 2


@ASSIGNMENT.check("t2_d2u_autograd", task=2, title="d2u_dt2 came from differentiating du_dt")
def d2u_autograd(ctx: CheckContext) -> Outcome:
    via_backward = _filled_by_backward(ctx, "d2u_dt2")
    if via_backward is not None:
        return via_backward
    through = ctx.differentiated_through(
        "d2u_dt2", "du_dt", kinds=DERIVATIVE_KINDS,
        hint="Call torch.autograd.grad on du_dt itself and keep what it returns; differentiating u again gives "
             "the first derivative, and a formula typed in by hand does not count.")
    if through.passed or _second_order_transform(ctx, "d2u_dt2"):
        return passed()
    return through


@ASSIGNMENT.check("t2_d2u_create_graph", task=2, title="d2u_dt2 carries a graph (create_graph=True)")
def d2u_create_graph(ctx: CheckContext) -> Outcome:
    return _has_graph(ctx, "d2u_dt2", "du_dt", "the loss can be backpropagated into the parameters through it")


# ---------------------------------------------------------------------------- task 3

def slips(expected: str, found: str, candidates: list[tuple[torch.Tensor, str]]):
    """A diagnose function recognising the usual slips, so the hint can name them (without the answer)."""
    def diagnose(actual, _expected):
        for candidate, hint in candidates:
            if candidate.numel() == actual.numel() and candidate.shape == actual.reshape(candidate.shape).shape \
                    and torch.allclose(actual.reshape(candidate.shape), candidate, rtol=1e-6, atol=1e-8):
                return failed(expected, found, hint)
        return None
    return diagnose


def residual_slips(ctx: CheckContext):
    u, d2u = ctx.expected("u").double(), ctx.expected("d2u_dt2").double()
    omega = float(ctx.expected("omega"))
    return slips("`residual` = u'' + ω²·u at every point", "the values of another combination of u and its derivatives", [
        (d2u + omega * u, "ω appears squared in the equation: u'' + ω²·u."),
        (d2u - omega**2 * u, "Check the sign between the two terms: the equation adds them."),
        (omega**2 * d2u + u, "ω² multiplies u, not the second derivative."),
        (ctx.expected("du_dt").double() + omega**2 * u, "The equation uses the second derivative, not the first."),
    ])


@ASSIGNMENT.check("t3_residual", task=3, title="residual is u'' + ω²u")
def residual_value(ctx: CheckContext) -> Outcome:
    return ctx.compare("residual", what="u'' + ω²·u at every point", diagnose=residual_slips(ctx),
                       hint="Combine d2u_dt2, omega and u elementwise; the residual keeps one row per point.")


def loss_slips(ctx: CheckContext):
    residual = ctx.expected("residual").double()
    return slips("`loss` = the mean of the squared residuals", "the value of another reduction of the residuals", [
        ((residual**2).sum(), "That is the sum of the squares; the loss is their mean."),
        (residual.mean() ** 2, "That is the square of the mean; square each residual first, then average."),
        (residual.mean(), "The residuals are not squared: positive and negative ones cancel out."),
        (residual.abs().mean(), "That is the mean absolute value; the loss squares the residuals."),
    ])


@ASSIGNMENT.check("t3_loss", task=3, title="loss is the mean squared residual")
def loss_value(ctx: CheckContext) -> Outcome:
    hint = "Square every residual, then take the mean over all points: the loss is one number in a tensor."
    judged = ctx.compare("loss", what="the mean of the squared residuals", hint=hint, diagnose=loss_slips(ctx))
    if judged.passed:
        return judged
    # A wrong residual costs its own check; a loss that is the mean square of the student's residual is right.
    found = found_tensors(ctx, ["loss", "residual"])
    if found and found["loss"].numel() == 1 and ctx.tensor("loss").shape == ctx.expected("loss").shape \
            and torch.allclose(found["loss"].reshape(()), (found["residual"] ** 2).mean(), rtol=1e-6, atol=1e-8):
        return passed()
    return judged


# ---------------------------------------------------------------------------- task 4

GRAD_HINT = ("loss.backward() fills the .grad of every parameter of model, through the residual and both "
             "derivatives; that only works when the derivatives were taken with create_graph=True.")


def gradient_diagnosis(ctx: CheckContext) -> Outcome | None:
    """One explanation for the whole set of gradients, when their pattern has a known cause."""
    expected_text = "every parameter's .grad = ∂loss/∂parameter, from one backward pass"
    if all(ctx.tensor(path) is None for path in GRAD_PATHS):
        freed = next((c for c in ctx.calls() if c.raised and SECOND_PASS in c.raised.message), None)
        if freed is not None:
            return failed(expected_text, f"no parameter has a .grad: {freed.api} raised “{excerpt(freed.raised.message, 90)}”",
                          "An autograd.grad call without create_graph=True frees the graph it went through, and "
                          "the loss goes through that same graph (the one of u). The derivative taken in Task 2 "
                          "needs create_graph=True: it keeps that graph and gives d2u_dt2 one of its own.")
        return failed(expected_text, "no parameter has a .grad: no backward pass reached the model" + _error_suffix(ctx),
                      "Call backward() on the loss in TASK 4.")
    found = found_tensors(ctx, GRAD_PATHS)
    if found is None:
        return None
    by_name = {path[len("model."):-len(".grad")]: value for path, value in found.items()}
    exact = {n: ctx.expected(f"model.{n}.grad").double() for n in PARAMETERS}
    cut = {n: g.double() for n, g in ctx.expected("grads without d2u").items()}
    if all(torch.allclose(by_name[n], cut[n], rtol=1e-6, atol=1e-9) for n in PARAMETERS) \
            and not all(torch.allclose(cut[n], exact[n], rtol=1e-6, atol=1e-9) for n in PARAMETERS):
        return failed(expected_text, "the gradients of a loss whose d2u_dt2 part is a constant: "
                      "the backward pass did not go through the second derivative",
                      "d2u_dt2 needs a graph of its own (create_graph=True in Task 2), otherwise autograd treats it "
                      "as a constant and that part of the loss never reaches the parameters.")
    factor = along(by_name, exact)
    if factor is not None and round(factor) >= 2 and abs(factor - round(factor)) < 1e-6:
        return failed(expected_text, f"exactly {round(factor)} times the gradient of the loss",
                      "Gradients accumulate in .grad: every backward pass adds to it. Backpropagate the loss once.")
    return None


def _error_suffix(ctx: CheckContext) -> str:
    errors = ctx.errors()
    return f" ({errors[0].describe()})" if errors else ""


@ASSIGNMENT.check("t4_grad_values", task=4, title="every parameter's .grad is ∂loss/∂parameter")
def grad_values(ctx: CheckContext) -> Outcome:
    judged = first_failure(*(ctx.compare(path, what=f"∂loss/∂{path[len('model.'):-len('.grad')]}", hint=GRAD_HINT)
                             for path in GRAD_PATHS))
    return judged if judged.passed else gradient_diagnosis(ctx) or judged


@ASSIGNMENT.check("t4_backward", task=4, title="the .grad values were filled by backward() on the loss")
def backward_on_loss(ctx: CheckContext) -> Outcome:
    hint = ("Let autograd fill .grad: call loss.backward() (or torch.autograd.backward(loss)) and leave .grad alone; "
            "torch.autograd.grad returns gradients without storing them, and assigning them to .grad by hand "
            "does not count.")
    return first_failure(*(ctx.grad_filled(path, passes=None, scalar=True, source="loss", hint=hint)
                           for path in GRAD_PATHS))


# ---------------------------------------------------------------------------- task 5

def step_diagnosis(ctx: CheckContext) -> Outcome | None:
    expected_text = "each parameter moved to parameter − lr · grad: one SGD step with the given lr"
    found = found_tensors(ctx, PARAM_PATHS)
    if found is None:
        return None
    before = {n: p.double() for n, p in ctx.expected("parameters before").items()}
    moved = {n: found[f"model.{n}"] - before[n] for n in PARAMETERS}
    if all(bool((m == 0).all()) for m in moved.values()):
        return failed(expected_text, "the parameters did not change",
                      "optimizer.step() applies the gradients stored in .grad: create the optimizer on "
                      "model.parameters(), do not clear .grad before stepping, and update the parameters in place.")
    lr = float(ctx.expected("lr"))
    step = {n: -lr * g.double() for n, g in ctx.expected("gradients").items()}
    factor = along(moved, step)
    if factor is None:
        return None
    if abs(factor - round(factor)) < 1e-6 and round(factor) >= 2:
        return failed(expected_text, f"the parameters moved exactly {round(factor)} times one step",
                      "Take one step: call optimizer.step() once, after a single backward pass.")
    if factor < 0:
        return failed(expected_text, "the parameters moved along +grad (uphill)",
                      "Gradient descent subtracts lr · grad from each parameter.")
    return failed(expected_text, f"a step along the gradient with a learning rate of {factor * lr:.6g} "
                  f"instead of {lr:.6g}",
                  "Pass the given `lr` to the optimizer rather than a number: the grader changes it.")


@ASSIGNMENT.check("t5_step", task=5, title="one SGD step with learning rate lr")
def sgd_step(ctx: CheckContext) -> Outcome:
    judged = first_failure(*(ctx.compare(path, what=f"{path[len('model.'):]} after one SGD step",
                                         hint="Create a torch.optim.SGD optimizer for model.parameters() with "
                                              "the given lr, then call its step() once.")
                             for path in PARAM_PATHS))
    return judged if judged.passed else step_diagnosis(ctx) or judged
