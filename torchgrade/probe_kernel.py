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
  ``torch.autograd.backward``, ``torch.autograd.grad``, ``torch.autograd.functional.*``
  and the ``torch.func`` transforms (at the transform, and when the function it made
  is called): which task they ran in, their ``create_graph``/``retain_graph``
  arguments, the graph nodes they traversed and whether they raised. A call made
  inside a recorded call is not recorded again (the outer one notes its kind).
- Provenance: every object is named by a *token* (a counter) kept in a registry
  whose entries hold a weak reference (graph nodes, which cannot be weakly
  referenced, are held), so an address CPython reuses for a new object never
  inherits an old object's token. The results a recorded call returned and the
  ``.grad`` tensors a backward pass filled are marked with that call, their
  version counter and a copy of their values; at snapshot time a value that was
  assigned by hand, replaced or changed in place afterwards shows no (or a
  modified) origin.
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
    import weakref
    from collections import OrderedDict

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

    secret, _, generation = (sys.__dict__.pop("_torchgrade_secret", "") or "").partition(" ")
    key = bytes.fromhex(secret) if secret else b""
    # a replacement kernel numbers on from where no predecessor could have reached: its calls and tokens stay unique
    generation = int(generation) if generation.isdigit() and len(generation) < 6 else 0
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
    clone = tensor_base.clone
    detach = tensor_base.detach
    any_nonzero = tensor_base.any
    version = descriptor("_version")
    torch_equal = torch.equal
    nan_to_num = torch.nan_to_num
    parameter_type = torch.nn.Parameter
    module_type = torch.nn.Module
    mro_of = type.__dict__["__mro__"].__get__
    get_attribute = object.__getattribute__
    ordered_dict = OrderedDict
    keys_of = dict.keys
    dict_getitem = dict.__getitem__
    list_ = builtins.list

    def object_dict(value):
        return get_attribute(value, "__dict__")

    def dict_keys(mapping):
        return list_(keys_of(mapping))

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
    max_held = settings.get("max_held_nodes", 200_000)
    state = {"task": 0, "depth": 0, "inner": None, "order": 0,
             "next_token": generation * 10**12 + 1, "next_call": generation * 10**9}
    calls = []
    dropped_calls = {}

    # ---- identity: a token per object, stable while the object lives, never reused (never a bare id())
    weak_ref = weakref.ref
    registry = {}  # id -> (reference, token); the reference proves the id still names the same object
    held_nodes = []  # graph nodes cannot be weakly referenced: holding them keeps their ids unique

    def forget(reference, key):
        """A tensor died: its id may be reused, and its saved values are no longer needed."""
        entry = registry.get(key)
        if entry is not None and entry[0] is reference:
            del registry[key]
            produced.pop(entry[1], None)

    def token_of(obj):
        key = id_(obj)
        entry = registry.get(key)
        if entry is not None and entry[0]() is obj:
            return entry[1]
        try:
            reference = weak_ref(obj, lambda r, key=key: forget(r, key))
        except TypeError:  # graph nodes: hold them (bounded), so their id cannot be reused
            if len_(held_nodes) >= max_held:
                return -1
            held_nodes.append(obj)
            reference = (lambda held=obj: held)
        token = state["next_token"]
        state["next_token"] = token + 1
        registry[key] = (reference, token)
        return token

    # ---- provenance: which recorded call produced which object (by token), and its values then
    produced = {}  # token -> {"call", "via", "passes", "replaced_before", "version", "copy"}

    def frozen_copy(t):
        if numel(t) > max_values:
            return None
        return clone(detach(t))

    def unchanged(t, info):
        if version(t) != info["version"]:
            return False
        copy = info["copy"]
        if copy is None:
            return True
        now = detach(t)
        return list(read["shape"](now)) == list(read["shape"](copy)) and \
            bool(torch_equal(nan_to_num(now), nan_to_num(copy)))

    def mark(t, call, via, passes=(), replaced_before=False):
        token = token_of(t)
        produced[token] = {"call": call, "via": via, "passes": list(passes), "replaced_before": replaced_before,
                           "version": version(t), "copy": frozen_copy(t)}
        return token

    def origin_of(t):
        info = produced.get(token_of(t))
        if info is None:
            return None
        return {"call": info["call"], "via": info["via"], "passes": info["passes"],
                "modified": not unchanged(t, info), "replaced_before": info["replaced_before"]}

    def walk_graph(roots, keep_tokens=True):
        """Tokens of non-leaf graph nodes, and the leaf tensors reachable from roots (bounded)."""
        nodes, leaves, seen, visited, stack = [], [], set(), [], [r for r in roots if r is not None]
        while stack and len_(seen) < max_nodes:
            node = stack.pop()
            visited.append(node)  # alive until the walk ends, so ids stay unique during it
            if id_(node) in seen:
                continue
            seen.add(id_(node))
            if type_name(exact_type(node)) == "AccumulateGrad":
                variable = getattr_(node, "variable", None)
                if variable is not None:
                    leaves.append(variable)
                continue
            if keep_tokens:
                nodes.append(token_of(node))
            for successor, _ in getattr_(node, "next_functions", ()) or ():
                if successor is not None:
                    stack.append(successor)
        return nodes, leaves

    def grad_fn_token(t):
        grad_fn = read["grad_fn"](t)
        return None if grad_fn is None else token_of(grad_fn)

    def tensors_in(value, depth=0):
        """Tensors in a result: a tensor, or tuples/lists of them (exact types only: no student __iter__)."""
        if isinstance_(value, tensor_type):
            return [value]
        if (exact_type(value) is tuple or exact_type(value) is list) and depth < 3:
            found = []
            for item in value:
                found.extend(tensors_in(item, depth + 1))
            return found
        return []

    def flag(value):
        """A boolean argument as torch reads it; objects with a clever __bool__ count as False."""
        return value is True or (exact_type(value) is int and value != 0)

    def new_entry(api):
        index = state["next_call"]
        state["next_call"] = index + 1
        return {"index": index, "api": api, "task": state["task"], "create_graph": False, "retain_graph": None,
                "gradient_given": False, "allow_unused": False, "materialize_grads": False, "output_shapes": [],
                "output_tokens": [], "input_tokens": [], "graph_nodes": [], "leaf_tokens": [], "result_tokens": [],
                "filled_tokens": [], "inner_apis": [], "order": 0, "transform": None, "raised": None}

    def describe_call(entry, arguments):
        """What a call's arguments say, and the leaves whose .grad a backward pass may fill."""
        api = entry["api"]
        if api == "autograd.grad":
            outputs, gradient = tensors_in(arguments.get("outputs")), arguments.get("grad_outputs")
        elif api == "autograd.backward":
            outputs, gradient = tensors_in(arguments.get("tensors")), arguments.get("grad_tensors")
        elif api == "Tensor.backward":
            outputs, gradient = tensors_in(arguments.get("self")), arguments.get("gradient")
        else:  # torch.autograd.functional.*: the function's outputs are only known afterwards
            outputs, gradient = [], arguments.get("v")
        nodes, leaves = walk_graph([read["grad_fn"](t) for t in outputs])
        retain = arguments.get("retain_graph")
        entry.update({
            "create_graph": flag(arguments.get("create_graph")),
            "retain_graph": None if retain is None else flag(retain),
            "gradient_given": gradient is not None,
            "allow_unused": flag(arguments.get("allow_unused")),
            "materialize_grads": flag(arguments.get("materialize_grads")),
            "output_shapes": [list(read["shape"](t)) for t in outputs],
            "output_tokens": [token_of(t) for t in outputs],
            "input_tokens": [token_of(t) for t in tensors_in(arguments.get("inputs"))],
            "graph_nodes": nodes,
            "leaf_tokens": [token_of(t) for t in leaves],
        })
        return leaves

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

    def keep(entry):
        task_calls = sum(1 for c in calls if c["task"] == entry["task"])
        if task_calls < max_calls:
            calls.append(entry)
        else:
            dropped_calls[entry["task"]] = dropped_calls.get(entry["task"], 0) + 1

    def grads_before(leaves):
        """Each leaf's .grad before a pass, and what it was: none, autograd's (its passes), zeros, or by hand."""
        before = []
        for leaf in leaves:
            old = read["grad"](leaf)
            if old is None:
                before.append((leaf, None, -1, "fresh", []))
                continue
            info = produced.get(token_of(old))
            if info is not None and info["via"] == "grad" and unchanged(old, info):
                before.append((leaf, old, version(old), "chain", info["passes"]))
                continue
            zero = numel(old) <= max_values and not bool(any_nonzero(detach(old)))
            before.append((leaf, old, version(old), "fresh" if zero else "hand", []))
        return before

    def note_filled(entry, before):
        """After a backward pass: every .grad it created or added to is autograd's, with its history."""
        for leaf, old, old_version, kind, passes in before:
            new = read["grad"](leaf)
            if new is None or (new is old and version(new) == old_version):
                continue  # this pass did not touch it (inputs= left it out, or it raised first)
            history = passes if kind == "chain" else []
            token = mark(new, entry["index"], "grad", history + [entry["index"]], kind == "hand")
            entry["filled_tokens"].append(token)

    def own_order(api, inner, top):
        """How many derivatives deep a call goes: hessians 2, vmap passes its inside through, autograd.grad and
        backward called inside another entry point are its implementation (0), any other entry point adds 1."""
        if api == "func.hessian" or api == "functional.hessian":
            return 2
        if api == "func.vmap":
            return inner
        if api[:9] == "autograd." or api == "Tensor.backward":
            return 1 if top else 0
        return 1 + inner

    def run_inner(api, function, args, kwargs):
        """An entry point called inside a recorded call: not recorded again; its kind and depth count."""
        if state["inner"] is not None and api != "func.vmap":
            state["inner"].add(api)
        outer, state["order"] = state["order"], 0
        try:
            return function(*args, **kwargs)
        finally:
            state["order"] = max(outer, own_order(api, state["order"], False))

    def run_recorded(entry, original, args, kwargs, before=()):
        state["depth"] += 1
        outer_inner, state["inner"] = state["inner"], set()
        state["order"] = 0
        try:
            result = original(*args, **kwargs)
        except BaseException as error:
            entry["raised"] = {"type": type_name(exact_type(error)), "message": text(error, 400)}
            raise
        finally:
            state["depth"] -= 1
            entry["inner_apis"] = sorted(state["inner"])
            entry["order"] = own_order(entry["api"], state["order"], True)
            state["inner"] = outer_inner
            with Unhooked():
                note_filled(entry, before)
        with Unhooked():
            found = tensors_in(result)
            entry["result_tokens"] = [mark(t, entry["index"], "result") for t in found]
            if entry["api"][:5] == "func.":
                entry["create_graph"] = any(read["grad_fn"](t) is not None for t in found)
        return result

    def record(api, original):
        names = tuple(inspect.signature(original).parameters)

        def recorded(*args, **kwargs):
            if state["depth"]:
                return run_inner(api, original, args, kwargs)  # inner call of an outer recorded one
            entry, before = new_entry(api), []
            try:
                with Unhooked():
                    leaves = describe_call(entry, bind(names, args, kwargs))
                    if api in ("Tensor.backward", "autograd.backward"):
                        before = grads_before(leaves)
            except Exception as problem:  # bad arguments: let torch raise its own error
                entry["unreadable_arguments"] = text(problem, 200)
            keep(entry)
            return run_recorded(entry, original, args, kwargs, before)

        return disguise(recorded, original, api)

    def record_transform(api, original, returns_function=True):
        """torch.func transforms: record the transform, and each call of the function it returns."""
        def transform(*args, **kwargs):
            made = original(*args, **kwargs)
            index = None
            if not state["depth"]:  # a transform made inside a recorded call is not recorded, but its calls count
                entry = new_entry(api)
                keep(entry)
                index = entry["index"]
            if returns_function:
                return disguise(transformed(api, made, index), made, api)
            if exact_type(made) is tuple and len_(made) >= 2:  # func.vjp: (output, vjp_fn[, aux])
                return made[:1] + (disguise(transformed(api, made[1], index), made[1], api),) + made[2:]
            return made

        return disguise(transform, original, api)

    def transformed(api, function, transform_index):
        def call(*args, **kwargs):
            if state["depth"]:
                return run_inner(api, function, args, kwargs)
            entry = new_entry(api)
            entry["transform"] = transform_index
            with Unhooked():
                entry["input_tokens"] = [token_of(t) for t in tensors_in(list(args))]
            keep(entry)
            return run_recorded(entry, function, args, kwargs)
        return call

    def record_vmap(original):
        """vmap is no autograd call itself; a call of a vmapped function counts when a transform ran inside."""
        def vmap(*args, **kwargs):
            mapped = original(*args, **kwargs)

            def call(*inner_args, **inner_kwargs):
                if state["depth"]:
                    return run_inner("func.vmap", mapped, inner_args, inner_kwargs)
                entry = new_entry("func.vmap")
                result = run_recorded(entry, mapped, inner_args, inner_kwargs)
                if entry["inner_apis"]:
                    keep(entry)
                return result
            return disguise(call, mapped, "func.vmap")
        return disguise(vmap, original, "func.vmap")

    def disguise(wrapper, original, api):
        wrapper.__name__ = getattr_(original, "__name__", api)
        wrapper.__doc__ = getattr_(original, "__doc__", None)
        wrapper.__wrapped__ = original
        return wrapper

    functional = torch.autograd.functional
    func = torch.func
    patched = {}

    def install(owner, attribute, api, wrapper):
        setattr(owner, attribute, wrapper)
        patched[(owner, attribute)] = (api, wrapper)

    install(tensor_type, "backward", "Tensor.backward", record("Tensor.backward", tensor_type.backward))
    install(torch.autograd, "backward", "torch.autograd.backward", record("autograd.backward", torch.autograd.backward))
    install(torch.autograd, "grad", "torch.autograd.grad", record("autograd.grad", torch.autograd.grad))
    for name in ("jacobian", "hessian", "vjp", "jvp", "hvp"):
        install(functional, name, "torch.autograd.functional." + name,
                record("functional." + name, getattr_(functional, name)))
    for name in ("grad", "grad_and_value", "jacrev", "jacfwd", "hessian"):
        install(func, name, "torch.func." + name, record_transform("func." + name, getattr_(func, name)))
    install(func, "vjp", "torch.func.vjp", record_transform("func.vjp", func.vjp, returns_function=False))
    vmap = record_vmap(func.vmap)
    install(func, "vmap", "torch.func.vmap", vmap)
    install(torch, "vmap", "torch.vmap", vmap)

    # ---- reading values for a snapshot
    def describe_tensor(t, with_grad=False):
        grad_fn = read["grad_fn"](t)
        _, leaves = walk_graph([grad_fn], keep_tokens=False) if grad_fn is not None else ([], [])
        facts = {
            "kind": "tensor",
            "token": token_of(t),
            "shape": list(read["shape"](t)),
            "numel": numel(t),
            "dtype": to_text(read["dtype"](t)).replace("torch.", ""),
            "requires_grad": bool(read["requires_grad"](t)),
            "is_leaf": bool(read["is_leaf"](t)),
            "is_parameter": exact_type(t) is parameter_type,
            "has_grad": bool(read["is_leaf"](t)) and read["grad"](t) is not None,  # non-leaf .grad warns
            "grad_fn": None if grad_fn is None else type_name(exact_type(grad_fn)),
            "grad_fn_token": None if grad_fn is None else token_of(grad_fn),
            "leaf_tokens": [token_of(leaf) for leaf in leaves],
            "origin": origin_of(t),
            "values": None,
        }
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

    def is_tensor(value):
        return exact_type(value) is tensor_type or exact_type(value) is parameter_type

    def is_module(value):
        return module_type in mro_of(exact_type(value))

    def module_dict(value, name):
        try:
            found = object_dict(value).get(name)
        except Exception:
            return {}
        return found if exact_type(found) is dict or exact_type(found) is ordered_dict else {}

    def describe_module(module):
        parameters, buffers, truncated = {}, {}, False
        for prefix, owner in named_modules(module):
            for name, tensor in dict_items(module_dict(owner, "_parameters")):
                if tensor is None or not is_tensor(tensor):
                    continue
                if len_(parameters) >= 64:
                    truncated = True
                    break
                grad = read["grad"](tensor)
                parameters[prefix + name] = {"value": describe_tensor(tensor),
                                             "grad": None if grad is None else describe_tensor(grad)}
            for name, tensor in dict_items(module_dict(owner, "_buffers")):
                if tensor is not None and is_tensor(tensor) and len_(buffers) < 64:
                    buffers[prefix + name] = describe_tensor(tensor)
        return {"kind": "module", "type_name": type_name(exact_type(module)), "parameters": parameters,
                "buffers": buffers, "truncated": truncated}

    def named_modules(module, prefix="", depth=0):
        found = [(prefix, module)]
        if depth < 8:
            for name, child in dict_items(module_dict(module, "_modules")):
                if child is not None and is_module(child) and len_(found) < 256:
                    found.extend(named_modules(child, prefix + to_text(name) + ".", depth + 1))
        return found

    def dict_items(mapping):
        return [(k, dict_getitem(mapping, k)) for k in dict_keys(mapping) if isinstance_(k, str)]

    def describe(value, depth=0):
        kind = exact_type(value)
        if value is None:
            return {"kind": "none"}
        if is_tensor(value):
            return describe_tensor(value)
        if isinstance_(value, tensor_type):
            return {"kind": "tensor_subclass", "type_name": text(type_name(kind), 80)}
        if kind is bool or kind is int or kind is float:
            if kind is int and not -2**53 <= value <= 2**53:
                return {"kind": "other", "type_name": "int (too large)"}
            return {"kind": "number", "value": value, "integer": kind is not float}
        if is_module(value):
            return describe_module(value)
        if (kind is tuple or kind is list) and depth < 3:
            return {"kind": "sequence", "container": type_name(kind), "length": len_(value),
                    "items": [describe(value[i], depth + 1) for i in range(min(len_(value), 8))]}
        if kind is dict and depth < 3:
            keys = [k for k in dict_keys(value) if exact_type(k) is str and len_(k) <= 80][:64]
            return {"kind": "mapping", "length": len_(value),
                    "entries": {k: describe(dict_getitem(value, k), depth + 1) for k in keys}}
        return {"kind": "other", "type_name": text(type_name(kind), 80)}

    def step(value, part):
        """One `.part` of a snapshot path, without running any student-defined code."""
        if is_tensor(value):
            return (True, read["grad"](value)) if part == "grad" else (False, None)
        if is_module(value):
            for table in ("_parameters", "_buffers", "_modules"):
                found = module_dict(value, table)
                if part in found:
                    return True, dict_getitem(found, part)
            return False, None
        if exact_type(value) is dict:
            return (True, dict_getitem(value, part)) if part in dict_keys(value) else (False, None)
        if (exact_type(value) is tuple or exact_type(value) is list) and part.isdigit() and int(part) < len_(value):
            return True, value[int(part)]
        return False, None

    def lookup(namespace, path):
        name, *parts = path.split(".")
        if name not in namespace:
            return {"kind": "missing"}
        value = namespace[name]
        for position, part in enumerate(parts):
            ok, value = step(value, part)
            if not ok:
                owner = ".".join([name] + parts[:position])
                return {"kind": "missing", "reason": text(f"`{owner}` has no `{part}`", 300)}
        return describe(value)

    def integrity_problems():
        return [label + " was replaced" for (owner, attribute), (label, wrapper) in patched.items()
                if getattr_(owner, attribute, None) is not wrapper]

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

        def values_match(self, value, expected, need_graph=True):
            """Used by bridge cells: is a student value usable by the next task (same shape and values)?"""
            try:
                with Unhooked():
                    return (is_tensor(value) and (not need_graph or read["grad_fn"](value) is not None)
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
