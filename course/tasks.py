"""The hand-off between ``course grade``'s grading process and its workers: one sanitized notebook out
(``WorkerTask``), one executed notebook back (``WorkerResult``).  Both are plain values that pickle, so they travel
alike to a local pool's processes and to a Dask cluster; ``course.workers.run_task`` turns one into the other."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .accounting import TaskCpu

if TYPE_CHECKING:  # a worker imports this module before it may import jsonschema (course.workers)
    from .cases import Rule
    from .sandbox import Limits


@dataclass(frozen=True)
class WorkerTask:
    id: str
    where: str  # student/assignment/notebook, for messages
    notebook: dict[str, Any]  # the sanitized notebook
    checks: dict[str, list[dict[str, Any]]]  # the assignment's hidden checks: grade id -> its cases (course.cases)
    rules: tuple[Rule, ...]  # the assignment's rules, enforced as its checks run
    limits: Limits
    use_bubblewrap: bool = True  # False only with the instructor's explicit --no-sandbox
    modules: tuple[str, ...] = ()  # the heavy modules of the source notebooks: the fork server imports them ahead
    fork_server: bool = True  # fork the kernel from a pre-warmed interpreter where possible
    prewarm: bool = True  # take the kernel this worker started ahead, if it has one
    prewarm_next: tuple[str, ...] | None = None  # the modules of the kernel to start ahead for the next task


@dataclass(frozen=True)
class WorkerResult:
    id: str
    notebook: dict[str, Any]  # the executed notebook
    log: list[tuple[int, str]] = field(default_factory=list)  # (logging level, message), made on the way
    seconds: float = 0.0
    host: str = ""
    pid: int = 0
    warm: bool = False  # ran in a kernel started ahead
    cpu: TaskCpu = field(default_factory=TaskCpu)  # the task's CPU account (course.accounting)
