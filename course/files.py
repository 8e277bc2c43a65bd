"""A student's files, walked, read and removed at any depth: without recursion and without following links.

A submission decides the shape of what it leaves behind (a channel folder, a sandbox's scratch
folder, an upload): a folder chain deeper than the interpreter's recursion limit, a path longer
than ``PATH_MAX``, links to anywhere.  ``shutil.rmtree``, ``os.walk`` and ``Path.rglob`` (Python
3.11) recurse once per level, and paths stop working past ``PATH_MAX``.  So everything here keeps
one open folder at a time and names every entry relative to it (``dir_fd``): the depth costs a
list of names, never the stack, a file descriptor per level, or a path's length.  Links are never
followed: a link is an entry like any file (removed, or counted as itself).

The walk climbs back up by ``..``, and checks that it arrived at the folder it came from (device
and inode), so a folder moved while it runs stops the walk instead of sending it elsewhere.  Only
walk a tree that nothing changes any more (the sandbox that wrote it is gone).

``read_no_follow`` reads one file the same way: a link raises instead of being followed, a pipe or a device
instead of being read.

``listing`` is the bounded view of a submission folder that is copied or fingerprinted: down to
``MAX_SUBMISSION_DEPTH`` folders, naming what lies deeper and what cannot be read.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Callable, NamedTuple

if TYPE_CHECKING:
    StrPath = str | os.PathLike[str]

_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class Moved(OSError):
    """A folder changed place while it was walked: the walk stopped."""


class Entry(NamedTuple):
    """One entry of a folder as the walk sees it: its name, the folder's descriptor, its ``lstat``."""

    folder_fd: int
    name: str
    stat: os.stat_result


def _open_folder(name: StrPath, folder_fd: int | None = None) -> int:
    try:
        return os.open(name, _FOLDER_FLAGS, dir_fd=folder_fd)
    except PermissionError:
        # A folder its owner made unreadable (chmod 000): ours to read again, where we may.
        os.chmod(name, 0o700, dir_fd=folder_fd)  # O_NOFOLLOW above: a link fails with ELOOP, not here
        return os.open(name, _FOLDER_FLAGS, dir_fd=folder_fd)


def _identity(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


def walk(top: StrPath, on_entry: Callable[[Entry], None],
         on_folder_done: Callable[[int, str], None] | None = None) -> None:
    """Visit every entry under ``top`` (a folder; links not followed), depth first, iteratively.

    ``on_entry(entry)`` is called for each entry that is not a folder, and for each folder before
    its contents; ``on_folder_done(parent_fd, name)`` after a folder's contents were visited (the
    top folder itself excluded).  Either may raise to stop the walk."""
    fd = _open_folder(top)
    # One item per level: (name in its parent, identity of the parent, sub-folders still to visit).
    levels: list[tuple[str | None, tuple[int, int] | None, list[str]]] = [(None, None, [])]
    try:
        _scan(fd, levels[-1][2], on_entry)
        while levels:
            name, parent, pending = levels[-1]
            if pending:
                child = pending.pop()
                try:
                    child_fd = _open_folder(child, fd)
                except FileNotFoundError:
                    continue
                here = _identity(fd)
                os.close(fd)
                fd = child_fd
                levels.append((child, here, []))
                _scan(fd, levels[-1][2], on_entry)
                continue
            levels.pop()
            if not levels:
                break
            up = os.open("..", _FOLDER_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = up
            if _identity(fd) != parent:
                raise Moved(f"a folder under {top} moved while it was walked")
            if on_folder_done is not None:
                assert name is not None  # only the top folder has no name, and the walk ends before it
                on_folder_done(fd, name)
    finally:
        os.close(fd)


def _scan(fd: int, pending: list[str], on_entry: Callable[[Entry], None]) -> None:
    """One folder's entries: each to ``on_entry``; its sub-folders (not links) into ``pending``."""
    with os.scandir(fd) as entries:
        names = [entry.name for entry in entries]
    for name in names:
        try:
            info = os.lstat(name, dir_fd=fd)
        except FileNotFoundError:
            continue
        on_entry(Entry(fd, name, info))
        if stat.S_ISDIR(info.st_mode):
            pending.append(name)


def remove_tree(path: StrPath) -> None:
    """Remove ``path`` and everything under it, at any depth; a link is removed, never followed.
    A missing path is fine; other errors are raised (callers decide whether they matter)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(path)
        return

    def unlink(entry: Entry) -> None:
        if not stat.S_ISDIR(entry.stat.st_mode):
            try:
                os.unlink(entry.name, dir_fd=entry.folder_fd)
            except FileNotFoundError:
                pass

    def rmdir(parent_fd: int, name: str) -> None:
        os.rmdir(name, dir_fd=parent_fd)

    walk(path, unlink, rmdir)
    os.rmdir(path)


def remove_quietly(path: StrPath) -> bool:
    """``remove_tree``, for clean-up that must not fail: False if something could not be removed."""
    try:
        remove_tree(path)
        return True
    except OSError:
        return False


def read_no_follow(path: StrPath, limit: int | None = None) -> bytes:
    """A regular file's bytes (at most ``limit`` + 1); a symbolic link raises OSError instead of being followed,
    and a pipe or device instead of blocking or being read."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(f"{path}: not a regular file")
        return handle.read() if limit is None else handle.read(limit + 1)


# How deep a submission folder that is copied or fingerprinted is read (``listing``): nbgrader's own copy
# of a submission (shutil.copytree) recurses once per level, and a path may not exceed PATH_MAX.  It reads
# by path, so like walk() it is for folders that nothing changes while they are read.
MAX_SUBMISSION_DEPTH = 16


@dataclass
class Listing:
    """What ``listing`` found under a folder, as paths relative to it, sorted."""

    files: list[PurePosixPath] = field(default_factory=list)  # regular files
    links: list[PurePosixPath] = field(default_factory=list)  # symbolic links: never followed
    others: list[PurePosixPath] = field(default_factory=list)  # sockets, pipes, devices
    too_deep: list[PurePosixPath] = field(default_factory=list)  # folders at the depth limit that hold more: not read
    unreadable: list[PurePosixPath] = field(default_factory=list)  # folders that could not be listed (permissions, I/O)


def listing(top: StrPath, max_depth: int = MAX_SUBMISSION_DEPTH) -> Listing:
    """The entries under ``top`` down to ``max_depth`` folders, without recursion and without following
    links; what lies deeper is named, not read (``Listing.too_deep``), and so is a folder that cannot be
    listed (``Listing.unreadable``): one student's odd folder never stops the others' collection."""
    found, pending = Listing(), [PurePosixPath()]
    while pending:
        folder = pending.pop()
        try:
            entries = os.scandir(os.path.join(top, folder))
        except OSError:
            found.unreadable.append(folder)
            continue
        with entries:
            for entry in entries:
                relative = folder / entry.name
                if entry.is_symlink():
                    found.links.append(relative)
                elif entry.is_dir(follow_symlinks=False):
                    if len(relative.parts) < max_depth:
                        pending.append(relative)
                    elif _holds_anything(os.path.join(top, relative)):
                        found.too_deep.append(relative)
                elif entry.is_file(follow_symlinks=False):
                    found.files.append(relative)
                else:
                    found.others.append(relative)
    for paths in (found.files, found.links, found.others, found.too_deep, found.unreadable):
        paths.sort()
    return found


def _holds_anything(folder: StrPath) -> bool:
    try:
        with os.scandir(folder) as entries:
            return any(True for _ in entries)
    except OSError:
        return True  # named as too deep: what it holds is not read either way


# What a file or folder costs at least, however small: a submission that makes millions of empty
# ones fills the host's disk (its inodes) as surely as one big file.
ENTRY_BYTES = 4096


class _Enough(Exception):
    pass


def disk_usage(top: StrPath, stop_above: int | None = None) -> int:
    """Bytes under ``top``, each entry counted at least ``ENTRY_BYTES`` (links not followed, any
    depth); counting stops once past ``stop_above``.  What a listing sees: not files that were
    unlinked while open, nor nameless ones; a filesystem of its own is what limits those."""
    total = 0

    def count(entry: Entry) -> None:
        nonlocal total
        total += max(entry.stat.st_size, ENTRY_BYTES)
        if stop_above is not None and total > stop_above:
            raise _Enough

    try:
        walk(top, count)
    except _Enough:
        pass
    except OSError:
        pass  # a folder that went away (the kernel removing its own files) counts as what was seen
    return total
