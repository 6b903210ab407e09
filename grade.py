#!/usr/bin/env python3
"""Grade a student's notebook: `python grade.py my_notebook.ipynb` (see README.md)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from torchgrade.cli import exit_now, main  # noqa: E402

if __name__ == "__main__":
    try:
        status = main()
    except BrokenPipeError:  # `python grade.py nb.ipynb | head` is fine
        sys.stderr.close()
        status = 0
    except SystemExit as stop:  # argparse: --help (0) and usage errors (2)
        status = stop.code
    exit_now(status)
