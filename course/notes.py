"""The grading notes of a notebook: what the grader says about it besides the checks' verdicts.

A note is data, kept in the graded notebook's grader metadata (``nb.metadata["course"]["notes"]``), where only the
grader writes (``course.plugins.RestoreCellMetadata`` drops whatever a submission put there): one
``{"kind": ..., ...}`` each, its kind a ``NoteKind``.  This module makes them, stores and reads them, and says
each one as the sentence a student reads, in the feedback's "Grading notes" cell and in the report.
"""
from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

import nbformat

from .sanitize import markdown_text

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from nbformat import NotebookNode


class NoteKind(StrEnum):
    MISSING_TEST_CELL = "missing_test_cell"  # a test cell deleted from the submission
    STOPPED_EARLY = "stopped_early"  # execution stopped (a limit, a dead kernel): later checks score 0
    UNSANDBOXED = "unsandboxed"  # graded without bubblewrap, by the instructor's explicit choice
    UNREADABLE_NOTEBOOK = "unreadable_notebook"  # the file is not a notebook: every check scores 0
    LATE = "late"  # the late policy's decision (``course.late.LateDecision``)


KINDS = frozenset(NoteKind)
Note = dict[str, Any]  # {"kind": NoteKind, ...}: JSON data in the notebook


def missing_test_cell(grade_id: str) -> Note:
    return {"kind": NoteKind.MISSING_TEST_CELL, "grade_id": grade_id}


def stopped_early(reason: str) -> Note:
    return {"kind": NoteKind.STOPPED_EARLY, "reason": reason}


def unsandboxed() -> Note:
    return {"kind": NoteKind.UNSANDBOXED}


def unreadable_notebook(name: str, problem: str) -> Note:
    return {"kind": NoteKind.UNREADABLE_NOTEBOOK, "notebook": name, "problem": problem}


def late(decision: dict[str, Any]) -> Note:
    """The note of a late decision (``course.late.LateDecision.as_data()``)."""
    return {"kind": NoteKind.LATE, **decision}


UNREADABLE = "{notebook}.ipynb could not be read as a Jupyter notebook (nbformat 4): {problem}"


def describe_lateness(seconds: float) -> str:
    """How late, in words: "1 day, 2 hours, 1 minute"."""
    days, rest = divmod(int(round(seconds)), 24 * 3600)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in ((days, "day"), (hours, "hour"), (minutes, "minute")) if n]
    return ", ".join(parts) or "less than a minute"


def lateness_sentence(decision: Mapping[str, Any] | None) -> str | None:
    """The feedback's sentence about lateness, from a late decision's data; None when there is nothing to say."""
    if not decision:
        return None
    if decision.get("marked_late"):
        return (f"The LMS marks this submission late but gives no submission time; the course's late policy for "
                f"that applies: {decision.get('time_rule', decision['without_timestamp'])} "
                f"(a penalty of {decision['penalty']:g} points).")
    if decision.get("without_timestamp"):
        if decision["without_timestamp"] == "zero":
            return "This submission has no submission time, and the course's late policy scores such work 0."
        return "This submission has no submission time; it was graded as on time."
    if decision["seconds_late"] <= 0:
        return None
    penalty = f"a penalty of {decision['penalty']:g} points" if decision["penalty"] else "no penalty"
    return (f"Submitted {describe_lateness(decision['seconds_late'])} after the due date ({decision['due']}): "
            f"{penalty} (late policy: {decision['rule']}).")


SENTENCES = {
    NoteKind.MISSING_TEST_CELL: "The test cell `{grade_id}` is missing from the submission, so its check scores 0.",
    NoteKind.STOPPED_EARLY: "Execution stopped early: {reason}. Checks after that point score 0.",
    NoteKind.UNSANDBOXED: "This notebook was graded without the bubblewrap sandbox (resource limits only).",
    NoteKind.UNREADABLE_NOTEBOOK: UNREADABLE + (". Every check scores 0. Submit the notebook file that Jupyter "
                                                "saves, without editing it by hand."),
}


def note_text(note: Note) -> str:
    """The sentence a note says to the student."""
    if note["kind"] == NoteKind.LATE:
        return lateness_sentence(note) or ""
    return SENTENCES[NoteKind(note["kind"])].format(**note)


def add_notes(nb: NotebookNode, notes: list[Note]) -> None:
    """Store the notes in the notebook's grader data (after those already there)."""
    if notes:
        nb.metadata.setdefault("course", {}).setdefault("notes", []).extend(notes)


def read_notes(nb: Mapping[str, Any]) -> list[Note]:
    """The notes the grader stored in a notebook, or []."""
    course = nb.get("metadata", {}).get("course")
    notes = course.get("notes") if isinstance(course, dict) else None
    if not isinstance(notes, list):
        return []
    return [n for n in notes if isinstance(n, dict) and isinstance(n.get("kind"), str) and n["kind"] in KINDS]


def condensed_note_texts(notes: list[Note], more: Iterable[str] = ()) -> list[str]:
    """A student's notes (and ``more`` sentences) for the report, with the missing test cells said once."""
    missing = [n["grade_id"] for n in notes if n["kind"] == NoteKind.MISSING_TEST_CELL]
    texts = [note_text(n) for n in notes if n["kind"] != NoteKind.MISSING_TEST_CELL] + list(more)
    if missing:
        texts.append(f"Test cells missing from the submission (scored 0): {', '.join(missing)}.")
    return texts


def grading_notes_cell(notes: list[Note], title: str = "Grading notes") -> NotebookNode:
    """The "Grading notes" markdown cell, rendered from the notes; the notes themselves stay data in the
    notebook's metadata."""
    source = f"## {title}\n\n" + "\n".join(f"- {markdown_text(note_text(note), limit=2000)}" for note in notes)
    return nbformat.v4.new_markdown_cell(source)
