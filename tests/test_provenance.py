"""The probe's provenance, tested without a kernel: the real probe runs in an IPython shell in one subprocess.

Each scenario is student code run task by task; the snapshots come back through the real
wire format (the probe's encoder, then the evidence schema), so these tests judge exactly
what checks will read: which recorded call produced a value, and whether a .grad is still
the one autograd filled.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT
from torchgrade.evidence import parse_snapshot

HARNESS = textwrap.dedent("""
    import io, json, sys
    sys.path.insert(0, sys.argv[1])
    from IPython.core.interactiveshell import InteractiveShell
    from torchgrade.instrument import prelude_source

    scenarios = json.loads(sys.stdin.read())
    shell = InteractiveShell.instance()
    results = {}
    for name, steps in scenarios.items():
        shell.reset(new_session=True)
        buffer, real = io.StringIO(), sys.stdout
        sys.stdout = buffer
        try:
            assert shell.run_cell(prelude_source()).success
            snapshots = {}
            for task, code, paths in steps:
                shell.run_cell(f"__torchgrade__.begin_task({task})")
                outcome = shell.run_cell(code)
                buffer.seek(0)
                buffer.truncate()
                shell.run_cell(f"__torchgrade__.snapshot({task}, {paths!r}, 'N:')")
                line = [l for l in buffer.getvalue().splitlines() if l.startswith("N:")][0]
                snapshots[task] = {"document": json.loads(line.split(" ", 1)[1]),
                                   "error": None if outcome.success else repr(outcome.error_in_exec)}
        finally:
            sys.stdout = real
        results[name] = snapshots
    print(json.dumps(results))
""")

SETUP = """import torch
x = torch.tensor([[2., 3., 2.], [2., 3., 3.]], requires_grad=True)
y = torch.tensor([[4., 5., 5.], [4., 5., 5.]], requires_grad=True)
f = x**3 + y**2
"""

SCENARIOS = {
    "id_reuse": [(1, SETUP + """
ones = torch.ones_like(f)
hit = False
for _ in range(500):
    freed = id(torch.autograd.grad(f, x, grad_outputs=ones, create_graph=True)[0])
    f_x = torch.empty_like(x, requires_grad=False)
    if id(f_x) == freed:
        hit = True
        break
f_x.copy_(3 * x**2)
""", ["f_x", "hit"])],
    "grads": [(1, SETUP + """
f.sum().backward()
kept = x.grad
(x * 2).sum().backward()          # accumulates into the same .grad
y.grad = 2 * y.detach()           # assigned by hand
""", ["x.grad", "y.grad"]),
              (2, """
x.grad.zero_()
(x * 3).sum().backward()          # zeroed first: a fresh start
y.grad = None
(y * 2).sum().backward()
y.grad.add_(1)                    # autograd's .grad changed in place after the pass
g = torch.autograd.grad((x**2).sum(), x)[0]
h = g.clone()
""", ["x.grad", "y.grad", "g", "h"]),
              (3, """
x.grad = None
y.grad = torch.ones_like(y)       # by hand, then a pass adds to it
(x * y).sum().backward()
""", ["x.grad", "y.grad"])],
    "entry_points": [(1, SETUP + """
import torch.nn as nn
from torch.func import grad, jacrev, vmap
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1)).double()
t = torch.linspace(0, 1, 5, dtype=torch.float64).reshape(5, 1).requires_grad_()
u = model(t)
du = torch.autograd.grad(u, t, torch.ones_like(u), create_graph=True)[0]
d2u = torch.autograd.grad(du, t, torch.ones_like(du), create_graph=True)[0]
scalar = lambda s: model(s.reshape(1, 1)).squeeze()
du_func = vmap(grad(scalar))(t.reshape(5))
d2u_func = vmap(grad(lambda s: grad(scalar)(s)))(t.reshape(5))
jac = torch.autograd.functional.jacobian(lambda a: a**2, x)
hess = torch.func.hessian(lambda a: (a**3).sum())(x.detach())
loss = (d2u**2).mean()
loss.backward()
pair = (du, {"k": 2.5})
""", ["du", "d2u", "du_func", "d2u_func", "jac", "hess", "model", "model.0.weight", "model.0.weight.grad", "pair",
      "pair.1.k", "model.9", "t.grad"])],
}


@pytest.fixture(scope="module")
def snapshots():
    result = subprocess.run([sys.executable, "-c", HARNESS, str(ROOT)], input=json.dumps(SCENARIOS),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    parsed = {}
    for name, steps in data.items():
        for task, item in steps.items():
            assert item["error"] is None, (name, task, item["error"])
            paths = next(s[2] for s in SCENARIOS[name] if s[0] == int(task))
            parsed[name, int(task)] = parse_snapshot(item["document"], int(task), paths)
    return parsed


def test_a_tensor_typed_in_at_a_freed_results_address_has_no_origin(snapshots):
    snapshot = snapshots["id_reuse", 1]
    assert snapshot.values["hit"].value == 1, "the control: CPython did reuse the freed result's address"
    f_x = snapshot.values["f_x"]
    assert f_x.grad_fn is not None and f_x.origin is None
    assert f_x.token not in set().union(*(c.result_tokens for c in snapshot.calls))


def test_grad_history_follows_the_objects(snapshots):
    first, second, third = (snapshots["grads", n] for n in (1, 2, 3))
    x_grad = first.values["x.grad"]
    assert x_grad.origin.via == "grad" and len(x_grad.origin.passes) == 2 and not x_grad.origin.modified
    assert first.values["y.grad"].origin is None  # assigned by hand after the pass
    assert len(second.values["x.grad"].origin.passes) == 1  # zero_() then one pass
    assert second.values["y.grad"].origin.modified  # changed in place after autograd filled it
    assert second.values["g"].origin.via == "result" and second.values["h"].origin is None  # a clone is not it
    assert len(third.values["x.grad"].origin.passes) == 1 and not third.values["x.grad"].origin.replaced_before
    assert third.values["y.grad"].origin.replaced_before


def test_every_entry_point_is_recorded_once_and_marks_its_results(snapshots):
    snapshot = snapshots["entry_points", 1]
    calls = {c.index: c for c in snapshot.calls}
    apis = [c.api for c in snapshot.calls]
    assert apis.count("autograd.grad") == 2 and apis.count("Tensor.backward") == 1
    assert "functional.jacobian" in apis and "func.vmap" in apis and "func.hessian" in apis
    for path, api in (("du", "autograd.grad"), ("jac", "functional.jacobian"), ("hess", "func.hessian")):
        assert calls[snapshot.values[path].origin.call].api == api, path
    vmapped = calls[snapshot.values["du_func"].origin.call]
    assert vmapped.api == "func.vmap" and "func.grad" in vmapped.inner_apis
    orders = {path: calls[snapshot.values[path].origin.call].order for path in ("du", "du_func", "d2u_func", "jac",
                                                                                  "hess")}
    assert orders == {"du": 1, "du_func": 1, "d2u_func": 2, "jac": 1, "hess": 2}
    # jacobian calls autograd.grad inside: not a second record
    assert all(c.api != "autograd.grad" or c.create_graph for c in snapshot.calls)
    du, d2u = snapshot.values["du"], snapshot.values["d2u"]
    assert du.grad_fn_token in calls[d2u.origin.call].graph_nodes  # the second derivative went through du


def test_modules_paths_and_containers(snapshots):
    snapshot = snapshots["entry_points", 1]
    model = snapshot.values["model"]
    assert model.kind == "module" and set(model.parameters) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    weight = model.parameters["0.weight"]
    assert weight.value.is_parameter and weight.grad.origin.via == "grad"
    assert snapshot.values["model.0.weight"].shape == (4, 1)
    assert snapshot.values["model.0.weight.grad"].token == weight.grad.token
    assert snapshot.values["pair"].kind == "sequence" and snapshot.values["pair.1.k"].value == 2.5
    assert snapshot.values["model.9"].kind == "missing" and "has no `9`" in snapshot.values["model.9"].reason
    assert snapshot.values["t.grad"].origin.via == "grad"
