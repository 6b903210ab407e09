"""`python grade.py NOTEBOOK`: grade one notebook and print the report.

Exit statuses (documented in the README):
  0  the notebook was graded (whatever its score)
  2  wrong command-line usage
  3  the submission could not be read (missing, empty, not a notebook, ...)
  4  config.yaml or the grader module is invalid
  5  the grader itself failed (for example, no Python kernel could be started)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import load_config, pick_assignment
from .errors import EXIT_GRADED, EXIT_GRADER_FAILURE, GradingError
from .pipeline import Grader
from .render import RENDERERS

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grade.py", description="Grade a PyTorch autograd notebook.")
    parser.add_argument("notebook", type=Path, help="the submitted .ipynb file")
    parser.add_argument("--format", choices=sorted(RENDERERS), default="text", help="report format (default: text)")
    parser.add_argument("--assignment", help="assignment name in config.yaml (default: the only one)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="path to config.yaml")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of grader failures")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        name, entry = pick_assignment(config, args.assignment)
        report = Grader.from_config(name, entry).grade_notebook(args.notebook)
    except GradingError as problem:
        print(f"grade.py: {problem.one_line()}", file=sys.stderr)
        return problem.exit_status
    except Exception as problem:  # never a traceback for users; --debug shows it
        if args.debug:
            raise
        print(f"grade.py: internal error: {type(problem).__name__}: {problem}", file=sys.stderr)
        return EXIT_GRADER_FAILURE
    print(RENDERERS[args.format](report))
    return EXIT_GRADED
