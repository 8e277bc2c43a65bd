"""Student text is bounded before it is parsed, and sanitizing it takes time linear in its size.

The pathological cases are at the size limit (``Limits.student_text_chars``), each under a time
bound generous for a loaded two-core machine: an HTML5 parser took minutes of CPU on some of them
(a 1 MB table), and time quadratic in a table's rows or in the depth of nesting."""
import time

import nbformat
import pytest

from course.sandbox import Limits
from course.sanitize import clean_html, cut_note, safe_cell, safe_markdown_html

LIMIT = Limits.student_text_chars
SECONDS = 10.0  # CPU seconds for one cell at the limit (about 1 s on an idle core)

PATHOLOGICAL = {
    "many paragraphs": "a\n\n",
    "a huge table": "|x|y|\n",  # after a header, below
    "a wide table": "|a",
    "nested block quotes": ">",
    "nested lists": "- ",
    "nested HTML": "<div>",
    "unclosed HTML": "<b>x<i>",
    "unclosed attributes": '<a href="',
    "unclosed comments": "<!--",
    "stray angle brackets": "<",
    "open brackets": "[",
    "open links": "[a](",
    "emphasis": "*a ",
    "math": "$",
    "backslashes": "\\",
    "entities": "&#",
}


@pytest.mark.parametrize("name", PATHOLOGICAL)
def test_pathological_markdown_at_the_limit_is_sanitized_in_bounded_time(name):
    unit = PATHOLOGICAL[name]
    source = ("|a|b|\n|-|-|\n" if name == "a huge table" else "") + unit * (LIMIT // len(unit) + 1)
    cell = nbformat.v4.new_markdown_cell(source)
    started = time.process_time()
    safe_cell(cell)
    spent = time.process_time() - started
    assert spent < SECONDS, f"{name}: {spent:.1f} s of CPU for {LIMIT:,} characters"
    assert cut_note() in cell.source  # one character over the limit: cut, and said so


def test_text_over_the_limit_is_cut_before_parsing_and_the_feedback_says_so():
    cell = nbformat.v4.new_markdown_cell("a\n\n" * 1_500_000)  # the 4.5 MB answer of the issue
    started = time.process_time()
    safe_cell(cell)
    assert time.process_time() - started < SECONDS
    assert cell.source.count("<p>") <= LIMIT // 3 + 1 and cut_note() in cell.source
    raw = nbformat.v4.new_raw_cell("<b>" * LIMIT)
    safe_cell(raw)
    assert cut_note() in raw.source and "<b>" not in raw.source.replace("&lt;b&gt;", "")
    short = nbformat.v4.new_markdown_cell("An honest answer.")
    safe_cell(short)
    assert "An honest answer." in short.source and cut_note() not in short.source


def test_the_linear_sanitizer_keeps_what_is_allowed_and_nothing_else():
    assert clean_html('<p onclick="x">a <b>b</b> <script>alert(1)</script></p>') == "<p>a <b>b</b> alert(1)</p>"
    assert clean_html('<a href="javascript:alert(1)" title="t">x</a>') == '<a title="t">x</a>'
    assert clean_html('<a href="java&#x73;cript:alert(1)">x</a>') == "<a>x</a>"
    assert clean_html('<a href="https://example.org/?a=1&amp;b=2">x</a>') == '<a href="https://example.org/?a=1&amp;b=2">x</a>'
    assert clean_html('<img src="data:text/html;base64,x" alt="a">') == '<img alt="a">'
    assert clean_html("<div><i>open") == "<div><i>open</i></div>"
    assert clean_html("</div>stray</b><b>x</div>") == "stray<b>x</b>"
    assert clean_html("a <!-- hidden --> b <!-- unclosed") == "a  b "
    assert clean_html("1 < 2 & <svg onload=alert(1)>") == "1 &lt; 2 &amp; "
    assert clean_html("&#92;href{javascript:alert(1)}{e}") == "href{javascript:alert(1)}{e}"
    assert clean_html('<a title="a>b">x</a>') == '<a title="">b"&gt;x</a>'  # a quoted ">" ends the tag: safe, if odd
    assert "javascript" not in safe_markdown_html("[x](javascript:alert(1)) <a href='javascript:1'>y</a>")
