"""A submitted notebook is read within bounds (``course.submitted_notebook``): what parsing builds in
the grader is bounded whatever the file holds, a long written answer is cut and the feedback says so,
and over a file-wide limit the file is unreadable with a note naming the limit."""
import io
import json

import nbformat
import pytest

from course import submitted_notebook
from course.sandbox import Limits
from course.sanitize import ReadableNotebookExporter, cut_note, safe_cell

LINES = 300_000  # one-letter paragraphs: as Jupyter saves them, one JSON string a line


def notebook_text(*cells, metadata=None):
    notebook = nbformat.v4.new_notebook(cells=list(cells), metadata=metadata or {})
    return nbformat.writes(notebook)  # lines as lists of strings, as Jupyter writes them


def test_a_written_answer_of_many_lines_is_read_as_one_string_cut_one_past_the_limit():
    """The grader's memory on such a file, end to end, is measured in tests/test_adversarial.py."""
    answer = "a\n\n" * (LINES // 2)
    text = notebook_text(nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_markdown_cell(answer))
    notebook = submitted_notebook.read(io.StringIO(text))
    assert notebook.cells[0].source == "x = 1"
    assert notebook.cells[1].source == answer[:Limits.student_text_chars + 1]
    shown = safe_cell(notebook.cells[1])["source"]
    assert cut_note() in shown and shown.count("<p>") <= Limits.student_text_chars // 3 + 1


def test_outputs_are_not_read():
    cell = nbformat.v4.new_code_cell("print(1)", outputs=[nbformat.v4.new_output("stream", text="1\n" * 1000)])
    notebook = submitted_notebook.read(io.StringIO(notebook_text(cell)))
    assert notebook.cells[0].outputs == [] and notebook.cells[0].source == "print(1)"


def test_what_yajl_refuses_and_python_reads_is_read():
    """nbformat writes with Python's json, which writes NaN (say, in a widget's state)."""
    text = notebook_text(nbformat.v4.new_markdown_cell("hello"), metadata={"widget": {"value": float("nan")}})
    assert "NaN" in text
    notebook = submitted_notebook.read(io.StringIO(text))
    assert notebook.cells[0].source == "hello"


OVER = {
    "bytes": ("notebook_bytes", 1_000, "larger than"),
    "cells": ("notebook_cells", 3, "more than 3 cells"),
    "values": ("notebook_values", 50, "more than 50 values"),
    "a code cell": ("code_cell_chars", 100, "cell 4 holds more than 100 characters of code"),
}


@pytest.mark.parametrize("limit, value, words", OVER.values(), ids=list(OVER))
def test_over_a_file_wide_limit_the_file_is_unreadable_and_the_note_names_the_limit(monkeypatch, limit, value, words):
    cells = [nbformat.v4.new_markdown_cell("fine") for _ in range(3)] + [nbformat.v4.new_code_cell("x = 1\n" * 50)]
    text = notebook_text(*cells, metadata={"tags": list(range(60))})
    assert submitted_notebook.read(io.StringIO(text)).cells[3].source == "x = 1\n" * 50
    monkeypatch.setattr(Limits, limit, value)
    with pytest.raises(submitted_notebook.Unreadable, match=words):
        submitted_notebook.read(io.StringIO(text))
    graded, resources = ReadableNotebookExporter().from_file(io.StringIO(text), {"metadata": {"name": "losses"}})
    assert words in resources["course"]["notes"][0]["problem"]
    assert "losses.ipynb could not be read" in json.loads(graded)["cells"][0]["source"]


def test_a_cell_of_many_lines_is_written_as_one_string():
    """Split into lines, the JSON encoder spends some 200 bytes a line (``ReadableNotebookExporter``)."""
    text = notebook_text(nbformat.v4.new_code_cell("x = 1\n" * 1000))
    written, _ = ReadableNotebookExporter().from_file(io.StringIO(text), {"metadata": {"name": "losses"}})
    assert json.loads(written)["cells"][0]["source"] == "x = 1\n" * 1000
