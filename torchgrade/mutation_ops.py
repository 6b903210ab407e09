"""Autograd-aware mutation operators: each finds sites in one task cell's code and rewrites one (``ast``).

An operator is ``function(tree, facts) -> [(description, mutated tree)]``; the caller
makes one mutant notebook per result. ``facts`` holds what evaluating the solution
found at the end of the cell (values of the names it assigns, the leaves' gradients,
and formulas that reproduce them), for the operators that type values or formulas in.
Nothing here knows an assignment: sites are recognised by the autograd API they call.
"""

from __future__ import annotations

import ast
import copy
import itertools
import math
from dataclasses import dataclass, field

import torch

DERIVATIVE_CALLS = {"grad", "jacobian", "hessian", "vjp", "jvp", "hvp", "jacrev", "jacfwd", "grad_and_value"}


@dataclass
class CellFacts:
    """What the solution computed, at the end of one task cell (from an in-process evaluation)."""

    values: dict[str, torch.Tensor] = field(default_factory=dict)  # names the cell assigns -> their tensor
    grads: dict[str, torch.Tensor] = field(default_factory=dict)  # leaf name -> its .grad
    untracked: set[str] = field(default_factory=set)  # assigned names whose value has no graph (nothing to cut)
    formulas: dict[str, str] = field(default_factory=dict)  # name or "leaf.grad" -> a hand-typed formula


# ----------------------------------------------------------------------------- recognising sites

def _name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def is_backward(call: ast.AST) -> bool:
    return isinstance(call, ast.Call) and _name(call.func) == "backward"


def is_derivative(call: ast.AST) -> bool:
    """torch.autograd.grad / torch.func.* / torch.autograd.functional.* (by the attribute called)."""
    return isinstance(call, ast.Call) and _name(call.func) in DERIVATIVE_CALLS and isinstance(call.func, ast.Attribute)


def autograd_calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if is_backward(n) or is_derivative(n)]


def is_print(statement: ast.stmt) -> bool:
    return (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)
            and _name(statement.value.func) in ("print", "display"))


def _targets(statement: ast.stmt) -> list[str]:
    """Names an assignment binds (`a = ...`, `a, b = ...`), else []."""
    if not isinstance(statement, ast.Assign) or len(statement.targets) != 1:
        return []
    target = statement.targets[0]
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple) and all(isinstance(e, ast.Name) for e in target.elts):
        return [e.id for e in target.elts]
    return []


def _each(tree: ast.Module, predicate):
    """(index of the node among the matches, copy of the tree, the node in the copy) for every match."""
    count = sum(1 for node in ast.walk(tree) if predicate(node))
    for index in range(count):
        clone = copy.deepcopy(tree)
        node = [n for n in ast.walk(clone) if predicate(n)][index]
        yield index, clone, node


def _line(node: ast.AST) -> str:
    return f"line {getattr(node, 'lineno', '?')}"


# ----------------------------------------------------------------------------- operators

def graph_flags(tree: ast.Module, facts: CellFacts):
    """Drop or flip create_graph / retain_graph; add retain_graph=True where a call leaves it at its default."""
    out = []
    for flag in ("create_graph", "retain_graph"):
        for _, clone, call in _each(tree, lambda n: is_backward(n) or is_derivative(n)):
            keyword = next((k for k in call.keywords if k.arg == flag), None)
            if keyword is None:
                if flag == "retain_graph":  # a needless retain_graph is a mistake worth catching; create_graph
                    call.keywords.append(ast.keyword(flag, ast.Constant(True)))  # added is harmless
                    out.append((f"{flag}=True added ({_line(call)})", clone))
                continue
            call.keywords.remove(keyword)
            out.append((f"{flag} dropped ({_line(call)})", copy.deepcopy(clone)))
            flipped = isinstance(keyword.value, ast.Constant) and keyword.value.value is True
            call.keywords.append(ast.keyword(flag, ast.Constant(not flipped)))
            out.append((f"{flag}={not flipped} ({_line(call)})", clone))
    return out


def nonscalar_backward(tree: ast.Module, facts: CellFacts):
    """`.sum().backward()` -> `.backward()`; a backward's `gradient` / autograd.grad's `grad_outputs` dropped."""
    out = []
    for _, clone, call in _each(tree, is_backward):
        receiver = call.func.value if isinstance(call.func, ast.Attribute) else None
        if isinstance(receiver, ast.Call) and _name(receiver.func) in ("sum", "mean") and isinstance(receiver.func, ast.Attribute):
            call.func.value = receiver.func.value
            out.append((f".{_name(receiver.func)}().backward() -> .backward() ({_line(call)})", clone))
        elif call.args or any(k.arg == "gradient" for k in call.keywords):
            call.args, call.keywords = [], [k for k in call.keywords if k.arg != "gradient"]
            out.append((f"backward's gradient dropped ({_line(call)})", clone))
    for _, clone, call in _each(tree, is_derivative):
        if len(call.args) >= 3 or any(k.arg == "grad_outputs" for k in call.keywords):
            call.args, call.keywords = call.args[:2], [k for k in call.keywords if k.arg != "grad_outputs"]
            out.append((f"grad_outputs dropped ({_line(call)})", clone))
    return out


def repeated_backward(tree: ast.Module, facts: CellFacts):
    """A backward pass run twice, the first time keeping the graph, so the gradients accumulate."""
    out = []
    for index, statement in enumerate(tree.body):
        if isinstance(statement, ast.Expr) and is_backward(statement.value):
            clone = copy.deepcopy(tree)
            first = copy.deepcopy(statement)
            first.value.keywords = [k for k in first.value.keywords if k.arg != "retain_graph"]
            first.value.keywords.append(ast.keyword("retain_graph", ast.Constant(True)))
            clone.body.insert(index, first)
            out.append((f"backward pass repeated ({_line(statement)})", clone))
    return out


def grad_to_backward(tree: ast.Module, facts: CellFacts):
    """`t = torch.autograd.grad(out, x, g, ...)[0]` -> `out.backward(g, ...)` and `t = x.grad`."""
    out = []
    for index, statement in enumerate(tree.body):
        names = _targets(statement)
        value = getattr(statement, "value", None)
        single = isinstance(value, ast.Subscript) and is_derivative(value.value) and _name(value.value.func) == "grad"
        call = value.value if single else value if is_derivative(value) and _name(value.func) == "grad" else None
        if call is None or not names or len(call.args) < 2:
            continue
        inputs = call.args[1].elts if isinstance(call.args[1], ast.Tuple) else [call.args[1]]
        if len(names) != (1 if single else len(inputs)):
            continue
        gradient = call.args[2:3] or [k.value for k in call.keywords if k.arg == "grad_outputs"]
        flags = [k for k in call.keywords if k.arg in ("create_graph", "retain_graph")]
        backward = ast.Expr(ast.Call(ast.Attribute(call.args[0], "backward", ast.Load()), gradient, flags))
        grads = [ast.Attribute(copy.deepcopy(i), "grad", ast.Load()) for i in inputs[: len(names)]]
        assign = ast.Assign([copy.deepcopy(statement.targets[0])], grads[0] if len(grads) == 1 else ast.Tuple(grads, ast.Load()))
        clone = copy.deepcopy(tree)
        clone.body[index: index + 1] = [backward, assign]
        out.append((f"torch.autograd.grad replaced by backward() and .grad ({_line(statement)})", clone))
    return out


def _replace_derivatives(tree: ast.Module, facts: CellFacts, kind: str):
    """Every derivative the cell computes typed in: as a formula of the inputs, or as the example run's values."""
    out = []
    for index, statement in enumerate(tree.body):
        names = _targets(statement)
        if not names or not autograd_calls(statement) or not all(n in facts.values for n in names):
            continue
        texts = [_typed(name, facts.values[name], facts.formulas.get(name), kind) for name in names]
        if None in texts:
            continue
        clone = copy.deepcopy(tree)
        clone.body[index] = ast.parse(f"{', '.join(names)} = {', '.join(texts)}").body[0]
        out.append((f"{', '.join(names)} typed in as {kind} ({_line(statement)})", clone))
    backward_at = [i for i, s in enumerate(tree.body) if isinstance(s, ast.Expr) and is_backward(s.value)]
    if backward_at and facts.grads:
        texts = {leaf: _typed(leaf + ".grad", grad, facts.formulas.get(leaf + ".grad"), kind)
                 for leaf, grad in facts.grads.items()}
        if None not in texts.values():
            clone = copy.deepcopy(tree)
            lines = "\n".join(f"{leaf}.grad = {text}" for leaf, text in texts.items())
            clone.body[backward_at[0]: backward_at[0] + 1] = ast.parse(lines).body
            for later in reversed(backward_at[1:]):
                clone.body[later + len(texts) - 1] = ast.Pass()
            out.append((f".grad typed in as {kind} instead of backward() ({_line(tree.body[backward_at[0]])})", clone))
    return out


def _typed(name: str, value: torch.Tensor, formula: str | None, kind: str) -> str | None:
    if kind == "formula":
        return formula
    return f"torch.tensor({value.detach().tolist()!r}, dtype={value.dtype})"


def derivative_as_formula(tree, facts):
    return _replace_derivatives(tree, facts, "formula")


def derivative_as_values(tree, facts):
    return _replace_derivatives(tree, facts, "values")


SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.Div: ast.Mult, ast.MatMult: ast.Mult}


def changed_operator(tree: ast.Module, facts: CellFacts):
    """An exponent raised by one, or an arithmetic operator swapped."""
    out = []
    for _, clone, node in _each(tree, lambda n: isinstance(n, ast.BinOp)):
        if isinstance(node.op, ast.Pow) and isinstance(node.right, ast.Constant) and isinstance(node.right.value, (int, float)):
            node.right = ast.Constant(node.right.value + 1)
            out.append((f"exponent {node.right.value - 1} -> {node.right.value} ({_line(node)})", clone))
        elif type(node.op) in SWAPS or isinstance(node.op, ast.Pow):
            old = type(node.op).__name__
            node.op = SWAPS.get(type(node.op), ast.Mult)()
            out.append((f"{old} -> {type(node.op).__name__} ({_line(node)})", clone))
    return out


def deleted_statement(tree: ast.Module, facts: CellFacts):
    out = []
    for index, statement in enumerate(tree.body):
        if is_print(statement):
            continue
        clone = copy.deepcopy(tree)
        clone.body[index] = ast.Pass()
        out.append((f"statement deleted ({_line(statement)})", clone))
    return out


def graph_cut(tree: ast.Module, facts: CellFacts):
    """`.detach()` appended to an assigned value, or a statement run under `torch.no_grad()`."""
    out = []
    for index, statement in enumerate(tree.body):
        if _targets(statement) and set(_targets(statement)) <= facts.untracked:
            continue  # e.g. `ones = torch.ones_like(f)`: detaching a value with no graph changes nothing
        if len(_targets(statement)) == 1 and not isinstance(statement.value, ast.Constant):
            clone = copy.deepcopy(tree)
            value = clone.body[index].value
            clone.body[index].value = ast.Call(ast.Attribute(value, "detach", ast.Load()), [], [])
            out.append((f".detach() inserted ({_line(statement)})", clone))
        if _targets(statement) or (isinstance(statement, ast.Expr) and is_backward(statement.value)):
            clone = copy.deepcopy(tree)
            no_grad = ast.parse("torch.no_grad()", mode="eval").body
            clone.body[index] = ast.With([ast.withitem(no_grad)], [clone.body[index]])
            out.append((f"torch.no_grad() inserted ({_line(statement)})", clone))
    return out


OPERATORS = {
    "graph_flags": graph_flags,
    "nonscalar_backward": nonscalar_backward,
    "repeated_backward": repeated_backward,
    "grad_to_backward": grad_to_backward,
    "derivative_formula": derivative_as_formula,
    "derivative_values": derivative_as_values,
    "operator": changed_operator,
    "deleted_statement": deleted_statement,
    "graph_cut": graph_cut,
}


# ----------------------------------------------------------------------------- formulas by evaluation

COEFFICIENTS = (1, 2, 3, 4, 6)
EXPONENTS = range(4)


def find_formula(target: torch.Tensor, leaves: dict[str, torch.Tensor], detached: bool = False) -> str | None:
    """A polynomial in the leaves (a constant, a monomial or a sum of two) that reproduces `target`."""
    if target.dtype not in (torch.float32, torch.float64):
        return None
    names = sorted(n for n, leaf in leaves.items() if leaf.shape == target.shape)[:2]  # entry-wise formulas only
    if not names:
        return None
    first = names[0]
    ref = (f"{first}.detach()" if detached else first)
    expected = target.detach().double()
    values = {n: leaves[n].detach().double() for n in names}
    for constant in (0,) + COEFFICIENTS:
        if torch.allclose(expected, torch.full_like(expected, constant)):
            return f"torch.zeros_like({ref})" if constant == 0 else f"torch.full_like({ref}, {constant})"
    terms = []
    for powers in itertools.product(EXPONENTS, repeat=len(names)):
        if not any(powers):
            continue
        for c in COEFFICIENTS:
            value = c * math.prod((values[n] ** p for n, p in zip(names, powers)), start=torch.ones_like(expected))
            terms.append((_monomial(c, names, powers, detached), value))
    for text, value in terms:
        if torch.allclose(expected, value, rtol=1e-5, atol=1e-6):
            return text
    for (text_a, a), (text_b, b) in itertools.combinations(terms, 2):
        if torch.allclose(expected, a + b, rtol=1e-5, atol=1e-6):
            return f"{text_a} + {text_b}"
    return None


def _monomial(coefficient: int, names: list[str], powers: tuple[int, ...], detached: bool) -> str:
    parts = [] if coefficient == 1 else [str(coefficient)]
    for name, power in zip(names, powers):
        ref = f"{name}.detach()" if detached else name
        if power == 1:
            parts.append(ref)
        elif power > 1:
            parts.append(f"{ref}**{power}")
    return " * ".join(parts)
