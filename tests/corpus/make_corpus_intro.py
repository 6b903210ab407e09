"""Regenerate the grading corpus for the computational_graph_intro assignment.

Every notebook is derived from solutions/computational_graph_intro.ipynb (one file
from the exercise), so a change to the solution flows into the corpus by re-running:

    python tests/corpus/make_corpus_intro.py           # rewrite tests/corpus/computational_graph_intro/
    python tests/corpus/make_corpus_intro.py --check   # exit 1 if any file is stale or unexpected

Variants are registered with @variant(file, kind, description, failing_checks) as in
make_corpus.py (whose notebook helpers this script reuses): "correct" earns full
marks, "mistake" is the solution with ONE change and loses exactly failing_checks.
The cheats of issue 8 (a `.grad` typed in from the formula while a throw-away
backward pass runs elsewhere, a hand-made update, a subtraction in place of a
reset) are mistakes like any other: they keep their value points and lose the
"how" check that judges the graded value's own history.
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_corpus import as_json, code, edit, markdown, render, stdout, sync, task_cell, yaml_str  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
NAME = "computational_graph_intro"
SOLUTION = REPO / "solutions" / f"{NAME}.ipynb"
EXERCISE = REPO / "exercises" / f"{NAME}.ipynb"
OUT = Path(__file__).resolve().parent / NAME

ALL_CHECKS = [
    "t1_values", "t1_graph",
    "t2_node_count", "t2_leaves",
    "t3_grad_values", "t3_backward",
    "t4_saved_copy", "t4_grad_values", "t4_reset",
    "t5_constant", "t5_grad_value", "t5_backward",
    "t6_step_values", "t6_in_place",
]
KINDS = ("correct", "mistake")
VARIANTS: dict[str, dict] = {}


def variant(file, kind, description, failing_checks=()):
    assert kind in KINDS, kind
    unknown = set(failing_checks) - set(ALL_CHECKS)
    assert not unknown, f"{file}: unknown checks {unknown}"
    assert (kind == "correct") == (not failing_checks), file

    def register(build):
        VARIANTS[file] = dict(kind=kind, description=description, failing_checks=list(failing_checks), build=build)
        return build

    return register


# The solution's task code that several variants rewrite.
T2_WALK = """seen = set()
graph_leaves = []
to_visit = [h.grad_fn]
while to_visit:
    node = to_visit.pop()
    if node is None or node in seen:
        continue
    seen.add(node)
    if hasattr(node, "variable"):  # an AccumulateGrad node: the end of a path, at a leaf
        graph_leaves.append(node.variable)
    to_visit.extend(next_node for next_node, _ in node.next_functions)
n_nodes = len(seen)"""
T4_RESET = """w.grad.zero_()
b.grad.zero_()
"""
T6_UPDATE = """with torch.no_grad():
    w -= lr * w.grad
    b -= lr * b.grad"""


# ---------------------------------------------------------------- correct answers


@variant("correct_solution.ipynb", "correct", "The reference solution, unchanged.")
def correct_solution(nb, exercise):
    return nb


@variant("correct_functional_style.ipynb", "correct",
         "Task 1 with torch.mul/torch.add/.pow/torch.sum; task 3 with torch.autograd.backward(loss).")
def correct_functional_style(nb, exercise):
    edit(nb, 1, "y = w * x + b\nloss = (y ** 2).sum()", "y = torch.add(torch.mul(w, x), b)\nloss = torch.sum(y.pow(2))")
    return edit(nb, 3, "loss.backward()", "torch.autograd.backward(loss)")


@variant("correct_recursive_walk.ipynb", "correct",
         "Task 2 walks the graph with a recursive function and a dict of leaves keyed by id.")
def correct_recursive_walk(nb, exercise):
    return edit(nb, 2, T2_WALK, """def visit(node, seen, leaves):
    if node is None or node in seen:
        return
    seen.add(node)
    if type(node).__name__ == "AccumulateGrad":
        leaves[id(node.variable)] = node.variable
    for next_node, _ in node.next_functions:
        visit(next_node, seen, leaves)

nodes, leaves = set(), {}
visit(h.grad_fn, nodes, leaves)
n_nodes = len(nodes)
graph_leaves = list(leaves.values())""")


@variant("correct_reset_none.ipynb", "correct",
         "Task 4 resets with `w.grad = None` and keeps the first gradient without clone(): "
         "the old tensor is dropped, not zeroed, so w_grad_1 keeps its values.")
def correct_reset_none(nb, exercise):
    edit(nb, 4, "w_grad_1 = w.grad.clone()", "w_grad_1 = w.grad")
    return edit(nb, 4, T4_RESET, "w.grad = None\nb.grad = None\n")


@variant("correct_dot_detach.ipynb", "correct", "Task 5 computes q with torch.dot(w, c).")
def correct_dot_detach(nb, exercise):
    return edit(nb, 5, "q = (w * c).sum()", "q = torch.dot(w, c)")


@variant("correct_optimizer_step.ipynb", "correct",
         "Task 6 updates w and b with torch.optim.SGD([w, b], lr=lr).step(): in place, leaves kept.")
def correct_optimizer_step(nb, exercise):
    return edit(nb, 6, T6_UPDATE, "optimizer = torch.optim.SGD([w, b], lr=lr)\noptimizer.step()")


@variant("correct_sub_inplace.ipynb", "correct",
         "Task 6 updates with w.sub_(lr * w.grad) inside torch.no_grad(), then drops the gradients "
         "(w.grad = None, ready for the next step): task 6 judges w and b, not their .grad.")
def correct_sub_inplace(nb, exercise):
    return edit(nb, 6, T6_UPDATE, """with torch.no_grad():
    w.sub_(lr * w.grad)
    b.sub_(lr * b.grad)
w.grad = None  # ready for the next step
b.grad = None""")


@variant("correct_colab_v40.ipynb", "correct",
         "The solution as Colab saves it: nbformat 4.0, no cell ids, metadata {'id': ...} per cell, execution counts.")
def correct_colab_v40(nb, exercise):
    rng = random.Random(41)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    document = as_json(nb)
    document["nbformat_minor"] = 0
    document["metadata"] = {"colab": {"provenance": []},
                            "kernelspec": {"display_name": "Python 3", "name": "python3"},
                            "language_info": {"name": "python"}}
    for count, cell in enumerate(document["cells"], start=1):
        del cell["id"]
        cell["metadata"] = {"id": "".join(rng.choice(alphabet) for _ in range(12))}
        if cell["cell_type"] == "code":
            cell["execution_count"] = count
    return document


@variant("correct_extra_cells.ipynb", "correct",
         "A messy but correct submission: !pip line, GIVEN cell edited to other numbers, a scratch cell printing "
         "grad_fn/next_functions/is_leaf, task 4 spread over three cells with markdown between them.")
def correct_extra_cells(nb, exercise):
    given = next(c for c in nb.cells if c.get("id") == "given-1")
    given.source = given.source.replace("[1.0, -2.0, 0.5]", "[3.0, 3.0, 3.0]")
    position = nb.cells.index(task_cell(nb, 1)) + 1
    nb.cells.insert(position, code("print(y.grad_fn, y.grad_fn.next_functions)\nprint(w.is_leaf, y.is_leaf, "
                                   "x.requires_grad)", "my-scratch-1",
                                   outputs=[stdout("<AddBackward0 object at 0x7f00>\nTrue False False\n")],
                                   execution_count=4))
    nb.cells.insert(1, code("!pip install torch\nimport torch", "my-setup"))
    cell = task_cell(nb, 4)
    first, rest = cell.source.split("w.grad.zero_()", 1)
    cell.source = first.rstrip() + "\nprint(w_grad_1)"
    position = nb.cells.index(cell) + 1
    nb.cells[position:position] = [
        markdown("Now reset before the second pass:", "my-note-4"),
        code("w.grad.zero_()" + rest.split("loss2", 1)[0].rstrip(), "my-task-4b"),
        code("loss2" + rest.split("loss2", 1)[1], "my-task-4c"),
    ]
    for cell in nb.cells:  # a student's copy has no solution markers
        cell.source = "\n".join(line for line in cell.source.split("\n") if "SOLUTION" not in line)
    return nb


# ---------------------------------------------------------------- mistakes (solution with one change)


@variant("t1_mean_not_sum.ipynb", "mistake", "Task 1 averages instead of summing: loss = (y ** 2).mean().",
         ["t1_values"])
def t1_mean_not_sum(nb, exercise):
    return edit(nb, 1, "loss = (y ** 2).sum()", "loss = (y ** 2).mean()")


@variant("t1_w_detached.ipynb", "mistake",
         "Task 1 builds y from w.detach(): right values, but loss's graph no longer reaches w.", ["t1_graph"])
def t1_w_detached(nb, exercise):
    return edit(nb, 1, "y = w * x + b", "y = w.detach() * x + b")


@variant("t1_hardcoded.ipynb", "mistake",
         "Task 1 types in the example's y and loss as new tensors: wrong for other inputs, and no graph.",
         ["t1_values", "t1_graph"])
def t1_hardcoded(nb, exercise):
    return edit(nb, 1, "y = w * x + b\nloss = (y ** 2).sum()",
                "y = torch.tensor([2.5, -1.5, -0.5], requires_grad=True)\nloss = torch.tensor(8.75, requires_grad=True)")


@variant("t2_no_seen_set.ipynb", "mistake",
         "Task 2 walks without remembering visited nodes: a shared node is counted twice and its leaf listed twice.",
         ["t2_node_count", "t2_leaves"])
def t2_no_seen_set(nb, exercise):
    return edit(nb, 2, T2_WALK, """count = 0
graph_leaves = []
to_visit = [h.grad_fn]
while to_visit:
    node = to_visit.pop()
    if node is None:
        continue
    count += 1
    if hasattr(node, "variable"):
        graph_leaves.append(node.variable)
    to_visit.extend(next_node for next_node, _ in node.next_functions)
n_nodes = count""")


@variant("t2_nodes_not_tensors.ipynb", "mistake",
         "Task 2 lists the AccumulateGrad nodes themselves instead of their .variable tensors.", ["t2_leaves"])
def t2_nodes_not_tensors(nb, exercise):
    return edit(nb, 2, "graph_leaves.append(node.variable)", "graph_leaves.append(node)")


@variant("t2_hardcoded.ipynb", "mistake",
         "Task 2 types in the example's answers (n_nodes = 9, graph_leaves = [p, q]): another graph is graded too.",
         ["t2_node_count", "t2_leaves"])
def t2_hardcoded(nb, exercise):
    return edit(nb, 2, T2_WALK, "n_nodes = 9\ngraph_leaves = [p, q]")


@variant("t3_backward_nonscalar.ipynb", "mistake",
         "Task 3 calls y.backward() on the vector y: 'grad can be implicitly created only for scalar outputs'.",
         ["t3_grad_values", "t3_backward"])
def t3_backward_nonscalar(nb, exercise):
    return edit(nb, 3, "loss.backward()", "y.backward()")


@variant("t3_backward_twice.ipynb", "mistake",
         "Task 3 backpropagates the loss twice (retain_graph=True the first time): the gradients are doubled.",
         ["t3_grad_values"])
def t3_backward_twice(nb, exercise):
    return edit(nb, 3, "loss.backward()", "loss.backward(retain_graph=True)\nloss.backward()")


@variant("t3_grad_by_hand.ipynb", "mistake",
         "Cheat: task 3 runs a throw-away backward pass on another scalar, then types in the formulas "
         "(w.grad = 2*y*x, b.grad = 2*sum(y)): values right, but the graded .grad did not come from the pass.",
         ["t3_backward"])
def t3_grad_by_hand(nb, exercise):
    return edit(nb, 3, "loss.backward()", """(w.sum() + b).backward()  # some backward pass
w.grad = 2 * y.detach() * x
b.grad = 2 * y.detach().sum()""")


@variant("t4_no_reset.ipynb", "mistake",
         "Task 4 forgets to reset between the passes: w.grad and b.grad hold the sum of both gradients.",
         ["t4_grad_values", "t4_reset"])
def t4_no_reset(nb, exercise):
    return edit(nb, 4, T4_RESET, "")


@variant("t4_alias_no_clone.ipynb", "mistake",
         "Task 4 keeps w_grad_1 = w.grad without a copy, then zero_() and the second pass change it in place.",
         ["t4_saved_copy"])
def t4_alias_no_clone(nb, exercise):
    return edit(nb, 4, "w_grad_1 = w.grad.clone()", "w_grad_1 = w.grad")


@variant("t4_subtract_old_grad.ipynb", "mistake",
         "Cheat: task 4 does not reset, then subtracts the first pass's gradients by hand: values right, but the "
         ".grad was edited after the passes instead of being filled by the second pass alone.",
         ["t4_reset"])
def t4_subtract_old_grad(nb, exercise):
    edit(nb, 4, "w_grad_1 = w.grad.clone()", "w_grad_1 = w.grad.clone()\nb_grad_1 = b.grad.clone()")
    edit(nb, 4, T4_RESET, "")
    return edit(nb, 4, "loss2.backward()", "loss2.backward()\nw.grad -= w_grad_1\nb.grad -= b_grad_1")


@variant("t5_no_detach.ipynb", "mistake",
         "Task 5 uses c = w (no detach): q = sum(w*w), so the gradient is 2w and c carries a graph.",
         ["t5_constant", "t5_grad_value"])
def t5_no_detach(nb, exercise):
    return edit(nb, 5, "c = w.detach()", "c = w")


@variant("t5_clone.ipynb", "mistake",
         "Task 5 uses c = w.clone(): a copy that keeps its history, so the gradient flows through both factors.",
         ["t5_constant", "t5_grad_value"])
def t5_clone(nb, exercise):
    return edit(nb, 5, "c = w.detach()", "c = w.clone()")


@variant("t5_typed_constant.ipynb", "mistake",
         "Task 5 types c in (the example's w as a new tensor): no grad_fn because it never had one, wrong for "
         "other inputs.", ["t5_constant", "t5_grad_value"])
def t5_typed_constant(nb, exercise):
    return edit(nb, 5, "c = w.detach()", "c = torch.tensor([1.0, -2.0, 0.5])")


@variant("t5_grad_by_hand.ipynb", "mistake",
         "Cheat: task 5 computes q but assigns w.grad = c.clone() instead of backpropagating q.", ["t5_backward"])
def t5_grad_by_hand(nb, exercise):
    return edit(nb, 5, "q.backward()", "w.grad = c.clone()")


@variant("t6_rebind_with_graph.ipynb", "mistake",
         "Task 6 updates with w = w - lr * w.grad outside no_grad: right values, but w and b become results "
         "with a grad_fn, no longer leaves.", ["t6_in_place"])
def t6_rebind_with_graph(nb, exercise):
    return edit(nb, 6, T6_UPDATE, "w = w - lr * w.grad\nb = b - lr * b.grad")


@variant("t6_inplace_without_no_grad.ipynb", "mistake",
         "Task 6 updates in place without torch.no_grad(): autograd refuses (a leaf that requires grad used in an "
         "in-place operation), so nothing is updated.", ["t6_step_values", "t6_in_place"])
def t6_inplace_without_no_grad(nb, exercise):
    return edit(nb, 6, T6_UPDATE, "w -= lr * w.grad\nb -= lr * b.grad")


@variant("t6_new_leaves.ipynb", "mistake",
         "Task 6 makes new leaf tensors: w = (w - lr * w.grad).detach().requires_grad_(): right values and "
         "leaves that require grad, but not the tensors the backward pass filled (anything holding the old w "
         "would never see the update).", ["t6_in_place"])
def t6_new_leaves(nb, exercise):
    return edit(nb, 6, T6_UPDATE, "w = (w - lr * w.grad).detach().requires_grad_()\n"
                                  "b = (b - lr * b.grad).detach().requires_grad_()")


@variant("t6_wrong_sign.ipynb", "mistake", "Task 6 moves with the gradient (+=) instead of against it.",
         ["t6_step_values"])
def t6_wrong_sign(nb, exercise):
    return edit(nb, 6, T6_UPDATE, T6_UPDATE.replace("-=", "+="))


@variant("untouched_exercise.ipynb", "mistake", "The exercise notebook handed in unchanged (placeholders `...`).",
         ALL_CHECKS)
def untouched_exercise(nb, exercise):
    return exercise


# ---------------------------------------------------------------- writing


def manifest() -> bytes:
    out = [
        "# Generated by tests/corpus/make_corpus_intro.py -- edit that script, not this file.",
        "# kind: correct (full marks) | mistake (solution with one change, or the exercise untouched).",
        "# failing_checks: the check ids the file must lose; [] means full marks.",
        f"assignment: {NAME}",
        f"solution: solutions/{NAME}.ipynb",
        "checks: [" + ", ".join(ALL_CHECKS) + "]",
        "files:",
    ]
    for file, spec in VARIANTS.items():
        out += [f"  {file}:", f"    kind: {spec['kind']}", f"    description: {yaml_str(spec['description'])}",
                "    failing_checks: [" + ", ".join(spec["failing_checks"]) + "]"]
    return ("\n".join(out) + "\n").encode("utf-8")


def generate() -> dict[str, bytes]:
    solution = nbformat.read(SOLUTION, as_version=4)
    exercise = nbformat.read(EXERCISE, as_version=4)
    files = {name: render(spec["build"](copy.deepcopy(solution), copy.deepcopy(exercise)))
             for name, spec in VARIANTS.items()}
    files["MANIFEST.yaml"] = manifest()
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if anything differs")
    return sync(generate(), OUT, parser.parse_args().check)


if __name__ == "__main__":
    sys.exit(main())
