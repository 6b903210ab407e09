"""`from torchgrade import check; check()` inside a notebook: a real kernel (nbclient), and Colab's path stubbed."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import CONFIG, CORPUS, ROOT
from torchgrade import selfcheck
from torchgrade.authoring import CHECK_SOURCE
from torchgrade.hidden import HiddenSummary
from torchgrade.render.terminal import render_terminal
from torchgrade.results import CheckResult, GradeReport, TaskResult
from torchgrade.selfcheck_render import render_html

SOLUTION = CONFIG.assignments["computational_graph"].solution


def body(text: str) -> list[str]:
    """A terminal report without the lines that name the file or the time taken."""
    return [line for line in text.splitlines()[1:] if not line.startswith("Checked with")]


@pytest.fixture(scope="module")
def checked_in_kernel(tmp_path_factory, grader):
    """The solution plus a check cell, saved, then run top to bottom in a real kernel; and graded by grade.py's Grader."""
    folder = tmp_path_factory.mktemp("selfcheck")
    notebook = nbformat.read(SOLUTION, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(CHECK_SOURCE))
    path = folder / "computational_graph.ipynb"
    nbformat.write(notebook, path)
    env = {**os.environ, "JPY_SESSION_NAME": str(path), "PYTHONPATH": str(ROOT)}
    env.pop("TORCHGRADE_GRADING", None)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}})
    client.execute(env=env)
    outputs = notebook.cells[-1].outputs
    return outputs, grader.grade_notebook(path)


def test_check_in_a_kernel_finds_its_file_and_gives_the_same_report_as_grade_py(checked_in_kernel):
    outputs, report = checked_in_kernel
    shown = [o for o in outputs if o.output_type == "display_data"]
    assert len(shown) == 1, outputs
    text, html = shown[0].data["text/plain"], shown[0].data["text/html"]
    assert report.score == report.max_score == 20 and "Score: 20 / 20" in text
    assert body(text) == body(render_terminal(report))  # same checks, points and messages
    assert html.count(">PASS<") == 13 and "20 / 20" in html
    assert report.notes == ()  # the check cell was skipped while grading, and nothing says so
    assert not [o for o in outputs if o.output_type == "error"]


@pytest.fixture
def colab(monkeypatch):
    """A stub of Colab's message call, answering 'get_ipynb' with a notebook's content."""
    requests = []

    def install(content):
        def blocking_request(kind, request="", timeout_sec=5):
            requests.append(kind)
            return {"ipynb": content}

        message = types.ModuleType("google.colab._message")
        message.blocking_request = blocking_request
        package = types.ModuleType("google.colab")
        package._message = message
        google = types.ModuleType("google")
        google.colab = package
        for name, module in (("google", google), ("google.colab", package), ("google.colab._message", message)):
            monkeypatch.setitem(sys.modules, name, module)
        return requests

    return install


def test_colab_path_grades_the_content_colab_sends_and_check_3_shows_task_3_only(colab, capsys, monkeypatch):
    content = json.loads((CORPUS / "missing_create_graph.ipynb").read_text(encoding="utf-8"))
    content["metadata"]["colab"] = {"name": "my work.ipynb"}
    content["metadata"]["torchgrade"] = {"assignment": "computational_graph"}
    requests = colab(content)
    monkeypatch.delenv("TORCHGRADE_GRADING", raising=False)
    selfcheck.check(3)
    out = capsys.readouterr().out
    assert requests == ["get_ipynb"]
    assert out.splitlines()[0] == "Computational graphs and autograd: my work.ipynb"
    assert "Task 3:" in out and "Task 1:" not in out and "Task 4:" not in out
    assert "[FAIL] f_x and f_y carry a graph (create_graph=True)" in out and "Hint:" in out
    report = selfcheck.last_report
    assert [t.number for t in report.tasks] == [3] and report.score == 3 and report.max_score == 4


def test_colab_refusal_says_what_to_do(monkeypatch, capsys):
    message = types.SimpleNamespace(blocking_request=lambda *a, **k: None)
    monkeypatch.setitem(sys.modules, "google.colab", types.SimpleNamespace(_message=message))
    monkeypatch.setitem(sys.modules, "google.colab._message", message)
    selfcheck.check()
    assert 'check(path="my_notebook.ipynb")' in capsys.readouterr().out


# ------------------------------------------------------------------------ finding the file (no kernels)

@pytest.fixture
def saved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "work.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), path)
    return path


def test_vs_code_and_jupyter_session_name(saved):
    assert selfcheck.find_notebook(user_ns={"__vsc_ipynb_file__": str(saved)}, environ={}, servers=[]) == (saved, None)
    assert selfcheck.find_notebook(user_ns={}, environ={"JPY_SESSION_NAME": str(saved)}, servers=[]) == (saved, None)
    # older servers give a path relative to their root: the kernel runs in the notebook's folder
    assert selfcheck.find_notebook(user_ns={}, environ={"JPY_SESSION_NAME": "course/work.ipynb"}, servers=[])[0] == saved


def test_jupyter_server_sessions_api(saved, monkeypatch):
    class Sessions(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            ok = self.path == "/api/sessions" and self.headers.get("Authorization") == "token secret"
            payload = [{"path": "other.ipynb", "kernel": {"id": "k0"}}, {"path": "work.ipynb", "kernel": {"id": "k1"}}]
            self.send_response(200 if ok else 403)
            self.end_headers()
            self.wfile.write(json.dumps(payload if ok else {}).encode())

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Sessions)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        servers = [{"url": "http://127.0.0.1:1/"},  # a dead server is skipped
                   {"url": f"http://127.0.0.1:{server.server_port}/", "token": "secret", "root_dir": str(saved.parent)}]
        monkeypatch.setattr(selfcheck, "_kernel_id", lambda: "k1")
        assert selfcheck.find_notebook(user_ns={}, environ={}, servers=servers) == (saved, None)
    finally:
        server.shutdown()


def test_lost_notebook_says_how_to_pass_the_path(saved):
    with pytest.raises(selfcheck.SelfCheckError, match=r'check\(path="my_notebook.ipynb"\)'):
        selfcheck.find_notebook(user_ns={}, environ={}, servers=[])
    with pytest.raises(selfcheck.SelfCheckError, match="no notebook at nope.ipynb"):
        selfcheck.find_notebook("nope.ipynb")


def test_save_reminder(saved):
    notebook = nbformat.read(saved, as_version=4)
    notebook.cells = [nbformat.v4.new_code_cell("1", execution_count=n) for n in (1, 2, 3)]
    nbformat.write(notebook, saved)
    assert not selfcheck.unsaved_work(saved, execution_count=4, last_run=None)  # saved right before this cell
    assert selfcheck.unsaved_work(saved, execution_count=9, last_run=None)  # cells 4-8 ran after the save
    assert selfcheck.unsaved_work(saved, execution_count=None, last_run=time.time() + 5)
    assert not selfcheck.unsaved_work(saved, execution_count=None, last_run=saved.stat().st_mtime - 5)


def test_config_is_found_beside_the_notebook_or_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(selfcheck.CONFIG_ENV, raising=False)
    (tmp_path / "course" / "exercises").mkdir(parents=True)
    (tmp_path / "course" / "config.yaml").write_text("version: 1\nassignments: {}\n")
    notebook = tmp_path / "course" / "exercises" / "a.ipynb"
    assert selfcheck.find_config(notebook) == tmp_path / "course" / "config.yaml"
    monkeypatch.setenv(selfcheck.CONFIG_ENV, str(ROOT / "config.yaml"))
    assert selfcheck.find_config(notebook) == ROOT / "config.yaml"


def test_no_sandbox_warning_appears_once_in_one_line(capsys):
    from torchgrade.sandbox import warn_once

    class Grader:
        def grade_notebook(self, path):
            warn_once(f"student code is NOT fully isolated: test {path}")
            return "report"

    report, warnings = selfcheck._grade_quietly(Grader(), Path("x"))
    assert report == "report" and warnings == ["student code is NOT fully isolated: test x"]
    assert capsys.readouterr().err == ""  # the loud banner never reaches the cell
    assert selfcheck.new_warnings(warnings) == ["Warning: student code is NOT fully isolated: test x"]
    assert selfcheck.new_warnings(warnings) == []


def test_html_escapes_student_content():
    check = CheckResult("c1", 1, "title", 0, 1, False, expected="<b>x</b>", found="<script>alert(1)</script>\x1b[31m",
                        hint="use `**`")
    report = GradeReport("a", "Title", "<img src=x onerror=alert(1)>.ipynb", (TaskResult(1, "T", (check,)),), 1.0)
    html = render_html(report, HiddenSummary(2, 3), ["Save the notebook first"])
    assert "<script>" not in html and "<img" not in html and "\x1b" not in html
    assert "&lt;script&gt;" in html and "2 hidden checks (3 points)" in html and "Save the notebook first" in html
