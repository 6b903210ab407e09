"""What student code in a forked run talks to: the IPython shell, and a kernel's session and streams.

Part of the warm engine's runtime (see zygote_runtime.py), bound read-only beside it at
/run/torchgrade/ in the sandbox. The grader uses only ``PROBE_FILES``, ``probe_source`` and ``probe_definition`` of it (standard
library only). As in ipykernel, stdout, stderr,
displays, results and errors are messages passed to ``kernel.session.send``; the ``Outbox``
keeps what grading needs (a kept cell's stdout, bounded; the cell's first error) and measures
each message as it would travel from a kernel, so that both engines drop the same ones.

Frames on ctl: 4-byte big-endian length, one type byte, payload (see zygote_runtime.py).
"""

import builtins
import contextlib
import getpass
import io
import json
import os
import re
import struct
import sys
import threading
import time

HEADER = struct.Struct(">IB")
MAX_FRAME = 64 * 2**20
FLUSH_INTERVAL = 0.2  # ipykernel's OutStream.flush_interval
EXIT_DELAY = 0.1  # after exit(), ipykernel stops its loop this much later
PIPE_BUFFER_SIZE = 1000  # what ipykernel reads at a time from a captured file descriptor
PROBE_NAME = "<torchgrade probe>"


PROBE_FILES = ("probe_kernel.py", "probe_encode.py", "probe_provenance.py", "probe_record.py", "probe_read.py")
PROBE_PART = re.compile(r"^    # probe part: (probe_[a-z_]+[.]py)\n", re.MULTILINE)


def probe_source(folder):
    """The probe's text as both engines run it: probe_kernel.py, each of its ``# probe part: NAME`` lines replaced by
    that file of ``folder`` indented into the probe's one function. One closure keeps the probe's state away from
    student names; the files only split it by concern, to keep each one readable."""
    def read(name):
        with open(os.path.join(folder, name), encoding="utf-8") as handle:
            return handle.read()

    def part(match):
        if match[1] not in PROBE_FILES:
            raise ValueError(f"probe_kernel.py names an unknown part: {match[1]}")
        return "".join("    " + line if line.strip() else line for line in read(match[1]).splitlines(True))

    return PROBE_PART.sub(part, read(PROBE_FILES[0]))


def probe_definition(source):
    """The prelude's first line: it defines the probe from its source. The grader writes it (instrument.py) and a
    forked run recognises it, so that the zygote compiles the probe once instead of every run compiling it (and
    ipykernel hashing its 35 KB for the cell's name): about 20 ms of CPU a run."""
    return f"exec(compile({source!r}, {PROBE_NAME!r}, 'exec'))\n"


def send_frame(sock, kind, payload=b""):
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "replace")
    sock.sendall(HEADER.pack(len(payload), ord(kind)) + payload)


def recv_exact(sock, count):
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(min(count - len(data), 1 << 20))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


def recv_frame(sock):
    length, kind = HEADER.unpack(recv_exact(sock, HEADER.size))
    if length > MAX_FRAME:
        raise EOFError
    return chr(kind), recv_exact(sock, length)


# ----------------------------------------------------------------------------- the shell and its kernel

def make_shell():
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core import page
    from IPython.core.autocall import ExitAutocall
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets import default, observe
    from traitlets.config import Config

    class QuietHook(DisplayHook):
        """The last expression is formatted (its repr runs, as in a kernel) and dropped, as a kernel's execute_result is."""

        def write_output_prompt(self):
            pass

        def write_format_data(self, format_dict, md_dict=None):
            self.shell.kernel.session.send(None, "execute_result", {"data": format_dict, "metadata": md_dict or {}})

    class QuietPublisher(DisplayPublisher):
        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
            kind = "update_display_data" if update else "display_data"
            self.shell.kernel.session.send(None, kind, {"data": data, "metadata": metadata or {},
                                                        "transient": transient or {}})

        def clear_output(self, wait=False):
            pass

    class ZMQExitAutocall(ExitAutocall):
        """ipykernel's exit() and quit(): exit(keep_kernel=True) keeps the kernel."""

        def __call__(self, keep_kernel=False):
            self._ip.keepkernel_on_exit = keep_kernel
            self._ip.ask_exit()

    class ZMQInteractiveShell(InteractiveShell):
        """Named as ipykernel's shell, which code that asks "am I in Jupyter?" looks for."""

        def _showtraceback(self, etype, evalue, stb):
            self.kernel.session.send(None, "error", {"traceback": [], "ename": str(etype.__name__),
                                                     "evalue": str(evalue)})

        def system(self, cmd):  # the instrumenter removes shell escapes; anything left does nothing
            return None

        keepkernel_on_exit = None

        @default("exiter")
        def _default_exiter(self):
            return ZMQExitAutocall(self)

        def ask_exit(self):
            self.exit_now = not self.keepkernel_on_exit

        @observe("exit_now")
        def _stop_soon(self, change):  # as ipykernel, whose loop then stops 0.1 s later, at its first chance
            if change["new"]:
                self.kernel.stop_at = time.monotonic() + EXIT_DELAY

        def enable_gui(self, gui=None):  # `%matplotlib inline` and `%gui`, through ipykernel's own code
            from ipykernel.eventloops import enable_gui
            from IPython.core.error import UsageError

            try:
                enable_gui(gui, self.kernel)
                self.active_eventloop = gui
            except ValueError as problem:
                raise UsageError(str(problem)) from problem

    ZMQInteractiveShell.__module__ = "ipykernel.zmqshell"

    config = Config()
    config.HistoryManager.enabled = False
    config.HistoryManager.hist_file = ":memory:"
    config.InteractiveShell.colors = "NoColor"
    config.InteractiveShell.xmode = "Plain"
    try:  # ipykernel's compiler names cells as a kernel does (a SyntaxError's message shows the name)
        from ipykernel.compiler import XCachingCompiler as compiler_class
    except ImportError:
        from IPython.core.compilerop import CachingCompiler as compiler_class
    shell = ZMQInteractiveShell.instance(config=config, displayhook_class=QuietHook, display_pub_class=QuietPublisher,
                                         compiler_class=compiler_class)
    # `obj?` and help pages go to the frontend as a payload in ipykernel (nbclient keeps none), not to stdout
    shell.set_hook("show_in_pager", page.as_hook(lambda text, start=0, screen_lines=0, pager_cmd=None: None), 99)
    return shell


def like_a_kernel(shell, argv):
    """What a kernel's process shows besides its shell: the launcher's command line, the IPKernelApp section of
    its config, its environment, and breakpoint() as debugpy's hook leaves it with no debugger attached (a no-op)."""
    sys.argv[:] = argv
    shell.config.IPKernelApp.connection_file = argv[-1]
    sys.breakpointhook = lambda *args, **kwargs: None
    # ipykernel's ZMQInteractiveShell.init_environment, debugpy's setting, and the working folder
    os.environ.update(TERM="xterm-color", CLICOLOR="1", FORCE_COLOR="1", CLICOLOR_FORCE="1", PAGER="cat",
                      GIT_PAGER="cat", PYDEVD_USE_FRAME_EVAL="NO", PWD=os.getcwd())


class Session:
    """What a kernel's session is to code in a cell: every message goes out through ``send``.

    As in ipykernel, stdout, stderr, displays, results and errors are messages passed to
    ``kernel.session.send``, so a cell that patches it changes what leaves the run exactly as it
    would in a kernel (and gains nothing more: snapshots are signed)."""

    def __init__(self, deliver):
        self._deliver = deliver

    def msg(self, msg_type, content=None, parent=None, header=None, metadata=None):
        return {"header": {"msg_type": msg_type, **(header or {})}, "msg_id": "", "msg_type": msg_type,
                "parent_header": parent or {}, "content": content or {}, "metadata": metadata or {}}

    def send(self, stream, msg_or_type, content=None, parent=None, ident=None, buffers=None, track=False,
             header=None, metadata=None):
        msg = msg_or_type if isinstance(msg_or_type, dict) else self.msg(msg_or_type, content, parent, header,
                                                                          metadata)
        self._deliver(msg)
        return msg


class Kernel:
    """``get_ipython().kernel``: the parts of an ipykernel that cells reach for. Like a kernel run by nbclient, it
    has no frontend to answer input requests: during a cell, input() and getpass.getpass() raise as there."""

    def __init__(self, session):
        self.session = session
        self.iopub_socket = None
        self.eventloop = None  # what `%gui` asks for; ipykernel would then run it, a run never does
        self.stop_at = None  # after exit(): when the run ends, as a kernel's loop stops (see serve_cells)

    def raw_input(self, prompt=""):
        from IPython.core.error import StdinNotImplementedError

        raise StdinNotImplementedError("raw_input was called, but this frontend does not support input requests.")

    def getpass(self, prompt="", stream=None, *, echo_char=None):
        from IPython.core.error import StdinNotImplementedError

        raise StdinNotImplementedError("getpass was called, but this frontend does not support input requests.")

    @contextlib.contextmanager
    def forward_input(self):
        """What ipykernel does around each cell (_forward_input, _restore_input)."""
        saved = builtins.input, getpass.getpass
        builtins.input, getpass.getpass = self.raw_input, self.getpass
        try:
            yield
        finally:
            builtins.input, getpass.getpass = saved



# ----------------------------------------------------------------------------- what leaves a run

class Output:
    """sys.stdout or sys.stderr of a run, buffered as ipykernel's OutStream is: what is written within FLUSH_INTERVAL
    of the first unsent write leaves as one "stream" message (sent on the next write after it, on flush(), and when
    the cell ends), so the run's messages have the sizes a kernel's have."""

    def __init__(self, name, session):
        self.name, self._session = name, session
        self._pieces, self._since, self._lock = [], None, threading.Lock()
        self._original = None

    def capture(self, fd):
        """As ipykernel's capture_fd_output: what reaches file descriptor fd (C code, child processes) is read by a
        thread and written here; fileno() is a copy of what fd was before (/dev/null, as for a kernel)."""
        self._original = os.dup(fd)
        read_end, write_end = os.pipe()
        os.dup2(write_end, fd)
        os.close(write_end)
        threading.Thread(target=self._watch, args=(read_end,), name=f"{self.name}-fd", daemon=True).start()

    def _watch(self, read_end):
        try:
            data = os.read(read_end, PIPE_BUFFER_SIZE)
            while data:
                self.write(data.decode(errors="replace"))
                data = os.read(read_end, PIPE_BUFFER_SIZE)
        except Exception:  # noqa: BLE001 - as ipykernel: the watcher stops, the run goes on
            pass

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            now = time.monotonic()
            if self._since is not None and now - self._since >= FLUSH_INTERVAL:
                self.flush()
            with self._lock:
                self._pieces.append(text)
                self._since = now if self._since is None else self._since
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        with self._lock:
            pieces, self._pieces, self._since = self._pieces, [], None
        if pieces:
            self._session.send(None, self._session.msg("stream", {"name": self.name, "text": "".join(pieces)}))

    def isatty(self):
        return False

    def fileno(self):
        if self._original is None:
            raise io.UnsupportedOperation("fileno")
        return self._original

    @property
    def encoding(self):
        return "UTF-8"

    def readable(self):
        return False

    def writable(self):
        return True


class Outbox:
    """Where the session's messages go: a kept cell's stdout to the grader (bounded), its first error, sizes.

    A message larger than a kernel's ZMQ sockets accept is dropped with the event the kernel engine reports."""

    def __init__(self, ctl, settings):
        self.ctl, self.limit, self.message_limit = ctl, settings["probe_output_bytes"], settings["max_message_bytes"]
        self.start(False)

    def start(self, keep):
        self.keep, self.sent, self.truncated, self.big, self.error = keep, 0, False, False, {}

    def __call__(self, msg):
        try:
            kind, content = msg.get("msg_type") or msg["header"]["msg_type"], msg.get("content") or {}
            size = wire_size(content)
        except Exception:  # noqa: BLE001 - a message a cell built by hand, or too big to serialize
            return
        if size > self.message_limit:
            self.big = True
            return
        if kind == "stream" and content.get("name") == "stdout" and self.keep:
            text = content.get("text", "")
            text = text if isinstance(text, str) else ""
            room = self.limit - self.sent
            if len(text) > room:
                self.truncated = True
            piece = text[: max(room, 0)]
            if piece:
                self.sent += len(piece)
                send_frame(self.ctl, "O", piece)
        elif kind == "error" and not self.error:
            self.error = {"name": text_of(lambda: content.get("ename", ""), 200),
                          "value": text_of(lambda: content.get("evalue", ""), 500)}


def wire_size(content):
    """The bytes of a message's content as jupyter_client's json_packer sends it (ZMQ's MAXMSGSIZE bounds them)."""
    try:
        packed = json.dumps(content, default=str, ensure_ascii=False, allow_nan=False)
        return len(packed.encode("utf-8", "surrogateescape"))
    except (TypeError, ValueError, RecursionError):  # what json_packer would clean first: count the text alone
        return sum(len(v) for v in walk_strings(content))


def walk_strings(value, depth=0):
    if isinstance(value, (str, bytes)):
        yield value
    elif isinstance(value, dict) and depth < 4:
        for item in value.values():
            yield from walk_strings(item, depth + 1)
    elif isinstance(value, (list, tuple)) and depth < 4:
        for item in value:
            yield from walk_strings(item, depth + 1)


def text_of(function, limit):
    try:
        return str(function())[:limit]
    except BaseException:  # noqa: BLE001 - a student's __str__
        return "?"
