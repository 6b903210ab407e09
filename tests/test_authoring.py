"""`grade.py --assign`: exercises generated from solutions (no kernel runs here)."""

from __future__ import annotations

import json
import subprocess
import sys

import nbformat
import pytest

from conftest import CONFIG, ROOT
from torchgrade.authoring import (
    CHECK_SOURCE, MarkerError, exercise_text, is_check_cell, solution_regions, strip_solution, without_self_check,
)
from torchgrade.cli import main
from torchgrade.instrument import instrument
from torchgrade.loader import load_notebook
from torchgrade.locate import locate_tasks


def write_notebook(path, *cells, metadata=None):
    """A solution notebook from ("md"|"code", source) pairs."""
    made = [nbformat.v4.new_markdown_cell(s) if kind == "md" else nbformat.v4.new_code_cell(s) for kind, s in cells]
    notebook = nbformat.v4.new_notebook(cells=made, metadata=metadata or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


@pytest.mark.parametrize("name", sorted(CONFIG.assignments))
def test_shipped_exercise_is_generated_from_its_solution(name):
    """CI's proof that every exercise is up to date: regenerate in memory and compare the bytes."""
    entry = CONFIG.assignments[name]
    expected = exercise_text(entry.solution, name)
    assert entry.exercise.read_text(encoding="utf-8") == expected, (
        f"{entry.exercise.name} is out of date: run `python grade.py --assign {entry.solution.relative_to(ROOT)}`")


def test_generated_exercise_keeps_the_contract_and_hides_the_solution():
    entry = CONFIG.assignments["computational_graph"]
    solution, exercise = load_notebook(entry.solution), load_notebook(entry.exercise)
    assert exercise.metadata["torchgrade"]["assignment"] == "computational_graph"
    assert [c.cell_type for c in exercise.cells[:-1]] == [c.cell_type for c in solution.cells]
    for old, new in zip(solution.cells, exercise.cells):
        if old.cell_type == "markdown" or old.source.startswith("# GIVEN") or old.source == "import torch":
            assert new.source == old.source and new.id == old.id
        else:
            assert new.outputs == [] and new.execution_count is None
            assert new.source.splitlines()[0] == old.source.splitlines()[0]  # `# TASK n` kept
    tasks = "\n".join(c.source for c in exercise.cells if c.source.startswith("# TASK"))
    for secret in ("x**3 + y**2", "f.sum().backward()", "create_graph=True)[0]", "retain_graph=True)", "SOLUTION"):
        assert secret not in tasks
    assert exercise.cells[-1].source == CHECK_SOURCE and exercise.cells[-1].id == "torchgrade-check"


def test_marker_styles(tmp_path):
    source = "\n".join([
        "# TASK 1",
        "f = x**3 + y**2  # SOLUTION",
        "f_x, f_y = torch.autograd.grad(f, (x, y), torch.ones_like(f))  # SOLUTION",
        "total: float = f.sum().item() # SOLUTION",
        "f.sum().backward()  # SOLUTION",
        "### BEGIN SOLUTION",
        "g = f * 2",
        "### END SOLUTION",
        "for i in range(2):",
        "    # BEGIN SOLUTION",
        "    g = g + i",
        "    # END SOLUTION",
        "print(g)",
    ])
    stripped, regions = strip_solution(source, "cell 1")
    assert stripped.splitlines() == [
        "# TASK 1",
        "f = ...  # your code here",
        "f_x, f_y = ...  # your code here",
        "total: float = ...  # your code here",
        "...  # your code here",
        "...  # your code here",
        "for i in range(2):",
        "    ...  # your code here",
        "print(g)",
    ]
    compile(stripped, "exercise", "exec")  # the placeholders keep the code valid Python
    assert regions[0] == "f = x**3 + y**2" and regions[-1] == "    g = g + i"


def test_same_solution_gives_the_same_bytes_and_stable_ids(tmp_path):
    path = write_notebook(tmp_path / "solutions" / "demo.ipynb", ("md", "# Demo"), ("code", "import torch"),
                          ("code", "# GIVEN\nx = 1"), ("code", "# TASK 1\ny = x + 1  # SOLUTION"))
    raw = json.loads(path.read_text())
    for cell in raw["cells"]:
        cell.pop("id")  # an nbformat 4.4 solution has no ids: they are derived from content and position
    raw["nbformat_minor"] = 4
    path.write_text(json.dumps(raw))
    first, second = exercise_text(path, "demo"), exercise_text(path, "demo")
    assert first == second
    ids = [c["id"] for c in json.loads(first)["cells"]]
    assert len(set(ids)) == len(ids) and ids[-1] == "torchgrade-check"
    nbformat.validate(nbformat.reads(first, 4))


def test_assign_writes_the_exercise_beside_the_solutions_folder(tmp_path, capsys):
    path = write_notebook(tmp_path / "solutions" / "demo.ipynb", ("code", "# GIVEN\nx = 1"),
                          ("code", "# TASK 1\ny = x + 1  # SOLUTION"))
    assert main(["--assign", str(path)]) == 0
    written = tmp_path / "exercises" / "demo.ipynb"
    assert capsys.readouterr().out.strip() == f"wrote {written}"
    exercise = load_notebook(written)
    assert exercise.cells[1].source == "# TASK 1\ny = ...  # your code here"
    assert exercise.metadata["torchgrade"]["assignment"] == "demo"


@pytest.mark.parametrize("cells, reason", [
    ([("code", "# TASK 1\n# BEGIN SOLUTION\ny = 1")], "cell 1 (# TASK 1): `BEGIN SOLUTION` is never closed"),
    ([("md", "intro"), ("code", "# TASK 1\ny = 1\n# END SOLUTION")],
     "cell 2 (# TASK 1): `END SOLUTION` without a `BEGIN SOLUTION`"),
    ([("code", "# GIVEN\nx = 1  # SOLUTION"), ("code", "# TASK 1\ny = 1  # SOLUTION")],
     "cell 1 (# GIVEN): a solution region in a `# GIVEN` cell"),
    ([("code", "# TASK 1\ny = 1  # SOLUTION"), ("code", "# TASK 2\nz = 2")],
     "cell 2 (# TASK 2): the task has no solution marker"),
    ([("code", "# TASK 1\n# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION")],
     "cell 1 (# TASK 1): `BEGIN SOLUTION` inside a solution block"),
])
def test_marker_errors_give_one_line_naming_the_cell_and_exit_3(tmp_path, capsys, cells, reason):
    path = write_notebook(tmp_path / "solutions" / "bad.ipynb", *cells)
    assert main(["--assign", str(path)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("grade.py: cannot generate the exercise: " + reason)
    assert not (tmp_path / "exercises").exists()


def test_a_task_may_hold_its_solution_in_a_later_cell_of_the_task(tmp_path):
    path = write_notebook(tmp_path / "s.ipynb", ("code", "# TASK 1\n# a comment"), ("code", "y = 1  # SOLUTION"))
    regions = solution_regions(load_notebook(path))
    assert [(r.cell, r.task, r.source) for r in regions] == [(2, 1, "y = 1")]


def test_unreadable_solution_exits_3(tmp_path, capsys):
    (tmp_path / "broken.ipynb").write_text("{")
    assert main(["--assign", str(tmp_path / "broken.ipynb")]) == 3
    assert "truncated" in capsys.readouterr().err


def test_assign_command_line_end_to_end(tmp_path):
    path = write_notebook(tmp_path / "solutions" / "demo.ipynb", ("code", "# TASK 1\ny = 2  # SOLUTION"))
    result = subprocess.run([sys.executable, str(ROOT / "grade.py"), "--assign", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "exercises" / "demo.ipynb").is_file()


# ------------------------------------------------------------------ the check cell while grading

@pytest.mark.parametrize("source, kept", [
    (CHECK_SOURCE, "pass"),
    ("from torchgrade import check\ncheck(3)", "pass\npass"),
    ("import torchgrade\ntorchgrade.check(path='nb.ipynb')", "pass\npass"),
    ("def check():\n    return 1\ncheck()", "def check():\n    return 1\ncheck()"),  # the student's own check()
    ("x = 1\nfrom torchgrade import check; check()\ny = 2", "x = 1\npass\ny = 2"),
])
def test_self_check_lines_are_not_run_while_grading(source, kept):
    assert without_self_check(source) == kept


def test_instrumented_exercise_never_calls_check_and_says_nothing_about_it():
    from torchgrade.pipeline import Grader

    grader = Grader.from_config("computational_graph", CONFIG.assignments["computational_graph"])
    notebook = load_notebook(CONFIG.assignments["computational_graph"].exercise)
    assert is_check_cell(notebook.cells[-1].source)
    layout = locate_tasks(notebook, grader.assignment.task_numbers)
    draw = getattr(grader.assignment, "draw", None) or grader.assignment.make_inputs  # (the engine's name for it)
    plan = instrument(layout, grader.assignment, draw(grader.plan_runs(b"")[0]))
    student = [c.source for c in plan.cells if c.role == "student"]
    assert not any("check(" in s or "torchgrade import" in s for s in student)
    assert plan.events == []
