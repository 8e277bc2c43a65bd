"""Reading LMS exports as the LMSs write them (no kernel): who a file is, when it was submitted, and CSV cells.

The file names are built by the LMSs' own rules, not by this project's pattern:

* Canvas, instructure/canvas-lms lib/content_zipper.rb: ``get_filename`` joins the sortable name (lower case, every
  character that is not ``[[:word:]]`` dropped: Unicode letters stay), ``LATE`` when late, and the user id; then
  ``add_upload_submission`` appends ``_<attachment id>_<display name>`` (``losses-1.ipynb`` for a file uploaded
  again under its name);
* Moodle, moodle/moodle mod/assign/locallib.php ``download_submissions``: ``fullname()`` with ``_`` as spaces,
  ``_<participant id>``, then ``_assignsubmission_file_/<file>`` (folders, the default) or
  ``_assignsubmission_file_<file>``.
"""
import json
import os
import re
import subprocess
import sys
import unicodedata
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from course.collect import LMS_RECORD, collect
from course.errors import UsageError
from course.lms import canvas_text, csv_cell, read_submission_times
from course.sanitize import escape_hidden, log_text, markdown_text
from grading_support import canvas_name, moodle_prefix, zipped

NOTEBOOK = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def course_dir(tmp_path):
    return SimpleNamespace(root=str(tmp_path / "course"), submitted_directory="submitted")


def record(tmp_path, student):
    return json.loads((tmp_path / "course" / "submitted" / student / "a2" / LMS_RECORD).read_text(encoding="utf-8"))


def test_a_canvas_upload_named_like_another_students_file_counts_for_its_uploader_only(tmp_path):
    """Canvas puts the student's own file name after its ids; a name that imitates another student's ids
    ("x_9999_1_losses.ipynb") must neither land in that student's grade nor shed the uploader's LATE mark."""
    files = {
        canvas_name("Smith, Jane", 4711, 90001, "x_9999_1_losses.ipynb"): NOTEBOOK,
        canvas_name("Victim, Vic", 9999, 90002, "losses.ipynb"): NOTEBOOK,
        canvas_name("Late, Lou", 5005, 90003, "x_5005_1_losses.ipynb", late=True): NOTEBOOK,
    }
    assert "smithjane_4711_90001_x_9999_1_losses.ipynb" in files
    export = tmp_path / "submissions.zip"
    export.write_bytes(zipped(files))
    result = collect(export, "a2", course_dir(tmp_path), {"losses"}, lms="canvas")
    # the victim has their own file and nothing else; Lou's file is Lou's, still marked late by Canvas
    assert sorted(result.students) == ["canvas-5005", "canvas-9999"]
    assert record(tmp_path, "canvas-5005")["marked_late"] is True
    assert [(p.student, p.kind) for p in result.problems] == [("canvas-4711", "other-student")]
    assert "imitates another student's (canvas-9999)" in result.problems[0].reason
    assert result.uncollected() == {"canvas-4711": result.problems[0].reason}


def test_canvas_file_names_unicode_namesakes_late_and_resubmissions(tmp_path):
    files = {
        canvas_name("Müller, Jürgen", 4711, 90001, "losses.ipynb"): NOTEBOOK,
        canvas_name("Wang, Wei", 5001, 90002, "losses.ipynb"): NOTEBOOK,
        canvas_name("Wang, Wei", 5002, 90003, "losses.ipynb", late=True): NOTEBOOK,  # a namesake, late
        canvas_name("O_Brien_7_, Ann", 5003, 90004, "losses-1.ipynb"): NOTEBOOK,  # resubmitted; "_7_" in the name
        canvas_name("Ωμέγα, Άλφα", 5004, 90005, "work.zip"): zipped({"losses.ipynb": NOTEBOOK}),
    }
    assert "müllerjürgen_4711_90001_losses.ipynb" in files and "wangwei_LATE_5002_90003_losses.ipynb" in files
    export = tmp_path / "submissions.zip"
    export.write_bytes(zipped(files))
    result = collect(export, "a2", course_dir(tmp_path), {"losses"}, lms="canvas")
    assert result.problems == []
    assert sorted(result.students) == ["canvas-4711", "canvas-5001", "canvas-5002", "canvas-5003", "canvas-5004"]
    assert result.names["canvas-4711"] == "müllerjürgen" and result.names["canvas-5001"] == "wangwei"
    assert record(tmp_path, "canvas-5002")["marked_late"] is True
    assert record(tmp_path, "canvas-5001")["marked_late"] is False
    assert sorted(result.timeless) == sorted(result.students)  # Canvas never writes a time into a name


def test_moodle_download_in_folders_and_flat(tmp_path):
    folders = {
        f"{moodle_prefix('Jürgen Müller', 1234567)}_assignsubmission_file_/losses.ipynb": NOTEBOOK,
        f"{moodle_prefix('Wei Wang', 1234568)}_assignsubmission_file_/losses.ipynb": NOTEBOOK,
        f"{moodle_prefix('Wei Wang', 1234569)}_assignsubmission_file_/notes.txt": "no notebook",
        f"{moodle_prefix('Ann_Lee', 1234570)}_assignsubmission_file_losses.ipynb": NOTEBOOK,  # the flat form
    }
    export = tmp_path / "moodle.zip"
    export.write_bytes(zipped(folders))
    result = collect(export, "a2", course_dir(tmp_path), {"losses"}, lms="moodle")
    assert sorted(result.students) == ["moodle-1234567", "moodle-1234568", "moodle-1234570"]
    assert result.names["moodle-1234567"] == "Jürgen Müller"
    assert [(p.student, p.kind) for p in result.problems] == [("moodle-1234569", "no-notebook")]
    assert result.uncollected() == {"moodle-1234569": result.problems[0].reason}
    # the same download unpacked into a folder
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(export) as archive:
        archive.extractall(unpacked)
    again = collect(unpacked, "a2", course_dir(tmp_path / "other"), {"losses"}, lms="moodle")
    assert sorted(again.students) == sorted(result.students)


def test_a_time_comes_only_from_what_the_lms_wrote(tmp_path):
    """Issue 23 part 4: a name inside a student's late upload, or a timestamp.txt they put in it, is never a time."""
    pattern = r"^(?P<student_id>[^_]+)_(?P<timestamp>\d{8}T\d{6})_(?P<file_id>{notebooks})\.ipynb$"
    # the student's own zip: a member whose name carries an on-time time, and a timestamp.txt of theirs
    forged = zipped({"lee_20261001T120000_losses.ipynb": NOTEBOOK, "timestamp.txt": "2026-10-01 12:00:00"})
    export = tmp_path / "export"
    export.mkdir()
    (export / "lee_20261009T120000_work.zip").write_bytes(forged)  # the LMS's own name of the upload: late
    (export / "kim_20261009T120000_losses.ipynb").write_text(NOTEBOOK)
    result = collect(export, "a2", course_dir(tmp_path), {"losses"}, pattern=pattern)
    submitted = tmp_path / "course" / "submitted"
    assert sorted(result.students) == ["kim", "lee"], result.problems
    assert (submitted / "kim" / "a2" / "timestamp.txt").read_text() == "2026-10-09 12:00:00"
    assert not (submitted / "lee" / "a2" / "timestamp.txt").exists()  # never the student's own time
    assert "lee" in result.timeless


def test_supplied_times_decide_and_a_missing_time_is_listed(tmp_path):
    files = {canvas_name("Doe, Jane", 11, 1, "losses.ipynb"): NOTEBOOK,
             canvas_name("Roe, Rick", 12, 2, "losses.ipynb", late=True): NOTEBOOK,
             canvas_name("Poe, Pat", 13, 3, "losses.ipynb", late=True): NOTEBOOK}
    export = tmp_path / "export.zip"
    export.write_bytes(zipped(files))
    api = tmp_path / "submissions.json"
    api.write_text(json.dumps([{"user_id": 11, "submitted_at": "2026-10-05T21:59:00Z", "late": False},
                               {"user_id": 12, "submitted_at": "2026-10-07T01:00:00+02:00", "late": True},
                               {"user_id": 13, "submitted_at": None, "late": True},
                               {"user_id": "x", "submitted_at": "2026-10-05T21:59:00Z"}]))
    times = read_submission_times(api, "canvas")
    assert times.problems == [(f"{api}: item 4", "user_id 'x' is not a Canvas user id")]
    result = collect(export, "a2", course_dir(tmp_path), {"losses"}, lms="canvas", times=times)
    submitted = tmp_path / "course" / "submitted"
    assert (submitted / "canvas-11" / "a2" / "timestamp.txt").read_text() == "2026-10-05 21:59:00"
    assert (submitted / "canvas-12" / "a2" / "timestamp.txt").read_text() == "2026-10-06 23:00:00"
    assert not (submitted / "canvas-13" / "a2" / "timestamp.txt").exists() and result.timeless == ["canvas-13"]
    assert record(tmp_path, "canvas-13")["marked_late"] is True
    assert [p.kind for p in result.problems] == ["times"]


def test_canvas_csv_and_moodle_worksheet_times(tmp_path):
    canvas = tmp_path / "canvas.csv"
    canvas.write_text("user_id,submitted_at,late\n11,2026-10-05T21:59:00Z,false\n12,,true\n")
    times = read_submission_times(canvas, "canvas")
    assert times.times == {"canvas-11": __import__("datetime").datetime(2026, 10, 5, 21, 59), "canvas-12": None}
    assert times.late == {"canvas-11": False, "canvas-12": True}
    # Moodle's grading worksheet: userdate() in the downloader's zone, which the file does not say
    worksheet = tmp_path / "worksheet.csv"
    worksheet.write_text("Identifier,Full name,Email address,Status,Grade,Maximum Grade,Grade can be changed,"
                         "Last modified (submission),Last modified (grade),Feedback comments\n"
                         "Participant 1234567,Jürgen Müller,jm@example.edu,Submitted for grading,,10.00,Yes,"
                         "\"Tuesday, 6 October 2026, 1:30 AM\",-,\n"
                         "Participant 1234568,Wei Wang,ww@example.edu,No submission,,10.00,Yes,-,-,\n", encoding="utf-8")
    with_zone = read_submission_times(worksheet, "moodle", "Europe/London")
    assert with_zone.times == {"moodle-1234567": __import__("datetime").datetime(2026, 10, 6, 0, 30),
                               "moodle-1234568": None}
    without = read_submission_times(worksheet, "moodle")
    assert without.times["moodle-1234567"] is None and "--times-zone" in without.problems[0][1]
    with pytest.raises(UsageError, match=re.escape(str(canvas)) + ".*Identifier and Last modified"):
        read_submission_times(canvas, "moodle")


@pytest.mark.parametrize("text, quoted, canvas", [
    ("=2+5", "'=2+5", '="=2+5"'),
    ("+1 555", "'+1 555", '="+1 555"'),
    ("-x", "'-x", '="-x"'),
    ("@SUM(A1)", "'@SUM(A1)", '="@SUM(A1)"'),
    ("\tTab", "'\tTab", '="\tTab"'),
    ("\rCR", "'\rCR", '="\rCR"'),
    ('=HYPERLINK("http://x","y")', "'=HYPERLINK(\"http://x\",\"y\")", '="=HYPERLINK(""http://x"",""y"")"'),
    ("  =1", "'  =1", '="  =1"'),
    ("-1.5", "-1.5", "-1.5"),  # a number stays a number
    ("-", "-", "-"),  # the LMSs' "no value"
    ("Müller, Jürgen", "Müller, Jürgen", "Müller, Jürgen"),
])
def test_one_neutralising_rule_for_every_csv(text, quoted, canvas):
    assert csv_cell(text) == quoted and csv_cell(text, "canvas") == canvas
    assert canvas_text(csv_cell(text, "canvas")) == text  # Canvas's ="..." form reads back as the same name


def test_every_format_or_control_character_is_escaped_where_a_name_is_shown():
    name = "mal\u202eyrolla\u2066x\u2069\u200f\x1b[31m\x85"
    for shown in (escape_hidden(name), log_text(name), markdown_text(name)):
        assert not any(unicodedata.category(ch).startswith("C") for ch in shown), shown
        assert "u202e" in shown and "u2066" in shown
    assert escape_hidden("Müller Jürgen Ωμέγα") == "Müller Jürgen Ωμέγα"


SIMILARITY_RUN = """
import sys
from course.similarity import compare, fingerprint, Answers
code = {name: open(path).read() for name, path in zip(("a", "b", "c"), sys.argv[1:])}
students = [Answers(name, text, fingerprint(name, text)) for name, text in code.items()]
print([(p.first.student, p.second.student, round(p.similarity, 6), p.tokens) for p in compare(students, [])])
"""


def test_similarity_is_the_same_in_every_process(tmp_path):
    body = "\n".join(f"def f{i}(x, y):\n    total = 0\n    for k in range(x):\n        total += k * y + {i}\n"
                     f"    return total if total > {i} else -total\n" for i in range(12))
    paths = []
    for name, text in (("a", body), ("b", body.replace("total", "acc")[: len(body) // 2]), ("c", body[::-1][:900])):
        (tmp_path / f"{name}.py").write_text(text)
        paths.append(str(tmp_path / f"{name}.py"))
    # The three processes run at once: each spends some 3 s importing, and the unit layer has 60 s in all.
    runs = [subprocess.Popen([sys.executable, "-c", SIMILARITY_RUN, *paths], env={**os.environ, "PYTHONHASHSEED": seed},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[2])
            for seed in ("1", "2", "random")]
    outputs = set()
    try:
        for run in runs:
            stdout, stderr = run.communicate(timeout=300)
            assert run.returncode == 0, stderr
            outputs.add(stdout)
    finally:
        for run in runs:  # none is left running, whatever failed
            if run.poll() is None:
                run.kill()
            run.communicate()
    assert len(outputs) == 1, outputs


def test_a_member_of_an_upload_cannot_name_or_mark_another_student(tmp_path):
    files = {canvas_name("Victim, Vic", 21, 1, "losses.ipynb"): NOTEBOOK,
             canvas_name("Attacker, Al", 22, 2, "work.zip"): zipped({
                 canvas_name("Forged Name", 21, 3, "losses.ipynb", late=True): NOTEBOOK, "losses.ipynb": NOTEBOOK})}
    export = tmp_path / "export.zip"
    export.write_bytes(zipped(dict(reversed(list(files.items())))))  # the attacker's upload read first
    result = collect(export, "a2", course_dir(tmp_path), {"losses"}, lms="canvas")
    assert sorted(result.students) == ["canvas-21", "canvas-22"]
    assert result.names["canvas-21"] == "victimvic" and record(tmp_path, "canvas-21")["marked_late"] is False
    assert [p.kind for p in result.problems] == ["other-student"]
