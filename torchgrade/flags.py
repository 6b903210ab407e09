"""Tampering flags: where an instructor should look. A flag never changes a score.

Two sources, both out of the student's reach:

- **The submitted source**, read with ``ast`` in the grader's process (student code never runs
  here, and cannot hide from a parser what the kernel will execute): touching the probe
  (``__torchgrade`` names), reaching into closures, frames or the garbage collector,
  patching ``torch``/``numpy`` functions, ``builtins``, ``sys`` hooks or IPython internals,
  ``ctypes``, reading ``/proc/1``, ``/proc/self/maps``, other processes' or environment files,
  sending signals, and building code at run time (``exec``, ``eval``, ``__import__``), which
  is how the rest would be hidden.
- **What the grader observed** in each run: a snapshot whose signature failed, a snapshot
  sent twice, probe integrity checks that failed (all rejected: the task earns nothing from
  them), and a kernel killed by a signal in a notebook that sends signals.

What flags cannot catch is in docs/threat_model.md: code that reaches the same objects
without any of these names (e.g. strings decoded at run time inside an allowed call), and
anything done by the kernel's C extensions. A cell that does not parse is flagged only for
what a tolerant scan of its text finds.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable

from .results import Flag

MAX_DETAILS_PER_KIND = 3
MAX_SOURCE_CHARS = 1_000_000  # per cell parsed; longer cells are scanned as text only

PATCHED_MODULES = {"torch", "numpy", "builtins", "sys", "IPython", "ipykernel", "json", "inspect", "math", "io"}
INTROSPECTION_ATTRIBUTES = {"__closure__", "__globals__", "__code__", "cell_contents", "f_back", "f_globals",
                            "f_locals", "f_builtins", "tb_frame", "gi_frame", "cr_frame", "__self__",
                            "__subclasses__", "__mro__", "__bases__", "__dict__"}
INTROSPECTION_CALLS = {"sys._getframe", "inspect.currentframe", "inspect.stack", "inspect.getouterframes",
                       "inspect.getclosurevars", "inspect.trace", "gc.get_objects", "gc.get_referrers",
                       "gc.get_referents", "sys.settrace", "sys.setprofile", "sys.addaudithook",
                       "sys.monitoring.register_callback", "traceback.walk_stack"}
IPYTHON_HOOKS = {"register", "set_custom_exc", "register_magic_function", "ast_transformers", "input_transformers_post",
                 "input_transformers_cleanup", "events", "display_pub", "displayhook", "kernel", "send", "session",
                 "excepthook", "showtraceback", "run_cell", "run_cell_async", "user_ns"}
IPYTHON_MODULES = {"IPython", "ipykernel", "jupyter_client", "zmq", "traitlets", "tornado"}
SIGNAL_CALLS = {"os.kill", "os.killpg", "signal.raise_signal", "signal.pthread_kill", "os.abort", "signal.alarm",
                "signal.setitimer"}
DYNAMIC_CODE = {"exec", "eval", "compile", "__import__", "importlib.import_module", "builtins.exec", "builtins.eval"}
SENSITIVE_PATH = re.compile(r"/proc/(?:1(?:/|$)|self/(?:maps|mem|environ|cmdline|mountinfo|fd)|\d+/|\{|%)"
                            r"|/proc/?$|(?:^|/)\.env$|/etc/environment|environ\b")
ALLOWED_SETTINGS = ("torch.backends.", "numpy.random.", "torch.random.")  # settings notebooks commonly change
PROBE_NAME = re.compile(r"_?_torchgrade", re.IGNORECASE)


def flag_sources(cells: Iterable[tuple[int, str]]) -> list[Flag]:
    """Flags for the student cells, given as (position in the notebook, source)."""
    found: list[Flag] = []
    for position, source in cells:
        found.extend(_flag_cell(position, source))
    return _bounded(found)


def flag_observations(unavailable: Iterable[tuple[int, str]], events: Iterable[str], sends_signals: bool) -> list[Flag]:
    """Flags from what the runs showed: (task, why its values were rejected) and the runs' events."""
    found: list[Flag] = []
    for task, why in unavailable:
        if "tamper" in why or "forged" in why:
            found.append(Flag("snapshot-rejected", f"task {task}: {why}"))
    if sends_signals:
        for event in events:
            if "kernel died" in event and ("by signal" in event or "(SIGKILL)" in event):
                found.append(Flag("killed-by-signal", f"{event} - and the notebook sends signals"))
    return _bounded(found)


def _bounded(found: list[Flag]) -> list[Flag]:
    """Each kind once per detail, at most MAX_DETAILS_PER_KIND details per kind, in first-seen order."""
    kept: list[Flag] = []
    counts: dict[str, int] = {}
    for item in found:
        if item in kept or counts.get(item.kind, 0) >= MAX_DETAILS_PER_KIND:
            continue
        counts[item.kind] = counts.get(item.kind, 0) + 1
        kept.append(Flag(item.kind, item.detail[:300]))
    return kept


# ------------------------------------------------------------------------------ one cell

def _flag_cell(position: int, source: str) -> list[Flag]:
    where = f"cell {position}"
    if source.lstrip().startswith("%%"):  # a cell magic (%%bash...): not Python, and not run; its intent shows
        return _scan_text(where, source)
    shell = "\n".join(line for line in source.splitlines() if line.lstrip().startswith(("!", "%")))
    tree = None
    if len(source) <= MAX_SOURCE_CHARS:
        try:
            tree = ast.parse(_without_magics(source))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            tree = None
    if tree is None:
        return _scan_text(where, source)
    visitor = _Visitor(where)
    try:
        visitor.visit(tree)
    except RecursionError:  # absurdly nested code: what the text shows is still flagged
        return visitor.found + _scan_text(where, source)
    return visitor.found + (_scan_text(where, shell) if shell else [])


def _without_magics(source: str) -> str:
    """`!cmd` and `%magic` lines are not Python; the grader skips them anyway."""
    return "\n".join("pass" if line.lstrip().startswith(("!", "%")) else line for line in source.splitlines())


def _scan_text(where: str, source: str) -> list[Flag]:
    text = source[:MAX_SOURCE_CHARS]
    found = []
    if PROBE_NAME.search(text):
        found.append(Flag("probe-access", f"{where} names the grader's probe (__torchgrade...)"))
    if "ctypes" in text:
        found.append(Flag("ctypes", f"{where} mentions ctypes"))
    if match := SENSITIVE_PATH.search(text):
        found.append(Flag("sensitive-file", f"{where} mentions {match.group()!r}"))
    return found


def _dotted(node: ast.AST) -> str:
    """'torch.Tensor.add' for an attribute chain rooted at a name; '' otherwise."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    if isinstance(node, ast.Call) and _dotted(node.func) == "get_ipython":
        parts.append("get_ipython()")
        return ".".join(reversed(parts))
    return ""


class _Visitor(ast.NodeVisitor):
    def __init__(self, where: str) -> None:
        self.where = where
        self.found: list[Flag] = []
        self.aliases: dict[str, str] = {}  # local name -> module (import numpy as np -> np: numpy)

    def add(self, kind: str, detail: str, node: ast.AST) -> None:
        self.found.append(Flag(kind, f"{self.where}, line {getattr(node, 'lineno', '?')}: {detail}"))

    def canonical(self, dotted: str) -> str:
        head, _, rest = dotted.partition(".")
        head = self.aliases.get(head, head)
        return f"{head}.{rest}" if rest else head

    # ---- imports
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.aliases[(alias.asname or alias.name).split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
            self._imported(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        self._imported(module, node)
        for alias in node.names:
            self.aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
            self._imported(f"{module}.{alias.name}", node)

    def _imported(self, module: str, node: ast.AST) -> None:
        top = module.split(".")[0]
        if top in ("ctypes", "cffi", "_ctypes"):
            self.add("ctypes", f"imports {module}", node)
        elif top == "gc" or module in ("inspect.currentframe", "sys._getframe"):
            self.add("introspection", f"imports {module}", node)
        elif PROBE_NAME.search(module):
            self.add("probe-access", f"imports {module}", node)

    # ---- names and attributes
    def visit_Name(self, node: ast.Name) -> None:
        if PROBE_NAME.search(node.id):
            self.add("probe-access", f"uses the grader's name {node.id}", node)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if PROBE_NAME.search(node.attr):
            self.add("probe-access", f"uses the grader's attribute .{node.attr}", node)
        elif node.attr in INTROSPECTION_ATTRIBUTES and node.attr != "__dict__" or (
                node.attr == "__dict__" and isinstance(node.ctx, ast.Load) and self._rooted_in_patched(node.value)):
            self.add("introspection", f"reads .{node.attr}", node)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            if PROBE_NAME.search(node.value):
                self.add("probe-access", f"a string names the grader's probe ({node.value[:60]!r})", node)
            elif match := SENSITIVE_PATH.search(node.value):
                self.add("sensitive-file", f"a string names {match.group()!r} ({node.value[:60]!r})", node)

    # ---- calls
    def visit_Call(self, node: ast.Call) -> None:
        name = self.canonical(_dotted(node.func))
        if name in INTROSPECTION_CALLS:
            self.add("introspection", f"calls {name}()", node)
        elif name in SIGNAL_CALLS:
            self.add("signal", f"calls {name}()", node)
        elif name in DYNAMIC_CODE:
            self.add("dynamic-code", f"calls {name}() (code built at run time)", node)
        elif name.split(".")[0] in ("ctypes", "_ctypes", "cffi"):
            self.add("ctypes", f"calls {name}()", node)
        elif name in ("setattr", "delattr", "object.__setattr__", "type.__setattr__") and node.args:
            if self._rooted_in_patched(node.args[0]):
                self.add("patch", f"{name}() on {_dotted(node.args[0]) or 'a module object'}", node)
        elif (name.startswith("get_ipython()") or name.split(".")[0] in IPYTHON_MODULES) and \
                name.rsplit(".", 1)[-1] in IPYTHON_HOOKS:
            self.add("ipython-internals", f"calls {name}()", node)
        self.generic_visit(node)

    # ---- assignments that patch
    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._target(target, node)
        if isinstance(node.value, (ast.Call, ast.Attribute, ast.Name)):  # shell = get_ipython(); t = torch.Tensor
            source = self.canonical(_dotted(node.value))
            if source.startswith("get_ipython()") or source.split(".")[0] in PATCHED_MODULES | IPYTHON_MODULES:
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        self.aliases[target.id] = source
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._target(node.target, node)
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._target(target, node)
        self.generic_visit(node)

    def _target(self, target: ast.AST, node: ast.AST) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for item in target.elts:
                self._target(item, node)
            return
        if isinstance(target, ast.Subscript):
            dotted = self.canonical(_dotted(target.value))
            if dotted.split(".")[0] in ("builtins", "sys") or dotted in ("__builtins__",) or \
                    dotted.startswith("get_ipython()"):
                self.add("patch", f"changes {dotted}[...]", node)
            return
        if not isinstance(target, ast.Attribute):
            return
        dotted = self.canonical(_dotted(target))
        if dotted.startswith(ALLOWED_SETTINGS):
            return
        if dotted.startswith("get_ipython()") or dotted.split(".")[0] in IPYTHON_MODULES:
            self.add("ipython-internals", f"replaces {dotted}", node)
        elif self._rooted_in_patched(target.value):
            self.add("patch", f"replaces {dotted}", node)

    def _rooted_in_patched(self, node: ast.AST) -> bool:
        dotted = self.canonical(_dotted(node))
        return bool(dotted) and dotted.split(".")[0] in PATCHED_MODULES | {"__builtins__"}
