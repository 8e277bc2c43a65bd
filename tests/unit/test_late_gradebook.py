"""The late-penalty step (course/late.py, ``ApplyLatePolicy``) against a real SQLite gradebook, no kernel."""
import os
import sys
from datetime import datetime
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook
from traitlets.config import Config

from course.late import ApplyLatePolicy

DUE = datetime(2026, 10, 5, 23, 59)


def gradebook_with_a_late_submission(tmp_path, gradebook_copy):
    """hw, due 2026-10-05 23:59 UTC; jane's earlier submission was on time, scored 10 of 10."""
    url = gradebook_copy(tmp_path)
    with Gradebook(url) as gradebook:
        gradebook.update_or_create_assignment("hw", duedate=DUE)
        gradebook.update_or_create_notebook("nb", "hw")
        gradebook.update_or_create_grade_cell("q1", "nb", "hw", max_score=10, cell_type="code")
        gradebook.update_or_create_student("jane")
        gradebook.update_or_create_submission("hw", "jane", timestamp="2026-10-05 20:00:00")
        gradebook.find_grade("q1", "nb", "hw", "jane").auto_score = 10
        gradebook.db.commit()
    return url


def apply_policy(url, root, **policy):
    step = ApplyLatePolicy(config=Config({"LatePolicy": policy, "CourseDirectory": {"root": str(root)}}))
    # nbgrader's autograde pass reads the copy in autograded/, which may keep an older timestamp.txt
    resources = {"nbgrader": {"db_url": url, "assignment": "hw", "student": "jane", "notebook": "nb"},
                 "metadata": {"path": str(root / "autograded" / "jane" / "hw")}}
    step.preprocess(nbformat.v4.new_notebook(), resources)
    with Gradebook(url) as gradebook:
        submission = gradebook.find_submission("hw", "jane")
        return submission.timestamp, gradebook.find_submission_notebook("nb", "hw", "jane").late_submission_penalty


def test_a_resubmission_without_a_time_is_not_graded_by_the_earlier_ones(tmp_path, monkeypatch, gradebook_copy):
    """nbgrader keeps the gradebook's time when the new submission has no timestamp.txt: the policy's rule for a
    submission without a time must apply instead (here: zero), not the on-time stamp of the one it replaced."""
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])  # nbgrader runs alembic
    url = gradebook_with_a_late_submission(tmp_path, gradebook_copy)
    submitted, autograded = tmp_path / "submitted" / "jane" / "hw", tmp_path / "autograded" / "jane" / "hw"
    for folder in (submitted, autograded):
        folder.mkdir(parents=True)
        (folder / "timestamp.txt").write_text("2026-10-05 20:00:00")
    assert apply_policy(url, tmp_path, without_timestamp="zero", penalty_percent=10) == (datetime(2026, 10, 5, 20), None)
    (submitted / "timestamp.txt").unlink()  # the resubmission, collected without a time
    assert apply_policy(url, tmp_path, without_timestamp="zero", penalty_percent=10) == (None, 10.0)
