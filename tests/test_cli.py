"""The student's command end to end: `python grade.py NOTEBOOK` as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import CORPUS, ROOT, write_config

GRADE = [sys.executable, str(ROOT / "grade.py")]


def grade(*args, **kwargs):
    return subprocess.run(GRADE + [str(a) for a in args], capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def solution_json():
    return grade(ROOT / "solutions" / "computational_graph.ipynb", "--format", "json")


def test_solution_earns_full_marks_as_gradescope_json(solution_json):
    assert solution_json.returncode == 0, solution_json.stderr
    result = json.loads(solution_json.stdout)
    assert result["score"] == result["max_score"] == 20
    assert isinstance(result["execution_time"], float) and isinstance(result["output"], str)
    assert len(result["tests"]) == 13
    for test in result["tests"]:
        assert set(test) >= {"name", "score", "max_score", "status", "output", "task"}
        assert test["status"] == "passed" and isinstance(test["task"], int) and 1 <= test["task"] <= 5
    assert solution_json.stderr == ""  # no kernel warnings leak into the report


def test_untouched_exercise_earns_zero_with_a_readable_report():
    result = grade(ROOT / "exercises" / "computational_graph.ipynb")
    assert result.returncode == 0
    assert "Score: 0 / 20" in result.stdout
    assert "[FAIL] f equals x³ + y²" in result.stdout and "Expected:" in result.stdout and "Hint:" in result.stdout


def test_the_readmes_first_command_grades_the_shipped_example_and_shows_its_two_mistakes():
    """`bash scripts/grade-example.sh` (the README's first command) installs, then runs this very line."""
    command = (ROOT / "scripts" / "grade-example.sh").read_text().strip().splitlines()[-1]
    assert command == 'python grade.py examples/student_submission.ipynb "$@"'
    assert "bash scripts/grade-example.sh" in (ROOT / "README.md").read_text()
    steps = (ROOT / "scripts" / "grade-example.sh").read_text().splitlines()
    assert steps.index("bash scripts/install-torch.sh") < steps.index("python -m pip install -q -e .")  # CPU torch first
    result = grade("examples/student_submission.ipynb", cwd=ROOT)  # its assignment from the notebook's metadata
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == ["Computational graphs and autograd: examples/student_submission.ipynb",
                                              "Score: 18 / 20"]
    failed = [line.split("]", 1)[1].rsplit(None, 1)[0].strip() for line in result.stdout.splitlines() if "[FAIL]" in line]
    assert failed == ["f_x and f_y carry a graph (create_graph=True)",
                      "retain_graph used exactly where the graph is reused"]
    assert result.stdout.count("Expected:") == result.stdout.count("Hint:") == 2 and result.stderr == ""


def test_the_torch_installer_keeps_an_installed_torch_and_installs_nothing():
    """scripts/install-torch.sh (both README commands run it first): with torch 2.13.0 here, it only checks."""
    result = subprocess.run(["bash", str(ROOT / "scripts" / "install-torch.sh")], capture_output=True, text=True,
                            timeout=120, cwd=ROOT, env={**os.environ, "TORCH_CPU_INDEX": "http://127.0.0.1:9/none"})
    assert result.returncode == 0 and result.stdout == result.stderr == ""
    steps = (ROOT / "scripts" / "test.sh").read_text().splitlines()
    assert steps.index("bash scripts/install-torch.sh") < steps.index('python -m pip install -q -e ".[test]"')


@pytest.mark.parametrize("name", ["empty.ipynb", "not_json.ipynb", "binary.ipynb", "future_nbformat.ipynb"])
def test_unreadable_files_exit_3_with_one_line_and_no_traceback(name):
    result = grade(CORPUS / name)
    assert result.returncode == 3
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("grade.py: could not read the submission:")


def test_unreadable_file_in_json_format_still_prints_valid_json():
    result = grade(CORPUS / "empty.ipynb", "--format", "json")
    assert result.returncode == 3
    assert json.loads(result.stdout)["tests"] == []


def test_missing_file_exits_3():
    assert grade(ROOT / "no-such-notebook.ipynb").returncode == 3


def test_bad_config_exits_4_naming_the_key(tmp_path):
    config = write_config(tmp_path, limits__cell_timeout=-1)
    result = grade(ROOT / "solutions" / "computational_graph.ipynb", "--config", config)
    assert result.returncode == 4
    assert "limits.cell_timeout" in result.stderr and "Traceback" not in result.stderr


def test_usage_error_exits_2():
    assert grade("--format", "nonsense", ROOT / "grade.py").returncode == 2
