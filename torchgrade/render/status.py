"""The one status vocabulary every format uses for a check.

- ``passed``: the check earned its points.
- ``failed``: the task ran and the check lost points. That includes student code that
  raised (``backward()`` twice without ``retain_graph=True`` raises): the code ran, and
  the answer is wrong.
- ``error``: the task could not run at all (its cell is missing, the kernel died or ran
  out of time before its values could be read, or the grader could not judge it).
  ``CheckResult.error`` carries that reason; scoring sets it only in those cases.

Each format spells the three words its own way (``STATUS_WORDS``); Gradescope's
results.json has no ``error`` status, so an error is ``failed`` there and its ``outcome``
field (ignored by Gradescope) says ``error``.
"""

from __future__ import annotations

from ..results import CheckResult

PASSED, FAILED, ERROR = "passed", "failed", "error"
STATUSES = (PASSED, FAILED, ERROR)

STATUS_WORDS = {
    "json": {PASSED: "passed", FAILED: "failed", ERROR: "failed"},
    "classroom": {PASSED: "pass", FAILED: "fail", ERROR: "error"},
    "junit": {PASSED: "", FAILED: "failure", ERROR: "error"},
    "csv": {PASSED: PASSED, FAILED: FAILED, ERROR: ERROR},
    "html": {PASSED: "PASS", FAILED: "FAIL", ERROR: "DID NOT RUN"},
}


def check_status(check: CheckResult) -> str:
    """passed, failed or error: the one place that decides."""
    if check.passed:
        return PASSED
    return ERROR if check.error else FAILED
