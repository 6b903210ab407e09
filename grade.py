#!/usr/bin/env python3
"""Grade a student's notebook: `python grade.py my_notebook.ipynb` (see README.md)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from torchgrade.cli import main  # noqa: E402

if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `python grade.py nb.ipynb | head` is fine
        sys.stderr.close()
        sys.exit(0)
