"""A timeout or a dead kernel becomes a clear message, and every other task is still graded."""

from __future__ import annotations

import nbformat
import pytest

from conftest import ROOT, write_config
from torchgrade.config import load_config
from torchgrade.pipeline import Grader

SOLUTION = ROOT / "solutions" / "computational_graph.ipynb"


def variant(tmp_path, name: str, task: int, extra_code: str):
    notebook = nbformat.read(SOLUTION, as_version=4)
    cell = next(c for c in notebook.cells if c.source.startswith(f"# TASK {task}"))
    cell.source += "\n" + extra_code
    path = tmp_path / name
    nbformat.write(notebook, path)
    return path


@pytest.fixture(scope="module")
def quick_grader(tmp_path_factory):
    directory = tmp_path_factory.mktemp("config")
    config = load_config(write_config(directory, limits__cell_timeout=4, limits__notebook_timeout=60))
    return Grader.from_config("computational_graph", config.assignments["computational_graph"])


def points(report, task):
    return next(t for t in report.tasks if t.number == task)


def test_a_cell_that_runs_too_long_costs_only_its_task(quick_grader, tmp_path):
    report = quick_grader.grade_notebook(variant(tmp_path, "slow.ipynb", 2, "import time\ntime.sleep(60)"))
    slow = points(report, 2)
    # the sleep comes after the backward pass: values exist, but the run of that cell was cut
    assert any("ran longer than 4 s" in note for note in report.notes)
    for task in (1, 3, 4, 5):
        assert points(report, task).score == points(report, task).max_score
    assert report.execution_time < 60
    assert slow.score <= slow.max_score


def test_a_dead_kernel_costs_only_the_task_it_hit(quick_grader, tmp_path):
    report = quick_grader.grade_notebook(variant(tmp_path, "exit.ipynb", 2, "import os\nos._exit(1)"))
    assert points(report, 2).score == 0
    assert any("kernel died" in c.found for c in points(report, 2).checks)
    assert any("kernel died" in note for note in report.notes)
    for task in (1, 3, 4, 5):
        assert points(report, task).score == points(report, task).max_score
