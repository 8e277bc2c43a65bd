"""LMS collection (course/collect.py) on its own: real zip files and folders, no kernel.

A file belongs to the student who uploaded it.  Canvas names every file of its submission
download after the uploader, ``<student>_[late_]<user id>_<submission id>_<file name>``, and an
uploaded zip arrives whole under such a name (``smithjane_12345_678_work.zip``), its members
named as the student chose.  So the names *inside* a student's zip prove nothing.
"""
import io
import os
import socket
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from nbgrader.coursedir import CourseDirectory

from course.collect import DEFAULT_LMS_PATTERN, collect

ASSIGNMENT = "a2-losses"
NOTEBOOKS = {"losses"}


def notebook(author):
    """A small, valid notebook whose bytes say who wrote it."""
    return ('{"cells": [{"cell_type": "markdown", "id": "a", "metadata": {}, "source": "by %s"}], '
            '"metadata": {}, "nbformat": 4, "nbformat_minor": 5}' % author).encode()


def zip_bytes(members, compression=zipfile.ZIP_DEFLATED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def run(tmp_path, source, **options):
    course = tmp_path / "course"
    course.mkdir(exist_ok=True)
    result = collect(source, ASSIGNMENT, CourseDirectory(root=str(course)), NOTEBOOKS, DEFAULT_LMS_PATTERN, **options)
    collected = {student: [p.read_bytes() for p in paths] for student, paths in result.students.items()}
    return result, collected


def problems_about(result, text):
    return [p for p in result.problems if text in p.where]


def export(tmp_path, members, name="canvas-export.zip"):
    path = tmp_path / name
    path.write_bytes(zip_bytes(members))
    return path


def test_a_zip_member_belongs_to_its_uploader_and_cannot_void_another_students_submission(tmp_path):
    source = export(tmp_path, {
        "victim_11_21_losses.ipynb": notebook("victim"),
        # The attacker's upload: the victim's name on a bad notebook, then their own work.
        "attacker_12_22_work.zip": zip_bytes({"victim_11_21_losses.ipynb": notebook("attacker, as victim"),
                                               "losses.ipynb": notebook("attacker")}),
    })
    result, collected = run(tmp_path, source)
    assert collected == {"victim": [notebook("victim")], "attacker": [notebook("attacker")]}
    [forged] = problems_about(result, "work.zip:victim_11_21_losses.ipynb")
    assert forged.kind == "other-student" and forged.student == "attacker"
    assert "victim" in forged.reason and "not collected" in forged.reason
    assert not any("two files" in p.reason for p in result.problems)


def test_a_student_cannot_submit_for_a_student_who_submitted_nothing(tmp_path):
    source = export(tmp_path, {"attacker_12_22_work.zip": zip_bytes({"ghost_9_9_losses.ipynb": notebook("attacker")}),
                               "other_1_2_losses.ipynb": notebook("other"),
                               # Canvas puts the uploader's name first, whatever the file was called.
                               "thief_late_7_7_ghost_9_9_losses-1.ipynb": notebook("thief")})
    result, collected = run(tmp_path, source)
    assert "ghost" not in collected and "attacker" not in collected and collected["other"] == [notebook("other")]
    assert collected["thief"] == [notebook("thief")]
    assert not (tmp_path / "course" / "submitted" / "ghost").exists()
    kinds = {(p.kind, p.student) for p in result.problems}
    assert ("other-student", "attacker") in kinds and ("no-notebook", "attacker") in kinds
    assert not any(p.student == "ghost" for p in result.problems)


def test_the_uploader_is_read_from_the_archives_canvas_name(tmp_path):
    source = export(tmp_path, {
        "smithjane_late_12345_678_Homework 2.zip": zip_bytes({"folder/losses-1.ipynb": notebook("jane"),
                                                              "folder/.ipynb_checkpoints/losses-checkpoint.ipynb": b"x"}),
        "doe-j_1_2_losses.ipynb": notebook("doe"),
    })
    result, collected = run(tmp_path, source)
    assert collected == {"smithjane": [notebook("jane")], "doe-j": [notebook("doe")]}
    assert result.problems == []


def test_a_notebook_whose_own_name_has_underscores_is_its_uploaders(tmp_path):
    """a4's notebook is cross_entropy.ipynb: read as a Canvas name it would be student "cross"'s file."""
    course = tmp_path / "course"
    course.mkdir()
    source = export(tmp_path, {
        "smithjane_12_34_work.zip": zip_bytes({"cross_entropy.ipynb": notebook("jane")}),
        "doej_13_35_work.zip": zip_bytes({"cross_entropy-2.ipynb": notebook("doe")}),
        "roe_14_36_cross_entropy.ipynb": notebook("roe"),
        "attacker_15_37_work.zip": zip_bytes({"roe_14_36_cross_entropy.ipynb": notebook("attacker")}),
    })
    result = collect(source, "a4-torch-cross-entropy", CourseDirectory(root=str(course)), {"cross_entropy"},
                     DEFAULT_LMS_PATTERN)
    collected = {student: [p.read_bytes() for p in paths] for student, paths in result.students.items()}
    assert collected == {"smithjane": [notebook("jane")], "doej": [notebook("doe")], "roe": [notebook("roe")]}
    assert [(p.kind, p.student) for p in result.problems] == [("other-student", "attacker"), ("no-notebook", "attacker")]

    # The pattern would read extra_losses.ipynb as student "extra"'s losses.ipynb: the name itself decides.
    source = export(tmp_path, {"smithjane_12_34_work.zip": zip_bytes({"extra_losses.ipynb": notebook("jane")})}, "two.zip")
    result = collect(source, "a9", CourseDirectory(root=str(course)), {"losses", "extra_losses"}, DEFAULT_LMS_PATTERN)
    assert [p.name for p in result.students["smithjane"]] == ["extra_losses.ipynb"]


def test_two_files_of_the_students_own_still_leave_the_choice_to_the_instructor(tmp_path):
    source = export(tmp_path, {"smithjane_1_2_losses.ipynb": notebook("jane one"),
                               "smithjane_1_3_work.zip": zip_bytes({"losses.ipynb": notebook("jane two")}),
                               "attacker_5_6_work.zip": zip_bytes({"smithjane_1_2_losses.ipynb": notebook("attacker")})})
    result, collected = run(tmp_path, source)
    assert "smithjane" not in collected
    assert [p.student for p in result.problems if p.kind == "duplicate"] == ["smithjane"]
    assert any(p.kind == "other-student" and p.student == "attacker" for p in result.problems)


def test_an_upload_with_no_notebook_is_reported_by_name(tmp_path):
    source = export(tmp_path, {"smithjane_1_2_work.zip": zip_bytes({"losses.py": b"print(1)", "notes.txt": b"hi"}),
                               "doejohn_3_4_losses.py": b"print(2)",
                               "lee_5_6_losses.ipynb": notebook("lee")})
    result, collected = run(tmp_path, source)
    assert set(collected) == {"lee"}
    [upload] = [p for p in result.problems if p.where.endswith(":smithjane_1_2_work.zip") and "upload" in p.reason]
    assert upload.kind == "no-notebook" and "losses.py" in upload.reason and "notes.txt" in upload.reason
    [script] = [p for p in result.problems if p.where.endswith(":doejohn_3_4_losses.py") and "not a notebook" in p.reason]
    assert script.kind == "no-notebook" and script.student == "doejohn"
    assert {p.student for p in result.problems if p.kind == "no-notebook"} == {"smithjane", "doejohn"}


def test_an_archive_nested_deeper_than_supported_is_reported_by_name(tmp_path):
    deep = zip_bytes({"inner.zip": zip_bytes({"losses.ipynb": notebook("jane")})})
    source = export(tmp_path, {"smithjane_1_2_work.zip": deep})
    result, collected = run(tmp_path, source)
    assert collected == {}
    [too_deep] = [p for p in result.problems if p.kind == "too-deep"]
    assert too_deep.where.endswith(":smithjane_1_2_work.zip:inner.zip") and too_deep.student == "smithjane"
    assert any(p.kind == "no-notebook" and p.student == "smithjane" for p in result.problems)


def test_the_size_budget_is_for_the_whole_export_not_per_archive(tmp_path):
    padding = os.urandom(200_000)  # incompressible: each upload is about 200 kB
    uploads = {f"student{i}_1_{i}_work.zip": zip_bytes({"losses.ipynb": notebook(f"student{i}"), "data.bin": padding},
                                                       zipfile.ZIP_STORED) for i in range(4)}
    source = export(tmp_path, uploads)
    result, collected = run(tmp_path, source, archive_budget=500_000)
    assert set(collected) == {"student0", "student1"}
    over = [p for p in result.problems if p.kind == "over-budget"]
    assert [p.student for p in over] == ["student2", "student3"]
    assert all("student2" in p.where or "student3" in p.where for p in over)


def test_nested_archives_are_read_one_at_a_time_with_flat_memory(tmp_path):
    size = 6 * 1024**2
    uploads = {f"student{i}_1_{i}_work.zip": zip_bytes({f"student{i}_1_{i}_losses.ipynb": notebook(f"student{i}"),
                                                        "data.bin": os.urandom(size)}, zipfile.ZIP_STORED)
               for i in range(5)}
    source = tmp_path / "export.zip"
    with zipfile.ZipFile(source, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in uploads.items():
            archive.writestr(name, data)
    del uploads
    tracemalloc.start()
    try:
        result, collected = run(tmp_path, source)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(collected) == 5 and result.problems == []
    assert peak < size, f"collecting 5 uploads of {size >> 20} MiB peaked at {peak >> 20} MiB of Python memory"


def test_symlinks_in_a_folder_export_are_reported_and_never_followed(tmp_path):
    secret = tmp_path / "instructor-only"
    secret.mkdir()
    (secret / "solution.ipynb").write_bytes(notebook("the instructor"))
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "lee_5_6_losses.ipynb").write_bytes(notebook("lee"))
    (folder / "victim_1_2_losses.ipynb").symlink_to(secret / "solution.ipynb")
    (folder / "smithjane_3_4_submission").symlink_to(secret, target_is_directory=True)
    (folder / "doe_7_8_work.zip").symlink_to(secret / "solution.ipynb")
    result, collected = run(tmp_path, folder)
    assert collected == {"lee": [notebook("lee")]}
    links = {Path(p.where).name: p for p in result.problems if p.kind == "symlink"}
    assert set(links) == {"victim_1_2_losses.ipynb", "smithjane_3_4_submission", "doe_7_8_work.zip"}
    assert all("not followed" in p.reason for p in links.values())


def test_a_symlinked_notebook_in_an_nbgrader_layout_is_not_copied(tmp_path):
    secret = tmp_path / "solution.ipynb"
    secret.write_bytes(notebook("the instructor"))
    layout = tmp_path / "elsewhere"
    (layout / "lee" / ASSIGNMENT).mkdir(parents=True)
    (layout / "lee" / ASSIGNMENT / "losses.ipynb").write_bytes(notebook("lee"))
    (layout / "mallory" / ASSIGNMENT).mkdir(parents=True)
    (layout / "mallory" / ASSIGNMENT / "losses.ipynb").symlink_to(secret)
    result, collected = run(tmp_path, layout)
    assert collected == {"lee": [notebook("lee")]}
    assert [(p.kind, p.student) for p in result.problems if p.kind == "symlink"] == [("symlink", "mallory")]
    assert not (tmp_path / "course" / "submitted" / "mallory" / ASSIGNMENT / "losses.ipynb").exists()


def test_a_pipe_or_socket_in_a_folder_export_is_reported_without_blocking(tmp_path, monkeypatch):
    folder = tmp_path / "export"
    folder.mkdir()
    os.mkfifo(folder / "smithjane_1_2_losses.ipynb")
    monkeypatch.chdir(folder)  # a socket's path must be short
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind("doe_3_4_losses.ipynb")
        result, collected = run(tmp_path, folder)
    assert collected == {}
    assert {Path(p.where).name for p in result.problems if p.kind == "not-a-file"} == {
        "smithjane_1_2_losses.ipynb", "doe_3_4_losses.ipynb"}


def test_a_damaged_member_is_reported_without_quoting_its_bytes(tmp_path):
    source = tmp_path / "export.zip"
    source.write_bytes(zip_bytes({"smithjane_1_2_losses.ipynb": notebook("jane")}, zipfile.ZIP_STORED))
    data = bytearray(source.read_bytes())
    header = data.index(b"smithjane_1_2_losses.ipynb")  # the local header's copy of the name
    data[header:header + 8] = b"<script>"
    source.write_bytes(bytes(data))
    result, collected = run(tmp_path, source)
    assert collected == {}
    [damaged] = [p for p in problems_about(result, "smithjane_1_2_losses.ipynb") if p.kind == "unreadable"]
    assert "cannot be read" in damaged.reason and "damaged" in damaged.reason
    assert "<script>" not in damaged.reason and "b'" not in damaged.reason, damaged.reason


def test_the_course_s_lms_pattern_is_read_from_its_config_and_the_old_name_is_refused(tmp_path):
    from course.collect import Collect
    from course.config import load_config
    from course.errors import UsageError

    (tmp_path / "nbgrader_config.py").write_text('c = get_config()\nc.Collect.lms_pattern = r"^(?P<student_id>\\w+)-(?P<file_id>{notebooks})\\.ipynb$"\n')
    assert Collect(config=load_config(tmp_path)).lms_pattern == r"^(?P<student_id>\w+)-(?P<file_id>{notebooks})\.ipynb$"
    (tmp_path / "nbgrader_config.py").write_text('c = get_config()\nc.CourseGrade.lms_pattern = "^(?P<student_id>.+)$"\n')
    with pytest.raises(UsageError, match=r"nbgrader_config.py: c.CourseGrade.lms_pattern is now c.Collect.lms_pattern"):
        load_config(tmp_path)


def test_the_time_of_a_submission_is_the_latest_its_files_carry_and_never_an_earlier_ones(tmp_path):
    """A pattern whose ``timestamp`` group is optional: a resubmission without a time in its name must
    not keep the time of the submission it replaces (a late resubmission would pass as on time)."""
    pattern = r"^(?P<student_id>[a-z]+)_(?:(?P<timestamp>\d{8}T\d{6}Z)_)?(?P<file_id>{notebooks})\.ipynb$"
    course = tmp_path / "course"
    course.mkdir()
    stamp = course / "submitted" / "smithjane" / ASSIGNMENT / "timestamp.txt"

    def collect_export(members, name):
        folder = tmp_path / name
        folder.mkdir()
        for member, data in members.items():
            (folder / member).write_bytes(data)
        return collect(folder, ASSIGNMENT, CourseDirectory(root=str(course)), {"losses", "extra"}, pattern)

    first = {"smithjane_20261005T200000Z_losses.ipynb": notebook("first"),
             "smithjane_20261006T090000Z_extra.ipynb": notebook("first")}
    result = collect_export(first, "first")
    assert not result.problems and stamp.read_text() == "2026-10-06 09:00:00"  # the later of its two files
    collect_export({"smithjane_losses.ipynb": notebook("first"), "smithjane_extra.ipynb": notebook("first")}, "again")
    assert stamp.read_text() == "2026-10-06 09:00:00"  # the same files, without times: the time stays
    collect_export({"smithjane_losses.ipynb": notebook("resubmitted")}, "resubmitted")
    assert not stamp.exists()
    collect_export({"smithjane_20261009T235900Z_losses.ipynb": notebook("late")}, "late")
    assert stamp.read_text() == "2026-10-09 23:59:00"


def test_a_new_submission_replaces_the_earlier_one_whole(tmp_path):
    """Files of an earlier collection that the new submission lacks are not graded with it."""
    course = tmp_path / "course"
    course.mkdir()
    folder = course / "submitted" / "smithjane" / ASSIGNMENT

    def collect_from(source, notebooks=("losses", "extra")):
        return collect(source, ASSIGNMENT, CourseDirectory(root=str(course)), set(notebooks), DEFAULT_LMS_PATTERN)

    collect_from(export(tmp_path, {"smithjane_1_1_losses.ipynb": notebook("one"), "smithjane_1_1_extra.ipynb": notebook("one")},
                        "first.zip"))
    assert sorted(p.name for p in folder.iterdir()) == ["extra.ipynb", "losses.ipynb"]
    result = collect_from(export(tmp_path, {"smithjane_1_2_losses.ipynb": notebook("two")}, "second.zip"))
    assert sorted(p.name for p in folder.iterdir()) == ["losses.ipynb"] and not result.problems

    # An nbgrader layout copied in from elsewhere: the copy mirrors the folder as it is now.
    for name, files in [("one", {"losses.ipynb": notebook("one"), "data.csv": b"1,2", "timestamp.txt": b"2026-10-05 20:00:00"}),
                        ("two", {"losses.ipynb": notebook("two")})]:
        source = tmp_path / f"layout-{name}" / "smithjane" / ASSIGNMENT
        source.mkdir(parents=True)
        for file, data in files.items():
            (source / file).write_bytes(data)
        collect_from(source.parent.parent, notebooks=("losses",))
        assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    assert (folder / "losses.ipynb").read_bytes() == notebook("two")


def test_a_copied_layout_with_folders_deeper_than_the_recursion_limit_is_collected_and_the_rest_reported(tmp_path):
    """Path.rglob recursed once per level (RecursionError), and a path past PATH_MAX cannot be copied."""
    from course.files import remove_tree
    from deep_trees import DEPTH, deep_tree

    layout = tmp_path / "elsewhere"
    (layout / "lee" / ASSIGNMENT).mkdir(parents=True)
    (layout / "lee" / ASSIGNMENT / "losses.ipynb").write_bytes(notebook("lee"))
    (layout / "lee" / ASSIGNMENT / "data").mkdir()
    (layout / "lee" / ASSIGNMENT / "data" / "counts.csv").write_bytes(b"1,2")
    deep_tree(layout / "lee" / ASSIGNMENT / "tree", depth=DEPTH)
    try:
        deeper_than_the_limit_is_reported(tmp_path, layout)
    finally:
        remove_tree(layout)  # pytest's clean-up of old temporary folders recurses


def deeper_than_the_limit_is_reported(tmp_path, layout):
    from course.files import MAX_SUBMISSION_DEPTH
    from course.incremental import submission_digest

    result, collected = run(tmp_path, layout)
    assert collected == {"lee": [notebook("lee")]}
    target = tmp_path / "course" / "submitted" / "lee" / ASSIGNMENT
    assert (target / "data" / "counts.csv").read_bytes() == b"1,2"
    [deep] = [p for p in result.problems if p.kind == "too-deep"]
    assert deep.student == "lee" and f"more than {MAX_SUBMISSION_DEPTH} deep" in deep.reason
    assert deep.where.endswith("tree" + "/a" * (MAX_SUBMISSION_DEPTH - 1))
    before = submission_digest(b"fingerprint", layout / "lee" / ASSIGNMENT)
    (layout / "lee" / ASSIGNMENT / "data" / "counts.csv").write_bytes(b"1,3")
    assert submission_digest(b"fingerprint", layout / "lee" / ASSIGNMENT) != before


def test_a_folder_that_cannot_be_listed_is_reported_and_the_rest_collected(tmp_path, monkeypatch):
    """As a grader that is not root meets a folder its student made unreadable (chmod 000)."""
    import course.files

    layout = tmp_path / "elsewhere"
    (layout / "lee" / ASSIGNMENT / "locked").mkdir(parents=True)
    (layout / "lee" / ASSIGNMENT / "losses.ipynb").write_bytes(notebook("lee"))
    real_scandir = os.scandir

    def scandir(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(course.files.os, "scandir", scandir)
    result, collected = run(tmp_path, layout)
    assert collected == {"lee": [notebook("lee")]}
    [locked] = [p for p in result.problems if p.where.endswith("locked")]
    assert locked.student == "lee" and "cannot be read" in locked.reason


def test_a_pattern_that_can_read_an_empty_student_id_leaves_such_a_file_unattributed(tmp_path):
    """An instructor's --pattern may let the student id match nothing ("_losses.ipynb"): that file is nobody's,
    said so, and the batch goes on with everyone else's."""
    loose = r"^(?P<student_id>[^_]*)_(?P<file_id>{notebooks})\.ipynb$"
    source = export(tmp_path, {"_losses.ipynb": notebook("nobody"), "jane_losses.ipynb": notebook("jane")})
    course = tmp_path / "course"
    course.mkdir()
    result = collect(source, ASSIGNMENT, CourseDirectory(root=str(course)), NOTEBOOKS, loose)
    assert list(result.students) == ["jane"]
    [problem] = problems_about(result, "_losses.ipynb")
    assert problem.kind == "unattributed" and problem.student == ""
    assert "reads no student id from it" in problem.reason
