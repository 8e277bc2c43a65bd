"""The part of ``course grade`` that runs on workers: one sanitized notebook in, one executed notebook out.

``run_task`` is what a worker process of the local pool, or a Dask worker, runs for each
notebook.  It needs no gradebook and no course files: the task carries the sanitized notebook,
the hidden checks and the limits as plain data, and the result is the executed notebook, the
same one ``SandboxedExecute`` would give (``course.execute.execute_submission`` does the work
in both cases), with the log records made on the way.

Fork servers and pre-warmed kernels
-----------------------------------
Starting a kernel and importing numpy and torch in it costs well over a second of CPU, more
than grading most submissions.  Each worker process therefore keeps a fork server
(``course.forkserver``) per set of modules: an interpreter in its own sandbox that imported the
modules the assignment's source notebooks import (``numpy``, ``torch``, ...) once, and forks a
fresh kernel, in a fresh sandbox of its own, for every submission.  Where there is no fork
server (not root, no bubblewrap) a kernel starts cold and imports those modules itself.

On top of that a worker starts the kernel for its *next* submission while it grades the
current one (a cold kernel imports the modules then, silently: no history, no execution count,
no name bound in the notebook's namespace).  The next submission's cells then run in that
kernel exactly as in a cold one.  A warm kernel is never reused: it serves one submission and is
killed with its sandbox; one that is not needed (the batch ended, the next submission wants
other modules, it waited too long) is killed unused.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import sys
from typing import TYPE_CHECKING, NoReturn

from .forkserver_client import close_fork_servers, fork_server_for
from .kernel import KernelRecipe, WarmKernel, close_kernel, kill_all_sandboxes, remove_scratch
from .sandbox import require_sandbox
from .tasks import WorkerResult, WorkerTask

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .sandbox import Limits

# course.execute (nbformat, nbclient) is imported inside the functions that use it, so that a worker
# process skips a slow optional import first (skip_slow_optional_imports); it never imports this module.

WARM_START_TIMEOUT = 120.0
WARM_MAX_IDLE = 900.0  # a warm kernel that waited longer than this is not trusted to be healthy


def launch(warm: WarmKernel, loop: asyncio.AbstractEventLoop) -> WarmKernel:
    """Start the warm kernel's process now (its boot and imports overlap what this worker does next)."""
    import nbformat

    from .execute import LimitedOutputClient

    limits = warm.recipe.limits
    # The same client settings SubmissionRun uses, so the kernel starts exactly as a cold one would.
    warm.client = LimitedOutputClient(nbformat.v4.new_notebook(), km=warm.km, timeout=limits.cell_seconds,
                                      allow_errors=True, interrupt_on_timeout=False, record_timing=False,
                                      kernel_name="python3", resources={"metadata": {"path": str(warm.scratch)}})
    with open(warm.scratch / "kernel.log", "wb") as kernel_output:
        loop.run_until_complete(warm.client.async_start_new_kernel(stdout=kernel_output, stderr=subprocess.STDOUT))
    warm.task = loop.create_task(ready(warm))
    return warm


async def ready(warm: WarmKernel) -> WarmKernel:
    """Connect to the warm kernel, wait until it answers, then pre-import the modules silently."""
    await warm.client.async_start_new_kernel_client()
    warm.kc = warm.client.kc
    modules = warm.recipe.modules
    if modules and warm.km.fork_server is None:  # a forked kernel has them already
        code = ("for __course_module in %r:\n"
                "    try:\n"
                "        __import__(__course_module)\n"
                "    except Exception:\n"
                "        pass\n"
                "del __course_module\n") % (list(modules),)
        msg_id = warm.kc.execute(code, silent=True, store_history=False, allow_stdin=False)
        deadline = time.monotonic() + WARM_START_TIMEOUT
        while True:  # the reply on the shell channel ...
            reply = await warm.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        while True:  # ... and the kernel idle again on iopub, so no message of ours is left queued
            message = await warm.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            if (message["parent_header"].get("msg_id") == msg_id and message["msg_type"] == "status"
                    and message["content"].get("execution_state") == "idle"):
                break
    return warm


class _ThreadState:
    def __init__(self) -> None:
        self.warm: WarmKernel | None = None
        self.loop: asyncio.AbstractEventLoop | None = None


# thread id -> _ThreadState (kernels belong to the event loop of the thread that made them)
_STATES: dict[int, _ThreadState] = {}
_STATES_LOCK = threading.Lock()


def _state() -> _ThreadState:
    with _STATES_LOCK:
        return _STATES.setdefault(threading.get_ident(), _ThreadState())


def _loop() -> asyncio.AbstractEventLoop:
    """This thread's event loop, the same for every task the thread runs, and the one nbclient uses.

    nbclient runs its coroutines on ``jupyter_core.utils.ensure_event_loop()``, which keeps the
    loop in a context variable; Dask runs each task in a copy of its worker's context, where that
    variable is unset, so the loop is kept here per thread and handed to jupyter_core each time
    (a warm kernel's sockets belong to the loop that started it).
    """
    import jupyter_core.utils as jupyter_utils

    state = _state()
    if state.loop is None or state.loop.is_closed():
        state.loop = jupyter_utils.ensure_event_loop()
    asyncio.set_event_loop(state.loop)
    variable = getattr(jupyter_utils, "_loop", None)
    if variable is not None and variable.get() is not state.loop:
        variable.set(state.loop)
    return state.loop


def take_warm(recipe: KernelRecipe, log: logging.Logger) -> WarmKernel | None:
    """This thread's warm kernel if it was started with ``recipe`` and started well; else None (it is discarded)."""
    state = _state()
    warm, state.warm = state.warm, None
    if warm is None:
        return None
    if warm.recipe != recipe or time.monotonic() - warm.created > WARM_MAX_IDLE:
        warm.discard()
        return None
    loop = _loop()
    try:
        assert warm.task is not None  # launch() made it: a warm kernel is kept only once launched
        loop.run_until_complete(asyncio.wait_for(warm.task, WARM_START_TIMEOUT))
    except BaseException as error:  # noqa: BLE001 - any failure means: start a cold kernel instead
        log.warning("a pre-warmed kernel failed to start (%s: %s); starting a fresh one", type(error).__name__, error)
        warm.discard()
        return None
    if not warm.km.has_kernel or warm.kc is None:
        warm.discard()
        return None
    return warm


def prepare_warm(recipe: KernelRecipe) -> None:
    """Start this thread's next kernel now; it becomes ready while the current submission runs."""
    state = _state()
    if state.warm is not None:
        state.warm.discard()
        state.warm = None
    try:
        warm = WarmKernel(recipe, fork_server_for(recipe.modules, recipe.use_bubblewrap, recipe.fork_server))
    except Exception:  # no sandbox here: the submission itself will refuse, and say why
        return
    try:
        launch(warm, _loop())
    except Exception:  # no warm kernel then; the next submission starts a cold one and says why
        warm.discard()
        return
    state.warm = warm


def drain(*_: object) -> int:
    """Kill every warm kernel of this process (the end of a batch, or the worker's exit)."""
    with _STATES_LOCK:
        states = list(_STATES.values())
    killed = 0
    for state in states:
        warm, state.warm = state.warm, None
        if warm is not None:
            close_kernel(warm.km, warm.kc)
            remove_scratch(warm.scratch)
            killed += 1
    return killed


def initialize_worker(warm: KernelRecipe | tuple[Limits, bool, Iterable[str], bool] | None = None) -> None:
    """Initializer of the local pool's processes.

    Starts the first warm kernel at once (``warm``: a ``KernelRecipe``, or its four fields as plain
    data), then imports the grader while that kernel boots, and makes sure no warm kernel (and no
    fork server) outlives the process.
    """
    import atexit
    from multiprocessing import util

    skip_slow_optional_imports()
    # Ctrl-C is the grader's to handle: it stops the batch and then ends the workers (``stop_now``).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop_now)
    util.Finalize(None, drain, exitpriority=100)  # multiprocessing's workers skip atexit
    util.Finalize(None, close_fork_servers, exitpriority=90)
    atexit.register(drain)
    if warm is not None:
        prepare_warm(KernelRecipe.of(*warm))
    from . import execute  # noqa: F401 - nbformat, nbclient: imported while the kernel starts
    logging.getLogger("traitlets").setLevel(logging.WARNING)


def stop_now(*_: object) -> NoReturn:
    """The batch is stopping: kill every kernel and fork server of this process, remove their
    folders, and exit at once (the submission in hand is not finished, so it returns nothing)."""
    try:
        kill_all_sandboxes()
        drain()
        close_fork_servers()
    finally:
        os._exit(143)


def kill_running() -> int:
    """On a Dask worker, when the batch stops: kill the kernels of the tasks in hand and the warm ones."""
    kill_all_sandboxes()
    return drain()


def skip_slow_optional_imports() -> None:
    """Do not import ``rfc3987_syntax``, an optional extra of jsonschema that compiles a grammar on import.

    It costs one to two seconds in every process that imports nbformat, and only adds the
    ``iri``/``iri-reference`` string formats, which no notebook schema uses.
    """
    if "jsonschema" not in sys.modules:
        # None in sys.modules: importing it raises ImportError, as for an extra that is not installed
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.records.append((record.levelno, record.getMessage()))
        except Exception:
            pass


def run_task(task: WorkerTask) -> WorkerResult:
    """Execute one sanitized notebook in a fresh sandbox (refused where bubblewrap is missing or cannot start,
    unless the task says otherwise); return the executed notebook, the log made on the way and the task's CPU
    account."""
    from .accounting import KernelMarks
    from .execute import execute_submission

    started, cpu_started, began = time.perf_counter(), time.process_time(), time.time()
    handler = _Records()
    log = logging.getLogger(f"course.worker.{threading.get_ident()}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.handlers[:] = [handler]
    recipe = KernelRecipe.of(task.limits, task.use_bubblewrap, task.modules, task.fork_server)
    _loop()  # before nbclient picks one
    if recipe.use_bubblewrap:
        try:
            require_sandbox()
        except Exception as error:
            raise type(error)(f"worker {socket.gethostname()}: {error}") from None
    server = fork_server_for(recipe.modules, recipe.use_bubblewrap, recipe.fork_server, log)
    warm = take_warm(recipe, log) if task.prewarm else None
    if task.prewarm_next is not None:
        prepare_warm(recipe._replace(modules=tuple(task.prewarm_next)))
    marks = KernelMarks()
    notebook = execute_submission(task.notebook, task.checks, recipe.limits, log, task.where, recipe.use_bubblewrap,
                                  warm=warm, fork_server=server, rules=list(task.rules), marks=marks)
    host, pid = socket.gethostname(), os.getpid()
    return WorkerResult(task.id, notebook, handler.records, time.perf_counter() - started, host, pid, warm is not None,
                        marks.task(cpu_started, f"{host}:{pid}", began=began))
