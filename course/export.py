"""Grades back into the LMS: a CSV that Canvas or Moodle imports as it is.

    course export --lms canvas --roster <Canvas gradebook export>.csv [--to canvas-grades.csv] [--missing zero|blank]
    nbgrader export --exporter course.export.CanvasExportPlugin --CanvasExportPlugin.roster=<roster>.csv

Both are nbgrader export plug-ins (``nbgrader export --exporter``), so the plain nbgrader command writes the same
file.  The roster is the LMS's own gradebook export, which says who is enrolled and how the LMS names them and
its assignments:

* **Canvas** (Grades > Export): the columns ``Student``, ``ID``, ``SIS User ID``, ``SIS Login ID``, ``Section``
  (and ``Integration ID`` where the course has one), a ``Points Possible`` row, then one row per student.  The
  file written has the same identity columns and a ``Points Possible`` row, then one column per assignment, named
  as the roster names it (``a2-losses (123456)``, so Canvas updates that assignment) or, for an assignment Canvas
  does not have yet, by its id (Canvas then creates it).
* **Moodle** (Grades > Export > Plain text file): the columns ``First name``, ``Last name``, ``ID number``,
  ``Institution``, ``Department``, ``Email address``, one per grade item.  The file written keeps ``First name``,
  ``Last name``, ``ID number`` and ``Email address`` and one column per assignment, named as the roster's grade
  item (``Assignment: a2-losses (Real)``) or by its id; on import, map from ``Email address`` to ``Email address``.
* **Moodle's grading worksheet** (Assignment > View all submissions > Grading action > Download grading
  worksheet), the roster for submissions collected with ``--lms moodle``: its ``Identifier`` ("Participant
  1234567") is the participant id in Moodle's download names.  The file written is the worksheet, every column as
  it was, the ``Grade`` filled in on the worksheet's scale (the score times its ``Maximum Grade`` over nbgrader's
  total, to two decimals); Moodle imports it with Grading action > Upload grading worksheet (one
  assignment per worksheet).

Students are matched by the LMS's own id first: a student collected with ``--lms canvas`` (``canvas-4711``) is the
roster row whose Canvas ``ID`` is 4711, and one collected with ``--lms moodle`` (``moodle-1234567``) the worksheet
row "Participant 1234567"; such a student matches no other way, so a namesake or an SIS id that happens to be the
same number is never taken for them.  Other ids (``--pattern``, the nbgrader layout) match a roster row whose id
equals, ignoring case, one of the row's ids: for Canvas the SIS Login ID, the SIS User ID, the Canvas ID or the
sortable name as Canvas writes it into file names (lib/content_zipper.rb: lower case, every character that is not a
Unicode word character dropped, so "Müller, Jürgen" is ``müllerjürgen``); for Moodle the username, the ID number,
the email address or its part before the ``@``.  Nobody is dropped silently: enrolled students with no submission
get 0 (or a blank, ``--missing blank``) and are listed; students whose files the last ``course grade`` found but did
not collect (two files, an unreadable one, ...), graded students the roster does not have, ids that match two
roster rows, a row matched by two ids that both submitted, submissions whose written answers are not graded by hand
yet, and submissions whose last grading by ``course grade`` failed (nbgrader then keeps an earlier submission's
scores) are listed (the doubtful cells blank), and the command exits 1 so that a script notices.

Every text cell is written so that a spreadsheet never evaluates it (``course.lms.csv_cell``): Canvas's own
``="<text>"`` form in the Canvas file (and a roster's ``="<text>"`` is read as ``<text>``, so it goes back as it
came), a leading apostrophe in the Moodle files; the cells the LMS matches on (Canvas's ``ID``, Moodle's
``Email address`` in the gradebook import, the worksheet's ``Identifier``) are left as they are, and listed if
they look like a formula.

The score is nbgrader's own: the total of the autograded and manually graded cells, less the late penalty, never
below 0 (as ``nbgrader export`` computes it).  The late penalties are first applied again to the current scores
(``course.late``), so points graded by hand after autograding are penalised like the rest.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nbgrader.api import MissingEntry
from nbgrader.plugins import ExportPlugin
from traitlets import Enum, Unicode

from .errors import UsageError
from .lms import PRESETS, canvas_text, csv_cell, student_name
from .report import final_score
from .sanitize import log_text

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from nbgrader.api import Gradebook, SubmittedAssignment

    from .incremental import GradeState

CANVAS_IDENTITY = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
CANVAS_OPTIONAL_IDENTITY = ("Integration ID",)
MOODLE_IDENTITY = ("First name", "Last name", "ID number", "Email address")


class RosterError(UsageError):
    """The roster cannot be read as the LMS's gradebook export (names the file and what is wrong)."""


LMS_ID = re.compile(rf"^(?:{'|'.join(PRESETS)})-\d+$")  # a gradebook id collected with --lms: matches by it only
MOODLE_PARTICIPANT = re.compile(r"^\s*Participant\s+(\d+)\s*$", re.IGNORECASE)


@dataclass
class Roster:
    header: list[str]  # identity columns to write, in the LMS's order
    rows: list[dict[str, str]]  # one per enrolled student
    keys: list[set[str]]  # for each row, the ids it matches (lower case)
    assignment_columns: dict[str, str]  # assignment id -> the LMS's column name for it
    points_row: bool = False
    # for each row, the gradebook id of its LMS identity (canvas-4711), or ""
    ids: list[str] = field(default_factory=list)
    style: str = "quote"  # how text cells are neutralised (course.lms.csv_cell)
    raw_columns: tuple[str, ...] = ()  # the columns the LMS matches on: written as they are
    worksheet: bool = False  # Moodle's grading worksheet: written back whole, its Grade column filled


@dataclass
class Matching:
    # roster row index -> {assignment: score or None}
    scores: dict[int, dict[str, float | None]] = field(default_factory=dict)
    no_submission: list[tuple[str, str]] = field(default_factory=list)  # (row label, assignment)
    not_in_roster: list[str] = field(default_factory=list)  # gradebook student ids
    ambiguous: list[tuple[str, list[str]]] = field(default_factory=list)  # (student id, row labels)
    # (row label, assignment, student ids with a submission each)
    conflicts: list[tuple[str, str, list[str]]] = field(default_factory=list)
    # (row label, assignment): written answers not graded by hand yet
    ungraded: list[tuple[str, str]] = field(default_factory=list)
    # (row label, assignment, why): the last grading failed, left blank
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    # (row label or student id, assignment, why): files found by the last collection but not collected, left blank
    not_collected: list[tuple[str, str, str]] = field(default_factory=list)
    # (row label, column): a cell the LMS matches on that looks like a formula
    live_keys: list[tuple[str, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every student accounted for and every score final."""
        return not (self.not_in_roster or self.ambiguous or self.conflicts or self.ungraded or self.failed
                    or self.not_collected)


def read_csv(path: str | Path) -> list[list[str]]:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise RosterError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RosterError(f"{path}: a folder, not the roster's CSV file") from None
    except OSError as error:
        raise RosterError(f"{path}: cannot be read ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise RosterError(f"{path}: not UTF-8 text (byte {error.start}); export the gradebook again as CSV") from None
    try:
        return list(csv.reader(text.splitlines()))
    except csv.Error as error:
        raise RosterError(f"{path}: not a CSV file ({error})") from None


def assignment_column(header: Iterable[str], assignment: str) -> str | None:
    """The roster's column for an assignment: ``<id> (<LMS id>)`` on Canvas, ``<kind>: <id> (<type>)`` on Moodle."""
    pattern = re.compile(rf"^(?:[^:]+:\s*)?{re.escape(assignment)}(?:\s*\([^)]*\))?$", re.IGNORECASE)
    matches = [name for name in header if pattern.match(name.strip())]
    if len(matches) > 1:
        raise RosterError(f"the roster has {len(matches)} columns for {assignment} ({'; '.join(matches)}): keep the "
                          "one the LMS should update and export again")
    return matches[0] if matches else None


def canvas_key(sortable_name: str) -> str:
    """The name Canvas writes into a download's file names (lib/content_zipper.rb: ``sanitize_user_name`` lower-cases
    it and turns ``_<digits>_`` into the digits, ``sanitize_file_name`` drops every character that is not
    ``[[:word:]]``; Unicode letters stay)."""
    name = re.sub(r"_(\d+)_", r"\1", student_name(sortable_name).lower())
    return re.sub(r"[^\w]", "", name)


def read_canvas_roster(path: str | Path, assignments: Iterable[str]) -> Roster:
    table = read_csv(path)
    if not table:
        raise RosterError(f"{path}: empty; export the Canvas gradebook (Grades > Export > Export Entire Gradebook)")
    header = [name.strip() for name in table[0]]
    missing = [name for name in CANVAS_IDENTITY if name not in header]
    if missing:
        raise RosterError(f"{path}: not a Canvas gradebook export: no column {', '.join(repr(m) for m in missing)} "
                          f"(its first row is {', '.join(header[:6])})")
    identity = [name for name in CANVAS_IDENTITY + CANVAS_OPTIONAL_IDENTITY if name in header]
    rows, keys, points_row, ids = [], [], False, []
    for line in table[1:]:
        # ="<text>" is Canvas's own form of a name that starts with "=" (gradebook_exporter.rb, student_name)
        row = dict(zip(header, (canvas_text(cell.strip()) for cell in line)))
        student = row.get("Student", "")
        if student in ("Points Possible", "Manual Posting", "") and not row.get("ID"):
            points_row = points_row or student == "Points Possible"
            continue
        if student == "Student, Test":  # Canvas's own test student (Student View)
            continue
        rows.append(row)
        keys.append({k.lower() for k in (row.get("SIS Login ID"), row.get("SIS User ID"), row.get("ID"),
                                         canvas_key(student)) if k})
        ids.append(PRESETS["canvas"].student(row["ID"]) if row.get("ID", "").isdigit() else "")
    # Canvas's importer finds the student by the ID column first (lib/gradebook_importer.rb), never by the name
    return Roster(identity, rows, keys, {a: assignment_column(header, a) or a for a in assignments}, points_row,
                  ids=ids, style="canvas", raw_columns=("ID",))


def read_moodle_roster(path: str | Path, assignments: Sequence[str]) -> Roster:
    table = read_csv(path)
    header = [name.strip() for name in table[0]] if table else []
    if "Identifier" in header:
        return read_moodle_worksheet(path, table, header, assignments)
    missing = [name for name in ("First name", "Last name", "Email address") if name not in header]
    if missing:
        raise RosterError(f"{path}: not a Moodle grade export: no column {', '.join(repr(m) for m in missing)} "
                          f"(export it from Grades > Export > Plain text file)")
    rows, keys = [], []
    for line in table[1:]:
        row = dict(zip(header, (cell.strip() for cell in line)))
        if not any(row.values()):
            continue
        rows.append(row)
        email = row.get("Email address", "")
        keys.append({k.lower() for k in (row.get("Username"), row.get("ID number"), email, email.partition("@")[0]) if k})
    identity = [name for name in MOODLE_IDENTITY if name in header]
    # Moodle's grade import (grade/import/csv) maps the file to users by the column chosen: Email address
    return Roster(identity, rows, keys, {a: assignment_column(header, a) or a for a in assignments},
                  ids=[""] * len(rows), raw_columns=("Email address",))


def read_moodle_worksheet(path: str | Path, table: list[list[str]], header: list[str],
                          assignments: Sequence[str]) -> Roster:
    """Moodle's grading worksheet (mod/assign/feedback/offline, download_grades): one assignment, each row a
    participant ("Participant 1234567", the id in Moodle's download names), written back with its Grade."""
    if "Grade" not in header:
        raise RosterError(f"{path}: a Moodle grading worksheet without a 'Grade' column; download it again "
                          "(Assignment > View all submissions > Grading action > Download grading worksheet)")
    if len(assignments) != 1:
        raise RosterError(f"{path}: a Moodle grading worksheet is for one assignment; pass --assignment "
                          f"(the gradebook has {', '.join(assignments)})")
    rows, keys, ids = [], [], []
    for number, line in enumerate(table[1:], 2):
        row = dict(zip(header, line))
        if not any(cell.strip() for cell in row.values()):
            continue
        participant = MOODLE_PARTICIPANT.match(row.get("Identifier", ""))
        if not participant:
            raise RosterError(f"{path}: line {number}: the Identifier {row.get('Identifier', '')[:40]!r} is not "
                              "'Participant <number>' as Moodle writes it")
        rows.append(row)
        email = row.get("Email address", "").strip()
        keys.append({k.lower() for k in (email, email.partition("@")[0]) if k})
        ids.append(PRESETS["moodle"].student(participant.group(1)))
    # mod/assign/feedback/offline/importgradeslib.php reads the participant from Identifier and the Grade
    return Roster(header, rows, keys, {assignments[0]: "Grade"}, ids=ids,
                  raw_columns=("Identifier",), worksheet=True)


def rows_of(roster: Roster, student: str) -> list[int]:
    """The roster rows a gradebook id matches: by the LMS's id alone where it is one (``canvas-4711``), else by the
    row's ids (see the module's documentation)."""
    if LMS_ID.match(student):
        return [i for i, ident in enumerate(roster.ids) if ident == student]
    key = student_name(student).lower()
    return [i for i, keys in enumerate(roster.keys) if key in keys]


def match(gradebook: Gradebook, roster: Roster, assignments: Sequence[str], missing: str,
          failure: Callable[[str, str], str | None] = lambda assignment, student: None,
          uncollected: Callable[[str], Mapping[str, str]] = lambda assignment: {}) -> Matching:
    """The score of each roster row; ``failure(assignment, student)`` says why a student's last grading
    failed (``course grade``'s state), or None; ``uncollected(assignment)`` is {student: why} of the students
    whose files the last collection found but did not collect."""
    result = Matching()
    owners: dict[int, list[str]]
    unsure: set[int]
    owners, unsure = {}, set()  # roster row -> the gradebook ids it matches; rows an ambiguous id matches
    for student in gradebook.students:
        rows = rows_of(roster, student.id)
        if len(rows) > 1:
            result.ambiguous.append((student.id, [label(roster.rows[i]) for i in rows]))
            unsure.update(rows)
        elif rows:
            owners.setdefault(rows[0], []).append(student.id)
        elif any(_has_submission(gradebook, a, student.id) for a in assignments):
            result.not_in_roster.append(student.id)
    lost: dict[tuple[int, str], str] = {}  # (row, assignment) -> why: files found, none collected
    why: str | None
    for assignment in assignments:
        for student, why in sorted(uncollected(assignment).items()):
            rows = rows_of(roster, student)
            for i in rows:
                lost.setdefault((i, assignment), why)
            if not rows:
                result.not_collected.append((student, assignment, f"{why} (no roster row for {student})"))
    for i, row in enumerate(roster.rows):
        result.scores[i] = {}
        for assignment in assignments:
            found = [s for s in (_submission(gradebook, assignment, owner) for owner in owners.get(i, [])) if s]
            if (i, assignment) in lost:  # never "no submission", nor an earlier submission's score
                result.not_collected.append((label(row), assignment, lost[i, assignment]))
                result.scores[i][assignment] = None
            elif len(found) > 1:  # one person under two ids, each with a submission: a person decides
                result.conflicts.append((label(row), assignment, [s.student.id for s in found]))
                result.scores[i][assignment] = None
            elif found and (why := failure(assignment, found[0].student.id)):  # the scores are an earlier submission's
                result.failed.append((label(row), assignment, why))
                result.scores[i][assignment] = None
            elif found:
                result.scores[i][assignment] = final_score(found[0])
                if found[0].needs_manual_grade:
                    result.ungraded.append((label(row), assignment))
            elif i in unsure:  # the row may be that student's: never a silent 0
                result.scores[i][assignment] = None
            else:
                result.no_submission.append((label(row), assignment))
                result.scores[i][assignment] = 0.0 if missing == "zero" else None
    return result


def _submission(gradebook: Gradebook, assignment: str, student: str) -> SubmittedAssignment | None:
    try:
        return gradebook.find_submission(assignment, student)
    except MissingEntry:
        return None


def _has_submission(gradebook: Gradebook, assignment: str, student: str) -> bool:
    return _submission(gradebook, assignment, student) is not None


def label(row: Mapping[str, str]) -> str:
    return (row.get("Student") or row.get("Full name")
            or f"{row.get('First name', '')} {row.get('Last name', '')}".strip() or row.get("Identifier") or "?")


def number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def moodle_grade(score: float | None, max_score: float | None, row: Mapping[str, str]) -> float | None:
    """A score in nbgrader's points on the worksheet's own scale: Moodle reads the Grade column against the
    assignment's "Maximum Grade" (mod/assign/feedback/offline, upload_grades), which need not be nbgrader's total."""
    maximum: str | float | None
    maximum = next((value for name, value in row.items() if name.strip().lower() == "maximum grade"), "")
    try:
        maximum = float(str(maximum).replace(",", "."))
    except ValueError:
        maximum = None
    if score is None or not maximum or not max_score:
        return score
    return round(score * maximum / max_score, 2)


def write_grades(path: str | Path, roster: Roster, result: Matching, assignments: Sequence[str],
                 max_scores: Mapping[str, float | None]) -> None:
    def text(value: str, column: str) -> str:
        if column in roster.raw_columns:  # what the LMS matches on must stay as it is
            if csv_cell(value, roster.style) != value:
                result.live_keys.append((label(row), column))
            return value
        return csv_cell(value, roster.style)

    with open(path, "w", newline="", encoding="utf-8") as stream:
        out = csv.writer(stream)
        if roster.worksheet:  # Moodle's worksheet, column for column, the Grade filled in
            out.writerow([csv_cell(name) for name in roster.header])
            for i, row in enumerate(roster.rows):
                grade = moodle_grade(result.scores[i][assignments[0]], max_scores[assignments[0]], row)
                out.writerow([number(grade) if name == "Grade" else text(row.get(name, ""), name)
                              for name in roster.header])
            return
        out.writerow([csv_cell(name, roster.style) for name in roster.header]
                     + [csv_cell(roster.assignment_columns[a], roster.style) for a in assignments])
        if roster.points_row:
            out.writerow(["Points Possible"] + [""] * (len(roster.header) - 1) + [number(max_scores[a]) for a in assignments])
        for i, row in enumerate(roster.rows):
            out.writerow([text(row.get(name, ""), name) for name in roster.header]
                         + [number(result.scores[i][a]) for a in assignments])



class LmsExportPlugin(ExportPlugin):
    """Writes the grades as an LMS imports them (see the module's documentation)."""

    def course_grade_state(self) -> GradeState:
        """``course grade``'s state of this course and gradebook (``course.incremental.GradeState``): whose last
        grading failed.  Under plain ``nbgrader export`` too."""
        from nbgrader.coursedir import CourseDirectory

        from .grade import CourseGrade
        from .incremental import GradeState

        coursedir = CourseDirectory(config=self.config)
        return GradeState(Path(coursedir.root) / CourseGrade(config=self.config).state_file, coursedir.db_url,
                          warn=self.log.warning, unreadable="which gradings failed is unknown; none is left blank")

    roster = Unicode("", help="the LMS's gradebook export (CSV): who is enrolled, and its column names").tag(config=True)
    missing = Enum(["zero", "blank"], "zero", help="the score of an enrolled student with no submission").tag(config=True)
    lms = "lms"
    default_to = "lms-grades.csv"

    def read_roster(self, assignments: Sequence[str]) -> Roster:
        raise NotImplementedError

    def export(self, gradebook: Gradebook) -> None:
        if not self.roster:
            raise RosterError(f"no roster: pass the {self.lms} gradebook export with --roster "
                              f"(or --{type(self).__name__}.roster=FILE)")
        assignments = [str(a) for a in self.assignment] or [a.name for a in gradebook.assignments]
        if not assignments:
            raise RosterError("the gradebook has no assignment yet: grade first (course grade), or check --db")
        roster = self.read_roster(assignments)
        from .late import configured_policy, refresh_penalties

        policy = configured_policy(self)
        if policy is not None:
            for student, assignment in refresh_penalties(gradebook, policy, assignments):
                self.log.warning("Late penalty of %s for %s recomputed from the current score (graded by hand since)",
                                 student, assignment)
        state = self.course_grade_state()
        result = match(gradebook, roster, assignments, self.missing, state.failure, state.uncollected_of)
        max_scores = {a: gradebook.find_assignment(a).max_score for a in assignments}
        dest = self.to or self.default_to
        try:
            write_grades(dest, roster, result, assignments, max_scores)
        except OSError as error:
            raise UsageError(f"{dest}: cannot write the grades file ({error.strerror})") from None
        self.result = result
        self.log.info("Wrote %s: %d students, %d assignment(s)", dest, len(roster.rows), len(assignments))
        # names and ids come from the roster and the LMS: control and bidi characters are shown escaped
        for who, assignment in result.no_submission:
            self.log.warning("No submission of %s from %s (%s in the file)", assignment, log_text(who),
                             "0" if self.missing == "zero" else "blank")
        for student in result.not_in_roster:
            self.log.error("Graded student %s is not in the roster %s: left out of the file", log_text(student), self.roster)
        for student, rows in result.ambiguous:
            self.log.error("Graded student %s matches %d roster rows (%s): left out of the file, those rows blank",
                           log_text(student), len(rows), log_text("; ".join(rows)))
        for who, assignment, ids in result.conflicts:
            self.log.error("%s has submissions of %s under %s: blank in the file", log_text(who), assignment,
                           log_text(" and ".join(ids)))
        for who, assignment in result.ungraded:
            self.log.warning("%s, %s: written answers not graded by hand yet (they count 0)", log_text(who), assignment)
        for who, assignment, why in result.failed:
            self.log.error("%s, %s: the last grading failed (%s): blank in the file; grade it again", log_text(who),
                           assignment, log_text(why))
        for who, assignment, why in result.not_collected:
            self.log.error("%s, %s: files found but not collected (%s): blank in the file; fix and run course grade again",
                           log_text(who), assignment, log_text(why))
        for who, column in result.live_keys:
            self.log.error("%s: the %s cell starts like a formula; written as it is, because the LMS matches on it",
                           log_text(who), column)


class CanvasExportPlugin(LmsExportPlugin):
    lms = "Canvas"
    default_to = "canvas-grades.csv"

    def read_roster(self, assignments: Sequence[str]) -> Roster:
        return read_canvas_roster(self.roster, assignments)


class MoodleExportPlugin(LmsExportPlugin):
    lms = "Moodle"
    default_to = "moodle-grades.csv"

    def read_roster(self, assignments: Sequence[str]) -> Roster:
        return read_moodle_roster(self.roster, assignments)


PLUGINS = {"canvas": CanvasExportPlugin, "moodle": MoodleExportPlugin}


def export(lms: str, roster: str | Path, root: str | Path | None = None, to: str | Path | None = None,
           assignments: Sequence[str] = (), missing: str | None = None, db_url: str | None = None,
           out: Callable[[str], object] = print) -> int:
    """``course export``: returns the exit status (0 every student accounted for, 1 some left out)."""
    from nbgrader.api import Gradebook
    from nbgrader.coursedir import CourseDirectory

    from .config import load_config

    root = Path(root or ".").resolve()
    config = load_config(root, db_url)
    options = {"missing": missing} if missing else {}  # else nbgrader_config.py's, else the plug-in's default
    plugin = PLUGINS[lms](config=config, roster=str(roster), assignment=list(assignments),
                          to=str(to or root / PLUGINS[lms].default_to), **options)
    with Gradebook(CourseDirectory(config=config).db_url) as gradebook:
        unknown = [a for a in assignments if a not in {x.name for x in gradebook.assignments}]
        if unknown:
            raise RosterError(f"not in the gradebook: {', '.join(unknown)} (grade it first with `course grade`)")
        plugin.export(gradebook)
    result = plugin.result
    out(f"course export: {plugin.to} for {lms}: {len(result.scores)} students")
    for who, assignment in result.no_submission:
        out(log_text(f"  no submission: {who}, {assignment} ({'0' if plugin.missing == 'zero' else 'blank'})", 10_000))
    for student in result.not_in_roster:
        out(log_text(f"  NOT IN THE ROSTER, left out: {student}", 10_000))
    for student, rows in result.ambiguous:
        out(log_text(f"  MATCHES {len(rows)} ROSTER ROWS, left out, those rows blank: {student} ({'; '.join(rows)})", 10_000))
    for who, assignment, ids in result.conflicts:
        out(log_text(f"  TWO IDS WITH SUBMISSIONS, blank: {who}, {assignment} ({' and '.join(ids)})", 10_000))
    for who, assignment in result.ungraded:
        out(log_text(f"  not graded by hand yet (written answers count 0): {who}, {assignment}", 10_000))
    for who, assignment, why in result.failed:
        out(log_text(f"  LAST GRADING FAILED, blank (run course grade again): {who}, {assignment} ({why})", 10_000))
    for who, assignment, why in result.not_collected:
        out(log_text(f"  FOUND BUT NOT COLLECTED, blank (fix, then course grade again): {who}, {assignment} ({why})",
                     10_000))
    for who, column in result.live_keys:
        out(log_text(f"  the {column} of {who} starts like a formula; written as it is: the LMS matches on it", 10_000))
    return 0 if result.complete else 1
