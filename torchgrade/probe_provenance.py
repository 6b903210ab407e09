# A part of the kernel-side probe (probe_kernel.py's docstring says why it looks the way it does). It is
# not a module: zygote_io.probe_source indents it into _torchgrade_install, where its names are defined.
# The probe's identities (a token per object, never reused) and provenance (which recorded call produced
# which object, and its values then), and the walks over autograd graphs.

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
