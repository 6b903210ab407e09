"""`python grade.py PATH...`: grade one notebook (student) or a whole class (instructor).

Exit statuses (documented in the README):
  0  graded (whatever the score); for a batch: the batch ran, each submission has a row
  2  wrong command-line usage
  3  the submission could not be read (missing, empty, not a notebook, ...)
  4  config.yaml or the grader module is invalid
  5  the grader itself failed (for example, no Python kernel could be started)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import assignment_for, load_config
from .errors import EXIT_GRADED, EXIT_GRADER_FAILURE, GradingError
from .pipeline import Grader
from .render import FAILURE_RENDERERS, RENDERERS, render_failure, render_report

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grade.py", description="Grade PyTorch autograd notebooks.")
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                        help="a notebook; or, for a batch, several notebooks, folders (searched recursively) or zips "
                             "(one notebook with --output-dir is a batch of one)")
    parser.add_argument("--format", choices=sorted(RENDERERS), default="text", help="report format (default: text)")
    parser.add_argument("--assignment", help="assignment name in config.yaml (default: the notebook's "
                        "metadata.torchgrade.assignment, else its file name, else the only one)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="path to config.yaml")
    parser.add_argument("--output-dir", type=Path, help="batch: where the gradebook and exports go")
    parser.add_argument("--jobs", type=int, help="batch: parallel workers (default: number of cores)")
    parser.add_argument("--roster", type=Path, help="batch: CSV mapping submissions to students")
    parser.add_argument("--force", action="store_true", help="batch: regrade submissions already graded")
    parser.add_argument("--grading", action="store_true",
                        help="grading run: report hidden checks too (also TORCHGRADE_GRADING=1); "
                             "without it, reports only say how many hidden checks there are")
    parser.add_argument("--sandbox", choices=("auto", "require", "off"),
                        help="run student code in the bubblewrap sandbox: auto (when it works), require, off "
                             "(default: limits.sandbox in config.yaml; see docs/threat_model.md)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of grader failures")
    after = parser.add_argument_group("after grading (with --output-dir, no PATH; see docs/batch.md)")
    after.add_argument("--export", action="store_true",
                       help="rebuild grades.csv, the LMS files, feedback/ and report.html from the gradebook")
    after.add_argument("--override", nargs=3, metavar=("STUDENT", "CHECK", "POINTS"),
                       help="set a check's points for a student (kept through regrades); needs --reason")
    after.add_argument("--reason", help="why, for --override (the student sees it)")
    after.add_argument("--clear-override", nargs="+", metavar="STUDENT [CHECK]",
                       help="remove a student's override of CHECK (or all of theirs)")
    after.add_argument("--comment", nargs=2, metavar=("STUDENT", "TEXT"), help="add a comment to a student's feedback")
    return parser


def is_batch(paths: list[Path], output_dir: Path | None = None) -> bool:
    """Several PATHs, a folder, a zip, or anything with --output-dir (one notebook is then a batch of one)."""
    return len(paths) > 1 or output_dir is not None or paths[0].is_dir() or paths[0].suffix.lower() == ".zip"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.paths and not (args.export or args.override or args.clear_override or args.comment):
        parser.error("give a notebook, folder or zip to grade (or --export/--override/--comment with --output-dir)")
    name = entry = None
    try:
        config = load_config(args.config)
        if not args.paths or args.export or args.override or args.clear_override or args.comment:
            from .batch.decisions import run_decisions  # imported lazily: students never need it

            return run_decisions(args, config)
        if is_batch(args.paths, args.output_dir):
            from .batch import run_batches

            return run_batches(args, config)
        name, entry = assignment_for(config, args.paths[0], args.assignment)
        if args.sandbox:
            entry = with_sandbox(entry, args.sandbox)
        report = Grader.from_config(name, entry).grade_notebook(args.paths[0])
    except GradingError as problem:
        return fail(args, problem.one_line(), problem.exit_status, name, entry)
    except Exception as problem:  # never a traceback for users; --debug shows it
        if args.debug:
            raise
        return fail(args, f"internal error: {type(problem).__name__}: {problem}", EXIT_GRADER_FAILURE, name, entry)
    print(render_report(args.format, report, grading=args.grading))
    return EXIT_GRADED


def with_sandbox(entry, mode: str | None):
    """The assignment's settings with --sandbox applied (None: as configured)."""
    if not mode:
        return entry
    return entry.model_copy(update={"limits": entry.limits.model_copy(update={"sandbox": mode})})


def fail(args: argparse.Namespace, reason: str, status: int, name=None, entry=None) -> int:
    """One line on stderr; machine formats still get a complete, valid document on stdout."""
    print(f"grade.py: {reason}", file=sys.stderr)
    if args.format in FAILURE_RENDERERS:
        print(render_failure(args.format, reason, name=name, entry=entry, grading=args.grading))
    return status
