"""What the grader tells the student, rendered from the grader's data.

The grader's results are data, written once into the graded notebook, where only the grader
writes (``course.sanitize.RestoreCellMetadata`` drops whatever a submission put there):

* each autograded test cell's verdict, in ``cell.metadata["course"]["verdict"]``: every case
  judged (passed, message) and the device its checks ran on (``CellVerdict``);
* the grading notes of a notebook (a deleted test cell, execution stopped early, an unreadable
  file, no sandbox), in ``nb.metadata["course"]["notes"]``: one ``{"kind": ..., ...}`` each.

From that data this module renders the text a student reads: the graded cell's outputs (an
error output for a failed check, which nbgrader's ``SaveAutoGrades`` scores 0, and a plain
message for a passed one) and the sentence of each note.  ``course.report`` reads the same data.
"""
from dataclasses import asdict, dataclass, field

import nbformat

VISIBLE_OUTPUT_KEPT = 4000  # characters of the visible tests' own output shown above the verdict
FAILURES_SHOWN = 3


@dataclass
class CellVerdict:
    """The grader's verdict on one autograded test cell."""

    cases: list = field(default_factory=list)  # [{"passed": bool, "message": str}], each case judged, in order
    device: str = None  # where the checks ran, for checks that run torch code

    @classmethod
    def of(cls, verdicts, device=None):
        """From ``course.judge.Verdict`` objects."""
        return cls([{"passed": bool(v.passed), "message": str(v.message)} for v in verdicts], device)

    @property
    def passed(self):
        return bool(self.cases) and all(case["passed"] for case in self.cases)

    @property
    def failures(self):
        return [case["message"] for case in self.cases if not case["passed"]]

    def first_failure(self):
        failures = self.failures
        return failures[0] if failures else NO_CASE_CHECKED


NO_CASE_CHECKED = "no case was checked"


def write_verdict(cell, verdict):
    """Store the verdict in the cell and render its outputs from it (the student's own visible-test
    output first, then the grader's verdict)."""
    visible = "".join(_visible_text(o) for o in cell.get("outputs", []))
    cell.metadata.setdefault("course", {})["verdict"] = asdict(verdict)
    cell.outputs = verdict_outputs(verdict, visible)


def read_verdict(cell):
    """The verdict the grader stored in a cell, or None."""
    course = cell.get("metadata", {}).get("course")
    data = course.get("verdict") if isinstance(course, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        return None
    return CellVerdict(data["cases"], data.get("device"))


def verdict_outputs(verdict, visible_text=""):
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


def _visible_text(output):
    if output.get("output_type") == "stream":
        return output.get("text", "")
    if output.get("output_type") == "error":
        return f"{output.get('ename')}: {output.get('evalue')}\n"
    return ""


# --------------------------------------------------------------------------- grading notes

def missing_test_cell(grade_id):
    return {"kind": "missing_test_cell", "grade_id": grade_id}


def stopped_early(reason):
    return {"kind": "stopped_early", "reason": reason}


def unsandboxed():
    return {"kind": "unsandboxed"}


def unreadable_notebook(name, problem):
    return {"kind": "unreadable_notebook", "notebook": name, "problem": problem}


UNREADABLE = "{notebook}.ipynb could not be read as a Jupyter notebook (nbformat 4): {problem}"
NOTE_SENTENCES = {
    "missing_test_cell": "The test cell `{grade_id}` is missing from the submission, so its check scores 0.",
    "stopped_early": "Execution stopped early: {reason}. Checks after that point score 0.",
    "unsandboxed": "This notebook was graded without the bubblewrap sandbox (resource limits only).",
    "unreadable_notebook": UNREADABLE + (". Every check scores 0. Submit the notebook file that Jupyter saves, "
                                         "without editing it by hand."),
}


def _late_sentence(note):
    from .late import lateness_note

    return lateness_note(note)


NOTE_SENTENCES["late"] = _late_sentence  # how late, the penalty and the rule (course.late keeps the data)


def note_text(note):
    """The sentence a note says to the student."""
    sentence = NOTE_SENTENCES[note["kind"]]
    return sentence(note) if callable(sentence) else sentence.format(**note)


def add_notes(nb, notes):
    """Store the notes in the notebook's grader data (after those already there)."""
    if notes:
        nb.metadata.setdefault("course", {}).setdefault("notes", []).extend(notes)


def read_notes(nb):
    """The notes the grader stored in a notebook, or []."""
    course = nb.get("metadata", {}).get("course")
    notes = course.get("notes") if isinstance(course, dict) else None
    if not isinstance(notes, list):
        return []
    return [n for n in notes if isinstance(n, dict) and n.get("kind") in NOTE_SENTENCES]


def condensed_note_texts(notes, more=()):
    """A student's notes (and ``more`` sentences) for the report, with the missing test cells said once."""
    missing = [n["grade_id"] for n in notes if n["kind"] == "missing_test_cell"]
    texts = [note_text(n) for n in notes if n["kind"] != "missing_test_cell"] + list(more)
    if missing:
        texts.append(f"Test cells missing from the submission (scored 0): {', '.join(missing)}.")
    return texts
