"""Scheduling, the middle stage of ``course grade``: each submission's notebooks are sanitized in the grading process
and sent to a pool's workers (``course.pools``); a submission is recorded as soon as all its notebooks are back, while
the workers go on with the rest.

The scheduler knows the pool by its interface only (``GradingPool``) and the recording stage by three calls
(``RecordingStage``), so the unit layer drives it with a fake pool (``tests/unit/test_scheduling.py``).

Ctrl-C and SIGTERM ask the batch to stop (``StopRequests``): the step in hand ends (never half a recording), what was
recorded stays, and ``Interrupted`` says what is left for the next run.
"""
from __future__ import annotations

import functools
import queue
import signal
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from .accounting import Stage
from .plan import Status
from .tasks import WorkerTask

if TYPE_CHECKING:
    from tqdm import tqdm

    from .plan import AssignmentRun, RunContext, Submission
    from .record import Precomputed
    from .sandbox import Limits
    from .tasks import WorkerResult

    # Each notebook's result as it comes back: its submission, the notebook's name, the worker's future.
    Results = queue.Queue[tuple[Submission, str, Future[WorkerResult]]]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped the batch; what was recorded stays, the rest is graded next time."""


class StopRequests:
    """While grading, Ctrl-C and SIGTERM ask the batch to stop: the grader finishes the step in hand
    (never half a recording), then stops the workers.  A second Ctrl-C stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.previous: dict[int, Any] = {}  # signal number -> the handler it had

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self.previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)


class SigtermInterrupts:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so that the workers started for a run are stopped with it
    (Python's default ends the process at once, and a pool's workers would wait for tasks forever).  While
    grading, ``StopRequests`` handles both signals its own way."""

    def __enter__(self) -> SigtermInterrupts:
        self.previous: Any = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


class GradingPool(Protocol):
    """What the scheduler needs of a pool (``course.pools.LocalPool`` and ``DaskPool`` are two)."""

    kind: str

    def slots(self) -> int: ...

    def submit(self, task: WorkerTask) -> Future[WorkerResult]: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...

    def stop(self) -> None: ...


class RecordingStage(Protocol):
    """What the scheduler needs of the recording stage (``course.recording.Recorder`` is one)."""

    def record(self, submission: Submission) -> bool:
        """Record one submission whose notebooks are all back; True if it failed."""

    def idle(self) -> None:
        """The workers are busy and no result waits: a moment for work that can wait (feedback)."""

    def flush(self) -> None:
        """The batch is over: finish what ``idle`` left."""


class PoolClosing:
    """A pool's workers ending in a thread of their own; ``wait()`` returns what went wrong, if anything."""

    def __init__(self, pool: GradingPool) -> None:
        self.problem: str | None = None
        self.thread = threading.Thread(target=self._close, args=(pool,), name="course-grade-pool-close")
        self.thread.start()

    def _close(self, pool: GradingPool) -> None:
        try:
            pool.close()
        except Exception as error:  # noqa: BLE001 - reported by wait(), after the grades and reports are written
            self.problem = f"{type(error).__name__}: {error}"

    def wait(self) -> str | None:
        self.thread.join()
        return self.problem


@dataclass(frozen=True)
class TaskSettings:
    """What every task of a run carries besides its notebook and its assignment's checks."""

    limits: Limits
    use_bubblewrap: bool = True
    fork_server: bool = True
    prewarm: bool = True


def _result_came(done: Results, submission: Submission, notebook: str, future: Future[WorkerResult]) -> None:
    """In the pool's thread: hand the result to the grading thread (``Scheduler._record_as_they_come``)."""
    done.put((submission, notebook, future))


SERIAL = "serial (nbgrader's own pipeline)"


class Scheduler:
    """One batch of submissions through the pool and into the recording stage.  Without a pool (the autograde
    pipeline has no ``SandboxedExecute``) each submission goes straight to recording, which executes it."""

    def __init__(self, context: RunContext, pool: GradingPool | None, settings: TaskSettings,
                 sanitize: Callable[[Path], Precomputed], recording: RecordingStage, progress: bool = True) -> None:
        self.context, self.pool, self.settings = context, pool, settings
        self.sanitize, self.recording, self.progress = sanitize, recording, progress
        self.sent = 0  # tasks sent to the pool, in this batch
        self.pool_description = ""

    def grade(self, todo: list[Submission], runs: dict[str, AssignmentRun]) -> None:
        """Grade ``todo`` (in the order that keeps a worker's kernels alike); raises ``Interrupted`` if stopped."""
        from tqdm import tqdm

        order = sorted(todo, key=lambda s: (runs[s.assignment].modules, s.assignment, s.student))
        if self.pool is None:
            self.context.say("WARNING: the autograde pipeline in nbgrader_config.py has no SandboxedExecute; "
                             "grading one submission at a time with nbgrader's own pipeline")
            self.pool_description = SERIAL
        bar = tqdm(total=len(todo), desc="grading", unit="submission", file=sys.stderr, disable=not self.progress,
                   dynamic_ncols=True, smoothing=0.05)
        done: Results = queue.Queue()
        stop = StopRequests().__enter__()
        try:
            ready = self._send_all(self.pool, order, runs, stop, done) if self.pool is not None else list(todo)
            self._record_as_they_come(len(todo), ready, done, stop, bar)
        except BaseException:
            stop.requested = True  # a second Ctrl-C, or a crash: the workers go at once
            raise
        finally:
            stop.__exit__()
            bar.close()
        if stop.requested:
            self._interrupted(todo)
        self.recording.flush()

    def _record_as_they_come(self, remaining: int, ready: list[Submission], done: Results, stop: StopRequests,
                             bar: tqdm) -> None:
        failed = 0
        while remaining and not stop.requested:
            while ready and not stop.requested:
                if self.recording.record(ready.pop(0)):
                    failed += 1
                remaining -= 1
                bar.update(1)
                if failed:
                    bar.set_postfix(failed=failed)
            if not remaining or stop.requested:
                break
            if done.empty():
                self.recording.idle()  # while the workers are busy anyway
            try:
                submission, notebook, future = done.get(timeout=0.2)
            except queue.Empty:
                continue  # look at stop requests between results
            self._take_result(submission, notebook, future)
            if not submission.tasks:
                ready.append(submission)

    def _send_all(self, pool: GradingPool, order: list[Submission], runs: dict[str, AssignmentRun],
                  stop: StopRequests, done: Results) -> list[Submission]:
        """Sanitize each notebook of the submissions in ``order`` and send it to the workers at once, so that
        they start while the rest is sanitized; returns the submissions with nothing to execute (an unreadable
        notebook, say), to record here."""
        ready: list[Submission] = []
        slots = pool.slots()
        notebooks = [(submission, path) for submission in order for path in submission.notebooks]
        for index, (submission, path) in enumerate(notebooks):
            if stop.requested:
                break
            notebook = path.stem
            try:
                with self.context.account.clock(submission.assignment, Stage.SANITIZE):
                    sanitized = self.sanitize(path)
            except Exception as error:  # the record step meets it again and reports it
                self.context.log.warning("%s/%s: sanitizing failed (%s: %s); nbgrader will handle it",
                                         submission.where, notebook, type(error).__name__, error)
                sanitized = None
            if sanitized is not None and any(c.cell_type == "code" for c in sanitized.notebook.cells):
                submission.precomputed[notebook] = sanitized  # never sanitized again when recorded
                # The last few tasks start no kernel ahead: no worker has a next task to use it.
                following = notebooks[index + 1][0] if index + slots < len(notebooks) else None
                self._dispatch(pool, submission, notebook, sanitized.notebook, runs, done, following)
            last_of_submission = index + 1 == len(notebooks) or notebooks[index + 1][0] is not submission
            if last_of_submission and not submission.tasks and submission not in ready:
                ready.append(submission)
        self.pool_description = pool.describe()  # every task is sent: a local pool has started its workers
        return ready

    def task(self, submission: Submission, notebook: str, sanitized: dict[str, Any], runs: dict[str, AssignmentRun],
             following: Submission | None) -> WorkerTask:
        """The task for one sanitized notebook; ``following``: the submission the worker is likely to take next,
        whose kernel it starts ahead."""
        run, settings = runs[submission.assignment], self.settings
        prewarm_next = (tuple(runs[following.assignment].modules)
                        if following is not None and settings.prewarm else None)
        return WorkerTask(str(self.sent), f"{submission.where}/{notebook}", sanitized, run.checks, tuple(run.rules),
                          settings.limits, settings.use_bubblewrap, tuple(run.modules), settings.fork_server,
                          settings.prewarm, prewarm_next)

    def _dispatch(self, pool: GradingPool, submission: Submission, notebook: str, sanitized: dict[str, Any],
                  runs: dict[str, AssignmentRun], done: Results, following: Submission | None) -> None:
        """Send one sanitized notebook to the workers; its result comes back through ``done``."""
        task = self.task(submission, notebook, sanitized, runs, following)
        self.sent += 1
        submission.tasks[notebook] = task.id
        try:
            future = pool.submit(task)
        except Exception as error:  # cannot even send it: executed here when recorded
            submission.worker_problems.append(f"{notebook}: not sent to a worker ({type(error).__name__}: "
                                              f"{error}); executed here instead")
            self.context.log.error("%s/%s: could not send to a worker: %s", submission.where, notebook, error)
            submission.tasks.pop(notebook, None)
            return
        future.add_done_callback(functools.partial(_result_came, done, submission, notebook))

    def _take_result(self, submission: Submission, notebook: str, future: Future[WorkerResult]) -> None:
        """A worker's result for one notebook: its executed notebook kept for recording, its log and CPU account
        taken; a worker that failed leaves the notebook to be executed here when it is recorded."""
        log = self.context.log
        try:
            result = future.result()
        except BaseException as error:  # noqa: BLE001 - the worker failed, not the submission
            reason = f"{type(error).__name__}: {error}"
            submission.worker_problems.append(f"{notebook}: the worker failed ({reason}); executed here instead")
            log.error("%s/%s: the worker failed: %s; executing it here", submission.where, notebook, reason)
        else:
            for level, message in result.log:
                log.log(level, "[worker %s] %s", result.host, message)
            log.info("[worker %s:%s] %s/%s executed in %.2f s (%s kernel)", result.host, result.pid,
                     submission.where, notebook, result.seconds, "pre-warmed" if result.warm else "cold")
            submission.precomputed[notebook].executed = result.notebook
            self.context.account.task(submission.assignment, result.cpu)
        submission.tasks.pop(notebook, None)

    def _interrupted(self, todo: list[Submission]) -> None:
        """The run was stopped: what was recorded stays, the rest is left for the next run."""
        graded = sum(s.status == Status.GRADED for s in todo)
        failed = sum(s.status == Status.FAILED for s in todo)
        left = [s for s in todo if s.status == Status.PENDING]
        for submission in left:
            submission.status = Status.INTERRUPTED  # never recorded: graded again by the next run
        message = (f"{graded} submission(s) graded and recorded, {failed} failed, {len(left)} left ungraded; "
                   "run the same command again to grade the rest")
        self.context.log.warning("interrupted: %s", message)
        raise Interrupted(message)
