"""What the grades say: the report ``course grade`` writes for each assignment.

``reports/<assignment>/report.md`` (Markdown, readable as it is and rendered by any Git host)
and ``reports/<assignment>/scores.png`` beside it:

* a summary: how many submissions, graded now or unchanged, failed, mean and median score;
* a histogram of the total scores;
* the checks students fail most: for each autograded test cell, how many submissions lost
  points there and the most common reason the grader gave (the hidden checks' feedback, which
  names the case and the likely mistake, never hidden inputs or reference values);
* the submissions that failed to grade and the files that could not be collected, each with
  the reason; and the submissions graded with a note (stopped early, unreadable notebook,
  deleted test cell, ...).

Everything comes from the gradebook and the grader's data in the autograded notebooks (verdicts
and notes, ``course.feedback`` and ``course.notes``; never their rendered text), so the report covers every submission
in the gradebook, including those an earlier run graded.
"""
from __future__ import annotations

import collections
import datetime
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat

from .collect import PROBLEM_KINDS, ProblemKind
from .feedback import read_verdict
from .notes import NoteKind, condensed_note_texts, read_notes
from .plan import Status
from .sanitize import markdown_text

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable

    from nbformat import NotebookNode
    from nbgrader.api import Gradebook, SubmittedAssignment
    from nbgrader.coursedir import CourseDirectory

    from .collect import Problem
    from .notes import Note
    from .plan import AssignmentRun, Submission

    Cell = tuple[str, str]  # (notebook name, grade id) of an autograded test cell

SCORED_BY_HAND = "passed here; scored by hand"
MISSING_CELL = "the test cell is missing from the submission"


@dataclass(frozen=True)
class RunSummary:
    """What the reports and the closing summary read of one ``course grade`` run, besides its assignments
    (``course.plan.AssignmentRun``): where things are, how the run went, and which earlier gradings failed."""

    root: Path
    coursedir: CourseDirectory  # where each student's notebooks are
    db_url: str
    report_directory: Path
    csv_path: Path
    log_path: Path
    feedback: bool  # feedback was written in this run
    workers: str  # how the submissions were executed, in words
    # assignment -> {student: why their last grading failed}, from the incremental state
    failures: dict[str, dict[str, str]]
    only: frozenset[str] | None = None  # --student: the students this run regraded
    seconds: float = 0.0  # the run's wall time, once it is known

    def gradebook(self) -> Gradebook:
        from nbgrader.api import Gradebook

        return Gradebook(self.db_url, self.coursedir.course_id)

    def failure(self, assignment: str, student: str) -> str | None:
        return self.failures.get(assignment, {}).get(student)


def final_score(submission: SubmittedAssignment) -> float:
    """What the student gets, as nbgrader's export says it: the cells' total less the late penalty, never below 0."""
    return max(0.0, float(submission.score or 0.0) - float(submission.late_submission_penalty or 0.0))


def assignment_scores(summary: RunSummary, assignment: str) -> dict[str, tuple[float, float]]:
    """{student: (final score, max_score)} for one assignment, from the gradebook; a submission whose last
    grading failed is left out (nbgrader kept an earlier submission's scores, or none)."""
    with summary.gradebook() as gradebook:
        return {s.student.id: (final_score(s), float(s.max_score or 0.0))
                for s in gradebook.assignment_submissions(assignment)
                if not summary.failure(assignment, s.student.id)}


def failed_to_grade(summary: RunSummary, run: AssignmentRun,
                    students: Collection[str] | None = None) -> list[tuple[str, str]]:
    """[(submission, why)] of the submissions of ``run`` that were collected but failed to grade: in this run
    (grading or feedback), or in an earlier one and not graded since.  Files never collected are not here: they
    are collection problems.  The report's table and the summary's "failed" count are both this list (the
    summary of a one-student regrade, ``students``, counts theirs)."""
    failed = [(s.where, s.reason) for s in run.submissions if s.status == Status.FAILED or s.feedback_failed]
    this_run = {s.student for s in run.submissions}
    failed += [(f"{student}/{run.name}", f"{why} (an earlier run)")
               for student, why in sorted(summary.failures.get(run.name, {}).items())
               if student not in this_run and (students is None or student in students)]
    return failed


def _cells(summary: RunSummary, assignment: str
           ) -> tuple[list[Cell], dict[Cell, float], dict[str, tuple[float, dict[Cell, float]]], float]:
    """The assignment's autograded test cells in notebook order, and every graded submission's total and points
    per cell (a submission whose last grading failed is left out: its scores are an earlier submission's)."""
    with summary.gradebook() as gradebook:
        found = gradebook.find_assignment(assignment)
        max_score = float(found.max_score or 0.0)
        points: dict[Cell, float] = {}
        for notebook in found.notebooks:
            answers = {cell.name for cell in notebook.solution_cells}  # graded by hand: not a check
            for cell in notebook.grade_cells:
                if cell.cell_type == "code" and cell.name not in answers:
                    points[(notebook.name, cell.name)] = float(cell.max_score or 0.0)
        per_student: dict[str, tuple[float, dict[Cell, float]]] = {}
        for submission in gradebook.assignment_submissions(assignment):
            if summary.failure(assignment, submission.student.id):
                continue
            grades: dict[Cell, float] = {}
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    grades[(notebook.name, grade.name)] = float(grade.score or 0.0)
            per_student[submission.student.id] = (final_score(submission), grades)
    order: dict[Cell, int] = {}
    source = Path(summary.coursedir.format_path(summary.coursedir.source_directory, ".", assignment))
    for name in sorted({n for n, _ in points}):
        try:
            notebook = nbformat.read(source / f"{name}.ipynb", as_version=4)
            for index, cell in enumerate(notebook.cells):
                grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
                if grade_id:
                    order[(name, grade_id)] = index
        except Exception:
            pass
    cells = sorted(points, key=lambda key: (key[0], order.get(key, 10**6), key[1]))
    return cells, points, per_student, max_score


def _autograded_notes(summary: RunSummary, assignment: str, student: str,
                      notebooks: Iterable[str]) -> tuple[dict[Cell, str], list[Note]]:
    """(reasons per graded cell, grading notes) from the grader's data in a student's autograded notebooks."""
    folder = Path(summary.coursedir.format_path(summary.coursedir.autograded_directory, student, assignment))
    reasons: dict[Cell, str]
    notes: list[Note]
    reasons, notes = {}, []
    for name in notebooks:
        try:
            notebook = nbformat.read(folder / f"{name}.ipynb", as_version=4)
        except Exception:
            continue
        cell_reasons, cell_notes = verdict_reasons(notebook)
        reasons.update({(name, grade_id): reason for grade_id, reason in cell_reasons.items()})
        notes.extend(cell_notes)
    return reasons, notes


def verdict_reasons(notebook: NotebookNode) -> tuple[dict[str, str], list[Note]]:
    """({grade_id: why its check failed, or that it is scored by hand}, notes) of one autograded notebook."""
    reasons = {}
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if not grade_id:
            continue
        verdict = read_verdict(cell)
        reasons[grade_id] = shorten(verdict.first_failure()) if verdict and not verdict.passed else SCORED_BY_HAND
    return reasons, read_notes(notebook)


def shorten(reason: str) -> str:
    return (reason[:157] + "...") if len(reason) > 160 else reason


def _md(text: object) -> str:
    """Any text in a table cell of the report: one line, HTML, link and table characters escaped (file
    names, student ids and reasons can carry a student's bytes)."""
    return markdown_text(text, limit=1000)


def _histogram(path: Path, totals: list[float], max_score: float, assignment: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 3.4), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    top = max(max_score, max(totals, default=0.0), 1.0)
    bins: list[float] | int
    if top <= 40:
        bins = [x - 0.5 for x in range(int(top) + 2)]
    else:
        bins = 20
    axes.hist(totals, bins=bins, color="#3b6ea8", edgecolor="white")
    axes.set_xlabel(f"total score (out of {max_score:g})")
    axes.set_ylabel("submissions")
    mean = f", mean {statistics.mean(totals):.1f}" if totals else ""
    axes.set_title(f"{assignment}: {len(totals)} submissions{mean}")
    axes.set_xlim(-0.5 if top <= 40 else 0, top + (0.5 if top <= 40 else 0))
    axes.yaxis.get_major_locator().set_params(integer=True)
    figure.tight_layout()
    figure.savefig(path)


def _safe_url(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def _collection_tally(problems: Iterable[Problem]) -> list[str]:
    """How many files could not be collected, by kind of problem (the table above has each file)."""
    kinds = collections.Counter(problem.kind for problem in problems)
    if not kinds:
        return []
    lines = ["Files and students not collected, by kind:", "", "| kind | count |", "|---|---:|"]
    lines += [f"| {PROBLEM_KINDS.get(kind, kind)} | {count} |" for kind, count in sorted(kinds.items(), key=lambda k: -k[1])]
    return lines + [""]


def _noted(noted: list[tuple[str, Note]], submissions: Iterable[Submission],
           timeless: Collection[str] = frozenset()) -> list[str]:
    """The "Graded with a note" table: the grader's notes on each student's notebooks, and the
    worker problems of this run (a notebook executed here instead)."""
    grouped: dict[str, tuple[list[Note], list[str]]] = {}
    # The submissions without a time that the collection's one "no-time" problem lists (``timeless``) are said
    # there once, not in a note per student
    noted = [(student, note) for student, note in noted if not (student in timeless and isinstance(note, dict)
                                                                and note.get("kind") == NoteKind.LATE and note.get("without_timestamp"))]
    for student, note in noted:
        grouped.setdefault(student, ([], []))[0].append(note)
    for submission in submissions:
        for problem in submission.worker_problems:
            grouped.setdefault(submission.student, ([], []))[1].append(problem)
    if not grouped:
        return []
    lines = ["## Graded with a note", "", "| student | note |", "|---|---|"]
    lines += [f"| {_md(student)} | {_md(' '.join(condensed_note_texts(notes, more)))} |"
              for student, (notes, more) in sorted(grouped.items())]
    return lines + [""]


def write_report(summary: RunSummary, run: AssignmentRun) -> Path:
    """Write ``report.md`` and ``scores.png`` for one assignment of a ``course grade`` run; return report.md."""
    folder = summary.report_directory / run.name
    folder.mkdir(parents=True, exist_ok=True)
    cells, points, per_student, max_score = _cells(summary, run.name)
    problems = list(run.earlier_problems) + list(run.collected.problems)
    totals = [total for total, _ in per_student.values()]
    _histogram(folder / "scores.png", totals, max_score, run.name)

    failed = {key: 0 for key in cells}
    reasons: dict[Cell, collections.Counter[str]] = {key: collections.Counter() for key in cells}
    noted: list[tuple[str, Note]] = []
    notebooks = sorted({name for name, _ in cells})
    for student, (_, grades) in sorted(per_student.items()):
        why, notes = _autograded_notes(summary, run.name, student, notebooks)
        for key in cells:
            if grades.get(key, 0.0) < points[key]:
                failed[key] += 1
                reasons[key][why.get(key, MISSING_CELL)] += 1
        noted.extend((student, note) for note in notes)

    status = collections.Counter(s.status for s in run.submissions)
    not_graded = failed_to_grade(summary, run)
    lines = [f"# {run.name}: grading report", ""]
    lines.append(f"Written by `course grade` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC "
                 f"from the gradebook `{_safe_url(summary.db_url)}`.")
    lines.append("")
    lines += ["| graded submissions in the gradebook | graded in this run | unchanged (not regraded) | failed to grade "
              "| collection problems | mean score (after late penalties) | median score | max score |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    mean = f"{statistics.mean(totals):.2f}" if totals else "-"
    median = f"{statistics.median(totals):.2f}" if totals else "-"
    lines.append(f"| {len(per_student)} | {status[Status.GRADED]} | {status[Status.UNCHANGED]} | {len(not_graded)} | "
                 f"{len(problems)} | {mean} | {median} | {max_score:g} |")
    lines += ["", "![Histogram of total scores](scores.png)", ""]

    lines += ["## Checks students fail most", ""]
    if per_student:
        lines += ["| check | points | submissions that lost points | share | most common reasons (submissions) |",
                  "|---|---:|---:|---:|---|"]
        ranked = sorted(cells, key=lambda key: (-failed[key], cells.index(key)))
        for key in ranked:
            name, grade_id = key
            label = grade_id if len(notebooks) == 1 else f"{name}: {grade_id}"
            reason = "; ".join(f"{text} ({count})" for text, count in reasons[key].most_common(3))
            share = failed[key] / len(per_student)
            lines.append(f"| `{_md(label)}` | {points[key]:g} | {failed[key]} / {len(per_student)} | {share:.0%} | {_md(reason)} |")
    else:
        lines.append("No graded submission is in the gradebook yet.")
    lines.append("")

    lines += ["## Submissions that failed to grade", ""]
    if not_graded:
        lines += ["| submission | reason |", "|---|---|"]
        lines += [f"| {_md(where)} | {_md(reason)} |" for where, reason in not_graded]
    else:
        lines.append("None: every submission collected was graded.")
    lines.append("")
    lines += ["## Collection problems", ""]
    if problems:
        lines += ["Files and students not collected were never graded: a student whose files were found but none "
                  "collected has no grade from them (`course export` leaves their cell blank and lists them). "
                  "Submissions without a submission time are listed here once.", "",
                  "| file | problem |", "|---|---|"]
        lines += [f"| {_md(problem.where)} | {_md(problem.reason)} |" for problem in problems]
    else:
        lines.append("None: every file found was collected, with its time where the assignment has a due date.")
    lines.append("")
    lines += _collection_tally(problems)

    listed = any(problem.kind == ProblemKind.NO_TIME for problem in run.collected.problems)
    lines += _noted(noted, run.submissions, set(run.collected.timeless) if listed else frozenset())

    path = folder / "report.md"
    path.write_text("\n".join(lines))
    return path


def summary_lines(summary: RunSummary, runs: Iterable[AssignmentRun]) -> list[str]:
    """The table that ends a ``course grade`` run: per assignment, what was found, graded, unchanged,
    failed, the collection problems, the mean score and the report; then where the outputs are and
    every submission that failed, with the reason."""
    rows: list[list[Any]] = []
    only = summary.only
    for run in runs:
        scores = assignment_scores(summary, run.name)
        if only is not None:  # a regrade of some students says their scores, not the class's
            scores = {student: score for student, score in scores.items() if student in only}
        status = collections.Counter(s.status for s in run.submissions)
        totals = [score for score, _ in scores.values()]
        maximum = max((m for _, m in scores.values()), default=0.0)
        mean = f"{sum(totals) / len(totals):.1f} / {maximum:g}" if totals else "-"
        rows.append([run.name, len(run.submissions), status[Status.GRADED], status[Status.UNCHANGED],
                     len(failed_to_grade(summary, run, only)), len(run.collected.problems), mean,
                     os.path.relpath(run.report, summary.root) if run.report else "-"])
    header = ["assignment", "found", "graded", "unchanged", "failed", "problems", "mean score", "report"]
    if only is not None:
        header[6] = "score" if len(only) == 1 else "their mean"
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]

    def aligned(values: Iterable[object]) -> str:
        return "  ".join(str(v).ljust(w) if i in (0, 6, 7) else str(v).rjust(w)
                         for i, (v, w) in enumerate(zip(values, widths)))

    graded, seconds = sum(r[2] for r in rows), summary.seconds
    lines = ["", f"course grade: {graded} submission(s) graded in {seconds:.1f} s"
             + (f" ({seconds / graded:.2f} s per submission, {summary.workers})" if graded else "")]
    lines += [aligned(header)] + [aligned(row) for row in rows]
    coursedir, root = summary.coursedir, summary.root
    feedback = os.path.relpath(coursedir.format_path(coursedir.feedback_directory, "*", "*"), root)
    lines.append(f"grades: {os.path.relpath(summary.csv_path, root)}"
                 + (f"   feedback: {feedback}" if summary.feedback else "")
                 + f"   log: {os.path.relpath(summary.log_path, root)}")
    lines += [f"failed: {where}: {why}" for run in runs for where, why in failed_to_grade(summary, run, only)]
    return lines
