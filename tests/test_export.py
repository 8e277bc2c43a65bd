"""Grades back into the LMS: `course export` and `nbgrader export --exporter course.export.*` against a real
nbgrader gradebook (SQLite) and roster files in the formats Canvas and Moodle export."""
import csv
import os
import shutil
import sys
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from course.export import RosterError, read_canvas_roster, read_moodle_roster
from grading_support import run_tool

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Canvas: Grades > Export > Export Entire Gradebook (a "Manual Posting" row, then "Points Possible", quoted
# "Last, First" names, read-only score columns, and Canvas's own test student).
CANVAS_ROSTER = """\ufeffStudent,ID,SIS User ID,SIS Login ID,Section,a2-losses (40012),Reading quiz 1 (40013),Current Score,Unposted Current Score,Final Score
    Manual Posting,,,,,,,,,
    Points Possible,,,,,10.00,5.00,(read only),(read only),(read only)
"Smith, Jane",5001,S1001,smithjane,Section 1,,4.00,80.00,80.00,40.00
"Doe, John",5002,S1002,jd77,Section 1,,5.00,100.00,100.00,50.00
"O'Brien, Mary",5003,S1003,mobrien,Section 2,,3.00,60.00,60.00,30.00
"Nguyen, Late",5004,S1004,nguyenlate,Section 2,,,,,
"Student, Test",5999,,,Section 1,,,,,
"""

# Moodle: Grades > Export > Plain text file (comma separated).
MOODLE_ROSTER = """First name,Last name,ID number,Institution,Department,Email address,Assignment: a2-losses (Real),Quiz: Reading quiz 1 (Real),Last downloaded from this course
Jane,Smith,S1001,Uni,Maths,smithjane@example.edu,-,4.00,1700000000
John,Doe,S1002,Uni,Maths,doejohn@example.edu,-,5.00,1700000000
Mary,O'Brien,S1003,Uni,Maths,mobrien@example.edu,-,3.00,1700000000
Late,Nguyen,S1004,Uni,Maths,nguyenlate@example.edu,-,-,1700000000
"""


@pytest.fixture(scope="module")
def graded_course(tmp_path_factory):
    folder = tmp_path_factory.mktemp("graded")
    shutil.copy2(ROOT / "nbgrader_config.py", folder / "nbgrader_config.py")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")  # nbgrader runs alembic
        make_gradebook(folder / "gradebook.db")
    return folder


@pytest.fixture
def course(graded_course, tmp_path):
    shutil.copytree(graded_course, tmp_path, dirs_exist_ok=True)
    return tmp_path


def make_gradebook(path):
    with Gradebook(f"sqlite:///{path}") as gradebook:
        gradebook.add_assignment("a2-losses")
        gradebook.add_notebook("losses", "a2-losses")
        gradebook.add_grade_cell("check", "losses", "a2-losses", max_score=8, cell_type="code")
        gradebook.add_grade_cell("why", "losses", "a2-losses", max_score=2, cell_type="markdown")
        # smithjane (the Canvas file-name id), doejohn (the sortable name of "Doe, John"), nguyenlate (late),
        # mobrien enrolled but never submitted, ghost graded but not enrolled.
        for student, auto, manual, penalty in (("smithjane", 6.5, 2.0, 0.0), ("doejohn", 8.0, 1.0, 0.0),
                                               ("nguyenlate", 8.0, 2.0, 1.5), ("ghost", 3.0, 0.0, 0.0)):
            gradebook.update_or_create_student(student)
            submission = gradebook.add_submission("a2-losses", student)
            gradebook.find_grade("check", "losses", "a2-losses", student).auto_score = auto
            gradebook.find_grade("why", "losses", "a2-losses", student).manual_score = manual
            submission.notebooks[0].late_submission_penalty = penalty
        gradebook.update_or_create_student("mobrien")
        gradebook.db.commit()


def rows(path):
    return list(csv.reader(open(path, encoding="utf-8")))


def test_canvas_file_imports_as_it_is_and_accounts_for_everyone(course):
    (course / "roster.csv").write_text(CANVAS_ROSTER, encoding="utf-8")
    result = run_tool("course", "export", "--lms", "canvas", "--roster", "roster.csv", cwd=course)
    assert result.returncode == 1, result.stderr  # ghost was left out, so a script notices
    table = rows(course / "canvas-grades.csv")
    assert table[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "a2-losses (40012)"]
    assert table[1] == ["Points Possible", "", "", "", "", "10"]
    by_name = {row[0]: row for row in table[2:]}
    assert set(by_name) == {"Smith, Jane", "Doe, John", "O'Brien, Mary", "Nguyen, Late"}  # no test student
    assert by_name["Smith, Jane"][1:] == ["5001", "S1001", "smithjane", "Section 1", "8.5"]
    assert by_name["Doe, John"][-1] == "9"  # matched by the sortable name, as Canvas names uploads
    assert by_name["Nguyen, Late"][-1] == "8.5"  # 10 less the 1.5 late penalty
    assert by_name["O'Brien, Mary"][-1] == "0"
    assert "no submission: O'Brien, Mary, a2-losses (0)" in result.stdout
    assert "NOT IN THE ROSTER, left out: ghost" in result.stdout


def test_blank_for_no_submission_and_a_new_assignment_keeps_its_id(course):
    (course / "roster.csv").write_text(CANVAS_ROSTER.replace("a2-losses (40012)", "Homework 9 (40012)"), encoding="utf-8")
    result = run_tool("course", "export", "--lms", "canvas", "--roster", "roster.csv", "--missing", "blank",
                      "--to", "out.csv", cwd=course)
    table = rows(course / "out.csv")
    assert table[0][-1] == "a2-losses"  # Canvas creates the assignment
    assert {row[0]: row[-1] for row in table[2:]}["O'Brien, Mary"] == ""
    assert result.returncode == 1


def test_plain_nbgrader_export_writes_the_same_file(course):
    (course / "roster.csv").write_text(CANVAS_ROSTER, encoding="utf-8")
    run_tool("course", "export", "--lms", "canvas", "--roster", "roster.csv", "--to", "course.csv", cwd=course)
    result = run_tool("nbgrader", "export", "--exporter", "course.export.CanvasExportPlugin",
                      "--CanvasExportPlugin.roster=roster.csv", "--to", "nbgrader.csv", cwd=course)
    assert result.returncode == 0, result.stderr
    assert rows(course / "nbgrader.csv") == rows(course / "course.csv")
    assert "ghost is not in the roster" in result.stderr


def test_moodle_file_matches_by_email_and_names_columns_as_the_grade_items(course):
    (course / "moodle.csv").write_text(MOODLE_ROSTER, encoding="utf-8")
    result = run_tool("course", "export", "--lms", "moodle", "--roster", "moodle.csv", cwd=course)
    table = rows(course / "moodle-grades.csv")
    assert table[0] == ["First name", "Last name", "ID number", "Email address", "Assignment: a2-losses (Real)"]
    scores = {row[3]: row[-1] for row in table[1:]}
    assert scores == {"smithjane@example.edu": "8.5", "doejohn@example.edu": "9", "mobrien@example.edu": "0",
                      "nguyenlate@example.edu": "8.5"}
    assert result.returncode == 1 and "ghost" in result.stdout


@pytest.mark.parametrize("text, problem", [
    ("", "empty"),
    ("Name,Score\nJane,3\n", "not a Canvas gradebook export: no column 'Student'"),
])
def test_a_bad_roster_is_named_with_what_is_wrong(tmp_path, text, problem):
    path = tmp_path / "roster.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RosterError, match=problem) as error:
        read_canvas_roster(path, ["a2-losses"])
    assert str(path) in str(error.value)
    with pytest.raises(RosterError, match="not a Moodle grade export"):
        read_moodle_roster(path, ["a2-losses"])


def test_a_roster_that_is_not_text_or_missing_stops_the_command_with_its_name(course):
    (course / "roster.csv").write_bytes(b"\xff\xfe\x00binary")
    result = run_tool("course", "export", "--lms", "canvas", "--roster", "roster.csv", cwd=course)
    assert result.returncode == 2 and "roster.csv: not UTF-8 text" in result.stderr
    result = run_tool("course", "export", "--lms", "canvas", "--roster", "nowhere.csv", cwd=course)
    assert result.returncode == 2 and "nowhere.csv: no such file" in result.stderr
    (course / "a-folder.csv").mkdir()
    result = run_tool("course", "export", "--lms", "canvas", "--roster", "a-folder.csv", cwd=course)
    assert result.returncode == 2 and "a-folder.csv: a folder, not the roster's CSV file" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (course / "canvas-grades.csv").exists()


def test_a_grades_file_that_cannot_be_written_stops_the_command_with_its_name(course):
    (course / "canvas.csv").write_text(CANVAS_ROSTER, encoding="utf-8")
    result = run_tool("course", "export", "--lms", "canvas", "--roster", "canvas.csv", "--to", "no-such-folder/grades.csv",
                      cwd=course)
    assert result.returncode == 2 and "no-such-folder/grades.csv: cannot write the grades file" in result.stderr
    assert "Traceback" not in result.stderr


def test_one_person_under_two_ids_with_submissions_is_left_blank_and_listed(course):
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:  # Jane's ID number, graded as well
        gradebook.update_or_create_student("s1001")
        gradebook.add_submission("a2-losses", "s1001")
        gradebook.find_grade("check", "losses", "a2-losses", "s1001").auto_score = 2.0
        gradebook.db.commit()
    (course / "moodle.csv").write_text(MOODLE_ROSTER, encoding="utf-8")
    result = run_tool("course", "export", "--lms", "moodle", "--roster", "moodle.csv", cwd=course)
    scores = {row[3]: row[-1] for row in rows(course / "moodle-grades.csv")[1:]}
    assert scores["smithjane@example.edu"] == "" and scores["doejohn@example.edu"] == "9"
    assert result.returncode == 1 and "TWO IDS WITH SUBMISSIONS, blank: Jane Smith, a2-losses" in result.stdout


def test_points_graded_by_hand_after_autograding_are_penalised_too(course):
    from datetime import datetime

    with (course / "nbgrader_config.py").open("a") as config:
        config.write('\nc.LatePolicy.due = {"a2-losses": "2026-10-05 23:59 UTC"}\nc.LatePolicy.zero_after_hours = 72\n')
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        gradebook.find_assignment("a2-losses").duedate = datetime(2026, 10, 5, 23, 59)
        gradebook.find_submission("a2-losses", "nguyenlate").timestamp = datetime(2026, 10, 10, 12, 0)  # 4.5 days late
        gradebook.find_submission("a2-losses", "smithjane").timestamp = datetime(2026, 10, 5, 20, 0)
        gradebook.db.commit()
    (course / "roster.csv").write_text(CANVAS_ROSTER, encoding="utf-8")
    result = run_tool("course", "export", "--lms", "canvas", "--roster", "roster.csv", cwd=course)
    by_name = {row[0]: row[-1] for row in rows(course / "canvas-grades.csv")[2:]}
    assert by_name["Nguyen, Late"] == "0"  # its 2 written points, graded by hand, are gone with the rest
    assert by_name["Smith, Jane"] == "8.5" and result.returncode == 1


def test_a_due_date_set_in_the_config_after_grading_applies_to_the_export(course):
    from datetime import datetime

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:  # graded with no due date
        assert gradebook.find_assignment("a2-losses").duedate is None
        gradebook.find_submission("a2-losses", "nguyenlate").timestamp = datetime(2026, 10, 10, 12, 0)
        gradebook.find_submission("a2-losses", "smithjane").timestamp = datetime(2026, 10, 5, 20, 0)
        gradebook.db.commit()
    with (course / "nbgrader_config.py").open("a") as config:
        config.write('\nc.LatePolicy.due = {"a2-losses": "2026-10-05 23:59 UTC"}\nc.LatePolicy.zero_after_hours = 72\n')
    (course / "roster.csv").write_text(CANVAS_ROSTER, encoding="utf-8")
    run_tool("course", "export", "--lms", "canvas", "--roster", "roster.csv", cwd=course)
    by_name = {row[0]: row[-1] for row in rows(course / "canvas-grades.csv")[2:]}
    assert by_name["Nguyen, Late"] == "0" and by_name["Smith, Jane"] == "8.5"  # 4.5 days late: past the cutoff


def test_two_columns_for_one_assignment_stop_the_export(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text(CANVAS_ROSTER.replace("Reading quiz 1 (40013)", "a2-losses (40099)"), encoding="utf-8")
    with pytest.raises(RosterError, match="2 columns for a2-losses"):
        read_canvas_roster(path, ["a2-losses"])


def test_exporting_before_anything_is_graded_says_so(tmp_path):
    shutil.copy2(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    (tmp_path / "roster.csv").write_text(CANVAS_ROSTER, encoding="utf-8")
    result = run_tool("course", "export", "--lms", "canvas", "--roster", "roster.csv", cwd=tmp_path)
    assert result.returncode == 2 and "no assignment yet" in result.stderr


def test_a_submission_whose_last_grading_failed_is_left_blank_and_listed(course):
    """nbgrader keeps the gradebook's earlier scores when grading a new submission fails; course grade's state
    says it failed, and the export must not pass the earlier score on as this submission's."""
    from course.config import load_config
    from course.incremental import GradeState
    from nbgrader.coursedir import CourseDirectory

    (course / "roster.csv").write_text(CANVAS_ROSTER, encoding="utf-8")
    db_url = CourseDirectory(config=load_config(course)).db_url
    state = GradeState(course / ".course" / "grade-state.json", db_url, warn=pytest.fail)
    state.remember_failure("a2-losses", "smithjane", "the sandboxed kernel could not start")
    state.save()
    result = run_tool("course", "export", "--lms", "canvas", "--roster", "roster.csv", cwd=course)
    assert result.returncode == 1
    by_name = {row[0]: row for row in rows(course / "canvas-grades.csv")[2:]}
    assert by_name["Smith, Jane"][-1] == "" and by_name["Doe, John"][-1] == "9"
    assert ("LAST GRADING FAILED, blank (run course grade again): Smith, Jane, a2-losses "
            "(the sandboxed kernel could not start)") in result.stdout
    plain = run_tool("nbgrader", "export", "--exporter", "course.export.CanvasExportPlugin",
                     "--CanvasExportPlugin.roster=roster.csv", "--to", "nbgrader.csv", cwd=course)
    assert plain.returncode == 0, plain.stderr
    assert rows(course / "nbgrader.csv") == rows(course / "canvas-grades.csv")  # blank there too
    assert "the last grading failed" in plain.stderr

    state = GradeState(course / ".course" / "grade-state.json", db_url, warn=pytest.fail)
    state.remember("a2-losses", "smithjane", "digest of the submission graded since")
    state.save()
    result = run_tool("course", "export", "--lms", "canvas", "--roster", "roster.csv", cwd=course)
    assert {row[0]: row for row in rows(course / "canvas-grades.csv")[2:]}["Smith, Jane"][-1] == "8.5"
    assert "LAST GRADING FAILED" not in result.stdout
