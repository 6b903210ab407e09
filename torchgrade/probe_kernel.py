"""Kernel-side probe: the only grader code that runs inside a student's kernel.

This file is not imported by the grader. Its text is sent as the first cell of
every instrumented notebook (see ``instrument.py``), so it must be
self-contained and must only use the standard library and torch.

Why it looks the way it does:
- Everything the probe needs from torch and the standard library is captured
  *before* any student code runs, so later monkey-patching of ``torch.Tensor``
  methods, ``json.dumps``, ``print`` or ``sys.stdout`` does not change what the
  probe reports.
- Values leave the kernel only as JSON (dtype, shape, a flat list of numbers,
  graph facts), one line per snapshot, tagged with a per-snapshot nonce that
  the grader generated and that no student cell has seen. Scoring happens in
  the grader process; nothing here decides a grade.
- Autograd calls are recorded by wrapping ``Tensor.backward``,
  ``torch.autograd.backward`` and ``torch.autograd.grad``: which task they ran
  in, their ``create_graph``/``retain_graph`` arguments, the graph nodes they
  traversed and whether they raised.
"""


def _torchgrade_install(settings):  # noqa: C901 - one closure keeps state away from student names
    import builtins
    import inspect
    import json
    import sys
    import types

    import torch

    tensor_base = torch._C.TensorBase
    tensor_type = torch.Tensor
    dumps = json.dumps
    exact_type = builtins.type
    to_text = builtins.str
    isinstance_ = builtins.isinstance
    len_ = builtins.len
    id_ = builtins.id
    getattr_ = builtins.getattr
    stdout = sys.stdout
    write = exact_type(stdout).write
    flush = exact_type(stdout).flush

    def descriptor(name):
        return tensor_base.__dict__[name].__get__

    read = {name: descriptor(name) for name in ("dtype", "shape", "requires_grad", "is_leaf", "grad_fn", "grad")}
    tolist = tensor_base.tolist
    detach = tensor_base.detach
    reshape = tensor_base.reshape
    numel = tensor_base.numel

    max_values = settings["max_values"]
    max_nodes = settings["max_nodes"]
    max_calls = settings["max_calls_per_task"]
    state = {"task": 0, "depth": 0}
    calls = []
    dropped_calls = {}

    def walk_graph(roots):
        """Ids of non-leaf graph nodes and of leaf tensors reachable from roots (bounded)."""
        nodes, leaves, seen, stack = [], [], set(), [r for r in roots if r is not None]
        while stack and len_(seen) < max_nodes:
            node = stack.pop()
            if id_(node) in seen:
                continue
            seen.add(id_(node))
            if exact_type(node).__name__ == "AccumulateGrad":
                leaves.append(id_(getattr_(node, "variable", None)))
                continue
            nodes.append(id_(node))
            for successor, _ in getattr_(node, "next_functions", ()) or ():
                if successor is not None:
                    stack.append(successor)
        return nodes, leaves

    def tensor_facts(t):
        grad_fn = read["grad_fn"](t)
        return {
            "id": id_(t),
            "shape": list(read["shape"](t)),
            "numel": numel(t),
            "grad_fn": None if grad_fn is None else exact_type(grad_fn).__name__,
            "grad_fn_id": None if grad_fn is None else id_(grad_fn),
        }

    def as_tensor_list(value):
        if isinstance_(value, tensor_type):
            return [value]
        if isinstance_(value, (tuple, list)):
            return [v for v in value if isinstance_(v, tensor_type)]
        return []

    def describe_call(api, arguments):
        if api == "autograd.grad":
            outputs = as_tensor_list(arguments.get("outputs"))
            gradient = arguments.get("grad_outputs")
            inputs = as_tensor_list(arguments.get("inputs"))
        elif api == "autograd.backward":
            outputs = as_tensor_list(arguments.get("tensors"))
            gradient = arguments.get("grad_tensors")
            inputs = as_tensor_list(arguments.get("inputs"))
        else:
            outputs = [arguments.get("self")]
            gradient = arguments.get("gradient")
            inputs = as_tensor_list(arguments.get("inputs"))
        nodes, leaves = walk_graph([read["grad_fn"](t) for t in outputs if isinstance_(t, tensor_type)])
        retain = arguments.get("retain_graph")
        return {
            "api": api,
            "task": state["task"],
            "create_graph": bool(arguments.get("create_graph") or False),
            "retain_graph": None if retain is None else bool(retain),
            "gradient_given": gradient is not None,
            "allow_unused": bool(arguments.get("allow_unused") or False),
            "materialize_grads": bool(arguments.get("materialize_grads") or False),
            "outputs": [tensor_facts(t) for t in outputs if isinstance_(t, tensor_type)],
            "input_ids": [id_(t) for t in inputs],
            "graph_nodes": nodes,
            "leaf_ids": leaves,
            "result_ids": [],
            "raised": None,
        }

    def record(api, original):
        signature = inspect.signature(original)

        def recorded(*args, **kwargs):
            if state["depth"]:
                return original(*args, **kwargs)  # inner call of an outer recorded one
            try:
                bound = signature.bind(*args, **kwargs)
                entry = describe_call(api, dict(bound.arguments))
            except Exception as problem:  # bad arguments: let torch raise its own error
                entry = {"api": api, "task": state["task"], "unreadable_arguments": to_text(problem)[:200],
                         "raised": None, "outputs": [], "graph_nodes": [], "leaf_ids": [], "result_ids": []}
            task_calls = sum(1 for c in calls if c["task"] == state["task"])
            if task_calls < max_calls:
                calls.append(entry)
            else:
                dropped_calls[state["task"]] = dropped_calls.get(state["task"], 0) + 1
            state["depth"] += 1
            try:
                result = original(*args, **kwargs)
            except BaseException as error:
                entry["raised"] = {"type": exact_type(error).__name__, "message": to_text(error)[:400]}
                raise
            finally:
                state["depth"] -= 1
            entry["result_ids"] = [id_(t) for t in as_tensor_list(result)]
            return result

        recorded.__name__ = getattr_(original, "__name__", api)
        recorded.__doc__ = getattr_(original, "__doc__", None)
        recorded.__wrapped__ = original
        return recorded

    tensor_type.backward = record("Tensor.backward", tensor_type.backward)
    torch.autograd.backward = record("autograd.backward", torch.autograd.backward)
    torch.autograd.grad = record("autograd.grad", torch.autograd.grad)

    def describe_tensor(t):
        facts = tensor_facts(t)
        grad_fn = read["grad_fn"](t)
        _, leaves = walk_graph([grad_fn]) if grad_fn is not None else ([], [])
        facts.update({
            "kind": "tensor",
            "dtype": to_text(read["dtype"](t)).replace("torch.", ""),
            "requires_grad": bool(read["requires_grad"](t)),
            "is_leaf": bool(read["is_leaf"](t)),
            "has_grad": read["grad"](t) is not None,
            "leaf_ids": leaves,
            "values": None,
        })
        if facts["numel"] <= max_values:
            try:
                facts["values"] = tolist(reshape(detach(t), (-1,)))
            except Exception as problem:
                facts["unreadable"] = to_text(problem)[:200]
        else:
            facts["too_large"] = True
        return facts

    def describe(value, depth=0):
        kind = exact_type(value)
        if value is None:
            return {"kind": "none"}
        if kind is tensor_type:
            return describe_tensor(value)
        if isinstance_(value, tensor_type):
            return {"kind": "tensor_subclass", "type": kind.__name__}
        if kind in (bool, int, float):
            return {"kind": "number", "value": value}
        if kind in (tuple, list) and depth < 2:
            return {"kind": kind.__name__, "length": len_(value),
                    "items": [describe(v, depth + 1) for v in value[:8]]}
        return {"kind": "other", "type": kind.__name__}

    def lookup(namespace, path):
        """Resolve 'name' or 'name.grad' without running any student-defined code."""
        name, _, attribute = path.partition(".")
        if name not in namespace:
            return {"kind": "missing"}
        value = namespace[name]
        if not attribute:
            return describe(value)
        if exact_type(value) is not tensor_type:
            return {"kind": "missing", "owner_kind": describe(value)["kind"]}
        if attribute == "grad":
            return describe(read["grad"](value))
        return {"kind": "missing"}

    def integrity_problems():
        problems = []
        if tensor_type.backward is not patched["Tensor.backward"]:
            problems.append("Tensor.backward was replaced")
        if torch.autograd.grad is not patched["autograd.grad"]:
            problems.append("torch.autograd.grad was replaced")
        if torch.autograd.backward is not patched["autograd.backward"]:
            problems.append("torch.autograd.backward was replaced")
        return problems

    patched = {"Tensor.backward": tensor_type.backward, "autograd.grad": torch.autograd.grad,
               "autograd.backward": torch.autograd.backward}

    class Probe:
        __slots__ = ()

        def begin_task(self, number):
            state["task"] = number

        def snapshot(self, task, paths, nonce):
            namespace = get_ipython().user_ns  # noqa: F821 - provided by IPython
            payload = {
                "task": task,
                "values": {path: lookup(namespace, path) for path in paths},
                "calls": [c for c in calls if c["task"] == task],
                "dropped_calls": dropped_calls.get(task, 0),
                "integrity": integrity_problems(),
            }
            write(stdout, nonce + dumps(payload, allow_nan=True) + "\n")
            flush(stdout)

        def values_match(self, value, expected):
            """Used by bridge cells: is a student value usable by the next task?"""
            try:
                return (exact_type(value) is tensor_type and read["grad_fn"](value) is not None
                        and list(read["shape"](value)) == list(read["shape"](expected))
                        and tolist(detach(value)) == tolist(detach(expected)))
            except Exception:
                return False

    # Colab-only helpers are stubbed so `from google.colab import drive` does not stop grading.
    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    for helper in ("drive", "files", "output", "auth", "userdata"):
        stub = types.ModuleType("google.colab." + helper)
        stub.mount = stub.upload = stub.download = stub.enable_custom_widget_manager = lambda *a, **k: {}
        setattr(colab, helper, stub)
        sys.modules["google.colab." + helper] = stub
    google.colab = colab
    sys.modules.setdefault("google", google)
    sys.modules["google.colab"] = colab

    return Probe()
