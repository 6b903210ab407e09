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


def excerpt(text: str, limit: int = 160) -> str:
    """A student's error message, quoted in a Found line: whole when short, else cut at a word and ended with "…"
    (a message cut mid-word reads as if the grader broke it)."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    if " " in cut[limit // 2:]:
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip(" ,;:") + "…"
