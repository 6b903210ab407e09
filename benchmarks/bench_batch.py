#!/usr/bin/env python3
"""Benchmark instructor batch grading against plain `jupyter nbconvert --execute`.

    python benchmarks/bench_batch.py -n 24 --jobs 4

It generates N submissions (a fixed mix of correct, wrong and broken notebooks from
tests/corpus), grades them with `python grade.py FOLDER --jobs J` in a fresh output
folder, and reads the gradebook for the peak memory of each worker and of its kernels.
In the same run it executes the same notebooks one after another with
`jupyter nbconvert --to notebook --execute` (the baseline most courses start from) and
prints the ratios.

What the two columns do is not the same work: torchgrade runs every notebook twice
(the example inputs and random ones, in two fresh kernels), instruments it, extracts
and checks the values, and writes the gradebook, CSV, feedback and report; nbconvert
runs each notebook once and stops at its first error. Peak memory is the resident set
(ru_maxrss, which counts pages shared with the fork server).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus" / "computational_graph"
# (kind, corpus file): the cycle the N submissions are drawn from, in this order.
MIX = [
    ("correct", "correct_solution.ipynb"),
    ("wrong", "wrong_function.ipynb"),
    ("correct", "correct_tuple_unpack.ipynb"),
    ("wrong", "missing_retain_graph.ipynb"),
    ("broken", "not_json.ipynb"),
    ("wrong", "error_in_task1.ipynb"),
    ("correct", "correct_sum_backward_together.ipynb"),
    ("broken", "truncated.ipynb"),
]


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def generate(folder: Path, count: int) -> list[tuple[str, Path]]:
    folder.mkdir(parents=True)
    made = []
    for index in range(count):
        kind, name = MIX[index % len(MIX)]
        target = folder / f"student{index + 1:04d}.ipynb"
        shutil.copyfile(CORPUS / name, target)
        made.append((kind, target))
    return made


def children_maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def run_batch(submissions: Path, output: Path, jobs: int) -> tuple[float, subprocess.CompletedProcess]:
    command = [sys.executable, str(ROOT / "grade.py"), str(submissions), "--output-dir", str(output),
               "--jobs", str(jobs)]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    return time.monotonic() - started, result


def run_nbconvert(notebooks: list[Path], scratch: Path) -> tuple[float, int, list[float]]:
    jupyter = shutil.which("jupyter")
    base = [jupyter] if jupyter else [sys.executable, "-m", "jupyter"]
    ok, each = 0, []
    started = time.monotonic()
    for notebook in notebooks:
        began = time.monotonic()
        result = subprocess.run(base + ["nbconvert", "--to", "notebook", "--execute", "--output-dir", str(scratch),
                                        str(notebook)], capture_output=True, text=True)
        each.append(time.monotonic() - began)
        ok += result.returncode == 0
    return time.monotonic() - started, ok, each


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--count", type=int, default=24, help="number of generated submissions (default 24)")
    parser.add_argument("--jobs", type=int, default=cores(), help="batch workers (default: the number of cores)")
    parser.add_argument("--keep", type=Path, help="keep the submissions and the batch output in this folder")
    parser.add_argument("--no-baseline", action="store_true", help="skip the nbconvert baseline")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="torchgrade-bench-")) if args.keep is None else args.keep
    if args.keep is not None and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    try:
        made = generate(work / "submissions", args.count)
        kinds = {k: sum(1 for kind, _ in made if kind == k) for k in ("correct", "wrong", "broken")}
        print(f"{args.count} submissions ({kinds['correct']} correct, {kinds['wrong']} wrong, {kinds['broken']} broken) "
              f"on {cores()} cores, batch with --jobs {args.jobs}; torch threads pinned to 1 per kernel")

        before = children_maxrss_kb()
        batch_seconds, result = run_batch(work / "submissions", work / "grading-output", args.jobs)
        batch_peak_any = max(children_maxrss_kb(), before)
        if result.returncode != 0:
            print(result.stdout, result.stderr, sep="\n", file=sys.stderr)
            return 1
        with sqlite3.connect(work / "grading-output" / "gradebook.sqlite") as db:
            rows = db.execute("SELECT status, wall_seconds, worker_peak_rss_kb, kernel_peak_rss_kb FROM submissions "
                              "WHERE graded_by='execution'").fetchall()
        graded = sum(1 for r in rows if r[0] == "graded")
        workers = [r[2] for r in rows if r[2]]
        kernels = [r[3] for r in rows if r[3]]
        walls = [r[1] for r in rows if r[0] == "graded" and r[1]]

        print()
        print("torchgrade batch")
        print(f"  wall time:               {batch_seconds:.1f} s for {len(rows)} submissions "
              f"({graded} graded, {len(rows) - graded} could not be graded), including Python start-up")
        print(f"  throughput:              {len(rows) / batch_seconds:.3f} submissions/s")
        if walls:
            print(f"  per graded submission:   median {statistics.median(walls):.1f} s in its worker "
                  f"(two kernel runs in parallel)")
        if workers:
            print(f"  peak RSS per worker:     median {statistics.median(workers) / 1024:.0f} MiB, "
                  f"max {max(workers) / 1024:.0f} MiB (grader process)")
        if kernels:
            print(f"  peak RSS per kernel:     median {statistics.median(kernels) / 1024:.0f} MiB, "
                  f"max {max(kernels) / 1024:.0f} MiB (each worker runs two kernels at once)")
            print(f"  peak per worker, total:  ~{(statistics.median(workers) + 2 * statistics.median(kernels)) / 1024:.0f} MiB "
                  "(worker + 2 kernels)")
        print(f"  largest single process:  {batch_peak_any / 1024:.0f} MiB")

        if args.no_baseline:
            return 0
        scratch = work / "nbconvert-output"
        scratch.mkdir()
        base_seconds, base_ok, each = run_nbconvert([path for _, path in made], scratch)
        print()
        print("jupyter nbconvert --to notebook --execute, one notebook after another")
        print(f"  wall time:               {base_seconds:.1f} s for {len(made)} notebooks "
              f"({base_ok} ran to the end without an error)")
        print(f"  throughput:              {len(made) / base_seconds:.3f} notebooks/s "
              f"(median {statistics.median(each):.1f} s each)")
        print(f"  largest single process:  {children_maxrss_kb() / 1024:.0f} MiB")
        print()
        print("ratios (torchgrade batch / nbconvert)")
        print(f"  throughput:              {(len(rows) / batch_seconds) / (len(made) / base_seconds):.2f}x")
        print(f"  wall time:               {batch_seconds / base_seconds:.2f}x")
        return 0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
