"""Student output never runs in anyone's browser, and never exhausts the grader.

Submissions that attack the pages people open (the feedback, nbgrader's formgrader, the report of
``course grade``) with every output type and every cell type a student controls, and submissions
that flood the grader with messages (display data, display updates, comms, results during a hidden
check).  They are graded with real kernels in the sandbox through ``nbgrader autograde`` and
``course grade``; the pages are then parsed (the formgrader's, as headless Chromium builds it from a
real Jupyter server on loopback), and the grader's own peak memory is read from the kernel
(``getrusage``) when it exits.
"""
import html as html_module
import re
import subprocess

import nbformat
import pytest
from bs4 import BeautifulSoup

from grading_support import (CELL_DOM_PROBLEMS, add_cell, course_grade, feedback_html, formgrader_server,
                             grader_environment, make_course, max_points, nbgrader, peak_rss, peak_rss_wrapper, scores,
                             solution_notebook, student_version, submit)

pytestmark = [pytest.mark.slow]

ASSIGNMENT = "a2-losses"
NOTEBOOK = "losses.ipynb"
LIMITS = """
c.SandboxedExecute.cell_timeout = 60
c.SandboxedExecute.notebook_timeout = 240
"""
SCRIPT_URL = re.compile(r"^\s*(javascript|vbscript|data\s*:\s*text/html)", re.I)
MATHJAX_HTML = re.compile(r"\\(href|class|cssId|style|require|unicode|data|bbox|html)(?![A-Za-z])")
# A student id and a notebook-level string with HTML and a newline in it, for report.md and the summary.
HOSTILE_STUDENT = "eve<img src=x onerror=alert(1)>"

# Every kind of output a kernel can make, each carrying a marker the test looks for in the page.
OUTPUT_ATTACKS = r'''
from IPython.display import HTML, Javascript, Markdown, Latex, display, update_display
display(HTML("<script>window.pwned = 'html'</script>MARK-html"))
display(Javascript("window.pwned = 'js'"))
display({"image/svg+xml": "<svg onload=alert(1)></svg>", "text/plain": "MARK-svg"}, raw=True)
display({"text/markdown": "MARK-markdown-output [x](javascript:alert(1)) <img src=x onerror=alert(1)>"}, raw=True)
display({"text/latex": r"MARK-latex $\href{javascript:alert(1)}{x}$ <script>alert(1)</script>"}, raw=True)
display({"image/png": '" onerror="alert(1)', "text/plain": "MARK-bad-png"}, raw=True)
png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
display({"image/png": png}, metadata={"image/png": {"width": "1 onerror=alert(1)", "height": 1}}, raw=True)
display({"image/png": png}, metadata={"filenames": {"image/png": "javascript:alert(1)"}}, raw=True)
display({"text/plain": "MARK-before-update"}, raw=True, display_id="updated")
update_display({"text/html": "<script>window.pwned = 'update'</script>", "text/plain": "MARK-after-update",
                "image/png": '"><script>alert(1)</script>'},
               metadata={"image/png": {"width": "1 onerror=alert(1)"}}, raw=True, display_id="updated")
display({"text/plain": "MARK-display-id-repeat"}, raw=True, display_id="updated")
kernel = get_ipython().kernel
parent = kernel.get_parent()
for msg_type, content in [
        ("stream", {"name": 'stdout" onmouseover="alert(1)', "text": "MARK-stream-name"}),
        ("execute_result", {"execution_count": "<script>alert(1)</script>", "data": {"text/plain": "MARK-count"}, "metadata": {}}),
        ("display_data", {"data": {"text/html": "<img src=x onerror=alert(1)>", "text/plain": "MARK-raw-message"},
                          "metadata": {"text/html": {"isolated": True}}, "transient": {}}),
        ("update_display_data", {"data": {"text/html": "<script>alert(2)</script>"}, "metadata": {},
                                 "transient": {"display_id": "updated"}}),
        ("error", {"ename": "<script>alert(3)</script>", "evalue": "MARK-error", "traceback": ["<b onclick=alert(1)>x</b>"]})]:
    kernel.session.send(kernel.iopub_socket, msg_type, content, parent=parent, ident=b"stream")
'''
MARKDOWN_ATTACK = r"""MARK-markdown-cell <script>window.pwned = 'markdown'</script><img src=x onerror="window.pwned = 'img'">
[inline](javascript:alert(1)) [spaced](java	script:alert(1)) [encoded](JaVa%73cript:alert(1)) <javascript:alert(1)>
[entity](java&#x73;cript:alert(1)) [reference][r] ![image](javascript:alert(1)) [data](data:text/html;base64,PHNjcmlwdD4=)
<a href="javascript:alert(1)">a</a> <iframe src="javascript:alert(1)"></iframe> <svg onload=alert(1)></svg>

$\href{javascript:alert(1)}{MathJax link}$ $$\class{x}{y} \style{color:red}{z} \cssId{i}{j}$$ &#92;href{javascript:alert(1)}{e}

[r]: javascript:alert(1)
"""
RAW_ATTACK = "MARK-raw-cell <script>window.pwned = 'raw'</script><img src=x onerror=alert(1)>"


def correct():
    return student_version(solution_notebook(ASSIGNMENT))


def attacker():
    notebook = add_cell(correct(), OUTPUT_ATTACKS, position=2)
    notebook.cells.insert(1, nbformat.v4.new_markdown_cell(MARKDOWN_ATTACK, metadata={"tags": ['x" onclick="alert(1)']}))
    notebook.cells[1]["attachments"] = {"a.svg": {"image/svg+xml": "<svg onload=alert(1)></svg>"}}
    notebook.cells.insert(2, nbformat.v4.new_raw_cell(RAW_ATTACK))
    notebook.cells.insert(3, nbformat.v4.new_raw_cell(RAW_ATTACK, metadata={"raw_mimetype": "text/html"}))
    return notebook


MARKERS = ["MARK-html", "MARK-svg", "MARK-markdown-output", "MARK-latex", "MARK-after-update", "MARK-stream-name",
           "MARK-count", "MARK-raw-message", "MARK-error", "MARK-markdown-cell", "MARK-raw-cell"]


def flood(kind):
    """A correct submission that also floods the grader with about 400 MiB of one kind of message."""
    megabyte = '"x" * (1 << 20)'
    cells = {
        "comms": f"""
from comm import create_comm
big = {megabyte}
comm = create_comm(target_name="jupyter.widget", data={{"state": {{"_model_module": "flood", "_model_name": "Flood"}}}})
for i in range(400):
    comm.send({{"method": "update", "state": {{f"key{{i}}": big}}}})
from IPython.display import display
for i in range(100):
    display({{"text/plain": big}}, raw=True)
""",
        "display-updates": f"""
from IPython.display import display, update_display
big = {megabyte}
for i in range(400):
    display(i, display_id=f"flood-{{i}}")
for i in range(400):
    update_display({{"text/plain": big + str(i)}}, raw=True, display_id=f"flood-{{i}}")
""",
        "results-during-a-check": f"""
_honest_softmax = softmax
def softmax(*args, **kwargs):
    from IPython.display import display
    big = {megabyte}
    for i in range(400):
        display({{"application/vnd.course.judge-result+json": big + str(i)}}, raw=True)
    return _honest_softmax(*args, **kwargs)
""",
    }
    notebook = correct()
    if kind == "results-during-a-check":
        return add_cell(notebook, cells[kind], after_grade_id="softmax")
    return add_cell(notebook, cells[kind], position=2)


FLOODS = ["comms", "display-updates", "results-during-a-check"]


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("student-content") / "course", extra_config=LIMITS)
    return course, grader_environment(course)


@pytest.fixture(scope="module")
def autograded(course):
    """The attack and the honest baseline through nbgrader autograde and generate_feedback."""
    course, env = course
    submit(course, "attacker", ASSIGNMENT, attacker())
    submit(course, "honest", ASSIGNMENT, correct())
    result = nbgrader(course, "autograde", ASSIGNMENT, check=False, timeout=900, env=env)
    nbgrader(course, "generate_feedback", ASSIGNMENT, check=False, env=env)
    return dict(course=course, log=result.stdout + result.stderr, scores=scores(course, ASSIGNMENT))


def page_problems(page, baseline):
    """Where a student's bytes became script: scripts, event handlers, script URLs, MathJax HTML commands.

    ``baseline`` is the same page for an honest submission: the template's own scripts are the
    only ones allowed, and only inside the notebook's cells can a student's bytes appear."""
    problems = []
    soup, honest = BeautifulSoup(page, "html.parser"), BeautifulSoup(baseline, "html.parser")
    allowed_scripts = {script_key(s) for s in honest.find_all("script")}
    for script in soup.find_all("script"):
        if script_key(script) not in allowed_scripts:
            problems.append(f"a script that the template does not have: {str(script)[:200]}")
    for tag in soup.find_all(True):
        for name, value in tag.attrs.items():
            if name.lower().startswith("on") and not in_template(tag, honest):
                problems.append(f"event handler {name}= on <{tag.name}>: {str(tag)[:200]}")
            for item in (value if isinstance(value, list) else [value]):
                if SCRIPT_URL.match(html_module.unescape(str(item)).replace("\t", "").replace("\n", "")):
                    problems.append(f"a script URL in {name}= of <{tag.name}>: {str(tag)[:200]}")
        if tag.name in ("iframe", "object", "embed", "svg", "math", "base", "form") and not in_template(tag, honest):
            problems.append(f"an active element <{tag.name}>: {str(tag)[:200]}")
    for cell in soup.select("div.cell"):
        for text in cell.find_all(string=True):
            # MathJax never reads text inside these elements.
            skipped = text.find_parent(["pre", "code", "textarea", "script", "style"]) is not None
            if not skipped and MATHJAX_HTML.search(text):
                problems.append(f"a MathJax HTML command MathJax would run: {text.strip()[:200]}")
    return problems


def script_key(script):
    return (script.get("src"), re.sub(r"\s+", " ", re.sub(r'"[0-9a-f-]{8,}"|\b\d+\b', "", script.get_text())).strip())


def in_template(tag, honest):
    return any(t.name == tag.name and t.attrs == tag.attrs for t in honest.find_all(tag.name))


def test_feedback_shows_every_attack_as_inert_text(autograded):
    course = autograded["course"]
    page, baseline = feedback_html(course, "attacker", ASSIGNMENT), feedback_html(course, "honest", ASSIGNMENT)
    problems = page_problems(page, baseline)
    assert not problems, "\n".join(problems)
    text = BeautifulSoup(page, "html.parser").get_text()
    missing = [m for m in MARKERS if m not in text]
    assert not missing, f"these attacks did not reach the feedback as text at all: {missing}"
    assert autograded["scores"]["attacker"]["_total"] == sum(max_points(ASSIGNMENT).values()), autograded["log"][-3000:]
    assert autograded["scores"]["honest"] == autograded["scores"]["attacker"]


def test_graded_notebook_keeps_only_safe_outputs(autograded):
    notebook = nbformat.read(autograded["course"] / "autograded" / "attacker" / ASSIGNMENT / NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert set(output.get("data", {})) <= {"text/plain", "image/png", "image/jpeg"}, output
            for mime, meta in output.get("metadata", {}).items():
                assert set(meta) <= {"width", "height"} and all(isinstance(v, (int, float)) for v in meta.values()), output
            assert output.get("name", "stdout") in ("stdout", "stderr"), output
        assert "attachments" not in cell
    # Every other code cell ran, in order: each keeps the kernel's count, a number, larger than the one before
    # (the hidden checks run between them take counts too).  The attacking cell's last count was the script it
    # forged: dropped, or a number in its place, never the script.
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    attacking = next(i for i, cell in enumerate(code) if "MARK-count" in cell.source)
    counts = [cell.get("execution_count") for cell in code]
    others = counts[:attacking] + counts[attacking + 1:]
    assert 0 < attacking < len(code) - 1 and all(type(n) is int for n in others), counts
    assert others == sorted(set(others)) and others[0] >= 1, counts
    assert counts[attacking] is None or (type(counts[attacking]) is int
                                         and counts[attacking - 1] < counts[attacking] < counts[attacking + 1]), counts
    # The execute_result the kernel forged with a script for its count: it arrived once (the attack ran), its
    # count dropped (a script is no number), never the text it was sent with.
    forged = [o for c in notebook.cells for o in c.get("outputs", []) if "MARK-count" in str(o.get("data", {}))]
    assert forged, "the forged execute_result never reached the graded notebook: did the attack run?"
    assert [(o.output_type, o.get("execution_count")) for o in forged] == [("execute_result", None)], forged


@pytest.fixture(scope="module")
def formgrader(autograded, tmp_path_factory):
    """A real Jupyter server with nbgrader's formgrader, on loopback, in the course directory."""
    course = autograded["course"]
    with formgrader_server(course, tmp_path_factory.mktemp("jupyter-home")) as server:
        yield server


def submission_id(course, student):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        return gradebook.find_submission_notebook(NOTEBOOK[:-6], ASSIGNMENT, student).id


DOM_WALK = CELL_DOM_PROBLEMS


def test_formgrader_runs_no_student_script(formgrader, browser):
    pages = {}
    for student in ("attacker", "honest"):
        context = browser.new_context()
        dialogs = []
        page = context.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        url = f"{formgrader['base']}/formgrader/submissions/{submission_id(formgrader['course'], student)}/?token={formgrader['token']}"
        response = page.goto(url, wait_until="load")
        assert response is not None and response.status == 200, f"{url}: {response and response.status}"
        page.wait_for_timeout(500)  # let any injected handler (onload, onerror) fire
        walked = page.evaluate(DOM_WALK)
        pages[student] = (page.content(), walked, dialogs)
        context.close()
    content, walked, dialogs = pages["attacker"]
    assert "MARK-markdown-cell" in walked["text"] and "MARK-after-update" in walked["text"], walked["text"][:2000]
    assert not walked["found"], walked["found"]
    assert walked["pwned"] is None and not dialogs, (walked["pwned"], dialogs)
    problems = page_problems(content, pages["honest"][0])
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- course grade and report.md


def rendered_markdown_problems(markdown_text):
    """Render report.md as a Git host would (CommonMark with tables, raw HTML allowed) and look for script."""
    from markdown_it import MarkdownIt

    page = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown_text)
    problems = page_problems(f"<div class='cell'>{page}</div>", "<html></html>")
    problems += [f"a forged line: {line}" for line in markdown_text.splitlines() if "FORGED" in line and not line.startswith("|")]
    return problems


def test_course_grade_report_and_feedback_escape_student_text(tmp_path):
    course = make_course(tmp_path / "course", extra_config=LIMITS)
    submit(course, "attacker", ASSIGNMENT, attacker())
    submit(course, "honest", ASSIGNMENT, correct())
    hostile = raising_softmax(correct(), "<script>alert('report')</script>\nFORGED | line [x](javascript:alert(1))")
    submit(course, HOSTILE_STUDENT, ASSIGNMENT, hostile)
    submit(course, "mallory", ASSIGNMENT, hostile)
    stray = course / "submitted" / "mallory" / ASSIGNMENT / "<img src=x onerror=alert(1)>\nFORGED | [x](javascript:alert(1)).ipynb"
    stray.write_text("<script>x</script>\nFORGED")
    result = course_grade(course, ASSIGNMENT, "--workers", "1")  # exit 0 or 1, no traceback
    report = (course / "reports" / ASSIGNMENT / "report.md").read_text()
    problems = rendered_markdown_problems(report)
    assert not problems, "\n".join(problems) + "\n" + report
    forged = [line for line in result.stdout.splitlines() if line.startswith("FORGED")]
    assert not forged, f"a file name forged a line of the summary: {forged}\n{result.stdout}"
    page = (course / "feedback" / "attacker" / ASSIGNMENT / "losses.html").read_text()
    problems = page_problems(page, (course / "feedback" / "honest" / ASSIGNMENT / "losses.html").read_text())
    assert not problems, "\n".join(problems)


def raising_softmax(notebook, text):
    """A notebook whose softmax raises ``text``: the hidden check's verdict, and so the report, quote it."""
    return add_cell(notebook, f"def softmax(*args, **kwargs):\n    raise RuntimeError({text!r})", after_grade_id="softmax")


# --------------------------------------------------------------------------- the grader's memory


def test_flooding_the_grader_through_nbgrader_autograde_keeps_its_memory_flat(tmp_path):
    course = make_course(tmp_path / "course", extra_config=LIMITS)
    env = grader_environment(course)

    def autograde(student, notebook):
        submit(course, student, ASSIGNMENT, notebook)
        result = subprocess.run(peak_rss_wrapper("nbgrader", "autograde", ASSIGNMENT, f"--student={student}"),
                                cwd=course, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
        return peak_rss(result.stderr)[0], result.stdout + result.stderr

    honest, _ = autograde("honest", correct())
    for kind in FLOODS:
        peak, log = autograde(f"flood-{kind}", flood(kind))
        assert peak < honest + 160 * 1024**2, (
            f"{kind}: the grader grew from {honest / 1024**2:.0f} MiB (honest submission) to {peak / 1024**2:.0f} MiB")
        assert "MiB of output" in log, log[-3000:]
    nbgrader(course, "generate_feedback", ASSIGNMENT, env=env)
    for kind in FLOODS:
        assert "MiB of output" in feedback_html(course, f"flood-{kind}", ASSIGNMENT), kind
    got = scores(course, ASSIGNMENT)
    assert got["honest"]["_total"] == sum(max_points(ASSIGNMENT).values())


def test_flooding_the_grader_through_course_grade_keeps_its_memory_flat(tmp_path):
    course = make_course(tmp_path / "course", extra_config=LIMITS)
    env = grader_environment(course)

    def grade(students):
        for student, notebook in students.items():
            submit(course, student, ASSIGNMENT, notebook)
        result = subprocess.run(peak_rss_wrapper("course", "grade", ASSIGNMENT, "--no-progress", "--workers", "1"),
                                cwd=course, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode in (0, 1), result.stdout[-2000:] + result.stderr[-4000:]
        return max(peak_rss(result.stderr)), result

    honest, _ = grade({"honest": correct()})
    peak, result = grade({f"flood-{kind}": flood(kind) for kind in FLOODS})
    assert peak < honest + 160 * 1024**2, (
        f"course grade grew from {honest / 1024**2:.0f} MiB (honest submission) to {peak / 1024**2:.0f} MiB")
    got = scores(course, ASSIGNMENT)
    assert set(got) == {"honest", *(f"flood-{kind}" for kind in FLOODS)}
    report = (course / "reports" / ASSIGNMENT / "report.md").read_text()
    assert report.count("MiB of output") >= len(FLOODS), report
