"""Grader for computational_graph_intro: leaves, grad_fn, next_functions, backward, accumulation, detach/no_grad.

Everything specific to this assignment lives here: its inputs, the GIVEN code, the
reference results and the checks with their feedback. Points and tolerances live in
config.yaml. Every "how" check judges the graded value's own history as the probe
recorded it: the `.grad` a backward pass filled (and nothing changed since), the very
leaf tensors a pass reached, a graph that reaches the leaves.
"""

from __future__ import annotations

import torch

from torchgrade import evidence as ev
from torchgrade.assignment import Assignment, Given, Number, Tensor
from torchgrade.checks import BACKWARD, CheckContext, Outcome, failed, first_failure, passed

ASSIGNMENT = Assignment(
    name="computational_graph_intro",
    title="Computational graphs, part 1: what autograd records",
    inputs={
        "w": Tensor(example=[1.0, -2.0, 0.5], random_shape=(5,), dtype="float32", low=-2.0, high=2.0,
                    requires_grad=True),
        "b": Tensor(example=0.5, dtype="float32", low=-1.0, high=1.0, requires_grad=True),
        "x": Tensor(example=[2.0, 1.0, -2.0], random_shape=(5,), dtype="float32", low=-2.0, high=2.0),
        "x1": Tensor(example=[1.0, 1.0, 2.0], random_shape=(5,), dtype="float32", low=-2.0, high=2.0),
        "x2": Tensor(example=[0.5, -1.0, 4.0], random_shape=(5,), dtype="float32", low=-2.0, high=2.0),
        "target": Tensor(example=[2.0, -1.0, 0.0], random_shape=(5,), dtype="float32", low=-2.0, high=2.0),
        "lr": Number(example=0.1, low=0.05, high=0.2),
        "p": Tensor(example=[1.0, 2.0], random_shape=(3,), dtype="float32", low=-1.0, high=1.0, requires_grad=True),
        "q": Tensor(example=[0.5, -1.0], random_shape=(3,), dtype="float32", low=-1.0, high=1.0, requires_grad=True),
        "r": Tensor(example=[3.0, 4.0], random_shape=(3,), dtype="float32", low=-1.0, high=1.0),
        "graph": Number(example=0, low=1, high=3, integer=True),  # which expression builds h in task 2
    },
    random_description="other values and sizes for every tensor, another learning rate, and in task 2 "
                       "another graph h",
    hints={
        "shape": "y keeps the shape of the data; a loss is a single number (a 0-dimensional tensor).",
        "dtype": "Compute it from the GIVEN tensors so it inherits their dtype.",
        "only_for_example": "compute everything from the tensors the GIVEN cells define, and walk the graph "
                            "in your code rather than counting it by hand.",
    },
)

# Task 2's graph, per run: the example's (shown in the exercise) and others for random runs. Each random
# graph leaves out p or q, so a list typed in from the example (or "every tensor that requires grad")
# is wrong there, and each uses a leaf twice, so a walk without a "seen" set over-counts.
GRAPHS = {
    0: "(p * q + r).exp().sum() + p.sin().sum()",
    1: "((p + r) ** 2).sum() + (p * r).mean()",
    2: "(q * q * r.exp()).sum()",
    3: "(p.tanh() * r).sum() * (p - r).sum()",
}
NON_SCALAR = "grad can be implicitly created only for scalar outputs"
LEAF_IN_PLACE = "leaf Variable that requires grad is being used in an in-place operation"


def given_graph(drawn) -> str:
    expression = GRAPHS[int(drawn["graph"].as_python())]
    return Given("p", "q", "r", then=f"h = {expression}").code(ASSIGNMENT, drawn)


ASSIGNMENT.task(1, "Build a small graph", snapshot=["w", "b", "x", "y", "loss"], given=Given("w", "b", "x"))
ASSIGNMENT.task(2, "Count the nodes and find the leaves", snapshot=["p", "q", "r", "h", "n_nodes", "graph_leaves"],
                given=given_graph)
ASSIGNMENT.task(3, "Backpropagate the loss", snapshot=["w", "b", "loss", "w.grad", "b.grad", "x.grad"],
                given=Given("w", "b", "x", then="y = w * x + b\nloss = (y ** 2).sum()"))
ASSIGNMENT.task(4, "Two passes, one gradient each",
                snapshot=["w", "b", "loss1", "loss2", "w_grad_1", "w.grad", "b.grad"],
                given=Given("w", "b", "x1", "x2"))
ASSIGNMENT.task(5, "A constant copy with detach()", snapshot=["w", "c", "q", "w.grad"], given=Given("w"))
ASSIGNMENT.task(6, "Update the parameters in place", snapshot=["w", "b", "loss"],
                given=Given("w", "b", "x", "target", "lr"))


# -------------------------------------------------------------------------- reference

def fresh(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().clone().requires_grad_(tensor.requires_grad)


def walk(root) -> tuple[int, int, list]:
    """(distinct nodes, nodes counted once per path, leaf tensors) of the graph below root."""
    seen, leaves, paths, stack = set(), [], 0, [root]
    while stack:
        node = stack.pop()
        if node is None:
            continue
        paths += 1
        if node not in seen and hasattr(node, "variable"):
            leaves.append(node.variable)
        seen.add(node)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return len(seen), paths, leaves


@ASSIGNMENT.references
def reference(inputs) -> dict[int, dict[str, object]]:
    """The same computations as the tasks, by torch in the grader process."""
    w, b, x = fresh(inputs["w"]), fresh(inputs["b"]), inputs["x"]
    y = w * x + b
    loss = (y ** 2).sum()
    loss.backward()
    task1 = {"y": y.detach(), "loss": loss.detach(), "w.grad": w.grad, "b.grad": b.grad,
             "grad of y.sum()": (x, torch.tensor(float(x.numel()), dtype=b.dtype))}

    p, q, r = fresh(inputs["p"]), fresh(inputs["q"]), inputs["r"]
    h = eval(GRAPHS[int(inputs["graph"])], {"__builtins__": {}}, {"p": p, "q": q, "r": r})  # grader-owned text
    n_nodes, n_paths, leaves = walk(h.grad_fn)
    names = tuple(name for name, tensor in (("p", p), ("q", q)) if any(leaf is tensor for leaf in leaves))
    task2 = {"n_nodes": n_nodes, "n_paths": n_paths, "graph_leaves": names, "accumulators": len(leaves)}

    passes = []
    for data in (inputs["x1"], inputs["x2"]):
        w, b = fresh(inputs["w"]), fresh(inputs["b"])
        ((w * data + b) ** 2).sum().backward()
        passes.append((w.grad, b.grad))
    task4 = {"w_grad_1": passes[0][0], "w.grad": passes[1][0], "b.grad": passes[1][1],
             "both passes": (passes[0][0] + passes[1][0], passes[0][1] + passes[1][1])}

    w = fresh(inputs["w"])
    task5 = {"c": w.detach().clone(), "w.grad": w.detach().clone(), "w.grad if tracked": 2 * w.detach()}

    w, b, lr = fresh(inputs["w"]), fresh(inputs["b"]), inputs["lr"]
    ((w * inputs["x"] + b - inputs["target"]) ** 2).mean().backward()
    task6 = {"w": (w - lr * w.grad).detach(), "b": (b - lr * b.grad).detach(),
             "w at the start": inputs["w"].detach(), "b at the start": inputs["b"].detach(),
             "w uphill": (w + lr * w.grad).detach(), "b uphill": (b + lr * b.grad).detach()}
    return {1: task1, 2: task2, 3: task1, 4: task4, 5: task5, 6: task6}


# ---------------------------------------------------------------------- shared helpers

def raised(ctx: CheckContext, text: str):
    return next((c for c in ctx.calls() if c.raised and text in c.raised.message), None)


def error_suffix(ctx: CheckContext) -> str:
    errors = ctx.errors()
    return f" ({errors[0].describe()})" if errors else ""


def close(actual: torch.Tensor, expected: torch.Tensor) -> bool:
    expected = expected.detach().to(torch.float64)
    return actual.shape == expected.shape and torch.allclose(actual, expected, rtol=1e-4, atol=1e-5)


def same_as(expected: torch.Tensor, text: str, hint: str, wanted: str):
    """A diagnose function: the found values equal `expected` (a known wrong answer)."""
    def diagnose(actual, _):
        return failed(wanted, text, hint) if close(actual, expected) else None
    return diagnose


def either(*diagnoses):
    def diagnose(actual, expected):
        return next((d(actual, expected) for d in diagnoses if d(actual, expected) is not None), None)
    return diagnose


def tracked_leaf_problem(value, name: str) -> str:
    """Why a tensor is not a leaf that requires grad ("" when it is one)."""
    if not isinstance(value, ev.TensorValue):
        return f"`{name}` is {value.describe()}"
    if value.grad_fn is not None:
        return (f"`{name}` is now the result of an operation (grad_fn {value.grad_fn}), not a leaf: "
                "the update was recorded in the graph")
    if not value.requires_grad:
        return f"`{name}` no longer requires gradients: it is a new tensor without history"
    return ""


ACCUMULATED = "exactly {n} times the gradient: backward() adds to .grad, so the gradient was accumulated {n} times"


def multiple_of(wanted: str, hint: str):
    def diagnose(actual, expected):
        for n in (2, 3):
            if bool(expected.abs().sum()) and close(actual, n * expected):
                return failed(wanted, ACCUMULATED.format(n=n), hint)
        return None
    return diagnose


def grad_filled(ctx: CheckContext, path: str, *, what: str, hint: str, passes: int | None, source: str) -> Outcome:
    """ctx.grad_filled, saying why a .grad is still None (no pass reached it, or the task stopped)."""
    if isinstance(ctx.value(path), ev.NoneValue):
        return failed(what, f"`{path}` is None: no backward pass reached it" + error_suffix(ctx), hint)
    return ctx.grad_filled(path, passes=passes, source=source, what=what, hint=hint)


# ---------------------------------------------------------------------------- task 1

@ASSIGNMENT.check("t1_values", task=1, title="y and loss have the right values")
def t1_values(ctx: CheckContext) -> Outcome:
    hint = "y = w * x + b works entry by entry (b is added to every entry); loss adds up the squares of y."
    mean = ctx.expected("loss") / ctx.expected("y").numel()
    return first_failure(
        ctx.compare("y", what="w·x + b, entry by entry", hint=hint),
        ctx.compare("loss", what="the sum of the squares of y", hint=hint,
                    diagnose=same_as(mean, "the mean of the squares, not their sum", "Add the squares up: .sum().",
                                     "`loss` = the sum of the squares of y")),
    )


@ASSIGNMENT.check("t1_graph", task=1, title="y and loss are connected to w and b in the graph")
def t1_graph(ctx: CheckContext) -> Outcome:
    hint = ("Compute y from w and b themselves: a tensor typed in with torch.tensor(...) is a new leaf without "
            "history (even with requires_grad=True), and detach() or torch.no_grad() cut the link.")
    return first_failure(ctx.graph_reaches("y", ("w", "b"), hint=hint), ctx.graph_reaches("loss", ("w", "b"), hint=hint))


# ---------------------------------------------------------------------------- task 2

WALK_HINT = ("Start a list of nodes to visit with h.grad_fn; take one at a time, skip None and nodes already in a "
             "`seen` set, add it to `seen`, and queue the first element of each pair in its next_functions.")


@ASSIGNMENT.check("t2_node_count", task=2, title="n_nodes counts each node of h's graph once")
def t2_node_count(ctx: CheckContext) -> Outcome:
    expected = ctx.expected("n_nodes")
    wanted = f"`n_nodes` = the number of distinct nodes reachable from h.grad_fn: {expected}"
    found = ctx.value("n_nodes")
    if not isinstance(found, ev.Number) or not found.integer and found.value != int(found.value):
        shown = found.describe() if not isinstance(found, ev.Missing) else "nothing: " + ctx.why_missing()
        return failed(wanted, shown, "Store a whole number (for example len(seen)) in n_nodes.")
    count = int(found.value)
    if count == expected:
        return passed()
    if count == ctx.expected("n_paths") and count > expected:
        return failed(wanted, f"{count}: nodes reached along several paths were counted once per path",
                      "A tensor used twice is one node reached twice: remember the nodes you visited (a set) "
                      "and skip them the second time.")
    if count == expected - ctx.expected("accumulators"):
        return failed(wanted, f"{count}: the AccumulateGrad nodes were left out",
                      "The AccumulateGrad node of each leaf that requires grad is a node too: count it.")
    if count == expected - 1:
        return failed(wanted, f"{count}, one short", "h.grad_fn is a node of the graph too: count it.")
    return failed(wanted, str(count), WALK_HINT)


def _leaf_problem(ctx: CheckContext, items, expected_names) -> tuple[str, str] | None:
    """(found, hint) for the first thing wrong with the items of graph_leaves, None when they are right."""
    if any(isinstance(item, ev.Other) and item.type_name == "AccumulateGrad" for item in items):
        return ("the list holds AccumulateGrad nodes, not tensors",
                "An AccumulateGrad node stands for a leaf; the leaf tensor itself is the node's `.variable`.")
    if not all(isinstance(item, ev.TensorValue) for item in items):
        kinds = ", ".join(sorted({item.describe() for item in items if not isinstance(item, ev.TensorValue)}))
        return f"the list holds {kinds}", "Put the leaf tensors themselves (node.variable) in the list."
    names = {}
    for name in ("p", "q", "r"):
        tensor = ctx.tensor(name)
        if tensor is not None:
            names[tensor.token] = name
    tokens = [item.token for item in items]
    for token in dict.fromkeys(tokens):
        if tokens.count(token) > 1:
            return (f"`{names.get(token, 'a tensor')}` is listed {tokens.count(token)} times",
                    "A leaf reached along two paths is still one leaf: skip the nodes you have already visited.")
    for token in tokens:
        name = names.get(token)
        if name is None:
            return ("a tensor that is not one of the GIVEN leaves (a copy, or a result?)",
                    "Take each leaf from its node (`node.variable`), unchanged: no .clone(), .detach() or arithmetic.")
        if name == "r":
            return ("`r`, which autograd does not follow",
                    "r does not require gradients, so no node stands for it: where it is used, next_functions "
                    "holds None. List only what you reach by walking.")
        if name not in expected_names:
            return (f"`{name}`, which requires grad but is not used by h",
                    "List only the leaves you reach by walking h's graph, not every tensor that requires grad.")
    missing = [n for n in expected_names if n not in {names.get(t) for t in tokens}]
    if missing:
        return f"the list misses `{missing[0]}`", WALK_HINT
    return None


@ASSIGNMENT.check("t2_leaves", task=2, title="graph_leaves lists the leaf tensors h's graph reaches")
def t2_leaves(ctx: CheckContext) -> Outcome:
    expected_names = ctx.expected("graph_leaves")
    wanted = ("`graph_leaves` = a list of the leaf tensors the graph reaches, each once (here "
              + " and ".join(f"`{n}`" for n in expected_names) + ")")
    found = ctx.value("graph_leaves")
    if not isinstance(found, ev.Sequence):
        shown = found.describe() if not isinstance(found, ev.Missing) else "nothing: " + ctx.why_missing()
        return failed(wanted, shown, "Make graph_leaves a list and append each leaf tensor you reach.")
    if found.length > len(found.items):
        return failed(wanted, f"{found.describe()}, more than the graph has nodes", WALK_HINT)
    problem = _leaf_problem(ctx, found.items, expected_names)
    return failed(wanted, *problem) if problem else passed()


# ---------------------------------------------------------------------------- task 3

@ASSIGNMENT.check("t3_grad_values", task=3, title="w.grad and b.grad hold dloss/dw and dloss/db")
def t3_grad_values(ctx: CheckContext) -> Outcome:
    hint = "One backward pass from loss leaves dloss/dw = 2·y·x in w.grad and dloss/db = 2·Σy in b.grad."
    if isinstance(ctx.value("w.grad"), ev.NoneValue):
        crash = raised(ctx, NON_SCALAR)
        found = (f"None: your backward() call raised “{crash.raised.message}”" if crash
                 else "None: no backward pass reached w" + error_suffix(ctx))
        return failed("`w.grad` = dloss/dw, filled by a backward pass", found, hint)
    outcomes = []
    for name, grad_of_y_sum in zip(("w", "b"), ctx.expected("grad of y.sum()")):
        wanted = f"`{name}.grad` = dloss/d{name}, from one backward pass"
        outcomes.append(ctx.compare(f"{name}.grad", what=f"dloss/d{name}", hint=hint, diagnose=either(
            multiple_of(wanted, "Call backward() once: every pass adds to .grad."),
            same_as(grad_of_y_sum, "the gradient of y.sum(), not of loss", "Backpropagate loss itself.", wanted))))
    return first_failure(*outcomes)


@ASSIGNMENT.check("t3_backward", task=3, title="backward() on the scalar loss filled w.grad and b.grad")
def t3_backward(ctx: CheckContext) -> Outcome:
    hint = "Call backward() on the scalar loss and let autograd fill .grad; do not assign .grad yourself."
    crash = raised(ctx, NON_SCALAR)
    if crash and not isinstance(ctx.tensor("w.grad"), ev.TensorValue):
        return failed("a backward pass from the scalar loss", f"backward() raised “{crash.raised.message}”",
                      "backward() without arguments needs a single number: call it on loss, not on y.")
    what = "`{}` filled by backward passes from the scalar `loss`, and not changed since"
    return first_failure(*(grad_filled(ctx, path, passes=None, source="loss", what=what.format(path), hint=hint)
                           for path in ("w.grad", "b.grad")))


# ---------------------------------------------------------------------------- task 4

@ASSIGNMENT.check("t4_saved_copy", task=4, title="w_grad_1 keeps the gradient of the first pass")
def t4_saved_copy(ctx: CheckContext) -> Outcome:
    hint = "After the first backward pass, save a copy of w.grad (clone()) before resetting it."
    saved, grad = ctx.tensor("w_grad_1"), ctx.tensor("w.grad")
    if saved is not None and grad is not None and saved.token == grad.token:
        return failed("`w_grad_1` = dloss1/dw, kept in a tensor of its own",
                      "`w_grad_1` is w.grad itself, so zero_() and the second pass changed it in place",
                      "`w_grad_1 = w.grad` copies nothing: save w.grad.clone() instead.")
    return ctx.compare("w_grad_1", what="dloss1/dw", hint=hint)


def _reset_hint(ctx: CheckContext, path: str) -> str:
    tensor = ctx.tensor(path)
    origin = tensor.origin if tensor is not None else None
    if origin is not None and origin.modified:
        return ("Taking the old gradient away by hand is not a reset: reset .grad before the second pass "
                "(.zero_() or = None), so that the pass alone fills it.")
    return "Reset the gradients between the passes: w.grad.zero_() (or w.grad = None), and the same for b."


@ASSIGNMENT.check("t4_grad_values", task=4, title="w.grad and b.grad hold the gradients of loss2 alone")
def t4_grad_values(ctx: CheckContext) -> Outcome:
    text = "the sum of the gradients of loss1 and loss2: the second pass added to the first"
    hint = "Reset the gradients between the passes (.zero_() or = None)."
    outcomes = []
    for name, both in zip(("w", "b"), ctx.expected("both passes")):
        path, wanted = f"{name}.grad", f"`{name}.grad` = dloss2/d{name} alone"
        if isinstance(ctx.value(path), ev.NoneValue):
            outcomes.append(failed(wanted, f"`{path}` is None: no backward pass reached it" + error_suffix(ctx), hint))
            continue
        outcomes.append(ctx.compare(path, what=f"dloss2/d{name}", hint=hint, diagnose=same_as(both, text, hint, wanted)))
    return first_failure(*outcomes)


@ASSIGNMENT.check("t4_reset", task=4, title="the gradients were reset, then filled by the pass on loss2 alone")
def t4_reset(ctx: CheckContext) -> Outcome:
    what = "`{}` filled by exactly one backward pass, from loss2, after a reset, and not changed since"
    return first_failure(*(
        grad_filled(ctx, path, passes=1, source="loss2", what=what.format(path), hint=_reset_hint(ctx, path))
        for path in ("w.grad", "b.grad")))


# ---------------------------------------------------------------------------- task 5

@ASSIGNMENT.check("t5_constant", task=5, title="c is w's data without history (detach())")
def t5_constant(ctx: CheckContext) -> Outcome:
    wanted = "`c` = w.detach(): w's values, with no grad_fn and requires_grad=False"
    hint = "detach() returns w's data with no history; clone() copies the data but keeps the history."
    c, w = ctx.tensor("c"), ctx.tensor("w")
    if c is None:
        return failed(wanted, ctx.value("c").describe() if not isinstance(ctx.value("c"), ev.Missing)
                      else "nothing: " + ctx.why_missing(), hint)
    if w is not None and c.token == w.token:
        return failed(wanted, "`c` is w itself, so autograd still follows it", hint)
    if c.grad_fn is not None or c.requires_grad:
        return failed(wanted, f"`c` still has a history (grad_fn {c.grad_fn})" if c.grad_fn else
                      "`c` requires gradients, so autograd follows it", hint)
    return ctx.compare("c", what="w's values", hint="Make c from w itself, not from numbers typed in.")


@ASSIGNMENT.check("t5_grad_value", task=5, title="w.grad treats c as a constant")
def t5_grad_value(ctx: CheckContext) -> Outcome:
    hint = "With c detached, q = Σ w·c is linear in w: its gradient is c."
    wanted = "`w.grad` = dq/dw with c held constant (c itself)"
    if isinstance(ctx.value("w.grad"), ev.NoneValue):
        return failed(wanted, "`w.grad` is None: no backward pass reached w" + error_suffix(ctx), hint)
    return ctx.compare("w.grad", what="dq/dw with c held constant (c itself)", hint=hint, diagnose=same_as(
        ctx.expected("w.grad if tracked"), "2·w: the gradient flowed through both factors, so c was still tracked",
        "Detach c from the graph, so that only the first factor is differentiated.", wanted))


@ASSIGNMENT.check("t5_backward", task=5, title="backward() on q filled w.grad")
def t5_backward(ctx: CheckContext) -> Outcome:
    return grad_filled(ctx, "w.grad", passes=None, source="q",
                       what="`w.grad` filled by a backward pass from the scalar `q`, and not changed since",
                       hint="Backpropagate q with backward() and let autograd fill w.grad; do not assign it.")


# ---------------------------------------------------------------------------- task 6

@ASSIGNMENT.check("t6_step_values", task=6, title="w and b moved one step against their gradients")
def t6_step_values(ctx: CheckContext) -> Outcome:
    hint = "The step is w − lr·w.grad (and the same for b), after backpropagating loss."
    refused = any(LEAF_IN_PLACE in e.value for e in ctx.errors())
    not_moved_hint = ("Autograd refuses to change a leaf that requires grad in place while it records: do the "
                      "update inside `with torch.no_grad():`." if refused else hint)
    outcomes = []
    for name in ("w", "b"):
        wanted = f"`{name}` = {name} − lr·dloss/d{name}, one step against the gradient"
        not_moved = "the starting values: no update happened" + error_suffix(ctx)
        outcomes.append(ctx.compare(name, what=f"{name} − lr·dloss/d{name}", hint=hint, diagnose=either(
            same_as(ctx.expected(f"{name} at the start"), not_moved, not_moved_hint, wanted),
            same_as(ctx.expected(f"{name} uphill"), "a step along the gradient (uphill), not against it",
                    "Subtract lr times the gradient.", wanted))))
    return first_failure(*outcomes)


@ASSIGNMENT.check("t6_in_place", task=6, title="w and b were updated in place and are still the same leaves")
def t6_in_place(ctx: CheckContext) -> Outcome:
    hint = ("Update inside `with torch.no_grad():` and change the tensors in place (`w -= ...`), so that w and b "
            "stay the leaves the backward pass reached, still requiring gradients.")
    passes = [c for c in ctx.calls() if c.api in BACKWARD and c.succeeded]
    for name in ("w", "b"):
        wanted = f"`{name}` changed in place: the same leaf tensor the backward pass of loss reached, still requiring grad"
        value = ctx.value(name)
        problem = tracked_leaf_problem(value, name)
        if problem:
            return failed(wanted, problem, hint)
        if not any(value.token in c.leaf_tokens for c in passes):
            found = ("no backward pass ran in task 6" + error_suffix(ctx) if not passes else
                     f"`{name}` is a new tensor, not the one the backward pass filled: anything holding the old "
                     f"{name} (an optimizer, a model) would never see the update")
            return failed(wanted, found, hint)
        if value.values is None:
            return failed(wanted, f"`{name}` is a tensor whose values could not be read", hint)
        if close(value.as_torch().double(), ctx.expected(f"{name} at the start")):
            found = f"`{name}` still holds its starting values" + error_suffix(ctx)
            refused = any(LEAF_IN_PLACE in e.value for e in ctx.errors())
            return failed(wanted, found, "Autograd refuses to change a leaf that requires grad in place while it "
                          "records: switch recording off for the update with torch.no_grad()." if refused else hint)
    return passed()
