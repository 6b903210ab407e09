"""torchgrade.flags: static analysis of submitted cells, and flags from what the runs showed (no kernel needed)."""

from __future__ import annotations

import nbformat
import pytest

from conftest import ROOT
from torchgrade.flags import flag_observations, flag_sources

SOLUTION = ROOT / "solutions" / "computational_graph.ipynb"


def kinds(source: str) -> set[str]:
    return {flag.kind for flag in flag_sources([(3, source)])}


@pytest.mark.parametrize("source, kind", [
    ("__torchgrade__.snapshot = print", "probe-access"),
    ("x = globals()['__torchgrade__']", "probe-access"),
    ("snap = __torchgrade__.snapshot.__func__.__closure__[0].cell_contents", "introspection"),
    ("import gc\nfor o in gc.get_objects(): pass", "introspection"),
    ("import sys\nf = sys._getframe(1).f_globals", "introspection"),
    ("import inspect\ninspect.currentframe().f_back", "introspection"),
    ("import torch\ntorch.allclose = lambda *a, **k: True", "patch"),
    ("import torch as t\nt.Tensor.__eq__ = lambda a, b: True", "patch"),
    ("import numpy as np\nnp.allclose = lambda *a, **k: True", "patch"),
    ("from torch import Tensor\nTensor.tolist = lambda self: [1.0]", "patch"),
    ("import torch\nsetattr(torch.autograd, 'grad', None)", "patch"),
    ("import builtins\nbuiltins.print = None", "patch"),
    ("import sys\nsys.excepthook = print", "patch"),
    ("get_ipython().events.register('pre_run_cell', print)", "ipython-internals"),
    ("shell = get_ipython()\nshell.set_custom_exc((Exception,), print)", "ipython-internals"),
    ("from jupyter_client.session import Session\nSession.send = print", "ipython-internals"),
    ("import ctypes\nctypes.string_at(0)", "ctypes"),
    ("open('/proc/1/environ').read()", "sensitive-file"),
    ("open('/proc/self/maps').read()", "sensitive-file"),
    ("open('.env').read()", "sensitive-file"),
    ("import os\nos.kill(os.getppid(), 9)", "signal"),
    ("exec(bytes.fromhex('7072696e74').decode())", "dynamic-code"),
    ("m = __import__('cty' + 'pes')", "dynamic-code"),
    ("%%bash\ncat /proc/1/cmdline", "sensitive-file"),  # not Python: scanned as text
    ("x = (\n" * 200 + ")" * 200 + "\nimport ctypes", "ctypes"),  # deeply nested: still seen
])
def test_each_tampering_pattern_is_flagged(source, kind):
    assert kind in kinds(source), flag_sources([(3, source)])


@pytest.mark.parametrize("source", [
    "import torch\nx = torch.tensor([1.0], requires_grad=True)\nf = (x ** 3).sum()\nf.backward()",
    "import torch\ntorch.backends.cudnn.deterministic = True\ntorch.manual_seed(0)",
    "import numpy as np\nnp.random.seed(1)\nnp.set_printoptions(precision=3)",
    "import os\nprint(os.environ.get('HOME'))",
    "f_x, = torch.autograd.grad(f, x, create_graph=True)",
    "!pip install torch\n%matplotlib inline\nx = 1",
    "def f(x):\n    return x.grad",
])
def test_ordinary_autograd_code_is_not_flagged(source):
    assert flag_sources([(1, source)]) == []


def test_the_solution_is_not_flagged():
    notebook = nbformat.read(SOLUTION, as_version=4)
    cells = [(i, c.source) for i, c in enumerate(notebook.cells, 1) if c.cell_type == "code"]
    assert flag_sources(cells) == []


def test_flags_are_bounded_and_name_where():
    flags = flag_sources([(n, "import ctypes\n" * 50) for n in range(1, 20)])
    assert len(flags) == 3 and flags[0].detail.startswith("cell 1, line 1")


def test_observed_flags():
    unavailable = [(1, "the values of task 1 could not be read (a forged snapshot was printed in its place (tampering))"),
                   (2, "task 2 ran out of time, so its values could not be read")]
    death = "the Python kernel died while running cell 9 (task 5): it was stopped by signal SIGTERM"
    flags = flag_observations(unavailable, [death], sends_signals=True)
    assert [f.kind for f in flags] == ["snapshot-rejected", "killed-by-signal"]
    assert flag_observations([], [death], sends_signals=False) == []  # a crash alone is no tampering
