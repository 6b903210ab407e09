"""The class report opens in a real browser: headless Chromium takes a screenshot and dumps the DOM.

It reads the report of the class batch graded by test_batch.py (run once per session).
CI installs the Debian packages `chromium` and `chromium-driver`; without Chromium the
test is skipped, saying so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from test_batch import EXPECTED, graded_class

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian packages "
                                                         "chromium and chromium-driver; .ci/run installs them)")
WIDTH, HEIGHT = 1280, 3400


@pytest.fixture(scope="session")
def class_batch(tmp_path_factory):
    return graded_class(tmp_path_factory)


def chromium(tmp_path: Path, url: str, *mode: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-extensions", "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND",
               f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}", "--virtual-time-budget=5000",
               *mode, url]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


class Page(HTMLParser):
    """What the dumped DOM shows: images, charts (inline SVG) with their bars, summary cards, and the rows of each
    table by id."""

    def __init__(self):
        super().__init__()
        self.images: list[dict] = []
        self.charts: list[dict] = []  # each <svg>'s attributes, and "bars": how many <rect> it holds
        self.tables: dict[str, list[list[str]]] = {}
        self.table_attrs: dict[str, dict] = {}
        self.links: list[str] = []
        self.cards: dict[str, str] = {}  # data-key -> the number it shows
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._card: str | None = None
        self._card_text: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        elif tag == "svg":
            self.charts.append({**attrs, "bars": 0})
        elif tag == "rect" and self.charts:
            self.charts[-1]["bars"] += 1
        elif tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        elif tag == "table" and attrs.get("id"):
            self._table = attrs["id"]
            self.tables[self._table] = []
            self.table_attrs[self._table] = attrs
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "div" and attrs.get("class") == "card":
            self._card = attrs.get("data-key")
        elif tag == "b" and self._card:
            self._card_text = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "b" and self._card_text is not None:
            self.cards[self._card] = "".join(self._card_text).strip()
            self._card_text = None
        elif tag == "div":
            self._card = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._card_text is not None:
            self._card_text.append(data)


def test_the_report_renders_in_chromium(class_batch, tmp_path):
    report = class_batch.output / "report.html"
    assert report.exists()
    url = report.as_uri()

    # 1. A screenshot of the whole page: the right size, and not blank (plots and tables drew).
    shot = tmp_path / "report.png"
    result = chromium(tmp_path, url, f"--screenshot={shot}")
    assert shot.exists(), result.stderr[-2000:]
    from PIL import Image, ImageStat

    image = Image.open(shot).convert("RGB")
    assert image.size == (WIDTH, HEIGHT)
    assert max(ImageStat.Stat(image.convert("L")).stddev) > 20  # a blank page has no contrast
    colors = image.getcolors(maxcolors=WIDTH * HEIGHT)
    histogram_blue = sum(n for n, (r, g, b) in colors if abs(r - 0x2F) < 12 and abs(g - 0x6F) < 12 and abs(b - 0xB0) < 12)
    assert histogram_blue > 500  # the score histogram's bars are on screen

    # 2. The DOM after the page's script ran, asked to sort the students by total, highest first.
    result = chromium(tmp_path, url + "#sort=total:desc", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    page = Page()
    page.feed(result.stdout)
    assert {c.get("id") for c in page.charts} == {"score-histogram", "task-plot", "check-plot"}
    assert all(c.get("role") == "img" and c.get("aria-labelledby") and c["bars"] for c in page.charts)
    assert not page.images  # every chart is inline markup: nothing to load
    cards = page.cards
    graded = sum(1 for status, _ in EXPECTED.values() if status != "failed")
    assert cards["submissions"] == str(len(EXPECTED))
    assert int(cards["graded"]) + int(cards["could-not-grade"]) == len(EXPECTED) and int(cards["graded"]) >= graded - 1
    assert cards["missing"] == "2" and re.fullmatch(r"\d+\.\d\d / 20", cards["mean"])

    students = page.tables["students"]
    header, body = students[0], students[1:]
    assert header[:2] == ["Student", "File"] and header[2:7] == [f"Task {n}" for n in range(1, 6)]
    assert 'id="students" data-sorted-by="student:ascending"' in report.read_text(encoding="utf-8")  # as written
    assert page.table_attrs["students"].get("data-sorted-by") == "total:descending"  # as the page's script left it
    totals = [float(row[7]) if row[7] else -1.0 for row in body]
    assert totals == sorted(totals, reverse=True) and totals[0] == 20.0
    assert len(body) == len(EXPECTED) + 2  # and the two roster students who handed nothing in
    names = [row[0] for row in body]
    assert {"Alice Smith", "bob@example.edu", "Dave", "Zoe Quinn"} <= set(names)

    tasks = page.tables["task-rates"]
    assert [row[0] for row in tasks[1:]] == [f"Task {n}" for n in range(1, 6)]
    checks = page.tables["check-rates"]
    assert len(checks) == 1 + 13 and all(row[4].endswith("%") for row in checks[1:])
    failures = page.tables["failure-messages"]
    by_check: dict[str, list[int]] = {}
    for row in failures[1:]:  # grouped by check (hardest first), then by message, most frequent first
        check = row[1].split()[2]
        assert check not in by_check or list(by_check)[-1] == check, "a check's messages are together"
        by_check.setdefault(check, []).append(int(row[0]))
    assert all(counts == sorted(counts, reverse=True) for counts in by_check.values())
    # The message and the students sit in elements shown on expand, which innerText leaves out: read the page.
    rows = re.findall(r'<tr class="failure" data-check="t1_f_value".*?</tr>', report.read_text(encoding="utf-8"), re.S)
    assert any("Expected:" in row and "bob@example.edu" in row and "Hint:" in row for row in rows)
    assert any("not JSON" in row[1] and "Dave" in row[2] for row in page.tables["failed-submissions"][1:])

    feedback = [link for link in page.links if link.startswith("feedback/")]
    assert feedback and all((class_batch.output / link).is_file() for link in feedback)
    assert not [link for link in page.links if re.match(r"(https?:)?//", link)]


# ---- the grid and a feedback page, from exports built without running a notebook (test_batch_exports.py)

from test_batch_exports import entry, exported  # noqa: E402,F401  (fixtures: the corpus reports as a class)


def test_the_grid_sorts_by_total_and_by_check_in_chromium(exported, tmp_path):
    output, rows, _ = exported
    url = (output / "report.html").as_uri()
    result = chromium(tmp_path, url + "#grid-sort=total:desc", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    page = Page()
    page.feed(result.stdout)
    assert page.table_attrs["grid"].get("data-sorted-by") == "total:descending"
    grid = page.tables["grid"]
    header, body = grid[0], grid[1:]
    assert header[:2] == ["Student", "Total"] and header[2:4] == ["T1.1", "T1.2"] and len(header) == 2 + 13
    totals = [float(row[1]) if row[1] not in ("", "–") else -1.0 for row in body]
    assert totals == sorted(totals, reverse=True) and totals[0] == 20.0
    column = header.index("T5.2")  # t5_grad_values: carol's override gave her 1 of 2
    result = chromium(tmp_path, url + "#grid-sort=t5_grad_values:asc", "--dump-dom")
    page = Page()
    page.feed(result.stdout)
    body = page.tables["grid"][1:]
    assert page.table_attrs["grid"].get("data-sorted-by") == "t5_grad_values:ascending"
    values = [re.match(r"[\d.]*", row[column]).group() for row in body]  # the points; the message follows
    assert values[-1] == "2" and "1" in values and values.index("1") < values.index("2")
    assert "class=\"cell s-failed\"" in result.stdout and "class=\"cell s-blank\"" in result.stdout
    assert 'id="legend"' in result.stdout

    shot = tmp_path / "grid.png"
    chromium(tmp_path, url + "#grid-section", f"--screenshot={shot}")
    from PIL import Image

    colors = Image.open(shot).convert("RGB").getcolors(maxcolors=WIDTH * HEIGHT)
    def count(rgb):
        return sum(n for n, c in colors if all(abs(a - b) < 10 for a, b in zip(c, rgb)))
    assert count((0x2D, 0xA4, 0x4E)) > 2000 and count((0xCF, 0x22, 0x2E)) > 200  # green and red cells drew


def test_a_feedback_page_reads_on_a_phone_in_chromium(exported, tmp_path):
    output, _, _ = exported
    url = (output / "feedback" / "carol.html").as_uri()
    shot = tmp_path / "phone.png"
    profile = tmp_path / "phone-profile"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}", "--window-size=390,2400",
               f"--screenshot={shot}", url]
    subprocess.run(command, capture_output=True, text=True, timeout=120)
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    assert image.size == (390, 2400)
    # the FAIL badges (red) and the text reach the screen, and nothing is drawn past the right margin
    red = [(x, y) for y in range(0, 2400, 2) for x in range(0, 390, 2) if image.getpixel((x, y)) == (0xCF, 0x22, 0x2E)]
    assert red and max(x for x, _ in red) < 390 - 4
    right_edge = [image.getpixel((388, y)) for y in range(0, 2400, 4)]
    assert all(pixel == (255, 255, 255) for pixel in right_edge)  # no line runs off the page
    result = chromium(tmp_path, url, "--dump-dom")
    dom = result.stdout
    assert dom.index('id="fix-first"') < dom.index('id="task-5"') and "<pre" not in dom
    assert "<code>retain_graph=True</code>" in dom


def test_the_bar_charts_labels_fit_beside_their_bars_in_any_script_in_chromium(tmp_path):
    """Chromium lays the labels out: each starts inside the chart and ends before its bar, for wide (CJK) characters,
    combining marks and a title too long for the room (shortened, whole in its bar's tooltip)."""
    import json

    from torchgrade.batch.charts import rate_bars
    from torchgrade.render.html import environment

    labels = ["T1: 计算图中的反向传播与梯度累积以及保留计算图的原因和高阶导数",
              "T2: Ｆｕｌｌ－ｗｉｄｔｈ ｆｏｒｍｓ ｏｆ ａ ｔｉｔｌｅ",
              "T3: cafe\u0301 cre\u0300me bru\u0302le\u0301e",
              "T4: " + "why retain_graph=True is needed when the graph is reused " * 3,
              "T5"]
    chart = rate_bars(labels, [0.2, 0.5, 0.9, 1.0, 0.0], "Pass rate")
    assert chart.rects[0].tip.startswith(labels[0]) and chart.rects[3].tip.startswith(labels[3])
    svg = environment().from_string('{% from "chart.svg.j2" import svg_chart %}{{ svg_chart(c, "plot") }}').render(c=chart)
    page = tmp_path / "chart.html"
    page.write_text('<!doctype html><meta charset="utf-8"><body style="margin:0">' + svg + '<pre id="out"></pre><script>'
                    'document.getElementById("out").textContent = JSON.stringify([...document.querySelectorAll('
                    '"svg text")].map(t => { const b = t.getBBox(); return [t.textContent, b.x, b.x + b.width]; }));'
                    '</script>', encoding="utf-8")
    result = chromium(tmp_path, page.as_uri(), "--dump-dom")
    found = re.search(r'<pre id="out">(.*?)</pre>', result.stdout, re.S)
    assert found, result.stderr[-2000:]
    boxes = {text: (start, end) for text, start, end in json.loads(found.group(1).replace("&amp;", "&")
                                                                     .replace("&lt;", "<").replace("&gt;", ">"))}
    bar_start = chart.rects[0].x
    shown = [t.text for t in chart.texts if t.anchor == "end" and t.text.startswith("T")]
    assert len(shown) == len(labels) and shown[4] == "T5" and shown[3].endswith("…")
    for text in shown:
        start, end = boxes[text]
        assert start >= 0, f"{text!r} runs off the chart's left edge ({start:.1f} px)"
        assert end <= bar_start, f"{text!r} runs into its bar ({end:.1f} > {bar_start:.1f})"
