"""Regenerate the grading corpus for the computational_graph_intro assignment.

Every notebook is derived from solutions/computational_graph_intro.ipynb (one from
the exercise), so a change to the solution flows into the corpus by re-running:

    python tests/corpus/make_corpus_intro.py           # rewrite tests/corpus/computational_graph_intro/
    python tests/corpus/make_corpus_intro.py --check   # exit 1 if any file is stale or unexpected

The corpus is a list of *answers*: one way to answer one task, correct or a typical
mistake, registered with answer(name, file, task, description, edits). Every task of this
assignment starts from its own GIVEN cell, so tasks are isolated: a file holds at
most one answer per task (the solution's code elsewhere), and each answer must lose
exactly its own checks. That keeps the kernel count low (a dozen notebooks for
forty-odd answers) without mixing up whose points are whose. The cheats of issue 8
(a `.grad` typed in from the formula next to a throw-away backward pass, a gradient
"reset" by subtraction, new tensors in place of an in-place update) are answers
like any other: they keep their value points and lose the "how" check.

MANIFEST.yaml is written from the same registry: per file its kind and the union of
the checks it loses; per answer its task, the checks it loses and, for a mistake, a
phrase its message must contain (the targeted feedback).
"""

from __future__ import annotations

import copy
import random
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_corpus import as_json, cli, code, edit, markdown, render, stdout, task_cell, yaml_str  # noqa: E402

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
FILES = {  # file -> (kind, description)
    "correct_solution.ipynb": ("correct", "The reference solution, unchanged."),
    "correct_alternatives_a.ipynb": ("correct", "Other correct ways, one per task (see answers)."),
    "correct_alternatives_b.ipynb": ("correct", "Other correct ways, one per task (see answers)."),
    "correct_alternatives_c.ipynb": ("correct", "Other correct ways, one per task (see answers)."),
    "correct_colab_v40.ipynb": ("correct", "The solution as Colab saves it: nbformat 4.0, no cell ids, "
                                           "metadata {'id': ...} per cell, execution counts."),
    "correct_extra_cells.ipynb": ("correct", "A messy but correct submission: !pip line, a GIVEN cell edited, a "
                                             "scratch cell, task 4 spread over three cells, no solution markers."),
    "mistakes_a.ipynb": ("mistake", "Typical mistakes, one per task (see answers)."),
    "mistakes_b.ipynb": ("mistake", "Typical mistakes, one per task (see answers)."),
    "mistakes_c.ipynb": ("mistake", "Typical mistakes, one per task (see answers)."),
    "mistakes_d.ipynb": ("mistake", "Typical mistakes, one per task (see answers)."),
    "cheats_how.ipynb": ("mistake", "Issue 8's cheats: right values made without the autograd call the task "
                                    "names; each keeps its value points and loses its 'how' check."),
    "untouched_exercise.ipynb": ("mistake", "The exercise notebook handed in unchanged (placeholders `...`)."),
}
ANSWERS: dict[str, dict] = {}


def answer(name, file, task, description, edits, messages=None):
    """Register one answer to one task: `edits` (old, new) applied to that task's cell of the solution;
    `messages` maps each check the answer must lose to a phrase its feedback must contain."""
    kind = FILES[file][0]
    messages = dict(messages or {})
    assert all(check in ALL_CHECKS and check.startswith(f"t{task}_") for check in messages), name
    assert (kind == "correct") == (not messages), name
    assert not any(a["file"] == file and a["task"] == task for a in ANSWERS.values()), f"{file}: two answers to {task}"
    ANSWERS[name] = dict(file=file, task=task, description=description, edits=edits,
                         failing_checks=[c for c in ALL_CHECKS if c in messages], messages=messages)


# The solution's task code that several answers rewrite.
T1 = "y = w * x + b\nloss = (y ** 2).sum()"
T2 = """seen = set()
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
T4_RESET = "w.grad.zero_()\nb.grad.zero_()\n"
T6 = """with torch.no_grad():
    w -= lr * w.grad
    b -= lr * b.grad"""


# ---------------------------------------------------------------- correct answers

answer("functional_style", "correct_alternatives_a.ipynb", 1, "torch.mul/torch.add/.pow/torch.sum.",
       [(T1, "y = torch.add(torch.mul(w, x), b)\nloss = torch.sum(y.pow(2))")])
answer("recursive_walk", "correct_alternatives_a.ipynb", 2,
       "A recursive function; leaves kept in a dict keyed by id; nodes recognised by their type name.",
       [(T2, """def visit(node, seen, leaves):
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
graph_leaves = list(leaves.values())""")])
answer("autograd_backward", "correct_alternatives_a.ipynb", 3, "torch.autograd.backward(loss).",
       [("loss.backward()", "torch.autograd.backward(loss)")])
answer("reset_none_no_clone", "correct_alternatives_a.ipynb", 4,
       "Reset with `w.grad = None`, first gradient kept without clone(): the old tensor is dropped, not zeroed.",
       [("w_grad_1 = w.grad.clone()", "w_grad_1 = w.grad"), (T4_RESET, "w.grad = None\nb.grad = None\n")])
answer("dot_product", "correct_alternatives_a.ipynb", 5, "q = torch.dot(w, c).",
       [("q = (w * c).sum()", "q = torch.dot(w, c)")])
answer("optimizer_step", "correct_alternatives_a.ipynb", 6, "torch.optim.SGD([w, b], lr=lr).step().",
       [(T6, "optimizer = torch.optim.SGD([w, b], lr=lr)\noptimizer.step()")])

answer("two_steps", "correct_alternatives_b.ipynb", 1, "x * w first, b added on a line of its own.",
       [(T1, "wx = x * w\ny = wx + b\nsquares = y * y\nloss = squares.sum()")])
answer("breadth_first", "correct_alternatives_b.ipynb", 2, "Breadth first with collections.deque; ids in the set.",
       [(T2, """from collections import deque

queue, seen_ids, graph_leaves = deque([h.grad_fn]), set(), []
while queue:
    node = queue.popleft()
    if node is None or id(node) in seen_ids:
        continue
    seen_ids.add(id(node))
    variable = getattr(node, "variable", None)
    if variable is not None:
        graph_leaves.append(variable)
    queue.extend(pair[0] for pair in node.next_functions)
n_nodes = len(seen_ids)""")])
answer("gradient_argument", "correct_alternatives_b.ipynb", 3, "loss.backward(torch.ones_like(loss)).",
       [("loss.backward()", "loss.backward(torch.ones_like(loss))")])
answer("reset_assign_zeros", "correct_alternatives_b.ipynb", 4, "Reset by assigning zeros: w.grad = zeros_like(w).",
       [(T4_RESET, "w.grad = torch.zeros_like(w)\nb.grad = torch.zeros_like(b)\n")])
answer("no_grad_copy", "correct_alternatives_b.ipynb", 5, "c made under torch.no_grad() (c = w * 1.0).",
       [("c = w.detach()", "with torch.no_grad():\n    c = w * 1.0")])
answer("sub_then_drop_grads", "correct_alternatives_b.ipynb", 6,
       "w.sub_(lr * w.grad) under no_grad, then w.grad = None for the next step (task 6 judges w, not w.grad).",
       [(T6, """with torch.no_grad():
    w.sub_(lr * w.grad)
    b.sub_(lr * b.grad)
w.grad = None  # ready for the next step
b.grad = None""")])

answer("generator_walk", "correct_alternatives_c.ipynb", 2, "A recursive generator of nodes; leaves from is_leaf.",
       [(T2, """def nodes_below(node, seen):
    if node is not None and node not in seen:
        seen.add(node)
        yield node
        for next_node, _ in node.next_functions:
            yield from nodes_below(next_node, seen)

all_nodes = list(nodes_below(h.grad_fn, set()))
n_nodes = len(all_nodes)
graph_leaves = [n.variable for n in all_nodes if hasattr(n, "variable") and n.variable.is_leaf]""")])
answer("retain_graph_once", "correct_alternatives_c.ipynb", 3, "One pass with a needless retain_graph=True.",
       [("loss.backward()", "loss.backward(retain_graph=True)")])
answer("detach_clone_then_zero", "correct_alternatives_c.ipynb", 4,
       "w_grad_1 = w.grad.detach().clone(); reset with zero_() inside torch.no_grad().",
       [("w_grad_1 = w.grad.clone()", "w_grad_1 = w.grad.detach().clone()"),
        (T4_RESET, "with torch.no_grad():\n    w.grad.zero_()\n    b.grad.zero_()\n")])
answer("data_attribute", "correct_alternatives_c.ipynb", 5, "c = w.data (the old way to get w without history).",
       [("c = w.detach()", "c = w.data")])
answer("update_via_data", "correct_alternatives_c.ipynb", 6, "w.data -= lr * w.grad (no no_grad block needed).",
       [(T6, "w.data -= lr * w.grad\nb.data -= lr * b.grad")])


# ---------------------------------------------------------------- mistakes

answer("mean_not_sum", "mistakes_a.ipynb", 1, "loss = (y ** 2).mean().",
       [("loss = (y ** 2).sum()", "loss = (y ** 2).mean()")], {"t1_values": "the mean of the squares"})
answer("no_seen_set", "mistakes_a.ipynb", 2,
       "A walk without a `seen` set: a shared node counted, and its leaf listed, once per path.",
       [(T2, """count = 0
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
n_nodes = count""")], {"t2_node_count": "counted once per path", "t2_leaves": "is listed 2 times"})
answer("backward_nonscalar", "mistakes_a.ipynb", 3, "y.backward() on the vector y: raises.",
       [("loss.backward()", "y.backward()")],
       {"t3_grad_values": "implicitly created only for scalar outputs", "t3_backward": "call it on loss"})
answer("no_reset", "mistakes_a.ipynb", 4, "No reset between the passes: .grad holds the sum of both.",
       [(T4_RESET, "")],
       {"t4_grad_values": "the second pass added to the first", "t4_reset": "sum of 2 backward passes"})
answer("no_detach", "mistakes_a.ipynb", 5, "c = w: the gradient is 2w and c is tracked.",
       [("c = w.detach()", "c = w")],
       {"t5_constant": "`c` is w itself", "t5_grad_value": "flowed through both factors"})
answer("rebind_with_graph", "mistakes_a.ipynb", 6,
       "w = w - lr * w.grad outside no_grad: values right, w and b become results with a grad_fn.",
       [(T6, "w = w - lr * w.grad\nb = b - lr * b.grad")], {"t6_in_place": "not a leaf"})

answer("w_detached", "mistakes_b.ipynb", 1, "y from w.detach(): values right, no graph back to w.",
       [("y = w * x + b", "y = w.detach() * x + b")], {"t1_graph": "does not reach `w`"})
answer("nodes_not_tensors", "mistakes_b.ipynb", 2, "The AccumulateGrad nodes listed instead of their .variable.",
       [("graph_leaves.append(node.variable)", "graph_leaves.append(node)")],
       {"t2_leaves": "AccumulateGrad nodes, not tensors"})
answer("backward_twice", "mistakes_b.ipynb", 3, "Two passes (retain_graph=True first): gradients doubled.",
       [("loss.backward()", "loss.backward(retain_graph=True)\nloss.backward()")],
       {"t3_grad_values": "exactly 2 times the gradient"})
answer("alias_no_clone", "mistakes_b.ipynb", 4, "w_grad_1 = w.grad, then zero_(): the saved gradient changes too.",
       [("w_grad_1 = w.grad.clone()", "w_grad_1 = w.grad")], {"t4_saved_copy": "is w.grad itself"})
answer("clone_not_detach", "mistakes_b.ipynb", 5, "c = w.clone(): a copy that keeps its history.",
       [("c = w.detach()", "c = w.clone()")], {"t5_constant": "CloneBackward0", "t5_grad_value": "2·w"})
answer("in_place_recording", "mistakes_b.ipynb", 6, "w -= lr * w.grad without no_grad: autograd refuses.",
       [(T6, "w -= lr * w.grad\nb -= lr * b.grad")],
       {"t6_step_values": "no update happened", "t6_in_place": "switch recording off"})

answer("typed_in_y_loss", "mistakes_c.ipynb", 1, "The example's y and loss typed in as new tensors.",
       [(T1, "y = torch.tensor([2.5, -1.5, -0.5], requires_grad=True)\nloss = torch.tensor(8.75, requires_grad=True)")],
       {"t1_values": "Correct for the example inputs", "t1_graph": "has no grad_fn"})
answer("typed_in_count", "mistakes_c.ipynb", 2, "n_nodes = 9 and graph_leaves = [p, q] typed in from the example.",
       [(T2, "n_nodes = 9\ngraph_leaves = [p, q]")],
       {"t2_node_count": "Correct for the example inputs", "t2_leaves": "Correct for the example inputs"})
answer("backward_of_y_sum", "mistakes_c.ipynb", 3, "y.sum().backward(): a scalar, but not the loss.",
       [("loss.backward()", "y.sum().backward()")],
       {"t3_grad_values": "the gradient of y.sum()", "t3_backward": "did not go through `loss`"})
answer("reset_w_only", "mistakes_c.ipynb", 4, "Only w.grad is reset; b.grad sums both passes.",
       [(T4_RESET, "w.grad.zero_()\n")], {"t4_grad_values": "`b.grad`", "t4_reset": "`b.grad` holds the sum"})
answer("typed_in_constant", "mistakes_c.ipynb", 5, "c typed in (the example's w): no grad_fn because it never had "
       "one; with other inputs the shapes differ and q cannot be computed.",
       [("c = w.detach()", "c = torch.tensor([1.0, -2.0, 0.5])")],
       {"t5_constant": "Correct for the example inputs", "t5_grad_value": "Correct for the example inputs",
        "t5_backward": "no backward pass reached it"})
answer("wrong_sign", "mistakes_c.ipynb", 6, "+= instead of -=: a step uphill.", [(T6, T6.replace("-=", "+="))],
       {"t6_step_values": "uphill"})

answer("skip_accumulators", "mistakes_d.ipynb", 2, "Only the grad_fn nodes counted, not the AccumulateGrad ones.",
       [("n_nodes = len(seen)", "n_nodes = len(seen) - len(graph_leaves)")],
       {"t2_node_count": "AccumulateGrad nodes were left out"})
answer("constant_unused", "mistakes_d.ipynb", 5, "c is made, but q = (w * w).sum() does not use it.",
       [("q = (w * c).sum()", "q = (w * w).sum()")], {"t5_grad_value": "2·w"})

answer("grad_typed_in", "cheats_how.ipynb", 3,
       "A throw-away backward pass on another scalar, then w.grad and b.grad assigned from the formulas.",
       [("loss.backward()", "(w.sum() + b).backward()  # some backward pass\n"
                            "w.grad = 2 * y.detach() * x\nb.grad = 2 * y.detach().sum()")],
       {"t3_backward": "did not come from autograd"})
answer("reset_by_subtraction", "cheats_how.ipynb", 4,
       "No reset; the first gradients subtracted by hand after the second pass.",
       [("w_grad_1 = w.grad.clone()", "w_grad_1 = w.grad.clone()\nb_grad_1 = b.grad.clone()"), (T4_RESET, ""),
        ("loss2.backward()", "loss2.backward()\nw.grad -= w_grad_1\nb.grad -= b_grad_1")],
       {"t4_reset": "values were changed afterwards"})
answer("grad_assigned", "cheats_how.ipynb", 5, "q computed, then w.grad = c.clone() instead of q.backward().",
       [("q.backward()", "w.grad = c.clone()")], {"t5_backward": "did not come from autograd"})
answer("new_leaves", "cheats_how.ipynb", 6,
       "w = (w - lr * w.grad).detach().requires_grad_(): right values, leaves that require grad, but new tensors.",
       [(T6, "w = (w - lr * w.grad).detach().requires_grad_()\nb = (b - lr * b.grad).detach().requires_grad_()")],
       {"t6_in_place": "is a new tensor"})


# ---------------------------------------------------------------- whole-notebook variants


def colab_v40(nb):
    """nbformat 4.0 as Colab writes it: no cell ids, an `id` in each cell's metadata."""
    rng = random.Random(41)
    document = as_json(nb)
    document["nbformat_minor"] = 0
    document["metadata"] = {"colab": {"provenance": []}, "kernelspec": {"display_name": "Python 3", "name": "python3"}}
    for count, cell in enumerate(document["cells"], start=1):
        del cell["id"]
        cell["metadata"] = {"id": "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))}
        if cell["cell_type"] == "code":
            cell["execution_count"] = count
    return document


def extra_cells(nb):
    """Set-up and scratch cells, an edited GIVEN cell, task 4 over three cells, no solution markers."""
    given = next(c for c in nb.cells if c.get("id") == "given-1")
    given.source = given.source.replace("[1.0, -2.0, 0.5]", "[3.0, 3.0, 3.0]")
    nb.cells.insert(nb.cells.index(task_cell(nb, 1)) + 1, code(
        "print(y.grad_fn, y.grad_fn.next_functions)\nprint(w.is_leaf, y.is_leaf, x.requires_grad)", "my-scratch-1",
        outputs=[stdout("<AddBackward0 object at 0x7f00>\nTrue False False\n")], execution_count=4))
    nb.cells.insert(1, code("!pip install torch\nimport torch", "my-setup"))
    cell = task_cell(nb, 4)
    first, rest = cell.source.split("w.grad.zero_()", 1)
    reset, second = rest.split("loss2", 1)
    cell.source = first.rstrip() + "\nprint(w_grad_1)"
    position = nb.cells.index(cell) + 1
    nb.cells[position:position] = [markdown("Now reset before the second pass:", "my-note-4"),
                                   code("w.grad.zero_()" + reset.rstrip(), "my-task-4b"),
                                   code("loss2" + second, "my-task-4c")]
    for cell in nb.cells:
        cell.source = "\n".join(line for line in cell.source.split("\n") if "SOLUTION" not in line)
    return nb


WHOLE = {"correct_colab_v40.ipynb": colab_v40, "correct_extra_cells.ipynb": extra_cells}


# ---------------------------------------------------------------- writing


def build(file: str, solution, exercise):
    if file == "untouched_exercise.ipynb":
        return exercise
    if file in WHOLE:
        return WHOLE[file](solution)
    for spec in ANSWERS.values():
        for old, new in spec["edits"] if spec["file"] == file else ():
            edit(solution, spec["task"], old, new)
    return solution


def failing(file: str) -> list[str]:
    if file == "untouched_exercise.ipynb":
        return ALL_CHECKS
    lost = {c for spec in ANSWERS.values() if spec["file"] == file for c in spec["failing_checks"]}
    return [c for c in ALL_CHECKS if c in lost]


def manifest() -> bytes:
    out = [
        "# Generated by tests/corpus/make_corpus_intro.py -- edit that script, not this file.",
        "# files: kind correct (full marks) | mistake; failing_checks: the checks the file must lose.",
        "# answers: one answer to one task each (tasks are isolated by their GIVEN cells); failing_checks: the",
        "#   checks of its task it must lose; messages: a phrase each lost check's feedback must contain.",
        f"assignment: {NAME}",
        f"solution: solutions/{NAME}.ipynb",
        "checks: [" + ", ".join(ALL_CHECKS) + "]",
        "files:",
    ]
    for file, (kind, description) in FILES.items():
        out += [f"  {file}:", f"    kind: {kind}", f"    description: {yaml_str(description)}",
                "    failing_checks: [" + ", ".join(failing(file)) + "]"]
    out.append("answers:")
    for name, spec in ANSWERS.items():
        out += [f"  {name}:", f"    file: {spec['file']}", f"    task: {spec['task']}",
                f"    description: {yaml_str(spec['description'])}",
                "    failing_checks: [" + ", ".join(spec["failing_checks"]) + "]"]
        if spec["messages"]:
            out.append("    messages:")
            out += [f"      {check}: {yaml_str(text)}" for check, text in spec["messages"].items()]
    return ("\n".join(out) + "\n").encode("utf-8")


def generate() -> dict[str, bytes]:
    solution = nbformat.read(SOLUTION, as_version=4)
    exercise = nbformat.read(EXERCISE, as_version=4)
    files = {file: render(build(file, copy.deepcopy(solution), copy.deepcopy(exercise))) for file in FILES}
    files["MANIFEST.yaml"] = manifest()
    return files


def main() -> int:
    return cli(__doc__, generate, OUT)


if __name__ == "__main__":
    sys.exit(main())
