# A part of the kernel-side probe (probe_kernel.py's docstring says why it looks the way it does). It is
# not a module: zygote_io.probe_source indents it into _torchgrade_install, where its names are defined.
# The probe's recording of autograd calls: the wrappers of backward, autograd.grad, autograd.functional and
# torch.func, what each call's arguments said, the .grad tensors it filled, and their installation.

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
