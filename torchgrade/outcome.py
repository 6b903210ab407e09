"""What one check says about one run: passed, or what was expected, what was found, and a hint."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    passed: bool
    expected: str = ""
    found: str = ""
    hint: str = ""
    note: str = ""
    error: str = ""  # why the check could not judge the answer at all (a grader problem)


def passed(note: str = "") -> Outcome:
    return Outcome(True, note=note)


def failed(expected: str, found: str, hint: str = "") -> Outcome:
    return Outcome(False, expected=expected, found=found, hint=hint)


def first_failure(*outcomes: Outcome) -> Outcome:
    """The first failed outcome, else a pass carrying every distinct note."""
    for outcome in outcomes:
        if not outcome.passed:
            return outcome
    notes = [o.note for o in outcomes if o.note]
    return passed(" ".join(dict.fromkeys(notes)))
