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
  ``c.CourseGrade.lms_pattern`` in ``nbgrader_config.py``.  Collected notebooks are written to
  ``submitted/<student>/<assignment>/`` (and ``timestamp.txt`` when the name carries one),
  exactly where ``nbgrader zip_collect`` puts them.

Nothing in the input stops the batch.  A file that is not a zip archive, cannot be read, names
no student, names an unknown student (``--roster-only``), or is the second file for the same
student and notebook, and a student with no notebook at all, each become a ``Problem`` that
names the file and says what is wrong; the other submissions are collected as usual.
"""
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

DEFAULT_LMS_PATTERN = r"^(?P<student_id>[^_]+)_(?:.*_)?(?P<file_id>{notebooks})(?:-\d+)?\.ipynb$"
SAFE_STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
MAX_NOTEBOOK_BYTES = 64 * 1024**2  # larger files are not notebooks a student wrote
MAX_NESTED_ZIP_BYTES = 512 * 1024**2


@dataclass
class Problem:
    """Something in the input that could not be collected; ``where`` names the file or folder."""

    where: str
    reason: str
    student: str = ""

    def __str__(self):
        return f"{self.where}: {self.reason}"


@dataclass
class Collected:
    students: dict = field(default_factory=dict)  # student -> [notebook paths in submitted/]
    problems: list = field(default_factory=list)
    source: str = ""
    kind: str = ""  # "nbgrader" or "lms"


@dataclass
class _Candidate:
    where: str  # how the user sees it: archive.zip:folder/name.ipynb
    name: str  # base name, matched against the pattern
    read: object  # () -> bytes


def notebook_pattern(pattern, notebooks):
    """The LMS pattern with ``{notebooks}`` replaced by the assignment's notebook names."""
    names = "|".join(re.escape(n) for n in sorted(notebooks, key=len, reverse=True))
    return pattern.replace("{notebooks}", f"(?:{names})")


def collect(source, assignment, coursedir, notebooks, pattern=DEFAULT_LMS_PATTERN, roster=None, log=None):
    """Gather the submissions of ``assignment`` from ``source`` into ``coursedir``'s submitted/ folder.

    ``notebooks`` are the assignment's notebook names without ``.ipynb``; ``roster`` (a set of
    student ids, or None) limits which students are accepted.  Returns a ``Collected``.
    """
    submitted = Path(coursedir.root) / coursedir.submitted_directory
    source = Path(source) if source else submitted
    result = Collected(source=str(source))
    if not source.exists():
        result.problems.append(Problem(str(source), "no such file or folder"))
        return result
    if source.is_dir() and (source.resolve() == submitted.resolve() or _is_nbgrader_layout(source, assignment)):
        result.kind = "nbgrader"
        _collect_nbgrader(source, submitted, assignment, notebooks, roster, result)
        if not result.students and not result.problems:
            result.problems.append(Problem(str(source), f"no submission of {assignment} here "
                                                        f"(expected <student>/{assignment}/*.ipynb)"))
    else:
        result.kind = "lms"
        _collect_lms(source, submitted, assignment, notebooks, pattern, roster, result, log)
    # Every student with a folder for this assignment in submitted/ is graded, including
    # those collected by an earlier run; those found now with problems are reported above.
    if result.kind == "lms" or source.resolve() != submitted.resolve():
        _collect_nbgrader(submitted, submitted, assignment, notebooks, roster, result, report_only_new=True)
    return result


def _is_nbgrader_layout(folder, assignment):
    return any(p.is_dir() for p in folder.glob(f"*/{glob_escape(assignment)}"))


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
        if not SAFE_STUDENT_ID.fullmatch(student):
            result.problems.append(Problem(where, f"{student!r} is not a usable student id (letters, digits and ._@+- only)", student))
            continue
        if roster is not None and student not in roster:
            result.problems.append(Problem(where, f"unknown student {student!r}: not in the gradebook's roster", student))
            continue
        found = sorted(p for p in assignment_dir.glob("*.ipynb") if p.is_file())
        known = [p for p in found if p.stem in notebooks]
        if not known:
            seen = ", ".join(p.name for p in sorted(assignment_dir.iterdir())) or "the folder is empty"
            result.problems.append(Problem(
                where, f"no notebook for student {student}: expected {_names(notebooks)}, found {seen}", student))
            continue
        unreadable = [p for p in known if not _readable(p)]
        if unreadable:
            for path in unreadable:
                result.problems.append(Problem(str(path), "the file cannot be read (permissions or I/O error)", student))
            continue
        if copying:
            target = submitted / student / assignment
            target.mkdir(parents=True, exist_ok=True)
            for path in sorted(assignment_dir.rglob("*")):
                if path.is_file():
                    destination = target / path.relative_to(assignment_dir)
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    _write_if_changed(destination, path.read_bytes())
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


def _collect_lms(source, submitted, assignment, notebooks, pattern, roster, result, log):
    from nbgrader.plugins import FileNameCollectorPlugin
    from nbgrader.utils import parse_utc

    candidates, others = [], {}
    if source.is_file():
        if source.suffix == ".ipynb":
            candidates.append(_Candidate(str(source), source.name, source.read_bytes))
        else:
            _read_archive(source, str(source), candidates, others, result.problems, depth=0)
    else:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            shown = str(path)
            if path.suffix.lower() == ".zip":
                _read_archive(path, shown, candidates, others, result.problems, depth=0)
            elif path.suffix == ".ipynb":
                candidates.append(_Candidate(shown, path.name, path.read_bytes))
            else:
                others.setdefault(path.name, shown)
    collector = FileNameCollectorPlugin(named_regexp=notebook_pattern(pattern, notebooks))
    if log is not None:
        collector.log = log
    loose = re.compile(pattern.replace("{notebooks}", "[^/]+?"))
    chosen = {}  # (student, notebook) -> (candidate, timestamp)
    named = set()  # students that some file names, notebook or not
    for candidate in candidates:
        info = collector.collect(candidate.name)
        if not info:
            guess = loose.match(candidate.name)
            if guess and guess.groupdict().get("student_id"):
                named.add(guess.group("student_id"))
                result.problems.append(Problem(
                    candidate.where, f"not a notebook of {assignment} (expected {_names(notebooks)}); skipped",
                    guess.group("student_id")))
            else:
                result.problems.append(Problem(
                    candidate.where, "the file name does not say which student it belongs to "
                    f"(it does not match the LMS pattern {pattern!r}); skipped"))
            continue
        student = info.get("student_id") or ""
        notebook = Path(info.get("file_id") or "").stem
        named.add(student)
        if not SAFE_STUDENT_ID.fullmatch(student):
            result.problems.append(Problem(candidate.where, f"{student!r} is not a usable student id; skipped", student))
            continue
        if roster is not None and student not in roster:
            result.problems.append(Problem(candidate.where, f"unknown student {student!r}: not in the gradebook's roster; skipped", student))
            continue
        timestamp = None
        if info.get("timestamp"):
            try:
                timestamp = parse_utc(info["timestamp"])
            except (ValueError, OverflowError):
                result.problems.append(Problem(candidate.where, f"unreadable timestamp {info['timestamp']!r}; ignored", student))
        key = (student, notebook)
        if key in chosen:
            previous, previous_time = chosen[key]
            if timestamp is not None and previous_time is not None and timestamp != previous_time:
                newer, older = (candidate, previous) if timestamp > previous_time else (previous, candidate)
                result.problems.append(Problem(
                    older.where, f"an older file for student {student}, {notebook}.ipynb; graded the newer {newer.where}", student))
                chosen[key] = (newer, max(timestamp, previous_time))
            else:
                chosen[key] = (None, None)
                result.problems.append(Problem(
                    candidate.where, f"two files for student {student}, {notebook}.ipynb: {previous.where if previous else 'another'} "
                    "and this one; neither was collected (keep one and run again)", student))
            continue
        chosen[key] = (candidate, timestamp)
    per_student = {}
    for (student, notebook), (candidate, timestamp) in sorted(chosen.items()):
        if candidate is None:
            per_student.setdefault(student, {})
            continue
        try:
            data = candidate.read()
        except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, RuntimeError) as error:
            result.problems.append(Problem(candidate.where, f"the file cannot be read: {type(error).__name__}: {error}", student))
            per_student.setdefault(student, {})
            continue
        if len(data) > MAX_NOTEBOOK_BYTES:
            result.problems.append(Problem(candidate.where, f"{len(data) // 1024**2} MiB is too large for a notebook; skipped", student))
            per_student.setdefault(student, {})
            continue
        per_student.setdefault(student, {})[notebook] = (data, timestamp)
    for student in sorted(named - set(per_student)):
        if SAFE_STUDENT_ID.fullmatch(student) and not any(p.student == student and "two files" in p.reason for p in result.problems):
            files = [p.where for p in result.problems if p.student == student]
            result.problems.append(Problem(
                files[0] if files else str(source), f"no notebook for student {student}: expected {_names(notebooks)}", student))
    for student, files in sorted(per_student.items()):
        if not files:
            continue
        folder = submitted / student / assignment
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for notebook, (data, timestamp) in sorted(files.items()):
            path = folder / f"{notebook}.ipynb"
            _write_if_changed(path, data)
            paths.append(path)
            if timestamp is not None:
                _write_if_changed(folder / "timestamp.txt", timestamp.isoformat(" ").encode())
        result.students[student] = paths


def _read_archive(path_or_file, shown, candidates, others, problems, depth):
    try:
        archive = zipfile.ZipFile(path_or_file)
    except zipfile.BadZipFile:
        problems.append(Problem(shown, "not a zip archive (or a damaged one); nothing in it was collected"))
        return
    except OSError as error:
        problems.append(Problem(shown, f"the file cannot be read: {error.strerror or error}"))
        return
    try:
        members = archive.infolist()
    except Exception as error:  # pragma: no cover - infolist reads the central directory already read above
        problems.append(Problem(shown, f"the archive's index cannot be read: {error}"))
        return
    for info in members:
        if info.is_dir():
            continue
        inner = PurePosixPath(info.filename)
        where = f"{shown}:{info.filename}"
        if inner.name.startswith(".") or "__MACOSX" in inner.parts:
            continue
        if inner.suffix.lower() == ".zip" and depth == 0:
            if info.file_size > MAX_NESTED_ZIP_BYTES:
                problems.append(Problem(where, "nested archive too large; skipped"))
                continue
            try:
                data = archive.read(info)
            except Exception as error:
                problems.append(Problem(where, f"the file cannot be read: {type(error).__name__}: {error}"))
                continue
            _read_archive(io.BytesIO(data), where, candidates, others, problems, depth + 1)
        elif inner.suffix == ".ipynb":
            if info.file_size > MAX_NOTEBOOK_BYTES:
                problems.append(Problem(where, f"{info.file_size // 1024**2} MiB is too large for a notebook; skipped"))
                continue
            candidates.append(_Candidate(where, inner.name, lambda archive=archive, info=info: archive.read(info)))
        else:
            others.setdefault(inner.name, where)


def _write_if_changed(path, data):
    """Write only what changed, so unchanged submissions keep their bytes and are not regraded."""
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    path.write_bytes(data)
    return True
