"""The verdicts on a notebook's test cells: stored as data, rendered as the outputs a student reads.

The grader's results are data, written once into the graded notebook, where only the grader
writes (``course.plugins.RestoreCellMetadata`` drops whatever a submission put there): each
autograded test cell's verdict, in ``cell.metadata["course"]["verdict"]``, every case judged
(passed, message) and the device its checks ran on (``CellVerdict``).  The notebook's grading
notes are data too (``course.notes``).

From a verdict this module renders the graded cell's outputs: an error output for a failed
check, which nbgrader's ``SaveAutoGrades`` scores 0, and a plain message for a passed one.
``course.report`` reads the same data.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import nbformat

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from nbformat import NotebookNode

    from .judge import Verdict

VISIBLE_OUTPUT_KEPT = 4000  # characters of the visible tests' own output shown above the verdict
FAILURES_SHOWN = 3


@dataclass
class CellVerdict:
    """The grader's verdict on one autograded test cell."""

    # [{"passed": bool, "message": str}], each case judged, in order
    cases: list[dict[str, Any]] = field(default_factory=list)
    device: str | None = None  # where the checks ran, for checks that run torch code

    @classmethod
    def of(cls, verdicts: Iterable[Verdict], device: str | None = None) -> CellVerdict:
        """From ``course.judge.Verdict`` objects."""
        return cls([{"passed": bool(v.passed), "message": str(v.message)} for v in verdicts], device)

    @property
    def passed(self) -> bool:
        return bool(self.cases) and all(case["passed"] for case in self.cases)

    @property
    def failures(self) -> list[str]:
        return [case["message"] for case in self.cases if not case["passed"]]

    def first_failure(self) -> str:
        failures = self.failures
        return failures[0] if failures else NO_CASE_CHECKED


NO_CASE_CHECKED = "no case was checked"


def write_verdict(cell: NotebookNode, verdict: CellVerdict) -> None:
    """Store the verdict in the cell and render its outputs from it (the student's own visible-test
    output first, then the grader's verdict)."""
    visible = "".join(_visible_text(o) for o in cell.get("outputs", []))
    cell.metadata.setdefault("course", {})["verdict"] = asdict(verdict)
    cell.outputs = verdict_outputs(verdict, visible)


def read_verdict(cell: Mapping[str, Any]) -> CellVerdict | None:
    """The verdict the grader stored in a cell, or None."""
    course = cell.get("metadata", {}).get("course")
    data = course.get("verdict") if isinstance(course, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        return None
    return CellVerdict(data["cases"], data.get("device"))


def verdict_outputs(verdict: CellVerdict, visible_text: str = "") -> list[NotebookNode]:
    """The graded cell's outputs as the student sees them, and as ``SaveAutoGrades`` scores them."""
    outputs = []
    if visible_text.strip():
        outputs.append(nbformat.v4.new_output(
            "stream", name="stdout",
            text="Output of the visible tests (not graded):\n" + visible_text[-VISIBLE_OUTPUT_KEPT:] + "\n"))
    where = f" [ran on {verdict.device}]" if verdict.device else ""
    if verdict.passed:
        outputs.append(nbformat.v4.new_output(
            "stream", name="stdout", text=f"Hidden checks passed ({len(verdict.cases)} cases){where}.\n"))
    else:
        message = "; ".join(verdict.failures[:FAILURES_SHOWN]) or NO_CASE_CHECKED
        outputs.append(nbformat.v4.new_output(
            "error", ename="HiddenCheckFailed", evalue=message + where, traceback=[f"HiddenCheckFailed: {message}{where}"]))
    return outputs


def _visible_text(output: Mapping[str, Any]) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    if output.get("output_type") == "error":
        return f"{output.get('ename')}: {output.get('evalue')}\n"
    return ""
