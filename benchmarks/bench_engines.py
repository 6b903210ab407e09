#!/usr/bin/env python3
"""Both engines against nbconvert and nbgrader, in one run, on the same generated submissions.

    python benchmarks/bench_engines.py -n 200 --jobs 2 --slow 12

Measures, one after another on a quiet machine:

1. one notebook from the command line: ``python grade.py solutions/...ipynb`` with the warm
   engine (zygote start, two runs, grading) against ``jupyter nbconvert --execute`` of it;
2. a batch of N submissions with ``--engine warm --jobs J``: seconds per submission, and the
   peak memory per worker (PSS, psutil: a worker process, its zygote and its running children,
   shared pages counted once);
3. the first ``--slow`` of the same submissions with ``--engine kernel``, with
   ``jupyter nbconvert --execute`` one after another, and with ``nbgrader autograde``
   (the script builds the nbgrader course: source, release, submitted/<student>/).

The slow baselines run on a subset (they take seconds per notebook); every figure is per
submission, so the ratios compare like with like. torchgrade executes each notebook twice
(example and random inputs) and grades it; nbconvert executes it once; nbgrader executes it
once and records its (here: zero) autograded points.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_batch import ROOT, cores, generate  # noqa: E402

SOLUTION = ROOT / "solutions" / "computational_graph.ipynb"


def jupyter() -> list[str]:
    found = shutil.which("jupyter")
    return [found] if found else [sys.executable, "-m", "jupyter"]


class MemorySampler:
    """Peak PSS of everything below a process, sampled while it runs (psutil)."""

    def __init__(self, pid: int, period: float = 0.5):
        import psutil

        self.psutil, self.root, self.period = psutil, psutil.Process(pid), period
        self.peak_total = 0
        self.peak_group: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.wait(self.period):
            try:
                processes = self.root.children(recursive=True)
            except self.psutil.Error:
                return
            total = 0
            for process in processes:
                try:
                    total += process.memory_full_info().pss
                except self.psutil.Error:
                    continue
            self.peak_total = max(self.peak_total, total)


def timed(command: list[str], cwd: Path = ROOT, sample: bool = False) -> tuple[float, subprocess.CompletedProcess, int]:
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    if sample:
        with MemorySampler(process.pid) as sampler:
            out, err = process.communicate()
        peak = sampler.peak_total
    else:
        out, err = process.communicate()
    return time.monotonic() - started, subprocess.CompletedProcess(command, process.returncode, out, err), peak


def grade_batch(folder: Path, output: Path, engine: str, jobs: int) -> tuple[float, int]:
    seconds, result, peak = timed([sys.executable, str(ROOT / "grade.py"), str(folder), "--output-dir", str(output),
                                   "--jobs", str(jobs), "--engine", engine], sample=True)
    if result.returncode != 0:
        raise SystemExit(f"grade.py --engine {engine} failed:\n{result.stdout}\n{result.stderr}")
    return seconds, peak


def nbconvert_each(notebooks: list[Path], scratch: Path) -> float:
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    for notebook in notebooks:
        # --allow-errors: like a grader, run every cell of a broken submission instead of stopping at its error
        result = subprocess.run(jupyter() + ["nbconvert", "--to", "notebook", "--execute", "--allow-errors",
                                             "--output-dir", str(scratch), str(notebook)], capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"nbconvert failed on {notebook.name}:\n{result.stderr[-2000:]}")
    return time.monotonic() - started


def nbgrader_course(course: Path, notebooks: list[Path]) -> None:
    """An nbgrader course with one assignment (the exercise notebook) and each notebook as a student's submission."""
    (course / "source" / "cg").mkdir(parents=True)
    # the exercise as the source: the solution's `### BEGIN SOLUTION` regions are not in nbgrader solution cells
    shutil.copyfile(ROOT / "exercises" / SOLUTION.name, course / "source" / "cg" / "computational_graph.ipynb")
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.course_id = 'bench'\n"
        f"c.CourseDirectory.root = {str(course)!r}\nc.ExecutePreprocessor.timeout = 300\n")
    for index, notebook in enumerate(notebooks):
        target = course / "submitted" / f"student{index:04d}" / "cg"
        target.mkdir(parents=True)
        shutil.copyfile(notebook, target / "computational_graph.ipynb")
    result = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", "cg", "--force", "--create"], cwd=course,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"nbgrader generate_assignment failed:\n{result.stderr[-2000:]}")


def nbgrader_autograde(course: Path) -> float:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", "cg", "--create", "--force"], cwd=course,
                            capture_output=True, text=True)
    seconds = time.monotonic() - started
    submitted = sorted(p.name for p in (course / "submitted").iterdir())
    graded = [s for s in submitted if (course / "autograded" / s / "cg" / "computational_graph.ipynb").exists()]
    if result.returncode != 0 or graded != submitted:  # a baseline that failed fast would flatter it
        raise SystemExit(f"nbgrader autograde graded {len(graded)} of {len(submitted)}:\n{result.stderr[-2000:]}")
    return seconds


def readable(path: Path) -> bool:
    import nbformat

    try:
        nbformat.read(path, as_version=4)
        return True
    except Exception:  # noqa: BLE001 - any reason nbformat refuses it
        return False


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} on {cores()} cores"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--count", type=int, default=200, help="submissions for the warm batch (default 200)")
    parser.add_argument("--jobs", type=int, default=2, help="batch workers (default 2)")
    parser.add_argument("--slow", type=int, default=12, help="submissions for the slow baselines (default 12)")
    parser.add_argument("--repeat", type=int, default=3, help="single-notebook timings to take the median of")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="torchgrade-bench-engines-"))
    rows: list[tuple[str, str]] = []
    try:
        made = [path for _, path in generate(work / "submissions", args.count)]
        slow = work / "slow"
        slow.mkdir()
        # the slow baselines get the first --slow submissions that are notebooks at all (nbconvert and nbgrader
        # stop at a file that is not JSON, where torchgrade writes a "could not grade" row)
        for path in [p for p in made if readable(p)][: args.slow]:
            shutil.copyfile(path, slow / path.name)
        print(f"start: {load()}", flush=True)

        single = [timed([sys.executable, "grade.py", str(SOLUTION), "--engine", "warm"])[0] for _ in range(args.repeat)]
        single_nbconvert = [nbconvert_each([SOLUTION], work / "single") for _ in range(args.repeat)]
        warm_single, nbconvert_single = statistics.median(single), statistics.median(single_nbconvert)
        print(f"single notebook: warm {warm_single:.2f} s, nbconvert {nbconvert_single:.2f} s", flush=True)

        warm_seconds, warm_peak = grade_batch(work / "submissions", work / "warm-out", "warm", args.jobs)
        warm_each = warm_seconds / len(made)
        print(f"warm batch: {warm_seconds:.1f} s for {len(made)} ({warm_each:.3f} s each)", flush=True)
        kernel_seconds, kernel_peak = grade_batch(slow, work / "kernel-out", "kernel", args.jobs)
        kernel_each = kernel_seconds / args.slow
        print(f"kernel batch: {kernel_seconds:.1f} s for {args.slow} ({kernel_each:.3f} s each)", flush=True)
        nbconvert_each_s = nbconvert_each(sorted(slow.iterdir()), work / "nbconvert-out") / args.slow
        print(f"nbconvert: {nbconvert_each_s:.3f} s each", flush=True)
        course = work / "course"
        nbgrader_course(course, sorted(slow.iterdir()))
        nbgrader_each = nbgrader_autograde(course) / args.slow
        print(f"nbgrader autograde: {nbgrader_each:.3f} s each", flush=True)
        print(f"end: {load()}")

        rows = [
            (f"`grade.py DIR --engine warm --jobs {args.jobs}` ({len(made)} submissions, 2 runs each, graded)",
             f"{warm_each:.3f} s | {nbgrader_each / warm_each:.1f}× | {nbconvert_each_s / warm_each:.1f}× | "
             f"{warm_peak / args.jobs / 2**20:.0f} MiB"),
            (f"`grade.py DIR --engine kernel --jobs {args.jobs}` ({args.slow} submissions)",
             f"{kernel_each:.3f} s | {nbgrader_each / kernel_each:.1f}× | {nbconvert_each_s / kernel_each:.1f}× | "
             f"{kernel_peak / args.jobs / 2**20:.0f} MiB"),
            (f"`jupyter nbconvert --execute`, one after another ({args.slow} notebooks, 1 run each, no grading)",
             f"{nbconvert_each_s:.3f} s | {nbgrader_each / nbconvert_each_s:.1f}× | 1.0× | "),
            (f"`nbgrader autograde` ({args.slow} submissions, 1 run each)",
             f"{nbgrader_each:.3f} s | 1.0× | {nbconvert_each_s / nbgrader_each:.1f}× | "),
        ]
        print()
        print("| engine | seconds per submission | throughput vs nbgrader | vs nbconvert | peak memory per worker (PSS) |")
        print("|---|---|---|---|---|")
        for name, figures in rows:
            print(f"| {name} | {figures} |")
        print()
        print(f"single notebook (`python grade.py {SOLUTION.relative_to(ROOT)}`, warm, both runs): "
              f"{warm_single:.2f} s = {warm_single / nbconvert_single:.2f}× `jupyter nbconvert --execute` "
              f"({nbconvert_single:.2f} s); medians of {args.repeat}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
