"""The batch's closing summary on the instructor's terminal."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from ..sanitize import one_line, visible
from .exports import StudentRow
from .progress import clock


def say(text: str = "") -> None:
    """The batch's stdout: student names, file names and reasons in it cannot drive the terminal."""
    print(visible(text), flush=True)


@dataclass
class Tally:
    executed: int = 0
    rescored: int = 0
    rescored_twins: int = 0  # re-checked because the same file was graded before under another name
    unchanged: int = 0
    failed: int = 0


def summarize(name, entry, rows: list[StudentRow], tally: Tally, failures, missing, wall: float,
              rescore_seconds: float, output: Path, workers: str, said=()) -> None:
    graded = [r for r in rows if r.status == "graded"]
    # Every row of the gradebook, as the counts above it: a batch of one graded into a class folder must not hide
    # the class's earlier failures (this batch's own come first, with the file as it was given).
    listed = {student for student, _, _ in failures}
    failures = list(failures) + [(r.student, r.file, r.reason) for r in rows
                                 if r.status == "could not grade" and r.student not in listed]
    scores = [r.final for r in graded]
    max_total = sum(c.points for c in entry.checks.values())
    say("")
    say(f"Summary for {name} ({entry.title})")
    say(f"  submissions:      {len(rows) - len(missing)}")
    say(f"  graded:           {len(graded)}")
    say(f"  could not grade:  {len(failures)}")
    for student, shown, reason in sorted(failures)[:30]:
        say(f"    - {one_line(student)} ({one_line(shown)}): {one_line(reason)}")
    if len(failures) > 30:
        say(f"    ... and {len(failures) - 30} more (grades.csv and report.html list them all)")
    if missing:
        say(f"  missing:          {len(missing)} on the roster without a submission: "
            + ", ".join(m.student for m in missing[:20]) + (" ..." if len(missing) > 20 else ""))
    if scores:
        say(f"  score:            mean {statistics.fmean(scores):.2f} / {max_total:g}, "
            f"median {statistics.median(scores):g}, lowest {min(scores):g}, highest {max(scores):g}")
    say(f"  notebooks run:    {tally.executed}" + (f" ({workers})" if tally.executed else ""))
    if tally.rescored:
        why = []
        if tally.rescored - tally.rescored_twins:
            why.append(f"{tally.rescored - tally.rescored_twins} because points, tolerances or messages changed")
        if tally.rescored_twins:
            why.append(f"{tally.rescored_twins} identical to a file graded before")
        say(f"  re-checked:       {tally.rescored} from stored snapshots, without running their notebooks "
            f"({'; '.join(why)}), in {rescore_seconds:.1f} s")
    if tally.unchanged:
        say(f"  unchanged:        {tally.unchanged} already graded with the same file and grader (use --force to regrade)")
    say(f"  wall time:        {clock(wall)} ({wall:.1f} s)")
    for note in said:
        say(f"  note:             {note}")
    say(f"Wrote {output / 'gradebook.sqlite'}, {output / 'grades.csv'} (with checks.csv and the LMS files), "
        f"{output / 'feedback'}/ and {output / 'report.html'}")
