"""One forked run seen from the grader (the warm engine, fork_executor.py): its two sockets, ``ctl`` for cells and
results and ``mon`` for its init, and the frames it sends (4-byte big-endian length, one type byte, payload;
see zygote_runtime.py)."""

from __future__ import annotations

import json
import select
import socket
import struct
import time

HEADER = struct.Struct(">IB")


class RunDied(Exception):
    def __init__(self, code: int | None):
        self.code = code


class Child:
    """One forked run, seen from the grader: its two sockets, and the frames it sent."""

    def __init__(self, ctl: socket.socket, mon: socket.socket, max_frame: int):
        self.ctl, self.mon, self.max_frame = ctl, mon, max_frame
        self.buffer = bytearray()
        self.exit_code: int | None = None
        self.dead = False

    def send(self, kind: str, payload: bytes | str = b"") -> None:
        if isinstance(payload, str):
            payload = payload.encode("utf-8", "surrogatepass")
        try:
            self.ctl.sendall(HEADER.pack(len(payload), ord(kind)) + payload)
        except OSError:
            pass  # a dead child: its end is reported on mon

    def order(self, what: bytes) -> None:
        try:
            self.mon.send(what)
        except OSError:
            pass

    def next_frame(self, deadline: float) -> tuple[str, bytes] | None:
        """The next frame; None at the deadline; RunDied when the run ended (or sent something unreadable)."""
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            if self.dead:
                raise RunDied(self.exit_code)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.ctl, self.mon], [], [], left)
            if self.mon in ready:
                self._read_mon()
            if self.ctl in ready:
                try:
                    chunk = self.ctl.recv(1 << 20)
                except OSError:
                    chunk = b""
                if chunk:
                    self.buffer += chunk
                elif not self.dead:
                    self._wait_for_exit()

    def _parse(self) -> tuple[str, bytes] | None:
        if len(self.buffer) < HEADER.size:
            return None
        length, kind = HEADER.unpack_from(self.buffer)
        if length > self.max_frame:  # a forged or corrupt frame: treat the child as dead
            self.stop()
            self.buffer.clear()
            self.dead = True
            return None
        if len(self.buffer) < HEADER.size + length:
            return None
        payload = bytes(self.buffer[HEADER.size:HEADER.size + length])
        del self.buffer[:HEADER.size + length]
        return chr(kind), payload

    def _read_mon(self) -> None:
        try:
            message = self.mon.recv(4096)
        except OSError:
            message = b""
        if not message:
            self.dead = True
            return
        try:
            data = json.loads(message)
        except ValueError:
            return
        if isinstance(data, dict) and "exit" in data:
            self.exit_code, self.dead = int(data["exit"]), True

    def _wait_for_exit(self, seconds: float = 5.0) -> None:
        """ctl closed: the run's init reports how the run ended on mon, right after."""
        deadline = time.monotonic() + seconds
        while not self.dead and time.monotonic() < deadline:
            ready, _, _ = select.select([self.mon], [], [], deadline - time.monotonic())
            if ready:
                self._read_mon()
        self.dead = True

    def stop(self) -> None:
        """Kill the run (its PID namespace goes with it) and wait until its init says it is over."""
        if not self.dead:
            self.order(b"kill")
            self._wait_for_exit()
        for sock in (self.ctl, self.mon):
            try:
                sock.close()
            except OSError:
                pass
