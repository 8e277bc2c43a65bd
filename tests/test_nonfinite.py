"""Non-finite values are judged exactly, with real kernels in the sandbox, through `nbgrader autograde`
and through `course grade`.

a1's bernoulli_log_pmf must return -inf for an impossible outcome.  A function that returns nan or
+inf there agrees with the reference on which entries are finite, and used to get full marks.
"""
import pytest

from grading_support import (copy_course, course_grade, feedback_html, make_course, max_points, nbgrader,
                             replace_function, scores, scratch_folder, solution_notebook, student_version)

pytestmark = [pytest.mark.slow]

ASSIGNMENT = "a1-distributions"
IMPOSSIBLE_AS = '''
def bernoulli_log_pmf(k, p):
    k = np.asarray(k, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    likelihood = np.where(k == 1, p, 1 - p)
    return np.log(likelihood, out=np.full_like(likelihood, {value}), where=likelihood > 0)
'''.strip()
SUBMISSIONS = {
    "honest": (None, None),
    "nan-for-minus-inf": ("np.nan", "expected -inf where you returned nan"),
    "plus-inf-for-minus-inf": ("np.inf", "expected -inf where you returned +inf"),
}


def notebook_of(student):
    notebook = student_version(solution_notebook(ASSIGNMENT))
    value = SUBMISSIONS[student][0]
    return notebook if value is None else replace_function(notebook, "bernoulli_log_pmf", IMPOSSIBLE_AS.format(value=value))


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return make_course(tmp_path_factory.mktemp("nonfinite") / "course", assignment=ASSIGNMENT,
                       submissions={student: notebook_of(student) for student in SUBMISSIONS})


def expected_scores():
    points = max_points(ASSIGNMENT)
    wrong = {**points, "test_bernoulli_log_pmf": 0.0}
    return {"honest": {**points, "_total": sum(points.values())},
            **{s: {**wrong, "_total": sum(wrong.values())} for s in SUBMISSIONS if s != "honest"}}


def assert_judged_exactly(course):
    assert scores(course, ASSIGNMENT) == expected_scores()
    for student, (_, words) in SUBMISSIONS.items():
        if words:
            html = feedback_html(course, student, ASSIGNMENT)
            assert words in html, f"the feedback of {student} does not say {words!r}"


def test_nbgrader_autograde_judges_nan_and_infinities_exactly(course, tmp_path):
    graded = copy_course(course, tmp_path / "course")
    nbgrader(graded, "autograde", ASSIGNMENT)
    nbgrader(graded, "generate_feedback", ASSIGNMENT)
    assert_judged_exactly(graded)


def test_course_grade_judges_nan_and_infinities_exactly(course, tmp_path):
    graded = copy_course(course, tmp_path / "course")
    result = course_grade(graded, ASSIGNMENT, "--workers", "2")
    assert result.returncode == 0, result.stdout
    assert_judged_exactly(graded)
    report = (graded / "reports" / ASSIGNMENT / "report.md").read_text()
    assert "expected -inf where you returned" in report
    assert not list(scratch_folder(graded).iterdir())
