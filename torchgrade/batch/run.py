"""The batch's flow: from the paths given to the exports (the package's docstring has the steps)."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from ..config import AssignmentConfig, Config, assignment_for, assignment_named_by, pick_assignment
from ..errors import EXIT_GRADED, EXIT_USAGE, GradingError
from ..sanitize import one_line
from .discover import Found, discover
from .facts import GraderFacts, facts_from_fork_server, grader_facts, load_grader
from .gradebook import Gradebook, Outcome, now
from .outcomes import Item, decide, executed_outcome, provenance, refused_outcome, report_name, rescore
from .progress import Progress, clock
from .publish import export_gradebook, roster_students
from .roster import assign, load_roster
from .slots import batch_sandbox, default_jobs
from .summary import Tally, say, summarize

DEFAULT_OUTPUT = "grading-output"
EXIT_INTERRUPTED = 130


class BatchUsageError(GradingError):
    exit_status = EXIT_USAGE
    label = "cannot run the batch"


# ---------------------------------------------------------------------------- helpers

def default_output_dir(paths: list[Path]) -> Path:
    """A folder beside the submissions: next to the folder or zip given, or beside the notebooks given."""
    parents = [str(p.resolve().parent) for p in paths]
    return Path(os.path.commonpath(parents)) / DEFAULT_OUTPUT


def submissions_root(paths: list[Path]) -> Path:
    """The folder exports name files relative to: the one holding every PATH given."""
    return Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))


def exported_file(shown: str, root: Path) -> str:
    """A submission's path relative to the submissions' folder (zip members stay archive.zip:member)."""
    if ":" in shown and not Path(shown).is_absolute():
        return shown
    path = Path(shown).absolute()
    try:  # resolve the folder, never the file: a linked notebook must not show where its link points
        return Path(os.path.relpath(path.parent.resolve() / path.name, root)).as_posix()
    except ValueError:
        return Path(shown).name


def workers_said(args, count: int, why: str = "") -> str:
    """Where the notebooks run, for the plan and the summary: local workers, or the Dask cluster's."""
    scheduler = getattr(args, "scheduler", None)
    if scheduler:
        return f"on the Dask cluster at {one_line(scheduler)}"
    return f"{count} worker(s)" + (f" ({why})" if why else "")


def worker_budget(config: AssignmentConfig) -> float:
    """The wall-clock backstop of one worker: a whole run, kernel restarts, and slack."""
    limits = config.limits
    return float(limits.notebook_timeout + 4 * limits.startup_timeout + 120)


class OutputLock:
    """One batch at a time per output folder."""

    def __init__(self, folder: Path):
        self.path = folder / ".lock"
        self.handle = None

    def __enter__(self) -> "OutputLock":
        import fcntl

        self.handle = open(self.path, "w")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.close()
            raise BatchUsageError(f"another batch is writing to {self.path.parent}; wait for it or choose "
                                  "another --output-dir") from None
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()


def describe_isolation(entry: AssignmentConfig) -> str | None:
    """How kernels will be isolated (and the sandbox's loud warning, once, here rather than in each worker)."""
    mode = getattr(entry.limits, "sandbox", None)
    if mode is None:
        return None
    try:
        from ..sandbox import isolation
    except ImportError:
        return None
    return isolation(mode).describe()  # raises GradingError when the sandbox is required but missing


# ------------------------------------------------------------------------------ the batch

def run_batches(args: argparse.Namespace, config: Config) -> int:
    """A batch of one assignment, or (several configured, no --assignment) one batch per assignment found.

    With several assignments each submission is graded as the assignment its notebook names
    (`metadata.torchgrade.assignment`, else its file name); each assignment gets its own output
    folder (OUTPUT/<assignment>/: gradebook, grades.csv, feedback/, report.html). A notebook that
    names no configured assignment is listed as "could not grade" with the first assignment.
    """
    from ..cli import with_sandbox

    if args.assignment or len(config.assignments) == 1:
        name, entry = pick_assignment(config, args.assignment)
        return run_batch(args, name, with_sandbox(entry, args.sandbox))
    base = (args.output_dir or default_output_dir(list(args.paths))).resolve()
    first = next(iter(config.assignments))

    def chooser(wanted: str):
        def choose(found: Found) -> tuple[bool, str | None]:
            if found.path is None or found.problem:  # already a row that says why (an empty placeholder, a link):
                named = assignment_named_by(config, found.relative or found.shown)  # its name may still tell
                return wanted == (named or first), None
            try:
                chosen, _ = assignment_for(config, found.path)
            except GradingError as problem:
                return wanted == first, problem.reason
            return chosen == wanted, None
        return choose

    present = _assignments_present(args, config, base, chooser)
    status = EXIT_GRADED
    for name, entry in config.assignments.items():
        if name not in present:
            continue
        say(f"=== {name}")
        own = argparse.Namespace(**{**vars(args), "output_dir": base / name})
        status = max(status, run_batch(own, name, with_sandbox(entry, args.sandbox), chooser(name), skip=(base,)))
    if not present:
        raise BatchUsageError("no notebooks found in the given paths")
    return status


def _assignments_present(args, config: Config, base: Path, chooser) -> set[str]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="torchgrade-scan-") as scratch:
        first = next(iter(config.assignments.values()))
        found = discover(list(args.paths), Path(scratch), first.exercise.name, skip=(base,))
        return {name for name in config.assignments if any(chooser(name)(item)[0] for item in found)}


def run_batch(args: argparse.Namespace, name: str, entry: AssignmentConfig, chooser=None,
              skip: tuple[Path, ...] = ()) -> int:
    started = time.monotonic()
    entry = batch_sandbox(entry)
    paths: list[Path] = list(args.paths)
    if args.jobs is not None and args.jobs < 1:
        raise BatchUsageError("--jobs must be 1 or more")
    if getattr(args, "format", "text") != "text":
        print(f"note: --format {args.format} applies to one notebook; a batch writes gradebook.sqlite, grades.csv, "
              "feedback/ and report.html", file=sys.stderr)
    jobs, jobs_why = (args.jobs, "--jobs") if args.jobs else default_jobs(entry.limits.engine)
    output = (args.output_dir or default_output_dir(paths)).resolve()
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as problem:
        raise BatchUsageError(f"{output}: cannot create the output folder ({problem.strerror})") from None
    where = "" if args.output_dir else " (the default, beside the submissions; choose another with --output-dir)"
    say(f"Output folder: {output}{where}")
    with OutputLock(output):
        work = output / ".work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            return _run(args, name, entry, paths, output, work, jobs, jobs_why, started, chooser, skip)
        finally:
            if not getattr(args, "debug", False):
                shutil.rmtree(work, ignore_errors=True)


def _run(args, name: str, entry: AssignmentConfig, paths: list[Path], output: Path, work: Path, jobs: int,
         jobs_why: str, started: float, chooser=None, skip: tuple[Path, ...] = ()) -> int:
    found = discover(paths, work / "unpacked", entry.exercise.name, skip=(output, *skip))
    if chooser is not None:  # a batch of several assignments: only this one's submissions
        kept = []
        for item in found:
            mine, problem = chooser(item)
            if mine:
                kept.append(replace(item, path=None, problem=problem) if problem else item)
        found = kept
    roster = load_roster(args.roster) if args.roster else None
    matched = assign(found, roster)
    for warning in matched.warnings:
        print(f"warning: {one_line(warning)}", file=sys.stderr)

    # the grader's facts from the fork server (a local batch): this process then never imports torch
    facts = grader_facts(name, entry) if getattr(args, "scheduler", None) else facts_from_fork_server(name, entry)
    book = Gradebook(output / "gradebook.sqlite")
    if roster is not None:
        book.replace_roster(roster_students(roster.entries))
    root = submissions_root(paths)
    matched.root = root
    try:
        return _grade(args, name, entry, output, work, jobs, jobs_why, started, matched, facts, book)
    finally:
        book.close()


def _grade(args, name: str, entry: AssignmentConfig, output: Path, work: Path, jobs: int, jobs_why: str,
           started: float, matched, facts: GraderFacts, book: Gradebook) -> int:
    grader_version, scoring_version = facts.execution, facts.scoring
    items = [Item(number, student, item, file=exported_file(item.shown, matched.root), lms=matched.lms_names.get(student))
             for number, (student, item) in enumerate(matched.submissions)]
    for item in items:
        decide(item, book, name, grader_version, scoring_version, args.force)
    to_execute = [i for i in items if i.action == "execute"]
    plan = {a: sum(1 for i in items if i.action == a) for a in ("execute", "rescore", "unchanged", "refused")}
    # Roster students not in these paths, and not in the gradebook either (a batch of one into a class folder)
    without = [m for m in matched.missing if book.row(name, m.identity) is None]
    say(f"Assignment: {name} ({entry.title}); {len(items)} submission{'s' if len(items) != 1 else ''}"
        + (f" and {len(without)} roster student(s) without one" if without else ""))
    say(f"To do: execute {plan['execute']}, re-check stored snapshots of {plan['rescore']}, "
        f"unchanged {plan['unchanged']}" + (f", unreadable {plan['refused']}" if plan["refused"] else "")
        + (f"; {workers_said(args, min(jobs, max(1, plan['execute'])), jobs_why)}" if plan["execute"] else ""))

    kernels = None
    if plan["execute"]:
        kernels = describe_isolation(entry)
        if kernels:
            say(f"Kernels: {kernels}")
    isolation = f"sandbox {entry.limits.sandbox}" + (f": {kernels}" if kernels else "")

    # Re-checking stored snapshots needs the grader itself (and torch): loaded before the batch's row is opened, so
    # that a grader that fails to load stops the batch here, as the fingerprints' would.
    grader = load_grader(name, entry) if plan["rescore"] else None
    command = " ".join(shlex.quote(a) for a in sys.argv) or "grade.py"
    batch_id = book.start_batch(name, command, jobs, len(items), isolation=isolation)
    tally = Tally()
    progress = Progress(len(items), len(to_execute), min(jobs, max(1, len(to_execute))))
    failures: list[tuple[str, str, str]] = []
    rescore_seconds = 0.0

    def record(item: Item, outcome: Outcome, executed_seconds: float | None = None) -> None:
        book.save(name, outcome, batch_id)
        failed = outcome.status == "failed"
        if failed:
            tally.failed += 1
            failures.append((item.student, item.found.shown, outcome.reason or ""))
        score = f"could not grade: {(outcome.reason or '')[:120]}" if failed \
            else f"{outcome.report.score:g}/{outcome.report.max_score:g}"
        how = {"execution": f" ({outcome.wall_seconds or 0:.1f} s)", "rescore": " (re-checked)"}
        progress.advance(f"{item.student}: {score}{how.get(outcome.graded_by, '')}", failed=failed,
                         executed_seconds=executed_seconds, key=item.number)

    interrupted = False
    try:
        # Unchanged and unreadable submissions first (instant), then executions and re-scores interleaved.
        for item in items:
            if item.action == "unchanged":
                tally.unchanged += 1
                row = item.source
                known = provenance(item)
                if (row.file, row.code_hash, row.submitted_at) != (item.file, known["code_hash"], known["submitted_at"]):
                    book.db.execute("UPDATE submissions SET file=?, code_hash=?, submitted_at=?, submitted_via=?, "
                                    "late_mark=? WHERE id=?", (item.file, known["code_hash"], known["submitted_at"],
                                                               known["submitted_via"], int(known["late_mark"]), row.id))
                if row.status == "failed":
                    tally.failed += 1
                    failures.append((item.student, item.found.shown, row.reason or ""))
                progress.advance(f"{item.student}: unchanged since the last run", failed=row.status == "failed")
            elif item.action == "refused":
                record(item, refused_outcome(item, grader_version, scoring_version))
        rescores = [i for i in items if i.action == "rescore"]
        queue = list(to_execute)
        from .worker import Job, Pool

        scheduler = getattr(args, "scheduler", None)
        if scheduler:
            from .dask_runner import DaskPool

            workers = DaskPool(entry, name, scheduler, worker_budget(entry))
        else:
            workers = Pool(entry, name, min(jobs, max(1, len(queue))), worker_budget(entry))
        with workers as pool:
            if scheduler:  # the batch's row records how many notebooks ran at once: the cluster's threads
                book.record_jobs(batch_id, pool.capacity)
            while queue or pool.running or rescores:
                while queue and pool.free:
                    item = queue.pop(0)
                    pool.start(Job(item.number, item.student, item.found.path, report_name(item.found),
                                   work / f"result-{item.number}.json", work / f"worker-{item.number}.log"))
                    item.started_at = now()
                    progress.began(item.number)
                if rescores:
                    item = rescores.pop(0)
                    began = time.monotonic()
                    outcome = rescore(item, book, grader, grader_version, scoring_version)
                    rescore_seconds += time.monotonic() - began
                    if outcome is None:  # stored evidence unusable: run it after all
                        item.action = "execute"
                        queue.append(item)
                        progress.to_execute += 1
                    else:
                        tally.rescored += 1
                        tally.rescored_twins += item.why == "twin"
                        record(item, outcome)
                    ended = pool.wait(0)
                else:
                    ended = pool.wait(0.5)
                    progress.draw()
                for result in ended:
                    item = items[result.job.number]
                    tally.executed += 1
                    outcome = executed_outcome(item, result, grader_version, scoring_version)
                    if getattr(args, "debug", False) and result.status == "failed":
                        from .worker import log_tail

                        print(f"--- worker log of {item.student}:\n{log_tail(result.job)}", file=sys.stderr)
                    for note in result.notes:
                        print(f"warning: {one_line(item.student)}: {one_line(note)}", file=sys.stderr)
                    record(item, outcome, executed_seconds=result.wall_seconds)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
    wall = time.monotonic() - started
    book.finish_batch(batch_id, tally.executed, tally.rescored, tally.unchanged, tally.failed, wall)
    if interrupted:
        done = progress.done
        say(f"Interrupted after {done} of {len(items)} submissions; all of them are saved in "
            f"{output / 'gradebook.sqlite'}. Run the same command again to continue.")
        return EXIT_INTERRUPTED

    notes = [f"Last batch: {tally.executed} notebook(s) run, {tally.rescored} re-checked from stored snapshots, "
             f"{tally.unchanged} unchanged; {clock(wall)} wall time.",
             f"Kernels: {isolation}" + (" - WITHOUT THE SANDBOX (--sandbox off): student code could reach this "
                                        "machine; see docs/threat_model.md" if entry.limits.sandbox == "off" else "."),
             f"Grader version {grader_version}, scoring version {scoring_version}."]
    rows, said = export_gradebook(book, name, entry, facts, output, notes)
    missing = [r for r in rows if r.status == "missing"]
    summarize(name, entry, rows, tally, failures, missing, wall, rescore_seconds, output,
              workers_said(args, min(jobs, max(1, len(to_execute)))), said)
    return EXIT_GRADED
