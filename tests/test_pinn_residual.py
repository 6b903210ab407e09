"""The pinn_residual assignment: its corpus graded once per session, its reference and inputs checked in-process.

Each corpus notebook (tests/corpus/pinn_residual, made by make_pinn_residual.py) is
graded once per session by each engine (the kernel engine's evidence re-checked when
stored: conftest.kernel_reports); every test below reads the shared reports. Only the
two CLI tests start kernels of their own.
"""

from __future__ import annotations

import json
import subprocess
import sys

import nbformat
import pytest
import torch
import yaml

from conftest import ROOT, comparable, grade_all, kernel_grader, kernel_reports, needs_warm_engine, warm_grader
from torchgrade.config import load_config
from torchgrade.pipeline import Grader

NAME = "pinn_residual"
CORPUS = ROOT / "tests" / "corpus" / NAME
MANIFEST = yaml.safe_load((CORPUS / "MANIFEST.yaml").read_text(encoding="utf-8"))
FILES = MANIFEST["files"]
CONFIG = load_config(ROOT / "config.yaml").assignments[NAME]
POINTS = {check: spec.points for check, spec in CONFIG.checks.items()}
MAX = sum(POINTS.values())
SOLUTION = ROOT / "solutions" / f"{NAME}.ipynb"
EXERCISE = ROOT / "exercises" / f"{NAME}.ipynb"
# Lines of the solution that no feedback text may give away.
SOLUTION_LINES = ("create_graph=True)[0]", "(residual**2).mean()", "d2u_dt2 + omega**2 * u", "lr=lr)")


def files_of(kind: str) -> list[str]:
    return [name for name, entry in FILES.items() if entry["kind"] == kind]


@pytest.fixture(scope="session")
def pinn_grader() -> Grader:
    return kernel_grader(NAME, CONFIG)


@pytest.fixture(scope="session")
def pinn_reports() -> dict:
    """Every corpus notebook's report by the reference engine, which pinn_warm_reports are compared with."""
    return kernel_reports(NAME, CONFIG, CORPUS, FILES)


@pytest.fixture(scope="session")
def pinn_warm_reports() -> dict:
    return grade_all(warm_grader(NAME, CONFIG), CORPUS, FILES)


# ------------------------------------------------------------------------------ the corpus

@pytest.mark.parametrize("name", files_of("correct"))
def test_correct_variants_earn_full_marks(pinn_reports, name):
    report = pinn_reports[name]
    assert {c.id: c.message for c in report.checks if not c.passed} == {}
    assert report.score == report.max_score == MAX


@pytest.mark.parametrize("name", files_of("mistake"))
def test_each_mistake_loses_exactly_its_checks(pinn_reports, name):
    report = pinn_reports[name]
    expected = set(FILES[name]["failing_checks"])
    assert {c.id for c in report.checks if not c.passed} == expected
    assert report.score == MAX - sum(POINTS[check] for check in expected)


@pytest.mark.parametrize("name", files_of("mistake"))
def test_each_mistake_gets_its_targeted_message(pinn_reports, name):
    failing = [c for c in pinn_reports[name].checks if not c.passed]
    assert failing
    assert FILES[name]["message"] in failing[0].message, failing[0].message
    for check in failing:
        assert check.score == 0 and check.expected and check.found and check.hint, check
        assert not any(line in check.message for line in SOLUTION_LINES), check.message


@needs_warm_engine
@pytest.mark.parametrize("name", list(FILES))
def test_the_warm_engine_grades_the_corpus_as_the_kernel_engine(pinn_reports, pinn_warm_reports, name):
    assert comparable(pinn_warm_reports[name]) == comparable(pinn_reports[name])


def test_hand_derivatives_keep_value_points_and_lose_how_points(pinn_reports):
    """The cheat with a throw-away autograd call: the value is right, the checks judge where it came from."""
    checks = {c.id: c for c in pinn_reports["du_by_hand_dropped_call.ipynb"].checks}
    assert checks["t1_du_value"].passed
    assert not checks["t1_du_autograd"].passed and "did not come from autograd" in checks["t1_du_autograd"].found


@pytest.mark.parametrize("name", ["d2u_no_create_graph.ipynb", "d2u_retain_not_create.ipynb"])
def test_lost_graph_in_task_2_shows_in_the_parameters_gradients(pinn_reports, name):
    checks = {c.id: c for c in pinn_reports[name].checks}
    assert "did not go through the second derivative" in checks["t4_grad_values"].found
    assert "create_graph=True" in checks["t4_grad_values"].hint


def test_the_runs_describe_the_random_inputs(pinn_reports):
    runs = pinn_reports["correct_solution.ipynb"].runs
    assert len(runs) == 2 and "omega" in runs[1]


def test_the_committed_corpus_matches_its_generator():
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "corpus" / "make_pinn_residual.py"), "--check"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


# ------------------------------------------------------------------------------ in-process

def _given_namespace() -> dict:
    """The solution's set-up and GIVEN cells, run here: what a student sees in the notebook."""
    notebook = nbformat.read(SOLUTION, as_version=4)
    namespace: dict = {}
    for cell in notebook.cells:
        if cell.cell_type == "code" and "# TASK" not in cell.source:
            exec(cell.source, namespace)  # noqa: S102 - our own solution notebook
    return namespace


def inputs_of(grader: Grader, run: int) -> dict:
    """The built inputs (tensors, numbers, the seeded model) of one run of the solution."""
    plan = grader.plan_runs(SOLUTION.read_bytes())[run]
    return grader.assignment.build(grader.assignment.draw(plan))


def test_the_example_run_is_the_notebook_given_cell(pinn_grader):
    """The grader's example inputs equal what the GIVEN cell builds, weights included."""
    notebook = _given_namespace()
    inputs = inputs_of(pinn_grader, 0)
    assert torch.equal(inputs["t"], notebook["t"]) and inputs["t"].requires_grad
    assert (inputs["omega"], inputs["lr"]) == (notebook["omega"], notebook["lr"])
    ours = dict(inputs["model"].named_parameters())
    for name, parameter in notebook["model"].named_parameters():
        assert torch.equal(ours[name], parameter), name


def test_random_runs_change_every_input(pinn_grader):
    example, other = inputs_of(pinn_grader, 0), inputs_of(pinn_grader, 1)
    assert example["t"].shape != other["t"].shape or not torch.equal(example["t"], other["t"])
    assert example["omega"] != other["omega"] and example["lr"] != other["lr"]
    assert not torch.equal(example["model"][0].weight, other["model"][0].weight)
    assert other["t"].dtype == torch.float64 and other["t"].requires_grad


def test_reference_agrees_with_the_solution_run_in_process(pinn_grader):
    """The reference of the example run equals the solution notebook executed here, task by task."""
    notebook = nbformat.read(SOLUTION, as_version=4)
    namespace: dict = {}
    for cell in notebook.cells:
        if cell.cell_type == "code":
            exec(cell.source, namespace)  # noqa: S102 - our own solution notebook
    reference = pinn_grader.assignment.reference(inputs_of(pinn_grader, 0))
    for task, name in ((1, "u"), (1, "du_dt"), (2, "d2u_dt2"), (3, "residual"), (3, "loss")):
        assert torch.allclose(reference[task][name], namespace[name].detach(), rtol=1e-12, atol=1e-14), name
    for name, parameter in namespace["model"].named_parameters():
        assert torch.allclose(reference[4][f"model.{name}.grad"], parameter.grad, rtol=1e-12, atol=1e-14)
        assert torch.allclose(reference[5][f"model.{name}"], parameter.detach(), rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------------ the CLI

def _grade(*arguments: str) -> dict:
    """grade.py's JSON report (Gradescope's results.json shape), checked to be this assignment's."""
    done = subprocess.run([sys.executable, "grade.py", *arguments, "--format", "json"], capture_output=True,
                          text=True, cwd=ROOT, timeout=900)
    assert done.stdout, done.stderr
    report = json.loads(done.stdout)
    assert report["max_score"] == MAX and any("d2u_dt2" in test["name"] for test in report["tests"]), report
    return report


def test_cli_grades_the_solution_with_full_marks():
    assert _grade(str(SOLUTION.relative_to(ROOT)), "--assignment", NAME)["score"] == MAX


def test_cli_picks_the_assignment_of_the_exercise_and_gives_zero():
    assert _grade(str(EXERCISE.relative_to(ROOT)))["score"] == 0
