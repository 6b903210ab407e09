"""The gradebook's schema (docs/batch.md documents it), and the in-place upgrade of an older gradebook.

Schema 2 adds what an instructor decides after grading (``overrides``, ``comments``), the roster
(``roster``), and per submission when it was handed in and a hash of its code. A schema-1 gradebook is
upgraded in place, in one transaction, keeping every row.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    id            INTEGER PRIMARY KEY,
    assignment    TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    command       TEXT NOT NULL,
    jobs          INTEGER NOT NULL,
    submissions   INTEGER NOT NULL,
    executed      INTEGER NOT NULL DEFAULT 0,
    rescored      INTEGER NOT NULL DEFAULT 0,
    unchanged     INTEGER NOT NULL DEFAULT 0,
    failed        INTEGER NOT NULL DEFAULT 0,
    wall_seconds  REAL,
    isolation     TEXT
);
CREATE TABLE IF NOT EXISTS submissions (
    id                 INTEGER PRIMARY KEY,
    assignment         TEXT NOT NULL,
    student            TEXT NOT NULL,
    source_name        TEXT NOT NULL,
    file               TEXT NOT NULL,
    content_hash       TEXT NOT NULL,
    grader_version     TEXT NOT NULL,
    scoring_version    TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('graded', 'failed')),
    failure_kind       TEXT CHECK (failure_kind IN ('submission', 'grader')),
    reason             TEXT,
    score              REAL,
    max_score          REAL,
    graded_by          TEXT NOT NULL CHECK (graded_by IN ('execution', 'rescore', 'none')),
    started_at         TEXT NOT NULL,
    finished_at        TEXT NOT NULL,
    execution_seconds  REAL,
    wall_seconds       REAL,
    worker_peak_rss_kb INTEGER,
    kernel_peak_rss_kb INTEGER,
    batch_id           INTEGER REFERENCES batches(id),
    report_json        TEXT,
    UNIQUE (assignment, student)
);
CREATE INDEX IF NOT EXISTS submissions_by_content ON submissions (assignment, content_hash, grader_version);
CREATE TABLE IF NOT EXISTS checks (
    submission_id INTEGER NOT NULL REFERENCES submissions(id) ON DELETE CASCADE,
    check_id      TEXT NOT NULL,
    task          INTEGER NOT NULL,
    title         TEXT NOT NULL,
    points        REAL NOT NULL,
    max_points    REAL NOT NULL,
    passed        INTEGER NOT NULL,
    hidden        INTEGER NOT NULL,
    message       TEXT NOT NULL,
    PRIMARY KEY (submission_id, check_id)
);
CREATE TABLE IF NOT EXISTS snapshots (
    submission_id INTEGER NOT NULL REFERENCES submissions(id) ON DELETE CASCADE,
    run           INTEGER NOT NULL,
    evidence_json TEXT NOT NULL,
    PRIMARY KEY (submission_id, run)
);
"""

SCHEMA_2 = """
CREATE TABLE IF NOT EXISTS roster (
    identity      TEXT PRIMARY KEY,
    name          TEXT NOT NULL DEFAULT '',
    email         TEXT NOT NULL DEFAULT '',
    username      TEXT NOT NULL DEFAULT '',
    id_number     TEXT NOT NULL DEFAULT '',
    lms_id        TEXT NOT NULL DEFAULT '',
    sis_user_id   TEXT NOT NULL DEFAULT '',
    sis_login_id  TEXT NOT NULL DEFAULT '',
    section       TEXT NOT NULL DEFAULT '',
    position      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS overrides (
    assignment  TEXT NOT NULL,
    student     TEXT NOT NULL,
    check_id    TEXT NOT NULL,
    points      REAL NOT NULL,
    reason      TEXT NOT NULL,
    author      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (assignment, student, check_id)
);
CREATE TABLE IF NOT EXISTS comments (
    id          INTEGER PRIMARY KEY,
    assignment  TEXT NOT NULL,
    student     TEXT NOT NULL,
    text        TEXT NOT NULL,
    author      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
"""
# Columns schema 2 adds to `submissions` (ALTER TABLE ... ADD COLUMN keeps existing rows).
SUBMISSION_COLUMNS_2 = {"submitted_at": "TEXT", "submitted_via": "TEXT", "late_mark": "INTEGER NOT NULL DEFAULT 0",
                        "code_hash": "TEXT"}


def create_or_upgrade(db: sqlite3.Connection, path: Path) -> None:
    """Create the tables, or bring an older gradebook up to this schema in place (inside the caller's transaction)."""
    for statement in (SCHEMA + SCHEMA_2).split(";"):
        if statement.strip():
            db.execute(statement)
    if "isolation" not in {row[1] for row in db.execute("PRAGMA table_info(batches)")}:
        db.execute("ALTER TABLE batches ADD COLUMN isolation TEXT")  # how kernels ran (sandbox or not)
    found = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if found is not None and int(found[0]) > SCHEMA_VERSION:
        raise RuntimeError(f"{path}: gradebook schema {found[0]} is newer than this torchgrade's {SCHEMA_VERSION}")
    present = {r[1] for r in db.execute("PRAGMA table_info(submissions)")}
    for column, kind in SUBMISSION_COLUMNS_2.items():
        if column not in present:
            db.execute(f"ALTER TABLE submissions ADD COLUMN {column} {kind}")
    db.execute("INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value",
               (str(SCHEMA_VERSION),))
