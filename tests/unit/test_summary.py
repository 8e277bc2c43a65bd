"""The summary that ends a ``course grade`` run (``course.report.summary_lines``), read from a ``RunSummary`` and the
runs' submissions, with the scores from a real SQLite gradebook; no kernel."""

import pytest
from nbgrader.api import Gradebook
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config

from course.collect import Collected, Problem
from course.plan import AssignmentRun, Status, Submission
from course.report import RunSummary, summary_lines

pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")  # nbgrader's own session use


@pytest.fixture
def course(tmp_path, gradebook_copy):
    """hw (one cell of 10 points): al scored 8; bo 4, less a late penalty of 1; cy's last grading failed (an
    earlier submission's 9 points stay in the gradebook, and are no grade of cy's)."""
    url = gradebook_copy(tmp_path)
    with Gradebook(url, "prob2loss") as gradebook:
        gradebook.update_or_create_assignment("hw")
        gradebook.update_or_create_notebook("nb", "hw")
        gradebook.update_or_create_grade_cell("q1", "nb", "hw", max_score=10, cell_type="code")
        for student, score in {"al": 8, "bo": 4, "cy": 9}.items():
            gradebook.update_or_create_student(student)
            gradebook.update_or_create_submission("hw", student)
            gradebook.find_grade("q1", "nb", "hw", student).auto_score = score
        gradebook.find_submission_notebook("nb", "hw", "bo").late_submission_penalty = 1
        gradebook.db.commit()
    config = Config()
    config.CourseDirectory.root = str(tmp_path)
    config.CourseDirectory.db_url = url
    config.CourseDirectory.course_id = "prob2loss"
    return tmp_path, CourseDirectory(config=config)


def summary(course, only=None):
    root, coursedir = course
    return RunSummary(root=root, coursedir=coursedir, db_url=coursedir.db_url, report_directory=root / "reports",
                      csv_path=root / "grades.csv", log_path=root / "reports" / "grade.log", feedback=True,
                      workers="2 local worker processes", failures={"hw": {"cy": "the kernel died"}},
                      only=only, seconds=12.0)


def hw_run(root, statuses):
    run = AssignmentRun("hw", ["nb"], {}, (), b"", ())
    run.collected = Collected(problems=[Problem("export.zip/zed_hw.txt", "not a notebook", "zed")])
    run.report = root / "reports" / "hw" / "report.md"
    for student, status in statuses.items():
        run.submissions.append(Submission("hw", student, [], status=status,
                                          reason="timed out" if status == Status.FAILED else ""))
    return run


def test_the_summary_counts_each_status_and_lists_every_failure_with_its_reason(course):
    run = hw_run(course[0], {"al": Status.GRADED, "bo": Status.UNCHANGED, "di": Status.FAILED})
    assert summary_lines(summary(course), [run]) == [
        "",
        "course grade: 1 submission(s) graded in 12.0 s (12.00 s per submission, 2 local worker processes)",
        "assignment  found  graded  unchanged  failed  problems  mean score  " + "report".ljust(20),
        "hw              3       1          1       2         1  5.5 / 10    reports/hw/report.md",
        "grades: grades.csv   feedback: feedback/*/*   log: reports/grade.log",
        "failed: di/hw: timed out",
        "failed: cy/hw: the kernel died (an earlier run)",
    ]


def test_a_one_student_regrade_says_that_students_score_not_the_class_mean(course):
    run = hw_run(course[0], {"bo": Status.GRADED})
    lines = summary_lines(summary(course, only=frozenset({"bo"})), [run])
    assert lines[2:4] == ["assignment  found  graded  unchanged  failed  problems  score     " + "report".ljust(20),
                          "hw              1       1          0       0         1  3.0 / 10  reports/hw/report.md"]
    assert not any(line.startswith("failed:") for line in lines)  # cy's earlier failure is not bo's
