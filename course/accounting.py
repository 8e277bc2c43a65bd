"""Where ``course grade``'s CPU goes: CPU-seconds by stage and assignment, from each process's own clock.

Every figure is measured, none is derived from wall time except ``idle``:

* the grading process times its own stages with its main thread's CPU clock
  (``time.thread_time``): collecting, sanitizing, recording, feedback, the CSV and reports; the rest of
  its main thread is ``grading process, other``; what its other threads spend (sending tasks to the
  workers and unpacking their results: the process's CPU clock less its main thread's) is under
  ``messages and judging``;
* a worker times each task with its own CPU clock (``time.process_time``): until the kernel is
  ready (taking the kernel started ahead and starting the next one) is ``fork and kernel start``,
  the rest (the messages to and from the kernel, and judging the replies) is ``messages and
  judging``; each result also carries the worker's CPU since it started, so its start-up and the
  time between tasks are counted once, under ``worker start-up and between tasks``;
* the sandboxed kernel's CPU is its cgroup's account (``course.cgroups.SubmissionCgroup.cpu_seconds``,
  or its processes' times where there is no cgroup): up to the moment it is ready, ``fork and
  kernel start``; after it, ``kernel: student code and checks``;
* ``idle, or not measured`` is cores x wall time, less everything above: what the cores could have done
  and did not, and the CPU no clock above sees (the workers' fork servers, which import the
  assignments' modules once per worker and module set; kernels started ahead and not used).  It counts
  this machine's cores: on a Dask cluster the workers' CPU is on other machines, and it means nothing
  there.  A worker's figures assume it runs one task at a time, as the local pool's processes do; a Dask
  worker with several threads counts the others' CPU in each task.

``course grade`` writes the account to ``reports/grade-cpu.json`` (``CpuAccount.to_json``);
``benchmarks/grade_throughput.py`` prints it as a table.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pathlib import Path


class Stage(StrEnum):
    COLLECT = "collect"
    SANITIZE = "sanitize"
    KERNEL_START = "fork and kernel start"
    KERNEL_RUN = "kernel: student code and checks"
    MESSAGES = "messages and judging"
    RECORD = "record"
    FEEDBACK = "feedback"
    REPORT = "report (CSV and reports)"
    WORKER_OTHER = "worker start-up and between tasks"
    GRADER_OTHER = "grading process, other"
    IDLE = "idle, or not measured"


# The grading process's own stages, each timed on its main thread (the rest of that thread is GRADER_OTHER).
GRADING_PROCESS_STAGES = (Stage.COLLECT, Stage.SANITIZE, Stage.RECORD, Stage.FEEDBACK, Stage.REPORT)

WHOLE_RUN = "(whole run)"  # what belongs to no one assignment: start-up, idle cores, the pool's own work


@dataclass(frozen=True)
class TaskCpu:
    """A worker's account of one task (it travels back in ``course.tasks.WorkerResult``)."""

    worker_start: float = 0.0  # the worker, until the kernel was ready
    kernel_start: float = 0.0  # the kernel, until it was ready
    kernel_run: float = 0.0  # the kernel after that
    messages: float = 0.0  # the worker after that
    worker_total: float = 0.0  # the worker process's CPU since it started, at the end of this task
    worker: str = ""  # which worker (host:pid)
    began: float = 0.0  # wall clock (time.time()) when the worker took the task, and when it was done
    ended: float = 0.0


@dataclass
class KernelMarks:
    """CPU clocks read as one submission runs (``course.execute.SubmissionRun``): the worker's and the
    kernel's when the kernel was ready, and the kernel's at the end."""

    worker_at_ready: float | None = None
    kernel_at_ready: float = 0.0
    kernel_at_end: float = 0.0

    def ready(self, kernel_cpu: float) -> None:
        self.worker_at_ready, self.kernel_at_ready = time.process_time(), kernel_cpu

    def task(self, worker_at_start: float, worker: str, worker_at_end: float | None = None,
             began: float = 0.0) -> TaskCpu:
        """The task's account, from the worker's clock at its start (and end: now); ``began``: the wall
        clock when the worker took it."""
        end = time.process_time() if worker_at_end is None else worker_at_end
        ready = end if self.worker_at_ready is None else self.worker_at_ready
        return TaskCpu(worker_start=ready - worker_at_start, kernel_start=self.kernel_at_ready,
                       kernel_run=max(0.0, self.kernel_at_end - self.kernel_at_ready), messages=end - ready,
                       worker_total=end, worker=worker, began=began, ended=time.time())


class StageClock:
    """The grading process's own stages, timed on its main thread's CPU clock."""

    def __init__(self, account: CpuAccount, assignment: str, stage: Stage) -> None:
        self.account, self.assignment, self.stage = account, assignment, stage

    def __enter__(self) -> StageClock:
        self.started = time.thread_time()
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        self.account.add(self.assignment, self.stage, time.thread_time() - self.started)
        return False


@dataclass
class CpuAccount:
    """CPU-seconds by assignment and stage for one ``course grade`` run."""

    cores: int = field(default_factory=lambda: len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                       else os.cpu_count() or 1)
    # assignment (or WHOLE_RUN) -> {Stage: seconds}
    seconds: dict[str, dict[Stage, float]] = field(default_factory=dict)
    submissions: dict[str, int] = field(default_factory=dict)  # assignment -> submissions graded
    wall: float = 0.0
    # wall seconds from the start until a worker took the first task, and finished the last
    tasks_between: tuple[float, float] | None = None
    _workers: dict[str, float] = field(default_factory=dict)  # worker -> its CPU since start, at its last task
    _task_worker_cpu: dict[str, float] = field(default_factory=dict)  # worker -> its CPU in tasks
    _started: tuple[float, float, float] = field(
        default_factory=lambda: (time.perf_counter(), time.process_time(), time.thread_time()))
    _epoch: float = field(default_factory=time.time)

    def add(self, assignment: str, stage: Stage, seconds: float) -> None:
        stages = self.seconds.setdefault(assignment, {})
        stages[stage] = stages.get(stage, 0.0) + max(0.0, seconds)

    def clock(self, assignment: str, stage: Stage) -> StageClock:
        return StageClock(self, assignment, stage)

    def graded(self, assignment: str) -> None:
        self.submissions[assignment] = self.submissions.get(assignment, 0) + 1

    def task(self, assignment: str, cpu: TaskCpu) -> None:
        if cpu.began and cpu.ended:  # the worker's wall clock (the same machine's, on a local pool)
            began, ended = cpu.began - self._epoch, cpu.ended - self._epoch
            first, last = self.tasks_between or (began, ended)
            self.tasks_between = (min(first, began), max(last, ended))
        self.add(assignment, Stage.KERNEL_START, cpu.worker_start + cpu.kernel_start)
        self.add(assignment, Stage.KERNEL_RUN, cpu.kernel_run)
        self.add(assignment, Stage.MESSAGES, cpu.messages)
        if cpu.worker:
            self._workers[cpu.worker] = max(self._workers.get(cpu.worker, 0.0), cpu.worker_total)
            self._task_worker_cpu[cpu.worker] = self._task_worker_cpu.get(cpu.worker, 0.0) + cpu.worker_start + cpu.messages

    def finish(self) -> CpuAccount:
        """Close the account: the grading process's other CPU, the workers' time outside tasks, idle."""
        wall0, process0, thread0 = self._started
        self.wall = time.perf_counter() - wall0
        timed = sum(v for stages in self.seconds.values() for s, v in stages.items() if s in GRADING_PROCESS_STAGES)
        main_thread = time.thread_time() - thread0
        other_threads = (time.process_time() - process0) - main_thread
        self.add(WHOLE_RUN, Stage.MESSAGES, other_threads)
        self.add(WHOLE_RUN, Stage.GRADER_OTHER, main_thread - timed)
        for worker, total in self._workers.items():
            self.add(WHOLE_RUN, Stage.WORKER_OTHER, total - self._task_worker_cpu.get(worker, 0.0))
        used = sum(v for stages in self.seconds.values() for v in stages.values())
        self.seconds.setdefault(WHOLE_RUN, {})[Stage.IDLE] = max(0.0, self.cores * self.wall - used)
        return self

    def summary(self) -> str:
        """One line: the whole run's CPU-seconds by stage, largest first."""
        totals: dict[Stage, float] = {}
        for stages in self.seconds.values():
            for stage, value in stages.items():
                totals[stage] = totals.get(stage, 0.0) + value
        return ", ".join(f"{stage} {value:.1f}" for stage, value in sorted(totals.items(), key=lambda kv: -kv[1]))

    def to_json(self) -> dict[str, Any]:
        first, last = self.tasks_between or (None, None)
        return {"cores": self.cores, "wall_seconds": round(self.wall, 3), "submissions": self.submissions,
                # where the idle cores are: before a worker took the first task, and after the last was done
                "first_task_began_after_seconds": None if first is None else round(first, 3),
                "last_task_ended_after_seconds": None if last is None else round(last, 3),
                "cpu_seconds": {a: {str(s): round(v, 4) for s, v in stages.items()} for a, stages in self.seconds.items()}}

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
