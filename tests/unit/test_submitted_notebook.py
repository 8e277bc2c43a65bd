"""A submitted notebook is read within bounds (``course.submitted_notebook``): what parsing builds in
the grader is bounded whatever the file holds, a long written answer is cut and the feedback says so,
and over a file-wide limit the file is unreadable with a note naming the limit."""
import io
import json

import nbformat
import pytest

from course import submitted_notebook
from course.sandbox import Limits
from course.plugins import ReadableNotebookExporter
from course.sanitize import cut_note, safe_cell

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


def with_metadata_text(extra):
    """A one-cell notebook whose JSON has ``extra`` (raw JSON text) as the value of a metadata key."""
    text = notebook_text(nbformat.v4.new_markdown_cell("fine"), metadata={"x": 0})
    return text.replace('"x": 0', '"x": ' + extra)


NESTED = {
    "in the metadata": with_metadata_text("[" * 20_000 + "]" * 20_000),
    "in an output": notebook_text(nbformat.v4.new_code_cell("x = 1")).replace(
        '"outputs": []', '"outputs": [{"data": ' + "[" * 40_000 + "]" * 40_000 + "}]"),
    "never closed": with_metadata_text("[" * 1_000_000),
}


@pytest.mark.parametrize("text", NESTED.values(), ids=list(NESTED))
def test_deep_nesting_is_refused_in_bounded_memory(text):
    """ijson's prefixes grew with the square of the depth (40 KB of brackets: a gigabyte)."""
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(submitted_notebook.Unreadable, match="more than 64 deep"):
            submitted_notebook.read(io.StringIO(text))
        assert tracemalloc.get_traced_memory()[1] < 200 * 2**20
    finally:
        tracemalloc.stop()


def test_a_key_with_dots_is_not_a_path():
    text = json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {"cells.item.source": ["x"]}, "cells": []})
    assert submitted_notebook.read(io.StringIO(text)).metadata["cells.item.source"] == ["x"]


def test_nan_is_read_and_the_limits_still_hold(monkeypatch):
    """Python's json writes NaN; yajl refuses it: the lenient read keeps every limit of the streaming one."""
    printed = nbformat.v4.new_code_cell("print(list(range(300_000)))", outputs=[
        nbformat.v4.new_output("execute_result", data={"text/plain": repr(list(range(300_000)))})])
    text = notebook_text(printed, nbformat.v4.new_markdown_cell("hello"), metadata={"w": float("nan")})
    notebook = submitted_notebook.read(io.StringIO(text))
    assert notebook.metadata["w"] is None and notebook.cells[0].outputs == [] and notebook.cells[1].source == "hello"
    monkeypatch.setattr(Limits, "notebook_cells", 1)
    with pytest.raises(submitted_notebook.Unreadable, match="more than 1 cells"):
        submitted_notebook.read(io.StringIO(text))


UNUSUAL = {
    "nbformat 3": (json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": []}),
                   "nbformat 4"),
    "a list": ("[1, 2]", "not a notebook"),
    "no cells": (json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}}), "does not follow"),
}


@pytest.mark.parametrize("text, words", UNUSUAL.values(), ids=list(UNUSUAL))
def test_json_that_is_no_notebook_4_is_named_so(text, words):
    with pytest.raises(submitted_notebook.Unreadable, match=words):
        submitted_notebook.read(io.StringIO(text))
