import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

if "jsonschema" not in sys.modules:  # as in the processes the tests launch: startup/sitecustomize.py says why
    sys.modules.setdefault("rfc3987_syntax", None)

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--dns-prefetch-disable",
    "--no-pings",
    # Belt and braces: the tests abort every request to another host before it is sent, and
    # chromium could not resolve one anyway.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
BUILD = ROOT / "_build"
# Shared places a run must leave as it found them, whatever it grades (the sandbox hides them from
# student code; a submission graded without it could write there).
SHARED_FOLDERS = [Path.home(), Path("/tmp"), Path("/var/tmp"), Path("/dev/shm")]


def entries(folder: Path):
    try:
        return {entry.name for entry in os.scandir(folder)}
    except OSError:
        return set()


# The longest test files first (as --durations measured them on 2 cores), so that the test files
# `make test` runs two at a time end together rather than one long file running alone at the end.
LONGEST_FILES_FIRST = ["test_site.py", "test_adversarial.py", "test_interrupt.py", "test_course_grade.py",
                       "test_assignments.py", "test_sandbox.py", "test_sanitize.py", "test_instructors_guide.py",
                       "test_semester.py", "test_export.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: position for position, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file keeps its own order


def is_xdist_worker(config):
    return hasattr(config, "workerinput")  # set by pytest-xdist in its workers only (not inherited, unlike env)


def pytest_configure(config):
    """Every temporary file of this run (pytest's, the grader's sockets and scratch, PostgreSQL's)
    goes under one folder of its own, removed when the run ends, passed or failed.  With pytest-xdist
    the main process makes it; its workers inherit it through TMPDIR."""
    if is_xdist_worker(config):
        return
    run_folder = Path(tempfile.mkdtemp(prefix="course-tests-"))
    config._shared_before = {folder: entries(folder) for folder in SHARED_FOLDERS}
    run_folder.chmod(0o755)  # other users the tests run as (postgres, sandbox ids) pass through it, as through /tmp
    config._run_folder = run_folder
    os.environ["TMPDIR"] = str(run_folder)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    if not config.option.basetemp:
        config.option.basetemp = str(run_folder / "pytest")


@pytest.hookimpl(trylast=True)  # after session fixtures are torn down and, with xdist, every worker has ended
def pytest_sessionfinish(session, exitstatus):
    """After the run, the home folder, /tmp, /var/tmp and /dev/shm hold no entry they did not hold before
    (checked once, in the main process)."""
    before = getattr(session.config, "_shared_before", None)
    if before is None:
        return
    new = sorted(str(folder / name) for folder in SHARED_FOLDERS for name in entries(folder) - before[folder])
    if new:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = f"FAILED: the tests left these behind: {new}"
        if reporter:
            reporter.ensure_newline()
            reporter.write_line(message, red=True, bold=True)
        else:
            print(message)
        if session.exitstatus == pytest.ExitCode.OK:  # an interrupted or failed run keeps its own status
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config):
    run_folder = getattr(config, "_run_folder", None)
    if run_folder is not None:
        shutil.rmtree(run_folder, ignore_errors=True)


@pytest.fixture(scope="session")
def root():
    return ROOT


@pytest.fixture(scope="session")
def built_site():
    """The site that `make book` built; `make test` builds it first."""
    html = BUILD / "html"
    if not (html / "index.html").is_file():
        pytest.fail("_build/html is missing: run `make book` (make test does this for you)")
    return BUILD


# One browser for the whole run: Playwright's sync API allows one instance per thread.
@pytest.fixture(scope="session")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"chromium not found at {CHROMIUM}: install Debian's browser with `apt-get install -y chromium` "
            "(make test does), or point CHROMIUM at a chromium binary"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright Python package is missing: run `make book` (it installs .[test])")
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    except Exception as error:  # noqa: BLE001 - report why the browser did not start
        playwright.stop()
        pytest.fail(f"could not start {CHROMIUM} headless: {error}")
    yield browser
    browser.close()
    playwright.stop()
