"""Collect submissions for ``course grade``: nbgrader's folder layout, or an LMS export.

Two kinds of input are accepted:

* the nbgrader layout, ``<folder>/<student>/<assignment>/<notebook>.ipynb`` (the course's own
  ``submitted/`` folder, or a copy of one from elsewhere, which is copied into ``submitted/``);
* an export from a learning management system: a zip file, or a folder of notebooks and zip
  files, in which every file name says whose it is.  Files are matched the way
  ``nbgrader zip_collect`` matches them, by nbgrader's own ``FileNameCollectorPlugin`` and a
  regular expression with the named groups ``student_id`` and ``file_id`` (and optionally
  ``timestamp``), applied to the file's base name.  The default fits Canvas and most others,
  ``<student>_<anything>_<notebook>.ipynb``::

      smithjane_12345_678_losses.ipynb        -> student smithjane, notebook losses.ipynb
      smithjane_late_12345_678_losses-1.ipynb -> the same (late flag, resubmission suffix)

  ``{notebooks}`` in the expression stands for the assignment's notebook names.  Another LMS
  needs another expression: ``--pattern`` on the command line, or
  ``c.Collect.lms_pattern`` in ``nbgrader_config.py``.

  For Canvas and Moodle, ``--lms canvas`` and ``--lms moodle`` (``c.Collect.lms``) read the names as those
  LMSs write them (``course.lms``, with the LMS source of each rule): the student is the LMS's user id
  (gradebook id ``canvas-4711``, ``moodle-1234567``), the name beside it only for people to read, and Canvas's
  ``LATE`` mark is kept.  Submission times come only from what the LMS wrote: a ``timestamp`` in the outer file
  name, or the times exported from the LMS (``--submission-times FILE``); never from a name inside a student's
  upload nor from a file a student uploaded.  Collected notebooks are written to
  ``submitted/<student>/<assignment>/`` (and ``timestamp.txt``, the latest time the student's
  file names carry), exactly where ``nbgrader zip_collect`` puts them.  A student's new submission
  replaces the earlier one whole: a notebook it lacks is removed, and a changed submission whose
  names carry no time loses the ``timestamp.txt`` of the one it replaces.  An nbgrader layout copied
  in from another folder is mirrored the same way.

A file belongs to the student who uploaded it.  The LMS names each uploaded file after its
uploader (Canvas: ``<student>_[late_]<id>_<id>_<file name>``), so a file in the export is
attributed by its name; an archive a student uploaded (``smithjane_12345_678_work.zip``) is
attributed the same way, and everything in it belongs to that uploader, whatever the members
are called.  A member whose own name says it is another student's file is reported and never
collected: a student can neither submit for someone else nor, through the "two files" rule,
void another student's submission.  An archive whose name names no student (an export zipped
inside another) is read as part of the export.

Nothing in the input stops the batch, and nothing is dropped without a word.  A file that is
not a zip archive, cannot be read, names no student, names an unknown student
(``--roster-only``), names a student other than its uploader, is the second file for the same
student and notebook, an upload or a student with no notebook (a ``.py`` or ``.txt`` only), an
archive nested deeper than ``MAX_ARCHIVE_LEVELS``, the archives past the export's total size
budget, a symbolic link (never followed) and anything that is not a regular file each become
a ``Problem`` that names the file and says what is wrong; the other submissions are collected
as usual.  Nested archives are copied to a temporary file one at a time, within one size
budget for the whole export, so memory stays flat whatever the export holds.

Those bounds are ``course.lms_export``'s: its ``ExportReader`` lists and reads an export and knows
no student.  Here each file it yields is attributed to a student, the file that counts is chosen
among a student's, and the chosen ones are written into ``submitted/``.
"""
import json
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable, Iterable, Protocol

from traitlets import Enum, Unicode
from traitlets.config import Configurable

from . import files
from .lms import PRESETS, Preset, SubmissionTimes, student_name
from .lms_export import EXPORT_ARCHIVE_BUDGET, Entry, EntryKind, ExportReader, OverBudget, TooDeep, Unreadable
from .sandbox import Limits

if TYPE_CHECKING:
    from nbgrader.plugins import FileNameCollectorPlugin

DEFAULT_LMS_PATTERN = r"^(?P<student_id>[^_]+)_(?:.*_)?(?P<file_id>{notebooks})(?:-\d+)?\.ipynb$"
# A gradebook id is a folder name and an nbgrader id: letters (any script: the LMS's names are Unicode), digits and
# ._@+- only, NFC (student_name); never a path separator, a dot first, a space or a control or format character.
SAFE_STUDENT_ID = re.compile(r"[^\W_][\w.@+-]{0,127}")
# Written beside a student's collected notebooks: who the LMS says they are, and the LMS's own late mark.
LMS_RECORD = "lms.json"
# Larger files are not notebooks a student wrote; the grader reads no larger one (course.submitted_notebook).
MAX_NOTEBOOK_BYTES = Limits.notebook_bytes
# The named groups of a file name matched by the LMS pattern (student_id, file_id, ...; None: a group that did not take
# part), as nbgrader's FileNameCollectorPlugin and re.Match.groupdict() give them.
_Groups = dict[str, str | None]

class ProblemKind(StrEnum):
    """What kind of problem an input has (``Problem.kind``), for the report's tally."""

    MISSING = "missing"
    UNREADABLE = "unreadable"
    UNATTRIBUTED = "unattributed"
    UNKNOWN_STUDENT = "unknown-student"
    OTHER_STUDENT = "other-student"
    WRONG_NOTEBOOK = "wrong-notebook"
    DUPLICATE = "duplicate"
    NO_NOTEBOOK = "no-notebook"
    TOO_LARGE = "too-large"
    TOO_DEEP = "too-deep"
    OVER_BUDGET = "over-budget"
    SYMLINK = "symlink"
    NOT_A_FILE = "not-a-file"
    TIMESTAMP = "timestamp"
    SUPERSEDED = "superseded"
    NO_TIME = "no-time"
    TIMES = "times"


# What each kind of problem means, for the report's tally; the reason says it for one file.
PROBLEM_KINDS = {
    ProblemKind.MISSING: "the input does not exist or holds no submission",
    ProblemKind.UNREADABLE: "a file or archive that cannot be read",
    ProblemKind.UNATTRIBUTED: "a file whose name says no student",
    ProblemKind.UNKNOWN_STUDENT: "a student id that is unusable or not in the roster",
    ProblemKind.OTHER_STUDENT: "a file in one student's upload that names another student (never collected)",
    ProblemKind.WRONG_NOTEBOOK: "a notebook that is not one of the assignment's",
    ProblemKind.DUPLICATE: "two files for the same student and notebook",
    ProblemKind.NO_NOTEBOOK: "an upload, or a student, with no notebook",
    ProblemKind.TOO_LARGE: "a file too large for a notebook",
    ProblemKind.TOO_DEEP: "an archive, or folders, nested deeper than supported",
    ProblemKind.OVER_BUDGET: "archives past the export's total size budget",
    ProblemKind.SYMLINK: "a symbolic link (never followed)",
    ProblemKind.NOT_A_FILE: "something that is not a regular file",
    ProblemKind.TIMESTAMP: "an unreadable timestamp",
    ProblemKind.SUPERSEDED: "an older file of a student whose newer file was collected",
    ProblemKind.NO_TIME: "submissions without a submission time, for an assignment with a due date",
    ProblemKind.TIMES: "a row of the submission times that cannot be read",
}


class Collect(Configurable):
    """How LMS exports are read, in ``nbgrader_config.py`` as ``c.Collect.<name>``: ``course grade`` and
    ``course similarity`` collect alike."""

    lms_pattern = Unicode(DEFAULT_LMS_PATTERN, help=(
        "Regular expression for file names in an LMS export, matched against the base name; named groups "
        "student_id and file_id (and optionally timestamp); {notebooks} stands for the assignment's notebook names."
    )).tag(config=True)
    lms = Enum(sorted(PRESETS), None, allow_none=True, help=(
        "The LMS whose submission download is read (canvas or moodle): its own file names, the LMS's user id as "
        "the student; overrides lms_pattern.")).tag(config=True)


@dataclass
class Problem:
    """Something in the input that could not be collected; ``where`` names the file or folder."""

    where: str
    reason: str
    student: str = ""
    kind: ProblemKind = ProblemKind.UNREADABLE

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class Collected:
    students: dict[str, list[Path]] = field(default_factory=dict)  # student -> [notebook paths in submitted/]
    problems: list[Problem] = field(default_factory=list)
    source: str = ""
    kind: str = ""  # "nbgrader" or "lms"
    names: dict[str, str] = field(default_factory=dict)  # student -> the name the LMS wrote beside the id
    timeless: list[str] = field(default_factory=list)  # students collected now whose submission has no time

    def uncollected(self) -> dict[str, str]:
        """{student: why} for every student whose files were found but none collected: their grade is not
        "no submission" (``course export`` leaves it blank and lists it)."""
        found: dict[str, str] = {}
        for problem in self.problems:
            if problem.student and problem.student not in self.students and problem.kind != ProblemKind.SUPERSEDED:
                found.setdefault(problem.student, problem.reason)
        return found


def notebook_pattern(pattern: str, notebooks: Iterable[str]) -> str:
    """The LMS pattern with ``{notebooks}`` replaced by the assignment's notebook names."""
    names = "|".join(re.escape(n) for n in sorted(notebooks, key=len, reverse=True))
    return pattern.replace("{notebooks}", f"(?:{names})")


class CourseFolders(Protocol):
    """Where ``collect`` finds the course's submitted/ folder: nbgrader's ``CourseDirectory``, or any object
    with the two attributes."""

    @property
    def root(self) -> str: ...

    @property
    def submitted_directory(self) -> str: ...


def collect(source: str | os.PathLike[str] | None, assignment: str, coursedir: CourseFolders, notebooks: set[str],
            pattern: str = DEFAULT_LMS_PATTERN, roster: set[str] | None = None, log: logging.Logger | None = None,
            archive_budget: int = EXPORT_ARCHIVE_BUDGET, lms: str | None = None,
            times: SubmissionTimes | None = None) -> Collected:
    """Gather the submissions of ``assignment`` from ``source`` into ``coursedir``'s submitted/ folder.

    ``notebooks`` are the assignment's notebook names without ``.ipynb``; ``roster`` (a set of
    student ids, or None) limits which students are accepted; ``archive_budget`` is the number of
    bytes of nested archives read from the whole export; ``lms`` a key of ``course.lms.PRESETS`` (its
    naming replaces ``pattern``); ``times`` the ``SubmissionTimes`` exported from the LMS.  Returns a ``Collected``.
    """
    submitted = Path(coursedir.root) / coursedir.submitted_directory
    source = Path(source) if source else submitted
    result = Collected(source=str(source))
    if not source.exists():
        result.problems.append(Problem(str(source), "no such file or folder", kind=ProblemKind.MISSING))
        return result
    if source.is_dir() and (source.resolve() == submitted.resolve() or _is_nbgrader_layout(source, assignment)):
        result.kind = "nbgrader"
        _collect_nbgrader(source, submitted, assignment, notebooks, roster, result)
        if not result.students and not result.problems:
            result.problems.append(Problem(str(source), f"no submission of {assignment} here "
                                                        f"(expected <student>/{assignment}/*.ipynb)", kind=ProblemKind.MISSING))
    else:
        result.kind = "lms"
        with ExportReader(archive_budget, MAX_NOTEBOOK_BYTES) as reader:
            attribution = _attribution(assignment, notebooks, pattern, roster, lms, log, result.problems)
            _read_source(reader, attribution, source)
            _write_export(attribution, submitted, result, times, log)
        if times is not None:
            result.problems += [Problem(where, why, kind=ProblemKind.TIMES) for where, why in times.problems]
    # Every student with a folder for this assignment in submitted/ is graded, including
    # those collected by an earlier run; those found now with problems are reported above.
    if result.kind == "lms" or source.resolve() != submitted.resolve():
        _collect_nbgrader(submitted, submitted, assignment, notebooks, roster, result, report_only_new=True)
    return result


def _is_nbgrader_layout(folder: Path, assignment: str) -> bool:
    return any(p.is_dir() and not p.is_symlink() for p in folder.glob(f"*/{glob_escape(assignment)}"))


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _collect_nbgrader(folder: Path, submitted: Path, assignment: str, notebooks: set[str], roster: set[str] | None,
                      result: Collected, report_only_new: bool = False) -> None:
    if not folder.is_dir():
        return
    copying = folder.resolve() != submitted.resolve()
    for student_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        student = student_dir.name
        assignment_dir = student_dir / assignment
        if not assignment_dir.is_dir() or (report_only_new and student in result.students):
            continue
        where = str(assignment_dir)
        if student_dir.is_symlink() or assignment_dir.is_symlink():
            link = student_dir if student_dir.is_symlink() else assignment_dir
            result.problems.append(Problem(str(link), "a symbolic link; not followed, nothing in it was collected",
                                           student, ProblemKind.SYMLINK))
            continue
        if not SAFE_STUDENT_ID.fullmatch(student) or student != student_name(student):
            result.problems.append(Problem(where, f"{student!r} is not a usable student id (letters, digits and ._@+- only)",
                                           student, ProblemKind.UNKNOWN_STUDENT))
            continue
        if roster is not None and student not in roster:
            result.problems.append(Problem(where, f"unknown student {student!r}: not in the gradebook's roster", student,
                                           ProblemKind.UNKNOWN_STUDENT))
            continue
        found = sorted(p for p in assignment_dir.glob("*.ipynb") if p.is_file() or p.is_symlink())
        links = [p for p in found if p.is_symlink()]
        for path in links:
            result.problems.append(Problem(str(path), "a symbolic link; not followed, not collected", student, ProblemKind.SYMLINK))
        known = [p for p in found if p.stem in notebooks and not p.is_symlink()]
        if not known:
            seen = ", ".join(p.name for p in sorted(assignment_dir.iterdir())) or "the folder is empty"
            result.problems.append(Problem(
                where, f"no notebook for student {student}: expected {_names(notebooks)}, found {seen}", student,
                ProblemKind.NO_NOTEBOOK))
            continue
        unreadable = [p for p in known if not _readable(p)]
        if unreadable:
            for path in unreadable:
                result.problems.append(Problem(str(path), "the file cannot be read (permissions or I/O error)", student))
            continue
        if copying:
            target = submitted / student / assignment
            target.mkdir(parents=True, exist_ok=True)
            copied: set[Path] = set()
            found_here = files.listing(assignment_dir)
            not_copied = [
                ([p for p in found_here.links if assignment_dir / p not in links],  # top-level ones: reported above
                 "a symbolic link; not followed, not copied", ProblemKind.SYMLINK),
                (found_here.unreadable, "a folder that cannot be read (permissions or I/O error); what it holds "
                 "was not copied", ProblemKind.UNREADABLE),
                (found_here.others, "not a regular file; not copied", ProblemKind.NOT_A_FILE),
                (found_here.too_deep, f"folders nested more than {files.MAX_SUBMISSION_DEPTH} deep; what they hold "
                 "was not copied", ProblemKind.TOO_DEEP)]
            for paths, reason, kind in not_copied:
                result.problems += [Problem(str(assignment_dir / p), reason, student, kind) for p in paths]
            for relative in found_here.files:
                destination = target / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                _write_if_changed(destination, files.read_no_follow(assignment_dir / relative))
                copied.add(destination)
            in_target = files.listing(target)
            for stale in [target / p for p in in_target.files + in_target.links]:
                if stale not in copied:
                    stale.unlink()  # the submission is the folder as it is now: an earlier copy's extra files go
            known = [target / p.name for p in known]
        result.students[student] = known


def _readable(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.read(1)
        return True
    except OSError:
        return False


def _names(notebooks: Iterable[str]) -> str:
    return " or ".join(f"{n}.ipynb" for n in sorted(notebooks))


# An LMS export: course.lms_export reads it; what follows decides whose each file is and which file of a
# student's counts, and writes those into submitted/.


@dataclass
class _Candidate:
    """A notebook found in the export, and the student and notebook it is for."""

    where: str  # how the user sees it: archive.zip:folder/name.ipynb
    read: Callable[[], bytes]  # at most MAX_NOTEBOOK_BYTES + 1; raises Unreadable
    student: str
    notebook: str
    timestamp: datetime | None = None


@dataclass
class _Upload:
    """A file a student uploaded that holds other files: the notebooks found in it, and the rest."""

    student: str
    notebooks: int = 0
    members: list[str] = field(default_factory=list)  # base names of every file in it


@dataclass
class _Attribution:
    """Whose each file of one export is: the rules the export is read by, and what its walk found so far.

    Each file is attributed to its uploader: by its own name at the export's level, by the upload's name
    inside an archive a student uploaded, by the folder's name inside a student's folder (Moodle's)."""

    assignment: str
    notebooks: set[str]
    roster: set[str] | None
    pattern: str  # the LMS preset's, where one is named
    preset: Preset | None
    collector: "FileNameCollectorPlugin"  # the pattern, applied to a notebook's name as nbgrader zip_collect does
    uploader_pattern: re.Pattern[str]  # the student an uploaded file's name names: the pattern with any file name
    folder_pattern: re.Pattern[str] | None  # Moodle's "download submissions in folders": a folder per student
    problems: list[Problem]
    candidates: list[_Candidate] = field(default_factory=list)
    uploads: dict[str, _Upload] = field(default_factory=dict)  # where -> the upload there
    named: set[str] = field(default_factory=set)  # every student a name named, accepted or not
    names: dict[str, str] = field(default_factory=dict)  # student -> the name the LMS wrote beside the id
    marked_late: set[str] = field(default_factory=set)  # students whose names carry the LMS's late mark
    offered: set[tuple[str, str]] = field(default_factory=set)  # (student, notebook) of every file found for it
    folders: dict[str, str | None] = field(default_factory=dict)  # where -> its owner (_folder_owner), said once

    def problem(self, where: str, reason: str, student: str = "", kind: ProblemKind = ProblemKind.UNREADABLE) -> None:
        self.problems.append(Problem(where, reason, student, kind))


def _attribution(assignment: str, notebooks: set[str], pattern: str, roster: set[str] | None, lms: str | None,
                 log: logging.Logger | None, problems: list[Problem]) -> _Attribution:
    from nbgrader.plugins import FileNameCollectorPlugin

    preset = PRESETS[lms] if lms else None
    if preset is not None:
        pattern = preset.pattern
    collector = FileNameCollectorPlugin(named_regexp=notebook_pattern(pattern, notebooks))
    if log is not None:
        collector.log = log
    return _Attribution(assignment, notebooks, roster, pattern, preset, collector,
                        uploader_pattern=re.compile(pattern.replace("{notebooks}", "[^/]+?")),
                        folder_pattern=re.compile(preset.folder) if preset and preset.folder else None,
                        problems=problems)


# Whose a file is ----------------------------------------------------------------------------------------


def _identify(attribution: _Attribution, groups: _Groups | None, outer: bool = False) -> str | None:
    """The gradebook id a matched name says (the LMS's user id under a preset), or None; the name the LMS
    wrote beside it is kept for people to read, and the LMS's late mark where the name is the LMS's own."""
    groups = groups or {}
    raw = groups.get("student_id")
    if not raw:
        return None
    student = attribution.preset.student(raw) if attribution.preset else student_name(raw)
    if outer:  # a name inside a student's upload is theirs to choose: neither another's name nor a late mark
        if name := groups.get("name"):
            attribution.names.setdefault(student, student_name(name))
        if groups.get("late"):
            attribution.marked_late.add(student)
    return student


def _uploader_of(attribution: _Attribution, name: str, outer: bool = False) -> str | None:
    """The student a file's name names, read as the LMS names an upload (``.ipynb`` in place of its suffix);
    ``outer``: the name is the LMS's (not one inside a student's upload), so its late mark counts."""
    stem = PurePosixPath(name).stem if PurePosixPath(name).suffix else name
    match = attribution.uploader_pattern.match(stem + ".ipynb")
    return _identify(attribution, match.groupdict(), outer) if match else None


def _folder_owner(attribution: _Attribution, where: str, folder: str) -> str | None:
    """The student whose folder ``folder`` is (Moodle's per-student folder; registered as their upload), None
    where the name is no student's folder, "" where that student is not accepted."""
    if attribution.folder_pattern is None:
        return None
    if where in attribution.folders:
        return attribution.folders[where]
    match = attribution.folder_pattern.match(folder)
    student = _identify(attribution, match.groupdict(), outer=True) if match else None
    if student is not None:
        if not _accept(attribution, student, where):
            student = ""
        else:
            attribution.uploads[where] = _Upload(student)
    attribution.folders[where] = student
    return student


def _accept(attribution: _Attribution, student: str, where: str) -> bool:
    """Whether ``student`` may have files collected; says why not."""
    attribution.named.add(student)
    if not SAFE_STUDENT_ID.fullmatch(student):
        attribution.problem(where, f"{student!r} is not a usable student id; skipped", student,
                            ProblemKind.UNKNOWN_STUDENT)
        return False
    if attribution.roster is not None and student not in attribution.roster:
        attribution.problem(where, f"unknown student {student!r}: not in the gradebook's roster; skipped", student,
                            ProblemKind.UNKNOWN_STUDENT)
        return False
    return True


# Walking the export ---------------------------------------------------------------------------------------

# The problem kind of each reason the reader gives for not reading an archive.
_NOT_READ = {Unreadable: ProblemKind.UNREADABLE, TooDeep: ProblemKind.TOO_DEEP, OverBudget: ProblemKind.OVER_BUDGET}


def _read_source(reader: ExportReader, attribution: _Attribution, source: Path) -> None:
    if not source.is_file():
        _read_folder(reader, attribution, source)
    elif source.suffix.lower() == ".ipynb":
        _match_notebook(attribution, reader.source_file(source), None, None)
    else:  # the export itself, whatever its name says: never one student's upload
        _read_archive(reader, attribution, reader.source_file(source), None, None, uploaded=False)


def _read_folder(reader: ExportReader, attribution: _Attribution, folder: Path, owner: str | None = None,
                 upload: str | None = None) -> None:
    """A folder of the export; ``owner`` and ``upload`` where it lies in a student's upload (Moodle's folders)."""
    try:
        entries = reader.folder(folder)
    except Unreadable as error:
        attribution.problem(str(folder), str(error))
        return
    for entry in entries:
        if entry.kind == EntryKind.SYMLINK:
            student = owner or _uploader_of(attribution, entry.name) or ""
            if student:
                attribution.named.add(student)
            attribution.problem(entry.where, "a symbolic link; not followed, nothing was collected from it", student,
                                ProblemKind.SYMLINK)
        elif entry.kind == EntryKind.FOLDER:
            folder_owner = _folder_owner(attribution, entry.where, entry.name) if owner is None else None
            if folder_owner == "":
                continue  # a student not accepted: said once, by _accept()
            _read_folder(reader, attribution, Path(entry.where), owner or folder_owner,
                         upload if folder_owner is None else entry.where)
        elif entry.kind == EntryKind.FILE:
            if upload is not None:
                attribution.uploads[upload].members.append(entry.name)
            _read_entry(reader, attribution, entry, owner, upload)
        else:
            attribution.problem(entry.where, "not a regular file (a device, socket or pipe); skipped",
                                _uploader_of(attribution, entry.name) or "", ProblemKind.NOT_A_FILE)


def _read_entry(reader: ExportReader, attribution: _Attribution, entry: Entry, owner: str | None,
                upload: str | None) -> None:
    """One file of the export: ``owner`` is the uploader when it lies inside a student's upload."""
    suffix = PurePosixPath(entry.name).suffix.lower()
    if suffix == ".zip":
        _read_archive(reader, attribution, entry, owner, upload)
    elif suffix == ".ipynb":
        _match_notebook(attribution, entry, owner, upload)
    elif owner is None:
        student = _uploader_of(attribution, entry.name)
        if student and _accept(attribution, student, entry.where):
            attribution.problem(entry.where, f"not a notebook: only {_names(attribution.notebooks)} is graded; "
                                "not collected", student, ProblemKind.NO_NOTEBOOK)
        elif not student:
            attribution.problem(entry.where, "neither a notebook nor a zip archive, and its name says no student; "
                                "skipped", kind=ProblemKind.UNATTRIBUTED)


def _read_archive(reader: ExportReader, attribution: _Attribution, archive: Entry, owner: str | None,
                  upload: str | None, uploaded: bool = True) -> None:
    """A zip: the export's own (``uploaded`` False), or one found in the export."""
    if owner is None and uploaded:
        student = _uploader_of(attribution, archive.name, outer=True)
        if student:  # a student's upload: all of it is theirs
            if not _accept(attribution, student, archive.where):
                return
            owner, upload = student, archive.where
            attribution.uploads[upload] = _Upload(student)
    try:
        members = reader.archive(archive)
    except Unreadable as error:
        attribution.problem(archive.where, str(error), owner or "", _NOT_READ[type(error)])
        return
    for member in members:
        member_owner, member_upload = owner, upload
        if owner is None:  # the export's own archive: a student's folder in it is their upload
            member_owner, member_upload = _student_folder(attribution, archive, member) or (owner, upload)
            if member_owner == "":
                continue  # a student not accepted: said once, by _accept()
        if member_upload is not None:
            attribution.uploads[member_upload].members.append(member.name)
        _read_entry(reader, attribution, member, member_owner, member_upload)


def _student_folder(attribution: _Attribution, archive: Entry, member: Entry) -> tuple[str, str] | None:
    """(owner, upload) of a member of the export's own archive that lies in a student's folder (the first of
    its folders that is one); None where none is."""
    for depth, part in enumerate(member.folders):
        folder = f"{archive.where}:{'/'.join(member.folders[:depth + 1])}"
        student = _folder_owner(attribution, folder, part)
        if student is not None:
            return student, folder
    return None


def _match_notebook(attribution: _Attribution, entry: Entry, owner: str | None, upload: str | None) -> None:
    """A notebook of the export: a candidate for its student, or a problem that says why it is none."""
    info = attribution.collector.collect(entry.name) or {}
    if owner is None:
        student = _student_of_outer_notebook(attribution, entry, info)
    else:
        student, info = _student_of_uploaded_notebook(attribution, entry, info, owner)
    if student is None:
        return
    notebook = Path(info.get("file_id") or "").stem if info else re.sub(r"-\d+$", "", PurePosixPath(entry.name).stem)
    if notebook not in attribution.notebooks:
        attribution.problem(entry.where, f"not a notebook of {attribution.assignment} (expected "
                            f"{_names(attribution.notebooks)}); skipped", student, ProblemKind.WRONG_NOTEBOOK)
        return
    attribution.offered.add((student, notebook))
    if entry.size > MAX_NOTEBOOK_BYTES:
        attribution.problem(entry.where, f"{entry.size // 1024**2} MiB is too large for a notebook; skipped", student,
                            ProblemKind.TOO_LARGE)
        return
    timestamp = None
    # A time only from the LMS's own name of the file: a name inside a student's upload is the student's to
    # choose (an on-time date in a late upload), and never a submission time.
    if owner is None and info.get("timestamp"):
        from nbgrader.utils import parse_utc

        try:
            timestamp = parse_utc(info["timestamp"])
        except (ValueError, OverflowError):
            attribution.problem(entry.where, f"unreadable timestamp {info['timestamp']!r}; ignored", student,
                                ProblemKind.TIMESTAMP)
    if upload is not None:
        attribution.uploads[upload].notebooks += 1
    attribution.candidates.append(_Candidate(entry.where, entry.read, student, notebook, timestamp))


def _student_of_outer_notebook(attribution: _Attribution, entry: Entry, info: _Groups) -> str | None:
    """The student a notebook the LMS named is for, or None (with the problem said)."""
    # The LMS writes its ids first and the student's own file name last, so the first reading of the ids is
    # the uploader's.  A file name can imitate another student's ids ("x_9999_1_losses.ipynb"), which a
    # pattern that reads the notebook's name from the end would take for that student's.
    uploader = _uploader_of(attribution, entry.name, outer=True)
    named = _identify(attribution, info, outer=uploader is None) if info else uploader
    if uploader and named != uploader:
        attribution.problem(entry.where, f"the name the student gave the file imitates another student's ({named}); "
                            "a file counts only for the student who uploaded it; not collected", uploader,
                            ProblemKind.OTHER_STUDENT)
        return None
    if not info:
        if named and _accept(attribution, named, entry.where):
            attribution.problem(entry.where, f"not a notebook of {attribution.assignment} (expected "
                                f"{_names(attribution.notebooks)}); skipped", named, ProblemKind.WRONG_NOTEBOOK)
        elif not named:
            attribution.problem(entry.where, "the file name does not say which student it belongs to (it does not "
                                f"match the LMS pattern {attribution.pattern!r}); skipped",
                                kind=ProblemKind.UNATTRIBUTED)
        return None
    if not named:  # a pattern whose student_id can match nothing: the file still belongs to nobody known
        attribution.problem(entry.where, "the file name does not say which student it belongs to (the LMS pattern "
                            f"{attribution.pattern!r} reads no student id from it); skipped",
                            kind=ProblemKind.UNATTRIBUTED)
        return None
    return named if _accept(attribution, named, entry.where) else None


def _student_of_uploaded_notebook(attribution: _Attribution, entry: Entry, info: _Groups,
                                  owner: str) -> tuple[str | None, _Groups]:
    """``owner``, whose upload holds the notebook, unless its name says it is another student's (a problem
    said, None); and the pattern's reading of its name, {} where the name itself is the notebook's."""
    named = _identify(attribution, info) or _uploader_of(attribution, entry.name)
    # A member called exactly as a notebook of the assignment is that notebook, whatever the pattern
    # reads into its name (cross_entropy.ipynb is no file of a student "cross").
    if re.sub(r"-\d+$", "", PurePosixPath(entry.name).stem) in attribution.notebooks:
        info, named = {}, None  # the notebook is read from the name itself, never through the pattern
    if named and named != owner:
        attribution.problem(entry.where, f"its name says it is {named}'s, but it is part of {owner}'s upload: a file "
                            "counts only for the student who uploaded it; not collected", owner,
                            ProblemKind.OTHER_STUDENT)
        return None, info
    return owner, info


# Choosing and writing -------------------------------------------------------------------------------------


def _choose(candidates: list[_Candidate]) -> tuple[dict[tuple[str, str], _Candidate | None], list[Problem]]:
    """(student, notebook) -> the candidate to collect, or None when two files leave it undecided; and the
    problems that say which files were passed over.  Of two files with different times the newer counts."""
    chosen: dict[tuple[str, str], _Candidate | None] = {}
    problems: list[Problem] = []
    for candidate in candidates:
        key = (candidate.student, candidate.notebook)
        if key not in chosen:
            chosen[key] = candidate
            continue
        previous = chosen[key]
        if previous is not None and candidate.timestamp is not None and previous.timestamp is not None \
                and candidate.timestamp != previous.timestamp:
            newer, older = (candidate, previous) if candidate.timestamp > previous.timestamp else (previous, candidate)
            problems.append(Problem(older.where, f"an older file for student {candidate.student}, "
                                    f"{candidate.notebook}.ipynb; graded the newer {newer.where}", candidate.student,
                                    ProblemKind.SUPERSEDED))
            chosen[key] = newer
        else:
            chosen[key] = None
            problems.append(Problem(candidate.where, f"two files for student {candidate.student}, "
                                    f"{candidate.notebook}.ipynb: {previous.where if previous else 'another'} and "
                                    "this one; neither was collected (keep one and run again; until then an earlier "
                                    "submission of theirs in submitted/, if any, stands)", candidate.student,
                                    ProblemKind.DUPLICATE))
    return chosen, problems


def _write_export(attribution: _Attribution, submitted: Path, result: Collected, times: SubmissionTimes | None,
                  log: logging.Logger | None) -> None:
    """The chosen notebooks into submitted/, each student's record and time beside them; what a new
    submission lacks is removed, and every student and upload without a notebook is reported."""
    chosen, passed_over = _choose(attribution.candidates)
    attribution.problems += passed_over
    undecided = {student for (student, _), candidate in chosen.items() if candidate is None}
    changed, found_stamps = _write_notebooks(attribution, chosen, submitted, result)
    stamps: dict[str, datetime | None] = dict(found_stamps)  # and the LMS's own times, None where it has none
    supplied = times.times if times is not None else {}
    for student in result.students:
        if student in supplied:  # the LMS's own record of when it was submitted
            stamps[student] = supplied[student]
        if stamps.get(student) is None:
            result.timeless.append(student)
        if _write_lms_record(attribution, submitted / student / attribution.assignment, student, times):
            changed.add(student)
    result.names.update({s: n for s, n in attribution.names.items() if s in result.students})
    for student in sorted((changed | set(stamps) | set(supplied)) & set(result.students)):
        _write_time(submitted / student / attribution.assignment, student, stamps.get(student), log)
    _remove_stale_notebooks(attribution, submitted, result, log)
    _report_without_notebook(attribution, result, undecided)


def _write_notebooks(attribution: _Attribution, chosen: dict[tuple[str, str], _Candidate | None], submitted: Path,
                     result: Collected) -> tuple[set[str], dict[str, datetime]]:
    """Each chosen notebook that can be read into submitted/; the students whose files changed, and the latest
    time each student's file names carry."""
    changed: set[str] = set()
    stamps: dict[str, datetime] = {}
    for (student, notebook), candidate in sorted(chosen.items()):
        if candidate is None:
            continue
        try:
            data = candidate.read()
        except Unreadable as error:
            attribution.problem(candidate.where, str(error), student)
            continue
        if len(data) > MAX_NOTEBOOK_BYTES:
            attribution.problem(candidate.where, f"more than {MAX_NOTEBOOK_BYTES // 1024**2} MiB is too large for a "
                                "notebook; skipped", student, ProblemKind.TOO_LARGE)
            continue
        folder = submitted / student / attribution.assignment
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{notebook}.ipynb"
        if _write_if_changed(path, data):
            changed.add(student)
        if candidate.timestamp is not None:
            stamps[student] = max(stamps.get(student, candidate.timestamp), candidate.timestamp)
        result.students.setdefault(student, []).append(path)
    return changed, stamps


def _write_lms_record(attribution: _Attribution, folder: Path, student: str, times: SubmissionTimes | None) -> bool:
    """``LMS_RECORD`` beside a student's notebooks, where there is a preset or a late mark, and an earlier
    collection's removed where there is neither; whether the folder changed."""
    marked = student in attribution.marked_late or (times is not None and times.late.get(student) is True)
    path = folder / LMS_RECORD
    if attribution.preset is not None or marked:
        record = {"lms": attribution.preset.lms if attribution.preset else "", "student": student,
                  "name": attribution.names.get(student, ""), "marked_late": marked}
        return _write_if_changed(path, json.dumps(record, ensure_ascii=False, sort_keys=True).encode())
    if path.is_file():  # an earlier collection's record is not this submission's
        path.unlink()
        return True
    return False


def _write_time(folder: Path, student: str, time: datetime | None, log: logging.Logger | None) -> None:
    """nbgrader's ``timestamp.txt``: the latest time the student's files carry.  A submission that
    changed and carries none has no known time: an earlier collection's time is not its time."""
    stamp = folder / "timestamp.txt"
    if time is not None:
        _write_if_changed(stamp, time.isoformat(" ").encode())
    elif stamp.exists():
        earlier = stamp.read_text(errors="replace").strip()
        stamp.unlink()
        if log is not None:
            log.warning("%s: the new submission's file names carry no time, so the earlier submission's "
                        "time (%s) was removed: the late policy's rule for a submission without a time applies",
                        student, earlier[:40])


def _remove_stale_notebooks(attribution: _Attribution, submitted: Path, result: Collected,
                            log: logging.Logger | None) -> None:
    """A notebook the new submission lacks is not graded from an earlier one."""
    for student in result.students:
        for notebook in sorted(attribution.notebooks):
            stale = submitted / student / attribution.assignment / f"{notebook}.ipynb"
            if (student, notebook) not in attribution.offered and stale.is_file():
                stale.unlink()
                if log is not None:
                    log.warning("%s: the new submission has no %s.ipynb; the earlier one was removed", student,
                                notebook)


def _report_without_notebook(attribution: _Attribution, result: Collected, undecided: set[str]) -> None:
    """Every upload, and every student named and accepted, that gave no notebook to collect."""
    expected = _names(attribution.notebooks)
    for where, upload in attribution.uploads.items():
        if upload.notebooks == 0:
            more = len(upload.members) - 5
            held = ", ".join(upload.members[:5]) + (f" and {more} more" if more > 0 else "")
            attribution.problem(where, f"an upload with no notebook of {attribution.assignment} (expected {expected}): "
                                f"it holds {held or 'no file'}; nothing in it was collected", upload.student,
                                ProblemKind.NO_NOTEBOOK)
    said = {p.student for p in attribution.problems if p.kind == ProblemKind.NO_NOTEBOOK}  # their upload's says it
    for student in sorted(attribution.named - set(result.students) - undecided - said):
        if SAFE_STUDENT_ID.fullmatch(student) and (attribution.roster is None or student in attribution.roster):
            wheres = [p.where for p in attribution.problems if p.student == student]
            attribution.problem(wheres[0] if wheres else "the export", f"no notebook for student {student}: expected "
                                f"{expected}", student, ProblemKind.NO_NOTEBOOK)


def _write_if_changed(path: Path, data: bytes) -> bool:
    """Write only what changed, so unchanged submissions keep their bytes and are not regraded."""
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    path.write_bytes(data)
    return True


def read_lms_record(folder: str | os.PathLike[str]) -> dict[str, object]:
    """What collection wrote beside a student's notebooks about who the LMS says they are and its late mark
    (``LMS_RECORD``); {} where there is none (the nbgrader layout, or an older collection)."""
    try:
        record = json.loads((Path(folder) / LMS_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}
