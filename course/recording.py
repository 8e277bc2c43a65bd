"""Recording, the last stage of ``course grade``, in the grading process: each submission into the gradebook
(``course.record``: nbgrader's own ``Autograde``, one submission at a time, so SQLite is safe), what was graded into
the run's state (``course.incremental``), feedback in batches (nbgrader's ``GenerateFeedback``, its templates compiled
once a batch) and, at the end, the grades CSV (nbgrader's ``CsvExportPlugin``)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from traitlets.config import Config

from .accounting import Stage
from .plan import Status
from .record import KeepsFailures, record
from .vendor import submission_folder_pattern

if TYPE_CHECKING:
    from nbgrader.converters import GenerateFeedback

    from .incremental import GradeState
    from .plan import AssignmentRun, RunContext, Submission

FEEDBACK_BATCH = 4  # feedback is written in batches (templates compiled once per batch)
FEEDBACK_TEMPLATE = "feedback"


class Recorder:
    """Records submissions as the scheduler hands them over (``course.scheduling.RecordingStage``).

    ``finish_config`` is the configuration nbgrader's ``Autograde`` records with (its execute step replaced by the
    one that takes the workers' results); feedback is written with the course's own."""

    def __init__(self, context: RunContext, state: GradeState, finish_config: Config, feedback: bool = True) -> None:
        self.context, self.state, self.finish_config, self.make_feedback = context, state, finish_config, feedback
        self.feedback_queue: list[Submission] = []

    def record(self, submission: Submission) -> bool:
        """Record one submission in the gradebook and queue its feedback; True if it failed."""
        context = self.context
        with context.account.clock(submission.assignment, Stage.RECORD):
            recorded = record(context.coursedir, self.finish_config, submission.student, submission.assignment,
                              submission.precomputed)
        context.account.graded(submission.assignment)
        submission.precomputed = {}  # the executed notebooks are in autograded/ now
        if not recorded.success:
            submission.status = Status.FAILED
            submission.reason = recorded.failure
            self.state.remember_failure(submission.assignment, submission.student, submission.reason)
            context.say(f"FAILED {submission.where}: {submission.reason}")
            return True
        submission.status = Status.GRADED
        self.state.remember(submission.assignment, submission.student, submission.digest)
        if self.make_feedback:
            self.feedback_queue.append(submission)
        return False

    def idle(self) -> None:
        if len(self.feedback_queue) >= FEEDBACK_BATCH:
            self.flush()

    def flush(self) -> None:
        """nbgrader generate_feedback for the queued submissions, one converter per assignment."""
        queued, self.feedback_queue = self.feedback_queue, []
        for assignment in dict.fromkeys(s.assignment for s in queued):
            batch = [s for s in queued if s.assignment == assignment]
            with self.context.account.clock(assignment, Stage.FEEDBACK):
                failed = self.feedback(assignment, {s.student for s in batch})
            for submission in batch:
                if submission.student in failed:
                    submission.feedback_failed = True
                    submission.reason = "feedback failed (see reports/grade.log)"
                    self.context.say(f"WARNING {submission.where}: {submission.reason}")

    def feedback_for_unchanged(self, run: AssignmentRun) -> None:
        """Feedback for the submissions not graded again whose feedback is missing or older than their grading."""
        if not self.make_feedback:
            return
        self.feedback_queue.extend(s for s in run.submissions
                                   if s.status == Status.UNCHANGED and not self.feedback_is_current(s))
        self.flush()

    def feedback(self, assignment: str, students: set[str]) -> set[str]:
        """nbgrader's GenerateFeedback for some students of one assignment, in one converter run
        (one HTML exporter, its templates compiled once); returns the students it failed for."""
        from nbgrader.utils import capture_log, temp_attrs

        coursedir = self.context.coursedir
        with temp_attrs(coursedir, assignment_id=assignment, student_id="*"):
            converter = selected_feedback_class()(coursedir=coursedir, config=self.context.config)
            converter.students = set(students)
            extra = Config()
            extra.HTMLExporter.template_name = FEEDBACK_TEMPLATE
            converter.update_config(extra)
            converter.force = True
            capture_log(converter)
        return converter.failed_students

    def feedback_is_current(self, submission: Submission) -> bool:
        folder = self.context.folder
        autograded = folder("autograded_directory", submission.student, submission.assignment)
        feedback = folder("feedback_directory", submission.student, submission.assignment)
        for path in submission.notebooks:
            notebook, html = autograded / path.name, feedback / (path.stem + ".html")
            if not html.is_file() or (notebook.is_file() and html.stat().st_mtime < notebook.stat().st_mtime):
                return False
        return True

    def export_csv(self, path: Path) -> Path:
        """nbgrader's grades CSV of the whole gradebook, made safe to open in a spreadsheet."""
        from nbgrader.plugins import CsvExportPlugin

        plugin = CsvExportPlugin(config=self.context.config)
        plugin.to = str(path)
        with self.context.gradebook() as gradebook:
            plugin.export(gradebook)
        neutralise_csv(path)
        return path


def neutralise_csv(path: Path) -> None:
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


def selected_feedback_class() -> type[GenerateFeedback]:
    """nbgrader's GenerateFeedback, limited to a set of students (``students``)."""
    from nbgrader.converters import GenerateFeedback

    class SelectedFeedback(KeepsFailures, GenerateFeedback):
        students: set[str] = set()
        failed_students: set[str] = set()  # students whose feedback could not be written (nbgrader logs why, goes on)
        student = ""  # the student whose feedback is being written
        assignments: dict[str, list[str]]  # nbgrader's: submission folder -> its notebooks

        def init_assignment(self, assignment_id: str, student_id: str) -> None:
            self.student = student_id
            super().init_assignment(assignment_id, student_id)

        def failed(self, error: Exception) -> None:
            self.failed_students = self.failed_students | {self.student}

        def init_notebooks(self) -> None:
            super().init_notebooks()
            pattern = submission_folder_pattern(self)
            self.assignments = {folder: notebooks for folder, notebooks in self.assignments.items()
                                if (match := re.match(pattern, folder)) and match.group("student_id") in self.students}

    return SelectedFeedback
