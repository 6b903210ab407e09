"""check()'s report in a notebook cell: HTML (jinja2, autoescaped) and the terminal text.

The text is the same report `python grade.py` prints; the HTML shows the same
checks and messages. Every string that may carry student content (messages quote
errors, notebook names) is escaped and stripped of control characters.
"""

from __future__ import annotations

import jinja2

from .hidden import HiddenSummary
from .render.terminal import render_terminal
from .results import GradeReport
from .sanitize import visible

def clean(text: object) -> str:
    """Control and bidi characters shown as escapes (torchgrade.sanitize); jinja2 escapes the markup."""
    return visible(text)


_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_ENV.filters["clean"] = clean
_ENV.filters["points"] = lambda value: f"{value:g}"

TEMPLATE = _ENV.from_string("""\
<div class="torchgrade-check" style="font-family: sans-serif; line-height: 1.4">
{% for notice in notices %}
<p style="margin: 0.2em 0; color: #8a5300">{{ notice | clean }}</p>
{% endfor %}
{% if report %}
<p style="margin: 0.3em 0"><b>{{ report.title | clean }}</b>: {{ report.submission | clean }}
 &mdash; <b>{{ report.score | points }} / {{ report.max_score | points }}</b></p>
{% if hidden %}<p style="margin: 0.2em 0; color: #555">{{ hidden.sentence() | clean }}</p>{% endif %}
<table style="border-collapse: collapse; text-align: left">
{% for task in report.tasks %}
<tr style="border-top: 1px solid #ccc"><th colspan="2" style="padding: 0.3em 0">Task {{ task.number }}: {{ task.title | clean }}</th>
<th style="text-align: right">{{ task.score | points }}/{{ task.max_score | points }}</th></tr>
{% for c in task.checks %}
<tr><td style="padding: 0.1em 0.6em; color: {{ '#1a7f37' if c.passed else '#cf222e' }}"><b>{{ 'PASS' if c.passed else 'FAIL' }}</b></td>
<td>{{ c.title | clean }}
{% if not c.passed %}
<div style="margin: 0.2em 0 0.4em 0; font-size: 0.92em">
<div><b>Expected:</b> {{ c.expected | clean }}</div>
<div><b>Found:</b> {{ c.found | clean }}</div>
{% if c.hint %}<div><b>Hint:</b> {{ c.hint | clean }}</div>{% endif %}
</div>
{% elif c.note %}<div style="font-size: 0.92em; color: #555">{{ c.note | clean }}</div>
{% endif %}
</td><td style="text-align: right">{{ c.score | points }}/{{ c.max_score | points }}</td></tr>
{% endfor %}
{% endfor %}
</table>
{% if report.notes %}<p style="margin: 0.4em 0 0 0"><b>Notes</b></p><ul>
{% for note in report.notes %}<li>{{ note | clean }}</li>{% endfor %}
</ul>{% endif %}
<p style="color: #555; font-size: 0.9em">Checked with {{ report.runs | join('; and ') | clean }}.
 Took {{ '%.1f' | format(report.execution_time) }} s.</p>
{% endif %}
</div>
""")


def render_html(report: GradeReport | None, hidden: HiddenSummary | None, notices: list[str]) -> str:
    return TEMPLATE.render(report=report, hidden=hidden or HiddenSummary(), notices=notices)


def render_text(report: GradeReport, hidden: HiddenSummary | None, notices: list[str]) -> str:
    lines = [clean(n) for n in notices]
    return "\n".join(lines + [clean(render_terminal(report, hidden=hidden or HiddenSummary()))])
