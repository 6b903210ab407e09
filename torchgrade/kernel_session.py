"""The kernel engine's reading of a kernel's messages: nothing a kernel sends may raise in the grader.

The kernel holds its session's key (it signs its own messages), so a student's code can send anything on its
sockets: JSON nested past Python's stack, a replayed signature, a header without msg_id or with a bad date, another
protocol version for jupyter_client to adapt, too few frames. The warm engine ignores any frame it cannot read
(fork_executor.py); ``tolerant`` makes the kernel engine's session do the same. Not imported by the kernels.
"""

from __future__ import annotations

UNREADABLE = {"msg_id": "", "msg_type": "torchgrade_unreadable"}  # matches no request and no output type


def unreadable_message() -> dict:
    """What a message the session cannot read becomes: one whose parent is no request, so every loop ignores it."""
    return {"header": dict(UNREADABLE), "msg_id": "", "msg_type": UNREADABLE["msg_type"], "parent_header": {},
            "metadata": {}, "content": {}, "buffers": []}


def tolerant(session) -> None:
    """Make a kernel's session read anything without raising in the grader, as the warm engine ignores a frame it
    cannot read: the kernel holds the session's key, so it can sign anything (a replayed signature, a header with
    no msg_id or a bad date, another protocol version to adapt from, too few frames); each becomes a message that
    no loop waits for."""
    feed, deserialize = session.feed_identities, session.deserialize

    def feed_identities(msg_list, copy=True):
        try:
            return feed(msg_list, copy)
        except Exception:  # noqa: BLE001 - no delimiter frame: nothing of it is read
            return [], []

    def read(msg_list, content=True, copy=True):
        try:
            message = deserialize(msg_list, content, copy)
        except Exception:  # noqa: BLE001 - see the docstring; JSON nested too deep raises RecursionError here
            return unreadable_message()
        parts = ("header", "parent_header", "content") if content else ("header", "parent_header")
        if not all(isinstance(message.get(part), dict) for part in parts):
            return unreadable_message()
        return message

    session.feed_identities, session.deserialize = feed_identities, read
