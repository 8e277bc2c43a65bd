"""The instructor's semester, end to end: late work, written answers graded by hand, one student regraded.

One course (``make_course``, with a late policy in its ``nbgrader_config.py``) is graded once by
``course grade`` with real kernels in the sandbox and a real nbgrader gradebook, and shared by the
tests of this module:

* late work: nbgrader's ``timestamp.txt`` on time, a day and a half late, four days late and missing;
  the gradebook's penalty, nbgrader's export CSV, the student's feedback and ``report.md``, and plain
  ``nbgrader autograde`` applying the same penalty;
* written answers: left for manual grading by autograding, then scored and commented in nbgrader's
  formgrader (a real Jupyter server on loopback, headless Chromium), which shows the student's answer
  sanitized; the total and the feedback follow;
* one student regraded (``course grade --student``), from ``submitted/`` and from an LMS export:
  that student's autograded score follows the new notebook, every manual score and comment stays,
  and no other student's grades, files or feedback change.
"""
import csv
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup

from grading_support import (CELL_DOM_PROBLEMS, KL_SWAPPED, copy_course, course_grade, feedback_html,
                             formgrader_server, grader_environment, make_course, nbgrader, replace_function,
                             solution_notebook, student_version, submit, written_points, zipped)

pytestmark = [pytest.mark.slow]

ASSIGNMENT = "a2-losses"
NOTEBOOK = "losses"
DUE = "2026-10-05 23:59:00 UTC"
POLICY = f"""
c.SandboxedExecute.cell_timeout = 60
c.SandboxedExecute.notebook_timeout = 240
c.LatePolicy.due = {{"{ASSIGNMENT}": "{DUE}"}}
c.LatePolicy.penalty_percent = 10
c.LatePolicy.period = "day"
c.LatePolicy.cap_percent = 50
c.LatePolicy.zero_after_hours = 72
"""
AUTOGRADED_POINTS = 12  # a2-losses: softmax 2, logsumexp 1, log_softmax 1, bce 2, bce_with_logits 2, entropy 1, ce 1, kl 2
# nbgrader's own timestamp.txt, per student (None: no file).  Due 2026-10-05 23:59 UTC.
TIMESTAMPS = {
    "ontime": "2026-10-05 20:00:00 UTC",
    "late": "2026-10-07 11:59:00 UTC",      # 36 h late: 2 started days, 20% of the score
    "verylate": "2026-10-09 23:59:00 UTC",  # 96 h late: past the 72 h cutoff, score 0
    "notime": None,                         # graded as on time (the default), and reported
    "writer": "2026-10-05 22:00:00 UTC",    # on time; the written answers, the formgrader and the regrade
}
WRITER = "writer"
ENTROPY_IN_BITS = '''
def entropy(p):
    p = np.asarray(p, dtype=float)
    return -np.sum(np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0), axis=-1)
'''.strip()
# A written answer that also tries to run script in the formgrader (and in the feedback).
WRITTEN_ANSWER = (
    "WRITTEN-MARK exp overflows above about 709, so subtracting the max keeps every exponent at most 0; "
    "the common factor cancels.\n\n"
    "<script>window.pwned = 'written-script'</script>"
    "<img src=x onerror=\"window.pwned = 'written-img'\"> "
    "[see this](javascript:window.pwned='written-link') "
    "<a href=\"javascript:window.pwned='written-anchor'\">or this</a>\n"
)
KL_ANSWER = "WRITTEN-KL the two directions weight the log-ratio by different distributions."


def correct():
    return student_version(solution_notebook(ASSIGNMENT))


PLAIN_ANSWER = "Subtracting the max keeps exp from overflowing and leaves the softmax unchanged."


def with_written_answers(notebook, softmax_answer=WRITTEN_ANSWER):
    notebook = nbformat.from_dict(notebook)
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id == "written_softmax_max":
            cell.source = softmax_answer
        elif grade_id == "written_kl_not_symmetric":
            cell.source = KL_ANSWER
    return notebook


def released_written_answers(notebook):
    """The student left the written answers as released (``YOUR ANSWER HERE``)."""
    notebook = nbformat.from_dict(notebook)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id", "").startswith("written_"):
            cell.source = "YOUR ANSWER HERE"
    return notebook


def submit_with_time(course, student, notebook, timestamp):
    path = submit(course, student, ASSIGNMENT, notebook)
    stamp = path.parent / "timestamp.txt"
    if timestamp is None:
        stamp.unlink(missing_ok=True)
    else:
        stamp.write_text(timestamp)
    return path


def gradebook(course):
    from nbgrader.api import Gradebook

    return Gradebook(f"sqlite:///{Path(course) / 'gradebook.db'}")


def grade_rows(course, student):
    """Everything the gradebook holds about one student's submission, as plain data."""
    with gradebook(course) as book:
        submission = book.find_submission(ASSIGNMENT, student)
        notebook = book.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student)
        return {
            "timestamp": submission.timestamp,
            "late_submission_penalty": notebook.late_submission_penalty,
            "score": submission.score,
            "grades": {g.name: (g.auto_score, g.manual_score, g.extra_credit, g.needs_manual_grade)
                       for g in notebook.grades},
            "comments": {c.name: (c.auto_comment, c.manual_comment) for c in notebook.comments},
        }


def manual_state(course, student):
    """The instructor's own entries for a student: manual scores, extra credit and comments."""
    rows = grade_rows(course, student)
    return ({name: (manual, extra) for name, (_, manual, extra, _) in rows["grades"].items()
             if manual is not None or extra is not None},
            {name: manual for name, (_, manual) in rows["comments"].items() if manual})


def files_of(course, student):
    """{path: (bytes, mtime_ns)} of a student's submitted, autograded and feedback files."""
    found = {}
    for stage in ("submitted", "autograded", "feedback"):
        folder = Path(course) / stage / student / ASSIGNMENT
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                found[str(path.relative_to(course))] = (path.read_bytes(), path.stat().st_mtime_ns)
    return found


def everyone_but(course, student):
    others = [s for s in TIMESTAMPS if s != student]
    return {s: (grade_rows(course, s), files_of(course, s)) for s in others}


def csv_rows(course):
    with open(Path(course) / "grades.csv", newline="") as handle:
        return {row["student_id"]: row for row in csv.DictReader(handle) if row["assignment"] == ASSIGNMENT}


def text_of(html):
    return " ".join(BeautifulSoup(html, "html.parser").get_text(" ").split())


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The course, graded once by ``course grade`` (every test below reads or extends it)."""
    course = make_course(tmp_path_factory.mktemp("semester") / "course", extra_config=POLICY)
    for student, timestamp in TIMESTAMPS.items():
        notebook = correct()
        if student == WRITER:
            notebook = with_written_answers(replace_function(notebook, "kl_divergence", KL_SWAPPED))
        elif student == "notime":
            notebook = released_written_answers(notebook)
        else:
            notebook = with_written_answers(notebook, PLAIN_ANSWER)
        submit_with_time(course, student, notebook, timestamp)
    result = course_grade(course, ASSIGNMENT, check_codes=(0,))
    return dict(course=course, log=result.stdout + result.stderr)


# --------------------------------------------------------------------------- late work


def test_late_policy_in_gradebook_csv_feedback_and_report(graded):
    course = graded["course"]
    expected_penalty = {"ontime": 0.0, "late": 0.2 * AUTOGRADED_POINTS, "verylate": float(AUTOGRADED_POINTS),
                        "notime": 0.0, WRITER: 0.0}
    with gradebook(course) as book:
        assert book.find_assignment(ASSIGNMENT).duedate.isoformat(" ") == "2026-10-05 23:59:00", "due date not written"
    exported = csv_rows(course)
    for student, penalty in expected_penalty.items():
        rows = grade_rows(course, student)
        assert (rows["late_submission_penalty"] or 0.0) == pytest.approx(penalty, abs=1e-9), (student, rows, graded["log"][-3000:])
        raw = AUTOGRADED_POINTS - (2 if student == WRITER else 0)  # the writer's kl_divergence is wrong
        row = exported[student]
        assert float(row["raw_score"]) == pytest.approx(raw, abs=1e-9), row
        assert float(row["late_submission_penalty"] or 0) == pytest.approx(penalty, abs=1e-9), row
        assert float(row["score"]) == pytest.approx(raw - penalty, abs=1e-9), row
        assert float(row["max_score"]) == pytest.approx(AUTOGRADED_POINTS + sum(written_points(ASSIGNMENT).values())), row

    pages = {student: text_of(feedback_html(course, student, ASSIGNMENT)) for student in TIMESTAMPS}
    assert "Submitted 1 day, 12 hours after the due date" in pages["late"], pages["late"][-2000:]
    assert "a penalty of 2.4 points" in pages["late"], pages["late"][-2000:]
    assert "10% of the score per started day late, at most 50%; 0 after 72 hours" in pages["late"]
    assert "Late submission penalty (Score: -2.4)" in pages["late"]
    assert "Submitted 4 days after the due date" in pages["verylate"], pages["verylate"][-2000:]
    assert "a penalty of 12 points" in pages["verylate"]
    assert "no submission time; it was graded as on time" in pages["notime"], pages["notime"][-2000:]
    for student in ("ontime", WRITER):
        assert "after the due date" not in pages[student] and "submission time" not in pages[student], student

    report = (course / "reports" / ASSIGNMENT / "report.md").read_text()
    lines = {student: [line for line in report.splitlines() if line.startswith(f"| {student} |")]
             for student in TIMESTAMPS}
    assert any("1 day, 12 hours after the due date" in line and "2.4 points" in line for line in lines["late"]), report
    assert any("4 days after the due date" in line and "12 points" in line for line in lines["verylate"]), report
    assert any("graded as on time" in line for line in lines["notime"]), report
    assert not any("due date" in line for line in lines["ontime"] + lines[WRITER]), report
    # Written answers wait for a person: they are no check that students "fail".
    checks = report.split("## Checks students fail most")[1].split("##")[0]
    assert "test_kl_divergence" in checks and not any(f"`{answer}`" in checks for answer in written_points(ASSIGNMENT))


def test_plain_nbgrader_autograde_applies_the_same_late_penalty(graded, tmp_path):
    course = copy_course(graded["course"], tmp_path / "copy")
    with gradebook(course) as book:  # forget what course grade decided, so that nbgrader has to decide again
        book.find_submission_notebook(NOTEBOOK, ASSIGNMENT, "late").late_submission_penalty = None
        book.db.commit()
    shutil.rmtree(course / "autograded" / "late")
    env = grader_environment(course)
    nbgrader(course, "autograde", ASSIGNMENT, "--student=late", "--force", env=env)
    by_course_grade = grade_rows(graded["course"], "late")
    by_nbgrader = grade_rows(course, "late")
    assert by_nbgrader["late_submission_penalty"] == pytest.approx(0.2 * AUTOGRADED_POINTS, abs=1e-9)
    assert by_nbgrader["late_submission_penalty"] == pytest.approx(by_course_grade["late_submission_penalty"], abs=1e-9)
    assert by_nbgrader["grades"] == by_course_grade["grades"]
    late_data = [nbformat.read(folder / "autograded" / "late" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)
                 .metadata["course"]["late"] for folder in (graded["course"], course)]
    assert late_data[0] == late_data[1], late_data


def test_feedback_after_grading_by_hand_says_the_penalty_the_export_subtracts(graded, tmp_path):
    """The late penalty is a share of the score, and written answers graded by hand raise the score after
    autograding: the feedback written then states the penalty on that score, as the export applies it."""
    course = copy_course(graded["course"], tmp_path / "copy")
    written = written_points(ASSIGNMENT)
    with gradebook(course) as book:
        for grade_id, points in written.items():
            book.find_grade(grade_id, NOTEBOOK, ASSIGNMENT, "late").manual_score = points
        book.db.commit()
    env = grader_environment(course)
    nbgrader(course, "generate_feedback", ASSIGNMENT, "--student=late", "--force", env=env)
    penalty = 0.2 * (AUTOGRADED_POINTS + sum(written.values()))
    assert grade_rows(course, "late")["late_submission_penalty"] == pytest.approx(penalty, abs=1e-9)
    page = text_of(feedback_html(course, "late", ASSIGNMENT))
    assert f"a penalty of {penalty:g} points" in page and f"a penalty of {0.2 * AUTOGRADED_POINTS:g} points" not in page, page
    assert page.count("after the due date") == 1, page  # one late note, the new one
    assert f"Late submission penalty (Score: -{round(penalty, 2)})" in page, page  # nbgrader's header agrees

    # The due date moved after grading (an extension for everyone): the feedback says so, the penalty goes.
    with open(course / "nbgrader_config.py", "a") as config:
        config.write(f'\nc.LatePolicy.due = {{"{ASSIGNMENT}": "2026-10-08 23:59:00 UTC"}}\n')
    nbgrader(course, "generate_feedback", ASSIGNMENT, "--student=late", "--force", env=env)
    assert grade_rows(course, "late")["late_submission_penalty"] in (None, 0.0)
    page = text_of(feedback_html(course, "late", ASSIGNMENT))
    assert "after the due date" not in page and "Late submission" not in page, page


# --------------------------------------------------------------------------- written answers, by hand


def test_autograding_leaves_written_answers_for_manual_grading(graded):
    course = graded["course"]
    written = written_points(ASSIGNMENT)
    assert written == {"written_softmax_max": 2, "written_kl_not_symmetric": 2}
    with gradebook(course) as book:
        for student in TIMESTAMPS:
            notebook = book.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student)
            grades = {g.name: g for g in notebook.grades}
            comments = {c.name: c for c in notebook.comments}
            for grade_id, points in written.items():
                grade = grades[grade_id]
                if student == "notime":  # left as released: nbgrader scores no response 0, nothing to grade
                    assert not grade.needs_manual_grade and grade.auto_score == 0, (student, grade_id)
                    assert comments[grade_id].auto_comment == "No response.", (student, grade_id)
                else:
                    assert grade.needs_manual_grade and grade.auto_score is None, (student, grade_id)
                assert grade.score == 0 and grade.max_score == points, (student, grade_id)
            autograded = AUTOGRADED_POINTS - (2 if student == WRITER else 0)
            assert notebook.max_score == AUTOGRADED_POINTS + sum(written.values())
            assert notebook.max_written_score == sum(written.values()) and notebook.written_score == 0
            assert notebook.code_score == pytest.approx(autograded) and notebook.score == pytest.approx(autograded)
            assert notebook.needs_manual_grade == (student != "notime"), student


@pytest.fixture(scope="module")
def formgrader(graded, tmp_path_factory):
    """A real Jupyter server with nbgrader's formgrader, on loopback, in the graded course."""
    course = graded["course"]
    with formgrader_server(course, tmp_path_factory.mktemp("jupyter-home")) as server:
        yield server


PAGE_PROBLEMS = CELL_DOM_PROBLEMS
MANUAL_SCORE = 1.5
COMMENT = "FORMGRADER-COMMENT: right idea; say why the result is unchanged."


@pytest.mark.browser
def test_formgrader_scores_a_written_answer_and_the_total_and_feedback_follow(graded, formgrader, browser):
    course = graded["course"]
    with gradebook(course) as book:
        notebook_id = book.find_submission_notebook(NOTEBOOK, ASSIGNMENT, WRITER).id
    before = grade_rows(course, WRITER)["score"]
    context = browser.new_context()
    dialogs = []
    try:
        page = context.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        # As an instructor does: log in with the server's token (a login cookie for the formgrader's API calls).
        submission_page = f"/formgrader/submissions/{notebook_id}/"
        page.goto(f"{formgrader['base']}/login?next={urllib.parse.quote(submission_page)}", wait_until="load")
        page.fill("#password_input", formgrader["token"])
        with page.expect_navigation(wait_until="load") as navigation:
            page.click("#login_submit")
        response = navigation.value
        assert response is not None and response.status == 200 and page.url.endswith(submission_page), \
            f"{page.url}: {response and response.status}"
        score_box = page.locator("input.score#written_softmax_max")
        try:  # the formgrader binds its inputs once it has loaded the grades and comments from its API
            page.wait_for_function("() => window.formgrader && formgrader.grades && formgrader.grades.loaded"
                                   " && formgrader.comments && formgrader.comments.loaded", timeout=60_000)
        except Exception as error:
            raise AssertionError(f"the formgrader did not load its grades: {error}\n"
                                 + formgrader["log"].read_text()[-3000:]) from None
        page.wait_for_timeout(500)  # any injected handler (onerror) fires by now
        walked = page.evaluate(PAGE_PROBLEMS)
        assert "WRITTEN-MARK exp overflows" in walked["text"], walked["text"][:3000]
        assert not walked["found"], walked["found"]
        assert walked["pwned"] is None and not dialogs, (walked["pwned"], dialogs)
        assert page.locator("a[href^='javascript' i]").count() == 0

        # The formgrader saves on change: type, leave the field, and wait for its PUT to the API.
        with page.expect_response(lambda r: "/formgrader/api/grade/" in r.url and r.request.method == "PUT") as saved:
            score_box.fill(str(MANUAL_SCORE))
            score_box.press("Tab")
        assert saved.value.status == 200, saved.value.text()
        comment_box = page.locator("textarea.comment#written_softmax_max-comment")
        with page.expect_response(lambda r: "/formgrader/api/comment/" in r.url and r.request.method == "PUT") as saved:
            comment_box.fill(COMMENT)
            comment_box.press("Tab")
        assert saved.value.status == 200, saved.value.text()
        assert page.evaluate("() => window.pwned === undefined") and not dialogs
    finally:
        context.close()

    after = grade_rows(course, WRITER)
    assert after["grades"]["written_softmax_max"][1] == pytest.approx(MANUAL_SCORE)
    assert after["comments"]["written_softmax_max"][1] == COMMENT
    assert after["score"] == pytest.approx(before + MANUAL_SCORE), (before, after["score"])

    env = grader_environment(course)
    nbgrader(course, "generate_feedback", ASSIGNMENT, f"--student={WRITER}", "--force", env=env)
    page = text_of(feedback_html(course, WRITER, ASSIGNMENT))
    assert "Written response (Score: 1.5 / 2.0)" in page, page[:3000]
    assert COMMENT in page, page[-3000:]
    assert f"(Score: {round(before + MANUAL_SCORE, 2)} / 16.0)" in page, page[:1500]
    soup = BeautifulSoup(feedback_html(course, WRITER, ASSIGNMENT), "html.parser")
    assert "WRITTEN-MARK" in page
    assert not [s for s in soup.find_all("script") if "pwned" in s.get_text()]
    assert not [a for a in soup.find_all(href=True) if a["href"].strip().lower().startswith("javascript")]
    assert not [t for t in soup.find_all(True) if any(name.startswith("on") for name in t.attrs)]


# --------------------------------------------------------------------------- one student regraded


def override_by_hand(course):
    """An instructor's entries: a manual score on an autograded test cell and on a written answer, a comment."""
    with gradebook(course) as book:
        book.find_grade("test_softmax", NOTEBOOK, ASSIGNMENT, WRITER).manual_score = 1.0
        book.find_grade("written_kl_not_symmetric", NOTEBOOK, ASSIGNMENT, WRITER).manual_score = 2.0
        book.find_comment("written_kl_not_symmetric", NOTEBOOK, ASSIGNMENT, WRITER).manual_comment = "KL-COMMENT: good."
        book.db.commit()


def test_regrading_one_student_keeps_manual_grades_and_touches_no_one_else(graded):
    course = graded["course"]
    override_by_hand(course)
    manual_before = manual_state(course, WRITER)
    assert manual_before[0]["test_softmax"] == (1.0, None) and "written_kl_not_symmetric" in manual_before[1]
    others_before = everyone_but(course, WRITER)
    assert grade_rows(course, WRITER)["grades"]["test_kl_divergence"][0] == 0  # the swapped KL

    # The resubmission after a complaint: kl_divergence fixed, the same written answers, still on time.
    submit_with_time(course, WRITER, with_written_answers(correct()), TIMESTAMPS[WRITER])
    course_grade(course, ASSIGNMENT, "--student", WRITER, check_codes=(0,))

    rows = grade_rows(course, WRITER)
    assert rows["grades"]["test_kl_divergence"][0] == 2, rows  # the new notebook's autograded score
    assert rows["grades"]["test_softmax"][0] == 2 and rows["grades"]["test_softmax"][1] == 1.0, rows
    assert manual_state(course, WRITER) == manual_before
    assert everyone_but(course, WRITER) == others_before
    feedback = text_of(feedback_html(course, WRITER, ASSIGNMENT))  # rewritten from the new grades
    assert "KL-COMMENT: good." in feedback, feedback[-3000:]
    assert f"(Score: {round(rows['score'], 2)} / 16.0)" in feedback, feedback[:1500]

    # Re-run unchanged: --student regrades it anyway, and still nobody else.
    stamp = (course / "autograded" / WRITER / ASSIGNMENT / f"{NOTEBOOK}.ipynb").stat().st_mtime_ns
    course_grade(course, ASSIGNMENT, "--student", WRITER, check_codes=(0,))
    assert (course / "autograded" / WRITER / ASSIGNMENT / f"{NOTEBOOK}.ipynb").stat().st_mtime_ns > stamp
    assert manual_state(course, WRITER) == manual_before
    assert everyone_but(course, WRITER) == others_before




def test_a_resubmission_in_an_lms_export_regrades_only_that_student(graded, tmp_path):
    course = graded["course"]
    override_by_hand(course)  # whatever ran before, an instructor's entries are in place
    manual_before = manual_state(course, WRITER)
    others_before = everyone_but(course, WRITER)
    students_before = sorted(p.name for p in (course / "submitted").iterdir())

    resubmitted = nbformat.writes(with_written_answers(replace_function(correct(), "entropy", ENTROPY_IN_BITS)))
    export = tmp_path / "canvas-export.zip"
    export.write_bytes(zipped({
        f"{WRITER}_late_101_201_{NOTEBOOK}.ipynb": resubmitted,
        # Others in the same export, changed: not this regrade's business.
        f"late_102_202_{NOTEBOOK}.ipynb": nbformat.writes(replace_function(correct(), "softmax", "def softmax(x): return x")),
        f"newcomer_103_203_{NOTEBOOK}.ipynb": nbformat.writes(correct()),
    }))
    result = course_grade(course, ASSIGNMENT, "--submissions", str(export), "--student", WRITER, check_codes=(1,))
    # the export carries no time, and the assignment has a due date: one problem that says so, and the rule
    no_time = [line for line in result.stdout.splitlines() if "no submission time" in line]
    assert len(no_time) == 1 and WRITER in no_time[0] and "graded as on time" in no_time[0], result.stdout

    assert (course / "submitted" / WRITER / ASSIGNMENT / f"{NOTEBOOK}.ipynb").read_text() == resubmitted
    assert sorted(p.name for p in (course / "submitted").iterdir()) == students_before  # no newcomer
    with gradebook(course) as book:
        assert "newcomer" not in {s.id for s in book.students}
        assert {s.student.id for s in book.assignment_submissions(ASSIGNMENT)} == set(TIMESTAMPS)
    rows = grade_rows(course, WRITER)
    assert rows["grades"]["test_entropy"][0] == 0 and rows["grades"]["test_kl_divergence"][0] == 2, rows
    assert manual_state(course, WRITER) == manual_before
    assert everyone_but(course, WRITER) == others_before
