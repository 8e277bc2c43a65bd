"""What a ``course grade`` worker imports: the stages' own modules, never nbgrader (about a second of
CPU per process, paid before the worker's first submission)."""
import subprocess
import sys

from course import ROOT

# What initialize_worker and run_task import, at the top of course.workers and inside them.
WORKER = """
import sys
from course.workers import initialize_worker, run_task, skip_slow_optional_imports
skip_slow_optional_imports()
import course.accounting, course.cases, course.execute, course.workers
loaded = sorted(m for m in sys.modules if m == "nbgrader" or m.startswith("nbgrader."))
print(",".join(loaded))
"""


def test_the_modules_a_worker_loads_never_import_nbgrader():
    result = subprocess.run([sys.executable, "-c", WORKER], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"a worker's modules import nbgrader: {result.stdout.strip()}"


def test_a_worker_can_leave_out_jsonschemas_slow_extra_before_anything_imports_jsonschema():
    """``skip_slow_optional_imports`` lives in ``course.workers`` and must run before jsonschema is imported: so
    importing ``course.workers`` itself imports no jsonschema (nbformat, nbclient and ``course.cases`` do)."""
    check = "import sys, course.workers; print(sorted(m for m in ('jsonschema', 'nbformat', 'nbclient') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout
