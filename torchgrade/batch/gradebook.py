"""The gradebook: one SQLite file (``DIR/gradebook.sqlite``) that a batch writes as it goes.

sqlite3 from the standard library, WAL journal, one transaction per finished
submission: a ``kill -9`` of the batch loses nothing already graded, and running the
same command again resumes. The schema is documented in docs/batch.md.

Schema 2 adds what an instructor decides after grading (``overrides``, ``comments``), the
roster (``roster``: ids an LMS needs, and who is missing), and per submission when it was
handed in and a hash of its code (for late work and identical submissions). A schema-1
gradebook is upgraded in place, in one transaction, keeping every row (gradebook_schema.py).
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..results import GradeReport
from .gradebook_schema import create_or_upgrade

ROSTER_FIELDS = ("name", "email", "username", "id_number", "lms_id", "sis_user_id", "sis_login_id", "section")


def who() -> str:
    """The user name recorded with an override or a comment."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or "unknown"


@dataclass(frozen=True)
class Override:
    student: str
    check_id: str
    points: float
    reason: str
    author: str
    created_at: str


@dataclass(frozen=True)
class Comment:
    student: str
    text: str
    author: str
    created_at: str


@dataclass(frozen=True)
class RosterStudent:
    identity: str
    name: str = ""
    email: str = ""
    username: str = ""
    id_number: str = ""
    lms_id: str = ""
    sis_user_id: str = ""
    sis_login_id: str = ""
    section: str = ""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Row:
    """A submission as stored (the columns a resume decision needs, and the report)."""

    id: int
    student: str
    file: str
    content_hash: str
    grader_version: str
    scoring_version: str
    status: str
    failure_kind: str | None
    reason: str | None
    score: float | None
    max_score: float | None
    graded_by: str
    execution_seconds: float | None
    wall_seconds: float | None
    report_json: str | None
    source_name: str = ""
    submitted_at: str | None = None
    submitted_via: str | None = None
    late_mark: int = 0
    code_hash: str | None = None

    def report(self) -> GradeReport | None:
        from ..results import report_from_dict

        return report_from_dict(json.loads(self.report_json)) if self.report_json else None


ROW_COLUMNS = ("id, student, file, content_hash, grader_version, scoring_version, status, failure_kind, reason, "
               "score, max_score, graded_by, execution_seconds, wall_seconds, report_json, source_name, submitted_at, "
               "submitted_via, late_mark, code_hash")


@dataclass
class Outcome:
    """One finished submission, ready to be written."""

    student: str
    source_name: str
    file: str
    content_hash: str
    grader_version: str
    scoring_version: str
    status: str  # graded | failed
    graded_by: str  # execution | rescore | none
    started_at: str
    report: GradeReport | None = None
    evidence_json: list[str] | None = None  # one JSON text per run
    failure_kind: str | None = None
    reason: str | None = None
    execution_seconds: float | None = None
    wall_seconds: float | None = None
    worker_peak_rss_kb: int | None = None
    kernel_peak_rss_kb: int | None = None
    submitted_at: str | None = None  # ISO 8601, when the student handed it in (see batch/late.py)
    submitted_via: str | None = None  # where that time came from: commit | lms | file
    late_mark: bool = False  # the LMS marked the download LATE
    code_hash: str | None = None  # the notebook's code, normalised (see batch/integrity.py)


class Gradebook:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None)  # transactions are explicit
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across process kills
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("BEGIN IMMEDIATE")
        try:
            create_or_upgrade(self.db, path)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------------ reading
    def row(self, assignment: str, student: str) -> Row | None:
        found = self.db.execute(f"SELECT {ROW_COLUMNS} FROM submissions WHERE assignment=? AND student=?",
                                (assignment, student)).fetchone()
        return Row(*found) if found else None

    def graded_with_content(self, assignment: str, content_hash: str, grader_version: str) -> Row | None:
        """Any submission already executed with this exact content and grader (its evidence can be reused)."""
        found = self.db.execute(
            f"SELECT {ROW_COLUMNS} FROM submissions WHERE assignment=? AND content_hash=? AND grader_version=? "
            "AND status='graded' AND EXISTS (SELECT 1 FROM snapshots WHERE submission_id=submissions.id) "
            "ORDER BY id LIMIT 1", (assignment, content_hash, grader_version)).fetchone()
        return Row(*found) if found else None

    def evidence_json(self, submission_id: int) -> list[str]:
        return [text for (text,) in self.db.execute(
            "SELECT evidence_json FROM snapshots WHERE submission_id=? ORDER BY run", (submission_id,))]

    def rows(self, assignment: str, students: list[str] | None = None) -> list[Row]:
        found = [Row(*r) for r in self.db.execute(
            f"SELECT {ROW_COLUMNS} FROM submissions WHERE assignment=? ORDER BY student", (assignment,))]
        if students is None:
            return found
        wanted = set(students)
        return [r for r in found if r.student in wanted]

    def count(self, assignment: str) -> int:
        return self.db.execute("SELECT count(*) FROM submissions WHERE assignment=?", (assignment,)).fetchone()[0]

    # ------------------------------------------------------------------------ writing
    def record_jobs(self, batch_id: int, jobs: int) -> None:
        self.db.execute("UPDATE batches SET jobs=? WHERE id=?", (jobs, batch_id))

    def start_batch(self, assignment: str, command: str, jobs: int, submissions: int, isolation: str = "") -> int:
        cursor = self.db.execute("INSERT INTO batches (assignment, started_at, command, jobs, submissions, isolation) "
                                 "VALUES (?, ?, ?, ?, ?, ?)", (assignment, now(), command, jobs, submissions, isolation))
        return cursor.lastrowid

    def finish_batch(self, batch_id: int, executed: int, rescored: int, unchanged: int, failed: int,
                     wall_seconds: float) -> None:
        self.db.execute("UPDATE batches SET finished_at=?, executed=?, rescored=?, unchanged=?, failed=?, "
                        "wall_seconds=? WHERE id=?",
                        (now(), executed, rescored, unchanged, failed, round(wall_seconds, 3), batch_id))

    def save(self, assignment: str, outcome: Outcome, batch_id: int | None) -> None:
        """Write one submission, its checks and its evidence in one transaction (replacing an older row)."""
        report = outcome.report
        values = {
            "assignment": assignment, "student": outcome.student, "source_name": outcome.source_name,
            "file": outcome.file, "content_hash": outcome.content_hash, "grader_version": outcome.grader_version,
            "scoring_version": outcome.scoring_version, "status": outcome.status,
            "failure_kind": outcome.failure_kind, "reason": outcome.reason,
            "score": report.score if report else None, "max_score": report.max_score if report else None,
            "graded_by": outcome.graded_by, "started_at": outcome.started_at, "finished_at": now(),
            "execution_seconds": outcome.execution_seconds, "wall_seconds": outcome.wall_seconds,
            "worker_peak_rss_kb": outcome.worker_peak_rss_kb, "kernel_peak_rss_kb": outcome.kernel_peak_rss_kb,
            "batch_id": batch_id,
            "report_json": json.dumps(report.to_dict(), ensure_ascii=False) if report else None,
            "submitted_at": outcome.submitted_at, "submitted_via": outcome.submitted_via,
            "late_mark": int(bool(outcome.late_mark)), "code_hash": outcome.code_hash,
        }
        columns = ", ".join(values)
        marks = ", ".join(f":{k}" for k in values)
        updates = ", ".join(f"{k}=excluded.{k}" for k in values if k not in ("assignment", "student"))
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute(f"INSERT INTO submissions ({columns}) VALUES ({marks}) "
                            f"ON CONFLICT (assignment, student) DO UPDATE SET {updates}", values)
            (submission_id,) = self.db.execute("SELECT id FROM submissions WHERE assignment=? AND student=?",
                                               (assignment, outcome.student)).fetchone()
            self.db.execute("DELETE FROM checks WHERE submission_id=?", (submission_id,))
            if report:
                self.db.executemany(
                    "INSERT INTO checks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(submission_id, c.id, c.task, c.title, c.score, c.max_score, int(c.passed), int(c.hidden),
                      c.message) for c in report.checks])
            if outcome.evidence_json is not None:  # None keeps what is stored (a failure keeps nothing useful)
                self.db.execute("DELETE FROM snapshots WHERE submission_id=?", (submission_id,))
                self.db.executemany("INSERT INTO snapshots VALUES (?, ?, ?)",
                                    [(submission_id, run, text) for run, text in enumerate(outcome.evidence_json)])
            elif outcome.status == "failed":
                self.db.execute("DELETE FROM snapshots WHERE submission_id=?", (submission_id,))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------- the instructor's decisions
    def set_override(self, assignment: str, student: str, check_id: str, points: float, reason: str) -> Override:
        made = Override(student, check_id, float(points), reason, who(), now())
        self.db.execute("INSERT INTO overrides VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (assignment, student, check_id) "
                        "DO UPDATE SET points=excluded.points, reason=excluded.reason, author=excluded.author, "
                        "created_at=excluded.created_at",
                        (assignment, student, check_id, made.points, reason, made.author, made.created_at))
        return made

    def clear_override(self, assignment: str, student: str, check_id: str | None = None) -> int:
        """Remove one override (or all of a student's); returns how many were removed."""
        query, values = "DELETE FROM overrides WHERE assignment=? AND student=?", [assignment, student]
        if check_id is not None:
            query, values = query + " AND check_id=?", values + [check_id]
        return self.db.execute(query, values).rowcount

    def overrides(self, assignment: str) -> list[Override]:
        return [Override(*r) for r in self.db.execute(
            "SELECT student, check_id, points, reason, author, created_at FROM overrides WHERE assignment=? "
            "ORDER BY student, check_id", (assignment,))]

    def add_comment(self, assignment: str, student: str, text: str) -> Comment:
        made = Comment(student, text, who(), now())
        self.db.execute("INSERT INTO comments (assignment, student, text, author, created_at) VALUES (?, ?, ?, ?, ?)",
                        (assignment, student, text, made.author, made.created_at))
        return made

    def comments(self, assignment: str) -> list[Comment]:
        return [Comment(*r) for r in self.db.execute(
            "SELECT student, text, author, created_at FROM comments WHERE assignment=? ORDER BY id", (assignment,))]

    def replace_roster(self, students: list[RosterStudent]) -> None:
        """The roster given with --roster becomes the gradebook's (so later exports still know who is missing)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("DELETE FROM roster")
            self.db.executemany(
                f"INSERT INTO roster (identity, {', '.join(ROSTER_FIELDS)}, position) VALUES ({', '.join('?' * 10)})",
                [(s.identity, *(getattr(s, f) for f in ROSTER_FIELDS), n) for n, s in enumerate(students)])
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def roster(self) -> list[RosterStudent]:
        return [RosterStudent(*r) for r in self.db.execute(
            f"SELECT identity, {', '.join(ROSTER_FIELDS)} FROM roster ORDER BY position")]
