"""The recording stage's feedback batches (``course.recording.Recorder``) and the run's environment
(``course.grade.nbgrader_environment``), no kernel.

nbgrader's ``GenerateFeedback`` itself runs in the graded-course tests; here its one call, ``Recorder.feedback``,
writes down which students each batch holds, so that what is batched, when, and what a failure marks is seen."""
import io
import logging
import os
import sys
import warnings
from pathlib import Path

import pytest
from nbgrader.coursedir import CourseDirectory
from sqlalchemy.exc import SAWarning
from traitlets.config import Config

from course.grade import nbgrader_environment
from course.incremental import GradeState
from course.plan import AssignmentRun, RunContext, Status, Submission
from course.recording import FEEDBACK_BATCH, Recorder


class BatchesWritten(Recorder):
    def __init__(self, context, failing=()):
        super().__init__(context, GradeState(context.root / "state.json", "sqlite://", context.warn), Config())
        self.batches, self.failing = [], set(failing)

    def feedback(self, assignment, students):
        self.batches.append((assignment, sorted(students)))
        return set(students) & self.failing


@pytest.fixture
def context(tmp_path):
    config = Config()
    config.CourseDirectory.root = str(tmp_path)
    return RunContext(tmp_path, config, CourseDirectory(config=config), logging.getLogger("test-recording"),
                      io.StringIO())


def submission(assignment, student, status=Status.GRADED):
    return Submission(assignment, student, [Path("nb.ipynb")], status=status)


def test_feedback_waits_for_a_full_batch_while_the_workers_are_busy(context):
    recorder = BatchesWritten(context)
    queued = [submission("a1", "al"), submission("a2", "al"), submission("a1", "bo")]
    recorder.feedback_queue.extend(queued)
    recorder.idle()
    assert recorder.batches == [] and len(recorder.feedback_queue) == FEEDBACK_BATCH - 1
    recorder.feedback_queue.append(submission("a1", "cy"))
    recorder.idle()
    # one converter per assignment, in the order the assignments were first queued
    assert recorder.batches == [("a1", ["al", "bo", "cy"]), ("a2", ["al"])] and recorder.feedback_queue == []
    recorder.flush()
    assert len(recorder.batches) == 2  # nothing left to write


def test_feedback_that_cannot_be_written_marks_that_submission_only(context):
    recorder = BatchesWritten(context, failing={"bo"})
    al, bo = submission("a1", "al"), submission("a1", "bo")
    recorder.feedback_queue.extend([al, bo])
    recorder.flush()
    assert (al.feedback_failed, bo.feedback_failed) == (False, True)
    assert bo.reason == "feedback failed (see reports/grade.log)" and al.reason == ""
    assert context.out.getvalue() == "WARNING bo/a1: feedback failed (see reports/grade.log)\n"


def test_unchanged_submissions_get_feedback_only_where_it_is_missing_or_older_than_their_grading(context):
    root = context.root
    run = AssignmentRun("a1", ["nb"], {}, (), b"", ())
    run.submissions = [submission("a1", student, Status.UNCHANGED) for student in ("al", "bo", "cy")]
    run.submissions.append(submission("a1", "di", Status.GRADED))  # graded now: its feedback is queued already
    for student in ("al", "bo", "cy", "di"):
        (root / "autograded" / student / "a1").mkdir(parents=True)
        (root / "autograded" / student / "a1" / "nb.ipynb").write_text("{}")
    for student, age in {"al": 0, "bo": 100}.items():  # cy has none
        html = root / "feedback" / student / "a1" / "nb.html"
        html.parent.mkdir(parents=True)
        html.write_text("<html></html>")
        graded = (root / "autograded" / student / "a1" / "nb.ipynb").stat().st_mtime
        os.utime(html, (graded - age, graded - age))
    recorder = BatchesWritten(context)
    recorder.feedback_for_unchanged(run)
    assert recorder.batches == [("a1", ["bo", "cy"])]
    recorder.make_feedback = False  # --no-feedback
    recorder.feedback_for_unchanged(run)
    assert len(recorder.batches) == 1


def test_the_run_environment_is_the_runs_only(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin")
    tools = str(Path(sys.executable).parent)
    before = warnings.filters[:]
    with nbgrader_environment():
        assert os.environ["PATH"].split(os.pathsep) == [tools, "/usr/bin"]  # nbgrader finds alembic beside Python
        with warnings.catch_warnings(record=True) as shown:  # the filters in force, every warning they let through
            warnings.warn("nbgrader's session use", SAWarning)
            warnings.warn("anything else", UserWarning)
        assert [str(w.message) for w in shown] == ["anything else"]
    assert os.environ["PATH"] == "/usr/bin" and warnings.filters == before
