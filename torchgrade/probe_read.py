# A part of the kernel-side probe (probe_kernel.py's docstring says why it looks the way it does). It is
# not a module: zygote_io.probe_source indents it into _torchgrade_install, where its names are defined.
# The probe's reading of a snapshot's values: tensors, modules, containers, and the dotted paths a task
# names.

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
