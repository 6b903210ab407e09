"""What both engines share: the planned cells they run, what a run gives back, the Executor interface, and how
a kernel's text and environment are kept free of the grader's paths and secrets.

The nbclient engine (executor.py) and the warm engine (fork_executor.py) import these, so that a cell's status, a
scrubbed error and a kernel's environment read the same whichever engine ran the notebook.
"""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .bwrap_box import python_paths
from .config import Limits
from .sandbox import GRADER_DIR
from .sanitize import visible

TIMEOUT_ERROR = "CellTimeoutError"
KEPT_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT")
PINNED_THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
INTERRUPT_GRACE = 3.0  # seconds a timed-out kernel gets to become responsive again before it is replaced
IOPUB_TIMEOUT = 4  # seconds nbclient waits for a cell's end on IOPub after its reply (or after interrupting it)
# A timed-out cell is interrupted; nbclient then waits IOPUB_TIMEOUT for the cell to end, and _responsive
# INTERRUPT_GRACE for the kernel's answer: a cell that stops within STOP_GRACE of the interrupt keeps its kernel.
STOP_GRACE = IOPUB_TIMEOUT + INTERRUPT_GRACE


@dataclass(frozen=True)
class PlannedCell:
    source: str
    role: str  # prelude | given | bridge | student | snapshot | marker
    task: int = 0
    position: int = 0  # cell position in the submitted notebook (student cells)
    resumable: bool = False  # after a kernel death, execution may restart here
    keep_stdout: bool = False


# The stdout kept of one snapshot cell, in bytes: twice the largest snapshot the grader reads (its JSON is ASCII), so
# a genuine one always fits and what a hostile run prints there costs the grader at most this, per cell.
OUTPUT_KEPT_BYTES = 16 * 2**20


@dataclass
class CellRun:
    status: str = "not_run"  # ok | error | timeout | kernel_died | not_run
    error_name: str = ""
    error_value: str = ""
    truncated: bool = False
    kept_bytes: int = 0  # UTF-8 bytes of stdout kept so far
    pieces: list[str] = field(default_factory=list, repr=False)

    @property
    def stdout(self) -> str:
        """What the cell printed (a kept cell only), joined once however many pieces it came in."""
        if len(self.pieces) > 1:
            self.pieces[:] = ["".join(self.pieces)]
        return self.pieces[0] if self.pieces else ""

    def keep(self, text: str, limit: int) -> None:
        """Keep a piece of the cell's stdout, at most ``limit`` bytes of UTF-8 in all, as both engines do: whatever a
        run sends (many small pieces, wide characters), the grader's memory stays bounded and its work linear."""
        room = limit - self.kept_bytes
        if room <= 0:
            self.truncated = self.truncated or bool(text)
            return
        data = text.encode("utf-8", "surrogatepass")
        if len(data) > room:
            self.truncated = True
            text = data[:room].decode("utf-8", "ignore")  # a character cut in two is left out
        self.pieces.append(text)
        # once cut, nothing more is kept, not even a piece small enough for what is left
        self.kept_bytes = limit if self.truncated else self.kept_bytes + len(data)

    def record_error(self, name, value, folder: str) -> None:
        """A cell's error as both engines keep it: bounded, with no host path and no control character."""
        self.error_name = scrub(str(name)[:200], folder)
        self.error_value = scrub(str(value)[:500], folder)

    def forget(self) -> None:
        """What the cell sent is void (a snapshot cell whose message was dropped is run again)."""
        self.pieces.clear()
        self.kept_bytes, self.truncated, self.error_name, self.error_value = 0, False, "", ""


@dataclass
class ExecutionResult:
    cells: list[CellRun]
    events: list[str] = field(default_factory=list)
    seconds: float = 0.0
    secret: str | None = None  # key the probe signed its snapshots with (None: an engine without signatures)
    isolation: str = ""  # how the kernels were isolated, in words


class Executor(Protocol):
    def execute(self, cells: list[PlannedCell], limits: Limits, workdir: Path) -> ExecutionResult: ...


@functools.lru_cache(maxsize=1)
def _host_paths() -> tuple[tuple[str, str], ...]:
    """Host folders a student must not learn (where the grader and its Python live), longest first, with the
    neutral name shown instead."""
    named = {str(GRADER_DIR.parent): "<grader>", str(GRADER_DIR): "<grader>/torchgrade",
             os.path.expanduser("~"): "<home>"}
    for key in ("purelib", "platlib"):
        named[sysconfig.get_paths().get(key) or ""] = "<site-packages>"
    for path in python_paths() + [sys.prefix, sys.base_prefix, sys.exec_prefix]:
        named.setdefault(path, "<python>")
    pairs = {(os.path.realpath(path), name) for path, name in named.items() if path and path not in ("/", ".")}
    pairs |= {(path, name) for path, name in named.items() if path and path not in ("/", ".")}
    return tuple(sorted(pairs, key=lambda pair: -len(pair[0])))


def scrub(text: str, *extra: str) -> str:
    """Text from the kernel as a student may read it: no grader path (prefix, site-packages, repository, home,
    the run's own folders given in `extra`), no control characters."""
    for path in sorted(extra, key=len, reverse=True):
        if path and len(path) > 1:
            text = text.replace(path, "<submission folder>")
    for path, name in _host_paths():
        if path in text:
            text = text.replace(path, name)
    return visible(text)


def probe_handshake(secret: str, generation: int) -> str:
    """What a kernel's probe is handed before any student code runs: the signing key and the kernel's generation.
    Both engines count generations the same way, so both number calls alike and their evidence compares equal."""
    return f"{secret} {generation}"


def kernel_environment(workdir: str | Path, extra: dict[str, str] | None = None, tmp: str | None = None) -> dict[str, str]:
    """An allow-list: nothing of the grader's environment (tokens, secrets, GITHUB_*) reaches the kernel."""
    env = {key: os.environ[key] for key in KEPT_ENVIRONMENT if key in os.environ}
    env.update(PINNED_THREADS)
    env.update({"HOME": str(workdir), "TMPDIR": str(tmp or workdir), "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1",
                "JUPYTER_PLATFORM_DIRS": "1", "IPYTHONDIR": f"{tmp or workdir}/.ipython",
                "MPLCONFIGDIR": f"{tmp or workdir}/.matplotlib"})
    env.update(extra or {})
    return env
