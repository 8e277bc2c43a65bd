"""Trusted autograding, wired into nbgrader through ``nbgrader_config.py``.

``SandboxedExecute`` replaces nbgrader's ``Execute`` preprocessor.  It runs the
student's notebook cell by cell in a sandboxed kernel (``course.sandbox``).
At each autograded test cell it runs that cell's hidden check: the inputs go
to the kernel, plain JSON comes back, and ``course.check`` judges it here, in
the grader's process.  The kernel's own outputs never decide a grade: the
graded cell's outputs are rewritten by the grader, an error output for a
failed check and a plain message for a passed one, and nbgrader's own
``SaveAutoGrades`` turns those into points.  Everything else nbgrader does
(restoring test cells from the gradebook, checksums, late penalties,
feedback, export) is unchanged.
"""
import shutil
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbgrader.preprocessors import NbGraderPreprocessor
from nbgrader.utils import is_grade, is_solution
from traitlets import Float, Integer, Unicode

from . import ROOT
from .check import HiddenCheckError, Verdict, judge, load_hidden_checks, new_nonce, reply_from_outputs, request_for, harness_code
from .sandbox import Limits, SandboxedKernelManager

TRUNCATED = "\n… output truncated by the grader (limit {limit} characters per cell)\n"


def is_autograded_test(cell):
    return cell.cell_type == "code" and is_grade(cell) and not is_solution(cell)


class LimitedOutputClient(NotebookClient):
    """nbclient that stops keeping output once a cell has printed too much."""

    output_chars_per_cell = 20_000

    def output(self, outs, msg, display_id, cell_index):
        kept = sum(len(str(o.get("text", ""))) + len(str(o.get("data", ""))) for o in outs)
        if kept > self.output_chars_per_cell:
            if not (outs and outs[-1].get("name") == "stdout" and "truncated by the grader" in outs[-1].get("text", "")):
                outs.append(nbformat.v4.new_output("stream", name="stdout",
                                                   text=TRUNCATED.format(limit=self.output_chars_per_cell)))
            return None
        return super().output(outs, msg, display_id, cell_index)


class SandboxedExecute(NbGraderPreprocessor):
    """Run a submission in the sandbox and grade its test cells by hidden checks."""

    hidden_checks_directory = Unicode(str(ROOT / "grader_tests"), help="grader_tests/ folder").tag(config=True)
    memory_limit_gib = Float(4.0, help="memory (address space) per sandbox process, GiB").tag(config=True)
    cell_timeout = Float(120.0, help="wall-clock seconds per cell").tag(config=True)
    notebook_timeout = Float(600.0, help="wall-clock seconds per notebook").tag(config=True)
    notebook_cpu_seconds = Integer(600, help="CPU seconds per sandbox process").tag(config=True)
    max_processes = Integer(64, help="processes/threads of one sandbox").tag(config=True)
    output_chars_per_cell = Integer(20_000, help="output kept per cell").tag(config=True)

    def limits(self):
        return Limits(memory_bytes=int(self.memory_limit_gib * 1024**3), processes=self.max_processes,
                      notebook_cpu_seconds=self.notebook_cpu_seconds, cell_seconds=self.cell_timeout,
                      notebook_seconds=self.notebook_timeout, output_chars_per_cell=self.output_chars_per_cell)

    def preprocess(self, nb, resources):
        info = resources.get("nbgrader", {})
        assignment, student = info.get("assignment"), info.get("student")
        where = f"{student}/{assignment}/{info.get('notebook')}"
        try:
            checks = load_hidden_checks(assignment, root=Path(self.hidden_checks_directory).parent)
        except HiddenCheckError as problem:
            self.log.error("%s: %s", where, problem)
            checks = {}
        scratch = Path(tempfile.mkdtemp(prefix="course-sandbox-"))
        try:
            run = SubmissionRun(nb, checks, scratch, self.limits(), self.log, where)
            run.execute()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return nb, resources


class SubmissionRun:
    """One notebook, one sandbox, one kernel: executed top to bottom, checks at test cells."""

    def __init__(self, nb, checks, scratch, limits, log, where):
        self.nb, self.checks, self.limits, self.log, self.where = nb, checks, limits, log, where
        self.km = SandboxedKernelManager(scratch / "work", limits)
        self.client = LimitedOutputClient(nb, km=self.km, timeout=limits.cell_seconds, allow_errors=True,
                                          interrupt_on_timeout=False, record_timing=False,
                                          kernel_name="python3", resources={"metadata": {"path": str(scratch / "work")}})
        self.client.output_chars_per_cell = limits.output_chars_per_cell
        self.nonce = new_nonce()
        self.stopped = None  # why execution stopped early, if it did

    def execute(self):
        deadline = time.monotonic() + self.limits.notebook_seconds
        try:
            with self.client.setup_kernel():
                for index, cell in enumerate(self.nb.cells):
                    if cell.cell_type != "code":
                        continue
                    if self.stopped is None:
                        self.run_cell(cell, index, deadline)
                    if is_autograded_test(cell):
                        self.grade_cell(cell, index, deadline)
        except Exception as error:  # the kernel never started, or died in shutdown
            self.stopped = self.stopped or f"the sandboxed kernel failed: {type(error).__name__}: {error}"
            self.log.error("%s: %s", self.where, self.stopped)
            for index, cell in enumerate(self.nb.cells):
                if is_autograded_test(cell) and not cell.metadata.get("course_graded"):
                    self.record(cell, [Verdict(False, self.stopped)], None)
        finally:
            self.km.kill_everything()
        for cell in self.nb.cells:
            cell.metadata.pop("course_graded", None)

    def run_cell(self, cell, index, deadline):
        self.client.timeout = max(1.0, min(self.limits.cell_seconds, deadline - time.monotonic()))
        try:
            self.client.execute_cell(cell, index)
        except CellTimeoutError:
            self.stop(f"cell {index + 1} ran past the time limit")
        except DeadKernelError:
            self.stop(f"the kernel died in cell {index + 1} (out of memory, killed, or exited)")
        except Exception as error:
            self.stop(f"cell {index + 1} could not be executed: {type(error).__name__}")
        if time.monotonic() > deadline and self.stopped is None:
            self.stop("the notebook ran past its total time limit")

    def stop(self, reason):
        self.stopped = reason
        self.log.warning("%s: %s; later checks score 0", self.where, reason)
        self.km.kill_everything()

    def grade_cell(self, cell, index, deadline):
        grade_id = cell.metadata["nbgrader"].get("grade_id")
        cases = self.checks.get(grade_id)
        if not cases:
            self.log.error("%s: no hidden check for test cell %r: it scores 0", self.where, grade_id)
            self.record(cell, [Verdict(False, f"the grader has no hidden check for {grade_id!r}")], None)
            return
        if self.stopped:
            self.record(cell, [Verdict(False, f"not checked: {self.stopped}")], None)
            return
        device = preferred_device() if any(c.get("parity") for c in cases) else "cpu"
        verdicts = []
        for case in cases:
            verdicts.append(self.run_case(case, index, deadline, device))
            if self.stopped:
                break
        self.record(cell, verdicts, device if any(c.get("torch") for c in cases) else None)

    def run_case(self, case, index, deadline, device):
        if case.get("parity"):
            from .parity import parity_case
            case = parity_case(case, device)
        probe = nbformat.v4.new_code_cell(harness_code(request_for(case, self.nonce, device)))
        graded_cell = self.nb.cells[index]
        try:
            self.run_cell(probe, index, deadline)
        finally:
            self.nb.cells[index] = graded_cell  # nbclient stores the executed cell at its index
        if self.stopped:
            return Verdict(False, f"{case.get('about', case['case'])}: {self.stopped}")
        reply, problem = reply_from_outputs(probe.outputs, self.nonce, case["case"])
        if reply is None:
            return Verdict(False, f"{case.get('about', case['case'])}: {problem}")
        return judge(case, reply)

    def record(self, cell, verdicts, device):
        """Replace the graded cell's outputs with the grader's own verdict."""
        student_text = "".join(stream_text(o) for o in cell.get("outputs", []))
        outputs = []
        if student_text.strip():
            outputs.append(nbformat.v4.new_output(
                "stream", name="stdout", text="Output of the visible tests (not graded):\n" + student_text[-4000:] + "\n"))
        where = f" [ran on {device}]" if device else ""
        failed = [v for v in verdicts if not v.passed]
        if verdicts and not failed:
            outputs.append(nbformat.v4.new_output(
                "stream", name="stdout", text=f"Hidden checks passed ({len(verdicts)} cases){where}.\n"))
        else:
            message = "; ".join(v.message for v in failed[:3]) or "no case was checked"
            outputs.append(nbformat.v4.new_output(
                "error", ename="HiddenCheckFailed", evalue=message + where,
                traceback=[f"HiddenCheckFailed: {message}{where}"]))
        cell.outputs = outputs
        cell.metadata["course_graded"] = True


def stream_text(output):
    if output.get("output_type") == "stream":
        return output.get("text", "")
    if output.get("output_type") == "error":
        return f"{output.get('ename')}: {output.get('evalue')}\n"
    return ""


def preferred_device():
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
