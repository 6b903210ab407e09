"""What the batch's fork server imports and warms once, so that no worker forked from it pays for it.

The fork server (``multiprocessing``'s, started by ``slots.fork_server_context``) preloads this module;
the batch's own process never imports it.
"""

import gc

from .. import evidence_store, fork_executor  # noqa: F401 - what every warm worker grades with (and torch)
from ..hugepages import collapse_to_huge_pages
from ..pipeline import warm_references
from ..sandbox import probe_sandbox
from . import worker  # noqa: F401 - the workers' code, imported (and its imports done) once


def warm_validator() -> None:
    """nbformat builds its validator (and a URI grammar, 1-2 s) on first use."""
    try:
        import nbformat

        nbformat.validate(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("pass")]))
    except Exception:  # noqa: BLE001 - only a warm-up
        pass


warm_validator()
warm_references()  # the references' first autograd.grad imports sympy (about 1 s of CPU)
probe_sandbox()  # whether bubblewrap works: a test sandbox (0.1-0.3 s); workers inherit the answer
gc.freeze()  # a worker's collections then leave the fork server's objects (and their pages) alone: no copy-on-write
collapse_to_huge_pages()  # a worker per submission is forked from here: cheaper from 2 MiB pages
