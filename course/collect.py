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
"""
import contextlib
import json
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath

from traitlets import Enum, Unicode
from traitlets.config import Configurable

from . import files
from .lms import PRESETS, student_name
from .sandbox import Limits

DEFAULT_LMS_PATTERN = r"^(?P<student_id>[^_]+)_(?:.*_)?(?P<file_id>{notebooks})(?:-\d+)?\.ipynb$"
# A gradebook id is a folder name and an nbgrader id: letters (any script: the LMS's names are Unicode), digits and
# ._@+- only, NFC (student_name); never a path separator, a dot first, a space or a control or format character.
SAFE_STUDENT_ID = re.compile(r"[^\W_][\w.@+-]{0,127}")
# Written beside a student's collected notebooks: who the LMS says they are, and the LMS's own late mark.
LMS_RECORD = "lms.json"
# Larger files are not notebooks a student wrote; the grader reads no larger one (course.submitted_notebook).
MAX_NOTEBOOK_BYTES = Limits.notebook_bytes
# Archives inside archives: an export zip and a student's zip in it, or a folder, a zip of the
# export in it and a student's zip in that.  A zip a student put inside their own zip is deeper.
MAX_ARCHIVE_LEVELS = 2
# Bytes of nested archives copied out of one export, all archives together.
EXPORT_ARCHIVE_BUDGET = 2 * 1024**3
COPY_CHUNK = 1024**2

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

    def __str__(self):
        return f"{self.where}: {self.reason}"


@dataclass
class Collected:
    students: dict = field(default_factory=dict)  # student -> [notebook paths in submitted/]
    problems: list = field(default_factory=list)
    source: str = ""
    kind: str = ""  # "nbgrader" or "lms"
    names: dict = field(default_factory=dict)  # student -> the name the LMS wrote beside the id
    timeless: list = field(default_factory=list)  # students collected now whose submission has no time

    def uncollected(self):
        """{student: why} for every student whose files were found but none collected: their grade is not
        "no submission" (``course export`` leaves it blank and lists it)."""
        found = {}
        for problem in self.problems:
            if problem.student and problem.student not in self.students and problem.kind != ProblemKind.SUPERSEDED:
                found.setdefault(problem.student, problem.reason)
        return found


def notebook_pattern(pattern, notebooks):
    """The LMS pattern with ``{notebooks}`` replaced by the assignment's notebook names."""
    names = "|".join(re.escape(n) for n in sorted(notebooks, key=len, reverse=True))
    return pattern.replace("{notebooks}", f"(?:{names})")


def collect(source, assignment, coursedir, notebooks, pattern=DEFAULT_LMS_PATTERN, roster=None, log=None,
            archive_budget=EXPORT_ARCHIVE_BUDGET, lms=None, times=None):
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
        with _Export(assignment, notebooks, pattern, roster, result.problems, archive_budget, log, lms, times) as export:
            export.read_source(source)
            export.write(submitted, result)
        if times is not None:
            result.problems += [Problem(where, why, kind=ProblemKind.TIMES) for where, why in times.problems]
    # Every student with a folder for this assignment in submitted/ is graded, including
    # those collected by an earlier run; those found now with problems are reported above.
    if result.kind == "lms" or source.resolve() != submitted.resolve():
        _collect_nbgrader(submitted, submitted, assignment, notebooks, roster, result, report_only_new=True)
    return result


def _is_nbgrader_layout(folder, assignment):
    return any(p.is_dir() and not p.is_symlink() for p in folder.glob(f"*/{glob_escape(assignment)}"))


def glob_escape(text):
    return re.sub(r"([*?\[])", r"[\1]", text)


def _collect_nbgrader(folder, submitted, assignment, notebooks, roster, result, report_only_new=False):
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
            copied = set()
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


def _readable(path):
    try:
        with open(path, "rb") as handle:
            handle.read(1)
        return True
    except OSError:
        return False


def _names(notebooks):
    return " or ".join(f"{n}.ipynb" for n in sorted(notebooks))


def why_unreadable(error):
    """Why a file or archive member cannot be read, in words: never the error's text, which can
    quote the file's own bytes (zipfile's header messages do)."""
    if isinstance(error, OSError):
        return error.strerror or "an I/O error"
    if isinstance(error, zipfile.BadZipFile):
        return "the archive is damaged (a bad header or checksum)"
    if isinstance(error, zipfile.LargeZipFile):
        return "the archive needs ZIP64 support"
    if isinstance(error, NotImplementedError):
        return "it is compressed with a method that cannot be read here"
    if isinstance(error, RuntimeError):
        return "it is encrypted (password-protected)"
    if isinstance(error, EOFError):
        return "the archive is truncated"
    return f"an error reading it ({type(error).__name__})"


@dataclass
class _Candidate:
    """A notebook found in the export, and the student and notebook it is for."""

    where: str  # how the user sees it: archive.zip:folder/name.ipynb
    read: object  # () -> bytes, at most MAX_NOTEBOOK_BYTES + 1
    student: str
    notebook: str
    timestamp: object = None


@dataclass
class _Upload:
    """A file a student uploaded that holds other files: the notebooks found in it, and the rest."""

    student: str
    notebooks: int = 0
    members: list = field(default_factory=list)  # base names of every file in it


class _Export:
    """One LMS export, read entry by entry: which notebook is whose, then the chosen ones written.

    Each file is attributed to its uploader: by its own name at the export's level, by the
    upload's name inside an archive a student uploaded.  Nested archives are copied, one at a
    time, to a temporary folder (removed at the end), within one byte budget for the export.
    """

    def __init__(self, assignment, notebooks, pattern, roster, problems, archive_budget, log, lms=None, times=None):
        from nbgrader.plugins import FileNameCollectorPlugin

        self.preset = PRESETS[lms] if lms else None
        if self.preset is not None:
            pattern = self.preset.pattern
        # Moodle's "download submissions in folders": each student's files in a folder named after them
        self.folder_pattern = re.compile(self.preset.folder) if self.preset and self.preset.folder else None
        self.times, self.names, self.marked_late, self.folders = times, {}, set(), {}
        self.assignment, self.notebooks, self.pattern, self.roster = assignment, notebooks, pattern, roster
        self.problems, self.budget_left, self.budget_total, self.log = problems, archive_budget, archive_budget, log
        self.collector = FileNameCollectorPlugin(named_regexp=notebook_pattern(pattern, notebooks))
        if log is not None:
            self.collector.log = log
        # The student an uploaded file's name names, whatever the file is: the pattern with any file name.
        self.uploader_pattern = re.compile(pattern.replace("{notebooks}", "[^/]+?"))
        self.candidates, self.uploads, self.named = [], {}, set()
        self.offered = set()  # (student, notebook) of every file found for it, collected or not
        self.stack = contextlib.ExitStack()
        self.spool, self.spooled = None, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stack.close()

    def problem(self, where, reason, student="", kind=ProblemKind.UNREADABLE):
        self.problems.append(Problem(where, reason, student, kind))

    def uploader_of(self, name, outer=False):
        """The student a file's name names, read as the LMS names an upload (``.ipynb`` in place of its suffix);
        ``outer``: the name is the LMS's (not one inside a student's upload), so its late mark counts."""
        stem = PurePosixPath(name).stem if PurePosixPath(name).suffix else name
        match = self.uploader_pattern.match(stem + ".ipynb")
        return self.identify(match.groupdict(), outer) if match else None

    def identify(self, groups, outer=False):
        """The gradebook id a matched name says (the LMS's user id under a preset), or None; the name the LMS
        wrote beside it is kept for people to read, and the LMS's late mark where the name is the LMS's own."""
        raw = (groups or {}).get("student_id")
        if not raw:
            return None
        student = self.preset.student(raw) if self.preset else student_name(raw)
        if outer:  # a name inside a student's upload is theirs to choose: neither another's name nor a late mark
            if groups.get("name"):
                self.names.setdefault(student, student_name(groups["name"]))
            if groups.get("late"):
                self.marked_late.add(student)
        return student

    def folder_owner(self, where, folder):
        """The student whose folder ``folder`` is (Moodle's per-student folder; registered as their upload), None
        where the name is no student's folder, "" where that student is not accepted."""
        if self.folder_pattern is None:
            return None
        if where in self.folders:
            return self.folders[where]
        match = self.folder_pattern.match(folder)
        student = self.identify(match.groupdict(), outer=True) if match else None
        if student is not None:
            if not self.accept(student, where):
                student = ""
            else:
                self.uploads[where] = _Upload(student)
        self.folders[where] = student
        return student

    def accept(self, student, where):
        """Whether ``student`` may have files collected; says why not."""
        self.named.add(student)
        if not SAFE_STUDENT_ID.fullmatch(student):
            self.problem(where, f"{student!r} is not a usable student id; skipped", student, ProblemKind.UNKNOWN_STUDENT)
            return False
        if self.roster is not None and student not in self.roster:
            self.problem(where, f"unknown student {student!r}: not in the gradebook's roster; skipped", student,
                         ProblemKind.UNKNOWN_STUDENT)
            return False
        return True

    # Reading the export ---------------------------------------------------------------------

    def read_source(self, source):
        if source.is_file():
            if source.suffix.lower() == ".ipynb":
                self.entry(str(source), source.name, None, None, 0, lambda: source.read_bytes(),
                           source.stat().st_size, None)
            else:
                # The instructor's own argument: a link to it is followed, unlike links inside the export.
                self.read_archive(str(source), None, None, 1, lambda: self.stack.enter_context(open(source, "rb")))
        else:
            self.read_folder(source)

    def open_file(self, path):
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        return self.stack.enter_context(os.fdopen(descriptor, "rb"))

    def read_folder(self, folder, owner=None, upload=None):
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as error:
            self.problem(str(folder), f"the folder cannot be read: {why_unreadable(error)}")
            return
        for entry in entries:
            path = Path(entry.path)
            if entry.is_symlink():
                student = owner or self.uploader_of(entry.name) or ""
                if student:
                    self.named.add(student)
                self.problem(str(path), "a symbolic link; not followed, nothing was collected from it", student, ProblemKind.SYMLINK)
            elif entry.is_dir(follow_symlinks=False):
                student = self.folder_owner(str(path), entry.name) if owner is None else None
                if student == "":
                    continue  # a student not accepted: said once, by accept()
                self.read_folder(path, owner or student, upload if student is None else str(path))
            elif entry.is_file(follow_symlinks=False):
                if upload is not None:
                    self.uploads[upload].members.append(entry.name)
                size = entry.stat(follow_symlinks=False).st_size
                self.entry(str(path), entry.name, owner, upload, 0,
                           lambda path=path: files.read_no_follow(path, MAX_NOTEBOOK_BYTES),
                           size, lambda path=path: self.open_file(path))
            else:
                self.problem(str(path), "not a regular file (a device, socket or pipe); skipped",
                             self.uploader_of(entry.name) or "", ProblemKind.NOT_A_FILE)

    def entry(self, where, name, owner, upload, level, read, size, open_archive):
        """One file of the export: ``owner`` is the uploader when it lies inside a student's upload."""
        suffix = PurePosixPath(name).suffix.lower()
        if suffix == ".zip":
            self.read_archive(where, owner, upload, level + 1, open_archive, name)
        elif suffix == ".ipynb":
            self.notebook(where, name, owner, upload, read, size)
        elif owner is None:
            student = self.uploader_of(name)
            if student and self.accept(student, where):
                self.problem(where, f"not a notebook: only {_names(self.notebooks)} is graded; not collected",
                             student, ProblemKind.NO_NOTEBOOK)
            elif not student:
                self.problem(where, "neither a notebook nor a zip archive, and its name says no student; skipped",
                             kind=ProblemKind.UNATTRIBUTED)

    def read_archive(self, where, owner, upload, level, open_archive, name=None):
        """Read a zip: the export's own (``name`` None), or one found in the export at ``level``."""
        if owner is None and name is not None:
            student = self.uploader_of(name, outer=True)
            if student:  # a student's upload: all of it is theirs
                if not self.accept(student, where):
                    return
                owner, upload = student, where
                self.uploads[upload] = _Upload(student)
        if level > MAX_ARCHIVE_LEVELS:
            self.problem(where, f"an archive inside {level - 1} others: deeper than the {MAX_ARCHIVE_LEVELS} levels "
                                "read; nothing in it was collected", owner or "", ProblemKind.TOO_DEEP)
            return
        try:
            archive = self.stack.enter_context(zipfile.ZipFile(open_archive()))
            members = archive.infolist()
        except _OverBudget:
            self.problem(where, f"past the size budget of {_size(self.budget_total)} for all the archives "
                                "inside this export together; nothing in it was collected", owner or "", ProblemKind.OVER_BUDGET)
            return
        except zipfile.BadZipFile:
            self.problem(where, "not a zip archive (or a damaged one); nothing in it was collected", owner or "")
            return
        except Exception as error:
            self.problem(where, f"the archive cannot be read: {why_unreadable(error)}", owner or "")
            return
        for info in members:
            inner = PurePosixPath(info.filename)
            if info.is_dir() or "__MACOSX" in inner.parts or any(part.startswith(".") for part in inner.parts):
                continue  # folders, and what macOS and Jupyter add (.DS_Store, .ipynb_checkpoints)
            member_owner, member_upload = owner, upload
            if owner is None:  # the export's own archive: a student's folder in it is their upload
                for depth, part in enumerate(inner.parts[:-1]):
                    student = self.folder_owner(f"{where}:{'/'.join(inner.parts[:depth + 1])}", part)
                    if student is not None:
                        member_owner, member_upload = student, f"{where}:{'/'.join(inner.parts[:depth + 1])}"
                        break
                if member_owner == "":
                    continue  # a student not accepted: said once, by accept()
            if member_upload is not None:
                self.uploads[member_upload].members.append(inner.name)
            self.entry(f"{where}:{info.filename}", inner.name, member_owner, member_upload, level,
                       lambda archive=archive, info=info: _read_member(archive, info),
                       info.file_size, lambda archive=archive, info=info: self.spool_member(archive, info))

    def spool_member(self, archive, info):
        """A nested archive, copied to a temporary file within the export's budget, opened for reading."""
        if info.file_size > self.budget_left:
            raise _OverBudget()
        if self.spool is None:
            self.spool = Path(self.stack.enter_context(tempfile.TemporaryDirectory(prefix="course-collect-")))
        self.spooled += 1
        path = self.spool / f"{self.spooled}.zip"
        copied = 0
        with archive.open(info) as member, open(path, "wb") as copy:
            while chunk := member.read(COPY_CHUNK):
                copied += len(chunk)
                if copied > self.budget_left:  # a member larger than its header said
                    copy.truncate(0)
                    raise _OverBudget()
                copy.write(chunk)
        self.budget_left -= copied
        return self.stack.enter_context(open(path, "rb"))

    def notebook(self, where, name, owner, upload, read, size):
        info = self.collector.collect(name) or {}
        if owner is None:
            # The LMS writes its ids first and the student's own file name last, so the first reading of the
            # ids is the uploader's.  A file name can imitate another student's ids ("x_9999_1_losses.ipynb"),
            # which a pattern that reads the notebook's name from the end would take for that student's.
            uploader = self.uploader_of(name, outer=True)
            named = self.identify(info, outer=uploader is None) if info else uploader
            if uploader and named != uploader:
                self.problem(where, f"the name the student gave the file imitates another student's ({named}); "
                                    "a file counts only for the student who uploaded it; not collected",
                             uploader, ProblemKind.OTHER_STUDENT)
                return
        else:
            named = self.identify(info) or self.uploader_of(name)
        if owner is None:
            if not info:
                if named and self.accept(named, where):
                    self.problem(where, f"not a notebook of {self.assignment} (expected {_names(self.notebooks)}); skipped",
                                 named, ProblemKind.WRONG_NOTEBOOK)
                elif not named:
                    self.problem(where, "the file name does not say which student it belongs to "
                                        f"(it does not match the LMS pattern {self.pattern!r}); skipped", kind=ProblemKind.UNATTRIBUTED)
                return
            student = named
            if not self.accept(student, where):
                return
        else:
            student = owner
            # A member called exactly as a notebook of the assignment is that notebook, whatever the pattern
            # reads into its name (cross_entropy.ipynb is no file of a student "cross").
            if re.sub(r"-\d+$", "", PurePosixPath(name).stem) in self.notebooks:
                info, named = {}, None  # the notebook is read from the name itself, never through the pattern
            if named and named != owner:
                self.problem(where, f"its name says it is {named}'s, but it is part of {owner}'s upload: a file counts "
                                    f"only for the student who uploaded it; not collected", owner, ProblemKind.OTHER_STUDENT)
                return
        notebook = Path(info.get("file_id") or "").stem if info else re.sub(r"-\d+$", "", PurePosixPath(name).stem)
        if notebook not in self.notebooks:
            self.problem(where, f"not a notebook of {self.assignment} (expected {_names(self.notebooks)}); skipped",
                         student, ProblemKind.WRONG_NOTEBOOK)
            return
        self.offered.add((student, notebook))
        if size > MAX_NOTEBOOK_BYTES:
            self.problem(where, f"{size // 1024**2} MiB is too large for a notebook; skipped", student, ProblemKind.TOO_LARGE)
            return
        timestamp = None
        # A time only from the LMS's own name of the file: a name inside a student's upload is the student's to
        # choose (an on-time date in a late upload), and never a submission time.
        if owner is None and info.get("timestamp"):
            from nbgrader.utils import parse_utc

            try:
                timestamp = parse_utc(info["timestamp"])
            except (ValueError, OverflowError):
                self.problem(where, f"unreadable timestamp {info['timestamp']!r}; ignored", student, ProblemKind.TIMESTAMP)
        if upload is not None:
            self.uploads[upload].notebooks += 1
        self.candidates.append(_Candidate(where, read, student, notebook, timestamp))

    # Choosing and writing -------------------------------------------------------------------

    def choose(self):
        """(student, notebook) -> the candidate to collect, or None when two files leave it undecided."""
        chosen = {}
        for candidate in self.candidates:
            key = (candidate.student, candidate.notebook)
            previous = chosen.get(key, False)
            if previous is False:
                chosen[key] = candidate
                continue
            if previous is not None and candidate.timestamp is not None and previous.timestamp is not None \
                    and candidate.timestamp != previous.timestamp:
                newer, older = (candidate, previous) if candidate.timestamp > previous.timestamp else (previous, candidate)
                self.problem(older.where, f"an older file for student {candidate.student}, {candidate.notebook}.ipynb; "
                                          f"graded the newer {newer.where}", candidate.student, ProblemKind.SUPERSEDED)
                chosen[key] = newer
            else:
                chosen[key] = None
                self.problem(candidate.where, f"two files for student {candidate.student}, {candidate.notebook}.ipynb: "
                             f"{previous.where if previous else 'another'} and this one; neither was collected "
                             "(keep one and run again; until then an earlier submission of theirs in submitted/, if any, "
                             "stands)", candidate.student, ProblemKind.DUPLICATE)
        return chosen

    def write(self, submitted, result):
        undecided, changed, times = set(), set(), {}
        for (student, notebook), candidate in sorted(self.choose().items()):
            if candidate is None:
                undecided.add(student)
                continue
            try:
                data = candidate.read()
            except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, RuntimeError,
                    NotImplementedError) as error:
                self.problem(candidate.where, f"the file cannot be read: {why_unreadable(error)}", student)
                continue
            if len(data) > MAX_NOTEBOOK_BYTES:
                self.problem(candidate.where, f"more than {MAX_NOTEBOOK_BYTES // 1024**2} MiB is too large for a notebook; "
                                              "skipped", student, ProblemKind.TOO_LARGE)
                continue
            folder = submitted / student / self.assignment
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{notebook}.ipynb"
            if _write_if_changed(path, data):
                changed.add(student)
            if candidate.timestamp is not None:
                times[student] = max(times.get(student, candidate.timestamp), candidate.timestamp)
            result.students.setdefault(student, []).append(path)
        supplied = self.times.times if self.times is not None else {}
        for student in result.students:
            if student in supplied:  # the LMS's own record of when it was submitted
                times[student] = supplied[student]
            if times.get(student) is None:
                result.timeless.append(student)
            marked = student in self.marked_late or (self.times is not None and self.times.late.get(student) is True)
            path = submitted / student / self.assignment / LMS_RECORD
            if self.preset is not None or marked:
                record = {"lms": self.preset.lms if self.preset else "", "student": student,
                          "name": self.names.get(student, ""), "marked_late": marked}
                if _write_if_changed(path, json.dumps(record, ensure_ascii=False, sort_keys=True).encode()):
                    changed.add(student)
            elif path.is_file():  # an earlier collection's record is not this submission's
                path.unlink()
                changed.add(student)
        result.names.update({s: n for s, n in self.names.items() if s in result.students})
        for student in sorted((changed | set(times) | set(supplied)) & set(result.students)):
            self.write_time(submitted / student / self.assignment, student, times.get(student))
        for student in result.students:  # a notebook the new submission lacks is not graded from an earlier one
            for notebook in sorted(self.notebooks):
                stale = submitted / student / self.assignment / f"{notebook}.ipynb"
                if (student, notebook) not in self.offered and stale.is_file():
                    stale.unlink()
                    if self.log is not None:
                        self.log.warning("%s: the new submission has no %s.ipynb; the earlier one was removed", student,
                                         notebook)
        for where, upload in self.uploads.items():
            if upload.notebooks == 0:
                held = ", ".join(upload.members[:5]) + (f" and {len(upload.members) - 5} more" if len(upload.members) > 5 else "")
                self.problem(where, f"an upload with no notebook of {self.assignment} (expected {_names(self.notebooks)}): "
                                    f"it holds {held or 'no file'}; nothing in it was collected", upload.student, ProblemKind.NO_NOTEBOOK)
        said = {p.student for p in self.problems if p.kind == ProblemKind.NO_NOTEBOOK}  # their upload's problem says it
        for student in sorted(self.named - set(result.students) - undecided - said):
            if SAFE_STUDENT_ID.fullmatch(student) and (self.roster is None or student in self.roster):
                files = [p.where for p in self.problems if p.student == student]
                self.problem(files[0] if files else "the export", f"no notebook for student {student}: expected "
                                                                  f"{_names(self.notebooks)}", student, ProblemKind.NO_NOTEBOOK)

    def write_time(self, folder, student, time):
        """nbgrader's ``timestamp.txt``: the latest time the student's files carry.  A submission that
        changed and carries none has no known time: an earlier collection's time is not its time."""
        stamp = folder / "timestamp.txt"
        if time is not None:
            _write_if_changed(stamp, time.isoformat(" ").encode())
        elif stamp.exists():
            earlier = stamp.read_text(errors="replace").strip()
            stamp.unlink()
            if self.log is not None:
                self.log.warning("%s: the new submission's file names carry no time, so the earlier submission's "
                                 "time (%s) was removed: the late policy's rule for a submission without a time applies",
                                 student, earlier[:40])


class _OverBudget(Exception):
    pass


def _size(count):
    return f"{count / 1024**3:g} GiB" if count >= 1024**3 else f"{count / 1024**2:g} MiB" if count >= 1024**2 else f"{count} bytes"


def _read_member(archive, info):
    with archive.open(info) as member:
        return member.read(MAX_NOTEBOOK_BYTES + 1)


def _write_if_changed(path, data):
    """Write only what changed, so unchanged submissions keep their bytes and are not regraded."""
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    path.write_bytes(data)
    return True


def read_lms_record(folder):
    """What collection wrote beside a student's notebooks about who the LMS says they are and its late mark
    (``LMS_RECORD``); {} where there is none (the nbgrader layout, or an older collection)."""
    try:
        record = json.loads((Path(folder) / LMS_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}
