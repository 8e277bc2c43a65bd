"""INSTRUCTORS.md stays true: its `sh` blocks run in order on a scratch course built from a synthetic LMS export,
with late students, a missing student, a resubmission and a copied pair, and the results are what the guide says.
Real components: nbgrader's gradebook, sandboxed kernels (`course grade`), copydetect, the export plug-in."""
import csv
import json
import re
import subprocess
import zipfile

import nbformat
import pytest

from grading_support import ROOT, environment, make_course, replace_function, scores, solution_notebook, student_version

GUIDE = ROOT / "INSTRUCTORS.md"
ASSIGNMENT = "a2-losses"

# A wrong kl_divergence: the arguments swapped (KL(Q || P)), a mistake the hidden checks know.
SWAPPED_KL = '''def kl_divergence(p, q):
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    safe_q = np.where(q > 0, q, 1.0)
    terms = np.where(q > 0, q * (np.log(safe_q) - np.log(np.where(q > 0, p, 1.0))), 0.0)
    return np.sum(terms, axis=-1)
'''

# Honest students write some functions their own way (correct all the same).
OWN_WAY = {
    "softmax": '''def softmax(logits, temperature=1.0, axis=-1):
    scaled = np.array(logits, dtype=np.float64) / temperature
    shifted = np.exp(scaled - np.max(scaled, axis=axis, keepdims=True))
    return shifted / np.sum(shifted, axis=axis, keepdims=True)
''',
    "entropy": '''def entropy(p):
    probs = np.array(p, dtype=float)
    logs = np.zeros_like(probs)
    mask = probs > 0
    logs[mask] = np.log(probs[mask])
    return -(probs * logs).sum(axis=-1)
''',
    "binary_cross_entropy": '''def binary_cross_entropy(probs, labels, eps=1e-7):
    probs = np.minimum(np.maximum(np.array(probs, float), eps), 1.0 - eps)
    labels = np.array(labels, float)
    losses = -(labels * np.log(probs)) - (1.0 - labels) * np.log(1.0 - probs)
    return float(losses.mean())
''',
}

# The copier renames every variable of leeann's notebook and rewords nothing else.
RENAMES = {"z": "vals", "e": "ex", "x": "inp", "m": "top", "p": "dist", "q": "model", "y": "target",
           "terms": "parts", "safe_p": "sp", "safe_q": "sq"}

CANVAS_ROSTER = """Student,ID,SIS User ID,SIS Login ID,Section,a2-losses (40012),Current Score,Final Score
    Points Possible,,,,,16.00,(read only),(read only)
"Smith, Jane",5001,S1001,smithjane,Section 1,,,
"Doe, John",5002,S1002,jd77,Section 1,,,
"Lee, Ann",5003,S1003,leeann,Section 1,,,
"Copy, Cat",5004,S1004,ccopy,Section 2,,,
"Comer, Late",5005,S1005,latecomer,Section 2,,,
"O'Brien, Mary",5006,S1006,mobrien,Section 2,,,
"""


def guide_commands():
    """The `sh` blocks of the guide, in order."""
    return re.findall(r"^```sh\n(.*?)^```", GUIDE.read_text(encoding="utf-8"), flags=re.S | re.M)


def renamed(source):
    for old, new in RENAMES.items():
        source = re.sub(rf"\b{old}\b", new, source)
    return source


def lms_export(course):
    reference = student_version(solution_notebook(ASSIGNMENT))
    mistake = replace_function(reference, "kl_divergence", SWAPPED_KL)
    own_way = replace_function(replace_function(reference, "softmax", OWN_WAY["softmax"]), "entropy", OWN_WAY["entropy"])
    another_way = replace_function(reference, "binary_cross_entropy", OWN_WAY["binary_cross_entropy"])
    copied = nbformat.from_dict(mistake)
    for cell in copied.cells:
        if cell.metadata.get("nbgrader", {}).get("solution") and cell.cell_type == "code":
            cell.source = renamed(cell.source)
    # Canvas's "Download Submissions" (lib/content_zipper.rb): <sortable name>[_LATE]_<user id>_<attachment id>_<file>,
    # the latest attempt only (a file uploaded again under its name is renamed losses-1.ipynb), no time.
    uploads = {  # due 2026-10-05 23:59 UTC; 10% per started day, zero after 72 hours
        "smithjane_5001_7001_losses-1.ipynb": reference,  # her resubmission
        "doejohn_LATE_5002_7002_losses.ipynb": own_way,  # 32 hours late: 20%
        "leeann_5003_7003_losses.ipynb": mistake,
        "copycat_5004_7004_losses.ipynb": copied,
        "comerlate_LATE_5005_7005_losses.ipynb": another_way,  # more than 72 hours late: 0
    }
    with zipfile.ZipFile(course / "lms-export.zip", "w") as archive:
        for name, notebook in uploads.items():
            archive.writestr(name, nbformat.writes(notebook))
    # GET /api/v1/courses/:course/assignments/:assignment/submissions, as the guide says to save it
    times = [(5001, "2026-10-05T23:30:00Z", False), (5002, "2026-10-07T08:00:00Z", True),
             (5003, "2026-10-05T12:00:00Z", False), (5004, "2026-10-05T21:00:00Z", False),
             (5005, "2026-10-09T12:00:00Z", True), (5006, None, False)]
    (course / "submissions.json").write_text(json.dumps(
        [{"user_id": user, "submitted_at": at, "late": late} for user, at, late in times]))
    (course / "canvas-gradebook.csv").write_text(CANVAS_ROSTER, encoding="utf-8")


@pytest.fixture(scope="module")
def semester(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("guide") / "course")
    lms_export(course)
    results = []
    for block in guide_commands():
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=course, env=environment(),
                                capture_output=True, text=True, timeout=1200)
        results.append((block, result))
        assert result.returncode == 0, f"the guide's step failed:\n{block}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return course, results


def output_of(results, command):
    return next(r.stdout + r.stderr for block, r in results if block.lstrip().startswith(command))


def test_the_guide_has_a_command_for_each_step():
    blocks = guide_commands()
    for command in ("course release", "cat >> nbgrader_config.py",
                    "course grade a2-losses --lms canvas --submissions lms-export.zip --submission-times",
                    "nbgrader generate_feedback", "course similarity", "course export --lms canvas",
                    "course grade a2-losses --student", "python grader_tests/make_references.py"):
        assert any(block.lstrip().startswith(command) for block in blocks), command
    headings = re.findall(r"^## \d+\. (.*)$", GUIDE.read_text(encoding="utf-8"), flags=re.M)
    for topic in ("Adopt", "JupyterHub", "Release", "late policy", "Collect", "written answers", "copied work",
                  "export the grades", "Regrade one student", "hidden check", "Add an assignment"):
        assert any(topic.lower() in h.lower() for h in headings), topic


@pytest.mark.slow
def test_a_semester_run_from_the_guide(semester):
    course, results = semester
    points = scores(course, ASSIGNMENT)
    full = 12.0  # the autograded points of a2-losses; the written answers wait for the formgrader
    assert points["canvas-5001"]["_total"] == full  # the resubmission
    assert points["canvas-5002"]["_total"] == full and points["canvas-5003"]["test_kl_divergence"] == 0
    assert "canvas-5006" not in points  # submitted nothing

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        penalty = {s.student.id: s.late_submission_penalty for s in gradebook.assignment_submissions(ASSIGNMENT)}
        written = [g for s in gradebook.assignment_submissions(ASSIGNMENT) for n in s.notebooks for g in n.grades
                   if g.cell.cell_type == "markdown"]
    assert penalty["canvas-5001"] == 0 and penalty["canvas-5003"] == 0
    assert penalty["canvas-5002"] == pytest.approx(0.2 * full)
    assert penalty["canvas-5005"] == pytest.approx(full)
    assert written and all(g.needs_manual_grade for g in written)

    feedback = (course / "feedback" / "canvas-5002" / ASSIGNMENT / "losses.html").read_text()
    assert "1 day, 8 hours" in feedback and "penalty of 2.4 points" in feedback
    report = (course / "reports" / ASSIGNMENT / "report.md").read_text()
    assert "canvas-5002" in report and "after the due date" in report
    assert "no submission time" not in report  # every time came from the LMS

    similarity = list(csv.DictReader(open(course / "reports" / ASSIGNMENT / "similarity.csv", encoding="utf-8")))
    # the copied pair ranks first (tied, since copydetect abstracts names, with the reference and the swapped-argument
    # mistake: the same tokens; ties are listed by student id)
    copied = next(row for row in similarity if {row["student_a"], row["student_b"]} == {"canvas-5003", "canvas-5004"})
    assert copied["similarity"] == similarity[0]["similarity"] and float(copied["similarity"]) > 0.95, similarity[:3]

    exported = {row[0]: row[-1] for row in csv.reader(open(course / "canvas-grades.csv", encoding="utf-8"))}
    assert exported["Smith, Jane"] == "12" and exported["Doe, John"] == "9.6" and exported["Comer, Late"] == "0"
    assert exported["O'Brien, Mary"] == "0"  # on the roster, no submission
    said = output_of(results, "course export")
    assert "no submission: O'Brien, Mary" in said and "NOT IN THE ROSTER" not in said

    regraded = output_of(results, "course grade a2-losses --student")
    assert "canvas-5003" in regraded and "1 submission" in regraded

    fresh = json.loads((course / "references-new" / f"{ASSIGNMENT}.json").read_text())
    assert fresh["checks"]


@pytest.mark.slow
def test_the_guide_is_not_on_the_student_site():
    site = ROOT / "_build" / "html"
    assert site.is_dir(), "build the site first (make book)"
    assert not [p for p in site.rglob("*") if "INSTRUCTORS" in p.name or "instructors" in p.name.lower()]
    assert all("Grade the written answers by hand" not in p.read_text(errors="ignore") for p in site.rglob("*.html"))
