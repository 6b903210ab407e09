"""What a fork costs from a process that has imported torch and IPython, with its private memory in 4 KiB pages
and then folded into 2 MiB pages (torchgrade/hugepages.py): the cost the warm engine pays three times per run.

    python benchmarks/bench_fork.py [-n 40]

CPU is the whole machine's, read from /proc/stat around the forks (each child exits at once), so it includes the
kernel's work: run it with nothing else running.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def busy_ticks() -> int:
    fields = [int(value) for value in open("/proc/stat", encoding="ascii").readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # all but idle and iowait


def private_mib() -> str:
    status = Path("/proc/self/status").read_text()
    anon = next(line.split()[1] for line in status.splitlines() if line.startswith("RssAnon"))
    rollup = Path("/proc/self/smaps_rollup").read_text()
    huge = next(line.split()[1] for line in rollup.splitlines() if line.startswith("AnonHugePages"))
    return f"{int(anon) / 1024:.0f} MiB private, {int(huge) / 1024:.0f} MiB of it in huge pages"


def forks(count: int) -> tuple[float, float]:
    """Milliseconds of wall time and of CPU per fork-and-exit."""
    ticks, started = busy_ticks(), time.monotonic()
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    wall = (time.monotonic() - started) / count * 1000
    return wall, (busy_ticks() - ticks) * 1000 / os.sysconf("SC_CLK_TCK") / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--count", type=int, default=40, help="forks to time each way (default 40)")
    args = parser.parse_args()
    import IPython  # noqa: F401
    import torch  # noqa: F401

    from torchgrade.hugepages import collapse_to_huge_pages

    gc.freeze()
    wall, cpu = forks(args.count)
    print(f"4 KiB pages ({private_mib()}): {wall:.1f} ms wall, {cpu:.1f} ms CPU per fork")
    started = time.monotonic()
    collapsed = collapse_to_huge_pages()
    print(f"folded {collapsed / 2**20:.0f} MiB in {time.monotonic() - started:.2f} s")
    wall, cpu = forks(args.count)
    print(f"2 MiB pages ({private_mib()}): {wall:.1f} ms wall, {cpu:.1f} ms CPU per fork")
    return 0


if __name__ == "__main__":
    sys.exit(main())
