"""What a student may show: the one gate between a student's bytes and a page a person opens.

Student output and student-written cells end up in HTML that people open: the feedback, and
nbgrader's formgrader, which runs in the instructor's logged-in session.  Everything a student
controls passes through this module before it is stored in a graded notebook:

* outputs, whatever message made them (``display_data``, ``execute_result``, ``stream``,
  ``error``, and the ``update_display_data`` that rewrites an earlier one): each is rebuilt
  from an allow-list of MIME types (plain text and raster images), with its metadata dropped
  except image sizes that are plain numbers (``safe_output``);
* markdown cells a student wrote, and raw cells: rendered here, with links to ``http``,
  ``https``, ``mailto`` and fragments only, raw HTML reduced to an allow-list of tags, and
  MathJax's HTML extensions (``\\href``, ``\\class``, ``\\style``, ...) disarmed (``safe_cell``);
* student text that a grader sentence quotes, in Markdown (``markdown_text``), HTML
  (``html_text``) or a log line (``log_text``).

nbconvert's own markdown renderer allows every link protocol (``javascript:`` included) and
passes raw HTML through; MathJax honours ``\\href``.  So a student's markdown cell is rendered
here into one HTML block that nbconvert's renderer passes through unchanged.
"""
from __future__ import annotations

import base64
import binascii
import html
import math
import re
from typing import TYPE_CHECKING, Any

import nbformat
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping

    from nbconvert.filters.markdown_mistune import IPythonRenderer
    from nbformat import NotebookNode


ALLOWED_MIME_TYPES = ("text/plain", "image/png", "image/jpeg")
# Shown as their source text when a display has nothing else to show.
TEXT_ONLY_MIME_TYPES = ("text/markdown", "text/latex")
IMAGE_SIZE_LIMIT = 10_000  # pixels, width or height
SAFE_LINK_PREFIXES = ("http:", "https:", "mailto:", "#")
# MathJax commands that make links, set classes, styles, ids or data attributes, emit raw
# HTML or Unicode from arbitrary fonts, load extensions, or open tooltips and actions.
MATHJAX_HTML_COMMANDS = ("href", "class", "cssId", "style", "data", "require", "unicode", "bbox", "mmlToken",
                         "texttip", "mathtip", "toggle", "actiontype", "tooltip", "html", "attr")
# Only at the start of a run of backslashes (the look-behind), so a long run is read once, not once per backslash.
_MATHJAX_COMMAND = re.compile(r"(?<!\\)\\+\s*(?=(?:%s)(?![A-Za-z]))" % "|".join(MATHJAX_HTML_COMMANDS))
ALLOWED_TAGS = ["a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "div", "dl", "dt", "em", "h1", "h2",
                "h3", "h4", "h5", "h6", "hr", "i", "img", "input", "kbd", "li", "ol", "p", "pre", "s", "span",
                "strong", "sub", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul"]
ALLOWED_ATTRIBUTES = {"a": ["href", "title"], "img": ["src", "alt", "title", "width", "height"],
                      "input": ["type", "checked", "disabled"], "td": ["align"], "th": ["align"],
                      "abbr": ["title"], "ol": ["start"]}
BLOCK_CLASS = "course-student-markdown"
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")


# --------------------------------------------------------------------------- outputs


def safe_output(output: object) -> NotebookNode | None:
    """The output as a student may show it, rebuilt field by field, or None if nothing is left."""
    try:
        return _safe_output(output)
    except (nbformat.ValidationError, ValueError, TypeError):
        return None


def _safe_output(output: object) -> NotebookNode | None:
    if not isinstance(output, dict):
        return None
    kind = output.get("output_type")
    if kind == "stream":
        name = output.get("name") if output.get("name") in ("stdout", "stderr") else "stdout"
        return nbformat.v4.new_output("stream", name=name, text=_text(output.get("text", "")))
    if kind == "error":
        traceback = output.get("traceback")
        traceback = [_text(line) for line in traceback] if isinstance(traceback, list) else []
        return nbformat.v4.new_output("error", ename=_text(output.get("ename", "")),
                                      evalue=_text(output.get("evalue", "")), traceback=traceback)
    if kind not in ("display_data", "execute_result"):
        return None
    data = safe_data(output.get("data"))
    if not data:
        return None
    result = nbformat.v4.new_output(kind, data=data, metadata=safe_metadata(output.get("metadata"), data))
    if kind == "execute_result":
        result["execution_count"] = safe_execution_count(output.get("execution_count"))
    return result


def safe_data(data: object) -> dict[str, str]:
    """A display's MIME bundle reduced to plain text and valid base64 raster images."""
    if not isinstance(data, dict):
        return {}
    kept: dict[str, str] = {}
    for mime in ALLOWED_MIME_TYPES:
        value = data.get(mime)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = "".join(value)  # nbformat stores multi-line text as a list of lines
        if not isinstance(value, str):
            continue
        if mime.startswith("image/"):
            if not _is_base64(value):
                continue
        kept[mime] = value
    if "text/plain" not in kept:
        for mime in TEXT_ONLY_MIME_TYPES:
            if isinstance(data.get(mime), str):
                kept["text/plain"] = data[mime]
                break
    return kept


def _is_base64(value: str) -> bool:
    if not _BASE64.fullmatch(value):
        return False
    try:
        base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def safe_metadata(metadata: object, data: Iterable[str]) -> dict[str, dict[str, float]]:
    """Only the width and height of images, and only as plain positive numbers."""
    kept: dict[str, dict[str, float]] = {}
    if not isinstance(metadata, dict):
        return kept
    for mime in data:
        if not mime.startswith("image/") or not isinstance(metadata.get(mime), dict):
            continue
        sizes = {key: metadata[mime][key] for key in ("width", "height") if _is_size(metadata[mime].get(key))}
        if sizes:
            kept[mime] = sizes
    return kept


def _is_size(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and 0 < value <= IMAGE_SIZE_LIMIT)


def safe_execution_count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9 else None


def _text(value: object) -> str:
    if isinstance(value, list):
        value = "".join(str(v) for v in value)
    return value if isinstance(value, str) else str(value)


# --------------------------------------------------------------------------- cells


def is_trusted(cell: Mapping[str, Any]) -> bool:
    """A locked cell's source and metadata come from the gradebook (nbgrader restores them)."""
    meta = cell.get("metadata", {}).get("nbgrader")
    return isinstance(meta, dict) and bool(meta.get("locked"))


def safe_cell(cell: NotebookNode) -> NotebookNode:
    """A cell as a student may show it (changed in place, and returned)."""
    if cell.get("cell_type") == "code":
        cell["outputs"] = [o for o in (safe_output(o) for o in cell.get("outputs", [])) if o is not None]
        cell["execution_count"] = safe_execution_count(cell.get("execution_count"))
    if is_trusted(cell):
        return cell
    cell.pop("attachments", None)
    cell["metadata"] = _student_cell_metadata(cell.get("metadata", {}))
    if cell.get("cell_type") in ("markdown", "raw"):
        source, cut = cut_student_text(_text(cell.get("source", "")))
        note = f'<p class="course-cut-note"><em>{html.escape(cut_note())}</em></p>' if cut else ""
        if cell["cell_type"] == "markdown":
            cell["source"] = safe_markdown_block(source, note)
        else:
            # Shown as text: a raw cell is otherwise pasted into the page as HTML.
            cell["source"] = f'<pre class="{BLOCK_CLASS}">{html_text(source, single_line=False)}</pre>{note}'
            cell["metadata"]["raw_mimetype"] = "text/html"
    return cell


def _student_cell_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """nbgrader's metadata (restored from the gradebook); nothing a student wrote."""
    return {"nbgrader": metadata["nbgrader"]} if isinstance(metadata.get("nbgrader"), dict) else {}


def safe_markdown_block(source: str, note: str = "") -> str:
    """A student's markdown as one HTML block that nbconvert's markdown renderer passes through as it is
    (``note``: the grader's own HTML, after it)."""
    rendered = safe_markdown_html(source) + note
    # A blank line would end the HTML block and hand the rest back to the markdown parser.
    rendered = re.sub(r"\n(?=[ \t]*(\n|$))", "&#10;", rendered.replace("\r\n", "\n").replace("\r", "\n"))
    return f'<div class="{BLOCK_CLASS}">\n{rendered}\n</div>'


def safe_markdown_html(source: str) -> str:
    """Markdown rendered with safe links only, allow-listed HTML, and no MathJax HTML extension."""
    from nbconvert.filters.markdown_mistune import MarkdownWithMath

    rendered = MarkdownWithMath(renderer=_StudentRenderer(escape=False, exclude_anchor_links=True)).render(source)
    return clean_html(rendered)


def cut_student_text(text: str, limit: int | None = None) -> tuple[str, bool]:
    """A student's text no longer than ``limit`` characters (``Limits.student_text_chars``), and whether
    it was cut: a student-written cell is cut before the Markdown renderer and the sanitizer read it,
    so their time and memory are bounded whatever a submission holds (and the notebook's JSON was
    read within limits: ``course.submitted_notebook``)."""
    from .sandbox import Limits

    limit = Limits.student_text_chars if limit is None else limit
    return (text, False) if len(text) <= limit else (text[:limit], True)


def cut_note(limit: int | None = None) -> str:
    """What the feedback says where a student's text was cut."""
    from .sandbox import Limits

    limit = Limits.student_text_chars if limit is None else limit
    return f"[The grader cut this cell at {limit:,} characters; the submitted notebook keeps all of it.]"


# One tag, as the sanitizer reads it: a name, then anything but "<" and ">" (so matching it never
# scans past the next "<": every character is looked at a bounded number of times).  A quoted
# value holding ">" does not match, and is shown as text.
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)([^<>]*)>")
_ATTRIBUTE = re.compile(r"""([^\s"'<>/=]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'=<>`]+))?""")
VOID_TAGS = frozenset({"br", "hr", "img", "input"})
_ALLOWED_TAG_SET = frozenset(ALLOWED_TAGS)


def clean_html(fragment: str) -> str:
    """HTML reduced to ``ALLOWED_TAGS`` with ``ALLOWED_ATTRIBUTES``, safe links only, balanced, comments
    dropped, text re-escaped with MathJax's HTML commands disarmed; in one pass, linear in its input.

    It replaces an HTML5 parser (html5lib through bleach, then BeautifulSoup), which took time
    quadratic in a table's rows or in the depth of nesting.  nh3 (ammonia, on html5ever) was weighed
    too: linear on tables and misnested tags, but 200,000 nested ``<div>`` took it 270 s (this: under
    a second).  Anything it does not read as an allowed tag becomes text: a tag it drops keeps its
    text (``<script>x</script>`` shows ``x``), a stray ``<`` is escaped.  A close tag closes what is
    open above its match; one with no match is dropped; whatever is open at the end is closed."""
    out: list[str] = []
    open_tags: list[str] = []
    open_count: dict[str, int] = {}
    position, end = 0, len(fragment)
    while position < end:
        lt = fragment.find("<", position)
        if lt < 0:
            out.append(_clean_text(fragment[position:]))
            break
        if lt > position:
            out.append(_clean_text(fragment[position:lt]))
        if fragment.startswith("<!--", lt):
            close = fragment.find("-->", lt + 4)
            position = end if close < 0 else close + 3  # an unclosed comment runs to the end, as in HTML
            continue
        match = _TAG.match(fragment, lt)
        if match is None:
            out.append("&lt;")
            position = lt + 1
            continue
        position = match.end()
        name = match.group(2).lower()
        if name not in _ALLOWED_TAG_SET:
            continue
        if match.group(1):  # a close tag
            if name in VOID_TAGS or not open_count.get(name):
                continue
            while True:  # each tag is opened once and closed once: linear overall
                top = open_tags.pop()
                open_count[top] -= 1
                out.append(f"</{top}>")
                if top == name:
                    break
        else:
            out.append(_open_tag(name, match.group(3)))
            if name not in VOID_TAGS:
                open_tags.append(name)
                open_count[name] = open_count.get(name, 0) + 1
    out.extend(f"</{name}>" for name in reversed(open_tags))
    return "".join(out)


def _open_tag(name: str, attributes: str) -> str:
    allowed: Collection[str] = ALLOWED_ATTRIBUTES.get(name, ())
    kept: dict[str, str] = {}
    for match in _ATTRIBUTE.finditer(attributes):
        key, value = match.group(1).lower(), match.group(2)
        if key not in allowed or key in kept:
            continue
        value = "" if value is None else html.unescape(value[1:-1] if value[0] in "\"'" else value)
        if key in ("href", "src") and not is_safe_link(value):
            continue
        kept[key] = f' {key}="{html.escape(value, quote=True)}"'
    return f"<{name}{''.join(kept.values())}>"


def _clean_text(text: str) -> str:
    """Text between tags as a browser decodes it, MathJax's HTML commands disarmed, escaped again."""
    return html.escape(neutralize_math(html.unescape(text)), quote=False)


def _renderer_base() -> type[IPythonRenderer]:
    from nbconvert.filters.markdown_mistune import IPythonRenderer

    return IPythonRenderer


if TYPE_CHECKING:
    _Renderer = IPythonRenderer
else:
    _Renderer = _renderer_base()


class _StudentRenderer(_Renderer):
    def sanitize_url(self, url: str) -> str:
        return url if is_safe_link(url) else "#unsafe-link-removed"


def is_safe_link(url: object) -> bool:
    """True for http, https, mailto and fragment links, however the URL is spelt."""
    from urllib.parse import unquote

    text = html.unescape(str(url))
    for _ in range(3):
        text = unquote(text)
    text = re.sub(r"[\x00-\x20\x7f]", "", text).lower()  # browsers drop these inside a URL
    return text.startswith(SAFE_LINK_PREFIXES)


def neutralize_math(text: str) -> str:
    """Student text with MathJax's HTML-making commands turned into plain letters (``\\href`` -> ``href``)."""
    return _MATHJAX_COMMAND.sub("", text)


# --------------------------------------------------------------------------- student text in grader text


def markdown_text(text: object, limit: int = 500) -> str:
    """Student text quoted in Markdown: one line; no HTML, link, code span, table cell or math can start in it,
    and no MathJax command (emphasis characters are left: they only change how text looks)."""
    text = neutralize_math(one_line(text, limit))
    return re.sub(r"([\\`\[\]<>&|!$])", r"\\\1", text)


def html_text(text: object, single_line: bool = True) -> str:
    """Student text quoted in HTML."""
    text = one_line(text) if single_line else _text(text)
    return html.escape(neutralize_math(text), quote=True)


def log_text(text: object, limit: int = 300) -> str:
    """Student text quoted in a log line: one line, every character that is not shown as itself escaped."""
    text = _text(text)
    if len(text) > limit:
        text = text[:limit] + "…"
    return escape_hidden(text)


def one_line(text: object, limit: int = 500) -> str:
    text = escape_hidden(_text(text).replace("\r", " ").replace("\n", " "))
    return text if len(text) <= limit else text[:limit] + "…"


def escape_hidden(text: str) -> str:
    """Every character of Unicode category C* (controls, format characters such as the bidi overrides U+202A-E and
    isolates U+2066-9, surrogates, private use, unassigned) and every separator but the space, as its escape
    (``\\x1b``, ``\\u202e``): a file or student name shown in a summary, a report or a log can neither reorder
    nor hide what is around it.  ``str.isprintable`` is exactly "none of these"."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


class SanitizeStudentHTML(Preprocessor):
    """Every cell of a graded notebook through this module's gate for what a student may show.

    nbgrader's feedback and formgrader templates render markdown and raw cells as HTML, with
    every link protocol allowed.  Student outputs were filtered as they arrived; here they pass
    the same gate again with everything else a student controls: the markdown and raw cells
    they wrote, cell metadata and prompts.  Locked cells came from the gradebook (trusted) and
    keep their LaTeX and HTML as written.  It runs after ``SaveAutoGrades``, so nbgrader's
    checksums see the student's cells as submitted.
    """

    enabled = Bool(True)  # nbconvert preprocessors are off unless enabled

    def preprocess_cell(self, cell: NotebookNode, resources: dict[str, Any],
                        cell_index: int) -> tuple[NotebookNode, dict[str, Any]]:
        return safe_cell(cell), resources


def grade_id_of(cell: NotebookNode) -> str | None:
    meta = cell.metadata.get("nbgrader")
    grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
    return grade_id if isinstance(grade_id, str) else None


def is_flagged(cell: NotebookNode) -> bool:
    """A grade, solution or locked cell: the kind nbgrader's DeduplicateIds deduplicates."""
    meta = cell.metadata.get("nbgrader")
    return isinstance(meta, dict) and any(meta.get(flag) for flag in ("grade", "solution", "locked"))
