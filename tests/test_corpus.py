"""The student-like corpus: correct variants earn full marks, each typical mistake loses exactly its points."""

from __future__ import annotations

import pytest

from conftest import ASSIGNMENT, CORPUS, MANIFEST, corpus_files
from torchgrade.errors import SubmissionError
from torchgrade.loader import load_notebook

MAX = sum(check.points for check in ASSIGNMENT.checks.values())


@pytest.mark.parametrize("name", corpus_files("correct"))
def test_correct_variants_earn_full_marks(corpus_reports, name):
    report = corpus_reports[name]
    failures = {c.id: c.message for c in report.checks if not c.passed}
    assert failures == {}
    assert report.score == report.max_score == MAX


@pytest.mark.parametrize("name", corpus_files("mistake", "format"))
def test_each_mistake_loses_exactly_its_points(corpus_reports, name):
    report = corpus_reports[name]
    expected_failures = set(MANIFEST[name]["failing_checks"])
    assert {c.id for c in report.checks if not c.passed} == expected_failures
    lost = sum(ASSIGNMENT.checks[check].points for check in expected_failures)
    assert report.score == MAX - lost


@pytest.mark.parametrize("name", corpus_files("mistake", "format"))
def test_every_lost_point_says_expected_found_and_hint(corpus_reports, name):
    for check in corpus_reports[name].checks:
        if not check.passed:
            assert check.score == 0
            assert check.expected and check.found and check.hint, check
            assert check.message.startswith("Expected: ")


@pytest.mark.parametrize("name", corpus_files("broken"))
def test_broken_files_give_a_one_line_reason(name):
    with pytest.raises(SubmissionError) as caught:
        load_notebook(CORPUS / name)
    line = caught.value.one_line()
    assert "\n" not in line and line.startswith("could not read the submission: ")
    assert name in line


def test_untouched_exercise_earns_nothing(corpus_reports):
    assert corpus_reports["untouched_exercise.ipynb"].score == 0


@pytest.mark.parametrize("script", ["make_corpus.py", "make_hostile.py"])
def test_the_committed_corpus_matches_its_generator(script):
    """Each notebook is the solution with one documented change: regenerate after editing the solution."""
    import subprocess
    import sys

    from conftest import ROOT

    result = subprocess.run([sys.executable, str(ROOT / "tests" / "corpus" / script), "--check"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
