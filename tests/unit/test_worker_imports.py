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


def test_a_config_that_imports_a_plug_in_from_its_old_place_is_told_where_it_is(tmp_path):
    """``SandboxedExecute``, ``RestoreCellMetadata`` and ``ReadableNotebookExporter`` live in ``course.plugins`` now:
    a course whose ``nbgrader_config.py`` still imports one from ``course.execute`` or ``course.sanitize`` gets one
    line that says what to write, not a traceback."""
    import pytest

    from course.config import load_config
    from course.errors import UsageError

    for old in ("from course.execute import SandboxedExecute", "from course.sanitize import ReadableNotebookExporter"):
        (tmp_path / "nbgrader_config.py").write_text(f"{old}\nc = get_config()\n")
        name = old.rsplit(" ", 1)[-1]
        with pytest.raises(UsageError, match=rf"nbgrader_config.py: {name} is now imported from course.plugins.*"
                                             rf"`from course.plugins import {name}`"):
            load_config(tmp_path)
    (tmp_path / "nbgrader_config.py").write_text("from course.execute import no_such_name\n")
    with pytest.raises(ImportError):  # anything else is the config's own mistake, reported as Python says it
        load_config(tmp_path)
