"""Planning, the first stage of ``course grade``: for each assignment, its hidden checks and rules (broken ones stop
the run before anything is graded), what is collected (``course.collect``) and, for each student, whether the
submission must be graded (``Status.PENDING``) or is unchanged since it was last graded (``Status.UNCHANGED``,
``course.incremental``).  The result is an ``AssignmentRun`` per assignment (``course.plan``)."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from .cases import load_rules, references_path
from .collect import DEFAULT_LMS_PATTERN, Collected, Problem, ProblemKind, collect, read_lms_record
from .errors import UsageError
from .execute import source_imports, source_notebooks
from .files import remove_quietly
from .incremental import assignment_fingerprint, grader_files, submission_digest
from .judge import HiddenCheckError, load_hidden_checks
from .plan import AssignmentRun, Status, Submission
from .record import NotInGradebook, ensure_in_gradebook
from .sanitize import log_text

if TYPE_CHECKING:
    from .incremental import GradeState
    from .late import LatePolicy
    from .plan import RunContext
    from .lms import SubmissionTimes
    from .plugins import SandboxedExecute


@dataclass(frozen=True)
class PlanOptions:
    """What the command line asks of planning."""

    force: bool = False  # --force: grade everything again, changed or not
    roster_only: bool = False  # only the gradebook's students are collected
    only: frozenset[str] | None = None  # --student: only these, always regraded; nobody else's files are touched
    pattern: str = DEFAULT_LMS_PATTERN  # how an export's file names are read (--pattern, or the LMS's preset)
    lms: str | None = None  # canvas or moodle
    times: SubmissionTimes | None = None  # --submission-times, read


class Planner:
    """Plans one run: ``prepare`` one assignment after the other, in the order they are graded."""

    def __init__(self, context: RunContext, state: GradeState, executor: SandboxedExecute, late_policy: LatePolicy,
                 options: PlanOptions) -> None:
        self.context, self.state, self.executor, self.late_policy = context, state, executor, late_policy
        self.options = options
        self.limits = executor.limits()
        self._modules: dict[str, tuple[str, ...]] = {}

    def prepare(self, assignment: str, submissions_path: Path | None) -> AssignmentRun:
        """The assignment's run: its checks, what was collected now, and each submission's status."""
        context = self.context
        try:
            notebooks = ensure_in_gradebook(context.coursedir, context.config, assignment, context.say)
        except NotInGradebook as missing:
            raise UsageError(str(missing)) from None
        try:
            checks = load_hidden_checks(assignment, self.executor.hidden_checks_directory)
            rules = load_rules(assignment, self.executor.hidden_checks_directory)
        except HiddenCheckError as broken:  # before any submission is graded; nothing is recorded
            raise UsageError(f"{assignment}: the hidden checks are broken, nothing graded: {broken}") from None
        fingerprint, modules = self._fingerprint(assignment), self.modules_of(assignment)  # before any file moves
        roster = None
        if self.options.roster_only:
            with context.gradebook() as gradebook:
                roster = {s.id for s in gradebook.students}
        collected = self._collect(submissions_path, assignment, set(notebooks), roster)
        run = AssignmentRun(assignment, notebooks, checks, rules, fingerprint, modules, collected)
        self._note_missing_times(assignment, run.collected)
        self._remember_collection(run, submissions_path)
        for problem in run.collected.problems:
            context.log.warning("%s: %s", assignment, log_text(str(problem), limit=10_000))
        with context.gradebook() as gradebook:
            recorded = {s.student.id for s in gradebook.assignment_submissions(assignment)}
        only = self.options.only
        if only is not None:
            context.say(f"{assignment}: regrading only {', '.join(sorted(only))}; nobody else's grade or feedback "
                        "changes")
            for student in sorted(only - set(run.collected.students)):
                context.warn(f"{assignment}: no submission from {student} to regrade")
                run.collected.problems.append(Problem(
                    str(context.folder("submitted_directory", student, assignment)), f"no submission from {student} "
                    "to regrade (is the id right?)", student, ProblemKind.MISSING))
        run.submissions = [self._submission(run, student, paths, student in recorded)
                           for student, paths in sorted(run.collected.students.items())
                           if only is None or student in only]
        return run

    def _submission(self, run: AssignmentRun, student: str, paths: list[Path], recorded: bool) -> Submission:
        """One student's submission: pending, or unchanged if nothing that decides its grade changed since it was
        recorded (and ``--force`` and ``--student`` are not given)."""
        submission = Submission(run.name, student, paths)
        submission.digest = submission_digest(run.fingerprint,
                                              self.context.folder("submitted_directory", student, run.name))
        autograded = self.context.folder("autograded_directory", student, run.name)
        fresh = (self.state.is_current(run.name, student, submission.digest)
                 and recorded and all((autograded / p.name).is_file() for p in paths))
        if fresh and not self.options.force and self.options.only is None:
            submission.status = Status.UNCHANGED
        return submission

    def _remember_collection(self, run: AssignmentRun, submissions_path: Path | None) -> None:
        """What this collection found, for the reports of this run and of later runs (with ``--student``: what the
        last whole collection found about everyone else is kept, and read into ``run.earlier_problems``)."""
        only, collected = self.options.only, run.collected
        if only is None:
            uncollected = collected.uncollected()
            if submissions_path is None:  # no export read now: what the last one found still holds for whoever
                # is still without a submission (a plain regrade must not turn their blank into "no submission")
                uncollected = {**{student: why for student, why in self.state.uncollected_of(run.name).items()
                                  if student not in collected.students}, **uncollected}
            self.state.remember_collection(run.name, [asdict(p) for p in collected.problems], uncollected)
            return
        if submissions_path is not None:  # those of them collected from this export are no longer uncollected
            self.state.forget_uncollected(run.name, only & set(collected.students))
        again = submissions_path is not None  # the export read now reports its own problems about no student
        run.earlier_problems = [remembered_problem(p) for p in self.state.last_collection(run.name)
                                if p.get("student") not in only and not (again and not p.get("student"))]

    def _note_missing_times(self, assignment: str, collected: Collected) -> None:
        """Submissions collected now without a time, for an assignment with a due date: one problem that says how
        many, which rule applied and how to supply the times (not one note per student)."""
        only, times, policy = self.options.only, self.options.times, self.late_policy
        timeless = sorted(s for s in collected.timeless if only is None or s in only)
        if not timeless:
            return
        with self.context.gradebook() as gradebook:
            due = policy.due.get(assignment) or gradebook.find_assignment(assignment).duedate
        if not due:
            return
        marked = [s for s in timeless if read_lms_record(
            self.context.folder("submitted_directory", s, assignment)).get("marked_late") is True]
        shown = ", ".join(timeless[:5]) + (f" and {len(timeless) - 5} more" if len(timeless) > 5 else "")
        rules = (f"{len(timeless) - len(marked)} graded by the late policy's rule for no time "
                 f"({policy.without_time_rule(False)})")
        if marked:
            rules += (f"; {len(marked)} the LMS marks late ({', '.join(marked[:5])}), graded by its rule for late work "
                      f"without a time ({policy.without_time_rule(True)})")
        how = ("pass --submission-times FILE with the times exported from the LMS (INSTRUCTORS.md, 'Submission times')"
               if times is None else f"{times.source} has no time for them")
        collected.problems.append(Problem(str(collected.source), f"{len(timeless)} submission(s) of {assignment} have "
                                          f"no submission time ({shown}): {how}; {rules}", kind=ProblemKind.NO_TIME))

    def _collect(self, source: Path | None, assignment: str, notebooks: set[str], roster: set[str] | None) -> Collected:
        """``collect``; with ``--student``, an export is read in a scratch folder and only those students'
        files reach submitted/."""
        coursedir, log, options = self.context.coursedir, self.context.log, self.options
        if options.only is None:
            return collect(source, assignment, coursedir, notebooks, options.pattern, roster, log, lms=options.lms,
                           times=options.times)
        problems = []
        if source is not None:
            submitted = Path(coursedir.root) / coursedir.submitted_directory
            with tempfile.TemporaryDirectory(prefix="course-collect-") as scratch:
                found = collect(source, assignment, SimpleNamespace(root=scratch, submitted_directory="submitted"),
                                notebooks, options.pattern, roster, log, lms=options.lms, times=options.times)
                for student in sorted(options.only & set(found.students)):
                    remove_quietly(submitted / student / assignment)  # the resubmission, whole (any depth, no links followed)
                    shutil.copytree(Path(scratch) / "submitted" / student / assignment, submitted / student / assignment)
            problems = found.problems
        result = collect(None, assignment, coursedir, notebooks, options.pattern, roster, log)
        result.problems = [p for p in problems + result.problems if not p.student or p.student in options.only]
        if source is not None:
            result.timeless = [s for s in found.timeless if s in options.only]
        return result

    def modules_of(self, assignment: str) -> tuple[str, ...]:
        """The heavy modules the assignment's source notebooks import: its fork server or warm kernel imports them
        ahead (``AssignmentRun.modules``, and the first kernel of the pool)."""
        if assignment not in self._modules:
            self._modules[assignment] = tuple(source_imports(source_notebooks(self.context.config, assignment),
                                                             self.executor.preload_modules))
        return self._modules[assignment]

    def _fingerprint(self, assignment: str) -> bytes:
        import nbgrader

        coursedir = self.context.coursedir
        settings = {"limits": asdict(self.limits), "bubblewrap": self.executor.use_bubblewrap,
                    "nbgrader": nbgrader.__version__, "db": coursedir.db_url, "course": coursedir.course_id}
        checks = references_path(assignment, self.executor.hidden_checks_directory)
        source = Path(coursedir.format_path(coursedir.source_directory, ".", assignment))
        return assignment_fingerprint(settings, grader_files(checks, self.context.root / "nbgrader_config.py", source))

    def to_grade_at_most(self, runs: list[AssignmentRun], later: list[str], reading_export: bool) -> int | None:
        """How many submissions this run can grade at most, known before the ``later`` assignments are collected
        (None: not known): those to grade in ``runs``, and for each later one what is in submitted/ now, or
        ``--student``'s; with an export to collect, not known."""
        coursedir = self.context.coursedir
        return to_grade_at_most(sum(s.status == Status.PENDING for run in runs for s in run.submissions), later,
                                Path(coursedir.root) / coursedir.submitted_directory, self.options.only, reading_export)


def remembered_problem(saved: dict[str, str]) -> Problem:
    """A problem of an earlier collection, as the run's state keeps it (``Problem`` as a dict of strings)."""
    kinds = {kind.value: kind for kind in ProblemKind}
    return Problem(saved.get("where", ""), saved.get("reason", ""), saved.get("student", ""),
                   kinds.get(saved.get("kind", ""), ProblemKind.UNREADABLE))


def to_grade_at_most(pending: int, later: list[str], submitted: Path, only: frozenset[str] | None,
                     reading_export: bool) -> int | None:
    """``pending`` submissions to grade now, and at most what ``later`` assignments have in ``submitted`` (or
    ``only``'s students each); None if an export is still to be read for them."""
    if only is not None:
        return pending + len(only) * len(later)
    if reading_export and later:
        return None
    students = [folder for folder in submitted.iterdir() if folder.is_dir()] if submitted.is_dir() and later else []
    return pending + sum((folder / assignment).is_dir() for folder in students for assignment in later)
