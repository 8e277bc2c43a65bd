"""`course similarity`: a renamed copy planted among honest variants is found at the top; starter code,
test cells and docstrings never count as shared; nothing is graded.  No kernel: copydetect on notebooks."""
import csv
import itertools
import random
import re
import shutil
import subprocess
import sys
import zipfile

import nbformat
import pytest

from course.similarity import answer_code, release_cells, similarity, without_docstrings
from similarity_variants import ASSIGNMENT, NOTEBOOK, ROOT, VARIANTS, student_notebook, write


@pytest.fixture
def course(tmp_path):
    shutil.copy2(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    shutil.copytree(ROOT / "assignments" / ASSIGNMENT, tmp_path / "assignments" / ASSIGNMENT)
    return tmp_path


def honest_class(course, count=8, seed=7):
    release = nbformat.read(course / "assignments" / ASSIGNMENT / NOTEBOOK, as_version=4)
    # Honest students differ in most functions (any two in at least three of the four), as a class does.
    everything = list(itertools.product(range(3), repeat=len(VARIANTS)))
    random.Random(seed).shuffle(everything)
    combos = []
    for combo in everything:
        if all(sum(a != b for a, b in zip(combo, other)) >= 3 for other in combos):
            combos.append(combo)
    submitted = course / "submitted"
    chosen = {}
    for i, combo in enumerate(combos[:count]):
        chosen[f"student{i:02d}"] = dict(zip(VARIANTS, combo))
        write(submitted, f"student{i:02d}", student_notebook(release, chosen[f"student{i:02d}"]))
    return release, chosen


def test_a_renamed_copy_among_honest_variants_is_the_most_similar_pair(course):
    release, chosen = honest_class(course)
    rename = {"z": "vals", "e": "expd", "x": "inp", "m": "mx", "p": "pr", "y": "lab", "arr": "a", "biggest": "top",
              "scaled": "sc", "shifted": "sh", "total": "tot", "probs": "pp", "labels": "ll", "losses": "ls",
              "logs": "lg", "mask": "mk", "q": "qq", "t": "tt", "v": "vv", "peak": "pk", "s": "ss", "h": "hh"}
    write(course / "submitted", "copier", student_notebook(release, chosen["student03"], rename=rename))
    lines = []
    pairs = similarity(ASSIGNMENT, root=course, out=lines.append)

    top = pairs[0]
    assert {top.first.student, top.second.student} == {"student03", "copier"}, [(p.first.student, p.second.student, p.similarity) for p in pairs[:3]]
    assert top.similarity > 0.9 and top.similarity > pairs[1].similarity + 0.1
    report = (course / "reports" / ASSIGNMENT / "similarity.html").read_text()
    assert "<mark>" in report and "copier" in report and '<html lang="en">' in report
    rows = list(csv.DictReader(open(course / "reports" / ASSIGNMENT / "similarity.csv", encoding="utf-8")))
    assert {rows[0]["student_a"], rows[0]["student_b"]} == {"student03", "copier"}
    assert len(rows) == len(pairs) and [float(r["similarity"]) for r in rows] == sorted((float(r["similarity"]) for r in rows), reverse=True)
    assert any("student03 and copier" in line or "copier and student03" in line for line in lines)
    assert not (course / "gradebook.db").exists()  # it flags, never grades


def test_the_starter_code_tests_and_docstrings_are_never_shared(course):
    release = nbformat.read(course / "assignments" / ASSIGNMENT / NOTEBOOK, as_version=4)
    for student in ("untouched1", "untouched2"):
        write(course / "submitted", student, release)
    # Two students who wrote nothing but the same long docstring of their own still share no code.
    doc = '"""' + "This function computes the loss of the predictions with great care and many words. " * 3 + '"""'
    same_doc = nbformat.from_dict(release)
    for cell in same_doc.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "softmax":
            cell.source = re.sub(r'"""(.|\n)*?"""', lambda _: doc, cell.source, count=1)
            assert doc in cell.source
    write(course / "submitted", "docstring1", same_doc)
    write(course / "submitted", "docstring2", same_doc)
    assert similarity(ASSIGNMENT, root=course, out=lambda _: None) == []


def test_answer_cells_are_those_that_differ_from_the_release_whatever_their_metadata():
    release = nbformat.read(ROOT / "assignments" / ASSIGNMENT / NOTEBOOK, as_version=4)
    nb = nbformat.from_dict(release)
    nb.cells.append(nbformat.v4.new_code_cell("def helper():\n    return 42"))
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "softmax":
            cell.source = cell.source.replace("raise NotImplementedError()", "return np.exp(logits)")
    # copied code hidden in a cell that claims to be a locked test cell is still compared
    forged = nbformat.v4.new_code_cell("def copied():\n    return 7")
    forged.metadata["nbgrader"] = {"grade_id": "test_softmax", "locked": True, "grade": True, "solution": False}
    nb.cells.append(forged)
    code = answer_code(nb, release_cells(release))
    assert "def helper()" in code and "return np.exp(logits)" in code and "def copied()" in code
    assert "import numpy" not in code and "def logsumexp(" not in code  # released cells as released


def test_docstrings_go_and_line_numbers_stay():
    code = 'def f(x):\n    """Doc\n    string."""\n    return x\n'
    assert without_docstrings(code) == "def f(x):\n\n\n    return x\n"
    assert without_docstrings("def broken(:\n") == "def broken(:\n"
    assert without_docstrings('def g(): "doc"; return 1\n') == 'def g(): "doc"; return 1\n'


def test_the_command_reads_an_lms_export_and_names_what_it_left_out(course, tmp_path_factory):
    release, chosen = honest_class(course, count=3)
    export = tmp_path_factory.mktemp("export") / "submissions.zip"
    with zipfile.ZipFile(export, "w") as archive:
        for path in sorted((course / "submitted").glob(f"*/{ASSIGNMENT}/{NOTEBOOK}")):
            archive.write(path, f"{path.parts[-3]}_123_456_{NOTEBOOK}")
        archive.writestr("nobody.txt", "not a submission")
    shutil.rmtree(course / "submitted")
    result = subprocess.run([sys.executable, "-m", "course.cli", "similarity", ASSIGNMENT, "--course", str(course),
                             "--submissions", str(export)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "3 submissions of a2-losses" in result.stdout and "nobody.txt" in result.stdout
    assert not (course / "submitted").exists()  # the export is read in a scratch folder, the course untouched
    none = subprocess.run([sys.executable, "-m", "course.cli", "similarity", "a9-nothing", "--course", str(course)],
                          capture_output=True, text=True, timeout=120)
    assert none.returncode == 2 and "no released notebooks of a9-nothing" in none.stderr


def test_top_must_show_at_least_one_pair(capsys):
    from course.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["similarity", "a2-losses", "--top", "0"])
    assert stopped.value.code == 2 and "--top must be at least 1" in capsys.readouterr().err
