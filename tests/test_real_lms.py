"""A class through a real LMS, end to end with the documented commands (INSTRUCTORS.md): `course grade --lms`,
`--submission-times`, `course export`, `course similarity`, on downloads built by the LMSs' own naming rules
(tests/unit/test_lms.py has them: Canvas lib/content_zipper.rb, Moodle mod/assign/locallib.php), real kernels
in the sandbox, and every row of the file to import checked.

Each class has Unicode names, namesakes, a late file with its time supplied and one without, a resubmission, a
student with no file, one whose two files leave the choice to the instructor, and names that start like formulas.
"""
import csv
import json

import nbformat
import pytest
from nbgrader.api import Gradebook

from grading_support import (KL_SWAPPED, canvas_name, course_grade, make_course, max_points, moodle_prefix, nbgrader,
                             replace_function, run_tool, scores, solution_notebook, student_version, written_points,
                             zipped)

pytestmark = [pytest.mark.slow]

ASSIGNMENT = "a2-losses"
LATE_POLICY = """
c.LatePolicy.due = {"a2-losses": "2026-10-05 23:59 UTC"}
c.LatePolicy.penalty_percent = 10
c.LatePolicy.period = "day"
c.LatePolicy.cap_percent = 50
"""


def correct():
    return nbformat.writes(student_version(solution_notebook(ASSIGNMENT)))


def mistake():
    return nbformat.writes(replace_function(student_version(solution_notebook(ASSIGNMENT)), "kl_divergence", KL_SWAPPED))


def rows(path):
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.reader(stream))


def number(value):
    return f"{value:g}"


def summary_table(stdout):
    """The summary's header and its row for the assignment."""
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("assignment "))
    return lines[header].split(), lines[header + 1].split()


# Canvas: Grades > Export, as lib/gradebook_exporter.rb writes it: a name that starts with "=" as ="<name>"
# (student_name); other names as they are.
CANVAS_ROSTER = [
    ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "a2-losses (40012)", "Current Score"],
    ["    Points Possible", "", "", "", "", "10.00", "(read only)"],
    ["Müller, Jürgen", "4711", "S4711", "jmueller", "Section 1", "", ""],
    ["Wang, Wei", "5001", "S5001", "wwang1", "Section 1", "", ""],
    ["Wang, Wei", "5002", "5001", "wwang2", "Section 2", "", ""],  # a namesake whose SIS id is the other's Canvas id
    ["Ωμέγα, Άλφα", "5004", "S5004", "aomega", "Section 2", "", ""],
    ['="=2+5"', "5005", "S5005", "formula", "Section 2", "", ""],
    ["Resub, Rita", "5006", "S5006", "rresub", "Section 1", "", ""],
    ["Nobody, Ned", "5007", "S5007", "nnobody", "Section 1", "", ""],
    ["Twice, Tom", "5008", "S5008", "ttwice", "Section 1", "", ""],
    ["Bidi, Bea", "5009", "S5009", "bbidi", "Section 1", "", ""],
    ["+Plus, Pia", "5010", "S5010", "@pia", "Section 1", "", ""],
]


def test_a_canvas_class_from_download_to_import(tmp_path):
    course = make_course(tmp_path / "course", LATE_POLICY)
    download = {
        canvas_name("Müller, Jürgen", 4711, 90001, "losses.ipynb"): correct(),
        canvas_name("Wang, Wei", 5001, 90002, "losses.ipynb"): correct(),
        canvas_name("Wang, Wei", 5002, 90003, "losses.ipynb", late=True): mistake(),  # late, its time supplied
        canvas_name("Ωμέγα, Άλφα", 5004, 90004, "losses.ipynb", late=True): correct(),  # late, no time for it
        canvas_name("=2+5", 5005, 90005, "losses.ipynb"): correct(),
        canvas_name("Resub, Rita", 5006, 90006, "losses-1.ipynb"): correct(),  # uploaded again: Canvas renames it
        canvas_name("Twice, Tom", 5008, 90008, "losses.ipynb"): correct(),
        canvas_name("Twice, Tom", 5008, 90009, "losses-1.ipynb"): mistake(),  # two files in one attempt
        canvas_name("Bidi, Bea", 5009, 90010, "losses\u202ebynpi.ipynb"): correct(),  # a display name with an override
        canvas_name("+Plus, Pia", 5010, 90011, "work.zip", late=True): zipped({
            "losses.ipynb": correct(), "timestamp.txt": "2026-10-01 10:00:00"}),  # late; her own "time" counts for nothing
    }
    assert "müllerjürgen_4711_90001_losses.ipynb" in download and "wangwei_LATE_5002_90003_losses.ipynb" in download
    export = tmp_path / "submissions.zip"
    export.write_bytes(zipped(download))
    # GET /api/v1/courses/:course/assignments/:assignment/submissions, saved as JSON (INSTRUCTORS.md)
    api = [{"user_id": 4711, "submitted_at": "2026-10-05T20:00:00Z", "late": False},
           {"user_id": 5001, "submitted_at": "2026-10-05T23:00:00Z", "late": False},
           {"user_id": 5002, "submitted_at": "2026-10-07T11:59:00Z", "late": True},  # 1.5 days: 2 started days, 20%
           {"user_id": 5005, "submitted_at": "2026-10-04T09:00:00+02:00", "late": False},
           {"user_id": 5006, "submitted_at": "2026-10-05T23:30:00Z", "late": False},
           {"user_id": 5007, "submitted_at": None, "late": False},
           {"user_id": 5010, "submitted_at": "2026-10-06T12:00:00Z", "late": True}]
    (tmp_path / "submissions.json").write_text(json.dumps(api))

    result = course_grade(course, ASSIGNMENT, "--lms", "canvas", "--submissions", str(export),
                          "--submission-times", str(tmp_path / "submissions.json"), "--workers", "2")
    assert result.returncode == 1, result.stdout  # files to look at
    got = {student: value["_total"] for student, value in scores(course, ASSIGNMENT).items()}
    points = sum(max_points(ASSIGNMENT).values())
    assert got == {"canvas-4711": points, "canvas-5001": points, "canvas-5002": points - 2, "canvas-5004": points,
                   "canvas-5005": points, "canvas-5006": points, "canvas-5010": points}
    stamp = course / "submitted" / "canvas-5010" / ASSIGNMENT / "timestamp.txt"
    assert stamp.read_text() == "2026-10-06 12:00:00"  # the LMS's time, not the timestamp.txt in her zip
    # nbgrader's own path reads what was collected: her submission autograded again by stock `nbgrader autograde`
    # keeps the LMS's time, and its late penalty (the export below)
    nbgrader(course, "autograde", ASSIGNMENT, "--force", "--student=canvas-5010")
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        assert gradebook.find_submission(ASSIGNMENT, "canvas-5010").timestamp.strftime("%F %T") == "2026-10-06 12:00:00"
    # one problem for the one submission without a time, saying the rule that applied (the largest penalty)
    no_time = [line for line in result.stdout.splitlines() if "no submission time" in line]
    assert len(no_time) == 1 and "canvas-5004" in no_time[0] and "largest penalty, 50%" in no_time[0], result.stdout
    assert "\u202e" not in result.stdout and "\\u202e" in result.stdout
    report = (course / "reports" / ASSIGNMENT / "report.md").read_text()
    assert "\u202e" not in report and "u202e" in report
    header, row = summary_table(result.stdout)
    assert row[header.index("failed")] == "0"  # nothing failed to grade; the files not collected are problems
    failed_section = report.split("## Submissions that failed to grade")[1].split("##")[0]
    assert "None" in failed_section and "5008" not in failed_section
    assert "canvas-5008" in report.split("## Collection problems")[1]

    (tmp_path / "roster.csv").write_text("".join(
        ",".join('"' + cell.replace('"', '""') + '"' if any(c in cell for c in ',"') else cell for cell in line) + "\n"
        for line in CANVAS_ROSTER), encoding="utf-8")
    exported = run_tool("course", "export", "--lms", "canvas", "--roster", str(tmp_path / "roster.csv"), "--assignment",
                        ASSIGNMENT, "--to", str(tmp_path / "canvas-grades.csv"), cwd=course)
    assert exported.returncode == 1, exported.stdout + exported.stderr  # two students to look at
    table = rows(tmp_path / "canvas-grades.csv")
    assert table[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "a2-losses (40012)"]
    assert table[1] == ["Points Possible", "", "", "", "", number(points + sum(written_points(ASSIGNMENT).values()))]
    expected = {
        "4711": ["Müller, Jürgen", number(points)],
        "5001": ["Wang, Wei", number(points)],
        "5002": ["Wang, Wei", number((points - 2) * 0.8)],  # the namesake: her own score, 20% late
        "5004": ["Ωμέγα, Άλφα", number(points * 0.5)],  # marked LATE, no time: the largest penalty
        "5005": ['="=2+5"', number(points)],  # Canvas's own form, as it came
        "5006": ["Resub, Rita", number(points)],
        "5007": ["Nobody, Ned", "0"],
        "5008": ["Twice, Tom", ""],  # found, not collected: blank, never 0
        "5009": ["Bidi, Bea", ""],
        "5010": ['="+Plus, Pia"', number(points * 0.9)],  # a started day late, by the LMS's time
    }
    assert len(table) == 2 + len(expected)
    for line in table[2:]:
        assert [line[0], line[-1]] == expected[line[1]], line
    assert {line[1]: line[3] for line in table[2:]}["5010"] == '="@pia"'  # a login id that starts with @ too
    out = exported.stdout
    assert "no submission: Nobody, Ned, a2-losses (0)" in out
    assert "FOUND BUT NOT COLLECTED, blank (fix, then course grade again): Twice, Tom" in out
    assert "FOUND BUT NOT COLLECTED, blank (fix, then course grade again): Bidi, Bea" in out
    assert "NOT IN THE ROSTER" not in out

    # a one-student regrade summarises that student
    again = course_grade(course, ASSIGNMENT, "--lms", "canvas", "--submissions", str(export), "--submission-times",
                         str(tmp_path / "submissions.json"), "--student", "canvas-5002")
    header, row = summary_table(again.stdout)
    assert "score" in header and "mean" not in header, again.stdout
    assert f"{(points - 2) * 0.8:.1f} / " in again.stdout, again.stdout

    # similarity: the same numbers from two runs
    first = run_tool("course", "similarity", ASSIGNMENT, "--lms", "canvas", "--submissions", str(export), cwd=course)
    once = (course / "reports" / ASSIGNMENT / "similarity.csv").read_text()
    second = run_tool("course", "similarity", ASSIGNMENT, "--lms", "canvas", "--submissions", str(export), cwd=course)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert (course / "reports" / ASSIGNMENT / "similarity.csv").read_text() == once
    assert "canvas-4711" in once


# Moodle: the grading worksheet (Assignment > View all submissions > Grading action > Download grading worksheet),
# the times' source and the file to upload back.
WORKSHEET_HEADER = ["Identifier", "Full name", "Email address", "Status", "Grade", "Maximum Grade",
                    "Grade can be changed", "Last modified (submission)", "Last modified (grade)", "Feedback comments"]
WORKSHEET = [
    ["Participant 1234567", "Jürgen Müller", "jm@example.edu", "Submitted for grading", "", "10.00", "Yes",
     "Monday, 5 October 2026, 10:00 PM", "-", ""],
    ["Participant 1234568", "Wei Wang", "ww1@example.edu", "Submitted for grading", "", "10.00", "Yes",
     "Monday, 5 October 2026, 11:00 PM", "-", ""],
    ["Participant 1234569", "Wei Wang", "ww2@example.edu", "Submitted for grading", "", "10.00", "Yes",
     "Wednesday, 7 October 2026, 12:30 PM", "-", ""],  # 11:30 UTC on the 7th: 2 started days late
    ["Participant 1234570", '=HYPERLINK("http://x.example","click")', "f@example.edu", "Submitted for grading", "",
     "10.00", "Yes", "Sunday, 4 October 2026, 9:00 AM", "-", ""],
    ["Participant 1234571", "No File", "nf@example.edu", "No submission", "", "10.00", "Yes", "-", "-", ""],
    ["Participant 1234572", "Two Files", "tf@example.edu", "Submitted for grading", "", "10.00", "Yes",
     "Monday, 5 October 2026, 9:00 PM", "-", ""],
    ["Participant 1234573", "Élodie Ŕ", "er@example.edu", "Submitted for grading", "", "10.00", "Yes", "-", "-", ""],
]


def test_a_moodle_class_from_download_to_import(tmp_path):
    course = make_course(tmp_path / "course", LATE_POLICY)
    folder = "_assignsubmission_file_/"
    download = {
        moodle_prefix("Jürgen Müller", 1234567) + folder + "losses.ipynb": correct(),
        moodle_prefix("Wei Wang", 1234568) + folder + "losses.ipynb": correct(),
        moodle_prefix("Wei Wang", 1234569) + folder + "losses.ipynb": mistake(),
        moodle_prefix('=HYPERLINK("http://x.example","click")', 1234570) + folder + "losses.ipynb": correct(),
        moodle_prefix("Two Files", 1234572) + folder + "losses.ipynb": correct(),
        moodle_prefix("Two Files", 1234572) + folder + "losses-1.ipynb": mistake(),
        moodle_prefix("Élodie Ŕ", 1234573) + "_assignsubmission_file_losses.ipynb": correct(),  # flat, and no time
    }
    export = tmp_path / "moodle-download.zip"
    export.write_bytes(zipped(download))
    worksheet = tmp_path / "worksheet.csv"
    with open(worksheet, "w", newline="", encoding="utf-8") as stream:
        csv.writer(stream).writerows([WORKSHEET_HEADER, *WORKSHEET])

    result = course_grade(course, ASSIGNMENT, "--lms", "moodle", "--submissions", str(export), "--submission-times",
                          str(worksheet), "--times-zone", "Europe/London", "--workers", "2")
    assert result.returncode == 1, result.stdout
    points = sum(max_points(ASSIGNMENT).values())
    got = {student: value["_total"] for student, value in scores(course, ASSIGNMENT).items()}
    assert got == {"moodle-1234567": points, "moodle-1234568": points, "moodle-1234569": points - 2,
                   "moodle-1234570": points, "moodle-1234573": points}
    no_time = [line for line in result.stdout.splitlines() if "no submission time" in line]
    assert len(no_time) == 1 and "moodle-1234573" in no_time[0] and "graded as on time" in no_time[0]

    exported = run_tool("course", "export", "--lms", "moodle", "--roster", str(worksheet), "--assignment", ASSIGNMENT,
                        "--to", str(tmp_path / "upload.csv"), cwd=course)
    assert exported.returncode == 1, exported.stdout + exported.stderr
    table = rows(tmp_path / "upload.csv")
    assert table[0] == WORKSHEET_HEADER  # the worksheet as Moodle wrote it, for Upload grading worksheet
    # Moodle reads the Grade against the worksheet's Maximum Grade (10.00 here), not nbgrader's points
    total = points + sum(written_points(ASSIGNMENT).values())

    def on_moodle_scale(score):
        return number(round(score * 10 / total, 2))

    expected = {
        "Participant 1234567": ("Jürgen Müller", on_moodle_scale(points)),
        "Participant 1234568": ("Wei Wang", on_moodle_scale(points)),
        "Participant 1234569": ("Wei Wang", on_moodle_scale((points - 2) * 0.8)),
        "Participant 1234570": ("'=HYPERLINK(\"http://x.example\",\"click\")", on_moodle_scale(points)),
        "Participant 1234571": ("No File", "0"),
        "Participant 1234572": ("Two Files", ""),  # two files: blank and listed, never 0
        "Participant 1234573": ("Élodie Ŕ", on_moodle_scale(points)),  # no time: the policy's rule (on time), said once
    }
    assert len(table) == 1 + len(expected)
    for line, original in zip(table[1:], WORKSHEET):
        grade = line[WORKSHEET_HEADER.index("Grade")]
        assert (line[1], grade) == expected[line[0]], line
        # every other column as Moodle wrote it (its importer compares "Last modified (grade)")
        assert [c for i, c in enumerate(line) if i not in (1, 4)] == [c for i, c in enumerate(original) if i not in (1, 4)]
    assert "FOUND BUT NOT COLLECTED, blank (fix, then course grade again): Two Files" in exported.stdout
    assert "no submission: No File" in exported.stdout

    # a plain regrade (no export read: INSTRUCTORS.md's step after grading by hand) keeps what the export found
    course_grade(course, ASSIGNMENT)
    again = run_tool("course", "export", "--lms", "moodle", "--roster", str(worksheet), "--assignment", ASSIGNMENT,
                     "--to", str(tmp_path / "upload-again.csv"), cwd=course)
    assert again.returncode == 1, again.stdout + again.stderr
    assert {line[0]: line[4] for line in rows(tmp_path / "upload-again.csv")[1:]}["Participant 1234572"] == ""
    assert "FOUND BUT NOT COLLECTED, blank (fix, then course grade again): Two Files" in again.stdout
