"""Late work: the course's late policy, applied at nbgrader's late-penalty step.

nbgrader computes how late a submission is (its ``timestamp.txt``, or the time in the LMS file name that
collection read, against the assignment's due date in the gradebook), and a ``LateSubmissionPlugin`` gives the
penalty.  ``LatePolicy`` is that plug-in, configured in ``nbgrader_config.py``; ``ApplyLatePolicy`` replaces
nbgrader's ``AssignLatePenalties`` in the autograde pipeline, so plain ``nbgrader autograde`` and ``course grade``
apply the same policy:

* ``due``: the due date of each assignment (``{"a2-losses": "2026-10-05 23:59 UTC"}``), written into the
  gradebook when a submission is graded; an assignment not listed keeps the gradebook's own due date, if any;
* ``grace_minutes``: a submission at most this late is on time;
* ``penalty_percent`` per started ``period`` (``"day"`` or ``"hour"``) after the due date, of the score earned,
  up to ``cap_percent``;
* ``zero_after_hours``: later than this, the score is 0 (None: no cutoff);
* ``without_timestamp``: a submission with no time when its assignment has a due date is graded ``"on-time"``
  or gets ``"zero"``, and is reported either way;
* ``marked_late_without_time``: a submission the LMS marks late (Canvas writes ``LATE`` into the file name, or
  ``late: true`` in its submissions API) whose time is unknown gets the largest penalty (``"cap"``, the default:
  it is late, by how much is unknown), ``"zero"``, or is graded ``"on-time"``.  A known time always decides.

What was decided is kept as data in the graded notebook (``metadata["course"]["late"]``: due, submitted, how
late, the penalty and the rule), for the student's feedback and the report.  The penalty is a share of the score,
which grading by hand changes after autograding: ``RefreshLatePenalty`` (first in nbgrader's feedback step) and
``refresh_penalties`` (``course export``) apply the policy again to the score as it is then.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nbgrader.plugins import LateSubmissionPlugin
from nbgrader.preprocessors import AssignLatePenalties, NbGraderPreprocessor
from traitlets import Dict, Enum, Float, TraitError, Unicode, default, validate

from . import notes
from .config import in_pipeline
from .notes import NoteKind, describe_lateness

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from datetime import tzinfo

    from nbformat import NotebookNode
    from nbgrader.api import Gradebook, SubmittedAssignment, SubmittedNotebook
    from traitlets import Bunch
    from traitlets.config import Config, Configurable

    from .notes import Note

PERIOD_SECONDS = {"day": 24 * 3600, "hour": 3600}
DUE_FORMAT = re.compile(r"^(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2})?)\s*(Z|UTC|[+-]\d{2}:\d{2}|[A-Za-z_]+/[A-Za-z_/+-]+)$")


def due_date(assignment: str, text: object) -> datetime:
    """A due date as nbgrader stores it (naive UTC), from ``YYYY-MM-DD HH:MM[:SS]`` and a zone that cannot be
    misread: ``UTC``/``Z``, an offset like ``+02:00``, or an IANA name like ``Europe/London``."""
    match = DUE_FORMAT.match(str(text).strip())
    if not match:
        raise TraitError(f"c.LatePolicy.due[{assignment!r}] = {text!r}: write the date, the time and a zone, as "
                         "'2026-10-05 23:59 UTC', '2026-10-05 23:59 +02:00' or '2026-10-05 23:59 Europe/London'")
    moment, zone = match.groups()
    local = datetime.fromisoformat(moment.replace(" ", "T"))
    tz: tzinfo | None
    if zone in ("Z", "UTC"):
        tz = timezone.utc
    elif zone[0] in "+-":
        tz = datetime.strptime(zone.replace(":", ""), "%z").tzinfo
    else:
        try:
            tz = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise TraitError(f"c.LatePolicy.due[{assignment!r}] = {text!r}: {zone!r} is not a time zone name") from None
    return local.replace(tzinfo=tz).astimezone(timezone.utc).replace(tzinfo=None)


class LatePolicy(LateSubmissionPlugin):
    """The course's late policy (see the module's documentation)."""

    due = Dict(Unicode(), {}, help="assignment id -> due date, e.g. '2026-10-05 23:59 UTC'").tag(config=True)
    grace_minutes = Float(0, help="a submission at most this late counts as on time").tag(config=True)
    penalty_percent = Float(0, help="percent of the score lost per started period after the due date").tag(config=True)
    period = Enum(list(PERIOD_SECONDS), "day", help="the unit of lateness the penalty counts").tag(config=True)
    cap_percent = Float(100, help="the largest penalty, in percent of the score").tag(config=True)
    zero_after_hours = Float(None, allow_none=True, help="later than this many hours: score 0").tag(config=True)
    without_timestamp = Enum(["on-time", "zero"], "on-time",
                             help="a submission with no time, for an assignment with a due date").tag(config=True)
    marked_late_without_time = Enum(["cap", "zero", "on-time"], "cap", help=(
        "a submission the LMS marks late whose time is unknown: the largest penalty (cap_percent), 0, or on time"
    )).tag(config=True)

    @validate("grace_minutes", "penalty_percent", "zero_after_hours")
    def _not_negative(self, proposal: Bunch) -> float | None:
        value = proposal["value"]
        if value is not None and value < 0:  # a negative penalty would add points
            raise TraitError(f"c.LatePolicy.{proposal['trait'].name} = {value!r}: it cannot be negative")
        return value

    @validate("cap_percent")
    def _a_percentage(self, proposal: Bunch) -> float:
        if not 0 <= proposal["value"] <= 100:
            raise TraitError(f"c.LatePolicy.cap_percent = {proposal['value']!r}: write a percentage from 0 to 100")
        return proposal["value"]

    @validate("due")
    def _valid_due(self, proposal: Bunch) -> dict[str, str]:
        for assignment, text in proposal["value"].items():
            due_date(assignment, text)  # a date the grader would misread stops here, before anything is graded
        return proposal["value"]

    @default("penalty_method")
    def _penalty_method_default(self) -> str:
        return "none"  # nbgrader's own setting, unused: the rule is this class's

    def late_submission_penalty(self, student_id: str, score: float | None, total_seconds_late: float) -> float:
        return self.penalty(score, total_seconds_late)

    def penalty(self, score: float | None, seconds_late: float) -> float:
        """Points taken from ``score`` for a submission ``seconds_late`` after the due date."""
        score = max(0.0, float(score or 0.0))
        if seconds_late <= self.grace_minutes * 60:
            return 0.0
        if self.zero_after_hours is not None and seconds_late > self.zero_after_hours * 3600:
            return score
        periods = math.ceil(seconds_late / PERIOD_SECONDS[self.period])
        return score * min(periods * self.penalty_percent, self.cap_percent) / 100

    def penalty_without_timestamp(self, score: float | None) -> float:
        """Points taken from ``score`` when the submission has no time but its assignment a due date."""
        return max(0.0, float(score or 0.0)) if self.without_timestamp == "zero" else 0.0

    def penalty_marked_late(self, score: float | None) -> float:
        """Points taken from ``score`` when the LMS marks the submission late but its time is unknown."""
        score = max(0.0, float(score or 0.0))
        rule = self.marked_late_without_time
        return score if rule == "zero" else score * self.cap_percent / 100 if rule == "cap" else 0.0

    def without_time_rule(self, marked_late: bool) -> str:
        """The rule applied to a submission without a time, in words, for the notes."""
        if marked_late:
            return {"cap": f"the largest penalty, {self.cap_percent:g}% of the score", "zero": "a score of 0",
                    "on-time": "graded as on time"}[self.marked_late_without_time]
        return "graded as on time" if self.without_timestamp == "on-time" else "a score of 0"

    def submission_penalty(self, score: float | None, submission: SubmittedAssignment,
                           marked_late: bool = False) -> float:
        """Points taken from ``score`` for a graded nbgrader ``submission``: by how late it is (through the
        plug-in's ``late_submission_penalty``, which a subclass may override), or by the no-timestamp rule;
        never below 0 nor above the score.  The one route from policy to penalty, for autograding and for
        ``course export``."""
        score = max(0.0, float(score or 0.0))
        if submission.duedate is None:
            return 0.0
        if submission.timestamp is None:
            penalty = self.penalty_marked_late(score) if marked_late else self.penalty_without_timestamp(score)
        else:
            penalty = self.late_submission_penalty(submission.student.id, score, submission.total_seconds_late)
        return min(score, max(0.0, float(penalty or 0.0)))

    def rule(self) -> str:
        """The policy in one sentence, for the feedback."""
        parts = []
        if self.grace_minutes:
            parts.append(f"{self.grace_minutes:g} minutes of grace")
        if self.penalty_percent:
            parts.append(f"{self.penalty_percent:g}% of the score per started {self.period} late, "
                         f"at most {self.cap_percent:g}%")
        if self.zero_after_hours is not None:
            parts.append(f"0 after {self.zero_after_hours:g} hours")
        return "; ".join(parts) or "no penalty for late work"


class ApplyLatePolicy(AssignLatePenalties):
    """nbgrader's late-penalty step with the course's policy: due dates from the config, the no-timestamp rule,
    and the decision kept in the notebook's metadata for the feedback and the report.  With another
    ``plugin_class`` it is nbgrader's own step, unchanged (and keeps no metadata)."""

    @default("plugin_class")
    def _plugin_class_default(self) -> type[LatePolicy]:
        return LatePolicy

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        from nbgrader.api import Gradebook

        self.init_plugin()
        policy = self.plugin_inst
        if not isinstance(policy, LatePolicy):
            return super().preprocess(nb, resources)  # another plug-in: nbgrader's own step, unchanged
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gradebook:
            submission = gradebook.find_submission(info["assignment"], info["student"])
            if submission.timestamp is not None and not self.time_on_file(info):
                # nbgrader sets the time from timestamp.txt and keeps an earlier submission's time when there
                # is none; a resubmission without a time (course.collect) has none.
                self.log.warning("%s/%s: no timestamp.txt; the time of an earlier submission (%s) no longer applies",
                                 info["student"], info["assignment"], _iso(submission.timestamp))
                submission.timestamp = None
            notebook, late = decide(gradebook, policy, info)
            if late is None:
                return nb, resources
            if submission.total_seconds_late > 0:
                self.log.warning("%s/%s is %s late: a penalty of %g of %g points", info["student"], info["assignment"],
                                 describe_lateness(submission.total_seconds_late), late.penalty, notebook.score or 0.0)
            if submission.timestamp is None:
                self.log.warning("%s/%s has no submission time%s: %s", info["student"], info["assignment"],
                                 " and the LMS marks it late" if late.marked_late else "",
                                 policy.without_time_rule(late.marked_late))
        write_late(nb, late)
        return nb, resources

    def time_on_file(self, info: Mapping[str, Any]) -> bool:
        """Whether the submission's folder (``submitted/<student>/<assignment>``) has the time nbgrader reads from
        it (``timestamp.txt``); True where there is no such folder: the gradebook's time stands."""
        from nbgrader.coursedir import CourseDirectory

        coursedir = CourseDirectory(config=self.config)
        folder = coursedir.format_path(coursedir.submitted_directory, info["student"], info["assignment"])
        return not os.path.isdir(folder) or coursedir.get_existing_timestamp(folder) is not None


def policy_in_use(config: Config) -> bool:
    """Whether the course's autograde pipeline applies this policy (else its penalties are nbgrader's own)."""
    return in_pipeline(config, ApplyLatePolicy)


def refresh_penalties(gradebook: Gradebook, policy: LatePolicy, assignments: Iterable[str]) -> list[tuple[str, str]]:
    """Apply the policy again to the current scores: points graded by hand after autograding (written answers,
    overrides) are then penalised like the rest, and by the policy's due date as it is now (set or changed in the
    config since grading).  Returns the (student, assignment) pairs whose penalty changed."""
    changed = []
    for assignment in assignments:
        apply_due_date(gradebook, policy, assignment)
        for submission in gradebook.assignment_submissions(assignment):
            if submission.duedate is None:
                continue
            marked = marked_late(policy.config, submission.student.id, assignment)
            for notebook in submission.notebooks:
                if refresh_penalty(policy, submission, notebook, marked):
                    changed.append((submission.student.id, assignment))
    gradebook.db.commit()
    return sorted(set(changed))


def marked_late(config: Config, student: str, assignment: str) -> bool:
    """Whether the LMS marked the student's submission late (what collection wrote beside it, from the LMS's own
    file name or submission times; never from anything the student uploaded)."""
    from nbgrader.coursedir import CourseDirectory

    from .collect import read_lms_record

    coursedir = CourseDirectory(config=config)
    return read_lms_record(coursedir.format_path(coursedir.submitted_directory, student, assignment)).get("marked_late") is True


def refresh_penalty(policy: LatePolicy, submission: SubmittedAssignment, notebook: SubmittedNotebook,
                    marked: bool = False) -> bool:
    """The policy's penalty on the notebook's score as it is now, into the gradebook; True if it changed."""
    penalty = policy.submission_penalty(notebook.score, submission, marked)
    if abs((notebook.late_submission_penalty or 0.0) - penalty) <= 1e-12:
        return False
    notebook.late_submission_penalty = penalty or None  # None, as nbgrader writes "no penalty"
    return True


def apply_due_date(gradebook: Gradebook, policy: LatePolicy, assignment: str) -> None:
    """The policy's due date of the assignment into the gradebook, where the config gives one."""
    if policy.due.get(assignment):
        gradebook.find_assignment(assignment).duedate = due_date(assignment, policy.due[assignment])


def decide(gradebook: Gradebook, policy: LatePolicy,
           info: Mapping[str, Any]) -> tuple[SubmittedNotebook, LateDecision | None]:
    """The policy on one submitted notebook (``info``: nbgrader's ``resources["nbgrader"]``) as the gradebook has it
    now: the config's due date, the penalty on the notebook's current score, stored, and committed.  Returns the
    notebook's gradebook record and the ``LateDecision`` (None where the assignment has no due date)."""
    apply_due_date(gradebook, policy, info["assignment"])
    submission = gradebook.find_submission(info["assignment"], info["student"])
    notebook = gradebook.find_submission_notebook(info["notebook"], info["assignment"], info["student"])
    marked = marked_late(policy.config, info["student"], info["assignment"])
    refresh_penalty(policy, submission, notebook, marked)
    gradebook.db.commit()
    if submission.duedate is None:
        return notebook, None
    return notebook, LateDecision.of(submission, float(notebook.late_submission_penalty or 0.0), policy, marked)


@dataclass(frozen=True)
class LateDecision:
    """What the late policy decided about a submission with a due date; kept as data in the graded notebook
    (``metadata["course"]["late"]``, ``as_data``) for the feedback's note (``course.notes``) and the report."""

    due: str | None  # ISO 8601, UTC
    submitted: str | None  # None: the submission has no time
    seconds_late: float
    penalty: float  # points
    rule: str  # the policy, in one sentence
    without_timestamp: str | None = None  # for a submission without a time: the rule applied ("on-time", "zero", "cap")
    time_rule: str | None = None  # that rule, in words
    marked_late: bool = False  # the LMS marks it late, with no time

    @classmethod
    def of(cls, submission: SubmittedAssignment, penalty: float, policy: LatePolicy,
           marked: bool = False) -> LateDecision:
        timeless = submission.timestamp is None
        return cls(due=_iso(submission.duedate), submitted=_iso(submission.timestamp),
                   seconds_late=submission.total_seconds_late, penalty=penalty, rule=policy.rule(),
                   without_timestamp=(policy.marked_late_without_time if marked else policy.without_timestamp)
                   if timeless else None,
                   time_rule=policy.without_time_rule(marked) if timeless else None,
                   marked_late=bool(marked and timeless))

    def as_data(self) -> dict[str, Any]:
        """As the notebook keeps it: JSON, the fields that say nothing left out."""
        data: dict[str, Any] = {"due": self.due, "submitted": self.submitted, "seconds_late": self.seconds_late,
                "penalty": self.penalty, "rule": self.rule}
        if self.without_timestamp is not None:
            data["without_timestamp"] = self.without_timestamp
            data["time_rule"] = self.time_rule
        if self.marked_late:
            data["marked_late"] = True
        return data


def write_late(nb: NotebookNode, late: LateDecision | None) -> None:
    """The decision into the notebook: its data, its note, and the "Late submission" cell when there is something
    to say; whatever an earlier decision wrote there goes."""
    grader = nb.metadata.setdefault("course", {})
    grader.pop("late", None)
    if isinstance(grader.get("notes"), list):
        grader["notes"] = [n for n in grader["notes"] if not (isinstance(n, dict) and n.get("kind") == NoteKind.LATE)]
    nb.cells = [cell for cell in nb.cells if cell.metadata.get("course", {}).get("late_note") is not True]
    if late is None:
        return
    grader["late"] = late.as_data()
    note = notes.late(grader["late"])
    if notes.note_text(note):
        notes.add_notes(nb, [note])
        nb.cells.append(late_note_cell(note))


def configured_policy(parent: Configurable) -> LatePolicy | None:
    """The ``LatePolicy`` the autograde pipeline applies (its configured plug-in, a subclass included), or None
    where the pipeline has no ``ApplyLatePolicy`` or it runs another plug-in (nbgrader's own step)."""
    if not policy_in_use(parent.config):
        return None
    step = ApplyLatePolicy(parent=parent)
    step.init_plugin()
    return step.plugin_inst if isinstance(step.plugin_inst, LatePolicy) else None


def late_note_cell(note: Note) -> NotebookNode:
    """The "Late submission" cell of the feedback, marked as the grader's, so that the feedback step can say it
    again when the penalty changes."""
    cell = notes.grading_notes_cell([note], title="Late submission")
    cell.metadata["course"] = {"late_note": True}
    return cell


class RefreshLatePenalty(NbGraderPreprocessor):
    """nbgrader's feedback step, first: the late penalty on the score as it is now (points graded by hand since
    autograding count, and the policy's due date as the config says it), in the gradebook and in the late note,
    so that the feedback shows the penalty that ``course export`` subtracts."""

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        from nbgrader.api import Gradebook

        policy = configured_policy(self)
        if policy is None:
            return nb, resources
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gradebook:
            _, late = decide(gradebook, policy, info)
        if (late.as_data() if late else None) != nb.metadata.get("course", {}).get("late"):
            self.log.warning("%s/%s: late penalty recomputed from the current score and due date: %g points",
                             info["student"], info["assignment"], late.penalty if late else 0.0)
            write_late(nb, late)
        return nb, resources


def _iso(moment: datetime | None) -> str | None:
    return moment.replace(tzinfo=timezone.utc).isoformat() if moment is not None else None
