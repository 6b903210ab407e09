"""What a Dask worker runs for ``grade.py --scheduler``: the grading task and the warm-zygote plugin.

The client sends both pickled by reference, so the scheduler and every worker import this
module to read them; the scheduler does so on its event loop, and a worker unpickles a plugin
on its own. This module therefore imports only the standard library and ``distributed`` at
the top: torch, nbformat and the grading engine are imported by the task itself, in the
worker's task thread, where a slow import blocks nobody's heartbeat (the batch side is
``torchgrade/batch/dask_runner.py``).
"""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path

try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # distributed is optional until --scheduler is used
    WorkerPlugin = object

PLUGIN = "torchgrade-zygote"


def plugin_name(sandbox_mode: str) -> str:
    """One plugin per sandbox mode: a later batch with the same mode finds its zygotes warm."""
    return f"{PLUGIN}-{sandbox_mode}"


class WarmZygote(WorkerPlugin):
    """One warm zygote per Dask worker, for every task the worker runs (engine: warm).

    Started by the worker's first task (not in ``setup``, which runs on the worker's event loop)
    and replaced when it stops answering; closed with the worker."""

    idempotent = True  # registering it again (the next batch, a resume) keeps the running zygote

    def __init__(self, sandbox_mode: str):
        self.sandbox_mode = sandbox_mode
        self.zygote = None
        self.lock = None  # made on the worker: the plugin travels pickled (it holds only the sandbox mode)
        self.folder = None

    def setup(self, worker=None):
        self.lock = threading.Lock()
        # The zygote's folder (its socket and log) in the worker's own: a worker killed with SIGKILL cannot remove
        # it, and Dask removes a dead worker's folder when the next worker starts on the same local directory.
        self.folder = getattr(worker, "local_directory", None)

    def client(self):
        """The zygote's client, starting (or replacing) the zygote when needed; None where forking cannot work."""
        from .fork_executor import warm_problem
        from .sandbox import isolation
        from .zygote import WarmUnavailable, Zygote

        if warm_problem():
            return None
        if self.lock is None:
            self.setup()
        with self.lock:
            if self.zygote is not None and not self.zygote.alive():
                self.zygote.close()
                self.zygote = None
            if self.zygote is None:
                try:
                    self.zygote = Zygote(isolation(self.sandbox_mode), parent=self.folder)
                except WarmUnavailable:
                    return None
            return self.zygote.client

    def teardown(self, worker=None):
        if self.zygote is not None:
            self.zygote.close()
            self.zygote = None


def grade_task(config_json: str, name: str, filename: str, content: bytes, shown: str) -> str:
    """A Dask task: grade one notebook on this worker; the result as JSON text (what a local worker writes)."""
    from .batch.grading import grade_to_data
    from .config import AssignmentConfig
    from .sanitize import no_surrogates

    from distributed import get_worker

    worker = get_worker()
    entry = AssignmentConfig.model_validate_json(config_json)
    zygote = None
    if entry.limits.engine == "warm":
        plugin = worker.plugins.get(plugin_name(entry.limits.sandbox))
        zygote = plugin.client() if plugin is not None else None
    # In the worker's own folder: when a worker dies, Dask removes its folder (the copy with it) at the next start.
    with tempfile.TemporaryDirectory(prefix="torchgrade-", dir=worker.local_directory) as folder:
        path = Path(folder) / (Path(filename).name or "submission.ipynb")
        path.write_bytes(content)
        result = grade_to_data(config_json, name, str(path), shown, zygote)
    return no_surrogates(json.dumps(result, ensure_ascii=False))  # a lone surrogate must not lose this row
