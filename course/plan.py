"""What one run of ``course grade`` grades: each assignment's run and each student's submission, with where it
stands (``Status``).  The grading run (``course.grade``) fills them in; the report (``course.report``) reads them."""
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from .collect import Collected


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
    tasks: dict = field(default_factory=dict)  # notebook name -> task id still running
    precomputed: dict = field(default_factory=dict)  # notebook name -> course.record.Precomputed
    worker_problems: list = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.student}/{self.assignment}"


@dataclass
class AssignmentRun:
    name: str
    notebooks: list[str]  # the assignment's notebook names
    checks: dict  # grade id -> its hidden check's cases (course.cases)
    rules: tuple  # the assignment's rules (course.cases.Rule), enforced as its checks run
    fingerprint: bytes
    modules: tuple  # heavy modules the source notebooks import: the fork server or a warm kernel imports them ahead
    collected: Collected | None = None
    submissions: list[Submission] = field(default_factory=list)
    report: Path | None = None
    # --student: what the last whole collection found about everyone else, for the report only
    earlier_problems: list = field(default_factory=list)
