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
import codecs
import sys
from pathlib import Path

from .config import assignment_for, load_config, pick_assignment
from .errors import EXIT_GRADED, EXIT_GRADER_FAILURE, GradingError
from .render import FAILURE_RENDERERS, RENDERERS, render_failure, render_report
from .sanitize import one_line

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
    parser.add_argument("--scheduler", metavar="tcp://HOST:8786",
                        help="batch: grade on this dask.distributed cluster (one task per submission; see docs/dask.md)")
    parser.add_argument("--engine", choices=("warm", "kernel"),
                        help="warm: fork each run from a process that has imported torch (fast; Linux, the "
                             "default; elsewhere it says so and uses kernels); kernel: a fresh Jupyter kernel per run "
                             "(the reference engine) (default: limits.engine in config.yaml)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of grader failures")
    authoring = parser.add_argument_group("authoring (instructors; see README)")
    authoring.add_argument("--assign", type=Path, metavar="SOLUTION",
                           help="write the exercise notebook generated from SOLUTION (solutions/NAME.ipynb)")
    authoring.add_argument("--validate", metavar="NAME",
                           help="prove assignment NAME's checks: solution full marks, exercise the floor, mutants caught")
    authoring.add_argument("--max-mutants", type=int, default=None, help="--validate: grade at most this many mutants")
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


def _json_escape(problem: UnicodeError) -> tuple[str, int]:
    """\\uXXXX for what the stream cannot encode: readable in text, and still valid inside a JSON string."""
    text = problem.object[problem.start:problem.end]
    escaped = "".join(f"\\u{unit:04x}" for char in text
                      for unit in ([ord(char)] if ord(char) < 0x10000 else
                                   [0xD800 + ((ord(char) - 0x10000) >> 10), 0xDC00 + ((ord(char) - 0x10000) & 0x3FF)]))
    return escaped, problem.end


codecs.register_error("torchgrade_escape", _json_escape)


def tolerant_output() -> None:
    """Whatever the terminal's encoding, printing a report never raises: what it cannot show is escaped."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="torchgrade_escape")
        except (AttributeError, ValueError, OSError):  # not a TextIOWrapper (a test's capture, say)
            pass


def emit(text: str, stream=None) -> None:
    stream = stream or sys.stdout
    try:
        print(text, file=stream)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "ascii"
        print(text.encode(encoding, "torchgrade_escape").decode(encoding, "replace"), file=stream)


def exit_now(status) -> None:
    """End the command with ``status`` (an int, None for 0, or a message for 1) without tearing the interpreter
    down: with torch loaded, Python's own finalization takes 0.5-1.4 s, a fifth of grading one notebook. The exit
    handlers still run (the zygote's close, temporary folders, logging), and the output is flushed first."""
    import atexit
    import os

    if isinstance(status, str):
        print(status, file=sys.stderr)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`), or closed above
            pass
    atexit._run_exitfuncs()
    os._exit(status or 0)


def main(argv: list[str] | None = None) -> int:
    tolerant_output()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.assign or args.validate:
        from .authoring_cli import run_authoring  # instructors only

        return run_authoring(args)
    if not args.paths and not (args.export or args.override or args.clear_override or args.comment):
        parser.error("give a notebook, folder or zip to grade (or --export/--override/--comment with --output-dir, "
                     "or --assign / --validate)")
    name = entry = None
    try:
        config = load_config(args.config)
        config = with_engine(config, args.engine)
        if not args.paths or args.export or args.override or args.clear_override or args.comment:
            from .batch.decisions import run_decisions  # imported lazily: students never need it

            return run_decisions(args, config)
        if is_batch(args.paths, args.output_dir) or args.scheduler:
            start_batch_soon(args, config)  # the zygote and the fork server import torch while this process does
            from .batch.run import run_batches  # imported lazily: students never need it
            from .batch.slots import close_unclaimed

            try:
                return run_batches(args, config)
            finally:
                close_unclaimed()
        name, entry = assignment_for(config, args.paths[0], args.assignment)
        if args.sandbox:
            entry = with_sandbox(entry, args.sandbox)
        if entry.limits.engine == "warm":
            from .zygote import start_shared_soon

            start_shared_soon(entry.limits.sandbox)  # the zygote imports torch while this process does
        from .pipeline import Grader  # imports torch

        report = Grader.from_config(name, entry).grade_notebook(args.paths[0])
    except GradingError as problem:
        return fail(args, problem.one_line(), problem.exit_status, name, entry)
    except Exception as problem:  # never a traceback for users; --debug shows it
        if args.debug:
            raise
        return fail(args, f"internal error: {type(problem).__name__}: {problem}", EXIT_GRADER_FAILURE, name, entry)
    emit(render_report(args.format, report, grading=args.grading))
    return EXIT_GRADED


def with_engine(config, engine: str | None):
    """Every assignment's settings with --engine applied (None: as configured)."""
    if not engine:
        return config
    return config.model_copy(update={"assignments": {
        name: entry.model_copy(update={"limits": entry.limits.model_copy(update={"engine": engine})})
        for name, entry in config.assignments.items()}})


def start_batch_soon(args: argparse.Namespace, config) -> None:
    """A local batch starts its workers' fork server and zygote now, while this process imports torch (a zygote
    depends only on the engine and the sandbox, which the assignments of a batch usually share). Anything that
    stops the batch is left for the batch itself to meet and say."""
    if args.scheduler or (args.jobs is not None and args.jobs < 1):
        return
    from .batch.slots import batch_sandbox, start_soon

    try:
        entries = [pick_assignment(config, args.assignment)[1]] if args.assignment else config.assignments.values()
    except GradingError:
        return
    settings = {(entry.limits.engine, entry.limits.sandbox): entry
                for entry in (batch_sandbox(with_sandbox(entry, args.sandbox)) for entry in entries)}
    if len(settings) == 1:
        start_soon(next(iter(settings.values())))


def with_sandbox(entry, mode: str | None):
    """The assignment's settings with --sandbox applied (None: as configured)."""
    if not mode:
        return entry
    return entry.model_copy(update={"limits": entry.limits.model_copy(update={"sandbox": mode})})


def fail(args: argparse.Namespace, reason: str, status: int, name=None, entry=None) -> int:
    """One line on stderr; machine formats still get a complete, valid document on stdout."""
    reason = one_line(reason, 2000)  # file names and messages come from submissions
    emit(f"grade.py: {reason}", sys.stderr)
    if args.format in FAILURE_RENDERERS:
        emit(render_failure(args.format, reason, name=name, entry=entry, grading=args.grading))
    return status
