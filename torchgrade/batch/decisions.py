"""An instructor's decisions after grading, and rebuilding the exports without grading.

    python grade.py --output-dir OUT --export
    python grade.py --output-dir OUT --override STUDENT CHECK POINTS --reason TEXT
    python grade.py --output-dir OUT --clear-override STUDENT [CHECK]
    python grade.py --output-dir OUT --comment STUDENT TEXT

Each is stored in OUT/gradebook.sqlite with who (the user name) and when, kept through
regrades (a regrade replaces the autograder's row, never the instructor's decisions), and
the exports are rebuilt from the whole gradebook. Nothing runs a notebook.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..config import AssignmentConfig
from ..errors import EXIT_GRADED
from .facts import grader_facts
from .run import BatchUsageError, OutputLock, say
from .gradebook import Gradebook
from .publish import export_gradebook


class DecisionError(BatchUsageError):
    label = "cannot update the gradebook"


def wants_decision(args: argparse.Namespace) -> bool:
    return bool(args.export or args.override or args.clear_override or args.comment)


def gradebook_assignment(args: argparse.Namespace, config, book: Gradebook) -> tuple[str, AssignmentConfig]:
    """--assignment, else the one assignment the gradebook holds (each assignment has its own output folder)."""
    from ..config import pick_assignment

    if args.assignment:
        return pick_assignment(config, args.assignment)
    held = [a for (a,) in book.db.execute("SELECT DISTINCT assignment FROM submissions ORDER BY assignment")]
    known = [a for a in held if a in config.assignments]
    if len(known) == 1:
        return known[0], config.assignments[known[0]]
    if not known and len(config.assignments) == 1:
        return next(iter(config.assignments.items()))
    raise DecisionError("say which assignment with --assignment (the gradebook holds "
                        f"{', '.join(held) or 'none of the configured ones'})")


def gradebook_folder(output: Path, assignment: str | None, config) -> Path:
    """The folder holding the gradebook: --output-dir itself, or, as a batch over several configured assignments
    writes one folder per assignment (OUTPUT/<assignment>/), the one of --assignment or the only one there is."""
    held = [name for name in config.assignments if (output / name / "gradebook.sqlite").is_file()]
    if assignment in held:  # before a gradebook of OUTPUT's own, which may be another assignment's
        return output / assignment
    if (output / "gradebook.sqlite").is_file():
        return output
    if assignment and held:
        raise DecisionError(f"{output} holds no gradebook for {assignment}, only for {', '.join(held)}")
    if len(held) == 1:
        return output / held[0]
    if held:
        raise DecisionError(f"{output} holds a gradebook for each of {', '.join(held)}: say which with --assignment "
                            "NAME")
    raise DecisionError(f"{output}: no gradebook.sqlite here; grade a class into it first")


def run_decisions(args: argparse.Namespace, config) -> int:
    if args.paths:
        raise DecisionError("--export, --override, --clear-override and --comment take no PATH: they work on the "
                              "gradebook in --output-dir")
    if args.output_dir is None:
        raise DecisionError("say which gradebook with --output-dir (the folder holding gradebook.sqlite)")
    output = gradebook_folder(args.output_dir.resolve(), args.assignment, config)
    if args.override and not (args.reason or "").strip():
        raise DecisionError("--override needs --reason TEXT: the student sees it")
    with OutputLock(output):
        book = Gradebook(output / "gradebook.sqlite")
        try:
            name, entry = gradebook_assignment(args, config, book)
            if getattr(args, "sandbox", None):
                entry = entry.model_copy(update={"limits": entry.limits.model_copy(update={"sandbox": args.sandbox})})
            facts = grader_facts(name, entry)
            record(args, book, name, entry)
            rows, said = export_gradebook(book, name, entry, facts, output, [])
        finally:
            book.close()
    for note in said:
        say(f"note: {note}")
    say(f"Rebuilt the exports of {len(rows)} student(s) in {output} (grades.csv, checks.csv, canvas.csv, moodle.csv, "
        "gradescope.csv, feedback/, report.html)")
    return EXIT_GRADED


def _known_student(book: Gradebook, name: str, student: str) -> None:
    known = {r.student for r in book.rows(name)} | {s.identity for s in book.roster()}
    if student not in known:
        close = sorted(s for s in known if s.casefold() == student.casefold())
        hint = f" (did you mean {close[0]!r}?)" if close else " (names are as in grades.csv)"
        raise DecisionError(f"no student {student!r} in the gradebook{hint}")


def record(args: argparse.Namespace, book: Gradebook, name: str, entry: AssignmentConfig) -> None:
    if args.override:
        student, check, text = args.override
        _known_student(book, name, student)
        if check not in entry.checks:
            raise DecisionError(f"no check {check!r} in {name} (checks: {', '.join(entry.checks)})")
        try:
            points = float(text)
        except ValueError:
            raise DecisionError(f"POINTS must be a number, not {text!r}") from None
        maximum = entry.checks[check].points
        if not math.isfinite(points) or not 0 <= points <= maximum:
            raise DecisionError(f"POINTS for {check} must be between 0 and {maximum:g}")
        made = book.set_override(name, student, check, points, args.reason.strip())
        say(f"Override: {student}, {check} = {points:g}/{maximum:g} ({made.reason}), by {made.author} at {made.created_at}")
        row = book.row(name, student)
        if row is None or row.status != "graded":  # kept, as through any regrade, but nothing shows it yet
            why = "no submission" if row is None else "it could not be graded"
            say(f"note: {student} has no graded submission ({why}): the override counts once one is graded")
    if args.clear_override:
        student, *rest = args.clear_override
        if len(rest) > 1:
            raise DecisionError("--clear-override takes STUDENT and optionally one CHECK")
        removed = book.clear_override(name, student, rest[0] if rest else None)
        if not removed:
            raise DecisionError(f"no override for {student!r}" + (f" on {rest[0]!r}" if rest else ""))
        say(f"Removed {removed} override(s) of {student}")
    if args.comment:
        student, text = args.comment
        _known_student(book, name, student)
        if not text.strip():
            raise DecisionError("--comment needs some text")
        made = book.add_comment(name, student, text.strip())
        say(f"Comment for {student} by {made.author} at {made.created_at}")
