"""`course grade` on LMS exports that students shaped: real exports, real kernels in the sandbox.

A file belongs to the student who uploaded it (Canvas names each file of a submission download
`<student>_[late_]<user id>_<submission id>_<file name>`, an uploaded zip included; the names inside
a zip are the student's own choice).  Nothing is dropped without a word, symbolic links are never
followed, and no feedback or report quotes the bytes of a file that could not be read.
"""
import html

import nbformat
import pytest

from grading_support import (KL_SWAPPED, course_grade, make_course, max_points, released_notebook, replace_function,
                             scores, solution_notebook, student_version, zipped)

pytestmark = [pytest.mark.slow]

ASSIGNMENT = "a2-losses"
RAW = "RAW-BYTES-7c1"  # in a file that is not a notebook; must never be quoted back




def as_text(notebook):
    return nbformat.writes(notebook)


def readable(report):
    """The report's words, whatever escaping it uses for student-controlled names."""
    return html.unescape(report.replace("\\", ""))


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("lms") / "course")
    return course


def test_each_file_counts_for_its_uploader_and_nothing_is_dropped_silently(course, tmp_path):
    correct = as_text(student_version(solution_notebook(ASSIGNMENT)))
    export = tmp_path / "canvas-export.zip"
    export.write_bytes(zipped({
        "victim_11_21_losses.ipynb": correct,
        # Another student's upload: the victim's name on an empty notebook (would void the victim's
        # real submission as "two files"), and the uploader's own work with one mistake.
        "attacker_12_22_homework.zip": zipped({
            "victim_11_21_losses.ipynb": as_text(released_notebook(course, ASSIGNMENT)),
            "losses.ipynb": as_text(replace_function(student_version(solution_notebook(ASSIGNMENT)), "kl_divergence", KL_SWAPPED)),
        }),
        "forger_13_23_work.zip": zipped({"ghost_9_9_losses.ipynb": correct}),  # ghost submitted nothing
        "scripter_14_24_losses.py": "def softmax(z): ...\n",
        "zipper_15_25_code.zip": zipped({"losses.py": "x = 1\n", "README.txt": "see code\n"}),
        "nester_16_26_work.zip": zipped({"inner.zip": zipped({"losses.ipynb": correct})}),
        "rawbytes_17_27_losses.ipynb": '{"cells": [ ' + RAW + ' <img src=x onerror=alert(1)> not json',
    }))
    result = course_grade(course, ASSIGNMENT, "--submissions", str(export), "--workers", "2")
    assert result.returncode == 1, result.stdout  # graded, with problems to look at
    points = sum(max_points(ASSIGNMENT).values())
    got = scores(course, ASSIGNMENT)
    assert {s: v["_total"] for s, v in got.items()} == {"victim": points, "attacker": points - 2, "rawbytes": 0}
    report = readable((course / "reports" / ASSIGNMENT / "report.md").read_text())
    for name, words in {"attacker_12_22_homework.zip:victim_11_21_losses.ipynb": "only for the student who uploaded it",
                        "forger_13_23_work.zip:ghost_9_9_losses.ipynb": "only for the student who uploaded it",
                        "scripter_14_24_losses.py": "not a notebook",
                        "zipper_15_25_code.zip": "an upload with no notebook",
                        "nester_16_26_work.zip:inner.zip": "deeper than"}.items():
        for where, text in (("the summary", result.stdout), ("the report", report)):
            lines = [line for line in text.splitlines() if name in line]
            assert any(words in line for line in lines), f"{where} does not say {name}: {words!r}:\n{text[-3000:]}"
    assert "student ghost" not in result.stdout + report  # ghost submitted nothing, and is not said to have
    assert "a file in one student's upload that names another student" in report
    feedback = (course / "feedback" / "rawbytes" / ASSIGNMENT / "losses.html").read_text()
    assert "could not be read as a Jupyter notebook" in feedback and "not valid JSON" in feedback
    for text in (feedback, report, result.stdout, (course / "reports" / "grade.log").read_text()):
        assert RAW not in text and "onerror" not in text


def test_symlinks_in_a_folder_export_are_reported_and_never_followed(course, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "lee_5_6_losses.ipynb").write_text(as_text(student_version(solution_notebook(ASSIGNMENT))))
    # A link to the instructor's solution, and one to a folder: a student who shaped the export
    # this way would be graded on the instructor's files.
    (folder / "mallory_1_2_losses.ipynb").symlink_to(course / "solutions" / ASSIGNMENT / "losses.ipynb")
    (folder / "trudy_3_4_submission").symlink_to(course / "solutions" / ASSIGNMENT, target_is_directory=True)
    result = course_grade(course, ASSIGNMENT, "--submissions", str(folder))
    assert result.returncode == 1, result.stdout
    got = scores(course, ASSIGNMENT)
    assert "lee" in got and "mallory" not in got and "trudy" not in got
    report = readable((course / "reports" / ASSIGNMENT / "report.md").read_text())
    for name in ("mallory_1_2_losses.ipynb", "trudy_3_4_submission"):
        for text in (result.stdout, report):
            assert any("symbolic link" in line and "not followed" in line for line in text.splitlines() if name in line), text
