"""Incremental regrading: what ``course grade`` graded, so an unchanged submission is not graded again.

A submission's digest is a SHA-256 of its submitted files and of the assignment's fingerprint:
the settings that decide a grade (limits, sandbox, nbgrader's version, gradebook, course), the
hidden checks, ``nbgrader_config.py``, the assignment's source notebooks and the grader's own
code.  The digest of each graded submission is kept, per gradebook, in ``.course/grade-state.json``,
with the reason of each submission whose last grading failed (nbgrader then keeps the gradebook's
earlier scores, which ``course export`` must not pass on as this submission's).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from . import files

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Mapping

    from .files import StrPath

    Problems = list[dict[str, str]]  # the problems of a collection, as dicts (course.collect.Problem)
    Uncollected = dict[str, str]  # {student: why} of the students whose files a collection found but did not collect

STATE_VERSION = 1
GRADER_CODE = Path(__file__).parent


def assignment_fingerprint(settings: object, files: Iterable[Path]) -> bytes:
    """SHA-256 of the grading settings (a JSON-able dict) and of the files (missing ones are skipped)."""
    parts = [json.dumps(settings, sort_keys=True).encode()]
    for path in files:
        if path.is_file():
            parts.append(str(path.name).encode() + b"\0" + path.read_bytes())
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.digest()


def grader_files(hidden_checks: Path, config_file: Path, source_folder: Path) -> list[Path]:
    """The files whose change regrades every submission of an assignment."""
    files = [hidden_checks, config_file]
    files += sorted(source_folder.rglob("*")) if source_folder.is_dir() else []
    return files + sorted(GRADER_CODE.glob("*.py"))  # any change to the grader regrades


def submission_digest(fingerprint: bytes, folder: StrPath) -> str:
    """SHA-256 of the assignment's fingerprint and a submission folder's files (names and bytes)."""
    digest = hashlib.sha256(fingerprint)
    found = files.listing(folder)
    for relative in found.files:
        digest.update(str(relative).encode() + b"\0")
        try:
            digest.update(hashlib.sha256((Path(folder) / relative).read_bytes()).digest())
        except OSError:
            digest.update(b"unreadable")
    for why, folders in (("too deep", found.too_deep), ("unreadable", found.unreadable)):
        for relative in folders:  # what it holds is not read (course.files.listing): its place counts
            digest.update(why.encode() + b"\0" + str(relative).encode() + b"\0")
    return digest.hexdigest()


class GradeState:
    """The digests of graded submissions, per gradebook, kept in a JSON file."""

    def __init__(self, path: StrPath, db_url: str, warn: Callable[[str], object],
                 unreadable: str = "every submission is graded again") -> None:
        self.path = Path(path)
        self.db_key = hashlib.sha256(db_url.encode()).hexdigest()[:16]
        self.submissions, self.collection, self.failures, self.uncollected = self._load(warn, unreadable)

    def _load(self, warn: Callable[[str], object], unreadable: str
              ) -> tuple[dict[str, str], dict[str, Problems], dict[str, str], dict[str, Uncollected]]:
        if not self.path.exists():
            return {}, {}, {}, {}
        try:
            state = json.loads(self.path.read_text())
            if (isinstance(state, dict) and state.get("version") == STATE_VERSION
                    and isinstance(state.get("submissions"), dict)
                    and all(isinstance(k, str) and isinstance(v, str) for k, v in state["submissions"].items())):
                collection = state.get("collection", {})
                valid = isinstance(collection, dict) and all(
                    isinstance(v, list) and all(isinstance(p, dict) and all(isinstance(x, str) for x in p.values())
                                                for p in v) for v in collection.values())
                failures = state.get("failures", {})
                if not (isinstance(failures, dict) and all(isinstance(v, str) for v in failures.values())):
                    failures = {}
                uncollected = state.get("uncollected", {})
                if not (isinstance(uncollected, dict) and all(
                        isinstance(v, dict) and all(isinstance(x, str) for x in v.values()) for v in uncollected.values())):
                    uncollected = {}
                return state["submissions"], (collection if valid else {}), failures, uncollected
            problem = "not a state file of this version"
        except (OSError, ValueError) as error:
            problem = f"{type(error).__name__}: {error}"
        warn(f"{self.path} is unreadable ({problem}); {unreadable}")
        return {}, {}, {}, {}

    def remember_collection(self, assignment: str, problems: Problems,
                            uncollected: Mapping[str, str] | None = None) -> None:
        """The problems of an assignment's last whole collection (as dicts), for a later one-student run's report,
        and {student: why} of the students whose files it found but did not collect, for ``course export``."""
        self.collection[f"{self.db_key}:{assignment}"] = problems
        self.uncollected[f"{self.db_key}:{assignment}"] = dict(uncollected or {})

    def forget_uncollected(self, assignment: str, students: Collection[str]) -> None:
        """``students`` were collected since the last whole collection: their files are no longer uncollected."""
        kept = self.uncollected_of(assignment)
        self.uncollected[f"{self.db_key}:{assignment}"] = {s: why for s, why in kept.items() if s not in students}

    def uncollected_of(self, assignment: str) -> Uncollected:
        """{student: why} of the students whose files the last whole collection found but did not collect."""
        return self.uncollected.get(f"{self.db_key}:{assignment}", {})

    def last_collection(self, assignment: str) -> Problems:
        return self.collection.get(f"{self.db_key}:{assignment}", [])

    def key(self, assignment: str, student: str) -> str:
        return f"{self.db_key}:{assignment}:{student}"

    def is_current(self, assignment: str, student: str, digest: str) -> bool:
        return self.submissions.get(self.key(assignment, student)) == digest

    def remember(self, assignment: str, student: str, digest: str) -> None:
        self.submissions[self.key(assignment, student)] = digest
        self.failures.pop(self.key(assignment, student), None)

    def forget(self, assignment: str, student: str) -> None:
        self.submissions.pop(self.key(assignment, student), None)

    def remember_failure(self, assignment: str, student: str, reason: object) -> None:
        """The submission could not be graded: it is graded again next time, and until it is graded its
        gradebook scores (an earlier submission's) are no grade of it."""
        self.forget(assignment, student)
        self.failures[self.key(assignment, student)] = str(reason)

    def failure(self, assignment: str, student: str) -> str | None:
        """Why the student's last grading of the assignment failed, or None."""
        return self.failures.get(self.key(assignment, student))

    def failures_of(self, assignment: str) -> dict[str, str]:
        """{student: why} for every submission of the assignment whose last grading failed."""
        prefix = self.key(assignment, "")
        return {key[len(prefix):]: why for key, why in self.failures.items() if key.startswith(prefix)}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"version": STATE_VERSION, "submissions": self.submissions,
                                          "collection": self.collection, "failures": self.failures,
                                          "uncollected": self.uncollected},
                                         indent=1, sort_keys=True))
        temporary.replace(self.path)
