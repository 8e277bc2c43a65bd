"""What a learning management system writes, read as it writes it: who a file is, when it was submitted,
and how a cell of a CSV file is kept from being evaluated as a formula.

**Who a student is.**  The LMS's own user id, which it writes into every file name of a submission
download; the name beside it is for people to read (any Unicode letter is fine, and two students with
the same name stay two students).  The gradebook id is the LMS's id with the LMS's name in front,
``canvas-4711`` or ``moodle-1234567``: safe for folders and nbgrader, and one-to-one with the LMS's
identity, which ``course export`` matches first.

* **Canvas** ("Download Submissions"), ``lib/content_zipper.rb`` in instructure/canvas-lms:
  ``get_filename`` joins the sortable name (lower case, everything but ``[[:word:]]`` removed, so
  Unicode letters and ``_`` stay: ``sanitize_file_name``/``sanitize_user_name``), ``LATE`` when
  ``submission.late?``, and the user id with ``_``; ``add_upload_submission`` appends
  ``_<attachment id>_<display name>``.  ``mllerjrgen`` is never written: ``müllerjürgen_LATE_4711_90001_losses.ipynb``
  is.  A file uploaded again under the same name is renamed by Canvas (``losses-1.ipynb``), and the download
  holds the latest attempt only.  Canvas never writes the submission time into a file name.
* **Moodle** ("Download all submissions"), ``mod/assign/locallib.php`` in moodle/moodle, ``download_submissions``:
  the prefix is ``fullname()`` with ``_`` turned into spaces, then ``_<participant id>`` (the assignment's
  ``get_uniqueid_for_user``, the "Participant 1234567" of the grading worksheet), cleaned by ``clean_filename``;
  each file is ``<prefix>_assignsubmission_file_/<file name>`` ("Download submissions in folders", the default
  since Moodle 3.1) or ``<prefix>_assignsubmission_file_<file name>``.  Moodle writes neither a time nor a late
  mark into the names.

**When.**  A submission time comes only from what the LMS wrote: the outer file name (a ``timestamp`` group of a
custom ``--pattern``) or the times the instructor exports from the LMS (``--submission-times FILE``, read by
``read_submission_times``); never from a name inside a student's upload, nor from a file a student uploaded.

**Spreadsheet cells.**  ``csv_cell`` is the one rule for every CSV the course writes.
"""
from __future__ import annotations

import csv
import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import UsageError

if TYPE_CHECKING:
    from datetime import tzinfo


@dataclass(frozen=True)
class Preset:
    """How one LMS names the files of a submission download (see the module's documentation)."""

    lms: str
    # A notebook's base name: the groups name, late, student_id (the LMS's user id) and file_id.
    pattern: str
    # A student's folder, for LMSs that put each student's files in one; None where there is none.
    folder: str | None = None
    source: str = ""

    def student(self, user_id: object) -> str:
        """The gradebook id of the LMS's user id."""
        return f"{self.lms}-{user_id}"


PRESETS = {
    # lib/content_zipper.rb: get_filename + add_upload_submission (instructure/canvas-lms).  The sortable name keeps
    # [[:word:]] (Unicode letters, digits, "_"), so the name is read lazily up to the last "_[LATE_]<id>_<id>_"
    # before the notebook's own name; sanitize_user_name removes "_<digits>_" from names for that very reason.
    "canvas": Preset("canvas", r"^(?P<name>.*?)(?:_(?P<late>LATE))?_(?P<student_id>\d+)_\d+_(?P<file_id>{notebooks})"
                               r"(?:-\d+)?\.ipynb$",
                     source="instructure/canvas-lms lib/content_zipper.rb (get_filename, add_upload_submission)"),
    # mod/assign/locallib.php download_submissions (moodle/moodle): fullname() has "_" replaced by " ", so the first
    # "_" ends the name.
    "moodle": Preset("moodle", r"^(?P<name>[^_/]*)_(?P<student_id>\d+)_assignsubmission_file_(?P<file_id>{notebooks})"
                               r"(?:-\d+)?\.ipynb$",
                     folder=r"^(?P<name>[^_/]*)_(?P<student_id>\d+)_assignsubmission_file_?$",
                     source="moodle/moodle mod/assign/locallib.php (download_submissions)"),
}


def preset(lms: str) -> Preset:
    try:
        return PRESETS[lms]
    except KeyError:
        raise UsageError(f"--lms {lms}: not an LMS with a preset (choose {', '.join(PRESETS)}, or give --pattern)") from None


def student_name(text: str) -> str:
    """A student id or name as the course keeps it: NFC, so that the same letters are the same id whatever
    the LMS's or the file system's normal form."""
    return unicodedata.normalize("NFC", text)


# --------------------------------------------------------------------------- submission times


@dataclass
class SubmissionTimes:
    """Times the instructor exported from the LMS: gradebook id -> the time (UTC, naive, as nbgrader keeps
    it) or None where the LMS has no time for that student."""

    source: str
    times: dict[str, datetime | None] = field(default_factory=dict)
    late: dict[str, bool] = field(default_factory=dict)  # gradebook id -> the LMS's own late mark, where it gives one
    problems: list[tuple[str, str]] = field(default_factory=list)  # (where, why) of rows that could not be read


# Moodle's grading worksheet writes userdate(), whose default format (strftimedaydatetime) is this, in the time zone
# of the person who downloaded it: mod/assign/feedback/offline/locallib.php, download_grades.
MOODLE_TIME_FORMATS = ("%A, %d %B %Y, %I:%M %p", "%A, %d %B %Y, %H:%M")
MOODLE_PARTICIPANT = re.compile(r"^\s*Participant\s+(\d+)\s*$", re.IGNORECASE)
NO_TIME = {"", "-", "null", "none", "no submission"}


def read_submission_times(path: str | Path, lms: str, zone: str | None = None) -> SubmissionTimes:
    """The submission times in ``path``, as one of the LMSs exports them:

    * Canvas: the submissions API, ``GET /api/v1/courses/:course_id/assignments/:assignment_id/submissions``
      (JSON, a list of objects with ``user_id``, ``submitted_at`` and ``late``), or a CSV with the columns
      ``user_id`` and ``submitted_at`` (ISO 8601 times with their zone, as the API writes them);
    * Moodle: the grading worksheet (Assignment > View all submissions > Grading action > Download grading
      worksheet), a CSV with ``Identifier`` ("Participant 1234567") and ``Last modified (submission)``, written
      in the downloader's time zone without saying which: ``zone`` (an IANA name) says it.

    Raises ``UsageError`` (naming the file) where the file is not one of these."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise UsageError(f"{path}: the submission times cannot be read ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise UsageError(f"{path}: the submission times are not UTF-8 text (byte {error.start})") from None
    tz: tzinfo | None = None
    if zone:
        try:
            tz = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise UsageError(f"--times-zone {zone}: not a time zone name (e.g. Europe/London)") from None
    result = SubmissionTimes(str(path))
    if text.lstrip().startswith(("[", "{")):
        _read_json_times(path, text, lms, result)
    else:
        _read_csv_times(path, text, lms, tz, zone, result)
    return result


def _read_json_times(path: Path, text: str, lms: str, result: SubmissionTimes) -> None:
    try:
        data = json.loads(text)
    except ValueError as error:
        raise UsageError(f"{path}: not valid JSON ({error})") from None
    if isinstance(data, dict):  # {"submissions": [...]} as some API clients save it
        data = data.get("submissions", data)
    if lms != "canvas" or not isinstance(data, list) or not all(isinstance(r, dict) and "user_id" in r for r in data):
        raise UsageError(f"{path}: not Canvas's submissions list (JSON objects with user_id and submitted_at, from "
                         "GET /api/v1/courses/:course/assignments/:assignment/submissions)")
    for index, record in enumerate(data):
        where = f"{path}: item {index + 1}"
        student = _canvas_id(record.get("user_id"), where, result)
        if student:
            result.times[student] = _iso_time(record.get("submitted_at"), where, result)
            if isinstance(record.get("late"), bool):
                result.late[student] = record["late"]


def _read_csv_times(path: Path, text: str, lms: str, tz: tzinfo | None, zone: str | None,
                    result: SubmissionTimes) -> None:
    rows = list(csv.DictReader(text.splitlines()))
    header = {name.strip() for name in (rows[0].keys() if rows else [])}
    if lms == "canvas" and {"user_id", "submitted_at"} <= header:
        for number, row in enumerate(rows, 2):
            where = f"{path}: line {number}"
            student = _canvas_id(row.get("user_id"), where, result)
            if student:
                result.times[student] = _iso_time(row.get("submitted_at"), where, result)
                late = (row.get("late") or "").strip().lower()
                if late in ("true", "false"):
                    result.late[student] = late == "true"
    elif lms == "moodle" and {"Identifier", "Last modified (submission)"} <= header:
        for number, row in enumerate(rows, 2):
            where = f"{path}: line {number}"
            participant = MOODLE_PARTICIPANT.match(row.get("Identifier") or "")
            if not participant:
                result.problems.append((where, f"the Identifier {row.get('Identifier')!r} is not 'Participant <number>'"))
                continue
            student = PRESETS["moodle"].student(participant.group(1))
            value = (row.get("Last modified (submission)") or "").strip()
            result.times[student] = None if value.lower() in NO_TIME else _moodle_time(value, tz, zone, where, result)
    else:
        wanted = ("user_id and submitted_at (Canvas's submissions API)" if lms == "canvas" else
                  "Identifier and Last modified (submission) (Moodle's grading worksheet)")
        raise UsageError(f"{path}: not {lms} submission times: expected the columns {wanted}, found "
                         f"{', '.join(sorted(header)[:8]) or 'no header'}")


def _canvas_id(value: object, where: str, result: SubmissionTimes) -> str | None:
    text = str(value if value is not None else "").strip()
    if not text.isdigit():
        result.problems.append((where, f"user_id {text!r} is not a Canvas user id"))
        return None
    return PRESETS["canvas"].student(text)


def _iso_time(value: object, where: str, result: SubmissionTimes) -> datetime | None:
    text = str(value or "").strip()
    if text.lower() in NO_TIME:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        result.problems.append((where, f"submitted_at {text[:40]!r} is not an ISO 8601 time"))
        return None
    if moment.tzinfo is None:  # the API always says its zone; a time without one could be any
        result.problems.append((where, f"submitted_at {text[:40]!r} has no time zone"))
        return None
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def _moodle_time(value: str, tz: tzinfo | None, zone: str | None, where: str,
                 result: SubmissionTimes) -> datetime | None:
    for form in MOODLE_TIME_FORMATS:
        try:
            moment = datetime.strptime(value, form)
        except ValueError:
            continue
        if tz is None:
            result.problems.append((where, f"{value!r} does not say its time zone: pass --times-zone (the zone of "
                                           "the Moodle account that downloaded the worksheet)"))
            return None
        return moment.replace(tzinfo=tz).astimezone(timezone.utc).replace(tzinfo=None)
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None and tz is not None:
            moment = moment.replace(tzinfo=tz)
        if moment.tzinfo is not None:
            return moment.astimezone(timezone.utc).replace(tzinfo=None)
    except ValueError:
        pass
    result.problems.append((where, f"{value[:40]!r} is not a time as Moodle writes it "
                                   f"(e.g. 'Monday, 5 October 2026, 11:59 PM'{'' if zone else ' with --times-zone'})"))
    return None


# --------------------------------------------------------------------------- spreadsheet cells

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Numbers stay numbers, and a lone "-" is the "no value" both LMSs write (Moodle's grading worksheet, whose
# importer compares its "Last modified (grade)" cell; Canvas's importer reads "-" as no score): no formula either.
PLAIN_NUMBER = re.compile(r"^(?:[+-]?\d+(?:\.\d+)?|-)$")


def csv_cell(text: object, style: str = "quote") -> str:
    """A text cell that a spreadsheet shows as text and never evaluates (OWASP's CSV injection rule: a cell that
    starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return).  Numbers, and a lone ``-``, stay as they are.

    * ``"canvas"``: Canvas's own form, ``="<text>"`` (lib/gradebook_exporter.rb, ``student_name``: a name that
      starts with ``=`` is exported so), which Canvas reads back as the same name; its importer matches rows by
      the ``ID`` column, never by this text;
    * ``"quote"``: a leading apostrophe (Moodle's importers, grades.csv, similarity.csv), which spreadsheets
      show as text."""
    text = "" if text is None else str(text)
    if not text.startswith(FORMULA_START) and not re.match(r"^\s+[=+\-@]", text) or PLAIN_NUMBER.match(text):
        return text
    if style == "canvas":
        return '="' + text.replace('"', '""') + '"'
    return "'" + text


CANVAS_FORMULA_TEXT = re.compile(r'^="(.*)"$', re.DOTALL)


def canvas_text(cell: str) -> str:
    """A Canvas export's cell as the text it stands for: ``="<text>"`` (Canvas's own form for names that start
    with ``=``) is ``<text>``."""
    match = CANVAS_FORMULA_TEXT.match(cell)
    return match.group(1).replace('""', '"') if match else cell
