"""torchgrade: grade what students' PyTorch autograd notebooks computed, and how.

The pipeline (see ``pipeline.py``): load and validate -> locate tasks -> instrument ->
execute -> snapshot -> reference -> check -> score -> report.
"""

__version__ = "0.1.0"


def check(task=None, **options):
    """Grade this notebook as saved, from inside it: `from torchgrade import check; check()` (see selfcheck.py)."""
    from .selfcheck import check as run  # imported on use: grading needs torch and nbclient

    return run(task, **options)
