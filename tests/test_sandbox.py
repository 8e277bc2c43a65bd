"""Without a working sandbox, grading refuses to run student code; running without it is an explicit,
logged opt-in that still applies the resource limits. And kernels started cold in bubblewrap hold."""
import json
import secrets
import shutil
from pathlib import Path

import nbformat
import pytest

from attacks import ASSIGNMENT as ATTACKED
from attacks import LIMITS, MARKER, MARKER_FOLDERS, LoopbackListener, attacks, correct, expected_points, remove_markers
from grading_support import (MEMORY_HOG, BIN, CgroupWatcher, add_cell, cgroups_available, course_grade, environment,
                             feedback_html, grading_notes, make_course, max_points, nbgrader, scores, solution_notebook,
                             student_version, submit)

ASSIGNMENT = "a2-losses"


def without_bubblewrap(tmp_path, broken=False):
    """The grader's environment on a machine with no bubblewrap, or (``broken``) with one that cannot
    start a sandbox, as where user namespaces are turned off."""
    env = environment()
    env["PATH"] = str(BIN)  # no /usr/bin: bwrap cannot be found
    if broken:
        fake = tmp_path / "broken-bwrap"
        fake.mkdir()
        (fake / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
        (fake / "bwrap").chmod(0o755)
        env["PATH"] = f"{fake}:{BIN}:/usr/bin:/bin"
    else:
        assert shutil.which("bwrap", path=env["PATH"]) is None
    return env


def writes_a_file(honest, path):
    """A submission whose first cell leaves a file behind: proof that its code ran."""
    return add_cell(honest, f"open({str(path)!r}, 'w').write('student code ran')", position=2)


@pytest.mark.slow
@pytest.mark.parametrize("broken", [False, True], ids=["bubblewrap-missing", "bubblewrap-cannot-start"])
def test_without_a_sandbox_grading_refuses_and_runs_no_student_code(tmp_path, broken):
    course = make_course(tmp_path / "course")
    ran = tmp_path / f"ran-{secrets.token_hex(4)}"
    honest = student_version(solution_notebook(ASSIGNMENT))
    submit(course, "student", ASSIGNMENT, writes_a_file(honest, ran))
    env = without_bubblewrap(tmp_path, broken)

    result = nbgrader(course, "autograde", ASSIGNMENT, env=env, check=False)
    log = result.stdout + result.stderr
    assert result.returncode != 0
    assert "refusing to run student code" in log and "apt-get install -y bubblewrap" in log, log[-3000:]
    assert "use_bubblewrap = False" in log and ("cannot start" in log) == broken
    assert not ran.exists(), "student code ran without the sandbox"
    assert not any(s.get("_total") for s in scores(course, ASSIGNMENT).values())
    assert not (course / "autograded" / "student" / ASSIGNMENT).exists()

    result = course_grade(course, ASSIGNMENT, env=env, check_codes=(2,))  # and no traceback
    assert "refusing to run student code" in result.stderr and "--no-sandbox" in result.stderr
    assert not ran.exists(), "student code ran without the sandbox"
    assert not (course / "autograded" / "student" / ASSIGNMENT).exists()


@pytest.mark.slow
def test_grading_without_the_sandbox_is_an_explicit_opt_in_with_limits_and_a_warning(tmp_path):
    course = make_course(tmp_path / "course", extra_config="c.SandboxedExecute.memory_limit_gib = 1.5")
    honest = student_version(solution_notebook(ASSIGNMENT))
    submit(course, "honest", ASSIGNMENT, honest)
    submit(course, "memory-hog", ASSIGNMENT, add_cell(honest, MEMORY_HOG, after_grade_id="test_softmax"))
    env = without_bubblewrap(tmp_path)
    full = sum(max_points(ASSIGNMENT).values())

    # nbgrader autograde: the configuration flag.
    with open(course / "nbgrader_config.py", "a") as config:
        config.write("\nc.SandboxedExecute.use_bubblewrap = False\n")
    result = nbgrader(course, "autograde", ASSIGNMENT, env=env)
    log = result.stdout + result.stderr
    assert "SANDBOX NOT ENFORCED" in log and "Not enforced: no network" in log and "Still enforced: memory" in log
    graded = scores(course, ASSIGNMENT)
    assert graded["honest"]["_total"] == full and graded["memory-hog"]["_total"] == full
    hog = nbformat.read(course / "autograded" / "memory-hog" / ASSIGNMENT / "losses.ipynb", as_version=4)
    assert "memory limit held" in json.dumps(hog)
    nbgrader(course, "generate_feedback", ASSIGNMENT, env=env)
    assert "graded without the bubblewrap sandbox" in feedback_html(course, "honest", ASSIGNMENT)

    # course grade: the command-line option, with the configuration back to its default.
    config = (course / "nbgrader_config.py").read_text().replace("c.SandboxedExecute.use_bubblewrap = False", "")
    (course / "nbgrader_config.py").write_text(config)
    course_grade(course, ASSIGNMENT, "--force", env=env, check_codes=(2,))  # no flag: refused
    course_grade(course, ASSIGNMENT, "--force", "--no-sandbox", env=env, check_codes=(0,))
    assert "SANDBOX NOT ENFORCED" in (course / "reports" / "grade.log").read_text()
    graded = scores(course, ASSIGNMENT)
    assert graded["honest"]["_total"] == full and graded["memory-hog"]["_total"] == full


COLD_ATTACKS = ["reads-the-solutions", "writes-the-gradebook", "forged-results", "cpu-hog-ignoring-signals",
                "memory-hog", "fork-bomb-and-detached-processes", "network", "writes-outside", "fills-the-disk",
                "fills-a-channel-sub-folder", *(["memory-in-many-processes"] if cgroups_available() else [])]


@pytest.mark.slow
def test_kernels_started_cold_in_bubblewrap_hold_against_the_same_attacks(tmp_path, request):
    """The adversarial suite grades through the fork server; this runs its worst attacks with
    ``fork_server = False``: every kernel started by bubblewrap itself, as where there is no root."""
    import psutil

    course = make_course(tmp_path / "course", extra_config=LIMITS + "\nc.SandboxedExecute.fork_server = False\n")
    listener = LoopbackListener()
    request.addfinalizer(listener.close)
    request.addfinalizer(remove_markers)
    chosen = {s: v for s, v in attacks(course, listener.port).items() if s in COLD_ATTACKS}
    assert set(chosen) == set(COLD_ATTACKS)
    for student, (notebook, _) in chosen.items():
        submit(course, student, ATTACKED, notebook)
    submit(course, "honest", ATTACKED, correct())
    with CgroupWatcher() as cgroups:
        result = nbgrader(course, "autograde", ATTACKED, check=False, timeout=900)
    listener.close()
    log = result.stdout + result.stderr
    assert "kernels are started cold in bubblewrap" in log and "forked from" not in log
    graded = scores(course, ATTACKED)
    wrong = {s: graded.get(s) for s, (_, expected) in chosen.items()
             if {g: v for g, v in (graded.get(s) or {}).items() if g != "_total"} != expected_points(expected)}
    assert not wrong, f"{wrong}\n{log[-3000:]}"
    assert graded["honest"]["_total"] == sum(max_points(ATTACKED).values())
    reasons = {s: [note.get("reason", "") for note in grading_notes(course, s, ATTACKED)] for s in chosen}
    assert any("wrote more than 512 MiB" in r for r in reasons["fills-a-channel-sub-folder"]), reasons
    if cgroups_available():
        assert any("used more than its memory limit of 2 GiB" in r for r in reasons["memory-in-many-processes"]), reasons
        assert [f for f in cgroups.seen if "/submission-" in f], "grading made no submission cgroup"
        assert not cgroups.left, f"cgroups left behind: {sorted(cgroups.left)}"
    assert listener.connections == 0
    assert not [p for p in psutil.process_iter(["cmdline"]) if MARKER in " ".join(p.info["cmdline"] or [])]
    for folder in [*MARKER_FOLDERS, str(course)]:
        assert not (Path(folder) / MARKER).exists(), f"a submission wrote {folder}/{MARKER}"
