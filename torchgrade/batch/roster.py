"""Who each submission belongs to, from a roster CSV given with --roster.

Two formats are recognised by their header row (case and spaces ignored, a UTF-8
byte-order mark from Excel is fine):

- GitHub Classroom's grades export: ``student_repository_name``, ``github_username``
  and ``roster_identifier`` (among others). A submission folder named exactly like a
  ``student_repository_name`` (or like a ``github_username``) belongs to that student,
  shown as their ``roster_identifier`` (or their username when the roster has none).
- A plain mapping ``identifier,file``: ``file`` is matched exactly against the
  submission's path as shown (``alice/hw.ipynb``, ``class.zip:alice/hw.ipynb``), the
  path relative to the PATH given, its folder name, or its file name.

Names are never split on '-' or guessed: only exact matches count. Roster students with
no submission are listed (status "missing"); submissions that match no roster line keep
the name from their file or folder, with a warning.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import EXIT_USAGE, GradingError
from .discover import Found

CLASSROOM_COLUMNS = {"student_repository_name", "github_username", "roster_identifier"}
PLAIN_COLUMNS = {"identifier", "file"}


class RosterError(GradingError):
    exit_status = EXIT_USAGE
    label = "invalid roster"


@dataclass(frozen=True)
class Entry:
    identity: str  # what the gradebook and the exports call the student
    keys: tuple[str, ...]  # exact strings a submission may be known by
    github_username: str = ""
    line: int = 0


@dataclass
class Roster:
    kind: str  # "classroom" | "plain"
    entries: list[Entry]
    source: Path | None = None


@dataclass
class Assignment:
    """The outcome of matching submissions to a roster."""

    submissions: list[tuple[str, Found]]  # (identity, submission) in discovery order
    missing: list[Entry] = field(default_factory=list)  # roster students without a submission
    warnings: list[str] = field(default_factory=list)


def _normalise(header: str) -> str:
    return header.strip().lstrip("\ufeff").strip().lower().replace(" ", "_")


def load_roster(path: Path) -> Roster:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as problem:
        raise RosterError(f"{path}: cannot read it ({problem.strerror})") from None
    except UnicodeDecodeError:
        raise RosterError(f"{path}: not UTF-8 text (save it as CSV UTF-8)") from None
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as problem:
        raise RosterError(f"{path}: not valid CSV ({problem})") from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise RosterError(f"{path}: the file is empty")
    header = [_normalise(h) for h in rows[0]]
    column = {name: index for index, name in reversed(list(enumerate(header)))}

    def cell(row: list[str], name: str) -> str:
        index = column.get(name)
        return row[index].strip() if index is not None and index < len(row) else ""

    entries: list[Entry] = []
    if CLASSROOM_COLUMNS <= set(column):
        for number, row in enumerate(rows[1:], start=2):
            repository, username, identifier = (cell(row, c) for c in
                                                ("student_repository_name", "github_username", "roster_identifier"))
            if not repository and not username:
                continue  # a roster student who never accepted the assignment has neither
            identity = identifier or username or repository
            keys = tuple(k for k in (repository, username) if k)
            entries.append(Entry(identity, keys, username, number))
        kind = "classroom"
    elif PLAIN_COLUMNS <= set(column):
        for number, row in enumerate(rows[1:], start=2):
            identity, file = cell(row, "identifier"), cell(row, "file")
            if not identity or not file:
                raise RosterError(f"{path}: line {number}: both identifier and file are needed")
            entries.append(Entry(identity, (file.replace("\\", "/").removeprefix("./"),), "", number))
        kind = "plain"
    else:
        raise RosterError(f"{path}: unrecognised header {', '.join(rows[0])!r}; expected GitHub Classroom's grades "
                          "export (student_repository_name, github_username, roster_identifier) or `identifier,file`")
    seen: dict[str, int] = {}
    for entry in entries:
        if entry.identity in seen:
            raise RosterError(f"{path}: line {entry.line}: {entry.identity!r} is already on line {seen[entry.identity]}")
        seen[entry.identity] = entry.line
    return Roster(kind, entries, path)


def names_of(found: Found) -> list[str]:
    """The exact strings a submission answers to in a plain roster, most specific first."""
    names = [found.shown, found.relative]
    if ":" in found.shown:  # archive.zip:member/path
        names.append(found.shown.split(":", 1)[1])
    if found.folder:
        names.append(found.folder)
    for shown, relative, _ in found.candidates:  # a roster line may pick one notebook of a student folder
        names.extend((shown, relative, shown.split(":", 1)[-1]))
    if found.path is not None:
        names.append(found.path.name)
    return [n.rstrip("/") for n in names if n]


def assign(found: list[Found], roster: Roster | None) -> Assignment:
    """Give every submission its identity: the roster's when it matches, else its file or folder name."""
    result = Assignment([])
    if roster is None:
        result.submissions = [(item.key, item) for item in found]
        return _deduplicate(result)
    index: dict[str, Entry] = {}
    for entry in roster.entries:
        for key in entry.keys:
            index.setdefault(key, entry)
            if roster.kind == "plain":  # a path relative to the roster file or to the current folder
                bases = [roster.source.parent] if roster.source else []
                for base in bases + [Path.cwd()]:
                    index.setdefault(str((base / key).resolve()), entry)
    used: dict[str, Found] = {}
    for item in found:
        if roster.kind == "classroom":
            names = [n for n in (item.folder, item.key) if n]  # repositories are folders; or a flat file's name
        else:
            names = names_of(item) + _real_paths(item)
        entry = next((index[n] for n in names if n in index), None)
        if entry is None:
            result.warnings.append(f"{item.shown}: not on the roster; graded as {item.key!r}")
            result.submissions.append((item.key, item))
            continue
        if entry.identity in used:
            result.warnings.append(f"{item.shown}: {entry.identity!r} already has {used[entry.identity].shown}; "
                                   f"graded separately as {item.key!r}")
            result.submissions.append((item.key, item))
            continue
        used[entry.identity] = item
        if roster.kind == "plain":
            item = _pick_candidate(item, entry, roster)
        result.submissions.append((entry.identity, item))
    result.missing = [entry for entry in roster.entries if entry.identity not in used]
    return _deduplicate(result)


def _real_paths(item: Found) -> list[str]:
    """Absolute paths of a submission's notebooks on disk (not for zip members, which live in a temporary folder)."""
    if ":" in item.shown:
        return []
    paths = [item.path] if item.path is not None else []
    return [str(p.resolve()) for p in paths + [c[2] for c in item.candidates]]


def _pick_candidate(item: Found, entry: Entry, roster: Roster) -> Found:
    """A plain roster line that names one notebook of a student folder chooses it."""
    wanted = entry.keys[0]
    bases = ([roster.source.parent] if roster.source else []) + [Path.cwd()]
    real = {str((base / wanted).resolve()) for base in bases}
    for shown, relative, path in item.candidates:
        if wanted in (shown, relative, shown.split(":", 1)[-1]) or (":" not in shown and str(path.resolve()) in real):
            return replace(item, path=path, shown=shown, relative=relative, problem=None)
    return item


def _deduplicate(result: Assignment) -> Assignment:
    """Two submissions with one identity (alice.ipynb in two PATHs) keep both, told apart and announced."""
    counts: dict[str, int] = {}
    unique: list[tuple[str, Found]] = []
    for identity, item in result.submissions:
        counts[identity] = counts.get(identity, 0) + 1
        if counts[identity] > 1:
            renamed = f"{identity} ({counts[identity]})"
            result.warnings.append(f"{item.shown}: another submission is already named {identity!r}; "
                                   f"this one is {renamed!r}")
            identity = renamed
        unique.append((identity, item))
    result.submissions = unique
    return result
