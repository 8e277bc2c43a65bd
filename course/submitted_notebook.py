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

Over a file-wide limit, the file is graded as unreadable (``course.plugins.ReadableNotebookExporter``),
and its feedback names the limit.
"""
from __future__ import annotations

import io
import json
import re
from typing import IO, Any, TextIO

import ijson
import nbformat

from .sandbox import Limits

PARSE_BUFFER_BYTES = 1024**2
JOIN_EVERY = 4096
MAX_DEPTH = 64  # lists and objects in lists and objects: a notebook nests some ten deep
# A JSON string, or Python's non-finite numbers outside one (json.dumps writes them; JSON has none).
_NON_FINITE = re.compile(r'"(?:[^"\\]|\\.)*"|(-?Infinity|NaN)')


class Unreadable(ValueError):
    """A submission the grader does not read; ``str()`` says why, in words fit for the student."""


def read(stream: TextIO) -> nbformat.NotebookNode:
    """The notebook in ``stream`` (text, as nbconvert opens it), within ``Limits``.  Raises ``Unreadable``,
    ``UnicodeDecodeError`` (a byte that is not UTF-8), ``json.JSONDecodeError`` (where it stops being JSON)
    or nbformat's own validation errors, each of which ``why_not_a_notebook`` words.

    A file is parsed from its bytes as they are read (``stream.buffer``): the whole file as one string
    would cost the grader some four times its size before the parse began."""
    binary = getattr(stream, "buffer", None)
    start = binary.tell() if binary is not None and binary.seekable() else None
    if start is None:  # an in-memory or unseekable stream: its text, within the limit
        binary = io.BytesIO(stream.read(Limits.notebook_bytes + 1).encode("utf-8", "surrogatepass"))
        start = 0
    assert binary is not None  # the stream's buffer, or the BytesIO made just above where it had none
    try:
        document = _build(_Within(binary))
    except Unreadable:
        raise
    except (ijson.JSONError, ValueError):
        binary.seek(start)
        document = _build_lenient(_Within(binary).read(Limits.notebook_bytes + 1).decode("utf-8"))
    if not isinstance(document, dict):
        raise Unreadable("it is JSON, but not a notebook (a notebook is one JSON object)")
    version = document.get("nbformat")
    if isinstance(version, int) and version < 4:
        raise Unreadable("it is not in the notebook format Jupyter writes today (nbformat 4): open it in "
                         "Jupyter and save it again")
    if version != 4 or not isinstance(document.get("cells"), list):
        raise Unreadable("it does not follow the notebook format")
    for number, cell in enumerate(_cells(document), start=1):
        _cut_text(cell, number)
    return nbformat.v4.to_notebook_json(document)


class _Within:
    """A binary stream that stops being read past ``Limits.notebook_bytes``."""

    def __init__(self, binary: IO[bytes]) -> None:
        self.binary, self.count = binary, 0

    def read(self, size: int = -1) -> bytes:
        data = self.binary.read(PARSE_BUFFER_BYTES if size is None or size < 0 else size)
        self.count += len(data)
        if self.count > Limits.notebook_bytes:
            raise Unreadable(f"it is larger than {Limits.notebook_bytes / 1024**2:g} MiB (the grader reads "
                             "notebooks up to that size; clear its outputs and submit again)")
        return data


def _build(source: _Within) -> object:
    """The JSON document, each cell's text as one string (cut, see the module), outputs skipped.

    The path of each value is tracked here, not by ijson's prefixes: a prefix is a new string of the
    whole path at every level, so nesting cost memory with the square of its depth; and a key with a
    dot in it cannot pass for a path."""
    builder, values, cells = ijson.ObjectBuilder(), 0, 0
    names: list[str | None]
    in_map: list[bool]
    names, in_map = [], []  # per open container: its name in its parent ("item" in a list), is it an object
    key = None  # the key of the next value in the open object
    text_parts: list[str] | None
    text_parts, text_chars, skipping = None, 0, 0  # skipping: containers open in a cell's outputs
    for event, value in ijson.basic_parse(source, use_float=True, buf_size=PARSE_BUFFER_BYTES):
        if event == "map_key":
            key = value
            if not skipping:
                builder.event(event, value)
            continue
        if event in ("end_map", "end_array"):
            names.pop()
            in_map.pop()
            key = None
        name = (key if in_map[-1] else "item") if in_map else None
        if event in ("start_map", "start_array"):
            if len(names) >= MAX_DEPTH:
                raise Unreadable(f"it nests lists and objects more than {MAX_DEPTH} deep")
            names.append(name)
            in_map.append(event == "start_map")
            key = None
        if skipping:
            skipping += (event in ("start_map", "start_array")) - (event in ("end_map", "end_array"))
            if not skipping:
                builder.event("end_array", None)
            continue
        if text_parts is not None:  # inside a cell's text, a list of lines
            if event == "end_array":
                builder.event("string", "".join(text_parts))
                text_parts = None
            elif event == "string":
                if value and text_chars <= Limits.code_cell_chars:  # past it, the rest is read and dropped
                    text_parts.append(value[:Limits.code_cell_chars + 1 - text_chars])
                    text_chars += len(text_parts[-1])
                    if len(text_parts) > JOIN_EVERY:  # a line as its own string costs some 50 bytes more
                        text_parts = ["".join(text_parts)]
            else:
                raise Unreadable(f"it does not follow the notebook format (cell {cells}: its text is not text)")
            continue
        # [the notebook, its "cells" list, a cell, a cell's field]
        in_a_cell = names[1:3] == ["cells", "item"] and in_map[:3] == [True, False, True]
        if event == "start_map" and len(names) == 3 and in_a_cell:
            cells += 1
            if cells > Limits.notebook_cells:
                raise Unreadable(f"it has more than {Limits.notebook_cells:,} cells (the grader reads notebooks "
                                 "up to that size)")
        elif event == "start_array" and len(names) == 4 and in_a_cell and names[3] == "source":
            text_parts, text_chars = [], 0  # the lines are joined here, not built as a list
            continue
        elif event == "start_array" and len(names) == 4 and in_a_cell and names[3] == "outputs":
            skipping = 1
            builder.event("start_array", None)
            continue
        if event not in ("end_map", "end_array"):
            values += 1
            if values > Limits.notebook_values:
                raise Unreadable(f"it holds more than {Limits.notebook_values:,} values outside its cells' text "
                                 "and outputs (the grader reads notebooks up to that size)")
        builder.event(event, value)
    return builder.value


def _build_lenient(text: str) -> object:
    """``text`` read where yajl refused it: Python's ``NaN`` and ``Infinity`` (nbformat writes them, in a
    widget's state say) read as ``null``, then streamed as ``_build`` does.  Where it is not JSON even so,
    Python's own parser says where it stops being JSON, if that parse is bounded too (its values counted
    from the characters that start them, a count that can only be too high)."""
    finite = _NON_FINITE.sub(lambda match: match.group(0) if match.group(1) is None else "null", text)
    if finite != text:
        try:
            return _build(_Within(io.BytesIO(finite.encode("utf-8", "surrogatepass"))))
        except Unreadable:
            raise
        except (ijson.JSONError, ValueError):
            pass
    if text.count(",") + text.count("[") + text.count("{") <= Limits.notebook_values:
        json.loads(text)  # raises JSONDecodeError, with the line and column
    raise Unreadable("it is not valid JSON")


def _cells(document: object) -> list[dict[str, Any]]:
    cells = document.get("cells") if isinstance(document, dict) else None
    return [cell for cell in cells if isinstance(cell, dict)] if isinstance(cells, list) else []


def _cut_text(cell: dict[str, Any], number: int) -> None:
    text = cell.get("source")
    if not isinstance(text, str):
        return  # nbformat's validation names it
    if cell.get("cell_type") in ("markdown", "raw"):
        cell["source"] = text[:Limits.student_text_chars + 1]
    elif len(text) > Limits.code_cell_chars:
        raise Unreadable(f"cell {number} holds more than {Limits.code_cell_chars:,} characters of code "
                         f"(the grader reads cells up to that size)")


def why_not_a_notebook(error: BaseException) -> str:
    """Why a submission is not a notebook, in the grader's own words: never the error's text,
    which quotes the file's bytes (nbformat's and jsonschema's messages do)."""
    import jsonschema

    if isinstance(error, Unreadable):
        return str(error)
    if isinstance(error, UnicodeDecodeError):
        return f"it is not UTF-8 text (from byte {error.start} on)"
    cause = error.__cause__ if isinstance(error.__cause__, json.JSONDecodeError) else error
    if isinstance(cause, json.JSONDecodeError):
        return f"it is not valid JSON (line {cause.lineno}, column {cause.colno})"
    if isinstance(error, nbformat.reader.NotJSONError):
        return "it is not valid JSON"
    if isinstance(error, jsonschema.ValidationError):
        path = list(error.absolute_path)
        cell = f" (cell {path[1] + 1})" if len(path) > 1 and path[0] == "cells" and isinstance(path[1], int) else ""
        return f"it does not follow the notebook format{cell}"
    return f"it is not a notebook ({type(error).__name__})"
