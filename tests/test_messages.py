"""Each typical mistake gets its own targeted message: what was expected, what was found, a hint."""

from __future__ import annotations

import nbformat
import pytest

from conftest import ROOT

TARGETED = [
    # (notebook, check, text the message must contain)
    ("backward_nonscalar.ipynb", "t2_backward_scalar", "called on a tensor of shape (2, 3)"),
    ("backward_nonscalar.ipynb", "t2_backward_scalar", "needs a single number"),
    ("missing_create_graph.ipynb", "t3_create_graph", "f_x has no grad_fn"),
    ("create_graph_only_for_f_x.ipynb", "t3_create_graph", "f_y has no grad_fn"),
    ("retain_instead_of_create.ipynb", "t3_create_graph", "retain_graph=True was used"),
    ("backward_in_task3.ipynb", "t3_create_graph", "torch.autograd.grad was not used"),
    ("backward_in_task3.ipynb", "t3_grad_untouched", "backward() was used in task 3"),
    ("missing_retain_graph.ipynb", "t5_retain_graph", "backward through the graph a second time"),
    ("missing_retain_graph.ipynb", "t5_grad_values", "only the first pass ran"),
    ("needless_retain.ipynb", "t5_retain_graph", "last backward pass"),
    ("double_backward.ipynb", "t2_grad_values", "exactly 2 times the expected gradient"),
    ("double_backward.ipynb", "t2_grad_values", "Gradients accumulate"),
    ("wrong_function.ipynb", "t1_f_value", "exponents look swapped"),
    ("wrong_function_times.ipynb", "t1_f_value", "power operator"),
    ("grad_by_hand.ipynb", "t2_backward_scalar", "no backward() call ran in task 2"),
    ("hardcoded_second.ipynb", "t4_from_first", "no autograd call in task 4 differentiated f_x"),
    ("hardcoded_f_with_graph.ipynb", "t1_f_value", "Correct for the example inputs, but not for other inputs"),
    # the values shown are the other inputs', not the notebook's: the lines say so
    ("hardcoded_f_with_graph.ipynb", "t1_f_value", "Expected: with other inputs (random"),
    ("hardcoded_f_with_graph.ipynb", "t1_f_value", "Found: with other inputs (random"),
    ("error_in_task1.ipynb", "t1_f_value", "NameError: name 'yy' is not defined"),
    ("f_detached.ipynb", "t1_f_graph", "no grad_fn"),
    ("task_cell_deleted.ipynb", "t3_values", "no cell starting with `# TASK 3`"),
    ("untouched_exercise.ipynb", "t1_f_value", "Found: `...`, the exercise's placeholder (this part is not written yet)"),
    # typed-in values next to throw-away autograd calls, and a typed-in tensor at a freed result's address
    ("typed_formulas_with_decoys.ipynb", "t2_backward_scalar", "did not come from autograd"),
    ("typed_formulas_with_decoys.ipynb", "t3_create_graph", "did not come from autograd"),
    ("typed_formulas_with_decoys.ipynb", "t4_from_first", "did not come from autograd"),
    ("typed_formulas_with_decoys.ipynb", "t5_retain_graph", "did not come from autograd"),
    ("id_reuse.ipynb", "t3_create_graph", "did not come from autograd"),
    ("id_reuse.ipynb", "t4_from_first", "did not come from autograd"),
]


@pytest.mark.parametrize("name, check_id, text", TARGETED)
def test_targeted_message(corpus_reports, name, check_id, text):
    check = next(c for c in corpus_reports[name].checks if c.id == check_id)
    assert not check.passed
    assert text in check.message


def test_one_tuple_earns_points_with_a_note(corpus_reports):
    check = next(c for c in corpus_reports["correct_one_tuple.ipynb"].checks if c.id == "t3_values")
    assert check.passed and check.score == check.max_score
    assert "1-tuple" in check.note


def test_shell_escapes_are_reported_not_run(corpus_reports):
    notes = corpus_reports["correct_extra_cells.ipynb"].notes
    assert any("!pip install torch" in note and "not run" in note for note in notes)


def solution_lines() -> set[str]:
    notebook = nbformat.read(ROOT / "solutions" / "computational_graph.ipynb", as_version=4)
    lines = set()
    for cell in notebook.cells:
        if cell.cell_type == "code" and cell.source.lstrip().upper().startswith("# TASK"):
            lines |= {line.strip() for line in cell.source.splitlines()
                      if line.strip() and not line.strip().startswith("#") and len(line.strip()) > 12}
    return lines


def test_feedback_never_shows_the_solution_code(corpus_reports):
    answers = solution_lines()
    assert answers, "the solution has task code"
    for report in corpus_reports.values():
        for check in report.checks:
            leaked = [line for line in answers if line in check.message]
            assert not leaked, (report.submission, check.id, leaked)


def test_a_task_that_could_not_run_is_an_error_not_a_wrong_answer(corpus_reports):
    """Code that ran and raised is a wrong answer (failed, with the exception in the message); a task whose cell is
    missing could not run at all (error). One vocabulary: torchgrade/render/status.py."""
    crashed = {c.id: c for c in corpus_reports["error_in_task1.ipynb"].checks}
    assert not crashed["t1_f_value"].passed and not crashed["t1_f_value"].error
    assert "NameError" in crashed["t1_f_value"].message and "NameError" in crashed["t1_f_graph"].message
    assert all(not c.error for c in crashed.values() if c.passed)
    assert all(not c.error for c in corpus_reports["wrong_function.ipynb"].checks)
    deleted = {c.id: c for c in corpus_reports["task_cell_deleted.ipynb"].checks}
    assert "no cell starting with `# TASK 3`" in deleted["t3_values"].error
