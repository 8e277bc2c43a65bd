"""An LMS's export of submissions (its submission download), read entry by entry within bounds.

``ExportReader`` lists and reads what an export holds, a zip file or a folder and the zip files in it, and
knows no student and no notebook: ``course.collect`` decides whose each file is.  What a student shaped
cannot take the reader past its bounds:

* a symbolic link is an entry of its own, never followed (a file is opened with ``O_NOFOLLOW``), and a
  device, socket or pipe is an entry that is never opened;
* a file in the export is read up to the reader's ``read_limit`` and one byte more, whatever size it claims;
* an archive inside another is copied to a temporary file, one at a time, within one byte budget for
  the whole export (``OverBudget``; the files go when the reader closes), and archives are read at
  most ``MAX_ARCHIVE_LEVELS`` deep (``TooDeep``), so memory stays flat whatever the export holds;
* a member's name is only ever a name: nothing is extracted to a path built from it;
* what cannot be read says why in words (``Unreadable``), never in the error's own text, which can
  quote the file's bytes (zipfile's header messages do).
"""
import contextlib
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterator

from .files import read_no_follow

# Archives inside archives: an export zip and a student's zip in it, or a folder, a zip of the
# export in it and a student's zip in that.  A zip a student put inside their own zip is deeper.
MAX_ARCHIVE_LEVELS = 2
# Bytes of nested archives copied out of one export, all archives together.
EXPORT_ARCHIVE_BUDGET = 2 * 1024**3
COPY_CHUNK = 1024**2
# What reading a file or an archive member can raise for reasons in the file itself.
_READ_ERRORS = (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, RuntimeError,
                NotImplementedError)


class Unreadable(Exception):
    """A folder, archive or file of the export that cannot be read; the message says why, for the instructor."""


class TooDeep(Unreadable):
    """An archive nested deeper than ``MAX_ARCHIVE_LEVELS``: not opened."""


class OverBudget(Unreadable):
    """An archive past the export's byte budget for nested archives: not copied."""


class EntryKind(StrEnum):
    """What an entry of the export's folder is; a member of an archive is always a ``FILE``."""

    FILE = "file"
    FOLDER = "folder"
    SYMLINK = "symlink"
    OTHER = "other"  # a device, socket or pipe


@dataclass(frozen=True)
class Entry:
    """A file or folder in the export's folder, or a member of one of its archives."""

    where: str  # how the instructor sees it: export.zip:folder/name.ipynb
    name: str  # the base name
    kind: EntryKind = EntryKind.FILE
    level: int = 0  # how many archives it lies in
    folders: tuple[str, ...] = ()  # a member's folders inside its archive
    size: int = 0  # as the folder or the archive's header says: a file can hold more
    # How the reader reads a file and opens an archive: callers read through read(), which says why it cannot.
    _read: Callable[[], bytes] | None = field(default=None, repr=False, compare=False)
    _open: Callable[[], BinaryIO] | None = field(default=None, repr=False, compare=False)

    def read(self) -> bytes:
        """The file's bytes, at most the reader's ``read_limit`` + 1 (the export's own notebook: all of it)."""
        assert self._read is not None, "only a FILE entry is read, and the reader gives each one a _read"
        try:
            return self._read()
        except _READ_ERRORS as error:
            raise Unreadable(f"the file cannot be read: {why_unreadable(error)}") from None


class ExportReader:
    """Reads one export; a context manager, whose exit closes every archive it opened and removes the copies."""

    def __init__(self, archive_budget: int, read_limit: int) -> None:
        self.read_limit = read_limit
        self._budget_total = self._budget_left = archive_budget
        self._stack = contextlib.ExitStack()
        self._spool: Path | None = None
        self._spooled = 0

    def __enter__(self) -> "ExportReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def source_file(self, path: Path) -> Entry:
        """The file the instructor named: a link to it is followed, unlike links inside the export."""
        return Entry(str(path), path.name, size=path.stat().st_size, _read=path.read_bytes,
                     _open=lambda: self._stack.enter_context(open(path, "rb")))

    def folder(self, folder: Path) -> Iterator[Entry]:
        """The folder's entries by name, each looked at when the caller comes to it; ``Unreadable`` when the
        folder cannot be listed."""
        try:
            found = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as error:
            raise Unreadable(f"the folder cannot be read: {why_unreadable(error)}") from None
        return (self._folder_entry(entry) for entry in found)

    def _folder_entry(self, found: os.DirEntry[str]) -> Entry:
        path = Path(found.path)
        if found.is_symlink():
            return Entry(str(path), found.name, EntryKind.SYMLINK)
        if found.is_dir(follow_symlinks=False):
            return Entry(str(path), found.name, EntryKind.FOLDER)
        if not found.is_file(follow_symlinks=False):
            return Entry(str(path), found.name, EntryKind.OTHER)
        return Entry(str(path), found.name, size=found.stat(follow_symlinks=False).st_size,
                     _read=lambda: read_no_follow(path, self.read_limit), _open=lambda: self._open_no_follow(path))

    def _open_no_follow(self, path: Path) -> BinaryIO:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        return self._stack.enter_context(os.fdopen(descriptor, "rb"))

    def archive(self, archive: Entry) -> list[Entry]:
        """The members of a zip file, less folders and what macOS and Jupyter add (``__MACOSX``, ``.DS_Store``,
        ``.ipynb_checkpoints``); ``Unreadable`` (``TooDeep``, ``OverBudget``) when it is not read."""
        level = archive.level + 1
        if level > MAX_ARCHIVE_LEVELS:
            raise TooDeep(f"an archive inside {level - 1} others: deeper than the {MAX_ARCHIVE_LEVELS} levels "
                          "read; nothing in it was collected")
        assert archive._open is not None, "an archive is a FILE entry, and the reader gives each one an _open"
        try:
            opened = self._stack.enter_context(zipfile.ZipFile(archive._open()))
            members = opened.infolist()
        except OverBudget:
            raise
        except zipfile.BadZipFile:
            raise Unreadable("not a zip archive (or a damaged one); nothing in it was collected") from None
        except Exception as error:
            raise Unreadable(f"the archive cannot be read: {why_unreadable(error)}") from None
        found = []
        for info in members:
            inner = PurePosixPath(info.filename)
            if info.is_dir() or "__MACOSX" in inner.parts or any(part.startswith(".") for part in inner.parts):
                continue
            found.append(Entry(f"{archive.where}:{info.filename}", inner.name, level=level, folders=inner.parts[:-1],
                               size=info.file_size, _read=partial(self._read_member, opened, info),
                               _open=partial(self._spool_member, opened, info)))
        return found

    def _read_member(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
        with archive.open(info) as member:
            return member.read(self.read_limit + 1)

    def _spool_member(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> BinaryIO:
        """A nested archive, copied to a temporary file within the export's budget, opened for reading."""
        if info.file_size > self._budget_left:
            raise self._over_budget()
        if self._spool is None:
            self._spool = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="course-collect-")))
        self._spooled += 1
        path = self._spool / f"{self._spooled}.zip"
        copied = 0
        with archive.open(info) as member, open(path, "wb") as copy:
            while chunk := member.read(COPY_CHUNK):
                copied += len(chunk)
                if copied > self._budget_left:  # a member larger than its header said
                    copy.truncate(0)
                    raise self._over_budget()
                copy.write(chunk)
        self._budget_left -= copied
        return self._stack.enter_context(open(path, "rb"))

    def _over_budget(self) -> OverBudget:
        return OverBudget(f"past the size budget of {_size(self._budget_total)} for all the archives inside this "
                          "export together; nothing in it was collected")


def _size(count: int) -> str:
    if count >= 1024**3:
        return f"{count / 1024**3:g} GiB"
    return f"{count / 1024**2:g} MiB" if count >= 1024**2 else f"{count} bytes"


def why_unreadable(error: BaseException) -> str:
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
