"""Kernel-side probe: the only grader code that runs inside a student's kernel.

This file is not imported by the grader. Its text, with each ``# probe part:``
line replaced by that file (``probe_encode.py``, ``probe_provenance.py``,
``probe_record.py``, ``probe_read.py``: ``zygote_io.probe_source`` joins them),
is sent as the first cell of every instrumented notebook (see ``instrument.py``),
so it must be self-contained and must only use the standard library and torch.

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

    # probe part: probe_encode.py

    # probe part: probe_provenance.py

    # probe part: probe_record.py

    # probe part: probe_read.py

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
