"""The sandbox's fallback: without bubblewrap, grading still runs, with resource limits and a loud warning."""
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from grading_support import (MEMORY_HOG, BIN, add_cell, environment, feedback_html, make_course, max_points, nbgrader, scores,
                             solution_notebook, student_version, submit)

ASSIGNMENT = "a2-losses"


@pytest.mark.slow
def test_without_bubblewrap_grading_runs_with_limits_and_a_loud_warning(tmp_path):
    course = make_course(tmp_path / "course", extra_config="c.SandboxedExecute.memory_limit_gib = 1.5")
    honest = student_version(solution_notebook(ASSIGNMENT))
    submit(course, "honest", ASSIGNMENT, honest)
    submit(course, "memory-hog", ASSIGNMENT, add_cell(honest, MEMORY_HOG, after_grade_id="test_softmax"))
    env = environment()
    env["PATH"] = str(BIN)  # no /usr/bin: bwrap cannot be found, as on a machine without bubblewrap
    assert shutil.which("bwrap", path=env["PATH"]) is None
    result = nbgrader(course, "autograde", ASSIGNMENT, env=env)
    log = result.stdout + result.stderr
    assert "SANDBOX NOT ENFORCED" in log and "bubblewrap" in log
    graded = scores(course, ASSIGNMENT)
    full = sum(max_points(ASSIGNMENT).values())
    assert graded["honest"]["_total"] == full and graded["memory-hog"]["_total"] == full
    hog = nbformat.read(course / "autograded" / "memory-hog" / ASSIGNMENT / "losses.ipynb", as_version=4)
    assert "memory limit held" in json.dumps(hog)
    nbgrader(course, "generate_feedback", ASSIGNMENT, env=env)
    assert "graded without the bubblewrap sandbox" in feedback_html(course, "honest", ASSIGNMENT)


COLD_ATTACKS = ["reads-the-solutions", "writes-the-gradebook", "forged-results", "cpu-hog-ignoring-signals",
                "memory-hog", "fork-bomb-and-detached-processes", "network", "writes-outside", "fills-the-disk"]


@pytest.mark.slow
def test_kernels_started_cold_in_bubblewrap_hold_against_the_same_attacks(tmp_path):
    """The adversarial suite grades through the fork server; this runs its worst attacks with
    ``fork_server = False``: every kernel started by bubblewrap itself, as where there is no root."""
    import psutil

    from test_adversarial import ASSIGNMENT as ATTACKED, LIMITS, MARKER, LoopbackListener, attacks, correct, expected_points

    course = make_course(tmp_path / "course", extra_config=LIMITS + "\nc.SandboxedExecute.fork_server = False\n")
    listener = LoopbackListener()
    chosen = {s: v for s, v in attacks(course, listener.port).items() if s in COLD_ATTACKS}
    assert set(chosen) == set(COLD_ATTACKS)
    for student, (notebook, _) in chosen.items():
        submit(course, student, ATTACKED, notebook)
    submit(course, "honest", ATTACKED, correct())
    result = nbgrader(course, "autograde", ATTACKED, check=False, timeout=900)
    listener.close()
    log = result.stdout + result.stderr
    assert "kernels are started cold in bubblewrap" in log and "forked from" not in log
    graded = scores(course, ATTACKED)
    wrong = {s: graded.get(s) for s, (_, expected) in chosen.items()
             if {g: v for g, v in (graded.get(s) or {}).items() if g != "_total"} != expected_points(expected)}
    assert not wrong, f"{wrong}\n{log[-3000:]}"
    assert graded["honest"]["_total"] == sum(max_points(ATTACKED).values())
    assert listener.connections == 0
    assert not [p for p in psutil.process_iter(["cmdline"]) if MARKER in " ".join(p.info["cmdline"] or [])]
    for folder in ["/tmp", "/var/tmp", "/dev/shm", str(course)]:
        assert not (Path(folder) / MARKER).exists(), f"a submission wrote {folder}/{MARKER}"
