"""What happens to each submission of a batch: the decision (execute, re-check, keep, refuse), made
against the gradebook, and the outcome row it becomes (batch/run.py runs the loop)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import GradingError
from .discover import Found
from .gradebook import Gradebook, Outcome, Row, now
from .integrity import code_hash
from .late import submission_time
from .roster import LmsName


@dataclass
class Item:
    """One submission of this batch and what to do with it."""

    number: int
    student: str
    found: Found
    content_hash: str = ""
    action: str = "execute"  # execute | rescore | unchanged | refused
    source: Row | None = None  # the stored row whose evidence a re-score reads
    why: str = ""  # why it must execute (for --debug)
    started_at: str = ""
    file: str = ""  # the notebook as exports show it: relative to the submissions' folder
    lms: LmsName | None = None  # its parsed Canvas/Moodle download name


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def decide(item: Item, book: Gradebook, name: str, grader_version: str, scoring_version: str, force: bool) -> None:
    found = item.found
    if found.problem or found.path is None:
        item.action, item.content_hash = "refused", "problem:" + hashlib.sha256((found.problem or "").encode()).hexdigest()
        return
    try:
        item.content_hash = content_hash(found.path)
    except OSError as problem:
        found_problem = f"{found.shown}: cannot read it ({problem.strerror})"
        item.found = Found(found.key, None, found.shown, found.relative, found.folder, found_problem)
        item.action, item.content_hash = "refused", "unreadable"
        return
    if force:
        item.action, item.why = "execute", "--force"
        return
    row = book.row(name, item.student)
    if row and row.content_hash == item.content_hash and row.grader_version == grader_version:
        if row.status == "failed":
            if row.failure_kind == "grader":
                item.action, item.why = "execute", "the last attempt failed for a reason of the grader's"
            else:
                item.action, item.source = "unchanged", row
            return
        if row.scoring_version == scoring_version:
            item.action, item.source = "unchanged", row
        else:
            item.action, item.source, item.why = "rescore", row, "scoring"
        return
    twin = book.graded_with_content(name, item.content_hash, grader_version)
    if twin is not None:  # the same file was executed before (another name, or the roster changed)
        item.action, item.source, item.why = "rescore", twin, "twin"
        return
    item.action = "execute"
    item.why = "new" if row is None else "content changed" if row.content_hash != item.content_hash else "grader changed"


def provenance(item: Item) -> dict:
    """When the submission was made (batch/late.py) and its code hash (batch/integrity.py)."""
    found = item.found
    folder = found.path.parent if found.folder and found.path is not None and ":" not in found.shown else None
    when = submission_time(found.path, folder, ":" in found.shown and not Path(found.shown).is_absolute(),
                           item.lms.late if item.lms is not None else None)
    return {"submitted_at": when.at, "submitted_via": when.via, "late_mark": when.late_mark,
            "code_hash": code_hash(found.path) if found.path is not None else None}


def report_name(found: Found) -> str:
    """The submission as its report (and so the student's feedback) names it: without the instructor's folders."""
    return found.relative or found.shown


def refused_outcome(item: Item, grader_version: str, scoring_version: str) -> Outcome:
    reason = item.found.problem
    return Outcome(student=item.student, source_name=item.found.key, file=item.file, **provenance(item),
                   content_hash=item.content_hash, grader_version=grader_version, scoring_version=scoring_version,
                   status="failed", graded_by="none", started_at=now(), failure_kind="submission", reason=reason)


def rescore(item: Item, book: Gradebook, grader, grader_version: str, scoring_version: str) -> Outcome | None:
    """Check the stored snapshots again (no notebook runs); None when they cannot be used."""
    from ..evidence_store import recheck  # torch: only a batch that re-checks loads it

    began, started_at = time.monotonic(), now()
    book_row = item.source
    try:
        texts = book.evidence_json(book_row.id)
        report = recheck(grader, item.found.path, "[" + ",".join(texts) + "]", submission=report_name(item.found),
                         execution_time=book_row.execution_seconds or 0.0)
    except (GradingError, OSError, ValueError, KeyError, TypeError):
        return None
    if report is None:
        return None
    return Outcome(student=item.student, source_name=item.found.key, file=item.file, **provenance(item),
                   content_hash=item.content_hash, grader_version=grader_version, scoring_version=scoring_version,
                   status="graded", graded_by="rescore", started_at=started_at, report=report, evidence_json=texts,
                   execution_seconds=book_row.execution_seconds, wall_seconds=round(time.monotonic() - began, 3))


def executed_outcome(item: Item, result, grader_version: str, scoring_version: str) -> Outcome:
    return Outcome(student=item.student, source_name=item.found.key, file=item.file, **provenance(item),
                   content_hash=item.content_hash, grader_version=grader_version, scoring_version=scoring_version,
                   status=result.status, graded_by="execution", started_at=item.started_at or now(),
                   report=result.report, evidence_json=result.evidence_json, failure_kind=result.failure_kind,
                   reason=result.reason, execution_seconds=result.report.execution_time if result.report else None,
                   wall_seconds=round(result.wall_seconds, 3), worker_peak_rss_kb=result.worker_peak_rss_kb,
                   kernel_peak_rss_kb=result.kernel_peak_rss_kb or None)
