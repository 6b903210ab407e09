"""Integrity at a glance: identical submissions and the untouched exercise.

Two hashes per submission: the file's bytes (``content_hash``, kept by the gradebook) and
its code (``code_hash``): every code cell with comments, blank lines and spacing removed,
by Python's own tokenizer, so reformatting or re-commenting a copy does not hide it. A
notebook whose code hash equals the exercise's is the untouched exercise ("blank").
Outputs and Markdown are ignored: running a notebook or rewording its text changes nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import tokenize
from collections import defaultdict
from pathlib import Path

SKIPPED_TOKENS = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                  tokenize.ENCODING, tokenize.ENDMARKER}


def normalised_code(source: str) -> str:
    """The code's tokens, one space apart: no comments, blank lines or layout. Unparseable code: its stripped lines."""
    try:
        tokens = [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline)
                  if t.type not in SKIPPED_TOKENS]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return "\n".join(line.strip() for line in source.splitlines() if line.strip() and not line.strip().startswith("#"))
    return " ".join(tokens)


def code_hash(path: Path) -> str | None:
    """'code:<sha256>' of a notebook's normalised code cells; None when it is not a readable notebook."""
    try:
        notebook = json.loads(path.read_bytes())
        cells = notebook["cells"]
        sources = ["".join(c["source"]) if isinstance(c["source"], list) else str(c["source"])
                   for c in cells if isinstance(c, dict) and c.get("cell_type") == "code"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    digest = hashlib.sha256()
    for source in sources:
        code = normalised_code(source)
        if code:
            digest.update(code.encode("utf-8", "replace") + b"\0")
    return "code:" + digest.hexdigest()


def integrity_flags(rows, exercise_hash: str | None) -> dict[str, list[str]]:
    """student -> short flags: 'untouched exercise', 'identical file to X', 'same code as X'."""
    flags: dict[str, list[str]] = defaultdict(list)
    by_content, by_code = defaultdict(list), defaultdict(list)
    for row in rows:
        if row.content_hash and row.content_hash.startswith("sha256:"):
            by_content[row.content_hash].append(row.student)
        if row.code_hash:
            by_code[row.code_hash].append(row.student)
    for code, students in by_code.items():
        if exercise_hash and code == exercise_hash:
            for student in students:
                flags[student].append("untouched exercise")
    for group, label in ((by_content, "identical file to"), (by_code, "same code as")):
        for key, students in group.items():
            if len(students) < 2 or (label == "same code as" and key == exercise_hash):
                continue
            for student in students:
                others = [s for s in students if s != student]
                if label == "same code as" and any(f.startswith("identical file to") for f in flags[student]):
                    continue
                flags[student].append(f"{label} {', '.join(others)}")
    return dict(flags)
