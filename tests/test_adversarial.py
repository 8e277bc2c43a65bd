"""Adversarial submissions against the real grader: nbgrader autograde, the bubblewrap
sandbox and the hidden checks, exactly as an instructor runs them.

Each submission is scored as an honest grader would: 0 for a non-answer however it
is dressed up, full marks for correct work with noise, and for faults the points
of the checks that ran before the fault.  The suite also checks that nothing
escapes: no process left behind, no file written outside the sandbox, no
connection made.
"""
import json
import subprocess
import threading
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from attacks import (ASSIGNMENT, BEFORE_FAULT, LIMITS, MARKER, MARKER_FOLDERS, LoopbackListener, after, attacks, correct,
                     expected_points, first, remove_markers)
from grading_support import (BIN, CgroupWatcher, cgroups_available, feedback_html, grader_environment, grading_notes,
                             make_course, max_points, nbgrader, peak_rss, peak_rss_wrapper, released_notebook, scores,
                             scratch_folder, solution_notebook, student_version, submit, submit_all)

pytestmark = [pytest.mark.slow]

# The trust attacks (floods, long answers, large files) must end by their byte budgets, never by the clock,
# however loaded the machine: a longer limit, which none of them reaches.
TRUST_LIMITS = LIMITS.replace("cell_timeout = 15", "cell_timeout = 30")


def notebook_faults(course):
    """Damaged notebooks and edited cells: {student: (notebook or raw text, expected points)}."""
    zero = "zero"
    points = max_points(ASSIGNMENT)
    nb = correct()
    deleted = nbformat.from_dict(nb)
    deleted.cells = [c for c in deleted.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_kl_divergence"]
    duplicated = nbformat.from_dict(nb)
    index = next(i for i, c in enumerate(duplicated.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "test_softmax")
    duplicated.cells.insert(index + 1, nbformat.from_dict(duplicated.cells[index]))
    # A copy of the test cell stripped of nbgrader's flags, which nbgrader's DeduplicateIds passes over.
    unflagged = nbformat.from_dict(nb)
    copy = nbformat.from_dict(unflagged.cells[index])
    copy.source = "pass  # a copy of the test cell"
    copy.metadata.nbgrader.update(grade=False, solution=False, locked=False)
    unflagged.cells.insert(index + 1, copy)
    reordered = nbformat.from_dict(nb)
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in reordered.cells]
    a, b = ids.index("kl_divergence"), ids.index("test_kl_divergence")
    reordered.cells[a], reordered.cells[b] = reordered.cells[b], reordered.cells[a]
    retyped = nbformat.from_dict(nb)
    for i, c in enumerate(retyped.cells):
        if c.metadata.get("nbgrader", {}).get("grade_id") == "entropy":
            retyped.cells[i] = nbformat.v4.new_markdown_cell(c.source, metadata=c.metadata)
    inflated = nbformat.from_dict(nb)
    for c in inflated.cells:
        if c.metadata.get("nbgrader", {}).get("grade"):
            c.metadata.nbgrader["points"] = 1000
    unlocked = nbformat.from_dict(nb)
    for c in unlocked.cells:
        if c.metadata.get("nbgrader", {}).get("grade_id") == "test_softmax":
            c.source = "pass  # the student emptied the test cell"
            c.metadata.nbgrader["grade"] = False
    without_kl = {g: p for g, p in points.items()}
    return {
        "invalid-json": ('{"cells": [ this is not json', zero),
        "wrong-nbformat": (json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": []}), zero),
        "not-a-notebook": (json.dumps({"hello": "world"}), zero),
        "not-utf8": (b"\xff\xfe{\x00\x00 binary \x80\x81", zero),
        "deleted-test-cell": (deleted, {**without_kl, "test_kl_divergence": 0}),
        "duplicated-test-cell": (duplicated, "full"),
        "duplicated-test-cell-unflagged": (unflagged, "full"),
        "reordered-cells": (reordered, {**points, "test_kl_divergence": 0}),
        "retyped-cell": (retyped, "full"),
        "inflated-points": (inflated, "full"),
        "emptied-test-cell": (unlocked, "full"),
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("adversarial") / "course", extra_config=LIMITS)
    listener = LoopbackListener()
    before = {p.pid for p in psutil.process_iter()}
    # The grader's own temporary folders (sandbox channels) go here, so the test can see they are removed.
    scratch = scratch_folder(course)
    env = grader_environment(course)
    cases = {**attacks(course, listener.port), **notebook_faults(course), "honest": (correct(), "full")}
    submit_all(course, ASSIGNMENT, {student: notebook for student, (notebook, _) in cases.items()})
    expectations = {student: expected for student, (_, expected) in cases.items()}
    try:
        started = time.time()
        with CgroupWatcher() as cgroups:
            result = nbgrader(course, "autograde", ASSIGNMENT, check=False, timeout=1800, env=env)
        elapsed = time.time() - started
        feedback = nbgrader(course, "generate_feedback", ASSIGNMENT, check=False)
        listener.close()
        first_scores = scores(course, ASSIGNMENT)
        yield dict(course=course, expectations=expectations, log=result.stdout + result.stderr, scores=first_scores,
                   listener=listener, before=before, elapsed=elapsed, feedback=feedback, scratch=scratch, cgroups=cgroups)
    finally:
        listener.close()
        remove_markers()


def test_every_submission_scores_as_an_honest_grader_would(graded):
    wrong = {}
    for student, expected in graded["expectations"].items():
        want = expected_points(expected)
        got = graded["scores"].get(student)
        got_cells = {g: s for g, s in (got or {}).items() if g != "_total"}
        if expected == "zero" and got is not None and got["_total"] == 0:
            continue
        if got_cells != want:
            wrong[student] = {"expected": want, "got": got}
    assert not wrong, json.dumps(wrong, indent=1) + "\n" + graded["log"][-4000:]


def test_broken_submissions_are_logged_with_a_reason_and_the_batch_goes_on(graded):
    log = graded["log"]
    for student in ("invalid-json", "not-a-notebook", "not-utf8"):
        assert student in log, f"the grading log does not name {student}"
        feedback = feedback_html(graded["course"], student, ASSIGNMENT)
        assert "could not be read as a Jupyter notebook" in feedback
        assert "could not be read as a Jupyter notebook" in log
    assert "is missing from the submission" in feedback_html(graded["course"], "wrong-nbformat", ASSIGNMENT)
    assert graded["scores"]["honest"]["_total"] == sum(max_points(ASSIGNMENT).values())


def test_faults_are_explained_in_the_feedback(graded):
    course = graded["course"]
    assert "ran past the time limit" in feedback_html(course, "infinite-loop", ASSIGNMENT)
    assert "kernel died" in feedback_html(course, "kills-its-kernel", ASSIGNMENT)
    assert "kernel died" in feedback_html(course, "exits-its-kernel", ASSIGNMENT)
    assert "no result came back" in feedback_html(course, "swallow-every-later-cell", ASSIGNMENT)
    assert "more than one result" in feedback_html(course, "duplicated-results", ASSIGNMENT)
    deleted = feedback_html(course, "deleted-test-cell", ASSIGNMENT)
    assert "test_kl_divergence" in deleted and "is missing from the submission" in deleted
    assert "no function named" in feedback_html(course, "reordered-cells", ASSIGNMENT)


def test_limits_hold_for_the_whole_submission(graded):
    """Memory over all its processes, and disk under every sub-folder of the channel."""
    course = graded["course"]
    assert "wrote more than 512 MiB" in feedback_html(course, "fills-a-channel-sub-folder", ASSIGNMENT)
    if not cgroups_available():
        pytest.skip(f"no cgroup per submission here ({graded['cgroups'].problem}): memory is limited per process")
    notes = grading_notes(course, "memory-in-many-processes", ASSIGNMENT)
    assert any("used more than its memory limit of 2 GiB" in note.get("reason", "") for note in notes), notes
    assert "used more than its memory limit of 2 GiB" in feedback_html(course, "memory-in-many-processes", ASSIGNMENT)


def test_each_submission_had_a_cgroup_and_none_is_left(graded):
    if not cgroups_available():
        pytest.skip(f"no cgroup per submission here ({graded['cgroups'].problem})")
    seen = graded["cgroups"].seen
    assert [f for f in seen if "/submission-" in f], "grading made no submission cgroup"
    assert not graded["cgroups"].left, f"cgroups left behind: {sorted(graded['cgroups'].left)}"


def test_nothing_escapes(graded):
    course = graded["course"]
    assert graded["listener"].connections == 0, "a submission connected to a loopback server"
    survivors = []
    for process in psutil.process_iter(["pid", "cmdline", "uids"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        # This run's kernels (and their forks) name their channel under this run's temp folder.
        if process.info["pid"] not in graded["before"] and (MARKER in cmdline or "sleep 600" in cmdline
                                                           or str(graded["scratch"]) in cmdline):
            survivors.append(cmdline)
    assert not survivors, f"processes outlived grading: {survivors}"
    for folder in [*MARKER_FOLDERS, str(course)]:
        assert not (Path(folder) / MARKER).exists(), f"a submission wrote {folder}/{MARKER}"
    left = list(graded["scratch"].iterdir())
    assert not left, f"the grader left temporary folders behind: {left}"
    # What each attack prints when it ran and found nothing to take: a cell that never ran fails here too.
    for student, ran in (("reads-the-solutions", "FOUND []"), ("writes-the-gradebook", "refused")):
        notebook = nbformat.read(course / "autograded" / student / ASSIGNMENT / "losses.ipynb", as_version=4)
        printed = "".join(str(o.get("text", "")) for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
        assert "WROTE" not in printed, printed
        assert ran in printed, f"{student}: the attacking cell did not run, or did not say so: {printed[:2000]}"


def test_no_script_reaches_the_feedback(graded):
    course = graded["course"]
    notebook = nbformat.read(course / "autograded" / "script-injection" / ASSIGNMENT / "losses.ipynb", as_version=4)
    kinds = {k for c in notebook.cells if c.cell_type == "code" for o in c.outputs for k in o.get("data", {})}
    assert kinds <= {"text/plain", "image/png", "image/jpeg"}, kinds
    shown = [o["data"]["text/plain"] for c in notebook.cells if c.cell_type == "code" for o in c.outputs
             if "text/plain" in o.get("data", {})]
    assert "an svg" in shown, f"the attacking cell did not run: {shown}"  # its SVG display, kept as its plain text
    html = feedback_html(course, "script-injection", ASSIGNMENT)
    assert "<script>fetch" not in html and "pwned-by-student" not in html and "<svg onload" not in html
    assert "<script>window.pwned" not in html, "a script in a student's markdown cell reached the feedback"


def test_honest_work_keeps_the_notebook_small(graded):
    path = graded["course"] / "autograded" / "noisy-but-correct" / ASSIGNMENT / "losses.ipynb"
    assert path.stat().st_size < 500_000, f"the graded notebook is {path.stat().st_size} bytes"


def test_regrading_gives_the_same_grades(graded):
    course = graded["course"]
    again = ["honest", "kills-its-kernel", "forged-results", "duplicated-test-cell", "noisy-but-correct"]
    others = sorted(set(graded["expectations"]) - set(again))
    # One run for all five: nbgrader's --student is one id or a glob, and student_id_exclude names the rest.
    nbgrader(course, "autograde", ASSIGNMENT, "--force", f"--CourseDirectory.student_id_exclude={','.join(others)}",
             timeout=600)
    regraded = scores(course, ASSIGNMENT)
    assert {s: regraded[s] for s in again} == {s: graded["scores"][s] for s in again}
    assert regraded == graded["scores"]  # nobody else's grade was touched


# --- a5-training: attacks on the new machinery (optimizer chains, views of results, training in the kernel) ---
A5 = "a5-training"


def a5_attacks(course):
    stubs_a5 = released_notebook(course, A5)
    correct_a5 = student_version(solution_notebook(A5))
    references = str(course / "grader_tests" / "references" / f"{A5}.json")
    all_but_training = {g: ("full" if g != "test_train_bigram" else 0) for g in max_points(A5)}
    return {
        # a kernel-side view forged: every index "seen once", yet the batches are not an epoch
        "a5-patched-views": (first(stubs_a5, """
import numpy as np, torch
np.bincount = lambda x, minlength=0, **k: np.ones(minlength, dtype=np.int64)
def minibatches(n, batch_size, generator_seed):
    return list(torch.arange(n).split(batch_size))
"""), "zero"),
        "a5-equal-to-anything": (first(stubs_a5, """
class Anything(float):
    def __eq__(self, other): return True
    def __getitem__(self, i): return self
    def __array__(self, *a, **k): raise TypeError("no")
def sgd_momentum_step(*a, **k): return (Anything(), Anything())
def adam_step(*a, **k): return Anything(), Anything(), Anything()
def gradient_descent(*a, **k): return [Anything()]
def minibatches(*a, **k): return {"batches": Anything()}
"""), "zero"),
        "a5-reads-the-references": (first(stubs_a5, f"""
import glob, json
found = []
course = {references!r}.rsplit("/grader_tests/", 1)[0]
for path in [{references!r}] + glob.glob(course + "/grader_tests/**/*.json", recursive=True) + glob.glob("/*/*.json"):
    try:
        found.append(json.load(open(path)))
    except Exception:
        pass
print("FOUND", len(found))
"""), "zero"),
        # the loss patched in the kernel: the grader measures the held-out NLL of W itself
        "a5-fakes-the-loss": (after(correct_a5, "test_minibatches", """
import torch.nn.functional as F
F.cross_entropy = lambda logits, targets, **k: (logits * 0).sum() + 2.30
"""), all_but_training),
        "a5-training-never-ends": (after(correct_a5, "train_bigram", """
def train_bigram(xs, ys, steps, batch_size, lr, seed):
    while True:
        pass
"""), "partial-timeout"),
        # honest: the steps computed by torch.optim itself
        "a5-uses-torch-optim": (after(correct_a5, "adam_step", """
def adam_step(param, grad, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    weights = param.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([weights], lr=lr, betas=tuple(betas), eps=eps)
    if t > 1:
        optimizer.state[weights] = {"step": torch.tensor(float(t - 1)), "exp_avg": m.clone(), "exp_avg_sq": v.clone()}
    weights.grad = grad.clone()
    optimizer.step()
    state = optimizer.state[weights]
    return weights.detach(), state["exp_avg"], state["exp_avg_sq"]
"""), "full"),
    }


@pytest.fixture(scope="module")
def graded_a5(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("adversarial-a5") / "course", extra_config=LIMITS)
    expectations = {}
    for student, (notebook, expected) in a5_attacks(course).items():
        submit(course, student, A5, notebook)
        expectations[student] = expected
    submit(course, "honest", A5, student_version(solution_notebook(A5)))
    expectations["honest"] = "full"
    result = nbgrader(course, "autograde", A5, check=False, timeout=1800)
    nbgrader(course, "generate_feedback", A5, check=False)
    yield dict(course=course, expectations=expectations, log=result.stdout + result.stderr, scores=scores(course, A5))


def test_a5_submissions_score_as_an_honest_grader_would(graded_a5):
    points = max_points(A5)
    wrong = {}
    for student, expected in graded_a5["expectations"].items():
        got = {g: s for g, s in graded_a5["scores"].get(student, {}).items() if g != "_total"}
        if expected == "zero":
            want = {g: 0 for g in points}
        elif expected == "full":
            want = dict(points)
        elif expected == "partial-timeout":  # every check before the endless training cell, none after
            want = {**points, "test_train_bigram": 0}
        else:
            want = {g: (points[g] if v == "full" else v) for g, v in expected.items()}
        if got != want:
            wrong[student] = {"expected": want, "got": got}
    assert not wrong, json.dumps(wrong, indent=1) + "\n" + graded_a5["log"][-4000:]
    course = graded_a5["course"]
    assert "ran past the time limit" in feedback_html(course, "a5-training-never-ends", A5)
    assert "held-out NLL" in feedback_html(course, "a5-fakes-the-loss", A5)
    notebook = nbformat.read(course / "autograded" / "a5-reads-the-references" / A5 / "training.ipynb", as_version=4)
    printed = "".join(str(o.get("text", "")) for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert "FOUND 0" in printed, printed


# --- issue 23: limits the kernel cannot see around, a grader bounded on every input, honest oddities ---
# Each attack goes through `nbgrader autograde` and `course grade` alike (the fixture's two params),
# with real kernels in the real sandbox.  The grader's peak memory is compared with a run that
# graded only the honest submission, on the same path.

CHANNEL = "from ipykernel.connect import get_connection_file\nimport os, time\nchannel = os.path.dirname(get_connection_file())\n"
# Written 4 MiB at a time (the kernel's own memory stays small), in files of at most 250 MiB (under
# the sandbox's largest file), 1.25 GiB in all: past the channel's 512 MiB whoever counts it.
WRITE_PAST_THE_LIMIT = """
chunk = b"x" * (4 << 20)
written = 0
try:
    for fd in targets:
        for _ in range(250 // 4):
            written += os.write(fd, chunk)
except OSError as error:
    print("refused after", written >> 20, "MiB:", type(error).__name__)
time.sleep(3)  # the watchdog's moment to notice, while this cell still runs
"""
CHANNEL_PAST_PATH_MAX = CHANNEL + """
fd = os.open(channel, os.O_RDONLY | os.O_DIRECTORY)
for _ in range(2100):  # two bytes a level: a chain past PATH_MAX (4096), reached by file descriptor only
    os.mkdir("a", dir_fd=fd)
    child = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    fd = child
targets = [os.open(f"big-{i}", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd) for i in range(5)]
""" + WRITE_PAST_THE_LIMIT
CHANNEL_UNLINKED_AND_NAMELESS = CHANNEL + """
targets = []
for i in range(3):  # files kept open after unlinking them: in no listing
    path = os.path.join(channel, f"gone-{i}")
    targets.append(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    os.unlink(path)
for i in range(2):  # nameless files
    targets.append(os.open(channel, os.O_TMPFILE | os.O_RDWR, 0o600))
""" + WRITE_PAST_THE_LIMIT
# Within every stated limit: a 1500-deep tree of one-letter folders (a 3 kB path, deeper than the
# interpreter's recursion limit) and a 200 MiB file, left in the channel.
HONEST_DEEP_TREE = CHANNEL + """
deep = channel
for _ in range(1500):  # one level at a time (os.makedirs itself recurses once per level)
    deep = os.path.join(deep, "a")
    os.mkdir(deep)
with open(os.path.join(deep, "data.bin"), "wb") as f:
    for _ in range(50):
        f.write(b"x" * (4 << 20))
os.symlink("/", os.path.join(deep, "root"))  # a link to follow, for a walker that would
print("left", len(deep), "characters deep")
"""
# Messages on a channel the grader never reads (stdin), to the grader's own identity, as input() would
# send its prompt: each 20 MB, under the old 64 MiB limit per message, queued 16 deep before.
FLOODS_A_QUIET_CHANNEL = """
kernel = get_ipython().kernel
ident = kernel._get_shell_context_var(kernel._shell_parent_ident)
parent = kernel.get_parent("shell")
big = "x" * (20 * 1000 * 1000)
for _ in range(40):
    kernel.session.send(kernel.stdin_socket, "input_request", {"prompt": big, "password": False}, parent=parent, ident=ident)
del big
print("sent")
"""
MILLION_PARAGRAPHS = "a\n\n" * 1_500_000  # 4.5 MB of written answer


def trust_attacks(course):
    partial = {g: ("full" if g in BEFORE_FAULT else 0) for g in max_points(ASSIGNMENT)}
    answer = nbformat.from_dict(correct())
    answer.cells.insert(1, nbformat.v4.new_markdown_cell(MILLION_PARAGRAPHS))
    return {
        "channel-past-path-max": (after(correct(), "test_logsumexp", CHANNEL_PAST_PATH_MAX), partial),
        "channel-unlinked-and-nameless": (after(correct(), "test_logsumexp", CHANNEL_UNLINKED_AND_NAMELESS), partial),
        "honest-deep-tree": (after(correct(), "test_logsumexp", HONEST_DEEP_TREE), "full"),
        "floods-stdin": (after(correct(), "test_logsumexp", FLOODS_A_QUIET_CHANNEL), "full"),
        "a-million-paragraphs": (answer, "full"),
    }


def run_with_peak(course, env, path):
    """Grade what is submitted (and, for nbgrader, write the feedback); the grader's peak RSS.

    ``nbgrader autograde`` grades in its own process: its ``getrusage`` peak.  ``course grade`` grades
    in worker processes, and ``getrusage`` of children would count the kernels too (a kernel's memory
    is its cgroup's to bound): so the largest RSS of any of its processes outside a sandbox (not
    bubblewrap or under it), sampled while it runs."""
    if path == "nbgrader":
        result = subprocess.run(peak_rss_wrapper("nbgrader", "autograde", ASSIGNMENT), cwd=course, env=env,
                                capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
        nbgrader(course, "generate_feedback", ASSIGNMENT, check=False, env=env)
        return peak_rss(result.stderr)[0], result.stdout + result.stderr
    command = [str(BIN / "course"), "grade", ASSIGNMENT, "--no-progress", "--workers", "1"]
    process = subprocess.Popen(command, cwd=course, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, done = 0, threading.Event()

    def sample():
        nonlocal peak
        while not done.wait(0.05):
            try:
                tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
            except psutil.Error:
                continue
            sandboxed = set()
            for child in tree:
                try:
                    if child.name() == "bwrap":
                        sandboxed |= {child.pid, *(c.pid for c in child.children(recursive=True))}
                except psutil.Error:
                    pass
            for child in tree:
                try:
                    if child.pid not in sandboxed:
                        peak = max(peak, child.memory_info().rss)
                except psutil.Error:
                    pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stdout, stderr = process.communicate(timeout=1800)
    finally:
        done.set()
        sampler.join()
    assert process.returncode in (0, 1) and "Traceback" not in stderr, stdout[-3000:] + stderr[-6000:]
    return peak, stdout + stderr


@pytest.fixture(scope="module", params=["nbgrader", "course-grade"])
def trust_graded(request, tmp_path_factory):
    path = request.param
    course = make_course(tmp_path_factory.mktemp(f"trust-{path}") / "course", extra_config=TRUST_LIMITS)
    scratch = scratch_folder(course)
    env = grader_environment(course)
    submit(course, "honest", ASSIGNMENT, correct())
    honest_peak, _ = run_with_peak(course, env, path)
    expectations = {"honest": "full"}
    for student, (notebook, expected) in trust_attacks(course).items():
        submit(course, student, ASSIGNMENT, notebook)
        expectations[student] = expected
    peak, log = run_with_peak(course, env, path)
    yield dict(path=path, course=course, scratch=scratch, expectations=expectations, log=log,
               scores=scores(course, ASSIGNMENT), honest_peak=honest_peak, peak=peak)


def test_trust_attacks_score_as_an_honest_grader_would(trust_graded):
    wrong = {}
    for student, expected in trust_graded["expectations"].items():
        got = {g: s for g, s in trust_graded["scores"].get(student, {}).items() if g != "_total"}
        if got != expected_points(expected):
            wrong[student] = {"expected": expected_points(expected), "got": got}
    assert not wrong, json.dumps(wrong, indent=1) + "\n" + trust_graded["log"][-4000:]


def test_the_channel_limit_is_the_filesystems_and_the_feedback_says_so(trust_graded):
    """Past PATH_MAX, unlinked while open, nameless: out of any listing's sight, so only the filesystem's
    own count can have stopped them; the note stays.  (What the cell printed may not reach the graded
    notebook: the kernel is stopped right after the refused write.)"""
    course = trust_graded["course"]
    for student in ("channel-past-path-max", "channel-unlinked-and-nameless"):
        assert "wrote more than 512 MiB" in feedback_html(course, student, ASSIGNMENT), student


def test_a_long_written_answer_is_cut_and_the_feedback_says_so(trust_graded):
    from course.sanitize import cut_note

    page = feedback_html(trust_graded["course"], "a-million-paragraphs", ASSIGNMENT)
    assert cut_note() in page
    assert page.count("<p>") < 60_000, "more of the answer reached the feedback than the limit lets through"


def test_the_graders_memory_is_flat_whatever_a_submission_sends(trust_graded):
    """Floods on a channel the grader does not read, full channels, deep trees, a written answer of
    3 million lines (30 MB of notebook JSON, some 170 MiB a copy once nbformat has parsed it): as an
    honest run."""
    honest, peak = trust_graded["honest_peak"], trust_graded["peak"]
    print(f"{trust_graded['path']}: honest {honest / 1024**2:.0f} MiB, attacks {peak / 1024**2:.0f} MiB")
    assert peak < honest + 64 * 1024**2, (
        f"{trust_graded['path']}: the grader grew from {honest / 1024**2:.0f} MiB (honest submission) "
        f"to {peak / 1024**2:.0f} MiB")


def test_nothing_a_submission_wrote_outlives_grading(trust_graded):
    scratch = trust_graded["scratch"]
    assert not list(scratch.iterdir()), f"left behind: {list(scratch.iterdir())}"
    with open("/proc/self/mountinfo") as mounts:
        left = [line for line in mounts if str(scratch) in line]
    assert not left, f"mounts left behind: {left}"
