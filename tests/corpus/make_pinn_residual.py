"""Regenerate the grading corpus for the pinn_residual assignment.

Every notebook is derived from solutions/pinn_residual.ipynb (one from the exercise),
so a change to the solution flows into the corpus by re-running:

    python tests/corpus/make_pinn_residual.py           # rewrite tests/corpus/pinn_residual/
    python tests/corpus/make_pinn_residual.py --check   # exit 1 if any file is stale or unexpected

Each variant is one small function registered with @variant(file, kind, description,
failing_checks, message): "correct" variants earn full marks, written differently from
the solution; "mistake" variants are the solution with one typical mistake and lose
exactly `failing_checks`; `message` is a phrase the first failing check's feedback must
contain (a test holds each mistake to its targeted message). MANIFEST.yaml is written
from the same registry, so it always matches the files. The helpers and the writing
code are the computational_graph generator's (make_corpus.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_corpus  # noqa: E402
from make_corpus import code, edit, markdown, task_cell, yaml_str  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SOLUTION = REPO / "solutions" / "pinn_residual.ipynb"
EXERCISE = REPO / "exercises" / "pinn_residual.ipynb"
OUT = Path(__file__).resolve().parent / "pinn_residual"

ALL_CHECKS = [
    "t1_u", "t1_du_value", "t1_du_autograd", "t1_du_create_graph",
    "t2_d2u_value", "t2_d2u_autograd", "t2_d2u_create_graph",
    "t3_residual", "t3_loss",
    "t4_grad_values", "t4_backward",
    "t5_step",
]
VARIANTS: dict[str, dict] = {}


def variant(file, kind, description, failing_checks=(), message=None):
    assert kind in ("correct", "mistake"), kind
    assert (kind == "mistake") == bool(failing_checks) == (message is not None), file
    unknown = set(failing_checks) - set(ALL_CHECKS)
    assert not unknown, f"{file}: unknown checks {unknown}"

    def register(build):
        VARIANTS[file] = dict(kind=kind, description=description, failing_checks=list(failing_checks),
                              message=message, build=build)
        return build

    return register


# The solution's lines that variants rewrite (edit() fails loudly when the solution changes).
U = "u = model(t)"
DU = "du_dt = torch.autograd.grad(u, t, grad_outputs=torch.ones_like(u), create_graph=True)[0]"
D2U = "d2u_dt2 = torch.autograd.grad(du_dt, t, grad_outputs=torch.ones_like(du_dt), create_graph=True)[0]"
RESIDUAL = "residual = d2u_dt2 + omega**2 * u"
LOSS = "loss = (residual**2).mean()"
BACKWARD = "loss.backward()"
OPTIMIZER = "optimizer = torch.optim.SGD(model.parameters(), lr=lr)"
STEP = "optimizer.step()"


# ---------------------------------------------------------------- correct answers


@variant("correct_solution.ipynb", "correct", "The reference solution, unchanged.")
def correct_solution(nb, exercise):
    return nb


@variant("correct_sum_trick.ipynb", "correct",
         "Both derivatives differentiate a sum (u.sum(), du_dt.sum()) instead of passing grad_outputs.")
def correct_sum_trick(nb, exercise):
    edit(nb, 1, DU, "du_dt = torch.autograd.grad(u.sum(), t, create_graph=True)[0]")
    return edit(nb, 2, D2U, "d2u_dt2 = torch.autograd.grad(du_dt.sum(), t, create_graph=True)[0]")


@variant("correct_torch_func_vmap.ipynb", "correct",
         "torch.func: du_dt = vmap(grad(u_of))(t) and d2u_dt2 = vmap(grad(du_of))(t), per point; the loss "
         "backpropagates through the transforms.")
def correct_torch_func_vmap(nb, exercise):
    edit(nb, 1, DU, """from torch.func import grad, vmap

def u_of(s):  # the network at one point s (a tensor of shape (1,)), as a number
    return model(s).squeeze()

du_dt = vmap(grad(u_of))(t)""")
    return edit(nb, 2, D2U, """def du_of(s):
    return grad(u_of)(s).squeeze()

d2u_dt2 = vmap(grad(du_of))(t)""")


@variant("correct_torch_func_jacrev.ipynb", "correct",
         "torch.func.jacrev of the summed output for du_dt, and jacrev of that (summed) for d2u_dt2.")
def correct_torch_func_jacrev(nb, exercise):
    edit(nb, 1, DU, """from torch.func import jacrev

def total(s):  # each output depends on its own point only, so d(sum)/dt_i = du_i/dt_i
    return model(s).sum()

du_dt = jacrev(total)(t)""")
    return edit(nb, 2, D2U, "d2u_dt2 = jacrev(lambda s: jacrev(total)(s).sum())(t)")


@variant("correct_manual_sgd.ipynb", "correct",
         "Task 5 updates the parameters by hand under torch.no_grad() (p -= lr * p.grad), the same step as SGD.")
def correct_manual_sgd(nb, exercise):
    edit(nb, 5, OPTIMIZER + "\n", "")
    return edit(nb, 5, STEP, """with torch.no_grad():
    for parameter in model.parameters():
        parameter -= lr * parameter.grad""")


@variant("correct_unpack_mse.ipynb", "correct",
         "Tuple unpacking of autograd.grad's results, the residual written the other way round and the loss as "
         "F.mse_loss against zeros.")
def correct_unpack_mse(nb, exercise):
    edit(nb, 1, DU, "(du_dt,) = torch.autograd.grad(u, t, torch.ones_like(u), create_graph=True)")
    edit(nb, 2, D2U, "d2u_dt2, = torch.autograd.grad(du_dt, t, torch.ones_like(du_dt), create_graph=True)")
    edit(nb, 3, RESIDUAL, "residual = omega * omega * u + d2u_dt2")
    return edit(nb, 3, LOSS, "loss = torch.nn.functional.mse_loss(residual, torch.zeros_like(residual))")


@variant("correct_extra_cells_zero_grad.ipynb", "correct",
         "Redundant retain_graph=True, an extra exploration cell in Task 1, torch.autograd.backward(loss) in Task 4 "
         "and optimizer.zero_grad() after the step.")
def correct_extra_cells_zero_grad(nb, exercise):
    edit(nb, 1, "create_graph=True)[0]", "create_graph=True, retain_graph=True)[0]")
    position = nb.cells.index(task_cell(nb, 1)) + 1
    nb.cells[position:position] = [
        markdown("Looking at the shapes before going on.", "pinn-extra-md"),
        code("print(u.shape, du_dt.shape, du_dt.grad_fn)\nprint(float(du_dt.abs().max()))", "pinn-extra-code"),
    ]
    edit(nb, 4, BACKWARD, "torch.autograd.backward(loss)")
    return edit(nb, 5, STEP, STEP + "\noptimizer.zero_grad()")


# ---------------------------------------------------------------- typical mistakes


@variant("u_squeezed.ipynb", "mistake", "Task 1 squeezes the output: u has shape (N,) instead of (N, 1).",
         ["t1_u"], "a tensor of shape (20,)")
def u_squeezed(nb, exercise):
    return edit(nb, 1, U, "u = model(t).squeeze(1)")


@variant("du_no_grad_outputs.ipynb", "mistake",
         "Task 1 calls autograd.grad on the non-scalar u without grad_outputs (it raises).",
         ["t1_du_value", "t1_du_autograd", "t1_du_create_graph"], "grad can be implicitly created only for scalar outputs")
def du_no_grad_outputs(nb, exercise):
    return edit(nb, 1, DU, "du_dt = torch.autograd.grad(u, t, create_graph=True)[0]")


@variant("du_no_create_graph.ipynb", "mistake",
         "Task 1 forgets create_graph=True: du_dt has no graph, and the call freed u's (both repaired for later tasks).",
         ["t1_du_create_graph"], "create_graph")
def du_no_create_graph(nb, exercise):
    return edit(nb, 1, ", create_graph=True)[0]", ")[0]")


@variant("du_retain_graph_only.ipynb", "mistake", "Task 1 uses retain_graph=True where create_graph=True is needed.",
         ["t1_du_create_graph"], "retain_graph=True was used")
def du_retain_graph_only(nb, exercise):
    return edit(nb, 1, "create_graph=True)[0]", "retain_graph=True)[0]")


@variant("du_finite_difference.ipynb", "mistake",
         "Task 1 approximates du/dt by a central finite difference (values within tolerance, no autograd).",
         ["t1_du_autograd", "t1_du_create_graph"], "did not come from autograd")
def du_finite_difference(nb, exercise):
    return edit(nb, 1, DU, "h = 1e-5\ndu_dt = (model(t + h) - model(t - h)) / (2 * h)")


@variant("du_by_hand_dropped_call.ipynb", "mistake",
         "Cheat: Task 1 works du/dt out by the chain rule through the layers and adds a throw-away autograd.grad "
         "call (create_graph=True) whose result is dropped.",
         ["t1_du_autograd", "t1_du_create_graph"], "did not come from autograd")
def du_by_hand_dropped_call(nb, exercise):
    return edit(nb, 1, DU, """torch.autograd.grad(u, t, grad_outputs=torch.ones_like(u), create_graph=True)  # result dropped
first, second, last = model[0], model[2], model[4]
hidden1 = torch.tanh(t @ first.weight.T + first.bias)
hidden2 = torch.tanh(hidden1 @ second.weight.T + second.bias)
dhidden1 = (1 - hidden1**2) * first.weight.T
dhidden2 = (1 - hidden2**2) * (dhidden1 @ second.weight.T)
du_dt = dhidden2 @ last.weight.T""")


@variant("d2u_no_create_graph.ipynb", "mistake",
         "Task 2 forgets create_graph=True: d2u_dt2 is a constant for autograd (the grader gives Task 3 a u with a "
         "live graph, since the call freed the student's), so the parameters' gradients miss its part of the loss.",
         ["t2_d2u_create_graph", "t4_grad_values"], "create_graph")
def d2u_no_create_graph(nb, exercise):
    return edit(nb, 2, ", create_graph=True)[0]", ")[0]")


@variant("d2u_retain_not_create.ipynb", "mistake",
         "Task 2 uses retain_graph=True instead of create_graph=True: no error, but d2u_dt2 is a constant for "
         "autograd and the parameters' gradients miss its part of the loss.",
         ["t2_d2u_create_graph", "t4_grad_values"], "retain_graph=True was used")
def d2u_retain_not_create(nb, exercise):
    return edit(nb, 2, "create_graph=True)[0]", "retain_graph=True)[0]")


@variant("d2u_from_u.ipynb", "mistake", "Task 2 differentiates u again instead of du_dt (the first derivative again).",
         ["t2_d2u_value", "t2_d2u_autograd"], "d²u/dt²")
def d2u_from_u(nb, exercise):
    return edit(nb, 2, D2U, "d2u_dt2 = torch.autograd.grad(u, t, grad_outputs=torch.ones_like(u), create_graph=True)[0]")


@variant("residual_omega_not_squared.ipynb", "mistake", "Task 3 multiplies u by omega instead of omega**2.",
         ["t3_residual"], "ω appears squared")
def residual_omega_not_squared(nb, exercise):
    return edit(nb, 3, RESIDUAL, "residual = d2u_dt2 + omega * u")


@variant("loss_sum.ipynb", "mistake", "Task 3 sums the squared residuals instead of averaging them.",
         ["t3_loss"], "sum of the squares")
def loss_sum(nb, exercise):
    return edit(nb, 3, LOSS, "loss = (residual**2).sum()")


@variant("backward_twice.ipynb", "mistake",
         "Task 4 backpropagates the loss twice (retain_graph on the first): the gradients are doubled.",
         ["t4_grad_values"], "exactly 2 times")
def backward_twice(nb, exercise):
    return edit(nb, 4, BACKWARD, "loss.backward(retain_graph=True)\nloss.backward()")


@variant("grads_assigned_by_hand.ipynb", "mistake",
         "Task 4 computes the gradients with autograd.grad and assigns them to .grad by hand (right values).",
         ["t4_backward"], "by hand")
def grads_assigned_by_hand(nb, exercise):
    return edit(nb, 4, BACKWARD, """parameters = list(model.parameters())
for parameter, gradient in zip(parameters, torch.autograd.grad(loss, parameters)):
    parameter.grad = gradient""")


@variant("step_hardcoded_lr.ipynb", "mistake", "Task 5 types in a learning rate (0.01) instead of using lr.",
         ["t5_step"], "learning rate")
def step_hardcoded_lr(nb, exercise):
    return edit(nb, 5, "lr=lr)", "lr=0.01)")


@variant("untouched_exercise.ipynb", "mistake", "The exercise notebook as handed out (nothing filled in).",
         ALL_CHECKS, "nothing")
def untouched_exercise(nb, exercise):
    return exercise


# ---------------------------------------------------------------- writing


def manifest() -> bytes:
    out = [
        "# Generated by tests/corpus/make_pinn_residual.py -- edit that script, not this file.",
        "# kind: correct (full marks) | mistake (solution with one change).",
        "# failing_checks: the check ids the file must lose; [] means full marks.",
        "# message: a phrase the feedback of the first failing check must contain.",
        "assignment: pinn_residual",
        "solution: solutions/pinn_residual.ipynb",
        "checks: [" + ", ".join(ALL_CHECKS) + "]",
        "files:",
    ]
    for file, spec in VARIANTS.items():
        out += [f"  {file}:", f"    kind: {spec['kind']}", f"    description: {yaml_str(spec['description'])}",
                "    failing_checks: [" + ", ".join(spec["failing_checks"]) + "]"]
        if spec["message"] is not None:
            out.append(f"    message: {yaml_str(spec['message'])}")
    return ("\n".join(out) + "\n").encode("utf-8")


def generate() -> dict[str, bytes]:
    return make_corpus.generate(VARIANTS, SOLUTION, EXERCISE, manifest)


def main() -> int:
    return make_corpus.cli(__doc__, generate, OUT)


if __name__ == "__main__":
    sys.exit(main())
