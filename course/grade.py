"""``course grade``: from submissions (or an LMS export) to grades, feedback, a CSV and a report.

    course grade <assignment>... [--submissions PATH] [--workers N] [--scheduler tcp://HOST:8786]
                                 [--db URL] [--force]

The grades are nbgrader's own, computed by the trusted pipeline that ``nbgrader autograde``
runs (``nbgrader_config.py``); only its expensive, pure part runs in parallel:

1. *collect* (``course.collect``): the nbgrader layout, or a zip/folder exported from an LMS;
2. *sanitize*, in this process: nbgrader's sanitize preprocessors (``ClearOutput``,
   ``RestoreCellMetadata``, ``OverwriteCells``, ...) on each submitted notebook;
3. *execute*, in parallel: the sanitized notebook and the hidden checks go, as plain data, to a
   worker (a local process pool, one worker per core, or a Dask cluster), which runs it in a
   fresh bubblewrap sandbox (``course.execute.execute_submission``) and sends back the executed
   notebook;
4. *record*, in this process, one submission at a time: nbgrader's ``Autograde`` converter, the
   same code as ``nbgrader autograde --force`` for that student, with ``SandboxedExecute``
   replaced by ``PrecomputedExecute``, which hands over the executed notebook if, and only if,
   its input is byte-for-byte the notebook this run sanitized (a SHA-256 of the notebook's JSON);
   otherwise it executes the notebook here, in the sandbox, exactly as ``SandboxedExecute``
   would.  So nbgrader writes the gradebook from a single process (SQLite is safe), and the
   grades are those of ``nbgrader autograde`` by construction;
5. *feedback* (nbgrader's ``GenerateFeedback``), the grades CSV (nbgrader's
   ``CsvExportPlugin``) and a report per assignment (``course.report``).

Unchanged submissions are not graded again: a SHA-256 of the submission's files, the hidden
checks, the assignment's source notebooks, ``nbgrader_config.py``, the limits and the grader's
own code is kept per submission and gradebook in ``.course/grade-state.json``; ``--force``
regrades everything.
"""
import copy
import hashlib
import json
import logging
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from traitlets import Bool, Integer, Unicode
from traitlets.config import Configurable

from .judge import HiddenCheckError, load_hidden_checks
from .collect import DEFAULT_LMS_PATTERN, collect
from .execute import SandboxedExecute, source_imports, source_notebooks
from .sandbox import UNSANDBOXED, SandboxUnavailable, require_sandbox, socket_folder

STATE_VERSION = 1
FEEDBACK_BATCH = 4  # feedback is written in batches (templates compiled once per batch)
FEEDBACK_TEMPLATE = "feedback"


class UsageError(Exception):
    """The command cannot run at all (no course here, unknown assignment, no scheduler)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped the batch; what was recorded stays, the rest is graded next time."""


class StopRequests:
    """While grading, Ctrl-C and SIGTERM ask the batch to stop: the grader finishes the step in hand
    (never half a recording), then stops the workers.  A second Ctrl-C stops at once."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self):
        self.requested = False
        self.previous = {}

    def __enter__(self):
        import signal

        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                number = getattr(signal, name)
                self.previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        import signal

        for number, handler in self.previous.items():
            signal.signal(number, handler)
        return False


class CourseGrade(Configurable):
    """Settings of ``course grade``, in ``nbgrader_config.py`` as ``c.CourseGrade.<name>``."""

    lms_pattern = Unicode(DEFAULT_LMS_PATTERN, help=(
        "Regular expression for file names in an LMS export, matched against the base name; named groups "
        "student_id and file_id (and optionally timestamp); {notebooks} stands for the assignment's notebook names."
    )).tag(config=True)
    workers = Integer(0, help="local worker processes (0: one per core)").tag(config=True)
    prewarm = Bool(True, help="start each worker's next sandboxed kernel while it grades the current one").tag(config=True)
    report_directory = Unicode("reports", help="where reports go, relative to the course root").tag(config=True)
    csv = Unicode("grades.csv", help="the grades CSV (nbgrader export), relative to the course root").tag(config=True)
    state_file = Unicode(os.path.join(".course", "grade-state.json"), help="what was graded, for incremental runs").tag(config=True)


# --------------------------------------------------------------------------------------------
# The preprocessor that takes a notebook executed elsewhere.

_PRECOMPUTED = {}  # (student, assignment, notebook) -> (sha256 of the sanitized input, executed notebook)
_PRECOMPUTED_LOCK = threading.Lock()


def notebook_digest(nb):
    """SHA-256 of a notebook's JSON (keys sorted): the identity of a sanitized notebook."""
    text = json.dumps(nb, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class PrecomputedExecute(SandboxedExecute):
    """``SandboxedExecute`` whose work was done by a worker of ``course grade``.

    The executed notebook is used only if it was made from exactly this input (same SHA-256);
    otherwise, or when the worker failed, the notebook is executed here, in the sandbox, as
    ``SandboxedExecute`` does: a mismatch can cost time, never a wrong grade.
    """

    def preprocess(self, nb, resources):
        info = resources.get("nbgrader", {})
        key = (info.get("student"), info.get("assignment"), info.get("notebook"))
        with _PRECOMPUTED_LOCK:
            entry = _PRECOMPUTED.pop(key, None)
        if entry is not None and entry[0] == notebook_digest(nb):
            return nbformat.from_dict(entry[1]), resources
        if entry is None and not any(c.cell_type == "code" for c in nb.cells):
            return super().preprocess(nb, resources)  # nothing to execute: not sent to a worker
        reason = ("no executed notebook came back from the workers" if entry is None
                  else "the sanitized notebook differs from the one the worker executed")
        self.log.warning("%s/%s/%s: %s; executing it here", key[0], key[1], key[2], reason)
        return super().preprocess(nb, resources)


class nbgrader_speedups:
    """Two caches for nbgrader internals while ``course grade`` runs; behaviour is unchanged.

    * nbgrader opens a new SQLAlchemy engine for every ``Gradebook(...)`` (dozens per submission),
      so every query is compiled again; here the engine of a URL is made once and kept, with its
      compiled-statement cache (each ``Gradebook`` still has its own session, and closing one still
      returns the pool's connections).
    * nbgrader validates each cell's metadata with ``jsonschema.validate``, which checks the
      schema itself against the metaschema on every call; here a validator is made once per schema
      and used the same way (``best_match`` of its errors raised, as ``jsonschema.validate`` does).
    """

    def __enter__(self):
        import jsonschema
        import nbgrader.api
        import nbgrader.nbgraderformat.common as metadata_format

        self.api, self.format = nbgrader.api, metadata_format
        self.create_engine, self.jsonschema = nbgrader.api.create_engine, metadata_format.jsonschema
        engines = {}
        create_engine = self.create_engine

        def cached_create_engine(url, *args, **kwargs):
            key = (str(url), args, tuple(sorted(kwargs.items())))
            if key not in engines:
                engines[key] = create_engine(url, *args, **kwargs)
            return engines[key]

        self.api.create_engine = cached_create_engine
        self.format.jsonschema = _CachedJsonschema(jsonschema)
        return self

    def __exit__(self, *exc):
        self.api.create_engine = self.create_engine
        self.format.jsonschema = self.jsonschema
        return False


class _CachedJsonschema:
    def __init__(self, module):
        self._module, self._validators = module, {}

    def __getattr__(self, name):
        return getattr(self._module, name)

    def validate(self, instance, schema, *args, **kwargs):
        if args or kwargs:
            return self._module.validate(instance, schema, *args, **kwargs)
        key = json.dumps(schema, sort_keys=True)
        validator = self._validators.get(key)
        if validator is None:
            cls = self._module.validators.validator_for(schema)
            cls.check_schema(schema)
            validator = self._validators[key] = cls(schema)
        error = self._module.exceptions.best_match(validator.iter_errors(instance))
        if error is not None:
            raise error


def _is_sandboxed_execute(item):
    return item is SandboxedExecute or item in ("course.execute.SandboxedExecute", "SandboxedExecute")


# --------------------------------------------------------------------------------------------
# Worker pools: the same interface over a local process pool and a Dask cluster.

class LocalPool:
    kind = "local"

    def __init__(self, workers, warm=None):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from .workers import initialize_worker

        self.workers = workers
        self.others = {p.pid for p in multiprocessing.active_children()}  # not this pool's: never stopped here
        # The workers' sockets, scratch folders and fork servers go in one folder of this pool's, which
        # goes with it, whatever happens to the workers (a worker killed mid-task cleans up nothing).
        tempfile.gettempdir()  # this process keeps its own temporary folder (read once, then cached)
        self.scratch = Path(tempfile.mkdtemp(prefix="cg-", dir=socket_folder()))  # short: sockets live under it
        self.previous_tmpdir = os.environ.get("TMPDIR")
        os.environ["TMPDIR"] = str(self.scratch)  # workers start when tasks come, and inherit it then
        self.executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=initialize_worker, initargs=(warm,))

    def describe(self):
        return f"{self.workers} local worker process{'es' if self.workers != 1 else ''}"

    def slots(self):
        return self.workers

    def submit(self, task):
        from .workers import run_task

        return self.executor.submit(run_task, task)

    def close(self):
        self.executor.shutdown(wait=True, cancel_futures=True)
        self._remove_scratch()

    def _remove_scratch(self):
        if self.previous_tmpdir is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = self.previous_tmpdir
        shutil.rmtree(self.scratch, ignore_errors=True)

    def stop(self, grace: float = 5.0):
        """End the workers now: each kills its kernels and fork servers and exits (``workers.stop_now``)."""
        import multiprocessing

        self.executor.shutdown(wait=False, cancel_futures=True)
        workers = [p for p in multiprocessing.active_children() if p.pid not in self.others]
        for worker in workers:
            worker.terminate()
        deadline = time.monotonic() + grace
        for worker in workers:
            worker.join(max(0.1, deadline - time.monotonic()))
            if worker.is_alive():
                worker.kill()  # its sandboxes die with it (bubblewrap's --die-with-parent)
                worker.join(1)
        self._remove_scratch()


class DaskPool:
    kind = "dask"

    def __init__(self, address):
        try:
            from distributed import Client
        except ImportError as error:  # pragma: no cover - distributed is a dependency
            raise UsageError(f"--scheduler needs dask.distributed: {error}") from None
        try:
            self.client = Client(address, timeout="20s", set_as_default=False)
        except Exception as error:
            raise UsageError(f"cannot reach the Dask scheduler at {address}: {type(error).__name__}: {error}") from None
        self.address = address
        self.futures = set()

    def describe(self):
        info = self.client.scheduler_info()
        workers = info.get("workers", {})
        threads = sum(w.get("nthreads", 1) for w in workers.values())
        return f"Dask scheduler {self.address} ({len(workers)} workers, {threads} threads)"

    def slots(self):
        try:
            return max(1, sum(w.get("nthreads", 1) for w in self.client.scheduler_info().get("workers", {}).values()))
        except Exception:
            return 1

    def submit(self, task):
        import uuid

        from .workers import run_task

        future = self.client.submit(run_task, task, key=f"course-grade-{task['id']}-{uuid.uuid4().hex[:8]}", pure=False)
        self.futures.add(future)
        return future

    def close(self):
        from .workers import drain

        try:
            self.client.run(drain)  # no warm kernel outlives the batch on any worker
        except Exception:
            pass
        self.client.close()

    def stop(self):
        """Cancel what is queued and kill the kernels of the tasks in hand, on every worker."""
        from .workers import kill_running

        try:
            self.client.cancel(list(self.futures))
            self.client.run(kill_running)
        except Exception:
            pass
        self.client.close()


# --------------------------------------------------------------------------------------------

@dataclass
class Submission:
    assignment: str
    student: str
    notebooks: list  # submitted notebook paths (those the gradebook knows)
    digest: str = ""
    status: str = "pending"  # graded | unchanged | failed
    reason: str = ""
    score: float = None
    max_score: float = None
    seconds: float = 0.0
    tasks: dict = field(default_factory=dict)  # notebook name -> task id still running
    worker_problems: list = field(default_factory=list)

    @property
    def where(self):
        return f"{self.student}/{self.assignment}"


@dataclass
class AssignmentRun:
    name: str
    notebooks: list
    checks: dict
    fingerprint: bytes
    modules: tuple  # heavy modules the source notebooks import: the fork server or a warm kernel imports them ahead
    collected: object = None
    submissions: list = field(default_factory=list)
    report: Path = None


def gradebook_url(url):
    """The URL with a driver SQLAlchemy can load: ``postgresql://`` means psycopg 3 to SQLAlchemy 2.1,
    but the driver installed here is psycopg2 (``psycopg2-binary``)."""
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return f"postgresql+psycopg2://{rest}"
    return url


def load_config(root: Path, db_url=None):
    from traitlets.config.loader import PyFileConfigLoader

    if not (root / "nbgrader_config.py").is_file():
        raise UsageError(f"{root} is not a course directory: it has no nbgrader_config.py (use --course)")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    if "root" not in config.CourseDirectory:
        config.CourseDirectory.root = str(root)
    if db_url:
        config.CourseDirectory.db_url = db_url
    if "db_url" in config.CourseDirectory:
        config.CourseDirectory.db_url = gradebook_url(config.CourseDirectory.db_url)
    return config


class GradeRun:
    """One ``course grade`` invocation."""

    def __init__(self, root=None, db_url=None, workers=None, scheduler=None, force=False, pattern=None,
                 roster_only=False, progress=True, feedback=True, out=None, sandbox=True):
        from nbgrader.coursedir import CourseDirectory

        tools = str(Path(sys.executable).parent)  # nbgrader runs `alembic` when it creates a gradebook
        if tools not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = tools + os.pathsep + os.environ.get("PATH", "")
        self.root = Path(root or os.getcwd()).resolve()
        self.config = load_config(self.root, db_url)
        if not sandbox:  # --no-sandbox: the explicit opt-in, logged in full by the executor
            self.config.SandboxedExecute.use_bubblewrap = False
        self.coursedir = CourseDirectory(config=self.config)
        self.settings = CourseGrade(config=self.config)
        self.db_url = self.coursedir.db_url
        self.force, self.roster_only, self.progress, self.make_feedback = force, roster_only, progress, feedback
        self.pattern = pattern or self.settings.lms_pattern
        self.scheduler = scheduler
        self.workers = workers or self.settings.workers or os.cpu_count() or 1
        self.out = out or sys.stdout
        import warnings

        from sqlalchemy.exc import SAWarning

        warnings.filterwarnings("ignore", category=SAWarning)  # nbgrader's own session use, harmless and noisy
        self.executor_settings = SandboxedExecute(config=self.config)
        if self.executor_settings.use_bubblewrap:
            # Before anything is collected or graded: no sandbox here, no grading at all.
            try:
                require_sandbox()
            except SandboxUnavailable as error:
                raise UsageError(str(error)) from None
        self.limits = self.executor_settings.limits()
        self.log = self._logger()
        if not self.executor_settings.use_bubblewrap:
            self.log.warning(UNSANDBOXED)
            self.say(f"WARNING: {UNSANDBOXED}")
        self.finish_config = copy.deepcopy(self.config)
        pipeline = list(self.config.Autograde.get("autograde_preprocessors", []))
        self.parallel = any(_is_sandboxed_execute(p) for p in pipeline)
        if self.parallel:
            self.finish_config.Autograde.autograde_preprocessors = [
                PrecomputedExecute if _is_sandboxed_execute(p) else p for p in pipeline]
        self.state_path = self.root / self.settings.state_file
        self.state = self._load_state()
        self.db_key = hashlib.sha256(self.db_url.encode()).hexdigest()[:16]
        self.pool_description = ""
        self._task_count = 0
        self.feedback_queue = []
        self.timing = dict.fromkeys(("sanitize", "record", "feedback", "report"), 0.0)

    # ---- logging ------------------------------------------------------------------------
    def _logger(self):
        reports = self.root / self.settings.report_directory
        reports.mkdir(parents=True, exist_ok=True)
        self.log_path = reports / "grade.log"
        handler = logging.FileHandler(self.log_path, mode="w", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s"))
        nbgrader_log = logging.getLogger("traitlets")
        for old in [h for h in nbgrader_log.handlers if getattr(h, "_course_grade", False)]:
            nbgrader_log.removeHandler(old)
        handler._course_grade = True
        nbgrader_log.addHandler(handler)
        nbgrader_log.setLevel(logging.INFO)
        nbgrader_log.propagate = False
        return nbgrader_log

    def say(self, message=""):
        from tqdm import tqdm

        from .sanitize import log_text

        tqdm.write(log_text(message, limit=10_000), file=self.out)  # one line each: names can carry newlines

    # ---- incremental state ----------------------------------------------------------------
    def _load_state(self):
        fresh = {"version": STATE_VERSION, "submissions": {}}
        if not self.state_path.exists():
            return fresh
        try:
            state = json.loads(self.state_path.read_text())
            if (isinstance(state, dict) and state.get("version") == STATE_VERSION
                    and isinstance(state.get("submissions"), dict)
                    and all(isinstance(k, str) and isinstance(v, str) for k, v in state["submissions"].items())):
                return state
            problem = "not a state file of this version"
        except (OSError, ValueError) as error:
            problem = f"{type(error).__name__}: {error}"
        message = f"{self.state_path} is unreadable ({problem}); every submission is graded again"
        self.log.warning(message)
        self.say(f"WARNING: {message}")
        return fresh

    def _save_state(self):
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.state, indent=1, sort_keys=True))
        temporary.replace(self.state_path)

    def _state_key(self, submission):
        return f"{self.db_key}:{submission.assignment}:{submission.student}"

    # ---- preparing an assignment ------------------------------------------------------------
    def gradebook(self):
        from nbgrader.api import Gradebook

        return Gradebook(self.db_url, self.coursedir.course_id)

    def ensure_in_gradebook(self, assignment):
        """The assignment's notebook names; generates it into the gradebook if the gradebook lacks it."""
        from nbgrader.api import MissingEntry

        with self.gradebook() as gradebook:
            try:
                names = [n.name for n in gradebook.find_assignment(assignment).notebooks]
            except MissingEntry:
                names = []
        if names:
            return names
        source = Path(self.coursedir.format_path(self.coursedir.source_directory, ".", assignment))
        if not source.is_dir():
            raise UsageError(f"assignment {assignment!r} is neither in the gradebook ({self.db_url}) nor in {source}")
        from nbgrader.converters import GenerateAssignment
        from nbgrader.coursedir import CourseDirectory
        from nbgrader.utils import capture_log

        self.say(f"{assignment}: not in the gradebook yet; adding it (nbgrader generate_assignment, into a temporary folder)")
        with tempfile.TemporaryDirectory(prefix="course-release-") as release:
            coursedir = CourseDirectory(config=self.config)
            coursedir.release_directory = release
            coursedir.assignment_id = assignment
            converter = GenerateAssignment(coursedir=coursedir, config=self.config)
            converter.force = True
            result = capture_log(converter)
        if not result["success"]:
            raise UsageError(f"could not add {assignment} to the gradebook:\n{result.get('log', '')[-2000:]}{result.get('error', '')[-2000:]}")
        with self.gradebook() as gradebook:
            return [n.name for n in gradebook.find_assignment(assignment).notebooks]

    def prepare(self, assignment, submissions_path):
        notebooks = self.ensure_in_gradebook(assignment)
        try:
            checks = load_hidden_checks(assignment, root=Path(self.executor_settings.hidden_checks_directory).parent)
        except HiddenCheckError as problem:  # before any submission is graded; nothing is recorded
            raise UsageError(f"{assignment}: the hidden checks are broken, nothing graded: {problem}") from None
        modules = source_imports(source_notebooks(self.config, assignment), self.executor_settings.preload_modules)
        run = AssignmentRun(assignment, notebooks, checks, self._fingerprint(assignment), modules)
        roster = None
        if self.roster_only:
            with self.gradebook() as gradebook:
                roster = {s.id for s in gradebook.students}
        run.collected = collect(submissions_path, assignment, self.coursedir, set(notebooks), self.pattern, roster, self.log)
        for problem in run.collected.problems:
            self.log.warning("%s: %s", assignment, problem)
        with self.gradebook() as gradebook:
            recorded = {s.student.id for s in gradebook.assignment_submissions(assignment)}
        for student, paths in sorted(run.collected.students.items()):
            submission = Submission(assignment, student, paths)
            submission.digest = self._digest(run, submission)
            autograded = Path(self.coursedir.format_path(self.coursedir.autograded_directory, student, assignment))
            fresh = (self.state["submissions"].get(self._state_key(submission)) == submission.digest
                     and student in recorded and all((autograded / p.name).is_file() for p in paths))
            if fresh and not self.force:
                submission.status = "unchanged"
            run.submissions.append(submission)
        return run

    def _fingerprint(self, assignment):
        import nbgrader

        digest = hashlib.sha256()
        parts = [json.dumps({"limits": asdict(self.limits), "bubblewrap": self.executor_settings.use_bubblewrap,
                             "nbgrader": nbgrader.__version__, "db": self.db_url, "course": self.coursedir.course_id},
                            sort_keys=True).encode()]
        checks = Path(self.executor_settings.hidden_checks_directory) / "references" / f"{assignment}.json"
        files = [checks, self.root / "nbgrader_config.py"]
        source = Path(self.coursedir.format_path(self.coursedir.source_directory, ".", assignment))
        files += sorted(source.rglob("*")) if source.is_dir() else []
        files += sorted(Path(__file__).parent.glob("*.py"))  # any change to the grader regrades
        for path in files:
            if path.is_file():
                parts.append(str(path.name).encode() + b"\0" + path.read_bytes())
        for part in parts:
            digest.update(hashlib.sha256(part).digest())
        return digest.digest()

    def _digest(self, run, submission):
        digest = hashlib.sha256(run.fingerprint)
        folder = Path(self.coursedir.format_path(self.coursedir.submitted_directory, submission.student, run.name))
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(folder)).encode() + b"\0")
                try:
                    digest.update(hashlib.sha256(path.read_bytes()).digest())
                except OSError:
                    digest.update(b"unreadable")
        return digest.hexdigest()

    # ---- the two nbgrader phases ------------------------------------------------------------
    def sanitize(self, submission, path):
        """nbgrader's sanitize step for one notebook, as ``Autograde`` runs it; returns the notebook."""
        from nbgrader.converters import Autograde

        converter = Autograde(coursedir=self.coursedir, config=self.config)
        converter.exporter = converter.exporter_class(parent=converter, config=converter.config)
        converter._sanitizing = True
        converter._init_preprocessors()
        resources = converter.init_single_notebook_resources(str(path))
        output, _ = converter.exporter.from_filename(str(path), resources=resources)
        return nbformat.reads(output, as_version=4)

    def record(self, submission):
        """nbgrader's Autograde for one student (``nbgrader autograde --force --student``)."""
        from nbgrader.converters import Autograde
        from nbgrader.utils import capture_log, temp_attrs

        with temp_attrs(self.coursedir, assignment_id=submission.assignment, student_id=submission.student):
            converter = Autograde(coursedir=self.coursedir, config=self.finish_config if self.parallel else self.config)
            converter.force = True
            converter.create_student = True
            return capture_log(converter)

    def feedback(self, assignment, students):
        """nbgrader's GenerateFeedback for some students of one assignment, in one converter run
        (one HTML exporter, its templates compiled once)."""
        from nbgrader.utils import capture_log, temp_attrs
        from traitlets.config import Config

        with temp_attrs(self.coursedir, assignment_id=assignment, student_id="*"):
            converter = selected_feedback_class()(coursedir=self.coursedir, config=self.config)
            converter.students = set(students)
            extra = Config()
            extra.HTMLExporter.template_name = FEEDBACK_TEMPLATE
            converter.update_config(extra)
            converter.force = True
            return capture_log(converter)

    def feedback_is_current(self, submission):
        for path in submission.notebooks:
            autograded = Path(self.coursedir.format_path(self.coursedir.autograded_directory, submission.student,
                                                         submission.assignment)) / path.name
            html = Path(self.coursedir.format_path(self.coursedir.feedback_directory, submission.student,
                                                   submission.assignment)) / (path.stem + ".html")
            if not html.is_file() or (autograded.is_file() and html.stat().st_mtime < autograded.stat().st_mtime):
                return False
        return True

    # ---- the run ----------------------------------------------------------------------------
    def run(self, assignments, submissions_path=None):
        try:
            with nbgrader_speedups():
                return self._run(assignments, submissions_path)
        finally:
            self._save_state()  # what was graded stays known, even after an interruption
            for handler in [h for h in self.log.handlers if getattr(h, "_course_grade", False)]:
                self.log.removeHandler(handler)
                handler.close()

    def _run(self, assignments, submissions_path):
        started = time.perf_counter()
        runs = []
        for assignment in assignments:
            runs.append(self.prepare(assignment, submissions_path))
            run = runs[-1]
            if run.collected.problems:
                self.say(f"{assignment}: {len(run.collected.problems)} problem(s) collecting {run.collected.source}:")
                for problem in run.collected.problems:
                    self.say(f"  - {problem}")
        todo = [s for run in runs for s in run.submissions if s.status == "pending"]
        by_name = {run.name: run for run in runs}
        if todo:
            self._grade(todo, by_name)
        for run in runs:
            self._feedback_for_unchanged(run)
        self.csv_path = self._export()
        from .report import write_report

        clock = time.perf_counter()
        for run in runs:
            run.report = write_report(self, run)
        self.timing["report"] += time.perf_counter() - clock
        self.seconds = time.perf_counter() - started
        self.log.info("course grade: %.1f s in all; in this process: %s", self.seconds,
                      ", ".join(f"{k} {v:.1f} s" for k, v in self.timing.items()))
        self._summary(runs)
        failed = any(s.status == "failed" for run in runs for s in run.submissions)
        problems = any(run.collected.problems for run in runs)
        return 1 if failed or problems else 0

    def _grade(self, todo, runs):
        from tqdm import tqdm

        pool = None
        order = sorted(todo, key=lambda s: (runs[s.assignment].modules, s.assignment, s.student))
        fork = self.executor_settings.fork_server
        if self.parallel:
            first = runs[order[0].assignment].modules
            warm = (asdict(self.limits), self.executor_settings.use_bubblewrap, first, fork) if self.settings.prewarm else None
            pool = DaskPool(self.scheduler) if self.scheduler else LocalPool(min(self.workers, len(todo)), warm)
            self.pool_description = pool.describe() if pool.kind == "local" else ""
        else:
            self.say("WARNING: the autograde pipeline in nbgrader_config.py has no SandboxedExecute; "
                     "grading one submission at a time with nbgrader's own pipeline")
            self.pool_description = "serial (nbgrader's own pipeline)"
        bar = tqdm(total=len(todo), desc="grading", unit="submission", file=sys.stderr, disable=not self.progress,
                   dynamic_ncols=True, smoothing=0.05)
        done = queue.Queue()
        failed = 0
        stop = StopRequests().__enter__()
        try:
            ready = []
            if pool is not None:
                if self.scheduler:
                    self.pool_description = pool.describe()
                slots = pool.slots()
                notebooks = [(submission, path) for submission in order for path in submission.notebooks]
                for submission in order:
                    submission.started = time.perf_counter()
                # Each notebook goes to the workers as soon as it is sanitized, so they start at once.
                for index, (submission, path) in enumerate(notebooks):
                    if stop.requested:
                        break
                    notebook = path.stem
                    try:
                        clock = time.perf_counter()
                        sanitized = self.sanitize(submission, path)
                        self.timing["sanitize"] += time.perf_counter() - clock
                    except Exception as error:  # the record step meets it again and reports it
                        self.log.warning("%s/%s: sanitizing failed (%s: %s); nbgrader will handle it",
                                         submission.where, notebook, type(error).__name__, error)
                        sanitized = None
                    if sanitized is not None and any(c.cell_type == "code" for c in sanitized.cells):
                        self._dispatch(pool, submission, notebook, sanitized, runs, done, ready,
                                       following=notebooks[index + 1][0] if index + slots < len(notebooks) else None)
                    # else: nothing to execute (an unreadable notebook, say): recorded here
                    last_of_submission = index + 1 == len(notebooks) or notebooks[index + 1][0] is not submission
                    if last_of_submission and not submission.tasks and submission not in ready:
                        ready.append(submission)
            else:
                ready = list(todo)
                for submission in ready:
                    submission.started = time.perf_counter()
            remaining = len(todo)
            while remaining and not stop.requested:
                while ready and not stop.requested:
                    submission = ready.pop(0)
                    if self._finish(submission):
                        failed += 1
                    remaining -= 1
                    bar.update(1)
                    if failed:
                        bar.set_postfix(failed=failed)
                if not remaining or stop.requested:
                    break
                if done.empty() and len(self.feedback_queue) >= FEEDBACK_BATCH:
                    self._flush_feedback()  # while the workers are busy anyway
                try:
                    submission, notebook, digest, future = done.get(timeout=0.2)
                except queue.Empty:
                    continue  # look at stop requests between results
                try:
                    result = future.result()
                except BaseException as error:  # noqa: BLE001 - the worker failed, not the submission
                    reason = f"{type(error).__name__}: {error}"
                    submission.worker_problems.append(f"{notebook}: the worker failed ({reason}); executed here instead")
                    self.log.error("%s/%s: the worker failed: %s; executing it here", submission.where, notebook, reason)
                else:
                    for level, message in result.get("log", []):
                        self.log.log(level, "[worker %s] %s", result.get("host", "?"), message)
                    self.log.info("[worker %s:%s] %s/%s executed in %.2f s (%s kernel)", result.get("host", "?"),
                                  result.get("pid", "?"), submission.where, notebook, result.get("seconds", 0.0),
                                  "pre-warmed" if result.get("warm") else "cold")
                    with _PRECOMPUTED_LOCK:
                        _PRECOMPUTED[(submission.student, submission.assignment, notebook)] = (digest, result["notebook"])
                submission.tasks.pop(notebook, None)
                if not submission.tasks:
                    ready.append(submission)
        except BaseException:
            stop.requested = True  # a second Ctrl-C, or a crash: the workers go at once
            raise
        finally:
            stop.__exit__()
            bar.close()
            if pool is not None:
                if stop.requested:
                    self.say("interrupted: stopping the workers, their kernels and fork servers")
                    pool.stop()
                else:
                    pool.close()
        if stop.requested:
            graded = sum(s.status == "graded" for s in todo)
            failed = sum(s.status == "failed" for s in todo)
            left = [s for s in todo if s.status == "pending"]
            for submission in left:
                submission.status = "interrupted"  # never recorded: graded again by the next run
            message = (f"{graded} submission(s) graded and recorded, {failed} failed, {len(left)} left ungraded; "
                       "run the same command again to grade the rest")
            self.log.warning("interrupted: %s", message)
            raise Interrupted(message)
        self._flush_feedback()

    def _dispatch(self, pool, submission, notebook, sanitized, runs, done, ready, following):
        """Send one sanitized notebook to the workers; its result comes back through ``done``."""
        run = runs[submission.assignment]
        fork = self.executor_settings.fork_server
        task_id = f"{self._task_count}"
        self._task_count += 1
        # The last few tasks start no kernel ahead: no worker has a next task to use it.
        task = {"id": task_id, "where": f"{submission.where}/{notebook}",
                "notebook": sanitized, "checks": run.checks, "limits": asdict(self.limits),
                "use_bubblewrap": self.executor_settings.use_bubblewrap,
                "modules": run.modules, "fork_server": fork, "prewarm": self.settings.prewarm,
                "prewarm_next": (runs[following.assignment].modules
                                 if following is not None and self.settings.prewarm else None)}
        digest = notebook_digest(sanitized)
        submission.tasks[notebook] = task_id
        try:
            future = pool.submit(task)
        except Exception as error:  # cannot even send it: executed here when recorded
            submission.worker_problems.append(f"{notebook}: not sent to a worker ({type(error).__name__}: "
                                              f"{error}); executed here instead")
            self.log.error("%s/%s: could not send to a worker: %s", submission.where, notebook, error)
            submission.tasks.pop(notebook, None)
            return
        future.add_done_callback(lambda f, s=submission, n=notebook, d=digest: done.put((s, n, d, f)))

    def _finish(self, submission):
        """Record one submission in the gradebook and write its feedback; True if it failed."""
        clock = time.perf_counter()
        result = self.record(submission)
        self.timing["record"] += time.perf_counter() - clock
        with _PRECOMPUTED_LOCK:
            for notebook in [k for k in _PRECOMPUTED if k[0] == submission.student and k[1] == submission.assignment]:
                _PRECOMPUTED.pop(notebook, None)
        submission.seconds = time.perf_counter() - getattr(submission, "started", time.perf_counter())
        key = self._state_key(submission)
        if not result["success"]:
            submission.status = "failed"
            submission.reason = failure_reason(result)
            self.state["submissions"].pop(key, None)
            self.say(f"FAILED {submission.where}: {submission.reason}")
            return True
        submission.status = "graded"
        self.state["submissions"][key] = submission.digest
        if self.make_feedback:
            self.feedback_queue.append(submission)
        return False

    def _flush_feedback(self):
        """nbgrader generate_feedback for the queued submissions, one converter per assignment."""
        queued, self.feedback_queue = self.feedback_queue, []
        for assignment in dict.fromkeys(s.assignment for s in queued):
            batch = [s for s in queued if s.assignment == assignment]
            clock = time.perf_counter()
            result = self.feedback(assignment, {s.student for s in batch})
            self.timing["feedback"] += time.perf_counter() - clock
            if not result["success"]:
                log = result.get("log", "")
                for submission in batch:
                    if f"for student '{submission.student}'" in log:
                        submission.reason = "feedback failed (see reports/grade.log)"
                        self.say(f"WARNING {submission.where}: {submission.reason}")

    def _feedback_for_unchanged(self, run):
        if not self.make_feedback:
            return
        self.feedback_queue.extend(s for s in run.submissions if s.status == "unchanged" and not self.feedback_is_current(s))
        self._flush_feedback()

    def _export(self):
        from nbgrader.plugins import CsvExportPlugin

        path = self.root / self.settings.csv
        plugin = CsvExportPlugin(config=self.config)
        plugin.to = str(path)
        with self.gradebook() as gradebook:
            plugin.export(gradebook)
        return path

    def _summary(self, runs):
        rows = []
        from .report import assignment_scores

        for run in runs:
            scores = assignment_scores(self, run.name)
            graded = [s for s in run.submissions if s.status == "graded"]
            unchanged = [s for s in run.submissions if s.status == "unchanged"]
            failed = [s for s in run.submissions if s.status == "failed"]
            totals = [score for score, _ in scores.values()]
            maximum = max((m for _, m in scores.values()), default=0.0)
            mean = f"{sum(totals) / len(totals):.1f} / {maximum:g}" if totals else "-"
            rows.append([run.name, len(run.submissions), len(graded), len(unchanged), len(failed),
                         len(run.collected.problems), mean, os.path.relpath(run.report, self.root)])
        header = ["assignment", "found", "graded", "unchanged", "failed", "problems", "mean score", "report"]
        widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
        graded = sum(r[2] for r in rows)
        self.say("")
        self.say(f"course grade: {graded} submission(s) graded in {self.seconds:.1f} s"
                 + (f" ({self.seconds / graded:.2f} s per submission, {self.pool_description})" if graded else ""))
        self.say("  ".join(h.ljust(w) if i in (0, 6, 7) else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
        for row in rows:
            self.say("  ".join(str(v).ljust(w) if i in (0, 6, 7) else str(v).rjust(w)
                               for i, (v, w) in enumerate(zip(row, widths))))
        feedback = os.path.relpath(self.coursedir.format_path(self.coursedir.feedback_directory, "*", "*"), self.root)
        self.say(f"grades: {os.path.relpath(self.csv_path, self.root)}"
                 + (f"   feedback: {feedback}" if self.make_feedback else "")
                 + f"   log: {os.path.relpath(self.log_path, self.root)}")
        for run in runs:
            for submission in run.submissions:
                if submission.status == "failed":
                    self.say(f"failed: {submission.where}: {submission.reason}")


def selected_feedback_class():
    """nbgrader's GenerateFeedback, limited to a set of students (``students``)."""
    import re

    from nbgrader.converters import GenerateFeedback

    class SelectedFeedback(GenerateFeedback):
        students = set()

        def init_notebooks(self):
            super().init_notebooks()
            pattern = self._format_source("(?P<assignment_id>.*)", "(?P<student_id>.*)", escape=True)
            self.assignments = {folder: notebooks for folder, notebooks in self.assignments.items()
                                if (match := re.match(pattern, folder)) and match.group("student_id") in self.students}

    return SelectedFeedback


def failure_reason(result):
    """The first lines that say why an nbgrader step failed, from its captured log."""
    lines = [line for line in result.get("log", "").splitlines() if line.startswith(("[ERROR]", "[CRITICAL]"))]
    useful = [line.split("]", 1)[1].strip() for line in lines
              if "Please see" not in line and "There was an error processing" not in line and "Traceback" not in line]
    if useful:
        return "; ".join(dict.fromkeys(useful))[:500]
    error = result.get("error", "").strip().splitlines()
    return (error[-1] if error else "unknown error")[:500]


def grade(assignments, root=None, submissions=None, **options):
    """Python entry point of ``course grade``; returns the process exit code."""
    return GradeRun(root=root, **options).run(assignments, submissions)
