"""The sandbox's fallback: without bubblewrap, grading still runs, with resource limits and a loud warning."""
import json
import shutil

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
