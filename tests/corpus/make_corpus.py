"""Regenerate the grading corpus for the computational_graph assignment.

Every corpus notebook is derived from solutions/computational_graph.ipynb (or, for
one file, from exercises/computational_graph.ipynb), so a change to the solution
flows into the corpus by re-running:

    python tests/corpus/make_corpus.py           # rewrite tests/corpus/computational_graph/
    python tests/corpus/make_corpus.py --check   # exit 1 if any file is stale or unexpected

Each variant is one small function registered with @variant(file, kind, ...):

* kind "correct"  - a full-marks answer written differently from the solution;
* kind "mistake"  - the solution with ONE change; failing_checks lists the checks it loses;
* kind "format"   - a readable notebook whose point is its shape (e.g. no cells);
* kind "broken"   - a file the grader cannot read; `error` says why.

MANIFEST.yaml is written from the same registry, so it always matches the files.
The output is deterministic: fixed cell ids, a fixed random seed, sorted JSON keys.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from torchgrade.authoring import without_markers  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SOLUTION = REPO / "solutions" / "computational_graph.ipynb"
EXERCISE = REPO / "exercises" / "computational_graph.ipynb"
OUT = Path(__file__).resolve().parent / "computational_graph"

ALL_CHECKS = [
    "t1_f_value", "t1_f_graph",
    "t2_grad_values", "t2_backward_scalar",
    "t3_values", "t3_create_graph", "t3_grad_untouched",
    "t4_pure_second", "t4_mixed", "t4_from_first",
    "t5_forward", "t5_grad_values", "t5_retain_graph",
]
KINDS = ("correct", "mistake", "format", "broken")

VARIANTS: dict[str, dict] = {}


def variant(file, kind, description, failing_checks=(), error=None):
    """Register a builder. It gets fresh copies of the solution and exercise notebooks and
    returns a NotebookNode (written with nbformat), a dict (raw JSON) or bytes (as is)."""
    assert kind in KINDS, kind
    assert (error is not None) == (kind == "broken"), file
    unknown = set(failing_checks) - set(ALL_CHECKS)
    assert not unknown, f"{file}: unknown checks {unknown}"

    def register(build):
        VARIANTS[file] = dict(kind=kind, description=description, failing_checks=list(failing_checks),
                              error=error, build=build)
        return build

    return register


# ---------------------------------------------------------------- helpers


def first_line(cell) -> str:
    return cell.source.split("\n", 1)[0].strip()


def task_cell(nb, n: int):
    cells = [c for c in nb.cells if c.cell_type == "code" and first_line(c) == f"# TASK {n}"]
    assert len(cells) == 1, f"expected one '# TASK {n}' cell, found {len(cells)}"
    return cells[0]


def given_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and first_line(c) == "# GIVEN"]


def edit(nb, task: int, old: str, new: str, count: int = 1):
    """Replace `old` by `new` in the TASK cell; fail loudly if the solution no longer has `old`."""
    cell = task_cell(nb, task)
    found = cell.source.count(old)
    if found != count:
        sys.exit(f"make_corpus: TASK {task} of the solution contains {old!r} {found} times, expected {count}")
    cell.source = cell.source.replace(old, new)
    return nb


def code(source: str, cell_id: str, outputs=(), execution_count=None):
    cell = new_code_cell(source, outputs=list(outputs), execution_count=execution_count)
    cell.id = cell_id
    return cell


def markdown(source: str, cell_id: str):
    cell = new_markdown_cell(source)
    cell.id = cell_id
    return cell


def stdout(text: str):
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def as_json(nb) -> dict:
    """The notebook as the plain JSON dict nbformat would write (source split into lines)."""
    return json.loads(nbformat.writes(nb))


def dump_json(document) -> str:
    return json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


# The solution's lines that several variants rewrite.
T3_SOLUTION = """ones = torch.ones_like(f)
f_x = torch.autograd.grad(f, x, grad_outputs=ones, create_graph=True)[0]
f_y = torch.autograd.grad(f, y, grad_outputs=ones, create_graph=True)[0]"""
T4_SOLUTION = """f_xx = torch.autograd.grad(f_x, x, grad_outputs=ones, retain_graph=True)[0]
f_yy = torch.autograd.grad(f_y, y, grad_outputs=ones)[0]
f_xy = torch.autograd.grad(f_x, y, grad_outputs=ones, allow_unused=True)[0]
if f_xy is None:  # y is not in the graph of f_x, so the derivative is zero
    f_xy = torch.zeros_like(x)"""
T5_SOLUTION = """a.backward(retain_graph=True)  # keep the graph: b goes through it again
b.backward()                   # last pass: the graph may be freed now"""


# ---------------------------------------------------------------- correct answers


@variant("correct_solution.ipynb", "correct", "The reference solution, unchanged.")
def correct_solution(nb, exercise):
    return nb


@variant("correct_backward_gradient_arg.ipynb", "correct",
         "Task 2 passes the vector explicitly: f.backward(torch.ones_like(f)).")
def correct_backward_gradient_arg(nb, exercise):
    return edit(nb, 2, "f.sum().backward()", "f.backward(torch.ones_like(f))")


@variant("correct_tuple_unpack.ipynb", "correct",
         "Task 3 gets both derivatives from one autograd.grad call over (x, y) and unpacks the pair.")
def correct_tuple_unpack(nb, exercise):
    return edit(nb, 3, T3_SOLUTION,
                "f_x, f_y = torch.autograd.grad(f, (x, y), grad_outputs=torch.ones_like(f), create_graph=True)")


@variant("correct_one_tuple.ipynb", "correct",
         "Task 3 keeps f_x and f_y as the 1-tuples autograd.grad returns; task 4 indexes [0] where needed.")
def correct_one_tuple(nb, exercise):
    edit(nb, 3, "create_graph=True)[0]", "create_graph=True)", count=2)
    edit(nb, 4, "torch.autograd.grad(f_x, ", "torch.autograd.grad(f_x[0], ", count=2)
    return edit(nb, 4, "torch.autograd.grad(f_y, ", "torch.autograd.grad(f_y[0], ")


@variant("correct_sum_backward_together.ipynb", "correct",
         "Task 5 backpropagates once through the sum: (a + b).backward().")
def correct_sum_backward_together(nb, exercise):
    return edit(nb, 5, T5_SOLUTION, "(a + b).backward()")


@variant("correct_mixed_materialize.ipynb", "correct",
         "Task 4 gets the mixed derivative with materialize_grads=True instead of allow_unused + None check.")
def correct_mixed_materialize(nb, exercise):
    return edit(nb, 4, """f_xy = torch.autograd.grad(f_x, y, grad_outputs=ones, allow_unused=True)[0]
if f_xy is None:  # y is not in the graph of f_x, so the derivative is zero
    f_xy = torch.zeros_like(x)""",
                "f_xy = torch.autograd.grad(f_x, y, grad_outputs=ones, materialize_grads=True)[0]  # zeros, not None")


@variant("correct_extra_cells.ipynb", "correct",
         "A messy but correct submission: Colab setup cell (!pip, google.colab import that fails outside Colab), "
         "%matplotlib inline, GIVEN cells edited to other numbers, answers spread over several cells with "
         "markdown, prints and saved outputs in between.")
def correct_extra_cells(nb, exercise):
    by_id = {c.id: c for c in nb.cells}
    md = {cid: by_id[cid] for cid in ("title", "self-check", "part-1", "task-1-intro", "task-2-intro", "part-2",
                                      "task-3-intro", "task-4-intro", "part-3", "task-5-intro", "summary")}
    nb.cells = [
        md["title"],
        code("# setup for Colab\n!pip install torch\nfrom google.colab import drive", "my-setup",
             outputs=[stdout("Requirement already satisfied: torch in /usr/local/lib/python3.10/dist-packages\n")],
             execution_count=1),
        code("import torch\n%matplotlib inline", "import", execution_count=2),
        md["self-check"], md["part-1"],
        code("# GIVEN\n# my own numbers to try things out\n"
             "x = torch.tensor([[1., 2., 3.], [4., 5., 6.]], requires_grad=True)\n"
             "y = torch.tensor([[0.5, 1., 1.5], [2., 2.5, 3.]], requires_grad=True)\nprint(x)",
             "given-1", execution_count=3,
             outputs=[stdout("tensor([[1., 2., 3.],\n        [4., 5., 6.]], requires_grad=True)\n")]),
        md["task-1-intro"],
        code("# TASK 1\n# two steps\ncube = x**3\nsquare = y**2", "task-1", execution_count=4),
        markdown("Now add the two parts and look at the graph:", "my-note-1"),
        code("f = cube + square\nprint(f.grad_fn)\nprint(f.grad_fn.next_functions)", "my-task-1b",
             execution_count=5,
             outputs=[stdout("<AddBackward0 object at 0x7f0c2d1e3a90>\n"
                             "((<PowBackward0 object at 0x7f0c2d1e3b50>, 0), "
                             "(<PowBackward0 object at 0x7f0c2d1e3c10>, 0))\n")]),
        md["task-2-intro"],
        code("# TASK 2\ntotal = f.sum()\nprint('total:', total.item())", "task-2", execution_count=6,
             outputs=[stdout("total: 463.75\n")]),
        markdown("`total` is a scalar, so `backward()` works on it.", "my-note-2"),
        code("total.backward()", "my-task-2b", execution_count=7),
        code("print(x.grad)\nprint(y.grad)", "my-task-2c", execution_count=8),
        md["part-2"],
        code("# GIVEN\nx = torch.tensor([[1., 1., 1.], [2., 2., 2.]], requires_grad=True)\n"
             "y = torch.tensor([[3., 3., 3.], [4., 4., 4.]], requires_grad=True)\nf = x**3 + y**2",
             "given-2", execution_count=9),
        md["task-3-intro"],
        task_cell(nb, 3),
        code("print(x.grad, y.grad)  # both still None", "my-task-3b", execution_count=10,
             outputs=[stdout("None None\n")]),
        md["task-4-intro"],
        code("# TASK 4\nones = torch.ones_like(x)\n"
             "f_xx = torch.autograd.grad(f_x, x, grad_outputs=ones, retain_graph=True)[0]\n"
             "f_yy = torch.autograd.grad(f_y, y, grad_outputs=ones)[0]", "task-4", execution_count=11),
        markdown("The mixed one: `y` is not in the graph of `f_x`, so I need `allow_unused=True`.", "my-note-4"),
        code("(f_xy,) = torch.autograd.grad(f_x, y, grad_outputs=ones, allow_unused=True)\n"
             "if f_xy is None:\n    f_xy = torch.zeros_like(x)\nprint(f_xx, f_yy, f_xy, sep='\\n')",
             "my-task-4b", execution_count=12),
        md["part-3"],
        code("# GIVEN\nx = torch.tensor([[1., 2., 3.], [1., 2., 3.]], requires_grad=True)\n"
             "y = torch.tensor([[1., 1., 1.], [2., 2., 2.]], requires_grad=True)", "given-3", execution_count=13),
        md["task-5-intro"],
        code("# TASK 5\nz = x * y\na = z.sum()\nb = (z ** 2).sum()\nprint(z, a, b)", "task-5", execution_count=14),
        markdown("First pass keeps the graph, second one frees it.", "my-note-5"),
        code("a.backward(retain_graph=True)", "my-task-5b", execution_count=15),
        code("b.backward()\nprint(x.grad)\nprint(y.grad)", "my-task-5c", execution_count=16),
        md["summary"],
    ]
    task_cell(nb, 3).execution_count = 17  # re-run out of order, as students do
    return nb


@variant("correct_colab_v40.ipynb", "correct",
         "The solution as Colab saves it: nbformat 4.0, no top-level cell ids, metadata {'id': ...} per cell, "
         "only Colab's notebook metadata, execution counts and an output.")
def correct_colab_v40(nb, exercise):
    rng = random.Random(40)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    document = as_json(nb)
    document["nbformat_minor"] = 0
    document["metadata"] = {"colab": {"provenance": []},
                            "kernelspec": {"display_name": "Python 3", "name": "python3"},
                            "language_info": {"name": "python"}}
    count = 0
    for cell in document["cells"]:
        del cell["id"]
        cell["metadata"] = {"id": "".join(rng.choice(alphabet) for _ in range(12))}
        if cell["cell_type"] == "code":
            count += 1
            cell["execution_count"] = count
            if cell["source"][0].startswith("# TASK 2"):
                cell["outputs"] = [{"name": "stdout", "output_type": "stream",
                                    "text": ["tensor([[12., 27., 12.],\n", "        [12., 27., 27.]])\n",
                                             "tensor([[ 8., 10., 10.],\n", "        [ 8., 10., 10.]])\n"]}]
    return document


@variant("correct_duplicate_ids.ipynb", "correct",
         "The solution in nbformat 4.5 with duplicated cell ids (all GIVEN cells share one id, all TASK cells another).")
def correct_duplicate_ids(nb, exercise):
    document = as_json(nb)
    for cell in document["cells"]:
        first = cell["source"][0] if cell["source"] else ""
        if first.startswith("# GIVEN"):
            cell["id"] = "given"
        elif first.startswith("# TASK") and not first.startswith("# TASK 1"):
            cell["id"] = "task-1"
    return document


@variant("correct_v3.ipynb", "correct",
         "The solution written by hand as an nbformat 3 file (worksheets; code cells with input/language; "
         "a heading cell).")
def correct_v3(nb, exercise):
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            cells.append({"cell_type": "code", "collapsed": False, "input": lines(cell.source),
                          "language": "python", "metadata": {}, "outputs": []})
        elif cell.source.startswith("# "):  # the title becomes a v3 heading cell
            heading, rest = cell.source.split("\n", 1)
            cells.append({"cell_type": "heading", "level": 1, "metadata": {}, "source": [heading[2:]]})
            cells.append({"cell_type": "markdown", "metadata": {}, "source": lines(rest.strip())})
        else:
            cells.append({"cell_type": "markdown", "metadata": {}, "source": lines(cell.source)})
    return {"metadata": {"name": "computational_graph"}, "nbformat": 3, "nbformat_minor": 0,
            "worksheets": [{"cells": cells, "metadata": {}}]}


# ---------------------------------------------------------------- mistakes (solution with one change)


@variant("wrong_function.ipynb", "mistake", "Task 1 swaps the powers: f = x**2 + y**3.", ["t1_f_value"])
def wrong_function(nb, exercise):
    return edit(nb, 1, "f = x**3 + y**2", "f = x**2 + y**3")


@variant("wrong_function_times.ipynb", "mistake", "Task 1 multiplies instead of raising to powers: f = 3*x + 2*y.",
         ["t1_f_value"])
def wrong_function_times(nb, exercise):
    return edit(nb, 1, "f = x**3 + y**2", "f = 3*x + 2*y")


@variant("f_detached.ipynb", "mistake",
         "Task 1 builds f from x.detach() and y.detach(): right values, no graph (the engine rebuilds f for task 2).",
         ["t1_f_graph"])
def f_detached(nb, exercise):
    return edit(nb, 1, "f = x**3 + y**2", "f = x.detach()**3 + y.detach()**2")


@variant("hardcoded_f.ipynb", "mistake",
         "Task 1 types in f's values for the GIVEN inputs as a new leaf tensor: wrong for other inputs, no graph "
         "to x and y (the engine rebuilds f for task 2).",
         ["t1_f_value", "t1_f_graph"])
def hardcoded_f(nb, exercise):
    return edit(nb, 1, "f = x**3 + y**2",
                "f = torch.tensor([[24., 52., 33.], [24., 52., 52.]], requires_grad=True)")


@variant("error_in_task1.ipynb", "mistake",
         "Task 1 raises NameError (typo yy); the engine rebuilds f, so task 2 still passes.",
         ["t1_f_value", "t1_f_graph"])
def error_in_task1(nb, exercise):
    return edit(nb, 1, "f = x**3 + y**2", "f = x**3 + yy**2")


@variant("backward_nonscalar.ipynb", "mistake",
         "Task 2 calls f.backward() on the 2x3 f: raises 'grad can be implicitly created only for scalar outputs'.",
         ["t2_grad_values", "t2_backward_scalar"])
def backward_nonscalar(nb, exercise):
    return edit(nb, 2, "f.sum().backward()", "f.backward()")


@variant("double_backward.ipynb", "mistake",
         "Task 2 runs f.sum().backward(retain_graph=True) twice, so the gradients are doubled.",
         ["t2_grad_values"])
def double_backward(nb, exercise):
    return edit(nb, 2, "f.sum().backward()",
                "f.sum().backward(retain_graph=True)\nf.sum().backward(retain_graph=True)")


@variant("grad_by_hand.ipynb", "mistake",
         "Task 2 assigns x.grad and y.grad from the formulas instead of calling backward (values right).",
         ["t2_backward_scalar"])
def grad_by_hand(nb, exercise):
    return edit(nb, 2, "f.sum().backward()", "x.grad = 3 * x.detach()**2\ny.grad = 2 * y.detach()")


@variant("missing_create_graph.ipynb", "mistake",
         "Task 3 omits create_graph=True: values right, but f_x/f_y have no grad_fn. The grader's bridge gives "
         "task 4 working f_x/f_y, so only task 3 loses points.",
         ["t3_create_graph"])
def missing_create_graph(nb, exercise):
    return edit(nb, 3, ", create_graph=True)[0]", ")[0]", count=2)


@variant("create_graph_only_for_f_x.ipynb", "mistake",
         "Task 3 passes create_graph=True for f_x but not for f_y: the message must name f_y, the tensor with no "
         "grad_fn (it named f_x whichever lacked it).",
         ["t3_create_graph"])
def create_graph_only_for_f_x(nb, exercise):
    return edit(nb, 3, "f_y = torch.autograd.grad(f, y, grad_outputs=ones, create_graph=True)[0]",
                "f_y = torch.autograd.grad(f, y, grad_outputs=ones)[0]")


@variant("retain_instead_of_create.ipynb", "mistake",
         "Task 3 passes retain_graph=True instead of create_graph=True: values right, no grad_fn; the bridge "
         "isolates task 4, which keeps its points.",
         ["t3_create_graph"])
def retain_instead_of_create(nb, exercise):
    return edit(nb, 3, "create_graph=True)[0]", "retain_graph=True)[0]", count=2)


@variant("backward_in_task3.ipynb", "mistake",
         "Task 3 uses f.sum().backward(create_graph=True) and takes f_x = x.grad, f_y = y.grad: values right and "
         "they have grad_fn (CopyBackwards), but no autograd.grad call and x.grad/y.grad are filled. Task 4 still "
         "works on these f_x/f_y and earns full marks (checked with torch 2.13).",
         ["t3_create_graph", "t3_grad_untouched"])
def backward_in_task3(nb, exercise):
    return edit(nb, 3, T3_SOLUTION, "f.sum().backward(create_graph=True)\nf_x = x.grad\nf_y = y.grad")


@variant("hardcoded_second.ipynb", "mistake",
         "Task 4 types the formulas (6*x, 2, zeros) instead of differentiating f_x and f_y: values right.",
         ["t4_from_first"])
def hardcoded_second(nb, exercise):
    return edit(nb, 4, T4_SOLUTION,
                "f_xx = 6 * x\nf_yy = 2 * torch.ones_like(y)\nf_xy = torch.zeros_like(x)")


@variant("typed_formulas_with_decoys.ipynb", "mistake",
         "The 'how' cheat: every graded value is typed in from the derivative formulas (x.grad = 3 * x.detach()**2, "
         "f_x = 3 * x**2, f_xx = 6 * x, ...), and the matching autograd calls run beside them with their results "
         "dropped. Values right everywhere; every check that says a value came from autograd is lost, because the "
         "graded value itself did not come from the call.",
         ["t2_backward_scalar", "t3_create_graph", "t4_from_first", "t5_retain_graph"])
def typed_formulas_with_decoys(nb, exercise):
    edit(nb, 2, "f.sum().backward()",
         "f.sum().backward()  # decoy: its gradients are thrown away below\n"
         "x.grad = 3 * x.detach()**2\ny.grad = 2 * y.detach()")
    edit(nb, 3, T3_SOLUTION,
         "ones = torch.ones_like(f)\n"
         "torch.autograd.grad(f, (x, y), grad_outputs=ones, create_graph=True)  # decoy, result dropped\n"
         "f_x = 3 * x**2\nf_y = 2 * y")
    edit(nb, 4, T4_SOLUTION,
         "torch.autograd.grad(f_x, x, grad_outputs=ones, retain_graph=True)  # decoys, results dropped\n"
         "torch.autograd.grad(f_y, y, grad_outputs=ones)\n"
         "f_xx = 6 * x.detach()\nf_yy = 2 * torch.ones_like(y)\nf_xy = torch.zeros_like(x)")
    return edit(nb, 5, T5_SOLUTION,
                "a.backward(retain_graph=True)  # decoy passes: .grad is overwritten below\nb.backward()\n"
                "x.grad = (y * (1 + 2 * z)).detach()\ny.grad = (x * (1 + 2 * z)).detach()")


ID_REUSE = """def at_freed_address(output, wrt, typed, **keep):
    \"\"\"Drop a real autograd result, then allocate a tensor until CPython gives it the freed address.\"\"\"
    ones = torch.ones_like(output)
    for _attempt in range(500):
        freed = id(torch.autograd.grad(output, wrt, grad_outputs=ones, **keep)[0])
        value = torch.empty_like(typed, requires_grad=False)
        if id(value) == freed:
            break
    return value.copy_(typed)  # the typed-in formula (copy_ gives it a grad_fn when typed has one)

"""


@variant("id_reuse.ipynb", "mistake",
         "The id-reuse cheat: an autograd result is dropped and a tensor is allocated until CPython gives it the "
         "freed result's address (same id()), then the formula is copied in. Values right (f_x, f_y even carry a "
         "graph); the probe names objects by weakly referenced tokens, not addresses, so f_x, f_y, f_xx and f_yy "
         "still did not come from autograd.",
         ["t3_create_graph", "t4_from_first"])
def id_reuse(nb, exercise):
    edit(nb, 3, T3_SOLUTION, ID_REUSE + "\n".join([
        "f_x = at_freed_address(f, x, 3 * x**2, create_graph=True)",
        "f_y = at_freed_address(f, y, 2 * y, create_graph=True)"]))
    return edit(nb, 4, T4_SOLUTION, "\n".join([
        "f_xx = at_freed_address(f_x, x, 6 * x.detach(), retain_graph=True)",
        "f_yy = at_freed_address(f_y, y, 2 * torch.ones_like(y), retain_graph=True)",
        "f_xy = torch.zeros_like(x)"]))


@variant("hardcoded_f_with_graph.ipynb", "mistake",
         "Task 1 types f's values for the GIVEN inputs and adds 0*(x + y) so f still has a graph: right for the "
         "example inputs only; with other inputs the shapes clash and f is never made (caught by the random run).",
         ["t1_f_value", "t1_f_graph"])
def hardcoded_f_with_graph(nb, exercise):
    return edit(nb, 1, "f = x**3 + y**2", "f = torch.tensor([[24., 52., 33.], [24., 52., 52.]]) + 0 * (x + y)")


@variant("missing_retain_graph.ipynb", "mistake",
         "Task 5 calls a.backward() without retain_graph, so b.backward() raises 'backward through the graph a "
         "second time'; x.grad/y.grad only hold a's part.",
         ["t5_grad_values", "t5_retain_graph"])
def missing_retain_graph(nb, exercise):
    return edit(nb, 5, T5_SOLUTION, "a.backward()\nb.backward()")


@variant("needless_retain.ipynb", "mistake",
         "Task 5 also passes retain_graph=True to the last pass b.backward(): values right, graph kept for nothing.",
         ["t5_retain_graph"])
def needless_retain(nb, exercise):
    return edit(nb, 5, T5_SOLUTION, "a.backward(retain_graph=True)\nb.backward(retain_graph=True)")


@variant("hardcoded_task5_sum.ipynb", "mistake",
         "Task 5 types a = torch.tensor(71.), the sum for the GIVEN inputs: wrong for other inputs, and "
         "a.backward(retain_graph=True) then raises (a has no grad_fn), so b's pass never runs and the grads stay None.",
         ["t5_forward", "t5_grad_values", "t5_retain_graph"])
def hardcoded_task5_sum(nb, exercise):
    return edit(nb, 5, "\na = z.sum()\n", "\na = torch.tensor(71.)  # sum of x*y\n")


@variant("task_marker_missing.ipynb", "mistake",
         "The '# TASK 3' line is deleted: the task 3 code now follows a GIVEN cell without a marker, so it belongs "
         "to no task and is not run; the bridge gives task 4 working f_x/f_y, so only task 3 loses points.",
         ["t3_values", "t3_create_graph", "t3_grad_untouched"])
def task_marker_missing(nb, exercise):
    cell = task_cell(nb, 3)
    cell.source = cell.source.split("\n", 1)[1]
    return nb


@variant("task_cell_deleted.ipynb", "mistake",
         "The whole TASK 3 cell is deleted: no answer to task 3; the bridge gives task 4 working f_x/f_y.",
         ["t3_values", "t3_create_graph", "t3_grad_untouched"])
def task_cell_deleted(nb, exercise):
    nb.cells.remove(task_cell(nb, 3))
    return nb


@variant("untouched_exercise.ipynb", "mistake",
         "The exercise notebook handed in unchanged (placeholders: f = ..., ...).", ALL_CHECKS)
def untouched_exercise(nb, exercise):
    return exercise


# ---------------------------------------------------------------- format oddities that are still readable


@variant("no_cells.ipynb", "format", "A valid nbformat 4.5 notebook with an empty cells list.", ALL_CHECKS)
def no_cells(nb, exercise):
    empty = new_notebook(cells=[])
    empty.metadata = copy.deepcopy(nb.metadata)
    return empty


# ---------------------------------------------------------------- unreadable files


@variant("not_json.ipynb", "broken", "Plain text saved with a .ipynb name.", error="not JSON")
def not_json(nb, exercise):
    return (b"My answers (Jupyter would not save, so I pasted the code):\n\n"
            b"f = x**3 + y**2\nf.sum().backward()\n")


@variant("truncated.ipynb", "broken", "The first half of the solution file.", error="truncated JSON")
def truncated(nb, exercise):
    data = nbformat.writes(nb).encode("utf-8")
    return data[: len(data) // 2]


@variant("empty.ipynb", "broken", "A 0-byte file.", error="empty file")
def empty(nb, exercise):
    return b""


@variant("binary.ipynb", "broken", "512 random bytes (fixed seed) including NUL bytes.", error="not a text file")
def binary(nb, exercise):
    data = bytearray(random.Random(2024).randbytes(512))
    data[0:4] = b"\x00\x00\x00\x00"
    return bytes(data)


@variant("not_a_notebook.ipynb", "broken", 'Valid JSON that is not a notebook: {"hello": 1}.',
         error="JSON but not a notebook")
def not_a_notebook(nb, exercise):
    return b'{"hello": 1}\n'


@variant("future_nbformat.ipynb", "broken", "The solution with nbformat 99.", error="unsupported nbformat 99")
def future_nbformat(nb, exercise):
    document = as_json(nb)
    document["nbformat"] = 99
    return document


@variant("invalid_cells.ipynb", "broken",
         "nbformat 4.5 JSON whose cells are a bare string and a dict without cell_type.",
         error="cells are not valid cells (string / missing cell_type)")
def invalid_cells(nb, exercise):
    document = as_json(nb)
    document["cells"] = [
        "import torch",
        {"id": "no-type", "metadata": {}, "source": ["# GIVEN\n", "x = torch.tensor([[2., 3., 2.], [2., 3., 3.]])"]},
    ]
    return document


# ---------------------------------------------------------------- writing


def render(result) -> bytes:
    if isinstance(result, bytes):
        return result
    if isinstance(result, nbformat.NotebookNode):
        text = nbformat.writes(result)
        return (text if text.endswith("\n") else text + "\n").encode("utf-8")
    return dump_json(result).encode("utf-8")


def yaml_str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid double-quoted YAML scalar


def manifest() -> bytes:
    out = [
        "# Generated by tests/corpus/make_corpus.py -- edit that script, not this file.",
        "# kind: correct (full marks) | mistake (solution with one change) | format (readable, odd shape)",
        "#       | broken (grader must refuse it with a one-line 'could not read' error).",
        "# failing_checks: the check ids the file must lose; [] means full marks.",
        "assignment: computational_graph",
        "solution: solutions/computational_graph.ipynb",
        "checks: [" + ", ".join(ALL_CHECKS) + "]",
        "files:",
    ]
    for file, spec in VARIANTS.items():
        out += [f"  {file}:", f"    kind: {spec['kind']}", f"    description: {yaml_str(spec['description'])}"]
        if spec["kind"] == "broken":
            out.append(f"    error: {yaml_str(spec['error'])}")
        else:
            out.append("    failing_checks: [" + ", ".join(spec["failing_checks"]) + "]")
    return ("\n".join(out) + "\n").encode("utf-8")


def generate(variants=None, solution_path: Path = SOLUTION, exercise_path: Path = EXERCISE,
             make_manifest=manifest) -> dict[str, bytes]:
    """Every file of a corpus; other corpus generators pass their own registry, notebooks and manifest."""
    solution = nbformat.read(solution_path, as_version=4)
    for cell in solution.cells:  # variants edit the solution's code, not its solution markers
        if cell.cell_type == "code":
            cell.source = without_markers(cell.source)
    exercise = nbformat.read(exercise_path, as_version=4)
    files = {name: render(spec["build"](copy.deepcopy(solution), copy.deepcopy(exercise)))
             for name, spec in (VARIANTS if variants is None else variants).items()}
    files["MANIFEST.yaml"] = make_manifest()
    return files


def sync(files: dict[str, bytes], out: Path, check: bool) -> int:
    """Write the generated files into `out` (only the stale ones), or with `check` only compare."""
    existing = {p.name for p in out.glob("*")} if out.exists() else set()
    stale = sorted(n for n, data in files.items() if not (out / n).exists() or (out / n).read_bytes() != data)
    extra = sorted(existing - set(files))
    if check:
        for name in stale:
            print(f"stale: {name}")
        for name in extra:
            print(f"not generated by this script: {name}")
        return 1 if stale or extra else 0
    out.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (out / name).write_bytes(files[name])
    for name in extra:
        print(f"warning: {out.name}/{name} is not generated by this script")
    print(f"{len(files)} files in {out.relative_to(REPO)}, {len(stale)} rewritten")
    return 0


def cli(doc: str, make_files, out: Path, argv=None) -> int:
    """Every corpus generator's command line: write the corpus, or with --check only compare (exit 1)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if anything differs")
    return sync(make_files(), out, parser.parse_args(argv).check)


def main() -> int:
    return cli(__doc__, generate, OUT)


if __name__ == "__main__":
    sys.exit(main())
