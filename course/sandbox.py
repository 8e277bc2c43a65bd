"""Where student code runs: a Jupyter kernel inside a bubblewrap sandbox.

The kernel talks to the grader over Unix sockets (ZMQ ``ipc`` transport) in
a per-submission channel folder, so the sandbox can have no network at all.
Inside it:

* the system, the Python installation and the virtual environment are
  mounted read-only; nothing else of the host exists (no course folder, no
  solutions, no ``grader_tests/``, no gradebook, no other submission);
* the only writable places are the submission's own scratch space: a
  size-limited home folder and ``/tmp`` that vanish with the sandbox, and
  the channel folder (watched for size);
* the kernel runs as a throw-away user id, in its own PID, IPC, UTS and
  network namespaces, with limits on memory, CPU, processes, file size: for
  the whole submission in a cgroup of its own (``course.cgroups``) where this
  machine lets the grader make one, and per process (rlimits) always;
* every process dies with the sandbox: bubblewrap's PID namespace is torn
  down when grading of that submission ends, and a sweep kills anything left
  under the throw-away user id.

This module holds what a sandbox is: its limits (``Limits``, the one table of
them), the bwrap command line, and the limits without bubblewrap.  A kernel is
either started by bubblewrap itself (cold) or, where the grader runs as root,
forked by a fork server (``course.forkserver``): a pre-warmed interpreter in a
sandbox of its own, which gives each fork the same sandbox before any student
code runs, without paying for Python and torch each time.  ``course.kernel``
starts the kernel either way, and watches it.

Without a working bubblewrap, grading refuses to run student code
(``SandboxUnavailable``, naming the fix).  Running without the sandbox is an
explicit opt-in (``c.SandboxedExecute.use_bubblewrap = False``, or
``course grade --no-sandbox``) for a single-user laptop; a loud warning then
names what is not enforced (``UNSANDBOXED``).
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CourseError

if TYPE_CHECKING:
    import logging
    from collections.abc import Iterable

GIB = 1024**3
SANDBOX_HOME = Path("/home/student")
# User ids well above any real account; one per sandbox so that process
# limits and the final sweep apply to exactly one submission.
SANDBOX_UID_RANGE = (200_000, 900_000)
# Where a forked kernel's own channel is mounted for a moment while it hides all the others, and
# where its fresh scratch folders are prepared before they are moved into place.
FORK_STAGING = "/run/course-channel"
FORK_SCRATCH_STAGING = "/run/course-scratch"


@dataclass(frozen=True)
class Limits:
    """The limits of one submission, and their defaults: the one table that the bwrap command line,
    the fork server, the fallback without bubblewrap, the watchdog and the grader's output budgets
    read (``SandboxedExecute``'s settings take their defaults from here)."""

    memory_bytes: int = 4 * GIB  # memory of the whole submission (cgroup), and address space of each process
    processes: int = 64  # processes and threads of the whole submission (cgroup), and of the sandbox user
    cpus: float = 1.0  # CPUs' worth of time the whole submission may use at once (cgroup)
    notebook_cpu_seconds: int = 600  # CPU time of each process, whole notebook
    cell_seconds: float = 120.0  # wall clock of one cell
    notebook_seconds: float = 600.0  # wall clock of the whole notebook
    file_bytes: int = 256 * 1024**2  # largest file the sandbox may write
    cell_cpu_seconds: float = 120.0  # CPU time of all sandbox processes during one cell
    output_chars_per_cell: int = 20_000  # output kept in the graded notebook
    open_files: int = 1024
    scratch_bytes: int = 512 * 1024**2  # writable space: the home/work folder and /tmp each
    # The grader's memory for what a kernel sends, bounded per socket by ZeroMQ itself (course.kernel's
    # channel_budgets): at most queue x message size waits in the grader, whatever the kernel does.
    max_message_bytes: int = 16 * 1024**2  # largest message on the channels the grader reads (iopub, shell)
    output_queue_messages: int = 16  # messages queued on the output channel (iopub) before the kernel waits
    reply_queue_messages: int = 4  # ... on the shell channel, where only replies to the grader belong
    quiet_message_bytes: int = 64 * 1024  # largest message on stdin, control and heartbeat (all small replies)
    quiet_queue_messages: int = 4  # ... and how many of them queue
    # A submitted notebook as the grader reads it (course.submitted_notebook), as it is parsed: what the
    # parse builds is bounded whatever the file holds.  Over a limit, the file is graded as unreadable
    # and its feedback names the limit.
    notebook_bytes: int = 64 * 1024**2  # bytes of the file (collect takes no larger one either)
    notebook_cells: int = 5_000
    notebook_values: int = 100_000  # JSON values built, outside the cells' text and outputs (honest: under 1,000)
    code_cell_chars: int = 1_000_000  # characters of one code cell
    # Characters of one student-written cell (a written answer, a raw cell) that the grader parses
    # (course.sanitize): cut there, with a note, before any parser sees it.
    student_text_chars: int = 100_000
    output_bytes_per_cell: int = 32 * 1024**2  # messages the grader reads during one cell (course.execute)
    output_bytes_per_submission: int = 128 * 1024**2  # ... and for the whole notebook

    @property
    def threads(self) -> int:
        """Compute threads for torch, OpenMP and BLAS: one per CPU the submission may use.  More threads than
        its CPU quota stalls every parallel region while the quota throttles them (tens of times slower)."""
        return max(1, int(self.cpus))


# What tells numpy's BLAS, OpenMP and torch how many threads to start.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS")


def thread_environment(threads: int) -> dict[str, str]:
    return {name: str(threads) for name in THREAD_VARIABLES}


class SandboxUnavailable(CourseError, RuntimeError):
    """bubblewrap is missing or cannot start a sandbox: student code must not run."""


class GradingInterrupted(RuntimeError):
    """A submission's grading was cut short from outside (a signal to its kernel, its sandbox or the
    fork server, or the grader stopping): what it produced is not a grade and is never recorded."""


class UnsandboxedGrading(UserWarning):
    """Student code runs without the sandbox, because the instructor explicitly allowed it."""


# What an instructor gives up by grading without the sandbox, said in full wherever it is allowed.
UNSANDBOXED = (
    "SANDBOX NOT ENFORCED: student code runs without bubblewrap, as the grading user, because the "
    "configuration allows it (c.SandboxedExecute.use_bubblewrap = False or course grade --no-sandbox). "
    "Not enforced: no network (student code can connect anywhere this machine can); a read-only system and "
    "hidden course files (it can read solutions/, grader_tests/ and the gradebook, and write anywhere this "
    "user can, the home folder included); process isolation (it can see and signal this user's processes; "
    "ones it detaches may outlive grading); a throw-away user id. Still enforced: memory, CPU time, file size "
    "and open files per process (and memory, processes and CPUs of the whole submission where the grader can "
    "make cgroups), CPU time per cell and notebook, cell and notebook time limits, output "
    "limits, and hidden checks judged in the grader's process. Use this only on a single-user machine.")
HOW_TO_SANDBOX = (
    "Install bubblewrap (`apt-get install -y bubblewrap`), or, on a single-user machine where you accept "
    "the risk, grade without the sandbox explicitly: c.SandboxedExecute.use_bubblewrap = False in "
    "nbgrader_config.py, or `course grade --no-sandbox`.")


def bubblewrap() -> str | None:
    return shutil.which("bwrap")


def sandbox_problem() -> str | None:
    """Why bubblewrap cannot sandbox student code here, or None when it can."""
    path = bubblewrap()
    if path is None:
        return "bubblewrap is not installed (no `bwrap` on PATH)"
    return _bubblewrap_start_problem(path, os.geteuid())


@functools.lru_cache(maxsize=None)
def _bubblewrap_start_problem(path: str, euid: int) -> str | None:
    """Start the kernel's sandbox once, with a command that does nothing (cached per process)."""
    with tempfile.TemporaryDirectory(prefix="course-probe-", dir=socket_folder()) as folder:
        try:
            probe = subprocess.run(_sandbox_arguments(Path(folder), 1024**2) + ["true"],
                                   capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"bubblewrap ({path}) cannot start a sandbox: {error}"
    if probe.returncode != 0:
        said = " ".join(probe.stderr.split())[-400:] or f"exit status {probe.returncode}"
        return f"bubblewrap ({path}) cannot start a sandbox here: {said}"
    return None


_UNSANDBOXED_SAID = threading.Event()


def warn_unsandboxed(log: logging.Logger | logging.LoggerAdapter[logging.Logger]) -> None:
    """Say in full, once per process, what grading without the sandbox gives up."""
    if not _UNSANDBOXED_SAID.is_set():
        _UNSANDBOXED_SAID.set()
        warnings.warn(UNSANDBOXED, UnsandboxedGrading, stacklevel=3)
        log.warning(UNSANDBOXED)


def require_sandbox() -> None:
    """Raise ``SandboxUnavailable`` unless bubblewrap can sandbox student code here."""
    problem = sandbox_problem()
    if problem:
        raise SandboxUnavailable(f"refusing to run student code: {problem}. {HOW_TO_SANDBOX}")


def _read_only_mounts() -> list[str]:
    """The host paths the kernel needs: the OS, the base Python, the virtual env."""
    mounts = ["/usr", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
              "/etc/fonts", "/etc/alternatives", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf"]
    for prefix in {sys.prefix, sys.base_prefix, os.path.realpath(sys.base_prefix)}:
        mounts.append(prefix)
    return [m for m in dict.fromkeys(mounts) if os.path.exists(m)]


def _parents(path: str) -> list[str]:
    parts = Path(path).parts
    return [str(Path(*parts[:i])) for i in range(2, len(parts))]


def bubblewrap_arguments(channel: Path, uid: int, limits: Limits) -> list[str]:
    """The bwrap command line that wraps the kernel command.

    ``channel`` (host folder) holds only the connection file and the kernel's
    sockets; the kernel's home and working folder, and /tmp, are size-limited
    tmpfs mounts that vanish with the sandbox.
    """
    args = _sandbox_arguments(channel, limits.scratch_bytes, threads=limits.threads)
    args.extend(limit_arguments(limits))
    if os.geteuid() == 0:
        args.extend(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all", "--"])
    return args


def fork_server_arguments(root: Path) -> list[str]:
    """The bwrap command line of a fork server (``course.forkserver``).

    The same sandbox as a kernel's, with two differences: the writable folder is the root of
    every channel this server will serve, and the server keeps the capabilities it needs to
    build each kernel's own sandbox (mounts, namespaces, user id).  Each kernel drops all of them
    before any student code runs.
    """
    capabilities = ["CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_NET_ADMIN", "CAP_KILL", "CAP_DAC_OVERRIDE"]
    args = _sandbox_arguments(root, 16 * 1024**2, extra=["--perms", "0755", "--dir", FORK_STAGING,
                                                         "--perms", "0755", "--dir", FORK_SCRATCH_STAGING])
    for capability in capabilities:
        args[1:1] = ["--cap-add", capability]
    return args


def _sandbox_arguments(writable: Path, scratch_bytes: int, extra: Iterable[str] = (), threads: int = 1) -> list[str]:
    # bubblewrap() is None only where bwrap is missing, and bwrap runs only once require_sandbox() (or
    # sandbox_problem()) found it
    args: list[str] = [bubblewrap(), "--unshare-ipc", "--unshare-pid", "--unshare-net",  # type: ignore[list-item]
                       "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname",
                       "sandbox"]
    if os.geteuid() != 0:
        # Unprivileged: a user namespace is the only way to get the others.
        args.insert(1, "--unshare-user")
    made = set()

    def mount(kind: str, path: str) -> None:
        for parent in _parents(path):
            if parent not in made and not os.path.islink(parent):
                args.extend(["--perms", "0755", "--dir", parent])
                made.add(parent)
        args.extend([kind, path, path])
        made.add(path)

    for top in ("/bin", "/lib", "/lib64", "/sbin", "/lib32", "/libx32"):
        if os.path.islink(top):
            args.extend(["--symlink", os.readlink(top), top])
        elif os.path.isdir(top):
            args.extend(["--ro-bind", top, top])
    # Order matters: a later mount hides what an earlier one put at or under its path, so the
    # fresh /dev, /proc and tmpfs folders come first, then what is bound from the host (a
    # virtual environment may well live under /tmp or /home).
    args.extend(["--proc", "/proc", "--dev", "/dev"])
    args.extend(["--perms", "0755", "--dir", str(SANDBOX_HOME.parent)])
    for folder in ("/tmp", "/var/tmp", str(SANDBOX_HOME)):
        args.extend(["--perms", "01777", "--size", str(scratch_bytes), "--tmpfs", folder])
    args.extend(extra)
    for path in _read_only_mounts():
        mount("--ro-bind", path)
    for device in gpu_devices():  # GPU parity checks
        args.extend(["--dev-bind", str(device), str(device)])
    mount("--bind", str(writable))
    args.extend(["--chdir", str(SANDBOX_HOME), "--clearenv"])
    for name, value in {**sandbox_environment(SANDBOX_HOME), **thread_environment(threads)}.items():
        args.extend(["--setenv", name, value])
    args.append("--")
    return args


def rlimits(limits: Limits, processes: int | None = None, memory: str | None = None) -> list[tuple[str, int]]:
    """The per-process limits as ``(resource name, value)`` pairs: the one list that the bwrap
    command line (``prlimit``), the fork server and the fallback without bubblewrap apply.

    ``processes``: the RLIMIT_NPROC value (None: no such limit); ``memory``: the resource that
    limits memory (default: address space, or data size where there is a GPU, because CUDA
    reserves a huge address space)."""
    memory = memory or ("RLIMIT_DATA" if gpu_devices() else "RLIMIT_AS")
    pairs = [(memory, limits.memory_bytes), ("RLIMIT_CPU", limits.notebook_cpu_seconds),
             ("RLIMIT_FSIZE", limits.file_bytes), ("RLIMIT_CORE", 0), ("RLIMIT_NOFILE", limits.open_files)]
    if processes is not None:
        pairs.append(("RLIMIT_NPROC", processes))
    return pairs


def limit_arguments(limits: Limits) -> list[str]:
    """Prefix that applies the resource limits, then execs the kernel (util-linux's prlimit,
    whose options are the resources' names: ``RLIMIT_NOFILE`` is ``--nofile``)."""
    options = [f"--{name.removeprefix('RLIMIT_').lower()}={value}"
               for name, value in rlimits(limits, processes=limits.processes)]
    return ["prlimit", *options, "--"]


def rlimit_only_arguments(limits: Limits) -> list[str]:
    """The same limits without bubblewrap or util-linux (macOS too): Python's resource module."""
    processes = None  # root ignores RLIMIT_NPROC anyway
    if os.geteuid() != 0:
        import psutil

        mine = sum(1 for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == os.getuid())
        processes = mine + limits.processes
    code = ("import os, resource, sys\n"
            "for name, value in %r:\n"
            "    try:\n"
            "        resource.setrlimit(getattr(resource, name), (value, value))\n"
            "    except (ValueError, OSError):\n"
            "        pass\n"
            "os.execv(sys.argv[1], sys.argv[1:])\n") % (rlimits(limits, processes, memory="RLIMIT_AS"),)
    return [sys.executable, "-c", code]


def gpu_devices() -> list[Path]:
    return sorted(Path("/dev").glob("nvidia*"))


def sandbox_environment(home: Path) -> dict[str, str]:
    return {
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "MPLCONFIGDIR": str(home / ".matplotlib"),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "IPYTHONDIR": str(home / ".ipython"),
        "LANG": "C.UTF-8",
    }


def socket_folder() -> str:
    """Where channel folders go: the temp folder, unless its path is too long for the kernel's
    Unix sockets (at most 107 bytes: ``<folder>/<server>/<submission>/channel/kernel-4``)."""
    folder = tempfile.gettempdir()
    return folder if len(folder) <= 56 else "/tmp"


def file_tail(path: Path, size: int = 2000) -> str:
    """The end of a log file, for an error message ("" if it cannot be read)."""
    try:
        return Path(path).read_bytes()[-size:].decode("utf-8", "replace")
    except OSError:
        return ""

