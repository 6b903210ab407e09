"""Stage 1: load and validate a submitted notebook with nbformat.

Real submissions are messy: Colab writes nbformat 4.0 with ids in cell metadata,
editors strip metadata, old files are nbformat 3, and some "notebooks" are not
notebooks at all. Everything readable is converted to nbformat 4 in memory;
everything else becomes a one-line SubmissionError.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import nbformat

from .errors import SubmissionError
from .sanitize import no_surrogates

MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024
SUPPORTED_MAJOR = 4
MAX_DEPTH = 100  # JSON nesting; real notebooks (widget state included) stay far below


def load_notebook(path: str | Path, max_cells: int | None = None, max_source_bytes: int | None = None) -> nbformat.NotebookNode:
    """The notebook as nbformat 4, or a one-line SubmissionError; whatever the bytes, nothing else is raised.

    `max_cells` and `max_source_bytes` (config ``limits``) bound the work a notebook can cause before any
    budget's clock runs."""
    path = Path(path)
    raw = _read_bytes(path)
    document = _parse_json(path, raw)
    _check_size(path, document, max_cells, max_source_bytes)  # before any walk over the cells
    document = _cleaned(path, document)
    raw = json.dumps(document).encode("ascii")  # re-encoded clean: no lone surrogate reaches nbformat or a kernel
    major = document.get("nbformat")
    if not isinstance(major, int) or "cells" not in document and "worksheets" not in document:
        raise SubmissionError(f"{path.name}: JSON, but not a Jupyter notebook (no 'nbformat' and 'cells')")
    if major > SUPPORTED_MAJOR:
        raise SubmissionError(f"{path.name}: nbformat {major} is newer than this grader supports (up to {SUPPORTED_MAJOR})")
    if major < 3:
        raise SubmissionError(f"{path.name}: nbformat {major} is too old; open and re-save it in Jupyter")
    if major == SUPPORTED_MAJOR:
        _check_cells(path, document)  # before nbformat, whose errors on bad cells are cryptic
    try:
        with warnings.catch_warnings():  # duplicate or missing cell ids are fixed silently: grading never uses them
            warnings.simplefilter("ignore")
            notebook = nbformat.reads(raw.decode("utf-8"), as_version=SUPPORTED_MAJOR)
    except Exception as problem:  # nbformat raises many kinds for malformed input
        raise SubmissionError(f"{path.name}: not a valid notebook ({_first_line(problem)})") from None
    _check_cells(path, notebook)
    return notebook


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise SubmissionError(f"{path}: no such file")
    if path.is_dir():
        raise SubmissionError(f"{path}: is a folder, not a notebook")
    size = path.stat().st_size
    if size == 0:
        raise SubmissionError(f"{path.name}: the file is empty")
    if size > MAX_NOTEBOOK_BYTES:
        raise SubmissionError(f"{path.name}: {size // 2**20} MiB is larger than the {MAX_NOTEBOOK_BYTES // 2**20} MiB limit")
    try:
        return path.read_bytes()
    except OSError as problem:
        raise SubmissionError(f"{path}: cannot read it ({problem.strerror})") from None


def _parse_json(path: Path, raw: bytes) -> dict:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SubmissionError(f"{path.name}: not a text file (is it a binary or a zip?)") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as problem:
        at_end = problem.pos >= len(text.rstrip()) - 1 or problem.msg.startswith("Unterminated")
        hint = "the file is truncated" if at_end and text.lstrip().startswith("{") else "not JSON"
        raise SubmissionError(f"{path.name}: {hint} (line {problem.lineno}, column {problem.colno}: {problem.msg})") from None
    except RecursionError:
        raise SubmissionError(f"{path.name}: JSON nested too deeply (more than {MAX_DEPTH} levels)") from None
    except ValueError as problem:  # e.g. a number with more digits than Python converts
        raise SubmissionError(f"{path.name}: not a readable notebook ({_first_line(problem)})") from None
    if not isinstance(document, dict):
        raise SubmissionError(f"{path.name}: JSON, but not a Jupyter notebook (top level is not an object)")
    return document


def _cleaned(path: Path, document: dict) -> dict:
    """Lone surrogates replaced by U+FFFD everywhere (they cannot be encoded, printed or sent to a kernel);
    refuses nesting deeper than MAX_DEPTH. Iterative: a hostile depth cannot exhaust the stack."""
    stack: list[tuple[object, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SubmissionError(f"{path.name}: JSON nested too deeply (more than {MAX_DEPTH} levels)")
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in list(items):
            if isinstance(value, str):
                node[key] = no_surrogates(value)
            elif isinstance(value, (dict, list)):
                stack.append((value, depth + 1))
            if isinstance(node, dict) and isinstance(key, str) and no_surrogates(key) != key:
                node[no_surrogates(key)] = node.pop(key)
    return document


def _check_size(path: Path, document: dict, max_cells: int | None, max_source_bytes: int | None) -> None:
    cells = document.get("cells")
    if not isinstance(cells, list):  # nbformat 3 keeps them in worksheets
        worksheets = document.get("worksheets")
        cells = [c for w in worksheets if isinstance(w, dict) for c in (w.get("cells") or [])] \
            if isinstance(worksheets, list) else []
    if max_cells is not None and len(cells) > max_cells:
        raise SubmissionError(f"{path.name}: {len(cells)} cells is more than the {max_cells} allowed "
                              "(limits.max_cells in config.yaml)")
    if max_source_bytes is None:
        return
    total = 0
    for cell in cells:
        source = cell.get("source", cell.get("input", "")) if isinstance(cell, dict) else ""
        parts = source if isinstance(source, list) else [source]
        total += sum(len(s.encode("utf-8", "surrogatepass")) for s in parts if isinstance(s, str))
        if total > max_source_bytes:
            raise SubmissionError(f"{path.name}: more than {max_source_bytes // 1000} kB of source in its cells "
                                  "(limits.max_source_bytes in config.yaml)")


def _check_cells(path: Path, notebook: dict) -> None:
    """Reject what would crash later stages; tolerate what nbformat merely warns about (ids, metadata)."""
    cells = notebook.get("cells")
    if not isinstance(cells, list):
        raise SubmissionError(f"{path.name}: 'cells' is not a list")
    for index, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise SubmissionError(f"{path.name}: cell {index} is not a valid cell (missing or unknown cell_type)")
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(s, str) for s in source):
            cell["source"] = "".join(source)
        elif not isinstance(source, str):
            raise SubmissionError(f"{path.name}: cell {index} has no readable source")


def _first_line(problem: Exception) -> str:
    text = str(problem).strip().splitlines()
    return text[0][:200] if text else type(problem).__name__
