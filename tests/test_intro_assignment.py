"""computational_graph_intro: the corpus earns exactly its points, with targeted feedback; the content is consistent.

Each corpus notebook is graded once per session by each engine (the kernel engine's
evidence re-checked when stored: conftest.kernel_reports); every other test reads
those reports or needs no kernel at all.
"""

from __future__ import annotations

import re
import subprocess
import sys

import nbformat
import pytest
import yaml

from conftest import CONFIG, ROOT, comparable, grade_all, kernel_reports, needs_warm_engine, warm_grader
from torchgrade.config import assignment_for

NAME = "computational_graph_intro"
ENTRY = CONFIG.assignments[NAME]
CORPUS = ROOT / "tests" / "corpus" / NAME
MANIFEST = yaml.safe_load((CORPUS / "MANIFEST.yaml").read_text(encoding="utf-8"))
FILES, ANSWERS = MANIFEST["files"], MANIFEST["answers"]
MAX = sum(check.points for check in ENTRY.checks.values())
SOLUTION_BLOCK = re.compile(r"^[ \t]*# BEGIN SOLUTION\n(.*?)^[ \t]*# END SOLUTION$", re.MULTILINE | re.DOTALL)


def files(kind: str) -> list[str]:
    return [name for name, entry in FILES.items() if entry["kind"] == kind]


def answers(kind: str) -> list[str]:
    return [name for name, entry in ANSWERS.items() if FILES[entry["file"]]["kind"] == kind]


@pytest.fixture(scope="session")
def intro_reports():
    return kernel_reports(NAME, ENTRY, CORPUS, FILES)


@pytest.fixture(scope="session")
def intro_warm_reports():
    return grade_all(warm_grader(NAME, ENTRY), CORPUS, FILES)


# ---------------------------------------------------------------- whole files


@pytest.mark.parametrize("name", files("correct"))
def test_correct_files_earn_full_marks(intro_reports, name):
    report = intro_reports[name]
    assert {c.id: c.message for c in report.checks if not c.passed} == {}
    assert report.score == report.max_score == MAX == 20


@pytest.mark.parametrize("name", files("mistake"))
def test_each_mistake_file_loses_exactly_its_points(intro_reports, name):
    report = intro_reports[name]
    lost = set(FILES[name]["failing_checks"])
    assert {c.id for c in report.checks if not c.passed} == lost
    assert report.score == MAX - sum(ENTRY.checks[check].points for check in lost)


def test_the_untouched_exercise_earns_nothing(intro_reports):
    assert intro_reports["untouched_exercise.ipynb"].score == 0


@needs_warm_engine
@pytest.mark.parametrize("name", FILES)
def test_the_warm_engine_grades_the_corpus_as_the_kernel_engine(intro_reports, intro_warm_reports, name):
    assert comparable(intro_warm_reports[name]) == comparable(intro_reports[name])


# ---------------------------------------------------------------- one answer to one task


@pytest.mark.parametrize("name", answers("correct"))
def test_each_correct_answer_passes_its_task(intro_reports, name):
    answer = ANSWERS[name]
    checks = [c for c in intro_reports[answer["file"]].checks if c.task == answer["task"]]
    assert checks and all(c.passed for c in checks), [c.message for c in checks if not c.passed]


@pytest.mark.parametrize("name", answers("mistake"))
def test_each_mistake_loses_exactly_its_checks_with_its_message(intro_reports, name):
    answer = ANSWERS[name]
    checks = {c.id: c for c in intro_reports[answer["file"]].checks if c.task == answer["task"]}
    assert {i for i, c in checks.items() if not c.passed} == set(answer["failing_checks"])
    for check, phrase in answer["messages"].items():
        assert phrase in checks[check].message, checks[check].message
        assert checks[check].expected and checks[check].found and checks[check].hint


def test_the_cheats_keep_their_value_points_and_lose_only_how_checks(intro_reports):
    """Issue 8: a value typed in by hand can earn its value points, never the 'how' points."""
    lost = {c.id for c in intro_reports["cheats_how.ipynb"].checks if not c.passed}
    assert lost == {"t3_backward", "t4_reset", "t5_backward", "t6_in_place"}


def test_the_corpus_covers_enough_answers():
    assert len(answers("correct")) >= 6 and len(answers("mistake")) >= 10
    lost = {check for name in answers("mistake") for check in ANSWERS[name]["failing_checks"]}
    assert lost == set(ENTRY.checks), "every check must be failed by some typical mistake"


# ---------------------------------------------------------------- feedback


def solution_lines() -> set[str]:
    notebook = nbformat.read(ROOT / ENTRY.solution, as_version=4)
    blocks = [m.group(1) for c in notebook.cells if c.cell_type == "code" for m in SOLUTION_BLOCK.finditer(c.source)]
    return {line.split("#")[0].strip() for block in blocks for line in block.splitlines()} - {""}


def test_feedback_never_shows_the_solution_code(intro_reports):
    """No line of the solution's task code that the exercise does not show itself (its text names zero_() ...)."""
    exercise = nbformat.read(ROOT / ENTRY.exercise, as_version=4)
    shown = "\n".join(cell.source for cell in exercise.cells)
    code = {line for line in solution_lines() if len(line) > 8 and line not in shown}
    assert len(code) > 15
    for report in intro_reports.values():
        for check in report.checks:
            for line in code:
                assert line not in check.message, (check.id, line)


# ---------------------------------------------------------------- content without kernels


def test_the_exercise_is_what_assign_generates_from_the_solution():
    from torchgrade.authoring import exercise_from_solution

    exercise = nbformat.read(ROOT / ENTRY.exercise, as_version=4)
    assert exercise.metadata["torchgrade"]["assignment"] == NAME
    code = "".join(c.source for c in exercise.cells if c.cell_type == "code")
    assert "BEGIN SOLUTION" not in code and "# your code here" in code
    assert all(not c.outputs for c in exercise.cells if c.cell_type == "code")
    generated = exercise_from_solution(nbformat.read(ROOT / ENTRY.solution, as_version=4), NAME)
    assert [c.source for c in generated.cells] == [c.source for c in exercise.cells]


@pytest.mark.parametrize("notebook", [ENTRY.solution, ENTRY.exercise])
def test_grade_py_picks_this_assignment_without_being_told(notebook):
    assert assignment_for(CONFIG, ROOT / notebook)[0] == NAME


def test_the_committed_corpus_matches_its_generator():
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "corpus" / "make_corpus_intro.py"), "--check"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
