"""Failures that stop a submission from being graded at all, each with its exit status.

Anything a student's code does *inside* the kernel is not an error here: it becomes a
failed check with a message. These exceptions are only for what makes grading
impossible (unreadable file, broken configuration) and carry the documented exit status.
"""

EXIT_GRADED = 0
EXIT_USAGE = 2
EXIT_BAD_SUBMISSION = 3
EXIT_BAD_CONFIG = 4
EXIT_GRADER_FAILURE = 5


class GradingError(Exception):
    """A one-line reason why grading could not happen, with the exit status to use."""

    exit_status = EXIT_GRADER_FAILURE
    label = "could not grade"

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason

    def one_line(self) -> str:
        return f"{self.label}: {' '.join(self.reason.split())}"


class SubmissionError(GradingError):
    """The submitted file cannot be read as a notebook."""

    exit_status = EXIT_BAD_SUBMISSION
    label = "could not read the submission"


class ConfigError(GradingError):
    """config.yaml or a grader module is wrong; the message names the key."""

    exit_status = EXIT_BAD_CONFIG
    label = "invalid configuration"


class UsageError(GradingError):
    """The command line does not say enough (for example, which assignment a notebook is)."""

    exit_status = EXIT_USAGE
    label = "usage"
