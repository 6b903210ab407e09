"""The class report's charts as inline SVG: their geometry here, their markup in render/templates/chart.svg.j2.

They were matplotlib figures embedded as PNG. Importing matplotlib and drawing the three figures took 1.7 s of the
2.7 s a batch of 200 spent on its exports (2026-12-01), after the last notebook was graded and with both cores idle.
A chart of bars, ticks and labels is a few kilobytes of markup that jinja2 escapes like the rest of the page; it
stays sharp at any zoom, its numbers can be searched, and each bar says its value on hover.
"""

from __future__ import annotations

import math
import statistics
import unicodedata
from dataclasses import dataclass, field

INK, MUTED, AXIS, GRID = "#1b1f24", "#57606a", "#8c959f", "#eaeef2"
BLUE, RED, GREEN, AMBER = "#2f6fb0", "#a40e26", "#116329", "#bf8700"
WIDTH = 760
CHAR_WIDTH = 6.6  # an average Latin character of the 12 px sans-serif labels, to leave room for the longest one
LABEL_ROOM = 300  # the most a bar chart's labels take of its width; a longer label is shortened to fit


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    fill: str
    tip: str  # shown on hover (an SVG <title>)


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    anchor: str = "middle"  # SVG text-anchor: start, middle, end
    fill: str = INK
    size: int = 12
    bold: bool = False
    vertical: bool = False  # turned 90 degrees (the y axis's label)


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    stroke: str = AXIS
    dashed: bool = False
    width: float = 1.0


@dataclass
class Chart:
    label: str  # what a screen reader says: the chart's title and what it shows
    height: float
    width: float = WIDTH
    rects: list[Rect] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)


def integer_bins(scores: list[float], max_score: float) -> list[tuple[int, int]]:
    """(score rounded down to an integer, students) for 0..max: bin n holds n <= score < n + 1."""
    top = int(max(max_score, max(scores, default=0)))
    counts = [0] * (top + 1)
    for score in scores:
        counts[min(top, max(0, int(score + 1e-9)))] += 1
    return list(enumerate(counts))


def rate_color(rate: float) -> str:
    """A pass rate's colour, in the charts and in the report's tables: green from 80 %, amber from 50 %, else red."""
    return GREEN if rate >= 0.8 else AMBER if rate >= 0.5 else RED


def text_width(text: str) -> float:
    """About how wide a 12 px label is drawn: a wide character (CJK, full-width forms) takes two average widths, and a
    combining mark none, so labels in any script get their room and none runs off the chart's edge."""
    units = 0
    for char in text:
        if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
            continue
        units += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return CHAR_WIDTH * units


def fit_label(text: str, room: float = LABEL_ROOM) -> str:
    """The label, shortened with an ellipsis until it fits in ``room`` pixels (the whole of it stays in the tooltip)."""
    if text_width(text) <= room:
        return text
    while text and text_width(text + "…") > room:
        text = text[:-1]
    return text.rstrip() + "…"


def count_ticks(largest: int, most: int = 5) -> list[int]:
    """Whole-number ticks from 0 past the largest count, at most about `most` of them."""
    step = max(1, math.ceil(max(1, largest) / most))
    return list(range(0, step * math.ceil(max(1, largest) / step) + 1, step))


def score_histogram(scores: list[float], max_score: float) -> Chart:
    bins = integer_bins(scores, max_score)
    title = f"Score distribution ({len(scores)} graded, out of {max_score:g})"
    chart = Chart(f"{title}: students per score, in integer bins", height=320)
    left, right, top, bottom = 56, 16, 34, 52
    plot_width, plot_height = chart.width - left - right, chart.height - top - bottom
    slot = plot_width / len(bins)
    ticks = count_ticks(max(n for _, n in bins))

    def x_of(score: float) -> float:  # bin n is centred on n, as the mean is drawn at its value
        return left + (score + 0.5) * slot

    def y_of(count: float) -> float:
        return top + plot_height * (1 - count / ticks[-1])

    chart.texts.append(Text(chart.width / 2, 20, title, bold=True, size=14))
    for tick in ticks:
        chart.lines.append(Line(left, y_of(tick), chart.width - right, y_of(tick), stroke=GRID))
        chart.texts.append(Text(left - 6, y_of(tick) + 4, str(tick), anchor="end", fill=MUTED))
    for score, count in bins:
        if count:
            width = 0.85 * slot
            chart.rects.append(Rect(x_of(score) - width / 2, y_of(count), width, y_of(0) - y_of(count), BLUE,
                                    f"score {score}: {count} student{'s' if count != 1 else ''}"))
    for score, _ in bins[:: max(1, len(bins) // 20)]:
        chart.texts.append(Text(x_of(score), y_of(0) + 16, str(score), fill=MUTED))
    chart.lines += [Line(left, top, left, y_of(0)), Line(left, y_of(0), chart.width - right, y_of(0))]
    chart.texts.append(Text(left + plot_width / 2, chart.height - 8, "score (integer bins: n means n ≤ score < n+1)"))
    chart.texts.append(Text(14, top + plot_height / 2, "students", vertical=True))
    if scores:
        mean = statistics.fmean(scores)
        chart.lines.append(Line(x_of(mean), top, x_of(mean), y_of(0), stroke=RED, dashed=True, width=1.5))
        chart.lines.append(Line(left + 10, top + 10, left + 34, top + 10, stroke=RED, dashed=True, width=1.5))
        chart.texts.append(Text(left + 40, top + 14, f"mean {mean:.1f}", anchor="start"))
    return chart


def rate_bars(labels: list[str], rates: list[float], title: str) -> Chart:
    """One horizontal bar per label, in the order given (top to bottom), as a percentage of graded students."""
    row, top, bottom, right = 24, 34, 44, 40
    shown = [fit_label(label) for label in labels]
    left = 12 + max((text_width(label) for label in shown), default=0)
    chart = Chart(f"{title}: " + "; ".join(f"{label} {100 * rate:.0f}%" for label, rate in zip(labels, rates)),
                  height=top + row * len(labels) + bottom)
    plot_width = chart.width - left - right
    floor = top + row * len(labels)

    def x_of(percent: float) -> float:
        return left + plot_width * percent / 100

    chart.texts.append(Text(left + plot_width / 2, 20, title, bold=True, size=14))
    for percent in range(0, 101, 20):
        chart.lines.append(Line(x_of(percent), top, x_of(percent), floor, stroke=GRID))
        chart.texts.append(Text(x_of(percent), floor + 16, str(percent), fill=MUTED))
    for index, (label, text, rate) in enumerate(zip(labels, shown, rates)):
        middle = top + row * index + row / 2
        chart.rects.append(Rect(left, middle - 8, max(0.0, x_of(100 * rate) - left), 16, rate_color(rate),
                                f"{label}: {100 * rate:.0f}%"))
        chart.texts.append(Text(left - 8, middle + 4, text, anchor="end"))
        inside = rate > 0.88  # a long bar holds its own number; a short one has it after its end
        chart.texts.append(Text(x_of(100 * rate) + (-4 if inside else 4), middle + 4, f"{100 * rate:.0f}%",
                                anchor="end" if inside else "start", fill="white" if inside else INK, size=11))
    chart.lines += [Line(left, top, left, floor), Line(left, floor, chart.width - right, floor)]
    chart.texts.append(Text(left + plot_width / 2, chart.height - 8, "% of graded students"))
    return chart
