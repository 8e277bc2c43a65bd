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

Students are matched by the ids collection used (the LMS file names: Canvas names each upload after the
student's sortable name, ``smithjane``; a Moodle export, after whichever id the course chose).  A roster row
matches a gradebook student whose id equals, ignoring case, one of the row's ids: for Canvas the SIS Login ID,
the SIS User ID, the Canvas ID or the sortable name with everything but letters and digits dropped; for Moodle
the username, the ID number, the email address or its part before the ``@``.  Nobody is dropped silently:
enrolled students with no submission get 0 (or a blank, ``--missing blank``) and are listed; graded students
the roster does not have, ids that match two roster rows, a row matched by two ids that both submitted,
submissions whose written answers are not graded by hand yet, and submissions whose last grading by
``course grade`` failed (nbgrader then keeps an earlier submission's scores) are listed (the doubtful cells
blank), and the command exits 1 so that a script notices.

The score is nbgrader's own: the total of the autograded and manually graded cells, less the late penalty, never
below 0 (as ``nbgrader export`` computes it).  The late penalties are first applied again to the current scores
(``course.late``), so points graded by hand after autograding are penalised like the rest.
"""
import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.api import MissingEntry
from nbgrader.plugins import ExportPlugin
from traitlets import Enum, Unicode

from .errors import UsageError
from .report import final_score

CANVAS_IDENTITY = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
CANVAS_OPTIONAL_IDENTITY = ("Integration ID",)
MOODLE_IDENTITY = ("First name", "Last name", "ID number", "Email address")


class RosterError(UsageError):
    """The roster cannot be read as the LMS's gradebook export (names the file and what is wrong)."""


@dataclass
class Roster:
    header: list  # identity columns to write, in the LMS's order
    rows: list  # dicts, one per enrolled student
    keys: list  # for each row, the ids it matches (lower case)
    assignment_columns: dict  # assignment id -> the LMS's column name for it
    points_row: bool = False


@dataclass
class Matching:
    scores: dict = field(default_factory=dict)  # roster row index -> {assignment: score or None}
    no_submission: list = field(default_factory=list)  # (row label, assignment)
    not_in_roster: list = field(default_factory=list)  # gradebook student ids
    ambiguous: list = field(default_factory=list)  # (student id, row labels)
    conflicts: list = field(default_factory=list)  # (row label, assignment, student ids with a submission each)
    ungraded: list = field(default_factory=list)  # (row label, assignment): written answers not graded by hand yet
    failed: list = field(default_factory=list)  # (row label, assignment, why): the last grading failed, left blank

    @property
    def complete(self):
        """Every student accounted for and every score final."""
        return not (self.not_in_roster or self.ambiguous or self.conflicts or self.ungraded or self.failed)


def read_csv(path):
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


def assignment_column(header, assignment):
    """The roster's column for an assignment: ``<id> (<LMS id>)`` on Canvas, ``<kind>: <id> (<type>)`` on Moodle."""
    pattern = re.compile(rf"^(?:[^:]+:\s*)?{re.escape(assignment)}(?:\s*\([^)]*\))?$", re.IGNORECASE)
    matches = [name for name in header if pattern.match(name.strip())]
    if len(matches) > 1:
        raise RosterError(f"the roster has {len(matches)} columns for {assignment} ({'; '.join(matches)}): keep the "
                          "one the LMS should update and export again")
    return matches[0] if matches else None


def canvas_key(sortable_name):
    return re.sub(r"[^0-9a-z]", "", sortable_name.lower())


def read_canvas_roster(path, assignments):
    table = read_csv(path)
    if not table:
        raise RosterError(f"{path}: empty; export the Canvas gradebook (Grades > Export > Export Entire Gradebook)")
    header = [name.strip() for name in table[0]]
    missing = [name for name in CANVAS_IDENTITY if name not in header]
    if missing:
        raise RosterError(f"{path}: not a Canvas gradebook export: no column {', '.join(repr(m) for m in missing)} "
                          f"(its first row is {', '.join(header[:6])})")
    identity = [name for name in CANVAS_IDENTITY + CANVAS_OPTIONAL_IDENTITY if name in header]
    rows, keys, points_row = [], [], False
    for line in table[1:]:
        row = dict(zip(header, (cell.strip() for cell in line)))
        student = row.get("Student", "")
        if student in ("Points Possible", "Manual Posting", "") and not row.get("ID"):
            points_row = points_row or student == "Points Possible"
            continue
        if student == "Student, Test":  # Canvas's own test student (Student View)
            continue
        rows.append(row)
        keys.append({k.lower() for k in (row.get("SIS Login ID"), row.get("SIS User ID"), row.get("ID"),
                                         canvas_key(student)) if k})
    return Roster(identity, rows, keys, {a: assignment_column(header, a) or a for a in assignments}, points_row)


def read_moodle_roster(path, assignments):
    table = read_csv(path)
    header = [name.strip() for name in table[0]] if table else []
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
    return Roster(identity, rows, keys, {a: assignment_column(header, a) or a for a in assignments})


def match(gradebook, roster, assignments, missing, failure=lambda assignment, student: None):
    """The score of each roster row; ``failure(assignment, student)`` says why a student's last grading
    failed (``course grade``'s state), or None."""
    result = Matching()
    owners, unsure = {}, set()  # roster row -> the gradebook ids it matches; rows an ambiguous id matches
    for student in gradebook.students:
        rows = [i for i, keys in enumerate(roster.keys) if student.id.lower() in keys]
        if len(rows) > 1:
            result.ambiguous.append((student.id, [label(roster.rows[i]) for i in rows]))
            unsure.update(rows)
        elif rows:
            owners.setdefault(rows[0], []).append(student.id)
        elif any(_has_submission(gradebook, a, student.id) for a in assignments):
            result.not_in_roster.append(student.id)
    for i, row in enumerate(roster.rows):
        result.scores[i] = {}
        for assignment in assignments:
            found = [s for s in (_submission(gradebook, assignment, owner) for owner in owners.get(i, [])) if s]
            if len(found) > 1:  # one person under two ids, each with a submission: a person decides
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


def _submission(gradebook, assignment, student):
    try:
        return gradebook.find_submission(assignment, student)
    except MissingEntry:
        return None


def _has_submission(gradebook, assignment, student):
    return _submission(gradebook, assignment, student) is not None


def label(row):
    return row.get("Student") or f"{row.get('First name', '')} {row.get('Last name', '')}".strip() or "?"


def number(value):
    return "" if value is None else f"{value:g}"


def write_grades(path, roster, result, assignments, max_scores):
    with open(path, "w", newline="", encoding="utf-8") as stream:
        out = csv.writer(stream)
        out.writerow(roster.header + [roster.assignment_columns[a] for a in assignments])
        if roster.points_row:
            out.writerow(["Points Possible"] + [""] * (len(roster.header) - 1) + [number(max_scores[a]) for a in assignments])
        for i, row in enumerate(roster.rows):
            out.writerow([row.get(name, "") for name in roster.header] + [number(result.scores[i][a]) for a in assignments])


class LmsExportPlugin(ExportPlugin):
    """Writes the grades as an LMS imports them (see the module's documentation)."""

    def course_grade_state(self):
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

    def read_roster(self, assignments):
        raise NotImplementedError

    def export(self, gradebook):
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
        result = match(gradebook, roster, assignments, self.missing, self.course_grade_state().failure)
        max_scores = {a: gradebook.find_assignment(a).max_score for a in assignments}
        dest = self.to or self.default_to
        try:
            write_grades(dest, roster, result, assignments, max_scores)
        except OSError as error:
            raise UsageError(f"{dest}: cannot write the grades file ({error.strerror})") from None
        self.result = result
        self.log.info("Wrote %s: %d students, %d assignment(s)", dest, len(roster.rows), len(assignments))
        for who, assignment in result.no_submission:
            self.log.warning("No submission of %s from %s (%s in the file)", assignment, who,
                             "0" if self.missing == "zero" else "blank")
        for student in result.not_in_roster:
            self.log.error("Graded student %s is not in the roster %s: left out of the file", student, self.roster)
        for student, rows in result.ambiguous:
            self.log.error("Graded student %s matches %d roster rows (%s): left out of the file, those rows blank",
                           student, len(rows), "; ".join(rows))
        for who, assignment, ids in result.conflicts:
            self.log.error("%s has submissions of %s under %s: blank in the file", who, assignment, " and ".join(ids))
        for who, assignment in result.ungraded:
            self.log.warning("%s, %s: written answers not graded by hand yet (they count 0)", who, assignment)
        for who, assignment, why in result.failed:
            self.log.error("%s, %s: the last grading failed (%s): blank in the file; grade it again", who, assignment, why)


class CanvasExportPlugin(LmsExportPlugin):
    lms = "Canvas"
    default_to = "canvas-grades.csv"

    def read_roster(self, assignments):
        return read_canvas_roster(self.roster, assignments)


class MoodleExportPlugin(LmsExportPlugin):
    lms = "Moodle"
    default_to = "moodle-grades.csv"

    def read_roster(self, assignments):
        return read_moodle_roster(self.roster, assignments)


PLUGINS = {"canvas": CanvasExportPlugin, "moodle": MoodleExportPlugin}


def export(lms, roster, root=None, to=None, assignments=(), missing=None, db_url=None, out=print):
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
        out(f"  no submission: {who}, {assignment} ({'0' if plugin.missing == 'zero' else 'blank'})")
    for student in result.not_in_roster:
        out(f"  NOT IN THE ROSTER, left out: {student}")
    for student, rows in result.ambiguous:
        out(f"  MATCHES {len(rows)} ROSTER ROWS, left out, those rows blank: {student} ({'; '.join(rows)})")
    for who, assignment, ids in result.conflicts:
        out(f"  TWO IDS WITH SUBMISSIONS, blank: {who}, {assignment} ({' and '.join(ids)})")
    for who, assignment in result.ungraded:
        out(f"  not graded by hand yet (written answers count 0): {who}, {assignment}")
    for who, assignment, why in result.failed:
        out(f"  LAST GRADING FAILED, blank (run course grade again): {who}, {assignment} ({why})")
    return 0 if result.complete else 1
