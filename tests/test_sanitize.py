"""torchgrade.sanitize: every text a person reads passes one of these; each test is an injection that must fail."""

from __future__ import annotations

import csv
import io
import re

import mistune
import pytest

from torchgrade import sanitize

ESC_CLEAR = "\x1b[2J\x1b[H"  # clear the screen, cursor home
FAKE_SCORE = ESC_CLEAR + "Score: 20 / 20\x07"
TROJAN = "ok\u202egnirts\u2066x\u2069"
HOSTILE = [FAKE_SCORE, "a\rScore: 20 / 20", TROJAN, "\x9b31m", "lone \ud800 surrogate", "\x00\x08\x7f\ufeff"]


RAW_HTML = mistune.create_markdown(escape=False)  # raw HTML passes, as on GitHub: escaping must be ours
TABLES = mistune.create_markdown(escape=False, plugins=["table"])


def _render(markdown: str) -> str:
    return RAW_HTML(markdown)


@pytest.mark.parametrize("text", HOSTILE)
def test_visible_leaves_no_control_character(text):
    out = sanitize.visible(text)
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufeff]", out), out
    out.encode("utf-8")  # encodable: no lone surrogate left


def test_visible_shows_what_was_there_and_keeps_newlines_and_tabs():
    assert sanitize.visible("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert sanitize.visible("x\u202ey") == "x\\u202ey"
    assert sanitize.visible("one\ntwo\tthree") == "one\ntwo\tthree"
    assert sanitize.visible("a\r\nb\rc") == "a\nb\nc"  # a bare CR cannot overwrite the line before it
    assert sanitize.visible("\ud83d") == "\ufffd"
    assert sanitize.visible("naïve 😀 ∂f/∂x") == "naïve 😀 ∂f/∂x"  # ordinary text is untouched


def test_one_line_and_limits():
    assert sanitize.one_line("a\n\n b\t c\x1b") == "a b c\\x1b"
    assert sanitize.one_line("x" * 50, limit=10) == "x" * 9 + "…"
    assert sanitize.visible(None) == "None"


@pytest.mark.parametrize("attack, forbidden", [
    ("![pixel](https://evil.example/t.png)", "<img"),
    ("[click](https://evil.example)", "<a "),
    ("<img src=x onerror=alert(1)>", "<img"),
    ("<script>alert(1)</script>", "<script"),
    ("**bold** _it_ `code`", "<strong"),
    ("# heading", "<h1"),
    ("<https://evil.example>", "<a "),
    ("&lt;b&gt;", "&lt;b&gt;"),  # an entity stays the literal text, escaped once more
])
def test_markdown_renders_as_the_literal_text(attack, forbidden):
    rendered = _render(sanitize.markdown(attack))
    assert forbidden not in rendered, rendered
    assert "<p>" in rendered


def test_markdown_round_trips_the_text():
    text = "f(x) = x**2 | y_1 [a] <b> !c # d - e + f. g@h https://x.y www.z.com"
    rendered = _render(sanitize.markdown(text))
    assert rendered == "<p>" + mistune.escape(text) + "</p>\n" or "&quot;" in rendered
    import html as html_module

    assert html_module.unescape(re.sub("</?p>", "", rendered)).strip() == text


def test_markdown_breaks_autolinks():
    out = sanitize.markdown("see https://evil.example and www.evil.example and a@b.example")
    assert "https://" not in out and "www." not in out and "a@b" not in out


def test_markdown_cell_keeps_the_table_intact():
    table = "| a | b |\n| --- | --- |\n| " + sanitize.markdown_cell("x | y\nnext ![i](http://e/x.png)") + " | z |\n"
    rendered = TABLES(table)
    assert rendered.count("<td") == 2, rendered
    assert "<img" not in rendered and "<br>" in rendered


def test_markdown_code_and_block_hold_any_text_literally():
    code = sanitize.markdown_code("a `` b ` c")
    assert _render(code).count("<code>") == 1
    assert "a `` b ` c" in _render(code)
    block = sanitize.markdown_block("```\n# not a heading\n![x](http://e)\n````\nend")
    rendered = _render(block)
    assert "<h1" not in rendered and "<img" not in rendered and rendered.count("<pre>") == 1
    assert "end" in rendered


@pytest.mark.parametrize("cell", ["=HYPERLINK(\"http://e\",\"x\")", "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1",
                                  "  =1", "\uff1d1+1"])
def test_csv_formulas_are_neutralised(cell):
    out = sanitize.csv_cell(cell)
    assert out.startswith("'")
    assert "\r" not in out


def test_csv_ordinary_text_is_unchanged_and_round_trips():
    assert sanitize.csv_cell("alice") == "alice"
    assert sanitize.csv_cell("could not grade: x\x1b") == "could not grade: x\\x1b"
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_ALL).writerow([sanitize.csv_cell(c) for c in ("=1", "a,b", 'q"')])
    assert next(csv.reader(io.StringIO(buffer.getvalue()))) == ["'=1", "a,b", 'q"']


def test_html_text_escapes_markup_and_controls():
    assert sanitize.html_text('<b x="1">\x1b') == "&lt;b x=&quot;1&quot;&gt;\\x1b"
