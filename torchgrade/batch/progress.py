"""The progress line of a batch: done/total, failures so far, and the time left.

On a terminal it is one bar redrawn in place; in a log (CI, a file) it is one line
per finished submission, so the log shows who was graded and how. Both go to stderr,
leaving stdout to the summary. The time left is estimated from the submissions that
actually ran a notebook (re-scored and unchanged ones take no time) and the number of
workers.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

from ..sanitize import one_line


def clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    def __init__(self, total: int, to_execute: int, workers: int, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.total = total
        self.to_execute = to_execute
        self.workers = max(1, workers)
        self.done = 0
        self.failed = 0
        self.executed = 0
        self.started = time.monotonic()
        self.busy_seconds = 0.0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_draw = 0.0
        self.running: dict[object, float] = {}  # submissions being executed -> when they started

    def began(self, key: object) -> None:
        self.running[key] = time.monotonic()

    def eta(self) -> float | None:
        remaining = self.to_execute - self.executed
        if remaining <= 0:
            return 0.0
        if not self.executed:
            return None
        per_submission = self.busy_seconds / self.executed
        now = time.monotonic()
        in_flight = sum(max(0.0, per_submission - (now - began)) for began in self.running.values())
        queued = max(0, remaining - len(self.running))
        return (in_flight + per_submission * queued) / min(self.workers, remaining)

    def status(self) -> str:
        eta = self.eta()
        left = "estimating time left" if eta is None else f"~{clock(eta)} left"
        return (f"{self.done}/{self.total} done, {self.failed} failed, {clock(time.monotonic() - self.started)} "
                f"elapsed, {left}")

    def advance(self, line: str, *, failed: bool = False, executed_seconds: float | None = None,
                key: object = None) -> None:
        self.running.pop(key, None)
        self.done += 1
        self.failed += int(failed)
        line = one_line(line)  # names and reasons come from submissions: no control characters reach the terminal
        if executed_seconds is not None:
            self.executed += 1
            self.busy_seconds += executed_seconds
        if self.tty:
            self._clear()
            print(line, file=self.stream)
            self.draw(force=True)
        else:
            print(f"[{self.done}/{self.total}] {line}  ({self.status()})", file=self.stream, flush=True)

    def draw(self, force: bool = False) -> None:
        """Redraw the bar (terminals only; at most a few times a second)."""
        if not self.tty or (not force and time.monotonic() - self._last_draw < 0.5):
            return
        self._last_draw = time.monotonic()
        width = shutil.get_terminal_size((100, 20)).columns
        text = self.status()
        room = max(10, min(40, width - len(text) - 4))
        filled = int(room * self.done / self.total) if self.total else room
        bar = "#" * filled + "." * (room - filled)
        self.stream.write(f"\r[{bar}] {text}"[: width - 1])
        self.stream.flush()

    def _clear(self) -> None:
        width = shutil.get_terminal_size((100, 20)).columns
        self.stream.write("\r" + " " * (width - 1) + "\r")

    def close(self) -> None:
        if self.tty:
            self._clear()
            self.stream.flush()
