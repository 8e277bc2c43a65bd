"""A submission that is not a notebook is graded as an empty one whose note says why, in the
grader's words: the note reaches the feedback, so it never quotes the file's own bytes."""
import io
import json

import pytest

from course.plugins import ReadableNotebookExporter

MARK = "RAW-BYTES-7c1"
FILES = {
    "not JSON": ('{"cells": [ ' + MARK + ' <img src=x onerror=alert(1)>', "not valid JSON (line 1, column 13)"),
    "not a notebook": (json.dumps({MARK: "<script>alert(1)</script>"}), "does not follow the notebook format"),
    "a bad cell": (json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": f"<script>{MARK}</script>", "source": MARK, "metadata": {}, "id": "x"}]}),
        "does not follow the notebook format (cell 1)"),
    "an extra key": (json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "source": "", "metadata": {}, "outputs": [], "execution_count": None, "id": "x",
         f"<b>{MARK}</b>": 1}]}), "does not follow the notebook format"),
}


@pytest.mark.parametrize("text, words", FILES.values(), ids=list(FILES))
def test_the_note_on_an_unreadable_notebook_quotes_none_of_its_bytes(text, words):
    notebook, _ = ReadableNotebookExporter().from_file(io.StringIO(text), {"metadata": {"name": "losses"}})
    note = notebook.split('"source": ')[1]
    assert "losses.ipynb could not be read as a Jupyter notebook" in note and words in note, note
    assert MARK not in notebook and "alert" not in notebook and "<" not in note.split("\\n- Every check")[0], note


def test_a_file_that_is_not_utf8_is_named_so_without_its_bytes(tmp_path):
    path = tmp_path / "losses.ipynb"
    path.write_bytes(b"\xff\xfe{\x00 binary \x80\x81")
    with open(path, encoding="utf-8") as stream:  # as nbconvert opens a notebook
        notebook, _ = ReadableNotebookExporter().from_file(stream, {"metadata": {"name": "losses"}})
    assert "it is not UTF-8 text (from byte 0 on)" in notebook and "0xff" not in notebook
