"""Planning (``course.planning.Planner``) against a real SQLite gradebook and the shipped hidden checks, no kernel:
what a run of ``course grade`` grades, and what it leaves as it was."""
import io
import logging
import shutil

import pytest
from nbgrader.api import Gradebook
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config

from course import ROOT
from course.collect import ProblemKind
from course.errors import UsageError
from course.incremental import GradeState
from course.late import LatePolicy
from course.plan import RunContext, Status
from course.planning import PlanOptions, Planner, to_grade_at_most
from course.plugins import SandboxedExecute

ASSIGNMENT, NOTEBOOK = "a1-distributions", "distributions"
RELEASED = ROOT / "assignments" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
# nbgrader's own session use when a submission row is made, as `course grade` meets it (and silences it)
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")


@pytest.fixture
def course(tmp_path, gradebook_copy):
    """A course whose gradebook knows a1 (so no notebook is generated), with al's and bo's submissions of a1."""
    root = tmp_path / "course"
    shutil.copytree(ROOT / "solutions" / ASSIGNMENT, root / "solutions" / ASSIGNMENT)
    url = gradebook_copy(root)
    with Gradebook(url, "prob2loss") as gradebook:
        gradebook.update_or_create_assignment(ASSIGNMENT)
        gradebook.update_or_create_notebook(NOTEBOOK, ASSIGNMENT)
    config = Config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.course_id = "prob2loss"
    config.CourseDirectory.source_directory = "solutions"
    config.CourseDirectory.db_url = url
    for student in ("al", "bo"):
        submit(root, student)
    return root, config


def submit(root, student, text=None):
    folder = root / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{NOTEBOOK}.ipynb").write_text(text or RELEASED.read_text())


def planner(course, **options):
    root, config = course
    context = RunContext(root, config, CourseDirectory(config=config), logging.getLogger("test-planning"),
                         io.StringIO())
    state = GradeState(root / ".course" / "state.json", config.CourseDirectory.db_url, context.warn)
    return Planner(context, state, SandboxedExecute(config=config), LatePolicy(config=config), PlanOptions(**options))


def graded(plan, run):
    """What recording leaves behind: the state's digest, nbgrader's submission row, the autograded notebook."""
    root = plan.context.root
    with plan.context.gradebook() as gradebook:
        for submission in run.submissions:
            gradebook.update_or_create_student(submission.student)
            gradebook.update_or_create_submission(ASSIGNMENT, submission.student)
            plan.state.remember(ASSIGNMENT, submission.student, submission.digest)
            autograded = root / "autograded" / submission.student / ASSIGNMENT
            autograded.mkdir(parents=True, exist_ok=True)
            (autograded / f"{NOTEBOOK}.ipynb").write_text("{}")


def statuses(run):
    return {s.student: s.status for s in run.submissions}


def test_a_first_run_grades_everyone_and_the_next_only_what_changed(course):
    plan = planner(course)
    run = plan.prepare(ASSIGNMENT, None)
    assert statuses(run) == {"al": Status.PENDING, "bo": Status.PENDING}
    assert run.notebooks == [NOTEBOOK] and run.checks and run.modules == ("numpy",)
    assert [p.name for p in run.submissions[0].notebooks] == [f"{NOTEBOOK}.ipynb"]
    graded(plan, run)
    assert statuses(plan.prepare(ASSIGNMENT, None)) == {"al": Status.UNCHANGED, "bo": Status.UNCHANGED}
    submit(course[0], "bo", RELEASED.read_text().replace("raise NotImplementedError()", "pass"))
    assert statuses(plan.prepare(ASSIGNMENT, None)) == {"al": Status.UNCHANGED, "bo": Status.PENDING}


def test_an_unchanged_submission_whose_graded_copy_is_gone_is_graded_again(course):
    plan = planner(course)
    graded(plan, plan.prepare(ASSIGNMENT, None))
    (course[0] / "autograded" / "al" / ASSIGNMENT / f"{NOTEBOOK}.ipynb").unlink()
    assert statuses(plan.prepare(ASSIGNMENT, None)) == {"al": Status.PENDING, "bo": Status.UNCHANGED}


def test_force_grades_everything_again(course):
    plan = planner(course)
    graded(plan, plan.prepare(ASSIGNMENT, None))
    again = planner(course, force=True)
    again.state = plan.state
    assert statuses(again.prepare(ASSIGNMENT, None)) == {"al": Status.PENDING, "bo": Status.PENDING}


def test_a_student_regrade_touches_only_that_student_and_names_an_unknown_id(course):
    plan = planner(course)
    graded(plan, plan.prepare(ASSIGNMENT, None))
    only = planner(course, only=frozenset({"al", "zed"}))
    only.state = plan.state
    run = only.prepare(ASSIGNMENT, None)
    assert statuses(run) == {"al": Status.PENDING}  # regraded although unchanged; bo is not in the run
    [missing] = [p for p in run.collected.problems if p.kind == ProblemKind.MISSING]
    assert (missing.student, missing.reason) == ("zed", "no submission from zed to regrade (is the id right?)")


def test_broken_hidden_checks_stop_the_run_before_anything_is_planned(course, tmp_path):
    checks = tmp_path / "grader_tests"
    shutil.copytree(ROOT / "grader_tests" / "references", checks / "references")
    (checks / "references" / f"{ASSIGNMENT}.json").write_text('{"cases": "not a list"}')
    plan = planner(course)
    plan.executor.hidden_checks_directory = str(checks)
    with pytest.raises(UsageError, match=f"^{ASSIGNMENT}: the hidden checks are broken, nothing graded: "):
        plan.prepare(ASSIGNMENT, None)
    assert plan.state.collection == {} and plan.state.submissions == {}  # not even collected


@pytest.mark.parametrize("only, reading_export, expected", [
    (None, False, 3 + 2),  # what is in submitted/ now for the later assignment: al's and bo's
    (None, True, None),  # an export is still to be read: not known
    (frozenset({"al"}), True, 3 + 1),  # --student: one submission at most per later assignment
])
def test_the_pool_is_sized_by_what_the_run_can_grade_at_most(tmp_path, only, reading_export, expected):
    for student, assignments in {"al": ["a2"], "bo": ["a2", "a3"]}.items():
        for assignment in assignments:
            (tmp_path / student / assignment).mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("a file beside the students' folders is no student")
    assert to_grade_at_most(3, ["a2"], tmp_path, only, reading_export) == expected
    assert to_grade_at_most(3, [], tmp_path, None, True) == 3  # nothing later: what is pending now
