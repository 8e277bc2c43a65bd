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

The stages are modules of their own, handing typed values on: planning (``course.planning``: an ``AssignmentRun``
per assignment), scheduling (``course.scheduling``: the pool and the order), recording (``course.recording``), and
the summary (``course.report.RunSummary``).  This module reads the settings and runs them in turn.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import os
import sys
import time
import warnings
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, TextIO

from sqlalchemy.exc import SAWarning
from traitlets import Bool, Integer, TraitError, Unicode
from traitlets.config import Configurable

from .accounting import WHOLE_RUN, CpuAccount, Stage
from .collect import Collect
from .config import in_pipeline, is_step, load_config
from .errors import UsageError
from .incremental import GradeState
from .kernel import KernelRecipe
from .late import LatePolicy
from .lms import read_submission_times
from .plan import AssignmentRun, RunContext, Status, Submission
from .planning import PlanOptions, Planner
from .plugins import SandboxedExecute
from .pools import DaskPool, LocalPool, PoolUnavailable
from .record import PrecomputedExecute, sanitize_notebook
from .recording import Recorder
from .report import RunSummary, summary_lines, write_report
from .sandbox import UNSANDBOXED, SandboxUnavailable, require_sandbox
from .scheduling import GradingPool, Interrupted, PoolClosing, Scheduler, SigtermInterrupts, TaskSettings
from .vendor import nbgrader_speedups

if TYPE_CHECKING:
    from traitlets.config import Config

CPU_ACCOUNT = "grade-cpu.json"  # in the report folder: CPU-seconds by stage and assignment (course.accounting)
LOG_HANDLER_MARK = "_course_grade"  # on the log handler a run adds, so that the next run (or its end) removes it

__all__ = ["CourseGrade", "GradeRun", "Interrupted", "grade"]


class CourseGrade(Configurable):
    """Settings of ``course grade``, in ``nbgrader_config.py`` as ``c.CourseGrade.<name>``."""

    workers = Integer(0, help="local worker processes (0: one per core)").tag(config=True)
    prewarm = Bool(True, help="start each worker's next sandboxed kernel while it grades the current one").tag(config=True)
    report_directory = Unicode("reports", help="where reports go, relative to the course root").tag(config=True)
    csv = Unicode("grades.csv", help="the grades CSV (nbgrader export), relative to the course root").tag(config=True)
    state_file = Unicode(os.path.join(".course", "grade-state.json"), help="what was graded, for incremental runs").tag(config=True)


def grading_log(reports: Path) -> logging.Logger:
    """nbgrader's log (the ``traitlets`` logger) into ``reports/grade.log``, and nowhere else, for this run."""
    reports.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(reports / "grade.log", mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s"))
    log = logging.getLogger("traitlets")
    release_log(log)
    setattr(handler, LOG_HANDLER_MARK, True)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def release_log(log: logging.Logger) -> None:
    for handler in [h for h in log.handlers if getattr(h, LOG_HANDLER_MARK, False)]:
        log.removeHandler(handler)
        handler.close()


@contextlib.contextmanager
def nbgrader_environment() -> Iterator[None]:
    """While a run lasts: nbgrader finds ``alembic`` (it runs it when it creates a gradebook) beside this Python,
    and its own harmless SQLAlchemy session warnings are not shown."""
    tools, path = str(Path(sys.executable).parent), os.environ.get("PATH")
    if tools not in (path or "").split(os.pathsep):
        os.environ["PATH"] = tools + os.pathsep + (path or "")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=SAWarning)
            yield
    finally:
        if path is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = path


class GradeRun:
    """One ``course grade`` invocation: the settings read once, then planning, scheduling, recording and the
    reports in turn (``run``)."""

    def __init__(self, root: str | Path | None = None, db_url: str | None = None, workers: int | None = None,
                 scheduler: str | None = None, force: bool = False, pattern: str | None = None,
                 roster_only: bool = False, progress: bool = True, feedback: bool = True, out: TextIO | None = None,
                 sandbox: bool = True, students: list[str] | None = None, lms: str | None = None,
                 submission_times: str | Path | None = None, times_zone: str | None = None) -> None:
        from nbgrader.coursedir import CourseDirectory

        account = CpuAccount()  # first: the run's CPU account covers reading the settings too
        root = Path(root or os.getcwd()).resolve()
        config = load_config(root, db_url)
        if not sandbox:  # --no-sandbox: the explicit opt-in, logged in full by the executor
            config.SandboxedExecute.use_bubblewrap = False
        self.settings = CourseGrade(config=config)
        try:  # a due date the grader would misread stops the run here, before anything is graded
            late_policy = LatePolicy(config=config)
        except TraitError as error:
            raise UsageError(f"{root / 'nbgrader_config.py'}: {error}") from None
        self.options = plan_options(config, force, roster_only, students, pattern, lms, submission_times, times_zone)
        self.executor = SandboxedExecute(config=config)
        if self.executor.use_bubblewrap:
            try:  # before anything is collected or graded: no sandbox here, no grading at all
                with nbgrader_environment():  # the PATH the grading steps will see
                    require_sandbox()
            except SandboxUnavailable as error:
                raise UsageError(str(error)) from None
        self.reports = root / self.settings.report_directory
        self.context = RunContext(root, config, CourseDirectory(config=config), grading_log(self.reports),
                                  out or sys.stdout, account)
        if not self.executor.use_bubblewrap:
            self.context.warn(UNSANDBOXED)
        self.dask_scheduler, self.progress = scheduler, progress
        self.workers = workers or self.settings.workers or os.cpu_count() or 1
        self.parallel = in_pipeline(config, SandboxedExecute)
        self.state = GradeState(root / self.settings.state_file, self.context.db_url, self.context.warn)
        self.planner = Planner(self.context, self.state, self.executor, late_policy, self.options)
        self.recorder = Recorder(self.context, self.state, self.finish_config(), feedback)
        self.pool_description = ""
        self.sent = 0  # tasks sent to the pool

    def finish_config(self) -> Config:
        """The configuration nbgrader's Autograde sanitizes and records with: its execute step takes the workers'
        results.
        Without ``SandboxedExecute`` in the pipeline, nbgrader's own pipeline, unchanged."""
        if not self.parallel:
            return self.context.config
        config = copy.deepcopy(self.context.config)
        # nbconvert validates the whole notebook after every preprocessor unless told to do it once, after the
        # last (its public ``optimistic_validation``): the same check, once per pass instead of six times
        config.Exporter.optimistic_validation = True
        pipeline = list(self.context.config.Autograde.get("autograde_preprocessors", []))
        config.Autograde.autograde_preprocessors = [
            PrecomputedExecute if is_step(p, SandboxedExecute) else p for p in pipeline]
        return config

    # ---- the run ----------------------------------------------------------------------------
    def run(self, assignments: list[str], submissions_path: str | Path | None = None) -> int:
        """Grade ``assignments``; returns the exit code (1 if a submission failed or collecting found problems)."""
        submissions = Path(submissions_path) if submissions_path else None  # "": nbgrader's own folders
        if self.options.times is not None and submissions is None:  # nothing would be collected to date
            release_log(self.context.log)
            raise UsageError(f"--submission-times {self.options.times.source}: the times are for an LMS export; "
                             "pass it with --submissions")
        try:
            with nbgrader_environment(), nbgrader_speedups():
                return self._run(assignments, submissions)
        finally:
            self.state.save()  # what was graded stays known, even after an interruption
            release_log(self.context.log)

    def _run(self, assignments: list[str], submissions_path: Path | None) -> int:
        started = time.perf_counter()
        pool, closing = None, None
        with SigtermInterrupts():  # beyond grading too, while workers may run: a SIGTERM stops them as Ctrl-C does
            try:
                runs: list[AssignmentRun] = []
                for index, assignment in enumerate(assignments):
                    runs.append(self._plan(assignment, submissions_path))
                    # The pool starts with the first submission to grade: its workers start up (an interpreter, a
                    # fork server and a warm kernel each) while this process collects and sanitizes the rest.
                    if pool is None and self.parallel and any(s.status == Status.PENDING for s in runs[-1].submissions):
                        pool = self._start_pool(assignments, self.planner.to_grade_at_most(
                            runs, assignments[index + 1:], submissions_path is not None))
                todo = [s for run in runs for s in run.submissions if s.status == Status.PENDING]
                if todo:
                    self._schedule(todo, runs, pool)
                if pool is not None:  # its workers end (their kernels and fork servers with them) meanwhile
                    closing, pool = PoolClosing(pool), None
                self._write_results(runs)
            except BaseException as error:
                if pool is not None:
                    self._stop_pool(pool, error)
                raise
            finally:
                if closing is not None and (problem := closing.wait()):
                    self.context.warn(f"the workers did not end cleanly ({problem}); their temporary folder may remain")
        return self._close(runs, time.perf_counter() - started)

    def _plan(self, assignment: str, submissions_path: Path | None) -> AssignmentRun:
        with self.context.account.clock(assignment, Stage.COLLECT):
            run = self.planner.prepare(assignment, submissions_path)
        if run.collected.problems:
            self.context.say(f"{assignment}: {len(run.collected.problems)} problem(s) collecting {run.collected.source}:")
            for problem in run.collected.problems:
                self.context.say(f"  - {problem}")
        return run

    def _start_pool(self, assignments: list[str], at_most: int | None) -> GradingPool:
        """The local pool or the Dask client: a local pool starts its workers now (no more than ``at_most``
        submissions need; None: one per core), each starting the kernel of the first assignment in grading order
        (``course.scheduling``) as it starts up."""
        first = min(assignments, key=lambda a: (self.planner.modules_of(a), a))
        warm = (KernelRecipe.of(self.planner.limits, self.executor.use_bubblewrap, self.planner.modules_of(first),
                                self.executor.fork_server) if self.settings.prewarm else None)
        workers = self.workers if at_most is None else max(1, min(self.workers, at_most))
        try:
            pool = DaskPool(self.dask_scheduler) if self.dask_scheduler else LocalPool(workers, warm)
        except PoolUnavailable as problem:
            raise UsageError(str(problem)) from None
        self.pool_description = pool.describe() if pool.kind == "local" else ""
        return pool

    def _schedule(self, todo: list[Submission], runs: list[AssignmentRun], pool: GradingPool | None) -> None:
        settings = TaskSettings(self.planner.limits, self.executor.use_bubblewrap, self.executor.fork_server,
                                self.settings.prewarm)
        sanitize = partial(sanitize_notebook, self.context.coursedir, self.recorder.finish_config)
        scheduler = Scheduler(self.context, pool, settings, sanitize, self.recorder, self.progress)
        try:
            scheduler.grade(todo, {run.name: run for run in runs})
        finally:
            self.sent += scheduler.sent
            self.pool_description = scheduler.pool_description or self.pool_description

    def _stop_pool(self, pool: GradingPool, error: BaseException) -> None:
        if isinstance(error, KeyboardInterrupt):  # Interrupted too
            self.context.say("interrupted: stopping the workers, their kernels and fork servers")
        if pool.kind == "local" or self.sent:
            pool.stop()  # at once: an interruption, or the grader's own failure
        else:  # a cluster this run sent nothing to: its other tasks are none of ours
            pool.close()

    def _write_results(self, runs: list[AssignmentRun]) -> None:
        """Feedback still missing for unchanged submissions, the grades CSV and each assignment's report."""
        for run in runs:
            self.recorder.feedback_for_unchanged(run)
        with self.context.account.clock(WHOLE_RUN, Stage.REPORT):
            self.recorder.export_csv(self.csv_path)
        summary = self.summary(runs)
        for run in runs:
            with self.context.account.clock(run.name, Stage.REPORT):
                run.report = write_report(summary, run)

    def _close(self, runs: list[AssignmentRun], seconds: float) -> int:
        """The CPU account and the closing summary; the exit code."""
        account = self.context.account.finish()
        account.write(self.reports / CPU_ACCOUNT)
        self.context.log.info("course grade: %.1f s in all; CPU-seconds by stage: %s", seconds, account.summary())
        for line in summary_lines(self.summary(runs, seconds), runs):
            self.context.say(line)
        failed = any(s.status == Status.FAILED or s.feedback_failed for run in runs for s in run.submissions)
        problems = any(run.collected.problems for run in runs)
        return 1 if failed or problems else 0

    @property
    def csv_path(self) -> Path:
        return self.context.root / self.settings.csv

    def summary(self, runs: list[AssignmentRun], seconds: float = 0.0) -> RunSummary:
        """The run as the reports and the closing summary read it (``course.report.RunSummary``)."""
        only = self.options.only
        return RunSummary(root=self.context.root, coursedir=self.context.coursedir, db_url=self.context.db_url,
                          report_directory=self.reports, csv_path=self.csv_path, log_path=self.reports / "grade.log",
                          feedback=self.recorder.make_feedback, workers=self.pool_description,
                          failures={run.name: self.state.failures_of(run.name) for run in runs},
                          only=frozenset(only) if only is not None else None, seconds=seconds)


def plan_options(config: Config, force: bool, roster_only: bool, students: list[str] | None, pattern: str | None,
                 lms: str | None, submission_times: str | Path | None, times_zone: str | None) -> PlanOptions:
    """The command line's options for planning, checked; an LMS's preset pattern comes from the configuration
    unless ``--pattern`` is given."""
    collect_settings = Collect(config=config)
    lms = lms or (None if pattern else collect_settings.lms)  # --pattern: the pattern, not the config's preset
    times = None
    if submission_times:
        if not lms:
            raise UsageError("--submission-times needs --lms canvas or --lms moodle: the times are keyed by the "
                             "LMS's user ids")
        times = read_submission_times(submission_times, lms, times_zone)
    return PlanOptions(force=force, roster_only=roster_only, only=frozenset(students) if students else None,
                       pattern=pattern or collect_settings.lms_pattern, lms=lms, times=times)


def grade(assignments: list[str], root: str | Path | None = None, submissions: str | Path | None = None,
          **options: Any) -> int:
    """Python entry point of ``course grade``; returns the process exit code."""
    return GradeRun(root=root, **options).run(assignments, submissions)
