"""``course grade``: from submissions (or an LMS export) to grades, feedback, a CSV and a report.

    course grade <assignment>... [--submissions PATH] [--workers N] [--scheduler tcp://HOST:8786]
                                 [--db URL] [--force]

The grades are nbgrader's own, computed by the trusted pipeline that ``nbgrader autograde``
runs (``nbgrader_config.py``); only its expensive, pure part runs in parallel:

1. *collect* (``course.collect``): the nbgrader layout, or a zip/folder exported from an LMS;
2. *sanitize*, in this process, once per notebook: nbgrader's sanitize preprocessors
   (``ClearOutput``, ``RestoreCellMetadata``, ``OverwriteCells``, ...) on each submitted notebook;
3. *execute*, in parallel: the sanitized notebook and the hidden checks go, as plain data, to a
   worker (a local process pool, one worker per core, or a Dask cluster), which runs it in a
   fresh bubblewrap sandbox (``course.execute.execute_submission``) and sends back the executed
   notebook;
4. *record*, in this process, one submission at a time (``course.record``): nbgrader's
   ``Autograde`` converter, the same code as ``nbgrader autograde --force`` for that student,
   with ``SandboxedExecute`` replaced by ``PrecomputedExecute``, which hands over the executed
   notebook if, and only if, its input is byte-for-byte the notebook this run sanitized (a
   SHA-256 of the notebook's JSON); otherwise it executes the notebook here, in the sandbox,
   exactly as ``SandboxedExecute`` would.  So nbgrader writes the gradebook from a single
   process (SQLite is safe), and the grades are those of ``nbgrader autograde`` by construction;
5. *feedback* (nbgrader's ``GenerateFeedback``), the grades CSV (nbgrader's
   ``CsvExportPlugin``) and a report per assignment (``course.report``).

Unchanged submissions are not graded again (``course.incremental``); ``--force`` regrades
everything.
"""
import copy
import logging
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

from traitlets import Bool, Integer, Unicode
from traitlets.config import Configurable

from .accounting import WHOLE_RUN, CpuAccount, Stage
from .collect import Collect, Problem, ProblemKind, collect, read_lms_record
from .config import in_pipeline, is_step, load_config
from .errors import UsageError
from .files import remove_quietly
from .execute import source_imports, source_notebooks
from .plugins import SandboxedExecute
from .incremental import GradeState, assignment_fingerprint, grader_files, submission_digest
from .cases import references_path
from .cases import load_rules
from .judge import HiddenCheckError, load_hidden_checks
from .kernel import KernelRecipe
from .plan import AssignmentRun, Status, Submission
from .tasks import WorkerTask
from .pools import DaskPool, LocalPool, PoolUnavailable
from .record import KeepsFailures, NotInGradebook, PrecomputedExecute, ensure_in_gradebook, record, sanitize_notebook
from .sandbox import UNSANDBOXED, SandboxUnavailable, require_sandbox
from .sanitize import log_text
from .vendor import nbgrader_speedups, submission_folder_pattern
FEEDBACK_BATCH = 4  # feedback is written in batches (templates compiled once per batch)
FEEDBACK_TEMPLATE = "feedback"
CPU_ACCOUNT = "grade-cpu.json"  # in the report folder: CPU-seconds by stage and assignment (course.accounting)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped the batch; what was recorded stays, the rest is graded next time."""


class StopRequests:
    """While grading, Ctrl-C and SIGTERM ask the batch to stop: the grader finishes the step in hand
    (never half a recording), then stops the workers.  A second Ctrl-C stops at once."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self):
        self.requested = False
        self.previous = {}

    def __enter__(self):
        import signal

        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                number = getattr(signal, name)
                self.previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        import signal

        for number, handler in self.previous.items():
            signal.signal(number, handler)
        return False


class SigtermInterrupts:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so that the workers started for a run are stopped with it
    (Python's default ends the process at once, and a pool's workers would wait for tasks forever).  While
    grading, ``StopRequests`` handles both signals its own way."""

    def __enter__(self):
        import signal

        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
        return self

    def __exit__(self, *exc):
        import signal

        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False


class PoolClosing:
    """A pool's workers ending in a thread of their own; ``wait()`` returns what went wrong, if anything."""

    def __init__(self, pool):
        self.problem = None
        self.thread = threading.Thread(target=self._close, args=(pool,), name="course-grade-pool-close")
        self.thread.start()

    def _close(self, pool):
        try:
            pool.close()
        except Exception as error:  # noqa: BLE001 - reported by wait(), after the grades and reports are written
            self.problem = f"{type(error).__name__}: {error}"

    def wait(self):
        self.thread.join()
        return self.problem


class CourseGrade(Configurable):
    """Settings of ``course grade``, in ``nbgrader_config.py`` as ``c.CourseGrade.<name>``."""

    workers = Integer(0, help="local worker processes (0: one per core)").tag(config=True)
    prewarm = Bool(True, help="start each worker's next sandboxed kernel while it grades the current one").tag(config=True)
    report_directory = Unicode("reports", help="where reports go, relative to the course root").tag(config=True)
    csv = Unicode("grades.csv", help="the grades CSV (nbgrader export), relative to the course root").tag(config=True)
    state_file = Unicode(os.path.join(".course", "grade-state.json"), help="what was graded, for incremental runs").tag(config=True)


# --------------------------------------------------------------------------------------------

class GradeRun:
    """One ``course grade`` invocation."""

    def __init__(self, root=None, db_url=None, workers=None, scheduler=None, force=False, pattern=None,
                 roster_only=False, progress=True, feedback=True, out=None, sandbox=True, students=None, lms=None,
                 submission_times=None, times_zone=None):
        from nbgrader.coursedir import CourseDirectory

        self.account = CpuAccount()  # where the CPU goes, by stage (reports/grade-cpu.json)
        tools = str(Path(sys.executable).parent)  # nbgrader runs `alembic` when it creates a gradebook
        if tools not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = tools + os.pathsep + os.environ.get("PATH", "")
        self.root = Path(root or os.getcwd()).resolve()
        self.config = load_config(self.root, db_url)
        if not sandbox:  # --no-sandbox: the explicit opt-in, logged in full by the executor
            self.config.SandboxedExecute.use_bubblewrap = False
        self.coursedir = CourseDirectory(config=self.config)
        self.settings = CourseGrade(config=self.config)
        from traitlets import TraitError

        from .late import LatePolicy
        try:  # a due date the grader would misread stops the run here, before anything is graded
            LatePolicy(config=self.config)
        except TraitError as error:
            raise UsageError(f"{self.root / 'nbgrader_config.py'}: {error}") from None
        self.db_url = self.coursedir.db_url
        self.force, self.roster_only, self.progress, self.make_feedback = force, roster_only, progress, feedback
        # --student: only these students are collected and regraded (always, changed or not); nobody
        # else's files, grades or feedback are touched
        self.only = set(students) if students else None
        collect_settings = Collect(config=self.config)
        self.pattern = pattern or collect_settings.lms_pattern
        self.lms = lms or (None if pattern else collect_settings.lms)  # --pattern: the pattern, not the config's preset
        self.times = None
        if submission_times:
            if not self.lms:
                raise UsageError("--submission-times needs --lms canvas or --lms moodle: the times are keyed by the "
                                 "LMS's user ids")
            from .lms import read_submission_times

            self.times = read_submission_times(submission_times, self.lms, times_zone)
        self.late_policy = LatePolicy(config=self.config)
        self.scheduler = scheduler
        self.workers = workers or self.settings.workers or os.cpu_count() or 1
        self.out = out or sys.stdout
        import warnings

        from sqlalchemy.exc import SAWarning

        warnings.filterwarnings("ignore", category=SAWarning)  # nbgrader's own session use, harmless and noisy
        self.executor_settings = SandboxedExecute(config=self.config)
        if self.executor_settings.use_bubblewrap:
            # Before anything is collected or graded: no sandbox here, no grading at all.
            try:
                require_sandbox()
            except SandboxUnavailable as error:
                raise UsageError(str(error)) from None
        self.limits = self.executor_settings.limits()
        self.log = self._logger()
        if not self.executor_settings.use_bubblewrap:
            self.log.warning(UNSANDBOXED)
            self.say(f"WARNING: {UNSANDBOXED}")
        self.finish_config = copy.deepcopy(self.config)
        # nbconvert validates the whole notebook after every preprocessor unless told to do it once, after the
        # last (its public ``optimistic_validation``): the same check, once per pass instead of six times
        self.finish_config.Exporter.optimistic_validation = True
        pipeline = list(self.config.Autograde.get("autograde_preprocessors", []))
        self.parallel = in_pipeline(self.config, SandboxedExecute)
        if self.parallel:
            self.finish_config.Autograde.autograde_preprocessors = [
                PrecomputedExecute if is_step(p, SandboxedExecute) else p for p in pipeline]
        self.state = GradeState(self.root / self.settings.state_file, self.db_url, self.warn)
        self.pool_description = ""
        self._task_count = 0
        self.feedback_queue = []

    # ---- logging ------------------------------------------------------------------------
    def _logger(self):
        reports = self.root / self.settings.report_directory
        reports.mkdir(parents=True, exist_ok=True)
        self.log_path = reports / "grade.log"
        handler = logging.FileHandler(self.log_path, mode="w", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s"))
        nbgrader_log = logging.getLogger("traitlets")
        for old in [h for h in nbgrader_log.handlers if getattr(h, "_course_grade", False)]:
            nbgrader_log.removeHandler(old)
        handler._course_grade = True
        nbgrader_log.addHandler(handler)
        nbgrader_log.setLevel(logging.INFO)
        nbgrader_log.propagate = False
        return nbgrader_log

    def say(self, message=""):
        from tqdm import tqdm

        tqdm.write(log_text(message, limit=10_000), file=self.out)  # one line each: names can carry newlines

    def warn(self, message):
        self.log.warning(message)
        self.say(f"WARNING: {message}")

    # ---- preparing an assignment ------------------------------------------------------------
    def gradebook(self):
        from nbgrader.api import Gradebook

        return Gradebook(self.db_url, self.coursedir.course_id)

    def prepare(self, assignment, submissions_path):
        try:
            notebooks = ensure_in_gradebook(self.coursedir, self.config, assignment, self.say)
        except NotInGradebook as problem:
            raise UsageError(str(problem)) from None
        try:
            checks = load_hidden_checks(assignment, self.executor_settings.hidden_checks_directory)
            rules = load_rules(assignment, self.executor_settings.hidden_checks_directory)
        except HiddenCheckError as problem:  # before any submission is graded; nothing is recorded
            raise UsageError(f"{assignment}: the hidden checks are broken, nothing graded: {problem}") from None
        run = AssignmentRun(assignment, notebooks, checks, rules, self._fingerprint(assignment), self.modules_of(assignment))
        roster = None
        if self.roster_only:
            with self.gradebook() as gradebook:
                roster = {s.id for s in gradebook.students}
        run.collected = self._collect(submissions_path, assignment, set(notebooks), roster)
        self._note_missing_times(assignment, run.collected)
        if self.only is None:
            uncollected = run.collected.uncollected()
            if submissions_path is None:  # no export read now: what the last one found still holds for whoever
                # is still without a submission (a plain regrade must not turn their blank into "no submission")
                uncollected = {**{student: why for student, why in self.state.uncollected_of(assignment).items()
                                  if student not in run.collected.students}, **uncollected}
            self.state.remember_collection(assignment, [asdict(p) for p in run.collected.problems], uncollected)
        else:  # the report still lists what the last whole collection found about everyone else
            if submissions_path is not None:  # those of them collected from this export are no longer uncollected
                self.state.forget_uncollected(assignment, self.only & set(run.collected.students))
            again = submissions_path is not None  # the export read now reports its own problems about no student
            run.earlier_problems = [Problem(**p) for p in self.state.last_collection(assignment)
                                    if p.get("student") not in self.only and not (again and not p.get("student"))]
        for problem in run.collected.problems:
            self.log.warning("%s: %s", assignment, log_text(str(problem), limit=10_000))
        with self.gradebook() as gradebook:
            recorded = {s.student.id for s in gradebook.assignment_submissions(assignment)}
        if self.only is not None:
            self.say(f"{assignment}: regrading only {', '.join(sorted(self.only))}; nobody else's grade or feedback changes")
            for student in sorted(self.only - set(run.collected.students)):
                self.warn(f"{assignment}: no submission from {student} to regrade")
                run.collected.problems.append(Problem(str(self.coursedir.format_path(
                    self.coursedir.submitted_directory, student, assignment)), f"no submission from {student} to regrade "
                    "(is the id right?)", student, ProblemKind.MISSING))
        for student, paths in sorted(run.collected.students.items()):
            if self.only is not None and student not in self.only:
                continue
            submission = Submission(assignment, student, paths)
            submission.digest = submission_digest(
                run.fingerprint, self.coursedir.format_path(self.coursedir.submitted_directory, student, assignment))
            autograded = Path(self.coursedir.format_path(self.coursedir.autograded_directory, student, assignment))
            fresh = (self.state.is_current(assignment, student, submission.digest)
                     and student in recorded and all((autograded / p.name).is_file() for p in paths))
            if fresh and not self.force and self.only is None:
                submission.status = Status.UNCHANGED
            run.submissions.append(submission)
        return run

    def _note_missing_times(self, assignment, collected):
        """Submissions collected now without a time, for an assignment with a due date: one problem that says how
        many, which rule applied and how to supply the times (not one note per student)."""
        timeless = sorted(s for s in collected.timeless if self.only is None or s in self.only)
        if not timeless:
            return
        with self.gradebook() as gradebook:
            due = self.late_policy.due.get(assignment) or gradebook.find_assignment(assignment).duedate
        if not due:
            return
        marked = [s for s in timeless if read_lms_record(
            self.coursedir.format_path(self.coursedir.submitted_directory, s, assignment)).get("marked_late") is True]
        shown = ", ".join(timeless[:5]) + (f" and {len(timeless) - 5} more" if len(timeless) > 5 else "")
        rules = f"{len(timeless) - len(marked)} graded by the late policy's rule for no time ({self.late_policy.without_time_rule(False)})"
        if marked:
            rules += (f"; {len(marked)} the LMS marks late ({', '.join(marked[:5])}), graded by its rule for late work "
                      f"without a time ({self.late_policy.without_time_rule(True)})")
        how = ("pass --submission-times FILE with the times exported from the LMS (INSTRUCTORS.md, 'Submission times')"
               if self.times is None else f"{self.times.source} has no time for them")
        collected.problems.append(Problem(str(collected.source), f"{len(timeless)} submission(s) of {assignment} have "
                                          f"no submission time ({shown}): {how}; {rules}", kind=ProblemKind.NO_TIME))

    def _collect(self, source, assignment, notebooks, roster):
        """``collect``; with ``--student``, an export is read in a scratch folder and only those students'
        files reach submitted/."""
        lms = dict(lms=self.lms, times=self.times)
        if self.only is None:
            return collect(source, assignment, self.coursedir, notebooks, self.pattern, roster, self.log, **lms)
        problems = []
        if source is not None:
            submitted = Path(self.coursedir.root) / self.coursedir.submitted_directory
            with tempfile.TemporaryDirectory(prefix="course-collect-") as scratch:
                found = collect(source, assignment, SimpleNamespace(root=scratch, submitted_directory="submitted"),
                                notebooks, self.pattern, roster, self.log, **lms)
                for student in sorted(self.only & set(found.students)):
                    remove_quietly(submitted / student / assignment)  # the resubmission, whole (any depth, no links followed)
                    shutil.copytree(Path(scratch) / "submitted" / student / assignment, submitted / student / assignment)
            problems = found.problems
        result = collect(None, assignment, self.coursedir, notebooks, self.pattern, roster, self.log)
        result.problems = [p for p in problems + result.problems if not p.student or p.student in self.only]
        if source is not None:
            result.timeless = [s for s in found.timeless if s in self.only]
        return result

    def modules_of(self, assignment):
        """The heavy modules the assignment's source notebooks import: its fork server or warm kernel imports them
        ahead (``AssignmentRun.modules``, and the first kernel of the pool)."""
        return source_imports(source_notebooks(self.config, assignment), self.executor_settings.preload_modules)

    def _fingerprint(self, assignment):
        import nbgrader

        settings = {"limits": asdict(self.limits), "bubblewrap": self.executor_settings.use_bubblewrap,
                    "nbgrader": nbgrader.__version__, "db": self.db_url, "course": self.coursedir.course_id}
        checks = references_path(assignment, self.executor_settings.hidden_checks_directory)
        source = Path(self.coursedir.format_path(self.coursedir.source_directory, ".", assignment))
        return assignment_fingerprint(settings, grader_files(checks, self.root / "nbgrader_config.py", source))

    def feedback(self, assignment, students):
        """nbgrader's GenerateFeedback for some students of one assignment, in one converter run
        (one HTML exporter, its templates compiled once); returns the students it failed for."""
        from nbgrader.utils import capture_log, temp_attrs
        from traitlets.config import Config

        with temp_attrs(self.coursedir, assignment_id=assignment, student_id="*"):
            converter = selected_feedback_class()(coursedir=self.coursedir, config=self.config)
            converter.students = set(students)
            extra = Config()
            extra.HTMLExporter.template_name = FEEDBACK_TEMPLATE
            converter.update_config(extra)
            converter.force = True
            capture_log(converter)
        return converter.failed_students

    def feedback_is_current(self, submission):
        for path in submission.notebooks:
            autograded = Path(self.coursedir.format_path(self.coursedir.autograded_directory, submission.student,
                                                         submission.assignment)) / path.name
            html = Path(self.coursedir.format_path(self.coursedir.feedback_directory, submission.student,
                                                   submission.assignment)) / (path.stem + ".html")
            if not html.is_file() or (autograded.is_file() and html.stat().st_mtime < autograded.stat().st_mtime):
                return False
        return True

    # ---- the run ----------------------------------------------------------------------------
    def run(self, assignments, submissions_path=None):
        if self.times is not None and submissions_path is None:  # nothing would be collected for them to date
            raise UsageError(f"--submission-times {self.times.source}: the times are for an LMS export; pass it with "
                             "--submissions")
        try:
            with nbgrader_speedups():
                return self._run(assignments, submissions_path)
        finally:
            self.state.save()  # what was graded stays known, even after an interruption
            for handler in [h for h in self.log.handlers if getattr(h, "_course_grade", False)]:
                self.log.removeHandler(handler)
                handler.close()

    def _run(self, assignments, submissions_path):
        started = time.perf_counter()
        pool, closing = None, None
        with SigtermInterrupts():  # outside _grade too, while workers may run: a SIGTERM stops them as Ctrl-C does
            try:
                runs = []
                for index, assignment in enumerate(assignments):
                    with self.account.clock(assignment, Stage.COLLECT):
                        runs.append(self.prepare(assignment, submissions_path))
                    run = runs[-1]
                    if run.collected.problems:
                        self.say(f"{assignment}: {len(run.collected.problems)} problem(s) collecting "
                                 f"{run.collected.source}:")
                        for problem in run.collected.problems:
                            self.say(f"  - {problem}")
                    # The pool starts with the first submission to grade: its workers start up (an interpreter, a
                    # fork server and a warm kernel each) while this process collects and sanitizes the rest.
                    if pool is None and self.parallel and any(s.status == Status.PENDING for s in run.submissions):
                        pool = self._start_pool(assignments, self._to_grade_at_most(runs, assignments[index + 1:],
                                                                                    submissions_path))
                todo = [s for run in runs for s in run.submissions if s.status == Status.PENDING]
                by_name = {run.name: run for run in runs}
                if todo:
                    self._grade(todo, by_name, pool)
                if pool is not None:
                    # Its workers end (their kernels and fork servers with them) while the CSV and reports are
                    # written.
                    closing = PoolClosing(pool)
                    pool = None
                for run in runs:
                    self._feedback_for_unchanged(run)
                with self.account.clock(WHOLE_RUN, Stage.REPORT):
                    self.csv_path = self._export()
                from .report import write_report

                summary = self.summary(runs)
                for run in runs:
                    with self.account.clock(run.name, Stage.REPORT):
                        run.report = write_report(summary, run)
            except BaseException as error:
                if pool is not None:
                    if isinstance(error, KeyboardInterrupt):  # Interrupted too
                        self.say("interrupted: stopping the workers, their kernels and fork servers")
                    if pool.kind == "local" or self._task_count:
                        pool.stop()  # at once: an interruption, or the grader's own failure
                    else:  # a cluster this run sent nothing to: its other tasks are none of ours
                        pool.close()
                raise
            finally:
                if closing is not None:
                    problem = closing.wait()
                    if problem:
                        self.warn(f"the workers did not end cleanly ({problem}); their temporary folder may remain")
        self.seconds = time.perf_counter() - started
        self.account.finish()
        self.account.write(self.root / self.settings.report_directory / CPU_ACCOUNT)
        self.log.info("course grade: %.1f s in all; CPU-seconds by stage: %s", self.seconds, self.account.summary())
        from .report import summary_lines

        for line in summary_lines(self.summary(runs, self.seconds), runs):
            self.say(line)
        failed = any(s.status == Status.FAILED or s.feedback_failed for run in runs for s in run.submissions)
        problems = any(run.collected.problems for run in runs)
        return 1 if failed or problems else 0

    def summary(self, runs, seconds=0.0):
        """The run as the reports and the closing summary read it (``course.report.RunSummary``)."""
        from .report import RunSummary

        return RunSummary(root=self.root, coursedir=self.coursedir, db_url=self.db_url,
                          report_directory=self.root / self.settings.report_directory, csv_path=self.csv_path,
                          log_path=self.log_path, feedback=self.make_feedback, workers=self.pool_description,
                          failures={run.name: self.state.failures_of(run.name) for run in runs},
                          only=frozenset(self.only) if self.only is not None else None, seconds=seconds)

    def _to_grade_at_most(self, runs, later, submissions_path):
        """How many submissions this run can grade at most, known before the ``later`` assignments are collected
        (None: not known): those to grade in ``runs``, and for each later one what is in submitted/ now, or
        ``--student``'s; with an export to collect, not known."""
        pending = sum(s.status == Status.PENDING for run in runs for s in run.submissions)
        if self.only is not None:
            return pending + len(self.only) * len(later)
        if submissions_path is not None and later:
            return None
        submitted = Path(self.coursedir.root) / self.coursedir.submitted_directory
        students = [folder for folder in submitted.iterdir() if folder.is_dir()] if submitted.is_dir() and later else []
        return pending + sum((folder / assignment).is_dir() for folder in students for assignment in later)

    def _start_pool(self, assignments, at_most):
        """The local pool or the Dask client: a local pool starts its workers now (no more than ``at_most``
        submissions need; None: one per core), each starting the kernel of the first assignment in grading order
        (``_grade``) as it starts up."""
        modules = {a: self.modules_of(a) for a in assignments}
        first = min(assignments, key=lambda a: (modules[a], a))
        warm = (KernelRecipe.of(self.limits, self.executor_settings.use_bubblewrap, modules[first],
                                self.executor_settings.fork_server) if self.settings.prewarm else None)
        workers = self.workers if at_most is None else max(1, min(self.workers, at_most))
        try:
            pool = DaskPool(self.scheduler) if self.scheduler else LocalPool(workers, warm)
        except PoolUnavailable as problem:
            raise UsageError(str(problem)) from None
        self.pool_description = pool.describe() if pool.kind == "local" else ""
        return pool

    def _grade(self, todo, runs, pool):
        from tqdm import tqdm

        order = sorted(todo, key=lambda s: (runs[s.assignment].modules, s.assignment, s.student))
        if pool is None:
            self.say("WARNING: the autograde pipeline in nbgrader_config.py has no SandboxedExecute; "
                     "grading one submission at a time with nbgrader's own pipeline")
            self.pool_description = "serial (nbgrader's own pipeline)"
        bar = tqdm(total=len(todo), desc="grading", unit="submission", file=sys.stderr, disable=not self.progress,
                   dynamic_ncols=True, smoothing=0.05)
        done = queue.Queue()
        failed = 0
        stop = StopRequests().__enter__()
        try:
            ready = self._send_all(order, runs, pool, stop, done) if pool is not None else list(todo)
            remaining = len(todo)
            while remaining and not stop.requested:
                while ready and not stop.requested:
                    submission = ready.pop(0)
                    if self._finish(submission):
                        failed += 1
                    remaining -= 1
                    bar.update(1)
                    if failed:
                        bar.set_postfix(failed=failed)
                if not remaining or stop.requested:
                    break
                if done.empty() and len(self.feedback_queue) >= FEEDBACK_BATCH:
                    self._flush_feedback()  # while the workers are busy anyway
                try:
                    submission, notebook, future = done.get(timeout=0.2)
                except queue.Empty:
                    continue  # look at stop requests between results
                self._take_result(submission, notebook, future)
                if not submission.tasks:
                    ready.append(submission)
        except BaseException:
            stop.requested = True  # a second Ctrl-C, or a crash: the workers go at once
            raise
        finally:
            stop.__exit__()
            bar.close()
        if stop.requested:
            self._interrupted(todo)
        self._flush_feedback()

    def _send_all(self, order, runs, pool, stop, done):
        """Sanitize each notebook of the submissions in ``order`` and send it to the workers at once, so that
        they start while the rest is sanitized; returns the submissions with nothing to execute (an unreadable
        notebook, say), to record here."""
        ready, slots = [], pool.slots()
        notebooks = [(submission, path) for submission in order for path in submission.notebooks]
        for index, (submission, path) in enumerate(notebooks):
            if stop.requested:
                break
            notebook = path.stem
            try:
                with self.account.clock(submission.assignment, Stage.SANITIZE):
                    sanitized = sanitize_notebook(self.coursedir, self.finish_config, path)
            except Exception as error:  # the record step meets it again and reports it
                self.log.warning("%s/%s: sanitizing failed (%s: %s); nbgrader will handle it",
                                 submission.where, notebook, type(error).__name__, error)
                sanitized = None
            if sanitized is not None and any(c.cell_type == "code" for c in sanitized.notebook.cells):
                submission.precomputed[notebook] = sanitized  # never sanitized again when recorded
                self._dispatch(pool, submission, notebook, sanitized.notebook, runs, done,
                               following=notebooks[index + 1][0] if index + slots < len(notebooks) else None)
            last_of_submission = index + 1 == len(notebooks) or notebooks[index + 1][0] is not submission
            if last_of_submission and not submission.tasks and submission not in ready:
                ready.append(submission)
        self.pool_description = pool.describe()  # every task is sent: a local pool has started its workers
        return ready

    def _take_result(self, submission, notebook, future):
        """A worker's result for one notebook: its executed notebook kept for recording, its log and CPU account
        taken; a worker that failed leaves the notebook to be executed here when it is recorded."""
        try:
            result = future.result()
        except BaseException as error:  # noqa: BLE001 - the worker failed, not the submission
            reason = f"{type(error).__name__}: {error}"
            submission.worker_problems.append(f"{notebook}: the worker failed ({reason}); executed here instead")
            self.log.error("%s/%s: the worker failed: %s; executing it here", submission.where, notebook, reason)
        else:
            for level, message in result.log:
                self.log.log(level, "[worker %s] %s", result.host, message)
            self.log.info("[worker %s:%s] %s/%s executed in %.2f s (%s kernel)", result.host, result.pid,
                          submission.where, notebook, result.seconds, "pre-warmed" if result.warm else "cold")
            submission.precomputed[notebook].executed = result.notebook
            self.account.task(submission.assignment, result.cpu)
        submission.tasks.pop(notebook, None)

    def _interrupted(self, todo):
        """The run was stopped: what was recorded stays, the rest is left for the next run."""
        graded = sum(s.status == Status.GRADED for s in todo)
        failed = sum(s.status == Status.FAILED for s in todo)
        left = [s for s in todo if s.status == Status.PENDING]
        for submission in left:
            submission.status = Status.INTERRUPTED  # never recorded: graded again by the next run
        message = (f"{graded} submission(s) graded and recorded, {failed} failed, {len(left)} left ungraded; "
                   "run the same command again to grade the rest")
        self.log.warning("interrupted: %s", message)
        raise Interrupted(message)

    def _dispatch(self, pool, submission, notebook, sanitized, runs, done, following):
        """Send one sanitized notebook to the workers; its result comes back through ``done``."""
        run = runs[submission.assignment]
        fork = self.executor_settings.fork_server
        task_id = f"{self._task_count}"
        self._task_count += 1
        # The last few tasks start no kernel ahead: no worker has a next task to use it.
        task = WorkerTask(task_id, f"{submission.where}/{notebook}", sanitized, run.checks, tuple(run.rules),
                          self.limits, self.executor_settings.use_bubblewrap, tuple(run.modules), fork,
                          self.settings.prewarm, tuple(runs[following.assignment].modules)
                          if following is not None and self.settings.prewarm else None)
        submission.tasks[notebook] = task_id
        try:
            future = pool.submit(task)
        except Exception as error:  # cannot even send it: executed here when recorded
            submission.worker_problems.append(f"{notebook}: not sent to a worker ({type(error).__name__}: "
                                              f"{error}); executed here instead")
            self.log.error("%s/%s: could not send to a worker: %s", submission.where, notebook, error)
            submission.tasks.pop(notebook, None)
            return
        future.add_done_callback(lambda f, s=submission, n=notebook: done.put((s, n, f)))

    def _finish(self, submission):
        """Record one submission in the gradebook and write its feedback; True if it failed."""
        with self.account.clock(submission.assignment, Stage.RECORD):
            recorded = record(self.coursedir, self.finish_config if self.parallel else self.config,
                              submission.student, submission.assignment, submission.precomputed)
        self.account.graded(submission.assignment)
        submission.precomputed = {}  # the executed notebooks are in autograded/ now
        if not recorded.success:
            submission.status = Status.FAILED
            submission.reason = recorded.failure
            self.state.remember_failure(submission.assignment, submission.student, submission.reason)
            self.say(f"FAILED {submission.where}: {submission.reason}")
            return True
        submission.status = Status.GRADED
        self.state.remember(submission.assignment, submission.student, submission.digest)
        if self.make_feedback:
            self.feedback_queue.append(submission)
        return False

    def _flush_feedback(self):
        """nbgrader generate_feedback for the queued submissions, one converter per assignment."""
        queued, self.feedback_queue = self.feedback_queue, []
        for assignment in dict.fromkeys(s.assignment for s in queued):
            batch = [s for s in queued if s.assignment == assignment]
            with self.account.clock(assignment, Stage.FEEDBACK):
                failed = self.feedback(assignment, {s.student for s in batch})
            for submission in batch:
                if submission.student in failed:
                    submission.feedback_failed = True
                    submission.reason = "feedback failed (see reports/grade.log)"
                    self.say(f"WARNING {submission.where}: {submission.reason}")

    def _feedback_for_unchanged(self, run):
        if not self.make_feedback:
            return
        self.feedback_queue.extend(s for s in run.submissions if s.status == Status.UNCHANGED and not self.feedback_is_current(s))
        self._flush_feedback()

    def _export(self):
        from nbgrader.plugins import CsvExportPlugin

        path = self.root / self.settings.csv
        plugin = CsvExportPlugin(config=self.config)
        plugin.to = str(path)
        with self.gradebook() as gradebook:
            plugin.export(gradebook)
        neutralise_csv(path)
        return path


def neutralise_csv(path):
    """nbgrader's grades CSV, every text cell that a spreadsheet would evaluate written as text (``csv_cell``):
    student ids and names come from file names and rosters."""
    import csv

    from .lms import csv_cell

    with open(path, newline="", encoding="utf-8") as stream:
        table = list(csv.reader(stream))
    safe = [[csv_cell(cell) for cell in row] for row in table]
    if safe != table:
        with open(path, "w", newline="", encoding="utf-8") as stream:
            csv.writer(stream).writerows(safe)


def selected_feedback_class():
    """nbgrader's GenerateFeedback, limited to a set of students (``students``)."""
    import re

    from nbgrader.converters import GenerateFeedback

    class SelectedFeedback(KeepsFailures, GenerateFeedback):
        students = set()
        failed_students = set()  # students whose feedback could not be written (nbgrader logs why and goes on)
        student = None

        def init_assignment(self, assignment_id, student_id):
            self.student = student_id
            super().init_assignment(assignment_id, student_id)

        def failed(self, error):
            self.failed_students = self.failed_students | {self.student}

        def init_notebooks(self):
            super().init_notebooks()
            pattern = submission_folder_pattern(self)
            self.assignments = {folder: notebooks for folder, notebooks in self.assignments.items()
                                if (match := re.match(pattern, folder)) and match.group("student_id") in self.students}

    return SelectedFeedback


def grade(assignments, root=None, submissions=None, **options):
    """Python entry point of ``course grade``; returns the process exit code."""
    return GradeRun(root=root, **options).run(assignments, submissions)
