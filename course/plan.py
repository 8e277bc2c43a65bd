"""What one run of ``course grade`` grades: each assignment's run and each student's submission, with where it
stands (``Status``), and the course every stage of the run works on (``RunContext``).  Planning
(``course.planning``) makes them, scheduling (``course.scheduling``) and recording (``course.recording``) fill them
in, the report (``course.report``) reads them."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .accounting import CpuAccount
from .collect import Collected, Problem
from .sanitize import log_text

if TYPE_CHECKING:
    from nbgrader.api import Gradebook
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    from .cases import Rule
    from .record import Precomputed


@dataclass
class RunContext:
    """What every stage of one ``course grade`` run works on: the course, its configuration, its log, where the
    instructor reads the run's messages, and the CPU account."""

    root: Path
    config: Config
    coursedir: CourseDirectory
    log: logging.Logger
    out: TextIO
    account: CpuAccount = field(default_factory=CpuAccount)

    @property
    def db_url(self) -> str:
        return self.coursedir.db_url

    def say(self, message: str = "") -> None:
        from tqdm import tqdm

        tqdm.write(log_text(message, limit=10_000), file=self.out)  # one line each: names can carry newlines

    def warn(self, message: str) -> None:
        self.log.warning(message)
        self.say(f"WARNING: {message}")

    def gradebook(self) -> Gradebook:
        from nbgrader.api import Gradebook

        return Gradebook(self.db_url, self.coursedir.course_id)

    def folder(self, kind: str, student: str, assignment: str) -> Path:
        """``<kind>/<student>/<assignment>`` of the course (kind: ``submitted_directory``, ``autograded_directory``,
        ``feedback_directory``, ...), as nbgrader places it."""
        return Path(self.coursedir.format_path(getattr(self.coursedir, kind), student, assignment))


class Status(StrEnum):
    """Where one student's submission of an assignment stands in a run of ``course grade``."""

    PENDING = "pending"  # to be graded in this run
    UNCHANGED = "unchanged"  # graded before, and nothing that decides its grade changed: not graded again
    GRADED = "graded"  # graded and recorded in this run
    FAILED = "failed"  # its grading failed: reported, and its earlier grade is not counted
    INTERRUPTED = "interrupted"  # the run stopped before it was recorded: the next run grades it


@dataclass
class Submission:
    assignment: str
    student: str
    notebooks: list[Path]  # submitted notebook paths (those the gradebook knows)
    digest: str = ""
    status: Status = Status.PENDING
    reason: str = ""
    feedback_failed: bool = False  # graded, but its feedback could not be written
    tasks: dict[str, str] = field(default_factory=dict)  # notebook name -> task id still running
    precomputed: dict[str, Precomputed] = field(default_factory=dict)  # notebook name -> its work done before
    worker_problems: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.student}/{self.assignment}"


@dataclass
class AssignmentRun:
    name: str
    notebooks: list[str]  # the assignment's notebook names
    checks: dict[str, list[dict[str, Any]]]  # grade id -> its hidden check's cases (course.cases)
    rules: tuple[Rule, ...]  # the assignment's rules, enforced as its checks run
    fingerprint: bytes
    modules: tuple[str, ...]  # heavy modules the source notebooks import: the fork server or a warm kernel imports them ahead
    collected: Collected = field(default_factory=Collected)  # what planning collected (course.collect)
    submissions: list[Submission] = field(default_factory=list)
    report: Path | None = None
    # --student: what the last whole collection found about everyone else, for the report only
    earlier_problems: list[Problem] = field(default_factory=list)
