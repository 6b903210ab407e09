"""When a submission was handed in, and what lateness costs (config.yaml `late_policy`).

The time comes from the first of these that exists (`submission_time`):

1. ``commit``: a GitHub Classroom repository's last commit (``git log -1``, committer time);
2. ``lms``: an LMS download name. Canvas marks late work ``_LATE_`` but carries no time:
   it counts as late by one day unless the file's time says it is later still;
3. ``file``: the notebook file's modification time (not for zip members: extraction
   sets that time, so it says nothing).

The penalty is applied to exports, never to the stored autograder score: grades.csv and
the report show both the raw and the final score, and changing the policy only needs
``--export``.
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

GIT_TIMEOUT = 10


@dataclass(frozen=True)
class SubmissionTime:
    at: str | None  # ISO 8601
    via: str | None  # commit | lms | file
    late_mark: bool = False


@dataclass(frozen=True)
class Lateness:
    days: int  # started days after the deadline and grace period (0: on time)
    penalty: float  # points taken off
    why: str  # one line for the report and the feedback


ON_TIME = Lateness(0, 0.0, "")


def commit_time(folder: Path) -> str | None:
    """The committer time of HEAD in a git repository folder (None when it is not one, or git fails)."""
    if not (folder / ".git").exists():
        return None
    try:
        result = subprocess.run(["git", "-C", str(folder), "log", "-1", "--format=%cI"], capture_output=True,
                                text=True, timeout=GIT_TIMEOUT, check=False,
                                env={"GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "PATH": "/usr/bin:/bin",
                                     "GIT_CEILING_DIRECTORIES": str(folder.resolve().parent)})
    except (OSError, subprocess.SubprocessError):
        return None
    text = result.stdout.strip()
    try:
        return datetime.fromisoformat(text).astimezone(timezone.utc).isoformat(timespec="seconds") if text else None
    except ValueError:
        return None


def file_time(path: Path) -> str | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    except OSError:
        return None


def submission_time(path: Path | None, folder: Path | None, in_zip: bool, late_mark: bool | None) -> SubmissionTime:
    """The best evidence of when a submission was made, in the documented order."""
    if folder is not None:
        at = commit_time(folder)
        if at:
            return SubmissionTime(at, "commit", bool(late_mark))
    if late_mark is not None:  # an LMS download name
        at = None if in_zip or path is None else file_time(path)
        return SubmissionTime(at, "lms", bool(late_mark))
    if path is not None and not in_zip:
        return SubmissionTime(file_time(path), "file")
    return SubmissionTime(None, None)


def lateness(policy, at: str | None, late_mark: bool, max_score: float, score: float) -> Lateness:
    """Days late and the points the policy takes off (never below 0 points)."""
    if policy is None:
        return ON_TIME
    deadline = policy.deadline + timedelta(minutes=policy.grace_minutes)
    days = 0
    if at:
        over = datetime.fromisoformat(at) - deadline
        days = math.ceil(over.total_seconds() / 86400) if over.total_seconds() > 0 else 0
    if late_mark and days == 0:
        days = 1  # the LMS says late; with no time telling more, one day
    if days == 0:
        return ON_TIME
    penalty = min(policy.penalty_per_day * days, policy.max_penalty) / 100 * max_score
    if policy.late_cap is not None:
        penalty = max(penalty, score - policy.late_cap / 100 * max_score)
    penalty = round(min(max(penalty, 0.0), score), 4)
    day_word = "day" if days == 1 else "days"
    return Lateness(days, penalty, f"{days} {day_word} late: −{penalty:g} point{'s' if penalty != 1 else ''}")
