"""The course's plug-ins in nbgrader's pipeline, the ones ``nbgrader_config.py`` names.

* ``ReadableNotebookExporter`` (collect): a submission that is not a notebook is read as an empty one
  that says why, so it is graded (every check 0) and gets its feedback;
* ``RestoreCellMetadata`` (sanitize): every cell's nbgrader metadata as the gradebook says it is;
* ``SandboxedExecute`` (execute): nbgrader's ``Execute`` replaced by the sandboxed run of
  ``course.execute``, each test cell graded by its hidden check.

The preprocessors are nbgrader's plug-ins, so they subclass its ``NbGraderPreprocessor``; the work they
drive lives in ``course.sanitize`` and ``course.execute``, which import nothing of nbgrader, nor does any
module a worker of ``course grade`` loads (``tests/unit/test_worker_imports.py``).  So a worker never
imports nbgrader, whose package import (its server extensions) costs a process about a second of CPU.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import nbformat
from nbconvert.exporters import NotebookExporter
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool, Float, Integer, List, Unicode

from . import ROOT, notes, submitted_notebook
from .cases import load_rules
from .execute import execute_submission, source_imports, source_notebooks
from .forkserver_client import fork_server_for
from .judge import HiddenCheckError, load_hidden_checks
from .sandbox import GIB, Limits, require_sandbox, warn_unsandboxed
from .sanitize import grade_id_of, is_flagged, log_text

if TYPE_CHECKING:
    from typing import TextIO

    from nbformat import NotebookNode


class ReadableNotebookExporter(NotebookExporter):
    """Reads a submission that is not a valid notebook as an empty one that says why.

    Stock nbgrader gives such a submission no autograded notebook and so no
    feedback; here it is graded like a notebook with every cell deleted (all
    checks 0), and the reason reaches both the log and the student's feedback.
    """

    # nbconvert's Exporter says these return a NotebookNode; NotebookExporter's, as these, return the notebook's text
    def from_file(self, file_stream: TextIO, resources: dict[str, Any] | None = None,  # type: ignore[override]
                  **kw: Any) -> tuple[str, dict[str, Any]]:
        try:
            nb = submitted_notebook.read(file_stream)
            nbformat.validate(nb)
        except Exception as error:
            resources = resources if resources is not None else {}
            name = resources.get("metadata", {}).get("name", "the notebook")
            note = notes.unreadable_notebook(name, submitted_notebook.why_not_a_notebook(error))
            self.log.error("%s", log_text(notes.UNREADABLE.format(**note), limit=500))
            nb = nbformat.v4.new_notebook(cells=[notes.grading_notes_cell([note])])
            nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
            nb.cells[0]["id"] = "unreadable-notebook"  # the same placeholder on every read
            # The note is the grader's, so it travels in nbgrader's resources (a student writes none of
            # them); RestoreCellMetadata stores it once the submission's own metadata is gone.
            resources.setdefault("course", {})["notes"] = [note]
        return self.from_notebook_node(nb, resources=resources, **kw)

    def from_notebook_node(self, nb: NotebookNode, resources: dict[str, Any] | None = None,  # type: ignore[override]
                           **kw: Any) -> tuple[str, dict[str, Any]]:
        """The notebook's JSON with each cell's text as one string (nbformat's ``split_lines=False``):
        split into lines, the JSON encoder spends some 200 bytes of memory a line, and a cell may hold
        a million of them."""
        nb_copy, resources = super(NotebookExporter, self).from_notebook_node(nb, resources, **kw)
        resources["output_suffix"] = ".nbconvert"
        return nbformat.writes(nb_copy, version=4, split_lines=False) + "\n", resources


class RestoreCellMetadata(NbGraderPreprocessor):
    """Make every cell's nbgrader metadata what the gradebook says it is.

    Runs after nbgrader's ``DeduplicateIds`` and before ``OverwriteCells``.
    Stock nbgrader aborts the whole batch when a student's edited metadata
    fails validation (a duplicated cell, say), and rejects a notebook whose
    test cell lost its ``grade`` flag ("Inconsistent checksums").  Here a cell
    the gradebook knows gets its metadata back from the gradebook, and any
    other nbgrader metadata is dropped with a warning, so one tampered
    notebook grades on its merits and never stops the others.

    The grader's own data (``metadata["course"]``: verdicts and grading notes,
    ``course.feedback`` and ``course.notes``) is written by the grader alone: whatever a submission
    carries there, on a cell or the notebook, is dropped here, before anything
    runs.  The only grader data a notebook has at this point came through
    ``resources`` (the note on an unreadable file, ``ReadableNotebookExporter``).
    """

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        from nbgrader.api import Gradebook

        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gradebook:
            source = gradebook.find_notebook(info["notebook"], info["assignment"])
            known = {c.name: (c.cell_type, c.locked, c.checksum) for c in source.source_cells}
            points = {c.name: c.max_score for c in source.grade_cells}
            solutions = {c.name for c in source.solution_cells}
        where = f"{info.get('student')}/{info['assignment']}/{info['notebook']}"
        forged = [item.metadata.pop("course") for item in [nb, *nb.cells] if "course" in item.metadata]
        if forged:
            self.log.warning("%s: dropped the grader's metadata found in the submission (only the grader writes it)", where)
        notes.add_notes(nb, resources.get("course", {}).get("notes", []))
        # DeduplicateIds left alone the copies a student stripped of nbgrader's flags; once restored they
        # would be duplicates again.  The cell DeduplicateIds kept (the last flagged one) keeps the grade id;
        # where no claimant is flagged, the last one.
        claimed: dict[str | None, int] = {}
        for flagged in (False, True):
            claimed.update({grade_id_of(cell): index for index, cell in enumerate(nb.cells) if is_flagged(cell) == flagged})
        for index, cell in enumerate(nb.cells):
            if "nbgrader" not in cell.metadata:
                continue
            meta = cell.metadata["nbgrader"]
            grade_id = grade_id_of(cell)
            if grade_id not in known or claimed[grade_id] != index:
                if meta and grade_id in known:
                    self.log.warning("%s: a second cell claims grade id %r; only the last keeps it", where, grade_id)
                elif meta:
                    self.log.warning("%s: ignoring nbgrader metadata of a cell the gradebook does not know (%r)", where, grade_id)
                del cell.metadata["nbgrader"]
                continue
            cell_type, locked, checksum = known[grade_id]
            restored = {"grade": grade_id in points, "solution": grade_id in solutions, "locked": locked,
                        "grade_id": grade_id, "schema_version": 3, "cell_type": cell_type}
            if checksum:
                restored["checksum"] = checksum
            if grade_id in points:
                restored["points"] = points[grade_id]
            semantic = ("grade", "solution", "locked", "grade_id", "points")
            if any(meta.get(k) != restored.get(k) for k in semantic):
                self.log.warning("%s: restored the nbgrader metadata of cell %r from the gradebook", where, grade_id)
            cell.metadata["nbgrader"] = restored
        return nb, resources


class SandboxedExecute(NbGraderPreprocessor):
    """Run a submission in the sandbox and grade its test cells by hidden checks."""

    hidden_checks_directory = Unicode(str(ROOT / "grader_tests"), help="grader_tests/ folder").tag(config=True)
    # The limits of one submission; their defaults are those of course.sandbox.Limits.
    memory_limit_gib = Float(Limits.memory_bytes / GIB, help=(
        "memory of one submission, GiB: all its processes together (a cgroup, where the grader can make one) "
        "and the address space of each")).tag(config=True)
    cell_timeout = Float(Limits.cell_seconds, help="wall-clock seconds per cell").tag(config=True)
    notebook_timeout = Float(Limits.notebook_seconds, help="wall-clock seconds per notebook").tag(config=True)
    notebook_cpu_seconds = Integer(Limits.notebook_cpu_seconds, help=(
        "CPU seconds of the whole notebook: all its processes summed, and each process")).tag(config=True)
    max_processes = Integer(Limits.processes, help="processes and threads of one submission").tag(config=True)
    cpus = Float(Limits.cpus, help=(
        "CPUs one submission may keep busy at once (a cgroup, where the grader can make one)")).tag(config=True)
    output_chars_per_cell = Integer(Limits.output_chars_per_cell, help="output kept per cell").tag(config=True)
    output_bytes_per_cell = Integer(Limits.output_bytes_per_cell, help=(
        "bytes of messages the grader reads from the kernel during one cell; past it the kernel is stopped")).tag(config=True)
    output_bytes_per_submission = Integer(Limits.output_bytes_per_submission, help=(
        "bytes of messages the grader reads from the kernel for one notebook; past it the kernel is stopped")).tag(config=True)
    use_bubblewrap = Bool(True, help=(
        "run kernels in bubblewrap; where it is missing or cannot start, grading refuses. False grades "
        "WITHOUT the sandbox (resource limits only, with a warning): only on a single-user machine")).tag(config=True)
    fork_server = Bool(True, help=(
        "fork each kernel from a pre-warmed interpreter that imported the assignment's heavy modules once "
        "(course.forkserver; needs root and bubblewrap, else kernels start cold)")).tag(config=True)
    preload_modules = List(Unicode(), ["numpy", "scipy", "torch", "pandas", "matplotlib", "sklearn"], help=(
        "modules the fork server imports ahead, if the assignment's source notebooks import them")).tag(config=True)

    _announced: ClassVar[set[str]] = set()  # how kernels start, said once per process

    def limits(self) -> Limits:
        return Limits(memory_bytes=int(self.memory_limit_gib * GIB), processes=self.max_processes,
                      notebook_cpu_seconds=self.notebook_cpu_seconds, cell_seconds=self.cell_timeout,
                      notebook_seconds=self.notebook_timeout, output_chars_per_cell=self.output_chars_per_cell,
                      output_bytes_per_cell=self.output_bytes_per_cell,
                      output_bytes_per_submission=self.output_bytes_per_submission, cpus=self.cpus)

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        info = resources.get("nbgrader", {})
        assignment, student = info.get("assignment"), info.get("student")
        where = f"{student}/{assignment}/{info.get('notebook')}"
        if self.use_bubblewrap:
            require_sandbox()  # fails this submission, unrecorded, before any of its code runs
        else:
            warn_unsandboxed(self.log)
        try:  # broken hidden checks are the instructor's to fix: this submission fails, unrecorded, before it runs
            checks = load_hidden_checks(assignment, self.hidden_checks_directory)
            rules = load_rules(assignment, self.hidden_checks_directory)
        except HiddenCheckError as problem:
            self.log.error("%s: not graded: %s", where, problem)
            raise
        wanted = self.fork_server and any(c.cell_type == "code" for c in nb.cells)  # no code: nothing will run
        modules = source_imports(source_notebooks(self.config, assignment), self.preload_modules) if wanted else ()
        server = fork_server_for(modules, self.use_bubblewrap, wanted, self.log, where)
        how = ("forked from a pre-warmed sandboxed interpreter (" + (", ".join(server.modules) or "no modules") + " imported)"
               if server is not None else "started cold" + (" in bubblewrap" if self.use_bubblewrap else ""))
        if how not in SandboxedExecute._announced:
            SandboxedExecute._announced.add(how)
            self.log.info("kernels are %s", how)
        return execute_submission(nb, checks, self.limits(), self.log, where, self.use_bubblewrap,
                                  fork_server=server, rules=rules), resources
