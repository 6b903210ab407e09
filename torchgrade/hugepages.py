"""Fold a warmed-up process's private memory into transparent huge pages, so that forking it is cheap.

Both processes that fork per submission (the warm engine's zygote, a run per fork; the batch's fork
server, a worker per fork) hold 150-170 MiB of private anonymous memory once torch is imported. A fork
copies a page-table entry for each 4 KiB of it: about 20 ms of CPU per fork, and a run takes two forks.
Collapsed into 2 MiB pages (``MADV_COLLAPSE``, Linux 6.1) a fork copies one entry per 2 MiB: about 7 ms.
After a fork, a write still copies only the 4 KiB it touches, so a child's memory does not grow.

Best effort: where the kernel is older or THP is disabled, nothing changes but the speed. Also bound into
the zygote's sandbox beside zygote_runtime.py (stdlib only).
"""

import ctypes

HUGE_PAGE = 2 * 2**20
MADV_COLLAPSE = 25


def private_regions(maps_text):
    """(start, end) of each writable, private, anonymous mapping (the heap included), aligned inward to 2 MiB."""
    for line in maps_text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        name = fields[5] if len(fields) > 5 else ""
        if fields[4] != "0" or not fields[1].startswith("rw") or fields[1][3] != "p" or name not in ("", "[heap]"):
            continue
        start, end = (int(value, 16) for value in fields[0].split("-"))
        start = -(-start // HUGE_PAGE) * HUGE_PAGE
        end = end // HUGE_PAGE * HUGE_PAGE
        if end - start >= HUGE_PAGE:
            yield start, end


def collapse_to_huge_pages():
    """Collapse what can be collapsed; the bytes now in huge pages (0 where the kernel cannot)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        with open("/proc/self/maps", encoding="ascii", errors="replace") as handle:
            regions = list(private_regions(handle.read()))
    except (OSError, AttributeError):
        return 0
    collapsed = 0
    for start, end in regions:  # no MADV_HUGEPAGE: what a run allocates later stays in pages of the system's choice
        if madvise(start, end - start, MADV_COLLAPSE) == 0:
            collapsed += end - start
    return collapsed
