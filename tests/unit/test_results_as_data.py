"""The grader's results are data: the feedback text is rendered from a verdict, the report reads the
verdicts and notes (never their text), a verdict a submission forged is dropped, the state digest of
incremental regrading changes with what decides a grade, and gradebook URLs are edited by SQLAlchemy."""
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from course.feedback import CellVerdict, read_verdict, verdict_outputs, write_verdict
from course.incremental import GradeState, assignment_fingerprint, submission_digest
from course.judge import Verdict
from course.record import gradebook_url
from course.report import SCORED_BY_HAND, verdict_reasons
from course.notes import (condensed_note_texts, grading_notes_cell, missing_test_cell, note_text, read_notes,
                          stopped_early, unreadable_notebook)
from course.plugins import RestoreCellMetadata
from course.sanitize import safe_cell

SWAPPED = "case 'kl': expected 0.51, got 0.37 (likely mistake: swapped arguments)"


def graded_cell(grade_id="test_kl", outputs=()):
    cell = nbformat.v4.new_code_cell("assert kl_divergence([1], [1]) == 0")
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "grade_id": grade_id,
                                 "points": 2, "schema_version": 3, "cell_type": "code"}
    cell.outputs = list(outputs)
    return cell


# --------------------------------------------------------------------------- feedback from a verdict

def test_a_failed_verdict_renders_an_error_output_naming_the_first_three_failures_and_the_device():
    verdict = CellVerdict.of([Verdict(True, "a: ok"), Verdict(False, "b: wrong"), Verdict(False, "c: wrong"),
                              Verdict(False, "d: wrong"), Verdict(False, "e: wrong")], device="cuda")
    (output,) = verdict_outputs(verdict)
    assert output.output_type == "error" and output.ename == "HiddenCheckFailed"  # SaveAutoGrades: 0 points
    assert output.evalue == "b: wrong; c: wrong; d: wrong [ran on cuda]"
    assert output.traceback == ["HiddenCheckFailed: b: wrong; c: wrong; d: wrong [ran on cuda]"]


def test_a_passed_verdict_renders_a_plain_message_after_the_visible_tests_output():
    verdict = CellVerdict.of([Verdict(True, "a: ok"), Verdict(True, "b: ok")])
    visible, passed = verdict_outputs(verdict, "x" * 5000)
    assert visible.text == "Output of the visible tests (not graded):\n" + "x" * 4000 + "\n"
    assert passed.output_type == "stream" and passed.text == "Hidden checks passed (2 cases).\n"


def test_no_case_checked_is_a_failure():
    (output,) = verdict_outputs(CellVerdict.of([]))
    assert output.output_type == "error" and output.evalue == "no case was checked"


def test_the_verdict_is_stored_once_and_read_back_as_it_was_written():
    cell = graded_cell(outputs=[nbformat.v4.new_output("stream", name="stdout", text="visible ok\n")])
    verdict = CellVerdict.of([Verdict(False, SWAPPED)], device="cpu")
    write_verdict(cell, verdict)
    assert read_verdict(cell) == verdict and not read_verdict(cell).passed
    assert [o.output_type for o in cell.outputs] == ["stream", "error"]
    assert "visible ok" in cell.outputs[0].text and cell.outputs[1].evalue == SWAPPED + " [ran on cpu]"


def test_notes_render_the_sentences_students_read():
    assert note_text(missing_test_cell("test_entropy")) == \
        "The test cell `test_entropy` is missing from the submission, so its check scores 0."
    assert note_text(stopped_early("cell 3 ran past the time limit")) == \
        "Execution stopped early: cell 3 ran past the time limit. Checks after that point score 0."
    cell = grading_notes_cell([unreadable_notebook("losses", "it is not valid JSON (line 1, column 2)"),
                               missing_test_cell("test_a|b")])
    assert cell.source.startswith("## Grading notes\n\n- losses.ipynb could not be read as a Jupyter notebook")
    assert "`test\\_a\\|b`" not in cell.source and "\\`test_a\\|b\\`" in cell.source  # quoted: no code span, no table cell


# --------------------------------------------------------------------------- the report reads data

def test_the_report_reads_reasons_and_notes_from_the_data_never_from_the_text():
    failed = graded_cell("test_kl")
    write_verdict(failed, CellVerdict.of([Verdict(False, SWAPPED + "; and more"), Verdict(False, "other")], "cpu"))
    passed = graded_cell("test_softmax")
    write_verdict(passed, CellVerdict.of([Verdict(True, "ok")]))
    manual = nbformat.v4.new_markdown_cell("answer")
    manual.metadata["nbgrader"] = {"grade": True, "solution": True, "grade_id": "explain", "points": 1}
    nb = nbformat.v4.new_notebook(cells=[failed, passed, manual])
    nb.metadata["course"] = {"notes": [missing_test_cell("test_entropy"), stopped_early("cell 2 ran too long"),
                                       missing_test_cell("test_softmax"), {"kind": "made up"}]}
    failed.outputs[-1].evalue = "reworded text the report must not parse"
    reasons, notes = verdict_reasons(nb)
    assert reasons == {"test_kl": SWAPPED + "; and more", "test_softmax": SCORED_BY_HAND, "explain": SCORED_BY_HAND}
    assert condensed_note_texts(notes, ["losses: the worker failed; executed here instead"]) == [
        "Execution stopped early: cell 2 ran too long. Checks after that point score 0.",
        "losses: the worker failed; executed here instead",
        "Test cells missing from the submission (scored 0): test_entropy, test_softmax."]


def test_a_long_reason_is_shortened_in_the_report():
    cell = graded_cell()
    write_verdict(cell, CellVerdict.of([Verdict(False, "x" * 300)]))
    reasons, _ = verdict_reasons(nbformat.v4.new_notebook(cells=[cell]))
    assert reasons["test_kl"] == "x" * 157 + "..."


# --------------------------------------------------------------------------- only the grader writes the data

def test_a_verdict_or_note_forged_in_a_submission_is_dropped_when_sanitizing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])  # nbgrader runs alembic
    db_url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with Gradebook(db_url) as gradebook:
        gradebook.add_assignment("a")
        gradebook.add_notebook("losses", "a")
        gradebook.add_grade_cell("test_kl", "losses", "a", max_score=2, cell_type="code")
        gradebook.add_source_cell("test_kl", "losses", "a", cell_type="code", locked=True, source="", checksum="")
    forged = graded_cell()
    forged.metadata["course"] = {"verdict": {"cases": [{"passed": True, "message": "ok"}], "device": None}}
    note = nbformat.v4.new_markdown_cell("## Grading notes")
    note.metadata["course"] = {"notes": [stopped_early("forged")]}
    nb = nbformat.v4.new_notebook(cells=[forged, note])
    nb.metadata["course"] = {"notes": [stopped_early("forged")]}
    resources = {"nbgrader": {"db_url": db_url, "notebook": "losses", "assignment": "a", "student": "s"}}
    nb, _ = RestoreCellMetadata().preprocess(nb, resources)
    assert read_verdict(nb.cells[0]) is None and read_notes(nb) == []
    assert "course" not in nb.cells[1].metadata and nb.cells[0].metadata["nbgrader"]["grade_id"] == "test_kl"
    unreadable = unreadable_notebook("losses", "it is not valid JSON")  # the grader's own note, through resources
    nb, _ = RestoreCellMetadata().preprocess(nb, {**resources, "course": {"notes": [unreadable]}})
    assert read_notes(nb) == [unreadable]


def test_the_gate_for_what_a_student_may_show_keeps_no_grader_data_on_a_students_cell():
    cell = nbformat.v4.new_markdown_cell("hello")
    cell.metadata["course"] = {"verdict": {"cases": [{"passed": True, "message": "ok"}]}}
    assert read_verdict(safe_cell(cell)) is None


# --------------------------------------------------------------------------- incremental regrading

def fingerprint(tmp_path, **changes):
    settings = {"limits": {"cell_seconds": 120.0}, "bubblewrap": True, "nbgrader": "0.9", "db": "sqlite://", "course": "c"}
    return assignment_fingerprint({**settings, **changes}, [tmp_path / "checks.json", tmp_path / "absent.json"])


def test_the_digest_changes_with_the_submission_the_checks_and_the_settings_only(tmp_path):
    (tmp_path / "checks.json").write_text('{"test_kl": []}')
    folder = tmp_path / "submitted"
    folder.mkdir()
    (folder / "losses.ipynb").write_text("{}")
    base = submission_digest(fingerprint(tmp_path), folder)
    assert submission_digest(fingerprint(tmp_path), folder) == base  # the same inputs: the same digest
    (folder / "losses.ipynb").touch()  # a new modification time, the same bytes
    assert submission_digest(fingerprint(tmp_path), folder) == base
    assert submission_digest(fingerprint(tmp_path, limits={"cell_seconds": 60.0}), folder) != base
    assert submission_digest(fingerprint(tmp_path, bubblewrap=False), folder) != base
    (folder / "losses.ipynb").write_text('{"cells": []}')
    resubmitted = submission_digest(fingerprint(tmp_path), folder)
    assert resubmitted != base
    (folder / "data.csv").write_text("1,2\n")  # another file of the submission
    assert submission_digest(fingerprint(tmp_path), folder) != resubmitted
    (tmp_path / "checks.json").write_text('{"test_kl": [1]}')
    assert fingerprint(tmp_path) != fingerprint(tmp_path.parent)  # the checks' bytes count


def test_the_state_is_kept_per_gradebook_and_an_unreadable_file_means_grading_again(tmp_path):
    path, warnings = tmp_path / ".course" / "grade-state.json", []
    state = GradeState(path, "sqlite:///a.db", warnings.append)
    state.remember("a2", "jane", "d1")
    state.save()
    assert GradeState(path, "sqlite:///a.db", warnings.append).is_current("a2", "jane", "d1")
    assert not GradeState(path, "sqlite:///a.db", warnings.append).is_current("a2", "jane", "d2")
    assert not GradeState(path, "postgresql://h/b", warnings.append).is_current("a2", "jane", "d1")
    state.forget("a2", "jane")
    state.save()
    assert not GradeState(path, "sqlite:///a.db", warnings.append).is_current("a2", "jane", "d1")
    assert not warnings
    path.write_text("{ not json")
    assert GradeState(path, "sqlite:///a.db", warnings.append).submissions == {}
    assert len(warnings) == 1 and "is unreadable" in warnings[0] and str(path) in warnings[0]


# --------------------------------------------------------------------------- gradebook URLs

@pytest.mark.parametrize("url, expected", [
    ("postgresql://grader@db-host:5433/prob2loss", "postgresql+psycopg2://grader@db-host:5433/prob2loss"),
    ("postgres://grader:s%40cret@db-host/prob2loss", "postgresql+psycopg2://grader:s%40cret@db-host/prob2loss"),
    ("postgresql+psycopg2://grader@db-host/prob2loss", "postgresql+psycopg2://grader@db-host/prob2loss"),
    ("sqlite:////course/gradebook.db", "sqlite:////course/gradebook.db"),
    ("not a url", "not a url"),
])
def test_a_postgresql_gradebook_url_gets_the_installed_driver(url, expected):
    assert gradebook_url(url) == expected
