"""Kernel-side probe: the only grader code that runs inside a student's kernel.

This file is not imported by the grader. Its text is sent as the first cell of
every instrumented notebook (see ``instrument.py``), so it must be
self-contained and must only use the standard library and torch.

Why it looks the way it does:
- Everything the probe needs from torch and the standard library is captured
  *before* any student code runs, so later monkey-patching of ``torch.Tensor``
  methods, ``json.dumps``, ``print`` or ``sys.stdout`` does not change what the
  probe reports.
- The probe's functions run with a private copy of the builtins as their globals
  (``_torchgrade_install`` rebuilds itself that way first), so a student cell that
  rebinds ``bool``, ``len`` or ``isinstance`` in the notebook, or in ``builtins``,
  changes nothing here. Tensors are read through ``torch._C.TensorBase``'s own
  descriptors with ``__torch_function__`` and Python dispatch turned off, so
  tensor subclasses, patched ``torch.Tensor`` methods and torch function or
  dispatch modes cannot change what is read.
- Values leave the kernel only as JSON (dtype, shape, a flat list of numbers,
  graph facts) written by the probe's own encoder (``json`` can be patched), one
  line per snapshot: the grader's nonce for that snapshot, an HMAC-SHA256
  signature, then the document. The key is a secret the launcher read from the
  grader before any student code existed; the probe takes it out of ``sys`` at
  install, so a forged line (printed, displayed, by a hook, by a replaced
  ``__torchgrade__``, or by rewriting the kernel's messages) has no valid
  signature. Scoring happens in the grader process; nothing here decides a grade.
- Autograd calls are recorded by wrapping ``Tensor.backward``,
  ``torch.autograd.backward`` and ``torch.autograd.grad``: which task they ran
  in, their ``create_graph``/``retain_graph`` arguments, the graph nodes they
  traversed and whether they raised.
"""


def _torchgrade_install(settings, _private=None):  # noqa: C901 - one closure keeps state away from student names
    if _private is None:
        # Rebuild this function with private globals (a copy of the pristine builtins): every name the
        # probe uses then resolves there, never in the notebook's namespace or in a patched builtins.
        import builtins as _builtins
        import types as _types

        private = {"__builtins__": dict(_builtins.__dict__), "__name__": "torchgrade_probe"}
        rebuilt = _types.FunctionType(_torchgrade_install.__code__, private, "_torchgrade_install")
        return rebuilt(settings, private)

    import builtins
    import inspect
    import json.encoder
    import sys
    import types

    import torch

    try:
        from _hashlib import hmac_digest
    except ImportError:  # Python without OpenSSL: HMAC from the C sha256 constructor
        import hashlib

        sha256 = hashlib.sha256

        def hmac_digest(key, message, _digest):
            key = key + bytes(64 - len(key)) if len(key) <= 64 else sha256(key).digest() + bytes(32)
            inner = sha256(bytes(b ^ 0x36 for b in key))
            inner.update(message)
            outer = sha256(bytes(b ^ 0x5C for b in key))
            outer.update(inner.digest())
            return outer.digest()

    secret = sys.__dict__.pop("_torchgrade_secret", "") or ""
    key = bytes.fromhex(secret) if secret else b""
    shell = get_ipython()  # noqa: F821 - provided by IPython; captured before any student code runs
    namespace = shell.user_ns

    tensor_base = torch._C.TensorBase
    tensor_type = torch.Tensor
    no_torch_function = torch._C.DisableTorchFunction
    try:  # Python dispatch (TorchDispatchMode, __torch_dispatch__) off too, where this torch has the guard
        python_keys = torch._C.DispatchKeySet(torch._C.DispatchKey.Python) | \
            torch._C.DispatchKeySet(torch._C.DispatchKey.PythonTLSSnapshot)
        exclude_keys = torch._C._ExcludeDispatchKeyGuard
    except AttributeError:
        python_keys, exclude_keys = None, lambda _keys: no_torch_function()
    encode_string = json.encoder.encode_basestring_ascii  # the C function
    exact_type = builtins.type
    type_name = type.__dict__["__name__"].__get__  # not a metaclass's __name__
    to_text = builtins.str
    slice_text = str.__getitem__
    join = str.join
    encode_ascii = str.encode
    float_repr = float.__repr__
    int_repr = int.__repr__
    infinity = float("inf")
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
    numel = tensor_base.numel

    class Unhooked:
        """No __torch_function__ (modes, subclasses) and no Python dispatch while the probe reads tensors."""

        __slots__ = ("guards",)

        def __enter__(self):
            self.guards = (no_torch_function(), exclude_keys(python_keys))
            for guard in self.guards:
                guard.__enter__()

        def __exit__(self, *exc):
            for guard in self.guards[::-1]:
                guard.__exit__(None, None, None)
            return False

    def text(value, limit):
        try:
            value = to_text(value)
        except BaseException:
            return "?"
        return slice_text(value, slice(0, limit)) if isinstance_(value, str) else "?"

    def flat_values(t):
        data = tolist(t)
        if exact_type(data) is not list:
            return [data]
        out = []

        def walk(items):
            for item in items:
                if exact_type(item) is list:
                    walk(item)
                else:
                    out.append(item)
        walk(data)
        return out

    def encode(value, out):
        """JSON for the probe's own plain data (exact types only); json.dumps could be patched."""
        kind = exact_type(value)
        if value is None:
            out.append("null")
        elif value is True:
            out.append("true")
        elif value is False:
            out.append("false")
        elif kind is int:
            out.append(int_repr(value))
        elif kind is float:
            if value != value:
                out.append("NaN")
            elif value == infinity:
                out.append("Infinity")
            elif value == -infinity:
                out.append("-Infinity")
            else:
                out.append(float_repr(value))
        elif isinstance_(value, str):
            out.append(encode_string(value))
        elif kind is list or kind is tuple:
            out.append("[")
            for position, item in enumerate(value):
                if position:
                    out.append(",")
                encode(item, out)
            out.append("]")
        elif kind is dict:
            out.append("{")
            for position, name in enumerate(value):
                if position:
                    out.append(",")
                out.append(encode_string(name if isinstance_(name, str) else to_text(name)))
                out.append(":")
                encode(value[name], out)
            out.append("}")
        else:
            raise TypeError("the probe cannot encode " + type_name(kind))

    def sign(document):
        if not key:
            return "-"
        return hmac_digest(key, encode_ascii(document, "ascii"), "sha256").hex()

    chunk = 2**20  # characters per output message
    max_values = settings["max_values"]
    snapshot_budget = {"left": 0, "total": settings.get("max_snapshot_values", max_values)}  # numbers per snapshot
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
            if type_name(exact_type(node)) == "AccumulateGrad":
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
            "grad_fn": None if grad_fn is None else type_name(exact_type(grad_fn)),
            "grad_fn_id": None if grad_fn is None else id_(grad_fn),
        }

    def as_tensor_list(value):
        if isinstance_(value, tensor_type):
            return [value]
        if exact_type(value) is tuple or exact_type(value) is list:  # no student __iter__
            return [v for v in value if isinstance_(v, tensor_type)]
        return []

    def flag(value):
        """A boolean argument as torch reads it; objects with a clever __bool__ count as False."""
        return value is True or (exact_type(value) is int and value != 0)

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
            "create_graph": flag(arguments.get("create_graph")),
            "retain_graph": None if retain is None else flag(retain),
            "gradient_given": gradient is not None,
            "allow_unused": flag(arguments.get("allow_unused")),
            "materialize_grads": flag(arguments.get("materialize_grads")),
            "outputs": [tensor_facts(t) for t in outputs if isinstance_(t, tensor_type)],
            "input_ids": [id_(t) for t in inputs],
            "graph_nodes": nodes,
            "leaf_ids": leaves,
            "result_ids": [],
            "raised": None,
        }

    def bind(names, args, kwargs):
        """Arguments by name, as the original signature binds them (inspect could be patched)."""
        if len_(args) > len_(names):
            raise TypeError("too many positional arguments")
        arguments = {}
        for position in range(len_(args)):
            arguments[names[position]] = args[position]
        for name in kwargs:
            if name not in names or name in arguments:
                raise TypeError("unexpected argument " + text(name, 40))
            arguments[name] = kwargs[name]
        return arguments

    def record(api, original):
        names = tuple(inspect.signature(original).parameters)

        def recorded(*args, **kwargs):
            if state["depth"]:
                return original(*args, **kwargs)  # inner call of an outer recorded one
            try:
                with Unhooked():
                    entry = describe_call(api, bind(names, args, kwargs))
            except Exception as problem:  # bad arguments: let torch raise its own error
                entry = {"api": api, "task": state["task"], "unreadable_arguments": text(problem, 200),
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
                entry["raised"] = {"type": type_name(exact_type(error)), "message": text(error, 400)}
                raise
            finally:
                state["depth"] -= 1
            with Unhooked():
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
        if facts["numel"] <= max_values and facts["numel"] <= snapshot_budget["left"]:
            snapshot_budget["left"] -= facts["numel"]
            try:
                values = flat_values(t)
                if any(exact_type(v) not in (float, int, bool) for v in values):
                    raise TypeError("values that are not real numbers")
                facts["values"] = values
            except Exception as problem:
                facts["unreadable"] = text(problem, 200)
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
            return {"kind": "tensor_subclass", "type": type_name(kind)}
        if kind is bool or kind is int or kind is float:
            return {"kind": "number", "value": value}
        if (kind is tuple or kind is list) and depth < 2:
            return {"kind": type_name(kind), "length": len_(value),
                    "items": [describe(value[i], depth + 1) for i in range(min(len_(value), 8))]}
        return {"kind": "other", "type": type_name(kind)}

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
            snapshot_budget["left"] = snapshot_budget["total"]  # the grader refuses bigger snapshots anyway
            with Unhooked():
                payload = {
                    "task": task,
                    "values": {path: lookup(namespace, path) for path in paths},
                    "calls": [c for c in calls if c["task"] == task],
                    "dropped_calls": dropped_calls.get(task, 0),
                    "integrity": integrity_problems(),
                }
            out = []
            encode(payload, out)
            document = join("", out)
            line = nonce + sign(nonce + document) + " " + document + "\n"
            for start in range(0, len_(line), chunk):  # small messages: the grader caps their size
                write(stdout, slice_text(line, slice(start, start + chunk)))
                flush(stdout)

        def values_match(self, value, expected):
            """Used by bridge cells: is a student value usable by the next task?"""
            try:
                with Unhooked():
                    return (exact_type(value) is tensor_type and read["grad_fn"](value) is not None
                            and list(read["shape"](value)) == list(read["shape"](expected))
                            and flat_values(value) == flat_values(expected))
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

    # The student's CPU budget starts now: the launcher allowed extra seconds for start-up only.
    cpu_budget = sys.__dict__.pop("_torchgrade_cpu_budget", None)
    if cpu_budget:
        try:
            import resource

            usage = resource.getrusage(resource.RUSAGE_SELF)
            used = int(usage.ru_utime + usage.ru_stime) + 1
            _, ceiling = resource.getrlimit(resource.RLIMIT_CPU)
            soft, hard = used + cpu_budget[0], used + cpu_budget[1]
            if ceiling != resource.RLIM_INFINITY:
                soft, hard = min(soft, ceiling), min(hard, ceiling)
            resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
        except (ImportError, ValueError, OSError):
            pass  # the launcher's (looser) limit stays in force
    return Probe()
