"""Trusted autograding: one submitted notebook executed in the sandbox, its test cells graded.

``execute_submission`` is the work of ``SandboxedExecute`` (``course.plugins``), which replaces
nbgrader's ``Execute`` preprocessor, and of a ``course grade`` worker (``course.workers``).  It runs the
student's notebook cell by cell in a sandboxed kernel (``course.sandbox``).
At each autograded test cell it runs that cell's hidden check: the inputs go
to the kernel, plain JSON comes back, and ``course.judge`` judges it here, in
the grader's process.  The kernel's own outputs never decide a grade: the
graded cell's outputs are rewritten by the grader, an error output for a
failed check and a plain message for a passed one, and nbgrader's own
``SaveAutoGrades`` turns those into points.  Everything else nbgrader does
(restoring test cells from the gradebook, checksums, late penalties,
feedback, export) is unchanged.

This module imports nothing of nbgrader (only ``source_notebooks``, which a worker never calls, does, when
called): a worker imports it, and nbgrader's package import costs a process about a second of CPU.
"""
from __future__ import annotations

import functools
import json
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat
from jupyter_core.utils import ensure_async, run_sync
from nbclient.exceptions import CellExecutionComplete, CellTimeoutError, DeadKernelError
from traitlets import Bool

from . import feedback, sanitize
from .accounting import KernelMarks
from .judge import (MAX_REPLY_CHARS, Verdict, harness_code, harness_install_code, judge, new_nonce,
                    replies_from_outputs, request_for_cases, same_call)
from .harness import RESULT_MIME
from .notes import add_notes, grading_notes_cell, missing_test_cell, note_text, stopped_early, unsandboxed
from .rules import FORBIDDEN_MIME, guard_code, run_breach, source_breaches
from .kernel import SandboxedKernelManager, WarmKernel, Watchdog, new_scratch, remove_scratch
from .sandbox import GradingInterrupted, Limits, file_tail
from .vendor import NotebookClientHooks

if TYPE_CHECKING:
    import logging
    from collections.abc import Iterable, Mapping

    from jupyter_client.asynchronous import AsyncKernelClient
    from nbformat import NotebookNode
    from traitlets.config import Config

    from .cases import Rule
    from .forkserver_client import ForkServer
    from .notes import Note
    from .rules import Breach

    Log = logging.Logger | logging.LoggerAdapter[logging.Logger]
    Checks = dict[str, list[dict[str, Any]]]  # grade id -> the cases of its hidden check (course.cases)

TRUNCATED = "\n… output truncated by the grader (limit {limit} characters per cell)\n"
RESULTS_KEPT = 2  # a probe's replies: one per case, one more kept only to say "more than one result came back"


def is_autograded_test(cell: NotebookNode) -> bool:
    """An autograded test cell: code, a grade cell, not a solution cell (nbgrader's ``is_grade`` and
    ``is_solution``, read here from the metadata: importing nbgrader costs a worker a second)."""
    flags = cell.metadata.get("nbgrader")
    return cell.cell_type == "code" and isinstance(flags, dict) and bool(flags.get("grade")) and not flags.get("solution")


class LimitedOutputClient(NotebookClientHooks):
    """nbclient whose every output passes ``course.sanitize``, within budgets counted as messages arrive.

    Two budgets bound what the grader spends on a kernel's messages.  What is *kept* in the
    graded notebook: ``output_chars_per_cell`` per cell, display updates included, and during a
    hidden-check probe one result per case it judges and one more (``results_kept``), each of at most
    ``MAX_REPLY_CHARS``.  What is *received*: the bytes of every message on the output channel, of any
    type (comms too), per cell and per submission; past either budget the grader stops reading and kills the kernel,
    and ``flooded`` says why.  Comms are refused: no widget state is stored and no output widget
    captures output.
    """

    output_chars_per_cell = Limits.output_chars_per_cell
    received_bytes_per_cell = Limits.output_bytes_per_cell
    received_bytes_per_submission = Limits.output_bytes_per_submission
    probing = False  # True while a hidden-check probe runs: its result is kept apart from the student's output
    results_kept = RESULTS_KEPT  # during this probe
    store_widget_state = Bool(False)
    clear_before_next_output: bool  # nbclient's own, declared for the type checker: the base class is made at run time

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.comm_open_handlers: dict[str, Any] = {}
        self.received_bytes = 0
        self.flooded: str | None = None  # why the grader stopped reading this kernel, if it did
        # the records of forbidden calls the kernel refused (course.guard) during this probe
        self.refusals: list[dict[str, Any]] = []

    MAX_REFUSAL_CHARS = 1000
    MAX_REFUSALS_KEPT = 10  # per probe: one is enough to fail the function; the rest would only cost memory

    async def async_start_new_kernel_client(self) -> AsyncKernelClient:
        """nbclient's, with the client made by the kernel manager (``SandboxedKernelClient``) on its
        context, so each channel's budget (largest message, queue) holds on every socket."""
        try:
            self.kc = self.km.client(context=self.km.context)
            await ensure_async(self.kc.start_channels())
            await ensure_async(self.kc.wait_for_ready(timeout=self.startup_timeout))
        except Exception:
            await self.cleanup_kernel()
            raise
        self.kc.allow_stdin = False
        return self.kc

    start_new_kernel_client = run_sync(async_start_new_kernel_client)  # what nbclient's setup_kernel calls

    async def poll_output_messages(self, parent_msg_id: str, cell: NotebookNode, cell_index: int) -> None:
        """nbclient's loop over output messages, counting each message's bytes before parsing it."""
        channel = self.kc.iopub_channel
        received_in_cell = 0
        while True:
            frames = await channel.socket.recv_multipart()
            size = sum(len(frame) for frame in frames)
            received_in_cell += size
            self.received_bytes += size
            if received_in_cell > self.received_bytes_per_cell:
                return self.stop_reading(f"cell {cell_index + 1} sent more than "
                                         f"{self.received_bytes_per_cell // 1024**2} MiB of output")
            if self.received_bytes > self.received_bytes_per_submission:
                return self.stop_reading(f"the notebook sent more than "
                                         f"{self.received_bytes_per_submission // 1024**2} MiB of output")
            _, wire = channel.session.feed_identities(frames)
            msg = channel.session.deserialize(wire)
            if msg["parent_header"].get("msg_id") == parent_msg_id:
                try:
                    self.process_message(msg, cell, cell_index)
                except CellExecutionComplete:
                    return None

    def stop_reading(self, reason: str) -> None:
        self.flooded = reason
        self.km.kill_everything()  # the kernel dies; nbclient then reports it dead

    def process_message(self, msg: dict[str, Any], cell: NotebookNode, cell_index: int) -> NotebookNode | None:
        try:
            return super().process_message(msg, cell, cell_index)
        finally:
            if "execution_count" in cell:
                cell["execution_count"] = sanitize.safe_execution_count(cell.get("execution_count"))

    def handle_comm_msg(self, outs: list[NotebookNode], msg: dict[str, Any], cell_index: int) -> None:
        """Comms are refused: the grader is no widget front end."""

    def output(self, outs: list[NotebookNode], msg: dict[str, Any], display_id: str | None,
               cell_index: int) -> NotebookNode | None:
        content = msg.get("content", {})
        data = content.get("data") if isinstance(content, dict) else None
        if isinstance(data, dict) and FORBIDDEN_MIME in data:
            # a refusal's record is kept apart, and is no output (None)
            return self.keep_refusal(data[FORBIDDEN_MIME])  # type: ignore[func-returns-value]
        if self.probing and isinstance(data, dict) and RESULT_MIME in data:
            return self.keep_result(outs, data[RESULT_MIME])
        out = sanitize.safe_output(output_of(msg))
        if out is None:
            return None
        if self.clear_before_next_output:
            outs[:] = []
            self.clear_display_id_mapping(cell_index)
            self.clear_before_next_output = False
        budget = self.output_chars_per_cell - sum(output_size(o) for o in outs)
        if output_size(out) > budget:
            if out.output_type == "stream" and budget > 0:
                out.text = out.text[:budget]
                outs.append(out)
            if not (outs and "truncated by the grader" in str(outs[-1].get("text", ""))):
                outs.append(nbformat.v4.new_output("stream", name="stdout",
                                                   text=TRUNCATED.format(limit=self.output_chars_per_cell)))
            return None
        if display_id and not self.probing:
            self.display_outputs.setdefault(display_id, {}).setdefault(cell_index, []).append(len(outs))
        outs.append(out)
        return out

    def keep_refusal(self, text: object) -> None:
        """A forbidden call's record: kept here, in the grader's process, not in the notebook.  Whatever
        the submission does afterwards, it cannot take it back.  Only a probe's count: a call the
        student's own top-level code makes binds no function (course.rules), and the kernel refused it."""
        if self.probing and len(self.refusals) < self.MAX_REFUSALS_KEPT:
            try:
                record = json.loads(text) if isinstance(text, str) and len(text) <= self.MAX_REFUSAL_CHARS else {}
            except ValueError:
                record = {}
            self.refusals.append(record if isinstance(record, dict) else {})
        return None

    def keep_result(self, outs: list[NotebookNode], text: object) -> NotebookNode | None:
        """A hidden check's result: only the result, and only the first few (each of bounded size)."""
        if sum(1 for o in outs if RESULT_MIME in o.get("data", {})) >= self.results_kept:
            return None
        if not isinstance(text, str) or len(text) > MAX_REPLY_CHARS:
            text = None  # judged as "not plain JSON text or too large" without keeping it
        out = nbformat.v4.new_output("display_data", data={RESULT_MIME: text})
        outs.append(out)
        return out

    def update_display(self, display_id: str, msg: dict[str, Any]) -> None:
        """An update of an earlier output, through the same filter and the same budget as a new one."""
        if self.probing or display_id not in self.display_outputs:
            return
        update = sanitize.safe_output({**output_of(msg), "output_type": "display_data"})
        if update is None:
            return
        for cell_index, output_indices in self.display_outputs[display_id].items():
            if not 0 <= cell_index < len(self.nb.cells):
                continue
            outputs = self.nb.cells[cell_index].get("outputs", [])
            for output_index in output_indices:
                if not 0 <= output_index < len(outputs) or "data" not in outputs[output_index]:
                    continue
                old = outputs[output_index]
                used = sum(output_size(o) for o in outputs) - output_size(old)
                if used + output_size(update) > self.output_chars_per_cell:
                    continue
                old["data"], old["metadata"] = update["data"], update["metadata"]


def output_of(msg: Mapping[str, Any]) -> dict[str, Any]:
    """The output a message describes, as the kernel sent it (``course.sanitize`` decides what is kept)."""
    content = msg.get("content")
    return {**content, "output_type": msg.get("msg_type")} if isinstance(content, dict) else {}


def output_size(output: Mapping[str, Any]) -> int:
    return len(str(output.get("text", ""))) + len(str(output.get("data", ""))) + len(str(output.get("traceback", "")))


def add_grading_notes(nb: NotebookNode, notes: list[Note]) -> NotebookNode:
    """The notes into the notebook's grader data, and a "Grading notes" cell rendered from them."""
    if notes:
        add_notes(nb, notes)
        nb.cells.append(grading_notes_cell(notes))
    return nb


# Modules that import numpy themselves: what a notebook importing them has loaded anyway.
IMPLIED_IMPORTS = {"torch": {"numpy"}, "scipy": {"numpy"}, "pandas": {"numpy"}, "matplotlib": {"numpy"},
                   "sklearn": {"numpy", "scipy"}}


def source_notebooks(config: Config, assignment: str) -> list[Path]:
    """The instructor's source notebooks of an assignment (``solutions/<assignment>/*.ipynb``)."""
    from nbgrader.coursedir import CourseDirectory

    coursedir = CourseDirectory(config=config)
    folder = Path(coursedir.format_path(coursedir.source_directory, ".", assignment))
    return sorted(folder.glob("*.ipynb")) if folder.is_dir() else []


def source_imports(paths: Iterable[str | Path], allowed: Iterable[str]) -> tuple[str, ...]:
    """The ``allowed`` modules that these notebooks import at top level: the instructor's code, never a student's."""
    found: set[str] = set()
    for path in paths:
        try:
            found |= _modules_imported_by(str(path), Path(path).stat().st_mtime_ns)
        except OSError:
            continue
    modules = found & set(allowed)
    for module in list(modules):
        modules |= IMPLIED_IMPORTS.get(module, set()) & set(allowed)
    return tuple(sorted(modules))


@functools.lru_cache(maxsize=64)
def _modules_imported_by(path: str, mtime_ns: int) -> frozenset[str]:
    """Top-level names of the modules a notebook imports; read once per version of the file
    (``nbgrader autograde`` asks again for every submission)."""
    import ast

    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception:
        return frozenset()
    found: set[str] = set()
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return frozenset(found)


def execute_submission(nb: Mapping[str, Any], checks: Checks, limits: Limits, log: Log, where: str = "submission",
                       use_bubblewrap: bool = True, warm: WarmKernel | None = None, fork_server: ForkServer | None = None,
                       rules: Iterable[Rule] = (), marks: KernelMarks | None = None) -> NotebookNode:
    """Run one sanitized notebook in a fresh sandbox and grade its test cells by the hidden checks.

    Pure with respect to the course: it needs no gradebook and no course file, only its
    arguments (a notebook, as a dict or NotebookNode; ``{grade_id: [case, ...]}``; ``Limits``),
    so it runs alike inside ``nbgrader autograde`` (``SandboxedExecute``), in a worker process
    of ``course grade`` or on a Dask worker.  ``warm`` is a kernel started ahead for this
    submission (``course.kernel.WarmKernel``), used once; otherwise the kernel is forked from
    ``fork_server`` (``course.forkserver_client.ForkServer``) if given, or started cold.  ``rules``
    (``course.cases.Rule``) are enforced on the source and in the kernel (``course.rules``).  ``marks``
    (``course.accounting.KernelMarks``), if given, gets the CPU clocks read on the way.  Returns
    the executed notebook.
    """
    notebook: NotebookNode = nbformat.from_dict(nb)
    for cell in notebook.cells:  # verdicts are the grader's alone (sanitizing dropped a submission's already)
        cell.metadata.pop("course", None)
    present = {c.metadata["nbgrader"].get("grade_id") for c in notebook.cells if is_autograded_test(c)}
    notes = [missing_test_cell(grade_id) for grade_id in checks if grade_id not in present]
    for note in notes:
        log.error("%s: %s", where, note_text(note))
    if not any(c.cell_type == "code" for c in notebook.cells):
        log.error("%s: the submission has no code cells; every check scores 0", where)
        if warm is not None:
            warm.discard()
        return add_grading_notes(notebook, notes)
    scratch = warm.scratch if warm is not None else new_scratch(fork_server)
    run = None
    try:
        run = SubmissionRun(notebook, checks, scratch, limits, log, where, use_bubblewrap, warm=warm,
                            fork_server=fork_server, rules=rules, marks=marks)
        run.execute()
    finally:
        if run is not None:
            run.release()
        remove_scratch(scratch)  # the channel's tmpfs too: nothing the submission wrote outlives grading
    if run.stopped:
        notes.append(stopped_early(run.stopped))
    if run.km.enforced is False:
        notes.append(unsandboxed())
    return add_grading_notes(notebook, notes)


class SubmissionRun:
    """One notebook, one sandbox, one kernel: executed top to bottom, checks at test cells."""

    def __init__(self, nb: NotebookNode, checks: Checks, scratch: Path, limits: Limits, log: Log, where: str,
                 use_bubblewrap: bool = True, warm: WarmKernel | None = None, fork_server: ForkServer | None = None,
                 rules: Iterable[Rule] = (), marks: KernelMarks | None = None) -> None:
        self.nb, self.checks, self.limits, self.log, self.where = nb, checks, limits, log, where
        self.marks = marks if marks is not None else KernelMarks()
        self.rules = tuple(rules)
        # function -> the Breach that fails all its cases: the source's, read before anything runs,
        # then the run's, as a case of the function meets a refusal
        self.breaches: dict[str, Breach] = {}
        for breach in source_breaches(nb.cells, self.rules, checks):
            self.breaches.setdefault(breach.function, breach)
        self.warm = warm  # a kernel already started in its own fresh sandbox for this submission, or None
        self.km = warm.km if warm is not None else SandboxedKernelManager(
            scratch / "channel", limits, use_bubblewrap=use_bubblewrap, fork_server=fork_server)
        self.watchdog = Watchdog(self.km)
        self.client = LimitedOutputClient(nb, km=self.km, timeout=limits.cell_seconds, allow_errors=True,
                                          interrupt_on_timeout=False, record_timing=False,
                                          kernel_name="python3", resources={"metadata": {"path": str(scratch)}})
        self.client.output_chars_per_cell = limits.output_chars_per_cell
        self.client.received_bytes_per_cell = limits.output_bytes_per_cell
        self.client.received_bytes_per_submission = limits.output_bytes_per_submission
        if warm is not None:
            self.client.kc = warm.kc
            self.client.kc.allow_stdin = False
        self.kernel_log = scratch / "kernel.log"
        self.nonce = new_nonce()
        self.stopped: str | None = None  # why execution stopped early, if it did
        self.interrupted: str | None = None  # why the run was cut short from outside: then there is no grade at all
        self.cells_run = 0

    def execute(self) -> None:
        deadline = time.monotonic() + self.limits.notebook_seconds
        self.watchdog.start()
        try:
            with open(self.kernel_log, "ab" if self.warm is not None else "wb") as kernel_output, \
                    self.client.setup_kernel(stdout=kernel_output, stderr=subprocess.STDOUT):
                self.marks.ready(self.watchdog.cpu_seconds())
                self.install_grader_code(deadline)
                for index, cell in enumerate(self.nb.cells):
                    if cell.cell_type != "code":
                        continue
                    if self.stopped is None:
                        self.run_cell(cell, index, deadline)
                    if is_autograded_test(cell):
                        self.grade_cell(cell, index, deadline)
        except Exception as error:  # the kernel never started, or died in shutdown
            if self.km.ended_from_outside():
                self.interrupt(f"the kernel or its sandbox was stopped by a signal ({type(error).__name__})")
            elif not self.cells_run:  # no student code ran: the grader's failure, never the student's grade
                self.interrupt(f"the sandboxed kernel did not start ({type(error).__name__}: {error})")
            self.stopped = self.stopped or f"the sandboxed kernel failed: {type(error).__name__}: {error}"
            self.log.error("%s: %s\n%s", self.where, self.stopped, self.kernel_log_tail())
            for index, cell in enumerate(self.nb.cells):
                if is_autograded_test(cell) and feedback.read_verdict(cell) is None:
                    self.write_verdict(cell, [Verdict(False, self.stopped)], None)
        finally:
            self.watchdog.stop()
            try:
                self.marks.kernel_at_end = self.watchdog.cpu_seconds()
            finally:  # whatever happens to the account, the kernel and its cgroup go
                self.km.kill_everything()
        if self.interrupted:
            self.log.error("%s: grading was interrupted (%s); nothing is recorded for it", self.where, self.interrupted)
            raise GradingInterrupted(f"{self.where}: {self.interrupted}; not graded, grade it again")

    def release(self) -> None:
        """Release the grader's side of the kernel: its sockets and their ZMQ context."""
        try:
            if self.client.kc is not None:
                self.client.kc.stop_channels()
        except Exception:
            pass
        try:
            self.km.context.destroy(linger=0)
        except Exception:
            pass

    def kernel_log_tail(self) -> str:
        return file_tail(self.kernel_log)

    def run_cell(self, cell: NotebookNode, index: int, deadline: float) -> None:
        self.client.timeout = max(1.0, min(self.limits.cell_seconds, deadline - time.monotonic()))
        self.cells_run += 1
        self.watchdog.cell_started()
        try:
            self.client.execute_cell(cell, index)
        except CellTimeoutError:
            self.stop(f"cell {index + 1} ran past the time limit")
        except DeadKernelError:
            if self.watchdog.check_memory() is None and self.km.ended_from_outside():
                self.interrupt(f"the kernel or its sandbox was stopped by a signal in cell {index + 1}")
            self.stop(f"the kernel died in cell {index + 1} (out of memory, killed, or exited)")
        except Exception as error:
            self.stop(f"cell {index + 1} could not be executed: {type(error).__name__}")
        if any(o.get("output_type") == "error" and o.get("ename") == "KeyboardInterrupt" for o in cell.get("outputs", [])):
            # An interrupt signal reached the kernel: from outside (a Ctrl-C meant for the grader, a
            # kill -INT), or from the submission itself.  Either way the outputs after it are no grade.
            self.interrupt(f"the kernel was interrupted (KeyboardInterrupt) in cell {index + 1}")
            self.stop(self.interrupted)
        if self.stopped is None and self.watchdog.check_memory():  # a process of it was killed, the kernel lives on
            self.stop(self.watchdog.violation)
        if self.stopped is None and self.watchdog.check_disk():  # its channel is full: the write failed, it lives on
            self.stop(self.watchdog.violation)
        if time.monotonic() > deadline and self.stopped is None:
            self.stop("the notebook ran past its total time limit")

    def install_grader_code(self, deadline: float) -> None:
        """The hidden checks' harness and the rules' guard (``course.guard``) into the fresh kernel, before
        the submission's first cell.  If they cannot be installed, no check could run and the rules would
        not hold: the grader's failure, so nothing is recorded."""
        code = harness_install_code() + (guard_code(self.rules) if self.rules else "")
        cell = nbformat.v4.new_code_cell(code)
        first = self.nb.cells[0]
        self.client.timeout = max(1.0, min(self.limits.cell_seconds, deadline - time.monotonic()))
        self.client.probing = True  # nothing it displays is the student's output
        try:
            # Not in the kernel's history: the student's cells keep the execution counts they have anywhere else.
            self.client.execute_cell(cell, 0, store_history=False)
            failed = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            problem = f"{failed[0].get('ename')}: {failed[0].get('evalue')}" if failed else None
        except Exception as error:
            problem = f"{type(error).__name__}: {error}"
        finally:
            self.client.probing = False
            self.nb.cells[0] = first  # nbclient stores the executed cell at its index
        if problem:
            what = "the hidden checks' harness" + (" and the assignment's rules" if self.rules else "")
            self.interrupt(f"{what} could not be installed in the kernel ({problem})")
            self.stop(self.interrupted)

    def interrupt(self, reason: str) -> None:
        self.interrupted = self.interrupted or reason

    def stop(self, reason: str | None) -> None:
        self.watchdog.check_memory()  # a kernel that died of the submission's memory limit: say so
        reason = self.client.flooded or self.watchdog.violation or reason
        self.stopped = reason
        self.log.warning("%s: %s; later checks score 0", self.where, reason)
        self.km.kill_everything()

    def grade_cell(self, cell: NotebookNode, index: int, deadline: float) -> None:
        grade_id = cell.metadata["nbgrader"].get("grade_id")
        cases = self.checks.get(grade_id)
        if not cases:
            self.log.error("%s: no hidden check for test cell %r: it scores 0", self.where, grade_id)
            self.write_verdict(cell, [Verdict(False, f"the grader has no hidden check for {grade_id!r}")], None)
            return
        if self.stopped:
            self.write_verdict(cell, [Verdict(False, f"not checked: {self.stopped}")], None)
            return
        device = preferred_device() if any(c.get("parity") for c in cases) else "cpu"
        # position in the cell's cases -> its verdict; None: not run, its function failed already
        verdicts: dict[int, Verdict | None] = {}
        to_run = {p: case_on(case, device) for p, case in enumerate(cases)}
        for group in calls(to_run, device):
            if to_run[group[0]]["function"] in self.breaches:  # failed already; running it would not change that
                verdicts.update((p, None) for p in group)
                continue
            verdicts.update(zip(group, self.run_call([to_run[p] for p in group], index, deadline, device)))
            if self.stopped:
                break
        # A breach fails every case of the function, those that ran before it was seen included; the
        # note is said in full once per cell, the feedback shows the first failures side by side.
        said, ran = set(), sorted(verdicts)
        for position in ran:
            case = cases[position]
            breach = self.breaches.get(case["function"])
            if breach is not None:
                note = breach.note() if breach.function not in said else breach.again()
                said.add(breach.function)
                verdicts[position] = Verdict(False, f"{case.get('about', case['case'])}: {note}")
        # No None is left: a case that did not run is one of a function with a breach, given its verdict just above.
        self.write_verdict(cell, [verdicts[p] for p in ran],  # type: ignore[misc]
                           device if any(c.get("torch") for c in cases) else None)

    def run_call(self, cases: list[dict[str, Any]], index: int, deadline: float, device: str) -> list[Verdict]:
        """One probe: the call these cases share, made once; a verdict per case."""
        probe = nbformat.v4.new_code_cell(harness_code(request_for_cases(cases, self.nonce, device)))
        graded_cell = self.nb.cells[index]
        self.client.refusals = []
        self.client.probing = True
        self.client.results_kept = len(cases) + 1  # one reply per case, and one more to tell a duplicate
        try:
            self.run_cell(probe, index, deadline)
        finally:
            self.client.probing = False
            self.client.results_kept = RESULTS_KEPT
            self.nb.cells[index] = graded_cell  # nbclient stores the executed cell at its index
        about = [case.get("about", case["case"]) for case in cases]
        function = cases[0]["function"]
        breach = run_breach(self.rules, function, self.client.refusals)
        if breach is not None:
            self.breaches.setdefault(function, breach)
            return [Verdict(False, f"{what}: {breach.note()}") for what in about]
        if self.stopped:
            return [Verdict(False, f"{what}: {self.stopped}") for what in about]
        replies = replies_from_outputs(probe.outputs, self.nonce, [case["case"] for case in cases])
        return [judge(case, reply) if reply is not None else Verdict(False, f"{what}: {problem}")
                for case, what, (reply, problem) in zip(cases, about, replies)]

    def write_verdict(self, cell: NotebookNode, verdicts: list[Verdict], device: str | None) -> None:
        """The grader's verdict on a graded cell: stored as data, its outputs rendered from it."""
        feedback.write_verdict(cell, feedback.CellVerdict.of(verdicts, device))


def calls(cases: dict[int, dict[str, Any]], device: str) -> list[list[int]]:
    """Cases grouped by the call they make (their positions, in the order of each group's first case):
    cases that differ only in the view of the result they judge share one call.  ``cases``: position ->
    case, as it runs on ``device``."""
    groups: dict[str, list[int]] = {}
    for position, case in cases.items():
        groups.setdefault(same_call(case, device), []).append(position)
    return list(groups.values())


def case_on(case: dict[str, Any], device: str) -> dict[str, Any]:
    """The case as it runs on ``device``: a parity case's inputs and tolerance for that device."""
    if not case.get("parity"):
        return case
    from .parity import parity_case

    return parity_case(case, device)


def preferred_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
