"""Find the submissions in the PATHs of a batch: notebooks, folders (recursively) and zips.

Who a notebook belongs to comes from the file system, never from splitting names
on '-' (usernames and assignment slugs contain hyphens):

- a notebook given directly, or lying directly in a folder: its file name without
  ``.ipynb`` (``alice.ipynb`` -> ``alice``);
- a notebook inside a subfolder of a given folder: the subfolder's name. That is the
  layout of ``gh classroom clone student-repos`` (``<assignment>-submissions/<repository>/``,
  one git repository per student, named ``<prefix>-<username>``) and of LMS exports with
  a folder per student. When such a folder holds several notebooks, the one named like
  the assignment's exercise wins; otherwise the submission is reported as ambiguous
  (a roster with ``identifier,file`` can say which file counts). A folder that is not a
  git repository and holds several differently named notebooks is a container (a class
  section, say) and is searched the same way one level down.

Zips are extracted into a private folder first, member by member and defensively:
no absolute paths, no ``..``, no links, no special files, a bounded number of members,
a bounded size per notebook and in total, all measured while decompressing (the sizes
a zip declares are not trusted). A single wrapping folder (``hw1/...``) is looked through.
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from ..errors import SubmissionError
from ..loader import MAX_NOTEBOOK_BYTES
from ..sanitize import no_surrogates

SKIPPED_FOLDERS = {".ipynb_checkpoints", "__MACOSX", "__pycache__", "node_modules", ".git", ".github"}
MAX_ZIP_MEMBERS = 20_000
MAX_ZIP_TOTAL_BYTES = 4 * 2**30
CHUNK = 1 << 16


@dataclass(frozen=True)
class Found:
    """One student's submission: where its notebook is, and how to show it."""

    key: str  # identity from the file system (file stem or folder name); a roster may map it
    path: Path | None  # the notebook to grade (None when `problem` says why there is none)
    shown: str  # the file as the instructor knows it: relative to the PATH given, or archive.zip:member
    relative: str = ""  # the notebook's path relative to the PATH given (or to the zip's root)
    folder: str | None = None  # the student's folder name, when the identity came from one
    problem: str | None = None  # why this submission cannot be graded before it even starts
    candidates: tuple[tuple[str, str, Path], ...] = ()  # a folder's notebooks: (shown, relative, path)


def is_notebook(path: Path) -> bool:
    return path.suffix.lower() == ".ipynb" and not path.name.startswith(".")


def _visible(path: Path) -> bool:
    return path.name not in SKIPPED_FOLDERS and not path.name.startswith(".")


LINK_REFUSED = "symbolic links are never followed (they could point at another student's work or the solutions)"


def notebooks_under(folder: Path, skip: tuple[Path, ...] = (), links: list[Path] | None = None) -> list[Path]:
    """Every notebook below folder (recursively), skipping hidden and checkpoint folders and `skip`.

    Links are never followed: a linked notebook or folder is not searched, and is added to `links` when given."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        here = Path(root)
        linked = [here / d for d in dirs if (here / d).is_symlink()] + \
                 [here / f for f in files if (here / f).is_symlink() and is_notebook(here / f)]
        if links is not None:
            links.extend(p for p in linked if _visible(p))
        dirs[:] = sorted(d for d in dirs if _visible(here / d) and not (here / d).is_symlink()
                         and (here / d).resolve() not in skip)
        found.extend(here / f for f in sorted(files)
                     if is_notebook(here / f) and not (here / f).is_symlink() and (here / f).is_file())
    return found


def link_problem(shown: str, links: list[Path], base: Path) -> str:
    names = ", ".join(p.relative_to(base).as_posix() for p in links[:5]) + (" ..." if len(links) > 5 else "")
    return f"{shown}: not graded, it holds symbolic links ({names}); {LINK_REFUSED}. Replace them by the files."


def discover(paths: list[Path], unpack_dir: Path, exercise_name: str, skip: tuple[Path, ...] = ()) -> list[Found]:
    """Every submission in the given PATHs, in a stable order. Raises SubmissionError for a bad PATH."""
    skip = tuple(p.resolve() for p in skip)
    return [_printable(item) for item in _discover(paths, unpack_dir, exercise_name, skip)]


def _printable(item: Found) -> Found:
    """Names from undecodable file names hold lone surrogates: shown and stored as U+FFFD (the path is kept)."""
    clean = {key: no_surrogates(getattr(item, key)) for key in ("key", "shown", "relative", "folder", "problem")
             if isinstance(getattr(item, key), str)}
    return replace(item, **clean)


def _discover(paths: list[Path], unpack_dir: Path, exercise_name: str, skip: tuple[Path, ...]) -> list[Found]:
    found: list[Found] = []
    for index, path in enumerate(paths):
        if not path.exists():
            raise SubmissionError(f"{path}: no such file or folder")
        if path.is_dir():
            items = scan_folder(path, path, exercise_name, skip, prefix="", shown_root=path)
            if not items:
                raise SubmissionError(f"{path}: no notebooks (.ipynb files) in this folder or below it")
            found.extend(items)
        elif path.suffix.lower() == ".zip":
            target = unpack_dir / f"zip{index}"
            refused: list[Found] = []
            damaged = extract_zip(path, target, refused)
            root = look_through_wrappers(target)
            items = scan_folder(root, root, exercise_name, (), prefix=f"{path.name}:", shown_root=target)
            if not items and not refused:
                raise SubmissionError(f"{path.name}: no notebooks (.ipynb files) in this zip")
            found.extend(replace(item, problem=damaged[item.path]) if item.path in damaged else item
                         for item in items)
            found.extend(refused)
        elif path.is_symlink():  # given directly, but still a link: a shell glob picks up a student's links too
            found.append(Found(key=_stem(path), path=None, shown=str(path), relative=path.name,
                               problem=f"{path.name}: not graded, it is a symbolic link; {LINK_REFUSED}"))
        else:  # any other file is a notebook given directly (the loader judges it)
            found.append(Found(key=_stem(path), path=path, shown=str(path), relative=path.name))
    return found


def _stem(path: Path | PurePosixPath) -> str:
    name = path.name
    return name[: -len(".ipynb")] if name.lower().endswith(".ipynb") else name


def _shown(prefix: str, root: Path, path: Path) -> str:
    relative = path.relative_to(root).as_posix()
    return prefix + relative if prefix else (root / relative).as_posix()


def scan_folder(folder: Path, root: Path, exercise_name: str, skip: tuple[Path, ...], prefix: str,
                shown_root: Path) -> list[Found]:
    """Submissions below folder; identities relative to root, paths shown relative to shown_root (with prefix)."""
    found: list[Found] = []
    entries = sorted(folder.iterdir(), key=lambda p: p.name)
    for entry in entries:
        if entry.is_symlink() and _visible(entry) and (is_notebook(entry) or entry.is_dir()):
            shown = _shown(prefix, shown_root, entry) + ("/" if entry.is_dir() else "")
            named = prefix + entry.relative_to(root).as_posix()  # the reason reaches the student: no host path
            found.append(Found(key=_stem(entry), path=None, shown=shown, relative=entry.relative_to(root).as_posix(),
                               folder=entry.name if entry.is_dir() else None,
                               problem=f"{named}: not graded, it is a symbolic link; {LINK_REFUSED}"))
        elif entry.is_file() and is_notebook(entry):
            found.append(Found(key=_stem(entry), path=entry, shown=_shown(prefix, shown_root, entry),
                               relative=entry.relative_to(root).as_posix()))
    for entry in entries:
        if not entry.is_dir() or entry.is_symlink() or not _visible(entry) or entry.resolve() in skip:
            continue
        links: list[Path] = []
        notebooks = notebooks_under(entry, skip, links)
        chosen = choose_notebook(notebooks, exercise_name) if notebooks else None
        is_repository = (entry / ".git").exists()
        if links and (chosen is not None or is_repository or not notebooks):  # one student's folder, with links
            shown = _shown(prefix, shown_root, entry) + "/"
            named = prefix + entry.relative_to(root).as_posix() + "/"
            found.append(Found(key=entry.name, path=None, shown=shown, relative=entry.relative_to(root).as_posix() + "/",
                               folder=entry.name, problem=link_problem(named, links, entry)))
            continue
        if not notebooks:
            continue
        if chosen is not None or is_repository:
            candidates = tuple((_shown(prefix, shown_root, n), n.relative_to(root).as_posix(), n) for n in notebooks)
            if chosen is not None:
                found.append(Found(key=entry.name, path=chosen, shown=_shown(prefix, shown_root, chosen),
                                   relative=chosen.relative_to(root).as_posix(), folder=entry.name,
                                   candidates=candidates if len(notebooks) > 1 else ()))
            else:
                shown = tuple(c[0] for c in candidates)
                found.append(Found(key=entry.name, path=None, shown=_shown(prefix, shown_root, entry) + "/",
                                   relative=entry.relative_to(root).as_posix() + "/", folder=entry.name,
                                   candidates=candidates, problem=ambiguous_text(entry.name, shown, exercise_name)))
        else:  # several differently named notebooks and not a repository: a container of submissions
            found.extend(scan_folder(entry, root, exercise_name, skip, prefix, shown_root))
    return found


def choose_notebook(notebooks: list[Path], exercise_name: str) -> Path | None:
    """The student's notebook among a folder's notebooks: the only one, or the only one named like the exercise."""
    if len(notebooks) == 1:
        return notebooks[0]
    named = [n for n in notebooks if n.name == exercise_name]
    if len(named) == 1:
        return named[0]
    named = [n for n in notebooks if n.name.lower() == exercise_name.lower()]
    return named[0] if len(named) == 1 else None


def ambiguous_text(folder: str, shown: tuple[str, ...], exercise_name: str) -> str:
    listed = ", ".join(shown[:5]) + (f" and {len(shown) - 5} more" if len(shown) > 5 else "")
    return (f"{folder}: {len(shown)} notebooks and none (or several) named {exercise_name} ({listed}); "
            "say which one counts with a roster line `identifier,file`")


def look_through_wrappers(folder: Path) -> Path:
    """Descend through folders that only wrap everything else (a zip of `hw1/`, `hw1/alice/...`)."""
    for _ in range(8):
        entries = [e for e in folder.iterdir() if _visible(e)]
        folders = [e for e in entries if e.is_dir()]
        if len(entries) != 1 or len(folders) != 1:
            return folder
        inner = [e for e in folders[0].iterdir() if _visible(e)]
        if len(inner) < 2 or (folders[0] / ".git").exists():
            return folder  # one student's folder is not a wrapper
        folder = folders[0]
    return folder


# ------------------------------------------------------------------------------- zips

def _member_path(info: zipfile.ZipInfo, *, links: bool = False) -> PurePosixPath | None:
    """The member's safe relative path, or None when it must not be extracted (with `links`: a link's own path)."""
    name = info.filename.replace("\\", "/")
    if not name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = PurePosixPath(name).parts
    if any(part in ("..", "") for part in parts) or "\0" in name:
        return None
    kind = _member_kind(info)
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR) and not (links and kind == stat.S_IFLNK):
        return None  # links, devices, fifos
    return PurePosixPath(*parts)


def _member_kind(info: zipfile.ZipInfo) -> int:
    return stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0  # Unix modes only


def extract_zip(archive: Path, target: Path, refused: list[Found] | None = None) -> dict[Path, str]:
    """Extract the notebooks of a zip safely into target.

    Unsafe members (absolute paths, `..`, links, special files) are never written; a notebook among them is added to
    ``refused`` as a row that says why, so that the instructor hears of it.
    Returns the members that could not be decompressed (damaged, encrypted) with the
    reason, each left as an empty placeholder so its student still gets a row.
    """
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as problem:
        raise SubmissionError(f"{archive.name}: not a readable zip ({problem})") from None
    damaged: dict[Path, str] = {}
    total = 0
    target.mkdir(parents=True, exist_ok=True)
    with bundle:
        members = bundle.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            raise SubmissionError(f"{archive.name}: {len(members)} entries is more than the {MAX_ZIP_MEMBERS} allowed")
        for info in members:
            if info.is_dir():
                continue
            relative = _member_path(info, links=True)
            if relative is None:
                name = PurePosixPath(info.filename.replace("\\", "/"))
                if refused is not None and name.suffix.lower() == ".ipynb" and \
                        all(_visible(Path(part)) for part in name.parts if part not in ("/", "..", ".")):
                    refused.append(_refused_member(archive, info, name))
                continue
            is_link = _member_kind(info) == stat.S_IFLNK
            if relative.suffix.lower() != ".ipynb" or any(not _visible(Path(p)) for p in relative.parts):
                continue
            destination = target.joinpath(*relative.parts)
            if not destination.resolve().is_relative_to(target.resolve()):
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            if is_link:  # never created: an empty placeholder keeps the student's row, which says why
                destination.write_bytes(b"")
                damaged[destination] = (f"{info.filename}: not graded, it is a symbolic link inside {archive.name}; "
                                        f"{LINK_REFUSED}")
                continue
            if info.flag_bits & 0x1:  # a password-protected member: zipfile would say so in its own words
                destination.write_bytes(b"")
                damaged[destination] = (f"{info.filename}: not graded, it is encrypted (password-protected) inside "
                                        f"{archive.name}; submit the notebook without a password")
                continue
            try:
                total += _copy_bounded(bundle, info, destination)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError, zlib.error) as problem:
                destination.write_bytes(b"")
                damaged[destination] = f"{info.filename}: could not be extracted from {archive.name} ({problem})"
            if total > MAX_ZIP_TOTAL_BYTES:
                raise SubmissionError(f"{archive.name}: more than {MAX_ZIP_TOTAL_BYTES // 2**30} GiB once "
                                      "decompressed (a zip bomb?); nothing was graded")
    return damaged


def _refused_member(archive: Path, info: zipfile.ZipInfo, path: PurePosixPath) -> Found:
    name = path.name.replace("\0", "")
    return Found(key=_stem(PurePosixPath(name)), path=None, shown=f"{archive.name}:{info.filename}", relative=name,
                 problem=(f"{name}: not graded, its path inside {archive.name} is unsafe (absolute, through '..', or "
                          "a special file), so it was never extracted"))


def _copy_bounded(bundle: zipfile.ZipFile, info: zipfile.ZipInfo, destination: Path) -> int:
    """Decompress one member, stopping just past the notebook size limit (the loader then refuses it)."""
    written = 0
    with bundle.open(info) as source, open(destination, "wb") as sink:
        while written <= MAX_NOTEBOOK_BYTES:
            chunk = source.read(min(CHUNK, MAX_NOTEBOOK_BYTES + 1 - written))
            if not chunk:
                break
            sink.write(chunk)
            written += len(chunk)
    return written
