"""What makes the warm engine's batch start and fork cheap: a zygote started early and claimed once, and
private memory folded into huge pages before anything is forked from it."""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import time
from pathlib import Path

from conftest import ROOT, needs_warm_engine, write_config, zygote_roots
from torchgrade.hugepages import HUGE_PAGE, MADV_COLLAPSE, private_regions

SOLUTION = ROOT / "solutions" / "computational_graph.ipynb"
MIB = 2**20


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and " Z " not in Path(f"/proc/{pid}/stat").read_text()


def test_only_private_writable_anonymous_memory_is_collapsed_and_aligned_to_huge_pages():
    maps = "\n".join([
        "00400000-00a00000 rw-p 00000000 00:00 0 [heap]",               # the heap: 6 MiB, aligned
        "7f0000100000-7f0000700000 rw-p 00000000 00:00 0 ",             # anonymous, unaligned at both ends
        "7f1000000000-7f1000400000 r--p 00000000 00:00 0 ",             # read-only: never
        "7f2000000000-7f2000400000 rw-s 00000000 00:05 1234 /dev/zero",  # shared: never
        "7f3000000000-7f3000400000 rw-p 00001000 08:01 99 /usr/lib/libx.so",  # a library's data: never
        "7f4000000000-7f4000001000 rw-p 00000000 00:00 0 [stack]",      # the stack: never
        "7f5000100000-7f5000300000 rw-p 00000000 00:00 0 ",             # under one aligned huge page: nothing
    ])
    assert list(private_regions(maps)) == [
        (0x400000, 0xA00000),
        (0x7F0000200000, 0x7F0000600000),
    ]


def kernel_collapses() -> bool:
    """Whether MADV_COLLAPSE works here, tried on a mapping of this test's own."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    area = mmap.mmap(-1, 4 * HUGE_PAGE)
    area.write(b"x" * len(area))
    start = ctypes.addressof(ctypes.c_char.from_buffer(area))
    aligned = -(-start // HUGE_PAGE) * HUGE_PAGE
    try:
        return libc.madvise(aligned, HUGE_PAGE, MADV_COLLAPSE) == 0
    finally:
        area.close()


def anon_huge_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1]) * 1024
    return 0


@needs_warm_engine
def test_a_zygote_holds_its_private_memory_in_huge_pages_where_the_kernel_can():
    """A fork copies a page-table entry per page: collapsed, a zygote forks a run in about a third of the time."""
    from torchgrade.processes import descendants
    from torchgrade.sandbox import isolation
    from torchgrade.zygote import Zygote

    zygote = Zygote(isolation("auto"))
    try:
        runtime = list(zygote_roots({zygote.process.pid} | descendants({zygote.process.pid})))
        assert len(runtime) == 1
        huge = anon_huge_bytes(runtime[0])
        if kernel_collapses():
            assert huge >= 64 * MIB, f"only {huge / MIB:.0f} MiB of the zygote's memory is in huge pages"
        else:
            assert huge >= 0  # an older kernel: nothing collapsed, and the zygote works all the same
        assert zygote.alive()
    finally:
        zygote.close()


def test_the_command_line_reaches_the_early_start_without_importing_torch():
    """The batch's fork server and zygote are started early so that their torch imports overlap the batch's own; the
    command line must reach ``slots.start_soon`` without importing torch itself, or the early start comes seconds late
    (the batch's package once imported torch through its flow module, and nothing started before 3 s)."""
    import subprocess
    import sys

    probe = ("import sys, torchgrade.cli, torchgrade.batch, torchgrade.batch.slots; "
             "print(sorted(m for m in ('torch', 'numpy', 'IPython', 'matplotlib') if m in sys.modules))")
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                           cwd=Path(__file__).resolve().parents[1])
    assert (found.returncode, found.stdout.strip()) == (0, "[]"), found.stderr


@needs_warm_engine
def test_a_zygote_started_early_is_claimed_by_the_batch_once_and_closed_with_the_command(tmp_path):
    """The command line starts the batch's zygote while the batch imports torch; the batch's pool takes it over (no
    second start), hands it on to the next assignment's batch, and the command closes it at its end."""
    from conftest import load_config
    from torchgrade.batch import slots
    from torchgrade.batch.worker import Job, Pool

    entry = load_config(write_config(tmp_path, limits__engine="warm")).assignments["computational_graph"]
    entry = slots.batch_sandbox(entry)
    slots.start_soon(entry)
    early = slots._early[entry.limits.sandbox]
    try:
        with Pool(entry, "computational_graph", jobs=2, budget=300) as pool:
            assert pool.zygotes is early
            pool.start(Job(0, "s0", SOLUTION, SOLUTION.name, tmp_path / "0.json", tmp_path / "0.log"))
            started = pool.zygotes.pids()
            deadline, ended = time.monotonic() + 240, []
            while not ended and time.monotonic() < deadline:
                ended = pool.wait(0.5)
            kept = pool.zygotes.pids()
        assert [(r.status, r.report.score) for r in ended] == [("graded", 20)]
        assert len(started) == 1 and kept == started  # the early zygote served the job: none was started after it
        assert slots._early[entry.limits.sandbox] is early and early.pids() == kept  # for the next batch
        assert all(alive(pid) for pid in kept)
    finally:
        slots.close_unclaimed()
    assert not slots._early
    time.sleep(0.5)
    assert not [pid for pid in kept if alive(pid)]


BATCH_WITHOUT_TORCH = """
import json, sys
from torchgrade.cli import main
status = main(sys.argv[1:])
print(json.dumps({"status": status, "torch": "torch" in sys.modules}))
"""


@needs_warm_engine
def test_a_local_batch_keys_its_gradebook_on_the_grader_without_importing_torch_itself(tmp_path):
    """The batch's process asks the fork server for the grader's fingerprints and layout (batch/facts.py): it never
    imports torch (2.5-3.5 s of CPU at the start, beside the zygote's and the fork server's imports). What the fork
    server answers is what the grader computes in this process, and the gradebook and exports are keyed on it."""
    import shutil
    import sqlite3
    import subprocess
    import sys

    from conftest import CORPUS, load_config
    from torchgrade.batch.facts import GraderFacts, grader_facts
    from torchgrade.batch.slots import batch_sandbox

    config = write_config(tmp_path)
    submissions = tmp_path / "class"
    submissions.mkdir()
    shutil.copy(SOLUTION, submissions / "alice.ipynb")
    shutil.copy(CORPUS / "wrong_function.ipynb", submissions / "bob.ipynb")
    output = tmp_path / "out"
    ran = subprocess.run([sys.executable, "-c", BATCH_WITHOUT_TORCH, str(submissions), "--config", str(config),
                          "--output-dir", str(output), "--jobs", "2"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert json.loads(ran.stdout.strip().splitlines()[-1]) == {"status": 0, "torch": False}, ran.stderr[-2000:]
    entry = batch_sandbox(load_config(config).assignments["computational_graph"])  # as the batch runs it
    expected = grader_facts("computational_graph", entry)
    assert GraderFacts.from_json(expected.to_json()) == expected
    with sqlite3.connect(output / "gradebook.sqlite") as db:
        rows = db.execute("SELECT student, grader_version, scoring_version, status FROM submissions ORDER BY student")
        assert [tuple(r) for r in rows] == [("alice", expected.execution, expected.scoring, "graded"),
                                            ("bob", expected.execution, expected.scoring, "graded")]
    header = (output / "grades.csv").read_text(encoding="utf-8").splitlines()[0]
    assert all(f"task_{t.number}" in header for t in expected.tasks)


def test_a_batch_whose_grader_cannot_load_says_why_in_one_line(tmp_path):
    """The fork server's process meets the broken grader and answers nothing; the batch then loads the grader
    itself and says the configuration error as before: one line, exit status 4, no traceback."""
    import shutil
    import subprocess
    import sys

    broken = tmp_path / "broken_grader.py"
    broken.write_text("WHAT = 'no ASSIGNMENT here'\n", encoding="utf-8")
    config = write_config(tmp_path, grader=str(broken))
    submissions = tmp_path / "class"
    submissions.mkdir()
    for student in ("alice", "bob"):
        shutil.copy(SOLUTION, submissions / f"{student}.ipynb")
    ran = subprocess.run([sys.executable, str(ROOT / "grade.py"), str(submissions), "--config", str(config),
                          "--output-dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 4, ran.stderr[-2000:]
    assert ran.stderr.strip().splitlines()[-1] == \
        f"grade.py: invalid configuration: {broken}: must define ASSIGNMENT = Assignment(...)"
    assert "Traceback" not in ran.stderr
