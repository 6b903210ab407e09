"""The instructors' authoring commands of `grade.py`: `--assign SOLUTION` and `--validate NAME`.

Exit statuses (README, "Authoring"):
  0  the exercise was written / the assignment is valid
  1  --validate: the assignment is not valid (a surviving mutant, the solution short of
     full marks, the exercise above its floor)
  3  --assign: the solution notebook cannot be read or its solution markers are wrong
  4  config.yaml or the grader module is invalid
  5  the grader itself failed
"""

from __future__ import annotations

import argparse
import sys

from .config import load_config
from .errors import EXIT_GRADED, EXIT_GRADER_FAILURE, GradingError


def run_authoring(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        if args.assign:
            from .authoring import assign

            target = assign(args.assign, config)
            print(f"wrote {target}")
            return EXIT_GRADED
        from .mutants import run_validate

        return run_validate(args, config)
    except GradingError as problem:
        return _fail(problem.one_line(), problem.exit_status)
    except Exception as problem:  # never a traceback for users; --debug shows it
        if args.debug:
            raise
        return _fail(f"internal error: {type(problem).__name__}: {problem}", EXIT_GRADER_FAILURE)


def _fail(reason: str, status: int) -> int:
    print(f"grade.py: {reason}", file=sys.stderr)
    return status
