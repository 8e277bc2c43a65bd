"""Scheduling (``course.scheduling.Scheduler``) with a fake pool and a fake recording stage: no kernel, no sandbox.

The pool runs each task in a thread and sends back the notebook it got, marked as executed; the recording stage
writes down what it was handed.  The scheduler under test is the real one, with real sanitized notebooks
(``course.record.Precomputed``) and real signals for Ctrl-C."""
import io
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import nbformat
import pytest
from traitlets.config import Config

from course.plan import AssignmentRun, RunContext, Status, Submission
from course.record import Precomputed, notebook_digest
from course.sandbox import Limits
from course.scheduling import SERIAL, Interrupted, Scheduler, TaskSettings
from course.tasks import WorkerResult

LIMITS = Limits()


class FakePool:
    kind = "local"

    def __init__(self, slots=2, fails_for=(), refuses=()):
        self.threads = ThreadPoolExecutor(max_workers=slots)
        self.width, self.fails_for, self.refuses = slots, set(fails_for), set(refuses)
        self.tasks = []

    def slots(self):
        return self.width

    def describe(self):
        return f"{self.width} fake workers"

    def submit(self, task):
        if task.where in self.refuses:
            raise ConnectionError("the cluster is gone")
        self.tasks.append(task)
        return self.threads.submit(self._run, task)

    def _run(self, task):
        if task.where in self.fails_for:
            raise RuntimeError("the worker died")
        executed = dict(task.notebook, metadata={"executed_by": task.id})
        return WorkerResult(task.id, executed, log=[(logging.INFO, f"ran {task.where}")], host="fake", pid=1)

    def close(self):
        self.threads.shutdown()

    stop = close


class FakeRecording:
    """Records what the scheduler hands over: the submission and, for each notebook, what its worker sent."""

    def __init__(self, failing=(), on_record=None):
        self.recorded, self.failing, self.on_record = [], set(failing), on_record
        self.idle_calls = self.flushes = 0

    def record(self, submission):
        self.recorded.append((submission.where, {name: (p.executed or {}).get("metadata", {}).get("executed_by")
                                                 for name, p in submission.precomputed.items()}))
        submission.status = Status.FAILED if submission.student in self.failing else Status.GRADED
        if self.on_record:
            self.on_record(submission)
        return submission.status == Status.FAILED

    def idle(self):
        self.idle_calls += 1

    def flush(self):
        self.flushes += 1


def notebook(path, *cells):
    nb = nbformat.v4.new_notebook(cells=list(cells))
    nbformat.write(nb, path)
    return path


def sanitize(path):
    """What nbgrader's sanitize step hands on, minus its work: the notebook as read, and its digest."""
    text = path.read_text()
    if "unreadable" in text:
        raise ValueError("not a notebook nbgrader can read")
    nb = nbformat.reads(text, as_version=4)
    return Precomputed(text, nb, notebook_digest(nb))


@pytest.fixture
def context(tmp_path):
    return RunContext(tmp_path, Config(), coursedir=None, log=logging.getLogger("test-scheduling"), out=io.StringIO())


def batch(tmp_path, students, assignment="a1", notebooks=("one",), modules=("numpy",)):
    run = AssignmentRun(assignment, list(notebooks), {"q1": []}, (), b"", tuple(modules))
    for student in students:
        folder = tmp_path / student / assignment
        folder.mkdir(parents=True)
        paths = [notebook(folder / f"{name}.ipynb", nbformat.v4.new_code_cell(f"x = '{student}'"))
                 for name in notebooks]
        run.submissions.append(Submission(assignment, student, paths))
    return run


def scheduler(context, pool, recording, prewarm=True):
    return Scheduler(context, pool, TaskSettings(LIMITS, prewarm=prewarm), sanitize, recording, progress=False)


def test_every_submission_is_recorded_once_with_what_its_workers_sent_back(context, tmp_path, pools):
    runs = [batch(tmp_path, ["bo", "al"], "a2", notebooks=("one", "two"), modules=("torch",)),
            batch(tmp_path, ["cy", "al"], "a1", modules=("numpy",))]
    todo = [s for run in runs for s in run.submissions]
    pool, recording = pools(slots=2), FakeRecording()
    grading = scheduler(context, pool, recording)
    grading.grade(todo, {run.name: run for run in runs})
    # Sent in the order that keeps a worker's kernels alike: by the modules imported, then assignment and student.
    assert [t.where for t in pool.tasks] == ["al/a1/one", "cy/a1/one", "al/a2/one", "al/a2/two", "bo/a2/one",
                                             "bo/a2/two"]
    assert sorted(where for where, _ in recording.recorded) == ["al/a1", "al/a2", "bo/a2", "cy/a1"]
    ids = {t.where: t.id for t in pool.tasks}
    for where, executed in recording.recorded:
        assert executed == {name: ids[f"{where}/{name}"] for name in executed} and executed
    assert all(s.status == Status.GRADED and not s.tasks and not s.worker_problems for s in todo)
    assert recording.flushes == 1 and grading.sent == 6 and grading.pool_description == "2 fake workers"
    first = pool.tasks[0]
    assert (first.checks, first.modules, first.limits, first.rules) == ({"q1": []}, ("numpy",), LIMITS, ())
    # Each task names the kernel to start ahead for the next one, but the last `slots` tasks start none.
    assert [t.prewarm_next for t in pool.tasks] == [("numpy",), ("torch",), ("torch",), ("torch",), None, None]


def test_without_prewarming_no_task_starts_a_kernel_ahead(context, tmp_path, pools):
    run = batch(tmp_path, ["al", "bo", "cy"])
    pool = pools(slots=1)
    scheduler(context, pool, FakeRecording(), prewarm=False).grade(run.submissions, {"a1": run})
    assert [t.prewarm_next for t in pool.tasks] == [None, None, None]
    assert not any(t.prewarm for t in pool.tasks)


def test_a_failed_worker_or_a_refused_task_leaves_the_notebook_to_be_executed_here(context, tmp_path, pools):
    run = batch(tmp_path, ["al", "bo", "cy"])
    pool, recording = pools(fails_for={"al/a1/one"}, refuses={"bo/a1/one"}), FakeRecording()
    scheduler(context, pool, recording).grade(run.submissions, {"a1": run})
    al, bo, cy = run.submissions
    assert al.worker_problems == ["one: the worker failed (RuntimeError: the worker died); executed here instead"]
    assert bo.worker_problems == ["one: not sent to a worker (ConnectionError: the cluster is gone); executed here "
                                  "instead"]
    assert cy.worker_problems == []
    recorded = dict(recording.recorded)
    # al's and bo's notebooks reach recording sanitized but not executed: the record step executes them itself.
    assert recorded == {"al/a1": {"one": None}, "bo/a1": {"one": None}, "cy/a1": {"one": pool.tasks[-1].id}}


def test_a_notebook_with_nothing_to_execute_goes_straight_to_recording(context, tmp_path, grading_log, pools):
    run = batch(tmp_path, ["al", "bo", "cy"])
    al, bo, _ = run.submissions
    notebook(al.notebooks[0], nbformat.v4.new_markdown_cell("no code at all"))
    bo.notebooks[0].write_text("unreadable")
    pool, recording = pools(), FakeRecording()
    scheduler(context, pool, recording).grade(run.submissions, {"a1": run})
    assert [t.where for t in pool.tasks] == ["cy/a1/one"]
    assert sorted(where for where, _ in recording.recorded) == ["al/a1", "bo/a1", "cy/a1"]
    assert "bo/a1/one: sanitizing failed (ValueError: not a notebook nbgrader can read)" in grading_log.getvalue()


def test_a_failed_recording_does_not_stop_the_batch(context, tmp_path, pools):
    run = batch(tmp_path, ["al", "bo", "cy"])
    recording = FakeRecording(failing={"bo"})
    scheduler(context, pools(), recording).grade(run.submissions, {"a1": run})
    assert sorted(where for where, _ in recording.recorded) == ["al/a1", "bo/a1", "cy/a1"]
    assert recording.flushes == 1


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stop_request_finishes_the_recording_in_hand_and_leaves_the_rest_for_the_next_run(context, tmp_path, pools,
                                                                                           stop):
    run = batch(tmp_path, ["al", "bo", "cy", "di"])
    recording = FakeRecording(on_record=lambda submission: os.kill(os.getpid(), stop))
    previous = signal.getsignal(stop)
    with pytest.raises(Interrupted, match=r"^1 submission\(s\) graded and recorded, 0 failed, 3 left ungraded; "
                                          "run the same command again to grade the rest$"):
        scheduler(context, pools(slots=1), recording).grade(run.submissions, {"a1": run})
    assert signal.getsignal(stop) is previous  # the scheduler's handler is gone with the batch
    assert len(recording.recorded) == 1
    assert sorted(s.status for s in run.submissions) == [Status.GRADED] + [Status.INTERRUPTED] * 3
    assert recording.flushes == 0  # an interrupted batch writes no more feedback


def test_a_second_ctrl_c_stops_at_once(context, tmp_path, pools):
    def twice(submission):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    run = batch(tmp_path, ["al", "bo"])
    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as stopped:
        scheduler(context, pools(slots=1), FakeRecording(on_record=twice)).grade(run.submissions, {"a1": run})
    assert type(stopped.value) is KeyboardInterrupt  # not Interrupted: nothing waits for the step in hand
    assert signal.getsignal(signal.SIGINT) is previous


def test_without_a_pool_each_submission_goes_to_recording_in_turn(context, tmp_path):
    run = batch(tmp_path, ["bo", "al"])
    recording = FakeRecording()
    grading = scheduler(context, None, recording)
    grading.grade(run.submissions, {"a1": run})
    assert [where for where, _ in recording.recorded] == ["bo/a1", "al/a1"]
    assert grading.pool_description == SERIAL and grading.sent == 0
    assert "has no SandboxedExecute" in context.out.getvalue()


@pytest.fixture
def pools():
    """Makes fake pools, each closed when the test ends."""
    made = []

    def make(**options):
        made.append(FakePool(**options))
        return made[-1]

    yield make
    for pool in made:
        pool.close()


@pytest.fixture
def grading_log(context):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    context.log.addHandler(handler)
    context.log.setLevel(logging.INFO)
    yield stream
    context.log.removeHandler(handler)
