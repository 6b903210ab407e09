"""The class report: ``DIR/report.html``, one static file that opens offline.

It shows the score distribution, the pass rate of each task and each check, the most
frequent failure messages (with counts and the students they hit), the submissions
that could not be graded, and a sortable table of students linking to their feedback.
Plots are drawn with matplotlib (no pyplot, no display needed) and embedded as base64
PNG; the page loads nothing from anywhere (its Content-Security-Policy says so).
Everything that came from a submission is HTML-escaped.

The students table sorts by clicking a column header, or from the address:
``report.html#sort=total:desc`` (column key and asc/desc).
"""

from __future__ import annotations

import base64
import io
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone

from matplotlib.figure import Figure

from ..sanitize import html_text
from .exports import StudentRow, TaskInfo, number

NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
TOP_MESSAGES = 15
STUDENTS_SHOWN = 12


@dataclass
class CheckInfo:
    id: str
    task: int
    title: str
    max_score: float


@dataclass
class FailureGroup:
    check: CheckInfo
    message: str  # the message as the first student got it
    students: list[str] = field(default_factory=list)
    variants: set[str] = field(default_factory=set)


def esc(value) -> str:
    return html_text(value)  # escaped, and control characters made visible (torchgrade.sanitize)


def png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def score_histogram(scores: list[float], max_score: float) -> str:
    figure = Figure(figsize=(7.5, 3.2))
    axes = figure.subplots()
    top = max(max_score, max(scores, default=0))
    step = 1.0 if top <= 40 else max(1.0, round(top / 40))
    edges = [i * step - step / 2 for i in range(int(top / step) + 2)]
    axes.hist(scores, bins=edges, color="#2f6fb0", edgecolor="white")
    axes.set_xlabel("score")
    axes.set_ylabel("students")
    axes.set_xlim(-step, top + step)
    axes.yaxis.get_major_locator().set_params(integer=True)
    if scores:
        mean = statistics.fmean(scores)
        axes.axvline(mean, color="#a40e26", linestyle="--", linewidth=1.2, label=f"mean {mean:.1f}")
        axes.axvline(statistics.median(scores), color="#116329", linestyle=":", linewidth=1.4,
                     label=f"median {statistics.median(scores):g}")
        axes.legend(loc="upper left", frameon=False)
    axes.set_title(f"Score distribution ({len(scores)} graded, out of {max_score:g})")
    axes.spines[["top", "right"]].set_visible(False)
    return png(figure)


def rate_bars(labels: list[str], rates: list[float], title: str, height_per_bar: float = 0.32) -> str:
    figure = Figure(figsize=(7.5, max(1.6, 0.6 + height_per_bar * len(labels))))
    axes = figure.subplots()
    positions = list(range(len(labels)))[::-1]
    colors = ["#116329" if r >= 0.8 else "#bf8700" if r >= 0.5 else "#a40e26" for r in rates]
    axes.barh(positions, [100 * r for r in rates], color=colors)
    axes.set_yticks(positions, labels)
    axes.set_xlim(0, 100)
    axes.set_xlabel("% of graded students")
    for y, rate in zip(positions, rates):
        inside = rate > 0.88  # no room to the right: write it inside the bar, in white
        axes.text(100 * rate - 1 if inside else 100 * rate + 1, y, f"{100 * rate:.0f}%", va="center", fontsize=8,
                  ha="right" if inside else "left", color="white" if inside else "#1b1f24")
    axes.set_title(title)
    axes.spines[["top", "right"]].set_visible(False)
    return png(figure)


def normalise(message: str) -> str:
    return NUMBER.sub("#", message)


def failure_groups(rows: list[StudentRow], checks: dict[str, CheckInfo]) -> list[FailureGroup]:
    groups: dict[tuple[str, str], FailureGroup] = {}
    for row in rows:
        if not row.report:
            continue
        for check in row.report.checks:
            if check.passed:
                continue
            key = (check.id, normalise(check.message))
            info = checks.get(check.id) or CheckInfo(check.id, check.task, check.title, check.max_score)
            group = groups.setdefault(key, FailureGroup(info, check.message))
            group.students.append(row.student)
            group.variants.add(check.message)
    return sorted(groups.values(), key=lambda g: (-len(g.students), g.check.task, g.check.id))


STYLE = """
:root { --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --bg2: #f6f8fa; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); margin: 0 auto;
       max-width: 78rem; padding: 1.5rem; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid var(--line); padding-bottom: .3rem; }
.muted { color: var(--muted); }
.cards { display: flex; flex-wrap: wrap; gap: .8rem; margin: 1rem 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: .6rem 1rem; min-width: 8rem; background: var(--bg2); }
.card b { display: block; font-size: 1.5rem; }
img.plot { max-width: 100%; height: auto; display: block; margin: .5rem 0; }
table { border-collapse: collapse; width: 100%; font-size: .92rem; }
th, td { border-bottom: 1px solid var(--line); padding: .35rem .5rem; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
#students th { cursor: pointer; user-select: none; white-space: nowrap; background: var(--bg2); position: sticky; top: 0; }
#students th[aria-sort="ascending"]::after { content: " \\25B2"; }
#students th[aria-sort="descending"]::after { content: " \\25BC"; }
.bar { background: #e6ebf1; border-radius: 3px; height: .8rem; width: 8rem; display: inline-block; vertical-align: middle; }
.bar span { display: block; height: 100%; border-radius: 3px; }
.status-graded { color: #116329; } .status-failed { color: #a40e26; font-weight: 600; } .status-missing { color: var(--muted); }
pre.message { white-space: pre-wrap; margin: 0; font-size: .85rem; background: var(--bg2); padding: .4rem; border-radius: 4px; }
details summary { cursor: pointer; color: var(--muted); }
"""

SCRIPT = """
(function () {
  var table = document.getElementById('students');
  if (!table) { return; }
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  function value(row, index, numeric) {
    var cell = row.cells[index];
    var raw = cell.getAttribute('data-value');
    if (raw === null) { raw = cell.textContent; }
    if (numeric) { var n = parseFloat(raw); return isNaN(n) ? -Infinity : n; }
    return raw.toLowerCase();
  }
  function sortBy(index, direction) {
    var header = headers[index];
    var numeric = header.getAttribute('data-type') === 'number';
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a, index, numeric), y = value(b, index, numeric);
      var order = x < y ? -1 : x > y ? 1 : 0;
      if (order === 0) { order = value(a, 0, false) < value(b, 0, false) ? -1 : 1; }
      return direction === 'descending' ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    headers.forEach(function (h) { h.removeAttribute('aria-sort'); });
    header.setAttribute('aria-sort', direction);
    table.setAttribute('data-sorted-by', header.getAttribute('data-key') + ':' + direction);
  }
  headers.forEach(function (header, index) {
    header.addEventListener('click', function () {
      var next = header.getAttribute('aria-sort') === 'ascending' ? 'descending' : 'ascending';
      sortBy(index, next);
    });
  });
  function fromAddress() {
    var match = /sort=([^:&]+)(?::(asc|desc))?/.exec(window.location.hash || '');
    if (!match) { return; }
    headers.forEach(function (header, index) {
      if (header.getAttribute('data-key') === match[1]) {
        sortBy(index, match[2] === 'desc' ? 'descending' : 'ascending');
      }
    });
  }
  window.addEventListener('hashchange', fromAddress);
  fromAddress();
})();
"""


def _bar(rate: float) -> str:
    color = "#116329" if rate >= 0.8 else "#bf8700" if rate >= 0.5 else "#a40e26"
    return f'<span class="bar"><span style="width:{100 * rate:.0f}%;background:{color}"></span></span>'


def _students_links(students: list[str], links: dict[str, str | None]) -> str:
    shown = []
    for student in students[:STUDENTS_SHOWN]:
        link = links.get(student)
        shown.append(f'<a href="feedback/{esc(link)}.html">{esc(student)}</a>' if link else esc(student))
    more = len(students) - STUDENTS_SHOWN
    text = ", ".join(shown)
    if more > 0:
        rest = ", ".join(esc(s) for s in students[STUDENTS_SHOWN:])
        text += f' <details><summary>and {more} more</summary>{rest}</details>'
    return text


def render_report(*, title: str, assignment: str, rows: list[StudentRow], tasks: list[TaskInfo],
                  checks: list[CheckInfo], max_total: float, summary_lines: list[str]) -> str:
    tasks = sorted(tasks, key=lambda t: t.number)
    graded = [r for r in rows if r.status == "graded" and r.report]
    failed = [r for r in rows if r.status == "could not grade"]
    missing = [r for r in rows if r.status == "missing"]
    scores = [r.score for r in graded]
    links = {r.student: r.feedback for r in rows}
    check_index = {c.id: c for c in checks}
    parts: list[str] = []
    add = parts.append

    add(f"<h1>{esc(title)}</h1>")
    add(f'<p class="muted">Class report for assignment <code>{esc(assignment)}</code>, generated '
        f'{esc(datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))}.</p>')
    mean = statistics.fmean(scores) if scores else None
    median = statistics.median(scores) if scores else None
    cards = [("submissions", len(rows) - len(missing)), ("graded", len(graded)), ("could not grade", len(failed))]
    if missing:
        cards.append(("missing", len(missing)))
    cards += [("mean", "–" if mean is None else f"{mean:.2f} / {max_total:g}"),
              ("median", "–" if median is None else f"{median:g} / {max_total:g}")]
    add('<div class="cards" id="summary">' + "".join(
        f'<div class="card" data-key="{esc(k.replace(" ", "-"))}"><b>{esc(v)}</b>{esc(k)}</div>' for k, v in cards)
        + "</div>")
    if summary_lines:
        add('<p class="muted">' + "<br>".join(esc(line) for line in summary_lines) + "</p>")

    add('<h2 id="distribution">Score distribution</h2>')
    if scores:
        add(f'<img class="plot" id="score-histogram" alt="Histogram of the scores of {len(scores)} graded students" '
            f'src="data:image/png;base64,{score_histogram(scores, max_total)}">')
    else:
        add("<p>No submission could be graded.</p>")

    add('<h2 id="tasks">Pass rate per task</h2>')
    add('<p class="muted">Full marks: students with every point of the task. Mean: average share of the task\'s points.</p>')
    task_rates = []
    rows_html = []
    for task in tasks:
        full = sum(1 for r in graded if (r.task_score(task.number) or 0) >= task.max_score - 1e-9)
        mean_share = statistics.fmean([(r.task_score(task.number) or 0) / task.max_score for r in graded]) \
            if graded and task.max_score else 0.0
        rate = full / len(graded) if graded else 0.0
        task_rates.append(rate)
        rows_html.append(f'<tr><td>Task {task.number}</td><td>{esc(task.title)}</td><td class="num">{task.max_score:g}</td>'
                         f'<td class="num" data-rate="{rate:.4f}">{_bar(rate)} {100 * rate:.0f}%</td>'
                         f'<td class="num">{100 * mean_share:.0f}%</td></tr>')
    if graded and tasks:
        add(f'<img class="plot" id="task-plot" alt="Share of students with full marks per task" src="data:image/png;base64,'
            f'{rate_bars([f"Task {t.number}" for t in tasks], task_rates, "Full marks per task")}">')
    add('<table id="task-rates"><thead><tr><th>Task</th><th>Title</th><th class="num">Points</th>'
        '<th class="num">Full marks</th><th class="num">Mean</th></tr></thead><tbody>' + "".join(rows_html)
        + "</tbody></table>")

    add('<h2 id="checks">Pass rate per check</h2>')
    check_rates, check_rows = [], []
    for check in checks:
        results = [c for r in graded for c in r.report.checks if c.id == check.id]
        rate = sum(c.passed for c in results) / len(results) if results else 0.0
        check_rates.append(rate)
        hidden = " <span class=\"muted\">(hidden)</span>" if any(c.hidden for c in results) else ""
        check_rows.append(f'<tr><td>{check.task}</td><td><code>{esc(check.id)}</code></td><td>{esc(check.title)}{hidden}</td>'
                          f'<td class="num">{check.max_score:g}</td><td class="num" data-rate="{rate:.4f}">{_bar(rate)} '
                          f'{100 * rate:.0f}%</td><td class="num">{sum(not c.passed for c in results)}</td></tr>')
    if graded and checks:
        add(f'<img class="plot" id="check-plot" alt="Pass rate per check" src="data:image/png;base64,'
            f'{rate_bars([c.id for c in checks], check_rates, "Pass rate per check")}">')
    add('<table id="check-rates"><thead><tr><th>Task</th><th>Check</th><th>What it verifies</th><th class="num">Points</th>'
        '<th class="num">Passed</th><th class="num">Failed</th></tr></thead><tbody>' + "".join(check_rows)
        + "</tbody></table>")

    add('<h2 id="failures">Most frequent failure messages</h2>')
    groups = failure_groups(graded, check_index)
    if groups:
        add(f'<p class="muted">Failed checks grouped by message (numbers in the message may vary); the '
            f'{min(TOP_MESSAGES, len(groups))} most frequent of {len(groups)}.</p>')
        items = []
        for group in groups[:TOP_MESSAGES]:
            varies = ' <span class="muted">(numbers vary)</span>' if len(group.variants) > 1 else ""
            items.append(f'<tr class="failure"><td class="num">{len(group.students)}</td><td>Task {group.check.task}: '
                         f'<code>{esc(group.check.id)}</code><br>\n{esc(group.check.title)}</td>'
                         f'<td><pre class="message">{esc(group.message)}</pre>{varies}</td>'
                         f'<td>{_students_links(group.students, links)}</td></tr>')
        add('<table id="failure-messages"><thead><tr><th class="num">Students</th><th>Check</th><th>Message</th>'
            '<th>Who</th></tr></thead><tbody>' + "".join(items) + "</tbody></table>")
    else:
        add("<p>No check failed.</p>")

    if failed:
        add('<h2 id="not-graded">Could not grade</h2>')
        reasons: dict[str, list[str]] = defaultdict(list)
        for row in failed:
            reasons[row.reason].append(row.student)
        add('<table id="failed-submissions"><thead><tr><th class="num">Students</th><th>Reason</th><th>Who</th></tr>'
            '</thead><tbody>' + "".join(
                f'<tr><td class="num">{len(who)}</td><td>{esc(reason)}</td><td>{_students_links(who, links)}</td></tr>'
                for reason, who in sorted(reasons.items(), key=lambda item: -len(item[1]))) + "</tbody></table>")

    flagged = [r for r in graded if r.report.flags]
    if flagged:
        add('<h2 id="flagged">Flagged for review</h2>')
        add('<p class="muted">Possible tampering with the grader, found in the source or seen while it ran. A flag '
            "never changes a score: it says where to look.</p>")
        add('<table id="flagged-submissions"><thead><tr><th>Student</th><th>What was seen</th></tr></thead><tbody>'
            + "".join(f'<tr data-student="{esc(r.student)}"><td>{_students_links([r.student], links)}</td><td>'
                      + "<br>".join(f"<b>{esc(f.kind)}</b>: {esc(f.detail)}" for f in r.report.flags) + "</td></tr>"
                      for r in flagged) + "</tbody></table>")

    add('<h2 id="students-heading">Students</h2>')
    add('<p class="muted">Click a column to sort; each name links to the student\'s feedback.</p>')
    head = ['<th data-key="student" data-type="text">Student</th>', '<th data-key="file" data-type="text">File</th>']
    head += [f'<th class="num" data-key="task_{t.number}" data-type="number" title="{esc(t.title)}">Task {t.number}</th>'
             for t in tasks]
    head += ['<th class="num" data-key="total" data-type="number">Total</th>',
             '<th class="num" data-key="percent" data-type="number">%</th>',
             '<th data-key="status" data-type="text">Status</th>']
    body = []
    for row in rows:
        link = (f'<a href="feedback/{esc(row.feedback)}.html">{esc(row.student)}</a>' if row.feedback
                else esc(row.student))
        cells = [f'<td data-value="{esc(row.student)}">{link}</td>', f"<td>{esc(row.file)}</td>"]
        for task in tasks:
            value = row.task_score(task.number)
            cells.append(f'<td class="num" data-value="{"" if value is None else value}">{number(value)}</td>')
        total = row.score if row.status == "graded" else None
        maximum = row.max_score or max_total
        percent = 100 * total / maximum if total is not None and maximum else None
        cells.append(f'<td class="num" data-value="{"" if total is None else total}">{number(total)}</td>')
        cells.append(f'<td class="num" data-value="{"" if percent is None else f"{percent:.2f}"}">'
                     f'{"" if percent is None else f"{percent:.0f}"}</td>')
        css = {"graded": "status-graded", "could not grade": "status-failed"}.get(row.status, "status-missing")
        status = row.status if row.status != "could not grade" else f"could not grade: {row.reason}"
        if row.flag_kinds:
            status += f" (flagged: {row.flag_kinds})"
        cells.append(f'<td class="{css}" data-value="{esc(row.status)}">{esc(status)}</td>')
        body.append(f'<tr data-student="{esc(row.student)}">' + "".join(cells) + "</tr>")
    add('<table id="students" data-sorted-by="student:ascending"><thead><tr>' + "".join(head)
        + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>")

    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{esc(title)}: class report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(parts) + f"\n<script>{SCRIPT}</script>\n</body>\n</html>\n")

