"""Record: grades into the nbgrader gradebook, from ``course grade``'s one process (safe for SQLite).

Only this module writes the gradebook for ``course grade``.  It runs nbgrader's own ``Autograde``
converter for one student, the same code as ``nbgrader autograde --force --student``, with two
differences that change no grade:

* the notebook was sanitized once already, when it was sent to a worker (``sanitize_notebook``,
  nbgrader's sanitize preprocessors as ``Autograde`` runs them): the converter takes that result
  (``TakeSanitized``) instead of sanitizing the submitted file again;
* ``SandboxedExecute`` is replaced by ``PrecomputedExecute``, which takes the worker's executed
  notebook if, and only if, it was made from exactly this sanitized notebook (a SHA-256 of its
  JSON), and otherwise executes it here, in the sandbox, as ``SandboxedExecute`` would.

Both reach the preprocessors through nbgrader's ``resources`` (``resources["course"]``), which
the converter builds for each notebook and hands to every preprocessor.  Why a submission could
not be recorded is kept as data, from the exceptions raised on the way (``Recorded.failure``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat
from nbconvert.preprocessors import Preprocessor
from nbgrader.converters import Autograde
from traitlets import Bool

from .errors import CourseError
from .plugins import SandboxedExecute
from .vendor import sanitizing_preprocessors

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from nbformat import NotebookNode
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config


def gradebook_url(url: str) -> str:
    """The URL with a driver SQLAlchemy can load: ``postgresql://`` means psycopg 3 to SQLAlchemy 2.1,
    but the driver installed here is psycopg2 (``psycopg2-binary``)."""
    import importlib.util

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return url  # not a URL SQLAlchemy reads: nbgrader says so when it opens it
    if parsed.drivername in ("postgresql", "postgres") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    return url


def notebook_digest(nb: Mapping[str, Any]) -> str:
    """SHA-256 of a notebook's JSON (keys sorted): the identity of a sanitized notebook."""
    text = json.dumps(nb, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Precomputed:
    """One notebook's work done before it is recorded: sanitized here, executed by a worker."""

    sanitized: str  # nbgrader's sanitize output, the notebook's JSON text
    notebook: NotebookNode  # the same, parsed
    digest: str
    executed: dict[str, Any] | None = None  # the worker's executed notebook, once it came back

    def __deepcopy__(self, memo: dict[int, Any]) -> Precomputed:
        # nbconvert deep-copies each notebook's resources for every pass, and this entry rides in them
        # (``resources["course"]``); it is never changed, and ``TakeSanitized`` and ``PrecomputedExecute``
        # build fresh notebooks from it, so one copy serves every pass.
        return self


def sanitize_notebook(coursedir: CourseDirectory, config: Config, path: str | Path) -> Precomputed:
    """nbgrader's sanitize step for one submitted notebook, as ``Autograde`` runs it."""
    converter = Autograde(coursedir=coursedir, config=config)
    converter.exporter = converter.exporter_class(parent=converter, config=converter.config)
    sanitizing_preprocessors(converter)
    resources = converter.init_single_notebook_resources(str(path))
    output, _ = converter.exporter.from_filename(str(path), resources=resources)
    notebook = nbformat.reads(output, as_version=4)
    return Precomputed(output, notebook, notebook_digest(notebook))


class TakeSanitized(Preprocessor):
    """The sanitize step of a notebook this run sanitized already: its result, from ``resources``."""

    enabled = Bool(True)

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        # nbgrader's own output, validated when it was written; the exporter validates the result again
        return nbformat.v4.reads(resources["course"]["precomputed"].sanitized), resources


class PrecomputedExecute(SandboxedExecute):
    """``SandboxedExecute`` whose work was done by a worker of ``course grade``.

    The executed notebook is used only if it was made from exactly this input (same SHA-256);
    otherwise, or when the worker failed, the notebook is executed here, in the sandbox, as
    ``SandboxedExecute`` does: a mismatch can cost time, never a wrong grade.
    """

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        executed, resources = self.executed(nb, resources)
        # Validated here, before the next preprocessors save its grades: the exporter validates only after
        # the last of them (optimistic_validation), and a notebook found invalid then would leave its
        # grades in the gradebook while the submission is reported as failed.
        nbformat.validate(executed, relax_add_props=True)
        return executed, resources

    def executed(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        info = resources.get("nbgrader", {})
        entry = resources.get("course", {}).get("precomputed")
        executed = entry.executed if entry is not None else None
        if executed is not None and entry.digest == notebook_digest(nb):
            return nbformat.from_dict(executed), resources
        if executed is None and not any(c.cell_type == "code" for c in nb.cells):
            return super().preprocess(nb, resources)  # nothing to execute: not sent to a worker
        reason = ("no executed notebook came back from the workers" if executed is None
                  else "the sanitized notebook differs from the one the worker executed")
        self.log.warning("%s/%s/%s: %s; executing it here", info.get("student"), info.get("assignment"),
                         info.get("notebook"), reason)
        return super().preprocess(nb, resources)


class KeepsFailures:
    """Mixed into an nbgrader converter: the exception that stops a submission, which nbgrader logs before it goes
    on to the next, is handed to ``failed`` on its way, so that the caller knows which submission failed, and why."""

    # A mixin: the converter it is mixed into (after it) has init_assignment and convert_single_notebook.
    def init_assignment(self, assignment_id: str, student_id: str) -> None:
        with self.failures_kept():
            super().init_assignment(assignment_id, student_id)  # type: ignore[misc]

    def convert_single_notebook(self, notebook_filename: str) -> None:
        with self.failures_kept():
            super().convert_single_notebook(notebook_filename)  # type: ignore[misc]

    @contextlib.contextmanager
    def failures_kept(self) -> Iterator[None]:
        try:
            yield
        except Exception as error:
            self.failed(error)
            raise

    def failed(self, error: Exception) -> None:
        raise NotImplementedError


class RecordingAutograde(KeepsFailures, Autograde):
    """nbgrader's ``Autograde`` for one student, handed each notebook's precomputed work through
    ``resources``; remembers the first exception that stopped it (``failure``)."""

    sanitize_preprocessors: list[type]  # Autograde's (nbgrader's classes are not typed)

    def __init__(self, *args: Any, precomputed: dict[str, Precomputed] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.precomputed = precomputed or {}  # notebook name -> Precomputed
        self.failure: str | None = None

    def init_single_notebook_resources(self, notebook_filename: str) -> dict[str, Any]:
        resources = super().init_single_notebook_resources(notebook_filename)
        resources["course"] = {"precomputed": self.precomputed.get(resources["nbgrader"]["notebook"])}
        return resources

    def convert_single_notebook(self, notebook_filename: str) -> None:
        configured = self.sanitize_preprocessors
        if Path(notebook_filename).stem in self.precomputed:
            self.sanitize_preprocessors = [TakeSanitized]
        try:
            super().convert_single_notebook(notebook_filename)
        finally:
            self.sanitize_preprocessors = configured

    def failed(self, error: Exception) -> None:
        self.failure = self.failure or failure_reason(error)  # the reason, as data


def failure_reason(error: BaseException) -> str:
    """Why recording stopped, from the exception: the grader's own exceptions say it in full."""
    from nbgrader.converters.base import NbGraderException

    from .sandbox import GradingInterrupted, SandboxUnavailable

    if isinstance(error, (GradingInterrupted, SandboxUnavailable, NbGraderException)):
        return str(error)[:500]
    return f"{type(error).__name__}: {error}"[:500]


class NotInGradebook(CourseError):
    """An assignment that is not in the gradebook and cannot be added."""


@dataclass
class Recorded:
    """What recording one submission came to."""

    success: bool
    failure: str = ""  # why not, when it failed
    log: str = field(default="", repr=False)  # nbgrader's log of the run


def record(coursedir: CourseDirectory, config: Config, student: str, assignment: str,
           precomputed: dict[str, Precomputed] | None = None) -> Recorded:
    """nbgrader's Autograde for one student (``nbgrader autograde --force --student``)."""
    from nbgrader.utils import capture_log, temp_attrs

    with temp_attrs(coursedir, assignment_id=assignment, student_id=student):
        converter = RecordingAutograde(coursedir=coursedir, config=config, precomputed=precomputed)
        converter.force = True
        converter.create_student = True
        result = capture_log(converter)
    if result["success"]:
        return Recorded(True, log=result.get("log", ""))
    error = result.get("error", "").strip().splitlines()
    return Recorded(False, converter.failure or (error[-1] if error else "unknown error")[:500], result.get("log", ""))


def ensure_in_gradebook(coursedir: CourseDirectory, config: Config, assignment: str,
                        say: Callable[[str], object]) -> list[str]:
    """The assignment's notebook names; generates it into the gradebook if the gradebook lacks it
    (``NotInGradebook`` if it cannot)."""
    from nbgrader.api import Gradebook, MissingEntry
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import capture_log

    def notebook_names() -> list[str]:
        with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
            try:
                return [n.name for n in gradebook.find_assignment(assignment).notebooks]
            except MissingEntry:
                return []

    names = notebook_names()
    if names:
        return names
    source = Path(coursedir.format_path(coursedir.source_directory, ".", assignment))
    if not source.is_dir():
        raise NotInGradebook(f"assignment {assignment!r} is neither in the gradebook ({coursedir.db_url}) nor in {source}")
    say(f"{assignment}: not in the gradebook yet; adding it (nbgrader generate_assignment, into a temporary folder)")
    with tempfile.TemporaryDirectory(prefix="course-release-") as release:
        generating = CourseDirectory(config=config)
        generating.release_directory = release
        generating.assignment_id = assignment
        converter = GenerateAssignment(coursedir=generating, config=config)
        converter.force = True
        result = capture_log(converter)
    if not result["success"]:
        raise NotInGradebook(f"could not add {assignment} to the gradebook:\n{result.get('log', '')[-2000:]}{result.get('error', '')[-2000:]}")
    return notebook_names()

