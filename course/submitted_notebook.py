"""Reading a submitted notebook: the first thing the grader does with a student's file (sanitize stage).

A notebook's JSON costs far more memory parsed than as bytes: a written answer of a million one-letter
lines is 4.5 MB on disk and, as the list of lines nbformat keeps, some 170 MiB in the grader, before any
check of the grader's own could look at it.  So a submission is read by a streaming parser (ijson, on
yajl), and what it builds is bounded by ``Limits`` whatever the file holds:

* the file's bytes (``notebook_bytes``), parsed as they are read, and its cells (``notebook_cells``);
* the values built (``notebook_values``): everything but a cell's text, which is kept as one string;
* one cell's text: a written answer (markdown, raw) keeps ``student_text_chars`` and one character
  more, so that ``course.sanitize.safe_cell``, which runs after nbgrader's checksums, cuts it there and
  the feedback says so; a code cell over ``code_cell_chars`` makes the file unreadable;
* outputs are skipped unread: the grader runs the notebook again (nbgrader's ClearOutput would drop
  them too, after copying them).

Over a file-wide limit, the file is graded as unreadable (``course.sanitize.ReadableNotebookExporter``),
and its feedback names the limit.
"""
from __future__ import annotations

import io
import json
from typing import TextIO

import ijson
import nbformat

from .sandbox import Limits

CELL = "cells.item"
CELL_TEXT = f"{CELL}.source"
CELL_OUTPUTS = f"{CELL}.outputs"
PARSE_BUFFER_BYTES = 1024**2
JOIN_EVERY = 4096
TEXT_LIMITS_NOTE = "the grader reads notebooks up to that size; clear its outputs and submit again"


class Unreadable(ValueError):
    """A submission the grader does not read; ``str()`` says why, in words fit for the student."""


def read(stream: TextIO) -> nbformat.NotebookNode:
    """The notebook in ``stream`` (text, as nbconvert opens it), within ``Limits``; raises ``Unreadable``,
    ``UnicodeDecodeError``, ``json.JSONDecodeError`` (where it is not JSON) or nbformat's own errors.

    A file is parsed from its bytes as they are read (``stream.buffer``): the whole file as one string
    would cost the grader some four times its size before the parse began."""
    binary = getattr(stream, "buffer", None)
    start = binary.tell() if binary is not None and binary.seekable() else None
    if start is None:  # an in-memory or unseekable stream: its text, within the limit
        binary = io.BytesIO(stream.read(Limits.notebook_bytes + 1).encode("utf-8", "surrogateescape"))
        start = 0
    try:
        document = _build(_Within(binary))
    except ijson.JSONError:
        binary.seek(start)
        document = _parse_whole(_Within(binary).read(Limits.notebook_bytes + 1).decode("utf-8"))
    for number, cell in enumerate(_cells(document), start=1):
        _cut_text(cell, number)
    return nbformat.reads(json.dumps(document), as_version=4)


class _Within:
    """A binary stream that stops being read past ``Limits.notebook_bytes``."""

    def __init__(self, binary):
        self.binary, self.count = binary, 0

    def read(self, size: int = -1) -> bytes:
        data = self.binary.read(PARSE_BUFFER_BYTES if size is None or size < 0 else size)
        self.count += len(data)
        if self.count > Limits.notebook_bytes:
            raise Unreadable(f"it is larger than {Limits.notebook_bytes / 1024**2:g} MiB ({TEXT_LIMITS_NOTE})")
        return data


def _build(source: _Within) -> object:
    """The JSON document, each cell's text as one string (cut, see the module), outputs skipped."""
    builder, values, cells = ijson.ObjectBuilder(), 0, 0
    text_parts, text_chars, skipping = None, 0, False
    # yajl joins a string that spans buffers anew with each buffer (time quadratic in its length), and
    # ijson keeps a buffer's events until they are read (memory linear in the buffer): between the two.
    for prefix, event, value in ijson.parse(source, use_float=True, buf_size=PARSE_BUFFER_BYTES):
        if skipping:
            if prefix == CELL_OUTPUTS and event == "end_array":
                skipping = False
                builder.event("end_array", None)
            continue
        if text_parts is not None:
            if prefix == CELL_TEXT and event == "end_array":
                builder.event("string", "".join(text_parts))
                text_parts = None
            elif event == "string":
                if text_chars <= Limits.code_cell_chars:  # past it, the rest is read and dropped
                    text_parts.append(value[:Limits.code_cell_chars + 1 - text_chars])
                    text_chars += len(text_parts[-1])
                    if len(text_parts) > JOIN_EVERY:  # a line as its own string costs some 50 bytes more
                        text_parts = ["".join(text_parts)]
            else:
                raise Unreadable(f"it does not follow the notebook format (cell {cells}: its text is not text)")
            continue
        if prefix == CELL and event == "start_map":
            cells += 1
            if cells > Limits.notebook_cells:
                raise Unreadable(f"it has more than {Limits.notebook_cells:,} cells ({TEXT_LIMITS_NOTE})")
        elif prefix == CELL_TEXT and event == "start_array":
            text_parts, text_chars = [], 0
            continue
        elif prefix == CELL_OUTPUTS and event == "start_array":
            skipping = True
        values += 1
        if values > Limits.notebook_values:
            raise Unreadable(f"it holds more than {Limits.notebook_values:,} values ({TEXT_LIMITS_NOTE})")
        builder.event(event, value)
    return builder.value


def _cells(document: object) -> list:
    cells = document.get("cells") if isinstance(document, dict) else None
    return [cell for cell in cells if isinstance(cell, dict)] if isinstance(cells, list) else []


def _cut_text(cell: dict, number: int) -> None:
    text = cell.get("source")
    if not isinstance(text, str):
        return  # nbformat's validation names it
    if cell.get("cell_type") in ("markdown", "raw"):
        cell["source"] = text[:Limits.student_text_chars + 1]
    elif len(text) > Limits.code_cell_chars:
        raise Unreadable(f"cell {number} holds more than {Limits.code_cell_chars:,} characters of code "
                         f"(the grader reads cells up to that size)")


def _parse_whole(text: str) -> object:
    """``text`` parsed by Python's own parser, where the streaming one refused it: Python reads what
    Jupyter may write and yajl does not (``NaN``), says where a file stops being JSON, and which byte
    is not UTF-8.  Only where that parse is bounded too (its values counted from the characters that
    start them, a count that can only be too high); each cell's outputs dropped and text joined as
    ``_build`` does."""
    if text.count(",") + text.count("[") + text.count("{") > Limits.notebook_values:
        raise Unreadable("it is not valid JSON")
    document = json.loads(text)
    for cell in _cells(document):
        if "outputs" in cell:
            cell["outputs"] = []
        if isinstance(cell.get("source"), list) and all(isinstance(line, str) for line in cell["source"]):
            cell["source"] = "".join(cell["source"])
    return document
