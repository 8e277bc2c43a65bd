"""The attacks on the grader that more than one test module runs: test_adversarial.py grades them through
the fork server, test_sandbox.py with every kernel started cold in bubblewrap.

``attacks(course, port)`` gives each attacking submission of a2-losses and the points an honest grader
gives it; ``expected_points`` turns those into points per test cell.  The attacks mark what they manage to
write or start with ``MARKER``, so a test can look for it (``remove_markers`` cleans up after them), and try
to connect to a ``LoopbackListener``."""
import os
import secrets
import shutil
import socket
import threading
from pathlib import Path

import nbformat

from grading_support import (FILLS_A_CHANNEL_SUB_FOLDER, MEMORY_HOG, MEMORY_IN_MANY_PROCESSES, add_cell, cgroups_available,
                             max_points, released_notebook, solution_notebook, student_version)

ASSIGNMENT = "a2-losses"
# Names the files and processes the attacks create, so the tests can look for them; its own per run,
# so that leftovers of an earlier run can neither fail nor satisfy this one.
MARKER = f"adversary-{secrets.token_hex(4)}"
MARKER_FOLDERS = ["/tmp", "/var/tmp", "/dev/shm", os.path.expanduser("~")]


def remove_markers(*extra_folders):
    """Delete whatever an attack managed to write (the tests fail on it first), so nothing stays behind."""
    for folder in [*MARKER_FOLDERS, *map(str, extra_folders)]:
        path = Path(folder) / MARKER
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


# A cell's wall-clock limit leaves the many-processes memory attack time to touch its 3 GiB on a loaded,
# 2-core machine (its processes share one CPU): it must end by the memory limit, not by the clock. It
# takes about 3 s on a quiet machine; each attack that runs forever (three of them) costs this limit.
LIMITS = """
c.SandboxedExecute.cell_timeout = 15
c.SandboxedExecute.notebook_timeout = 120
c.SandboxedExecute.memory_limit_gib = 2
"""
# Functions whose test cells come before the insertion point used for mid-notebook faults.
BEFORE_FAULT = ["test_softmax", "test_logsumexp"]


def correct():
    return student_version(solution_notebook(ASSIGNMENT))


def stubs(course):
    return released_notebook(course, ASSIGNMENT)


def after(notebook, grade_id, source):
    return add_cell(notebook, source, after_grade_id=grade_id)


def first(notebook, source):
    return add_cell(notebook, source, position=2)  # after the imports


def with_markdown(notebook, text):
    notebook = nbformat.from_dict(notebook)
    notebook.cells.insert(1, nbformat.v4.new_markdown_cell(text))
    return notebook


class LoopbackListener:
    """A TCP server on 127.0.0.1 that records whether anything connected."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen()
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
                self.connections += 1
                conn.close()
            except OSError:
                pass

    def close(self):
        self._stop.set()
        self.thread.join()
        self.server.close()


def attacks(course, port):
    """{student: (notebook or raw text, expected points per test cell or 'zero'/'full')}."""
    solutions = str(course / "solutions" / ASSIGNMENT / "losses.ipynb")
    references = str(course / "grader_tests" / "references" / f"{ASSIGNMENT}.json")
    gradebook = str(course / "gradebook.db")
    zero, full = "zero", "full"
    partial = {g: ("full" if g in BEFORE_FAULT else 0) for g in max_points(ASSIGNMENT)}
    cases = {
        # --- code that changes how later cells run -------------------------------------------------
        "patched-numpy-and-asserts": (first(stubs(course), """
import builtins, numpy as np
np.allclose = np.isclose = lambda *a, **k: True
builtins.AssertionError = type("Never", (Exception,), {})
def softmax(*a, **k): return np.zeros(3)
def kl_divergence(p, q): return 0.0
"""), zero),
        "swallow-every-later-cell": (first(stubs(course), """
ip = get_ipython()
ip.input_transformers_post.append(lambda lines: ["pass\\n"])
"""), zero),
        "custom-exception-handler": (first(stubs(course), """
get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)
import sys; sys.excepthook = lambda *a: None
"""), zero),
        "forged-results": (first(stubs(course), r'''
import ast, json, re, base64, numpy as np
from IPython.display import display
def forge(lines):
    code = "".join(lines)
    if "__course_case" not in code:
        return lines
    request = json.loads(ast.literal_eval(re.search(r"loads\((.*)\)\)", code).group(1)))
    fake = {"base64": base64.b64encode(np.full(10, 0.1).tobytes()).decode(), "shape": [10], "dtype": "float64"}
    shown = ["from IPython.display import display\n"]
    for case, _ in request["views"]:  # a reply for every case the call was for, with the run's own nonce
        reply = json.dumps({"nonce": request["nonce"], "case": case, "result": fake})
        shown.append(f"display({{'application/vnd.course.judge-result+json': {reply!r}}}, raw=True)\n")
    return shown
get_ipython().input_transformers_post.append(forge)
'''), zero),
        "duplicated-results": (first(correct(), r'''
from IPython.display import display
_real_display = display
import IPython.display
def twice(*args, **kwargs):
    _real_display(*args, **kwargs); _real_display(*args, **kwargs)
IPython.display.display = twice
'''), zero),
        "replayed-result": (first(stubs(course), r'''
from IPython.display import display
import json
for case in range(30):
    display({"application/vnd.course.judge-result+json": json.dumps({"nonce": "0" * 32, "case": f"test_softmax-{case}", "result": {"bool": True}})}, raw=True)
'''), zero),
        "broken-harness-modules": (first(stubs(course), """
import sys, types
sys.modules["json"] = types.ModuleType("json")
sys.modules["base64"] = None
"""), zero),
        # --- objects with odd __eq__ / __float__ -----------------------------------------------------
        "equal-to-anything": (first(stubs(course), """
class Anything(float):
    def __eq__(self, other): return True
    __ne__ = lambda self, other: False
    def __float__(self): return 0.0
    def __array__(self, *a, **k): raise TypeError("no")
def softmax(*a, **k): return Anything()
def logsumexp(*a, **k): return [Anything()]
def kl_divergence(*a, **k): return {"answer": 1}
def entropy(*a, **k): return "0.3251"
"""), zero),
        # --- reading and writing what the grader owns --------------------------------------------------
        "reads-the-solutions": (first(stubs(course), f"""
import glob, json, os
found = []
course = os.path.dirname(os.path.dirname(os.path.dirname({solutions!r})))
candidates = [{solutions!r}, {references!r}] + glob.glob(course + "/**/*.ipynb", recursive=True)
candidates += glob.glob(course + "/grader_tests/**", recursive=True) + glob.glob("/*/*.ipynb") + glob.glob("/home/**/*.json", recursive=True)
for path in candidates:
    try:
        text = open(path).read()
        found.append(path)
        if path.endswith(".ipynb"):
            for cell in json.loads(text)["cells"]:
                if "BEGIN SOLUTION" in "".join(cell["source"]):
                    exec("".join(cell["source"]))
    except Exception as error:
        pass
print("FOUND", found)
"""), zero),
        "writes-the-gradebook": (first(stubs(course), f"""
import sqlite3
for target in [{gradebook!r}, "gradebook.db", "../gradebook.db"]:
    try:
        db = sqlite3.connect(target)
        db.execute("update grade set auto_score = 100")
        db.commit()
        print("WROTE", target)
    except Exception as error:
        print("refused", target, type(error).__name__)
"""), zero),
        "script-injection": (with_markdown(first(correct(), """
from IPython.display import HTML, Javascript, display
display(HTML("<script>fetch('/formgrader/api/grade', {method: 'PUT'})</script><b>hi</b>"))
display(Javascript("document.title = 'pwned-" + "by-student'"))
display({"image/svg+xml": "<svg onload=alert(1)></svg>", "text/plain": "an svg"}, raw=True)
"""), "Look: <script>window.pwned = 1</script><img src=x onerror='window.pwned=2'>"), full),
        # --- honest work with noise --------------------------------------------------------------------
        "noisy-but-correct": (after(after(first(correct(), """
import sys, warnings
warnings.warn("this is fine")
print("diagnostics on stderr", file=sys.stderr)
print("x" * 3_000_000)
"""), "softmax", """
_original_softmax = softmax
def softmax(logits, temperature=1.0, axis=-1):
    import sys
    print("softmax called", file=sys.stderr)
    print("y" * 50_000)
    return _original_softmax(logits, temperature, axis)
"""), "test_kl_divergence", "import time; time.sleep(4); print('slow but within limits')"), full),
        # --- resources and escapes (inserted after the first two test cells) ---------------------------
        "infinite-loop": (after(correct(), "test_logsumexp", "while True:\n    pass"), partial),
        "cpu-hog-ignoring-signals": (after(correct(), "test_logsumexp", """
import signal
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
while True:
    sum(range(10000))
"""), partial),
        "kills-its-kernel": (after(correct(), "test_logsumexp", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"), partial),
        "exits-its-kernel": (after(correct(), "test_logsumexp", "import os\nos._exit(3)"), partial),
        "memory-hog": (after(correct(), "test_logsumexp", MEMORY_HOG), full),
        "fills-a-channel-sub-folder": (after(correct(), "test_logsumexp", FILLS_A_CHANNEL_SUB_FOLDER), partial),
        "fork-bomb-and-detached-processes": (after(correct(), "test_logsumexp", f"""
import os, subprocess, time
children = 0
try:
    for _ in range(400):
        pid = os.fork()
        if pid == 0:
            time.sleep(600)
            os._exit(0)
        children += 1
except OSError as error:
    print("process limit held after", children, type(error).__name__)
subprocess.Popen(["/bin/sh", "-c", "exec -a {MARKER} sleep 600"], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sh", ["{MARKER}", "-c", "sleep 600"])
    os._exit(0)
"""), full),
        "network": (after(correct(), "test_logsumexp", f"""
import socket
for address in [("127.0.0.1", {port}), ("10.0.2.2", 80), ("1.1.1.1", 53)]:
    try:
        socket.create_connection(address, timeout=2).close()
        print("CONNECTED", address)
    except OSError as error:
        print("blocked", address, error)
"""), full),
        "writes-outside": (after(correct(), "test_logsumexp", f"""
import os
for folder in ["/tmp", os.path.expanduser("~"), {str(course)!r}, "/usr", "/var/tmp", "/dev/shm"]:
    try:
        with open(os.path.join(folder, "{MARKER}"), "w") as f:
            f.write("escaped")
    except OSError as error:
        print("refused", folder, type(error).__name__)
"""), full),
        "fills-the-disk": (after(correct(), "test_logsumexp", """
import os
try:
    for i in range(100):
        with open(f"big-{i}", "wb") as f:
            f.write(os.urandom(1024) * (64 * 1024))
except OSError as error:
    print("space limit held", type(error).__name__)
"""), full),
    }
    if cgroups_available():  # else only per-process limits hold, and the grading log says so
        cases["memory-in-many-processes"] = (after(correct(), "test_logsumexp", MEMORY_IN_MANY_PROCESSES), partial)
    return cases


def expected_points(expected):
    points = max_points(ASSIGNMENT)
    if expected == "zero":
        return {g: 0 for g in points}
    if expected == "full":
        return dict(points)
    return {g: (points[g] if v == "full" else v) for g, v in expected.items()}
