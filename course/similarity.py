"""``course similarity``: which students' answers look copied from each other.

    course similarity <assignment> [--submissions PATH] [--course DIR] [--top N]

It flags and never grades: nothing here reads or writes the gradebook.  The answers are compared
pairwise with ``copydetect``, whose fingerprints (winnowed k-grams of the token stream, with
names, strings and comments abstracted away) follow MOSS, so renaming variables, rewording
comments or reformatting does not hide a copy.

* What is compared: each student's answer cells, every code cell that is not one of the release's
  cells as released (the answers they wrote and any cell they added), with docstrings removed.
  Unchanged test cells and locked cells are left out, and every fingerprint of the released
  notebook (the starter code, its stubs and docstrings) is boilerplate that never counts as shared.
* What is written, beside the grading report: ``reports/<assignment>/similarity.html``, the
  most similar pairs ranked, each with both students' code and the matching lines highlighted,
  and ``reports/<assignment>/similarity.csv``, every pair that shares any fingerprint.

The similarity of a pair is the larger of the two shares: the part of one student's answer
tokens found in the other's.  A high number asks a person to look; it proves nothing alone.

The numbers are the same for the same input in any process: copydetect hashes k-grams with Python's
``hash()``, which is salted per process (PYTHONHASHSEED), so winnowing kept different fingerprints each run;
here its ``copydetect.utils.hashed_kgrams`` is replaced, while fingerprints are made, by a keyed-free BLAKE2b.
"""
from __future__ import annotations

import ast
import contextlib
import csv
import hashlib
import html
import io
import itertools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import nbformat
import numpy as np
from copydetect import CodeFingerprint, compare_files
from copydetect.utils import highlight_overlap

from . import submitted_notebook
from .errors import UsageError
from .lms import csv_cell
from .sanitize import escape_hidden, log_text
from .submitted_notebook import why_not_a_notebook

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sized

    from nbformat import NotebookNode

# copydetect's own defaults: k-grams of 25 tokens, and every match of 30 or more tokens found
NOISE_TOKENS = 25
GUARANTEED_TOKENS = 30
SHOWN_PAIRS = 25  # pairs with their code in the HTML report; the CSV has them all


class SimilarityError(UsageError):
    """The comparison cannot run (no course, no release, no submissions)."""


@dataclass
class Answers:
    student: str
    code: str
    fingerprint: CodeFingerprint | None = None  # made by compare()


@dataclass
class Pair:
    first: Answers
    second: Answers
    similarity: float  # the larger share
    shares: tuple[float, ...]  # the share of each student's tokens found in the other's
    tokens: int  # overlapping tokens
    slices: tuple[Any, ...]  # copied character ranges in each student's code (copydetect's arrays)


def without_docstrings(code: str) -> str:
    """The code with every docstring's lines left blank (line numbers kept); as it is if it does not parse."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # what a student wrote need not parse
        return code
    lines = code.splitlines(keepends=True)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            doc = body[0]
            first, last = doc.lineno - 1, doc.end_lineno
            assert last is not None  # a parsed statement has its end
            # a docstring that shares a line with other code (`def f(): "doc"; return 1`) stays
            if not lines[first][:doc.col_offset].strip() and not lines[last - 1][doc.end_col_offset:].strip():
                lines[first:last] = ["\n"] * (last - first)
    return "".join(lines)


def release_cells(release_notebook: NotebookNode) -> dict[str, tuple[bool, str]]:
    """The released notebook's cells by grade id: (is a solution cell, source)."""
    cells = {}
    for cell in release_notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if isinstance(meta, dict) and meta.get("grade_id"):
            cells[meta["grade_id"]] = (bool(meta.get("solution")), cell.source)
    return cells


def answer_code(notebook: NotebookNode, released: Mapping[str, tuple[bool, str]]) -> str:
    """A student's answers in one notebook: every code cell that is not a released cell as released (the answer
    cells they wrote, and cells they added), whatever metadata it carries."""
    released_sources = {source for _, source in released.values()}
    parts = []
    for cell in notebook.cells:
        if cell.get("cell_type") != "code" or not isinstance(cell.get("source"), str):
            continue
        if cell.source in released_sources:
            continue  # a test cell or the release's own code, as released (metadata is the student's to forge)
        parts.append(without_docstrings(cell.source).rstrip() + "\n")
    return "\n".join(parts)


def boilerplate_hashes(release_notebooks: Iterable[NotebookNode]) -> list[int]:
    """Every k-gram of the release's code (stubs, signatures, tests), read as a student's code is: all of them,
    not a winnowed sample, so that none can count as shared wherever it stands in a student's answer."""
    code = [without_docstrings(c.source) for nb in release_notebooks for c in nb.cells if c.cell_type == "code"]
    return list(fingerprint("release.py", "\n".join(code), window=1).hashes)


def stable_kgram_hashes(string: str, k: int) -> np.ndarray:
    """copydetect's ``hashed_kgrams`` with a hash that is the same in every process (BLAKE2b, 64 bits, signed as
    numpy's int64 like ``hash()``), in place of Python's salted ``hash()``."""
    data = [hashlib.blake2b(string[offset:offset + k].encode("utf-8", "surrogatepass"), digest_size=8).digest()
            for offset in range(len(string) - k + 1)]
    return np.array([int.from_bytes(d, "little", signed=True) for d in data], dtype=np.int64)


@contextlib.contextmanager
def stable_hashing() -> Iterator[None]:
    """copydetect's k-gram hashing made deterministic while fingerprints are made (its ``get_document_fingerprints``
    looks ``hashed_kgrams`` up in ``copydetect.utils`` at each call)."""
    import copydetect.utils

    original = copydetect.utils.hashed_kgrams
    copydetect.utils.hashed_kgrams = stable_kgram_hashes
    try:
        yield
    finally:
        copydetect.utils.hashed_kgrams = original


def fingerprint(name: str, code: str, boilerplate: list[int] | None = None,
                window: int = GUARANTEED_TOKENS - NOISE_TOKENS + 1) -> CodeFingerprint:
    with stable_hashing():
        return CodeFingerprint(name, NOISE_TOKENS, window, boilerplate, language="python", fp=io.StringIO(code))


def read_answers(submissions: str | Path, assignment: str, release_notebooks: Mapping[str, NotebookNode],
                 problems: list[str]) -> list[Answers]:
    """Each student's answers, from ``<submissions>/<student>/<assignment>/*.ipynb``."""
    released = {}
    for nb in release_notebooks.values():
        released.update(release_cells(nb))
    students = []
    for folder in sorted(Path(submissions).glob(f"*/{assignment}")):
        if not folder.is_dir() or folder.is_symlink():
            continue
        parts = []
        for name in sorted(release_notebooks):
            path = folder / name
            if not path.is_file() or path.is_symlink():
                continue
            try:  # one student's file never stops the comparison of the others
                with open(path, encoding="utf-8") as stream:
                    parts.append(answer_code(submitted_notebook.read(stream), released))
            except Exception as error:
                problems.append(f"{path}: not read as a notebook ({why_not_a_notebook(error)}); "
                                "left out of the comparison")
        if parts:
            students.append(Answers(folder.parent.name, "\n".join(parts)))
    return students


def compare(students: list[Answers], boilerplate: list[int]) -> list[Pair]:
    for answers in students:
        answers.fingerprint = fingerprint(f"{answers.student}.py", answers.code, boilerplate)
    pairs = []
    for first, second in itertools.combinations(students, 2):
        if not first.fingerprint.hashes & second.fingerprint.hashes:  # type: ignore[union-attr]  # made just above
            continue
        tokens, shares, slices = compare_files(first.fingerprint, second.fingerprint)
        if tokens:
            pairs.append(Pair(first, second, float(max(shares)), tuple(float(s) for s in shares), int(tokens), slices))
    pairs.sort(key=lambda pair: (-pair.similarity, -pair.tokens, pair.first.student, pair.second.student))
    return pairs


def highlighted(answers: Answers, slices: Any) -> str:
    if not len(slices) or not np.size(slices):
        return html.escape(answers.code)
    text, _ = highlight_overlap(answers.code, slices, "<mark>", "</mark>", escape_html=True)
    return text


def write_csv(path: Path, pairs: Iterable[Pair]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as stream:
        out = csv.writer(stream)
        out.writerow(["rank", "student_a", "student_b", "similarity", "share_of_a", "share_of_b", "shared_tokens"])
        for rank, pair in enumerate(pairs, 1):
            out.writerow([rank, csv_cell(pair.first.student), csv_cell(pair.second.student), f"{pair.similarity:.3f}",
                          f"{pair.shares[0]:.3f}", f"{pair.shares[1]:.3f}", pair.tokens])


def write_html(path: Path, assignment: str, students: Sized, pairs: list[Pair], problems: Iterable[str],
               shown: int = SHOWN_PAIRS) -> None:
    # names and file names: HTML escaped, and no bidi override or control character shown raw
    def e(text: object) -> str:
        return html.escape(escape_hidden(str(text)))
    rows = "\n".join(
        f'<tr><td>{rank}</td><td><a href="#pair-{rank}">{e(p.first.student)} and {e(p.second.student)}</a></td>'
        f"<td>{p.similarity:.0%}</td><td>{p.shares[0]:.0%} / {p.shares[1]:.0%}</td><td>{p.tokens}</td></tr>"
        for rank, p in enumerate(pairs[:shown], 1))
    details = "\n".join(
        f'<section id="pair-{rank}" aria-labelledby="pair-{rank}-title">'
        f'<h3 id="pair-{rank}-title">{rank}. {e(p.first.student)} and {e(p.second.student)}: {p.similarity:.0%}</h3>'
        f'<div class="side-by-side">'
        f'<figure><figcaption>{e(p.first.student)} ({p.shares[0]:.0%} of it shared)</figcaption>'
        f"<pre><code>{highlighted(p.first, p.slices[0])}</code></pre></figure>"
        f'<figure><figcaption>{e(p.second.student)} ({p.shares[1]:.0%} of it shared)</figcaption>'
        f"<pre><code>{highlighted(p.second, p.slices[1])}</code></pre></figure></div></section>"
        for rank, p in enumerate(pairs[:shown], 1))
    notes = "".join(f"<li>{e(problem)}</li>" for problem in problems)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Similarity report: {e(assignment)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1rem auto; max-width: 80rem; padding: 0 1rem; color: #1a1a1a; background: #fff; }}
table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #767676; padding: .25rem .5rem; text-align: left; }}
.side-by-side {{ display: flex; flex-wrap: wrap; gap: 1rem; }} figure {{ flex: 1 1 30rem; margin: 0; min-width: 0; }}
pre {{ overflow-x: auto; background: #f6f6f6; padding: .5rem; border: 1px solid #767676; }}
mark {{ background: #ffe066; color: #1a1a1a; outline: 1px solid #8a6d00; }}
a {{ color: #0645ad; }}
</style></head><body><main>
<h1>Similarity report: {e(assignment)}</h1>
<p>{len(students)} submissions compared pairwise; {len(pairs)} pairs share code beyond the released starter code.
The similarity of a pair is the larger of the two shares: the part of one student's answer found in the other's,
after names, strings and comments are abstracted away. It flags work for a person to read; it is not a grade and
proves nothing alone. Highlighted lines are the matching code.</p>
{"<h2>Left out</h2><ul>" + notes + "</ul>" if notes else ""}
<h2>The most similar pairs</h2>
<table><caption>The {min(shown, len(pairs))} most similar pairs (all pairs are in similarity.csv)</caption>
<thead><tr><th scope="col">Rank</th><th scope="col">Students</th><th scope="col">Similarity</th>
<th scope="col">Shares</th><th scope="col">Shared tokens</th></tr></thead>
<tbody>{rows}</tbody></table>
<h2>Side by side</h2>
{details}
</main></body></html>
"""
    Path(path).write_text(page, encoding="utf-8")


def similarity(assignment: str, root: str | Path | None = None, submissions: str | Path | None = None,
               top: int = SHOWN_PAIRS, pattern: str | None = None, out: Callable[[str], object] = print,
               lms: str | None = None) -> list[Pair]:
    """Compare the students' answers of ``assignment``; write the HTML and CSV reports; return the ranked pairs."""
    from .config import load_config
    from nbgrader.coursedir import CourseDirectory

    root = Path(root or ".").resolve()
    config = load_config(root)
    coursedir = CourseDirectory(config=config)
    release = Path(coursedir.format_path(coursedir.release_directory, ".", assignment))
    release_notebooks = {path.name: nbformat.read(path, as_version=4) for path in sorted(release.glob("*.ipynb"))}
    if not release_notebooks:
        raise SimilarityError(f"no released notebooks of {assignment} in {release} (run `course release` first)")
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="course-similarity-") as scratch:
        folder = Path(coursedir.root) / coursedir.submitted_directory
        if submissions:
            folder = Path(submissions)
            if not (folder.is_dir() and any(folder.glob(f"*/{assignment}/*.ipynb"))):
                # an LMS export: collected as `course grade` collects it, into a scratch folder
                from .collect import Collect, collect

                settings = Collect(config=config)
                collected = collect(folder, assignment, SimpleNamespace(root=scratch, submitted_directory="submitted"),
                                    {Path(name).stem for name in release_notebooks},
                                    pattern or settings.lms_pattern, lms=lms or (None if pattern else settings.lms))
                problems += [str(problem) for problem in collected.problems]
                folder = Path(scratch) / "submitted"
        students = read_answers(folder, assignment, release_notebooks, problems)
        if len(students) < 2:
            found = "".join(f"\n  {problem}" for problem in problems[:20])
            raise SimilarityError(f"{len(students)} submission(s) of {assignment} in {submissions or folder}: "
                                  f"nothing to compare{found}")
        pairs = compare(students, boilerplate_hashes(release_notebooks.values()))
    reports = root / "reports" / assignment
    reports.mkdir(parents=True, exist_ok=True)
    write_csv(reports / "similarity.csv", pairs)
    write_html(reports / "similarity.html", assignment, students, pairs, problems, shown=top)

    for problem in problems:
        out(log_text(f"course similarity: {problem}", limit=10_000))  # one line each: names can carry newlines
    out(f"course similarity: {len(students)} submissions of {assignment}, {len(pairs)} pairs share code; "
        f"the most similar:")
    for rank, pair in enumerate(pairs[:min(top, 5)], 1):
        out(log_text(f"  {rank}. {pair.first.student} and {pair.second.student}: {pair.similarity:.0%}"))
    out(f"course similarity: {reports / 'similarity.html'} and similarity.csv")
    return pairs
