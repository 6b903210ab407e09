# A part of the kernel-side probe (probe_kernel.py's docstring says why it looks the way it does). It is
# not a module: zygote_io.probe_source indents it into _torchgrade_install, where its names are defined.
# The probe's reading of tensors through torch's own descriptors, its JSON encoder, its signature and its
# limits.

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
