"""Several assignments in one repository, and the grader-module contract (inputs, GIVEN code) without kernels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
import yaml

from conftest import ROOT
from torchgrade.assignment import Assignment, Given, Number, Seeded, Tensor
from torchgrade.config import assignment_for, load_config
from torchgrade.errors import EXIT_USAGE, UsageError
from torchgrade.evidence import DrawnSeed, DrawnTensor

SOLUTION = ROOT / "solutions" / "computational_graph.ipynb"


def two_assignments(directory: Path) -> Path:
    """config.yaml with the shipped assignment and a second one (same grader, another name and exercise)."""
    raw = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    entry = raw["assignments"]["computational_graph"]
    for key in ("grader", "exercise", "solution"):
        entry[key] = str(ROOT / entry[key])
    raw["assignments"]["pinn_like"] = {**entry, "title": "Another", "exercise": str(directory / "pinn_like.ipynb")}
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def notebook_named(directory: Path, name: str, assignment: str | None = None) -> Path:
    notebook = nbformat.read(SOLUTION, as_version=4)
    notebook.metadata.pop("torchgrade", None)
    if assignment:
        notebook.metadata["torchgrade"] = {"assignment": assignment}
    path = directory / name
    nbformat.write(notebook, path)
    return path


class TestChoosingTheAssignment:
    def test_metadata_then_file_name_then_override(self, tmp_path):
        config = load_config(two_assignments(tmp_path))
        assert assignment_for(config, notebook_named(tmp_path, "hw.ipynb", "pinn_like"))[0] == "pinn_like"
        assert assignment_for(config, notebook_named(tmp_path, "alice_pinn_like.ipynb"))[0] == "pinn_like"
        assert assignment_for(config, notebook_named(tmp_path, "computational_graph (3).ipynb"))[0] == \
            "computational_graph"
        named = notebook_named(tmp_path, "hw2.ipynb", "pinn_like")
        assert assignment_for(config, named, "computational_graph")[0] == "computational_graph"

    def test_an_unknown_notebook_is_a_usage_error_naming_the_choices(self, tmp_path):
        config = load_config(two_assignments(tmp_path))
        for notebook in (notebook_named(tmp_path, "homework.ipynb"),
                         notebook_named(tmp_path, "hw3.ipynb", "no_such_assignment")):
            with pytest.raises(UsageError) as caught:
                assignment_for(config, notebook)
            line = caught.value.one_line()
            assert "computational_graph, " in line and "pinn_like)" in line and "--assignment" in line and "\n" not in line

    def test_the_cli_exits_2_with_one_line(self, tmp_path):
        config = two_assignments(tmp_path)
        result = subprocess.run([sys.executable, str(ROOT / "grade.py"), str(notebook_named(tmp_path, "hw.ipynb")),
                                 "--config", str(config)], capture_output=True, text=True, timeout=120)
        assert result.returncode == EXIT_USAGE
        assert len(result.stderr.strip().splitlines()) == 1 and "pinn_like" in result.stderr
        assert "Traceback" not in result.stderr

    def test_the_shipped_exercise_names_its_assignment(self):
        for folder in ("exercises", "solutions"):
            notebook = nbformat.read(ROOT / folder / "computational_graph.ipynb", as_version=4)
            assert notebook.metadata["torchgrade"]["assignment"] == "computational_graph"

    def test_the_solution_is_graded_by_its_metadata_among_several(self, tmp_path):
        config = two_assignments(tmp_path)
        result = subprocess.run([sys.executable, str(ROOT / "grade.py"), str(SOLUTION), "--config", str(config),
                                 "--format", "json"], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["score"] == 20


class TestInputs:
    ASSIGNMENT = Assignment(name="demo", title="Demo", inputs={
        "t": Tensor(example=[[0.0], [0.5]], random_shape=(4, 1), low=-1.0, high=1.0, requires_grad=True),
        "s": Tensor(example=2.0, dtype="float32"),
        "omega": Number(example=2.0, low=1.0, high=3.0),
        "steps": Number(example=3, fixed=True),
        "model": Seeded("nn.Sequential(nn.Linear(1, 3), nn.Tanh(), nn.Linear(3, 1)).double()", example_seed=1),
    })

    def test_example_run_uses_the_examples(self):
        drawn = self.ASSIGNMENT.draw(self.ASSIGNMENT.plan_run(0, 0))
        assert drawn["t"].shape == (2, 1) and drawn["t"].requires_grad and drawn["s"].shape == ()
        assert drawn["omega"].as_python() == 2.0 and drawn["steps"].as_python() == 3
        assert drawn["model"] == DrawnSeed(seed=1)

    def test_random_runs_draw_each_input_from_its_own_declaration(self):
        run = self.ASSIGNMENT.plan_run(1, 12345)
        drawn = self.ASSIGNMENT.draw(run)
        assert drawn == self.ASSIGNMENT.draw(run)  # reproducible
        t = drawn["t"].as_torch()
        assert t.shape == (4, 1) and t.requires_grad and bool((t.abs() <= 1).all())
        assert 1.0 <= drawn["omega"].value <= 3.0 and drawn["omega"].value != 2.0
        assert drawn["steps"].as_python() == 3 and isinstance(drawn["steps"].as_python(), int)
        assert drawn["model"].seed != 1
        fewer = Assignment(name="d", title="d", inputs={"t": self.ASSIGNMENT.inputs["t"]})
        assert fewer.draw(run)["t"] == drawn["t"]  # adding inputs never changes another input's draw
        assert "t: a random 4×1 float64 tensor" in run.description and "steps" not in run.description

    def test_given_code_builds_what_the_reference_gets(self):
        drawn = self.ASSIGNMENT.draw(self.ASSIGNMENT.plan_run(1, 99))
        code = Given("t", "s", "omega", "model", then="u = model(t)").code(self.ASSIGNMENT, drawn)
        namespace: dict = {}
        exec(code, namespace)  # what the GIVEN cell does in the kernel
        built = self.ASSIGNMENT.build(drawn)
        assert torch.equal(namespace["t"], built["t"]) and namespace["t"].requires_grad
        assert namespace["s"].dtype == torch.float32 and namespace["s"].shape == ()
        assert namespace["omega"] == built["omega"]
        for (name, mine), theirs in zip(namespace["model"].state_dict().items(), built["model"].state_dict().values()):
            assert torch.equal(mine, theirs), name
        assert isinstance(drawn["t"], DrawnTensor)


def test_a_batch_of_several_assignments_writes_one_folder_each(tmp_path):
    import csv

    config = two_assignments(tmp_path)
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    notebook_named(submissions, "alice.ipynb", "computational_graph")  # by its metadata
    notebook_named(submissions, "bob_pinn_like.ipynb")  # by its file name
    notebook_named(submissions, "carol.ipynb")  # names no assignment: a row that says why
    output = tmp_path / "out"
    result = subprocess.run([sys.executable, str(ROOT / "grade.py"), str(submissions), "--config", str(config),
                             "--output-dir", str(output), "--jobs", "2"], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]

    def rows(name):
        with open(output / name / "grades.csv", encoding="utf-8", newline="") as handle:
            return {row["student"]: row for row in csv.DictReader(handle)}

    first, second = rows("computational_graph"), rows("pinn_like")
    assert set(first) == {"alice", "carol"} and set(second) == {"bob_pinn_like"}
    assert float(first["alice"]["total"]) == 20 and float(second["bob_pinn_like"]["total"]) == 20
    assert first["carol"]["status"] == "could not grade" and "cannot tell which assignment" in first["carol"]["reason"]
    for name in ("computational_graph", "pinn_like"):
        assert (output / name / "report.html").is_file() and (output / name / "gradebook.sqlite").is_file()
