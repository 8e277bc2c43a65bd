"""`course grade`: parallel, sandboxed grading that gives exactly the grades of `nbgrader autograde`.

Real components throughout: nbgrader's gradebook and converters, the bubblewrap sandbox, a local
process pool, a real Dask cluster on loopback, a real PostgreSQL server started for the test.
Most runs use a few submissions of a2-losses (no torch), to keep the file's time modest.
"""
import getpass
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import zipfile
from pathlib import Path

import nbformat
import psutil
import pytest

from course.collect import DEFAULT_LMS_PATTERN, notebook_pattern
from grading_support import (KL_SWAPPED, MISTAKES, copy_course, course_grade, make_course, max_points, nbgrader,
                             released_notebook, replace_function, scores, scratch_folder, solution_notebook,
                             student_version, submit, submit_all)

ASSIGNMENT = "a2-losses"


def correct():
    return student_version(solution_notebook(ASSIGNMENT))


# Why each of the five lost points, in the words of its feedback ("" for the reference: nothing lost).
LOST_BECAUSE = {"reference": "", "untouched": "your function raised NotImplementedError", "mistake": "swapped arguments",
                "deleted-test": "is missing from the submission", "broken": "could not be read as a Jupyter notebook"}


def submissions(course):
    """Five submissions of a2-losses: right, untouched, one mistake, a deleted test cell, not a notebook."""
    deleted = correct()
    deleted.cells = [c for c in deleted.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_entropy"]
    return {
        "reference": correct(),
        "untouched": released_notebook(course, ASSIGNMENT),
        "mistake": replace_function(correct(), "kl_divergence", KL_SWAPPED),
        "deleted-test": deleted,
        "broken": '{"cells": [ this is not json',
    }


def scores_at(url, assignment):
    from nbgrader.api import Gradebook

    from course.record import gradebook_url

    result = {}
    with Gradebook(gradebook_url(url), "prob2loss") as gradebook:
        for submission in gradebook.assignment_submissions(assignment):
            cells = {g.name: g.score for n in submission.notebooks for g in n.grades if g.cell.cell_type == "code"}
            cells["_total"] = submission.score
            result[submission.student.id] = cells
    return result


def assert_feedback_shows_each_score_and_why(course):
    """Each student's page shows that student's score in the gradebook (nbgrader's heading), and why points were lost."""
    graded_scores = scores(course, ASSIGNMENT)
    assert set(graded_scores) == set(LOST_BECAUSE)
    for student, reason in LOST_BECAUSE.items():
        page = (course / "feedback" / student / ASSIGNMENT / "losses.html").read_text()
        total = re.search(r"losses \(Score: ([0-9.]+) / [0-9.]+\)", page)
        assert total and float(total[1]) == graded_scores[student]["_total"], (student, total)
        assert reason in page, (student, reason)


def sandbox_leftovers(marker=None, ancestor=None, wait=3.0):
    """Live processes of a sandbox (throw-away user ids) started under ``marker`` (a folder in their
    command line) or by ``ancestor``; other grading runs on the machine are not counted."""
    import time

    deadline = time.monotonic() + wait
    while True:
        found = []
        descendants = {p.pid for p in psutil.Process(ancestor).children(recursive=True)} if ancestor else set()
        for process in psutil.process_iter(["pid", "uids", "cmdline", "status"]):
            info = process.info
            if not info["uids"] or info["uids"].real < 200_000 or info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if (marker and marker in " ".join(info["cmdline"] or [])) or info["pid"] in descendants:
                found.append(" ".join(info["cmdline"] or []))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A course with the assignments generated, and the five submissions."""
    course = make_course(tmp_path_factory.mktemp("template") / "course")
    submit_all(course, ASSIGNMENT, submissions(course))
    return course


@pytest.fixture(scope="module")
def serial(template, tmp_path_factory):
    """The same submissions graded one at a time by `nbgrader autograde`: the grades to match."""
    course = copy_course(template, tmp_path_factory.mktemp("serial") / "course")
    nbgrader(course, "autograde", ASSIGNMENT)
    return scores(course, ASSIGNMENT)


@pytest.fixture(scope="module")
def graded(template, tmp_path_factory):
    course = copy_course(template, tmp_path_factory.mktemp("parallel") / "course")
    result = course_grade(course, ASSIGNMENT, "--workers", "2")
    return dict(course=course, result=result)


@pytest.mark.slow
def test_parallel_grades_are_those_of_serial_nbgrader_autograde(graded, serial):
    got = scores(graded["course"], ASSIGNMENT)
    assert got == serial, graded["result"].stdout
    points = sum(max_points(ASSIGNMENT).values())
    assert got["reference"]["_total"] == points
    assert got["mistake"]["test_kl_divergence"] == 0 and got["mistake"]["_total"] == points - 2
    assert got["untouched"]["_total"] == 0 and got["broken"]["_total"] == 0
    assert graded["result"].returncode == 0


@pytest.mark.slow
def test_feedback_csv_report_and_summary_are_written(graded):
    course, out = graded["course"], graded["result"].stdout
    assert_feedback_shows_each_score_and_why(course)
    rows = (course / "grades.csv").read_text().splitlines()
    assert rows[0] == "assignment,duedate,timestamp,student_id,last_name,first_name,email,raw_score,late_submission_penalty,score,max_score"
    assert sum(1 for r in rows if r.startswith(ASSIGNMENT + ",")) == 5
    report = (course / "reports" / ASSIGNMENT / "report.md").read_text()
    assert "## Checks students fail most" in report
    rows = [line for line in report.splitlines() if line.startswith("| `test_")]
    by_check = {row.split("`")[1]: row for row in rows}
    assert set(by_check) == set(max_points(ASSIGNMENT)), report
    # test_kl_divergence: lost by the mistake, the stubs and the broken file; test_entropy: by the
    # stubs, the broken file and the deleted test cell.  They lead the table.
    assert "3 / 5" in by_check["test_kl_divergence"] and "3 / 5" in by_check["test_entropy"], report
    assert {rows[0].split("`")[1], rows[1].split("`")[1]} == {"test_kl_divergence", "test_entropy"}, report
    assert "2 / 5" in by_check["test_softmax"]
    assert "the test cell is missing from the submission" in by_check["test_entropy"]
    assert "swapped arguments" in by_check["test_kl_divergence"], report
    assert "could not be read as a Jupyter notebook" in report
    assert (course / "reports" / ASSIGNMENT / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "5 submission(s) graded" in out and "a2-losses" in out and "mean score" in out
    scratch = scratch_folder(course)
    assert not sandbox_leftovers(marker=str(scratch)), "a sandboxed kernel outlived the batch"
    assert not list(scratch.glob("course-sandbox-*")) and not list(scratch.glob("course-fs-*")), \
        "sandbox or fork server folders were left behind"


@pytest.mark.slow
def test_incremental_regrade_skips_unchanged_and_force_regrades(graded, serial):
    course = graded["course"]
    autograded = course / "autograded" / "reference" / ASSIGNMENT / "losses.ipynb"
    stamp = autograded.stat().st_mtime_ns
    again = course_grade(course, ASSIGNMENT)
    assert "0 submission(s) graded" in again.stdout and autograded.stat().st_mtime_ns == stamp
    submit(course, "mistake", ASSIGNMENT, correct())  # the student fixed the mistake and resubmitted
    fixed = course_grade(course, ASSIGNMENT)
    assert "1 submission(s) graded" in fixed.stdout, fixed.stdout
    assert autograded.stat().st_mtime_ns == stamp
    now = scores(course, ASSIGNMENT)
    assert now["mistake"]["_total"] == sum(max_points(ASSIGNMENT).values())
    assert {k: v for k, v in now.items() if k != "mistake"} == {k: v for k, v in serial.items() if k != "mistake"}
    forced = course_grade(course, ASSIGNMENT, "--force")
    assert "5 submission(s) graded" in forced.stdout and autograded.stat().st_mtime_ns != stamp


@pytest.mark.slow
def test_grading_without_feedback_then_once_more_writes_only_the_feedback(template, serial, tmp_path):
    """The README's advice for many cores: --no-feedback keeps feedback off the grading process; the next run
    grades nothing and writes the feedback that is missing.  Both runs account for their CPU by stage."""
    course = copy_course(template, tmp_path / "course")
    first = course_grade(course, ASSIGNMENT, "--no-feedback")
    assert scores(course, ASSIGNMENT) == serial, first.stdout
    assert not list((course / "feedback").glob(f"*/{ASSIGNMENT}/*.html"))
    account = json.loads((course / "reports" / "grade-cpu.json").read_text())
    assert account["submissions"] == {ASSIGNMENT: 5}
    stages = account["cpu_seconds"][ASSIGNMENT]
    # four notebooks ran in a sandbox (the fifth is not a notebook): their kernels' own CPU, from their cgroups
    # or their processes, and each kernel's start
    assert stages["kernel: student code and checks"] > 0.05 and stages["fork and kernel start"] > 0.05, account
    assert stages["record"] > 0 and stages["sanitize"] > 0 and "feedback" not in stages, account
    again = course_grade(course, ASSIGNMENT)
    assert "0 submission(s) graded" in again.stdout, again.stdout
    assert_feedback_shows_each_score_and_why(course)  # all five written now, each for its own grades
    assert scores(course, ASSIGNMENT) == serial
    # Feedback that cannot be written (here a file where the student's feedback folder goes) fails that student's
    # feedback alone: said in the summary, exit 1, nobody else's touched; the next run writes it.
    shutil.rmtree(course / "feedback" / "mistake")
    (course / "feedback" / "mistake").write_text("in the way")
    written = {p: p.stat().st_mtime_ns for p in (course / "feedback").glob(f"*/{ASSIGNMENT}/*.html")}
    blocked = course_grade(course, ASSIGNMENT)
    assert blocked.returncode == 1, blocked.stdout
    warned = [line for line in blocked.stdout.splitlines() if "feedback failed" in line]
    assert warned and all("mistake/a2-losses" in line for line in warned), blocked.stdout
    assert {p: p.stat().st_mtime_ns for p in (course / "feedback").glob(f"*/{ASSIGNMENT}/*.html")} == written
    (course / "feedback" / "mistake").unlink()
    mended = course_grade(course, ASSIGNMENT)
    assert mended.returncode == 0 and "feedback failed" not in mended.stdout, mended.stdout
    assert_feedback_shows_each_score_and_why(course)
    assert scores(course, ASSIGNMENT) == serial


@pytest.mark.slow
def test_grading_on_a_dask_cluster_gives_the_same_grades(template, serial, tmp_path):
    from distributed import LocalCluster

    course = copy_course(template, tmp_path / "course")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, host="127.0.0.1", protocol="tcp",
                      dashboard_address=None) as cluster:
        result = course_grade(course, ASSIGNMENT, "--scheduler", cluster.scheduler_address)
        left = sandbox_leftovers(ancestor=os.getpid())  # the workers are threads of this process
    assert "Dask scheduler" in result.stdout and "2 workers" in result.stdout, result.stdout
    assert scores(course, ASSIGNMENT) == serial
    assert not left, "a pre-warmed kernel outlived the batch on a Dask worker"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_binaries():
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return candidates[-1].parent if candidates else None


@pytest.fixture(scope="module")
def postgres():
    """A throw-away PostgreSQL server on a loopback port (Debian's postgresql, which `make test` installs)."""
    binaries = postgres_binaries()
    if binaries is None:
        pytest.fail("PostgreSQL is not installed: run `make test`, which installs it (or apt-get install -y postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="course-postgres-"))
    as_user = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
        user = "postgres"
    else:
        user = getpass.getuser()
    port = free_port()
    data, log = folder / "data", folder / "server.log"

    def run(*command, timeout=120):
        return subprocess.run([*as_user, *command], capture_output=True, text=True, timeout=timeout)

    try:
        steps = [
            run(str(binaries / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8"),
            # Shared memory in the data folder, not /dev/shm: an immediate stop leaves nothing behind.
            run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
                f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c dynamic_shared_memory_type=mmap", "start"),
        ]
        for step in steps:
            if step.returncode != 0:
                tail = log.read_text()[-1500:] if log.exists() else ""
                pytest.fail(f"PostgreSQL could not start: {step.args[len(as_user)]} said: {step.stderr.strip()[-800:]} {tail}")
        created = run(str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, "gradebook")
        if created.returncode != 0:
            pytest.fail(f"PostgreSQL started but createdb failed: {created.stderr.strip()}")
        yield f"postgresql://{user}@127.0.0.1:{port}/gradebook"
    finally:
        run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_grading_into_postgresql_gives_the_same_grades(template, serial, postgres, tmp_path):
    course = copy_course(template, tmp_path / "course")
    result = course_grade(course, ASSIGNMENT, "--db", postgres)
    assert "not in the gradebook yet" in result.stdout  # a new database: the assignment is added first
    assert scores_at(postgres, ASSIGNMENT) == serial
    assert "postgresql+psycopg2://postgres@127.0.0.1" in (course / "reports" / ASSIGNMENT / "report.md").read_text()
    rows = (course / "grades.csv").read_text().splitlines()
    assert sum(1 for r in rows if r.startswith(ASSIGNMENT + ",")) == 5


def corrupt_member(path, name):
    """Flip bytes inside one stored member of a zip, so reading it fails its CRC check."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start + 10, start + 20):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_an_lms_export_with_bad_files_still_grades_everyone_else(template, tmp_path):
    course = copy_course(template, tmp_path / "course")
    shutil.rmtree(course / "submitted")  # only what the export holds
    export = tmp_path / "canvas-export.zip"
    reference = nbformat.writes(correct())
    with zipfile.ZipFile(export, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("smithjane_12345_678_losses.ipynb", reference)
        archive.writestr("submissions/doejohn_late_23456_789_losses-1.ipynb",
                         nbformat.writes(replace_function(correct(), "kl_divergence", KL_SWAPPED)))
        archive.writestr("leeann_34567_890_losses.ipynb", "{ definitely not json")
        archive.writestr("losses.ipynb", reference)  # whose?
        archive.writestr("parkkim_1_2_losses.ipynb", reference)
        archive.writestr("parkkim_1_3_losses-1.ipynb", reference)
        archive.writestr("ngo_4_5_homework.ipynb", reference)
        archive.writestr("quinn_9_9_losses.ipynb", reference)
    corrupt_member(export, "quinn_9_9_losses.ipynb")
    result = course_grade(course, ASSIGNMENT, "--submissions", str(export))
    assert result.returncode == 1  # graded, with problems to look at
    got = scores(course, ASSIGNMENT)
    points = sum(max_points(ASSIGNMENT).values())
    assert set(got) == {"smithjane", "doejohn", "leeann"}
    assert got["smithjane"]["_total"] == points
    assert got["doejohn"]["_total"] == points - 2
    assert got["leeann"]["_total"] == 0
    report = (course / "reports" / ASSIGNMENT / "report.md").read_text()
    # Each collection problem is in the summary and in the report; the unreadable notebook was graded
    # (0 points), with a note in the report only.
    for words in ("canvas-export.zip:losses.ipynb", "does not say which student",
                  "parkkim_1_3_losses-1.ipynb", "two files for student parkkim",
                  "ngo_4_5_homework.ipynb", "not a notebook of a2-losses", "no notebook for student ngo",
                  "quinn_9_9_losses.ipynb", "cannot be read"):
        assert words in report, f"the report does not say {words!r}:\n{report}"
        assert words in result.stdout, f"the summary does not say {words!r}:\n{result.stdout}"
    assert "could not be read as a Jupyter notebook" in report, report
    assert (course / "feedback" / "doejohn" / ASSIGNMENT / "losses.html").is_file()

    not_a_zip = tmp_path / "export.zip"
    not_a_zip.write_text("this is a CSV, not a zip\n")
    again = course_grade(course, ASSIGNMENT, "--submissions", str(not_a_zip))
    assert f"{not_a_zip}: not a zip archive" in again.stdout and again.returncode == 1
    assert "0 submission(s) graded" in again.stdout and scores(course, ASSIGNMENT) == got

    roster = tmp_path / "roster.zip"
    with zipfile.ZipFile(roster, "w") as archive:
        archive.writestr("newkid_1_2_losses.ipynb", reference)
        archive.writestr("smithjane_12345_678_losses.ipynb", reference)
    checked = course_grade(course, ASSIGNMENT, "--submissions", str(roster), "--roster-only")
    assert "unknown student 'newkid'" in checked.stdout and "newkid" not in scores(course, ASSIGNMENT)


# Fault injection through nbgrader's own plug-in point: a preprocessor, first in the autograde pipeline of
# the course's config, that fails the recording of any notebook carrying the marker.
FAULT_MODULE = '''
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool


class FailOnMarker(Preprocessor):
    enabled = Bool(True)

    def preprocess(self, nb, resources):
        if any("INJECTED-FAULT" in cell.source for cell in nb.cells):
            raise RuntimeError("injected fault while recording")
        return nb, resources
'''


@pytest.mark.slow
def test_a_failed_regrade_is_reported_and_its_earlier_score_is_not_counted(template, tmp_path):
    course = copy_course(template, tmp_path / "course")
    (course / "fault_injection.py").write_text(FAULT_MODULE)
    with open(course / "nbgrader_config.py", "a") as config:
        config.write("\nfrom fault_injection import FailOnMarker\n"
                     "c.Autograde.autograde_preprocessors = [FailOnMarker, *c.Autograde.autograde_preprocessors]\n")
    first = course_grade(course, ASSIGNMENT)
    assert first.returncode == 0, first.stdout
    points = sum(max_points(ASSIGNMENT).values())
    assert scores(course, ASSIGNMENT)["reference"]["_total"] == points

    resubmitted = correct()
    resubmitted.cells.append(nbformat.v4.new_markdown_cell("INJECTED-FAULT"))
    submit(course, "reference", ASSIGNMENT, resubmitted)
    failed = course_grade(course, ASSIGNMENT)
    assert failed.returncode == 1 and "FAILED reference/a2-losses" in failed.stdout, failed.stdout
    assert scores(course, ASSIGNMENT)["reference"]["_total"] == points  # nbgrader keeps the earlier grading's
    report = (course / "reports" / ASSIGNMENT / "report.md").read_text()
    failures = report.split("## Submissions that failed to grade")[1].split("##")[0]
    assert "reference/a2-losses" in failures and "injected fault" in failures, report
    lines = report.splitlines()
    summary_row = lines[lines.index(next(line for line in lines if line.startswith("|---:|"))) + 1]
    # four graded submissions in the gradebook (the failed one's scores are an earlier submission's), none
    # graded now, four unchanged, one failed
    assert summary_row.startswith("| 4 | 0 | 4 | 1 |"), report

    course_grade(course, ASSIGNMENT, "--student", "mistake")  # an earlier run's failure stays listed
    failures = (course / "reports" / ASSIGNMENT / "report.md").read_text().split("## Submissions that failed")[1]
    assert "reference/a2-losses" in failures and "(an earlier run)" in failures, failures


def test_the_lms_pattern_reads_canvas_file_names():
    import re

    pattern = re.compile(notebook_pattern(DEFAULT_LMS_PATTERN, {"losses", "cross_entropy"}))
    cases = {
        "smithjane_12345_678_losses.ipynb": ("smithjane", "losses"),
        "smithjane_late_12345_678_losses-1.ipynb": ("smithjane", "losses"),
        "doe-j_1_2_cross_entropy.ipynb": ("doe-j", "cross_entropy"),
        "doe_cross_entropy.ipynb": ("doe", "cross_entropy"),
    }
    for name, (student, notebook) in cases.items():
        match = pattern.match(name)
        assert match and (match.group("student_id"), match.group("file_id")) == (student, notebook), name
    for name in ("losses.ipynb", "smithjane_1_2_homework.ipynb", "smithjane_1_2_losses.py"):
        assert pattern.match(name) is None, name


@pytest.mark.slow
def test_a_result_that_does_not_match_its_input_is_not_trusted():
    """PrecomputedExecute takes a worker's notebook only for the exact input; otherwise it grades itself."""
    from course.record import Precomputed, PrecomputedExecute, notebook_digest
    from traitlets.config import Config

    from grading_support import ROOT

    stub = nbformat.read(ROOT / "assignments" / ASSIGNMENT / "losses.ipynb", as_version=4)
    forged = nbformat.from_dict(json.loads(json.dumps(stub)))
    for cell in forged.cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="Hidden checks passed (3 cases).\n")]
    config = Config()
    config.SandboxedExecute.hidden_checks_directory = str(ROOT / "grader_tests")
    def resources(made_from):
        return {"nbgrader": {"student": "s", "assignment": ASSIGNMENT, "notebook": "losses"},
                "course": {"precomputed": Precomputed("", made_from, notebook_digest(made_from), executed=forged)}}

    executed, _ = PrecomputedExecute(config=config).preprocess(nbformat.from_dict(stub), resources(made_from=forged))
    outputs = [o for c in executed.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
               for o in c.outputs]
    assert outputs and all(o.get("ename") == "HiddenCheckFailed" for o in outputs if o.output_type == "error")
    assert not any("Hidden checks passed" in o.get("text", "") for o in outputs)
    taken, _ = PrecomputedExecute(config=config).preprocess(nbformat.from_dict(stub), resources(made_from=stub))
    assert taken == forged


@pytest.mark.slow
def test_a5_course_grade_equals_serial_autograde_and_names_each_mistake(tmp_path):
    """a5-training (torch, optimizer chains, training in the kernel): the reference, the untouched release
    and each typical mistake, graded by `course grade` and by serial `nbgrader autograde`."""
    assignment = "a5-training"
    mistakes = [(grade_id, wrong, words) for a, grade_id, wrong, words in MISTAKES if a == assignment]
    template = make_course(tmp_path / "template" / "course")
    reference = student_version(solution_notebook(assignment))
    submit(template, "reference", assignment, reference)
    submit(template, "untouched", assignment, released_notebook(template, assignment))
    for grade_id, wrong, _ in mistakes:
        submit(template, f"mistake-{grade_id}", assignment, replace_function(reference, grade_id, wrong.strip()))
    serial_course = copy_course(template, tmp_path / "serial" / "course")
    nbgrader(serial_course, "autograde", assignment)
    parallel_course = copy_course(template, tmp_path / "parallel" / "course")
    course_grade(parallel_course, assignment, "--workers", "2")
    got = scores(parallel_course, assignment)
    assert got == scores(serial_course, assignment)
    points = max_points(assignment)
    assert got["reference"]["_total"] == sum(points.values()) and got["untouched"]["_total"] == 0
    for grade_id, _, words in mistakes:
        assert {k: v for k, v in got[f"mistake-{grade_id}"].items() if k != "_total"} == {**points, f"test_{grade_id}": 0.0}
        feedback = (parallel_course / "feedback" / f"mistake-{grade_id}" / assignment / "training.html").read_text()
        assert words in feedback, f"the feedback for {grade_id} does not say {words!r}"
    assert not sandbox_leftovers(marker=str(scratch_folder(parallel_course)))
