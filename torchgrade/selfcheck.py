"""`from torchgrade import check; check()`: the real grade, run from inside the student's notebook.

``check()`` grades the notebook **as saved** with the same pipeline, inputs and messages
as ``python grade.py`` (hidden checks are left out and counted), and shows the report as
HTML in the cell's output, with a text version for front ends that show no HTML.
``check(3)`` shows task 3 only. While grading, the grader skips this cell (see
``authoring.without_self_check``), so it never grades itself.

Finding the notebook's own file, in this order: ``check(path=...)``; Colab (the current
notebook's content, asked from Colab itself); VS Code (``__vsc_ipynb_file__``); Jupyter's
``JPY_SESSION_NAME`` (Notebook 7, JupyterLab); the Jupyter server's sessions API for this
kernel. Where none works, the message says how to pass the path.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import site
import sys
import sysconfig
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import nbformat

from .authoring import is_check_cell
from .config import load_config, pick_assignment
from .errors import GradingError
from .hidden import student_view
from .loader import load_notebook
from .results import GradeReport
from .selfcheck_render import render_html, render_text

CONFIG_ENV = "TORCHGRADE_CONFIG"
PATH_HINT = 'pass the notebook\'s path: check(path="my_notebook.ipynb")'
WARNING_LINE = re.compile(r"^torchgrade: WARNING: (.*)$", re.MULTILINE)

last_report: GradeReport | None = None  # the latest check() report (student view), for scripts and tests
_last_cell_run: float | None = None  # when a cell other than a check cell last finished (IPython only)
_warned: set[str] = set()
_graders: dict[tuple[str, str], object] = {}


class SelfCheckError(Exception):
    """Why check() cannot grade; the text tells the student what to do."""


# -------------------------------------------------------------------------- where is the notebook

def _shell():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def colab_notebook(timeout: float = 30.0) -> dict | None:
    """The current Colab notebook's content, asked from Colab; None outside Colab."""
    if "google.colab" not in sys.modules:
        return None
    from google.colab import _message  # noqa: PLC0415  (only exists in Colab)

    reply = _message.blocking_request("get_ipynb", request="", timeout_sec=timeout)
    if not isinstance(reply, dict) or not isinstance(reply.get("ipynb"), dict):
        raise SelfCheckError("Colab did not send the notebook's content; save it to Drive and " + PATH_HINT)
    return reply["ipynb"]


def _kernel_id() -> str | None:
    try:
        from ipykernel import get_connection_file

        name = Path(get_connection_file()).name
    except Exception:  # not in a kernel
        return None
    match = re.match(r"kernel-(.+)\.json$", name)
    return match.group(1) if match else None


def _running_servers() -> list[dict]:
    """Jupyter servers of this user, from their runtime files (jupyter_server and classic notebook)."""
    try:
        from jupyter_core.paths import jupyter_runtime_dir
    except ImportError:
        return []
    servers = []
    for pattern in ("jpserver-*.json", "nbserver-*.json"):
        for file in sorted(Path(jupyter_runtime_dir()).glob(pattern)):
            with contextlib.suppress(OSError, ValueError):
                servers.append(json.loads(file.read_text(encoding="utf-8")))
    return servers


def notebook_from_sessions(kernel_id: str | None, servers: list[dict], timeout: float = 2.0) -> Path | None:
    """Ask each server's /api/sessions which notebook runs this kernel."""
    if not kernel_id:
        return None
    for server in servers:
        url = str(server.get("url", "")).rstrip("/") + "/api/sessions"
        request = urllib.request.Request(url, headers={"Authorization": f"token {server.get('token', '')}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (a local server)
                sessions = json.loads(response.read(2_000_000))
        except (OSError, ValueError):
            continue
        for session in sessions if isinstance(sessions, list) else []:
            if (session.get("kernel") or {}).get("id") == kernel_id:
                relative = session.get("path") or (session.get("notebook") or {}).get("path")
                root = server.get("root_dir") or server.get("notebook_dir") or "."
                if isinstance(relative, str):
                    return Path(root, relative)
    return None


def _existing(candidate: str | os.PathLike | None) -> Path | None:
    if not candidate:
        return None
    path = Path(candidate).expanduser()
    for option in (path, Path.cwd() / path, Path.cwd() / path.name):
        if option.suffix == ".ipynb" and option.is_file():
            return option.resolve()
    return None


def find_notebook(path: str | os.PathLike | None = None, *, user_ns: dict | None = None,
                  environ=None, servers: list[dict] | None = None) -> tuple[Path | None, dict | None]:
    """(the notebook's file, or None with Colab's content instead). Raises SelfCheckError when lost."""
    if path is not None:
        found = _existing(path)
        if found is None:
            raise SelfCheckError(f"no notebook at {path!s}; " + PATH_HINT)
        return found, None
    content = colab_notebook()
    if content is not None:
        return None, content
    shell = _shell()
    user_ns = user_ns if user_ns is not None else (shell.user_ns if shell is not None else {})
    environ = os.environ if environ is None else environ
    for candidate in (user_ns.get("__vsc_ipynb_file__"), environ.get("JPY_SESSION_NAME")):
        if found := _existing(candidate):
            return found, None
    found = _existing(notebook_from_sessions(_kernel_id(), _running_servers() if servers is None else servers))
    if found is None:
        raise SelfCheckError("could not find this notebook's file; " + PATH_HINT)
    return found, None


# -------------------------------------------------------------------------- what to grade it with

def find_config(notebook: Path, explicit: str | os.PathLike | None = None) -> Path:
    """config.yaml: given, $TORCHGRADE_CONFIG, beside the notebook or above it, the repository, the install."""
    from .cli import DEFAULT_CONFIG

    candidates = [explicit, os.environ.get(CONFIG_ENV)]
    candidates += [folder / "config.yaml" for folder in list(notebook.resolve().parents)[:3]]
    installed = {Path(sys.prefix), Path(sysconfig.get_path("data")), Path(site.USER_BASE or sys.prefix)}
    candidates += [DEFAULT_CONFIG] + [base / "share" / "torchgrade" / "config.yaml" for base in sorted(installed)]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and "assignments" in Path(candidate).read_text(errors="replace"):
            return Path(candidate)
    raise SelfCheckError("no config.yaml found for this notebook; set the TORCHGRADE_CONFIG environment variable "
                         "or pass check(config=\"path/to/config.yaml\")")


def choose_assignment(config, notebook: Path, name: str | None):
    """By name, else the notebook's metadata.torchgrade.assignment, else the exercise's file name."""
    if name is None:
        with contextlib.suppress(Exception):
            name = load_notebook(notebook).metadata.get("torchgrade", {}).get("assignment")
    if name is None:
        name = next((n for n, e in config.assignments.items() if Path(e.exercise).stem == notebook.stem), None)
    return pick_assignment(config, name if isinstance(name, str) else None)


def _grader(config_path: Path, name: str, entry):
    from .pipeline import Grader

    key = (str(config_path.resolve()), name)
    if key not in _graders:
        _graders[key] = Grader.from_config(name, entry)
    return _graders[key]


# -------------------------------------------------------------------------- saving

def _record_cell_run(result) -> None:
    global _last_cell_run
    if not is_check_cell(getattr(getattr(result, "info", None), "raw_cell", "") or ""):
        _last_cell_run = time.time()


def _install_hook() -> None:
    shell = _shell()
    if shell is not None and _record_cell_run not in shell.events.callbacks.get("post_run_cell", []):
        shell.events.register("post_run_cell", _record_cell_run)


def unsaved_work(notebook: Path, execution_count: int | None, last_run: float | None) -> bool:
    """True when cells ran after the file was saved: by time stamps, or by execution counts."""
    if last_run is not None and notebook.stat().st_mtime < last_run:
        return True
    if execution_count is None:
        return False
    with contextlib.suppress(Exception):
        counts = [c.get("execution_count") for c in load_notebook(notebook).cells if c.get("cell_type") == "code"]
        counts = [c for c in counts if isinstance(c, int)]
        return bool(counts) and max(counts) < execution_count - 1  # this cell itself is execution_count
    return False


# -------------------------------------------------------------------------- check()

def _grade_quietly(grader, path: Path) -> tuple[GradeReport, list[str]]:
    """Grade in a thread of its own (no event loop of the kernel's there), catching the loud warnings."""
    captured = io.StringIO()
    with contextlib.redirect_stderr(captured), ThreadPoolExecutor(max_workers=1) as pool:
        report = pool.submit(grader.grade_notebook, path).result()
    text = captured.getvalue()
    warnings = [" ".join(m.group(1).split()) for m in WARNING_LINE.finditer(text)]
    rest = "\n".join(line for line in text.splitlines() if line.strip() and not set(line) <= {"!"}
                     and not WARNING_LINE.match(line))
    if rest:
        print(rest, file=sys.stderr)
    return report, warnings


def new_warnings(warnings: list[str]) -> list[str]:
    """Each warning once per kernel, in one line."""
    fresh = [w for w in dict.fromkeys(warnings) if w not in _warned]
    _warned.update(fresh)
    return ["Warning: " + w for w in fresh]


def _only_task(report: GradeReport, task: int | None) -> GradeReport:
    if task is None:
        return report
    tasks = tuple(t for t in report.tasks if t.number == task)
    if not tasks:
        numbers = ", ".join(str(t.number) for t in report.tasks)
        raise SelfCheckError(f"there is no task {task} to check (tasks: {numbers})")
    return replace(report, tasks=tasks)


def run_check(task: int | None = None, *, path=None, assignment: str | None = None, config=None):
    """Grade and return (report, hidden summary, notices); check() displays them."""
    notices: list[str] = []
    notebook, content = find_notebook(path)
    with tempfile.TemporaryDirectory(prefix="torchgrade-check-") as scratch:
        if content is not None:  # Colab: grade the content Colab sent, as a file of its own
            name = str((content.get("metadata") or {}).get("colab", {}).get("name") or "notebook.ipynb")
            notebook = Path(scratch) / Path(name).name
            notebook.write_text(json.dumps(content), encoding="utf-8")
        else:
            shell = _shell()
            if unsaved_work(notebook, getattr(shell, "execution_count", None), _last_cell_run):
                notices.append("Save the notebook first: cells ran after it was last saved, and check() grades "
                               "the saved file.")
        config_path = find_config(notebook, config)
        name, entry = choose_assignment(load_config(config_path), notebook, assignment)
        report, warnings = _grade_quietly(_grader(config_path, name, entry), notebook)
    notices.extend(new_warnings(warnings))
    report = replace(report, submission=notebook.name)
    view, hidden = student_view(report)
    return _only_task(view, task), hidden, notices


def check(task: int | None = None, *, path=None, assignment: str | None = None, config=None) -> None:
    """Grade this notebook as saved and show the report (`check(3)`: task 3 only)."""
    global last_report
    _install_hook()
    try:
        report, hidden, notices = run_check(task, path=path, assignment=assignment, config=config)
    except (SelfCheckError, GradingError) as problem:
        text = problem.one_line() if isinstance(problem, GradingError) else str(problem)
        _show(f"check(): {text}", render_html(None, None, [f"check(): {text}"]))
        return None
    last_report = report
    _show(render_text(report, hidden, notices), render_html(report, hidden, notices))
    return None


def _show(text: str, html: str) -> None:
    """HTML where the front end shows it, the same report as text elsewhere."""
    if _shell() is not None:
        from IPython.display import display

        display({"text/plain": text, "text/html": html}, raw=True)
    else:
        print(text)
