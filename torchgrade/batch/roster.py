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

- Canvas's gradebook export (``Student``, ``ID``, ``SIS User ID``, ``SIS Login ID``,
  ``Section``): a submission whose Canvas download name carries the user ID ``ID``
  belongs to ``Student``. Moodle's grading worksheet (``Identifier`` = ``Participant N``,
  ``Full name``, ``Email address``): a Moodle download name carrying ``N`` belongs to
  ``Full name``.

Every format may carry the ids an LMS import needs (``email``, ``username``,
``id_number``, ``lms_id``/``ID``, ``sis_user_id``, ``sis_login_id``, ``section``); the
LMS exports (batch/lms.py) use them.

LMS download names are parsed exactly as the LMS writes them (``parse_lms_name``):
Canvas ``name[_LATE]_userid_fileid_original.ipynb``, Moodle
``Full Name_ID_assignsubmission_file_[original]``. Names are never split on '-' or '_'
beyond those formats, or guessed: only exact matches count. Roster students with
no submission are listed (status "missing"); submissions that match no roster line keep
the name from their file or folder, with a warning.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import EXIT_USAGE, GradingError
from .discover import Found

CLASSROOM_COLUMNS = {"student_repository_name", "github_username", "roster_identifier"}
PLAIN_COLUMNS = {"identifier", "file"}
CANVAS_COLUMNS = {"student", "id", "sis_user_id", "sis_login_id"}
MOODLE_COLUMNS = {"identifier", "full_name"}
# Optional id columns, by their normalised header, in any format.
ID_COLUMNS = {"name": ("name", "full_name"), "email": ("email", "email_address"),
              "username": ("username", "login"),  # an LMS username: never github_username
              "id_number": ("id_number", "idnumber", "sid"),
              "lms_id": ("lms_id", "canvas_id"), "sis_user_id": ("sis_user_id",), "sis_login_id": ("sis_login_id",),
              "section": ("section",)}

# Canvas: lastfirst[_LATE]_<user id>_<attachment id>_<original name>; the name part holds no '_'.
CANVAS_NAME = re.compile(r"^(?P<name>[^_]+)(?P<late>_LATE)?_(?P<user>\d+)_(?P<file>\d+)_(?P<original>.+)$")
# Moodle: <Full Name>_<participant id>_assignsubmission_<plugin>_[original]; the full name may hold anything.
MOODLE_NAME = re.compile(r"^(?P<name>.+)_(?P<user>\d+)_assignsubmission_(?P<plugin>[a-z]+)_(?P<original>.*)$")


@dataclass(frozen=True)
class LmsName:
    """What an LMS download name says: who (as the LMS spelled it), the LMS's id, and a LATE mark."""

    lms: str  # canvas | moodle
    name: str
    user_id: str
    late: bool
    original: str


def parse_lms_name(stem: str) -> LmsName | None:
    """A Canvas or Moodle download name (file stem or folder name), or None for any other name."""
    match = CANVAS_NAME.match(stem)
    if match:
        return LmsName("canvas", match["name"], match["user"], bool(match["late"]), match["original"])
    match = MOODLE_NAME.match(stem)
    if match:
        return LmsName("moodle", match["name"], match["user"], False, match["original"])
    return None


class RosterError(GradingError):
    exit_status = EXIT_USAGE
    label = "invalid roster"


@dataclass(frozen=True)
class Entry:
    identity: str  # what the gradebook and the exports call the student
    keys: tuple[str, ...]  # exact strings a submission may be known by
    github_username: str = ""
    line: int = 0
    ids: tuple[tuple[str, str], ...] = ()  # (field, value) for the fields of ID_COLUMNS the roster has

    def id(self, name: str) -> str:
        return dict(self.ids).get(name, "")


@dataclass
class Roster:
    kind: str  # "classroom" | "plain" | "canvas" | "moodle"
    entries: list[Entry]
    source: Path | None = None


@dataclass
class Assignment:
    """The outcome of matching submissions to a roster."""

    submissions: list[tuple[str, Found]]  # (identity, submission) in discovery order
    missing: list[Entry] = field(default_factory=list)  # roster students without a submission
    warnings: list[str] = field(default_factory=list)
    lms_names: dict[str, LmsName] = field(default_factory=dict)  # identity -> its parsed LMS download name
    root: Path | None = None  # the submissions' folder, set by the batch (exports name files relative to it)


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

    def ids(row: list[str]) -> tuple[tuple[str, str], ...]:
        found = []
        for name, headers in ID_COLUMNS.items():
            value = next((cell(row, h) for h in headers if cell(row, h)), "")
            if value:
                found.append((name, value))
        return tuple(found)

    entries: list[Entry] = []
    if CLASSROOM_COLUMNS <= set(column):
        for number, row in enumerate(rows[1:], start=2):
            repository, username, identifier = (cell(row, c) for c in
                                                ("student_repository_name", "github_username", "roster_identifier"))
            if not repository and not username:
                continue  # a roster student who never accepted the assignment has neither
            identity = identifier or username or repository
            keys = tuple(k for k in (repository, username) if k)
            email = identifier if "@" in identifier else ""
            extra = ids(row) + ((("email", email),) if email and not cell(row, "email") else ())
            entries.append(Entry(identity, keys, username, number, extra))
        kind = "classroom"
    elif PLAIN_COLUMNS <= set(column):
        for number, row in enumerate(rows[1:], start=2):
            identity, file = cell(row, "identifier"), cell(row, "file")
            if not identity:
                raise RosterError(f"{path}: line {number}: the identifier is needed (file may be empty: a student "
                                  "with no submission, listed as missing)")
            keys = (file.replace("\\", "/").removeprefix("./"),) if file else ()
            entries.append(Entry(identity, keys, "", number, ids(row)))
        kind = "plain"
    elif CANVAS_COLUMNS <= set(column):
        for number, row in enumerate(rows[1:], start=2):
            student, user = cell(row, "student"), cell(row, "id")
            if not user.isdigit():
                continue  # the "Points Possible" row, or a blank one
            extra = ids(row) + (("lms_id", user),)
            entries.append(Entry(student or user, (user,), "", number, extra))
        kind = "canvas"
    elif MOODLE_COLUMNS <= set(column):
        for number, row in enumerate(rows[1:], start=2):
            participant = cell(row, "identifier").removeprefix("Participant").strip()
            if not participant:
                continue
            entries.append(Entry(cell(row, "full_name") or participant, (participant,), "", number, ids(row)))
        kind = "moodle"
    else:
        raise RosterError(f"{path}: unrecognised header {', '.join(rows[0])!r}; expected GitHub Classroom's grades "
                          "export (student_repository_name, github_username, roster_identifier), `identifier,file`, "
                          "Canvas's gradebook export (Student, ID, SIS User ID, SIS Login ID) or Moodle's grading "
                          "worksheet (Identifier, Full name)")
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
    parsed = {id(item): parse_lms_name(item.key) for item in found}
    if roster is None:
        result.submissions = [(_own_name(item, parsed[id(item)]), item) for item in found]
        return _remember_lms_names(_deduplicate(result), parsed)
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
        lms = parsed[id(item)]
        if roster.kind == "classroom":
            names = [n for n in (item.folder, item.key) if n]  # repositories are folders; or a flat file's name
        elif roster.kind in ("canvas", "moodle"):
            names = [lms.user_id] if lms is not None and lms.lms == roster.kind else []
        else:
            names = names_of(item) + _real_paths(item)
        entry = next((index[n] for n in names if n in index), None)
        if entry is None:
            result.warnings.append(f"{item.shown}: not on the roster; graded as {_own_name(item, lms)!r}")
            result.submissions.append((_own_name(item, lms), item))
            continue
        if entry.identity in used:
            result.warnings.append(f"{item.shown}: {entry.identity!r} already has {used[entry.identity].shown}; "
                                   f"graded separately as {_own_name(item, lms)!r}")
            result.submissions.append((_own_name(item, lms), item))
            continue
        used[entry.identity] = item
        if roster.kind == "plain":
            item = _pick_candidate(item, entry, roster)
        result.submissions.append((entry.identity, item))
    result.missing = [entry for entry in roster.entries if entry.identity not in used]
    return _remember_lms_names(_deduplicate(result), parsed)


def _own_name(item: Found, lms: LmsName | None) -> str:
    """A submission's name without a roster: the student part of an LMS download name, else its file/folder name."""
    return lms.name if lms is not None else item.key


def _remember_lms_names(result: Assignment, parsed: dict[int, LmsName | None]) -> Assignment:
    result.lms_names = {identity: parsed[id(item)] for identity, item in result.submissions if parsed.get(id(item))}
    return result


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
