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

A kernel is either started by bubblewrap itself (cold) or, where the grader
runs as root, forked by a ``ForkServer`` (``course.forkserver``): a pre-warmed
interpreter in a sandbox of its own, which gives each fork the same sandbox
before any student code runs, without paying for Python and torch each time.

Without a working bubblewrap, grading refuses to run student code
(``SandboxUnavailable``, naming the fix).  Running without the sandbox is an
explicit opt-in (``c.SandboxedExecute.use_bubblewrap = False``, or
``course grade --no-sandbox``) for a single-user laptop; a loud warning then
names what is not enforced (``UNSANDBOXED``).
"""
import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path

from jupyter_client import AsyncKernelManager

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
    max_message_bytes: int = 64 * 1024**2  # largest message the kernel may send the grader
    output_bytes_per_cell: int = 32 * 1024**2  # messages the grader reads during one cell (course.execute)
    output_bytes_per_submission: int = 128 * 1024**2  # ... and for the whole notebook


class SandboxUnavailable(RuntimeError):
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


def bubblewrap():
    return shutil.which("bwrap")


def sandbox_problem():
    """Why bubblewrap cannot sandbox student code here, or None when it can."""
    path = bubblewrap()
    if path is None:
        return "bubblewrap is not installed (no `bwrap` on PATH)"
    return _bubblewrap_start_problem(path, os.geteuid())


@functools.lru_cache(maxsize=None)
def _bubblewrap_start_problem(path, euid):
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


def warn_unsandboxed(log):
    """Say in full, once per process, what grading without the sandbox gives up."""
    if not _UNSANDBOXED_SAID.is_set():
        _UNSANDBOXED_SAID.set()
        warnings.warn(UNSANDBOXED, UnsandboxedGrading, stacklevel=3)
        log.warning(UNSANDBOXED)


def require_sandbox():
    """Raise ``SandboxUnavailable`` unless bubblewrap can sandbox student code here."""
    problem = sandbox_problem()
    if problem:
        raise SandboxUnavailable(f"refusing to run student code: {problem}. {HOW_TO_SANDBOX}")


def _read_only_mounts():
    """The host paths the kernel needs: the OS, the base Python, the virtual env."""
    mounts = ["/usr", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
              "/etc/fonts", "/etc/alternatives", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf"]
    for prefix in {sys.prefix, sys.base_prefix, os.path.realpath(sys.base_prefix)}:
        mounts.append(prefix)
    return [m for m in dict.fromkeys(mounts) if os.path.exists(m)]


def _parents(path):
    parts = Path(path).parts
    return [str(Path(*parts[:i])) for i in range(2, len(parts))]


def bubblewrap_arguments(channel: Path, uid: int, limits: Limits):
    """The bwrap command line that wraps the kernel command.

    ``channel`` (host folder) holds only the connection file and the kernel's
    sockets; the kernel's home and working folder, and /tmp, are size-limited
    tmpfs mounts that vanish with the sandbox.
    """
    args = _sandbox_arguments(channel, limits.scratch_bytes)
    args.extend(limit_arguments(limits))
    if os.geteuid() == 0:
        args.extend(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all", "--"])
    return args


def fork_server_arguments(root: Path):
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


def _sandbox_arguments(writable: Path, scratch_bytes: int, extra=()):
    args = [bubblewrap(), "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if os.geteuid() != 0:
        # Unprivileged: a user namespace is the only way to get the others.
        args.insert(1, "--unshare-user")
    made = set()

    def mount(kind, path):
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
    for name, value in sandbox_environment(SANDBOX_HOME).items():
        args.extend(["--setenv", name, value])
    args.append("--")
    return args


def limit_arguments(limits: Limits):
    """Prefix that applies the resource limits, then execs the kernel."""
    memory = "--data" if gpu_devices() else "--as"  # CUDA reserves huge address space; limit data instead
    return ["prlimit", f"{memory}={limits.memory_bytes}", f"--nproc={limits.processes}",
            f"--cpu={limits.notebook_cpu_seconds}", f"--fsize={limits.file_bytes}",
            "--core=0", f"--nofile={limits.open_files}", "--"]


def rlimit_only_arguments(limits: Limits):
    """The same limits without bubblewrap or util-linux (macOS too): Python's resource module."""
    import resource

    settings = [(resource.RLIMIT_AS, limits.memory_bytes), (resource.RLIMIT_CPU, limits.notebook_cpu_seconds),
                (resource.RLIMIT_FSIZE, limits.file_bytes), (resource.RLIMIT_CORE, 0),
                (resource.RLIMIT_NOFILE, limits.open_files)]
    if os.geteuid() != 0:  # root ignores RLIMIT_NPROC anyway
        import psutil

        mine = sum(1 for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == os.getuid())
        settings.append((resource.RLIMIT_NPROC, mine + limits.processes))
    code = ("import os, resource, sys\n"
            "for kind, value in %r:\n"
            "    try:\n"
            "        resource.setrlimit(kind, (value, value))\n"
            "    except (ValueError, OSError):\n"
            "        pass\n"
            "os.execv(sys.argv[1], sys.argv[1:])\n") % (settings,)
    return [sys.executable, "-c", code]


def gpu_devices():
    return sorted(Path("/dev").glob("nvidia*"))


def sandbox_environment(home: Path):
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


def socket_folder():
    """Where channel folders go: the temp folder, unless its path is too long for the kernel's
    Unix sockets (at most 107 bytes: ``<folder>/<server>/<submission>/channel/kernel-4``)."""
    folder = tempfile.gettempdir()
    return folder if len(folder) <= 56 else "/tmp"


def file_tail(path: Path, size: int = 2000):
    """The end of a log file, for an error message ("" if it cannot be read)."""
    try:
        return Path(path).read_bytes()[-size:].decode("utf-8", "replace")
    except OSError:
        return ""


class ForkServerError(RuntimeError):
    pass


class ForkServer:
    """Host side of a fork server (``course.forkserver``): one pre-warmed interpreter, in its own
    bubblewrap sandbox, that forks a fresh sandboxed kernel for each submission.

    Needs root (it gives each kernel its own user id) and bubblewrap; ``available()`` says
    whether this machine has both.  Every kernel's channel folder must be made under ``root``.
    """

    START_TIMEOUT = 120.0
    SPAWN_TIMEOUT = 30.0

    @staticmethod
    def available():
        return os.geteuid() == 0 and bubblewrap() is not None and sys.platform.startswith("linux")

    def __init__(self, modules=()):
        import socket
        import subprocess
        import tempfile

        if not self.available():
            raise ForkServerError("a fork server needs root and bubblewrap on Linux")
        self.modules = tuple(modules)
        self.root = Path(tempfile.mkdtemp(prefix="course-fs-", dir=socket_folder()))
        self._control, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._lock = threading.Lock()
        self._replies = {}  # key -> reply message, once it came
        self._exits = {}  # key -> exit status, once that kernel's sandbox ended
        self._changed = threading.Condition()
        self._ready = False
        self._counter = 0
        self.server_log = self.root / "server.log"
        settings = {"modules": list(self.modules), "staging": FORK_STAGING, "scratch_staging": FORK_SCRATCH_STAGING,
                    "channels": str(self.root), "home": str(SANDBOX_HOME)}
        # The server's code is copied into its own folder: the course package is not mounted in the sandbox.
        script = self.root / "forkserver.py"
        shutil.copyfile(Path(__file__).with_name("forkserver.py"), script)
        os.chmod(script, 0o644)
        command = fork_server_arguments(self.root) + [sys.executable, str(script), str(server_end.fileno()),
                                                       json.dumps(settings)]
        with open(self.server_log, "wb") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            pass_fds=(server_end.fileno(),))
        server_end.close()
        self._reader = threading.Thread(target=self._read, name="fork-server-reader", daemon=True)
        self._reader.start()
        with self._changed:
            if not self._changed.wait_for(lambda: self._ready or self.process.poll() is not None, self.START_TIMEOUT):
                self.close()
                raise ForkServerError("the fork server did not start in time")
        if not self._ready:
            tail = self.log_tail()
            self.close()
            raise ForkServerError(f"the fork server failed to start: {tail}")

    def _read(self):
        while True:
            try:
                data = self._control.recv(65536)
            except OSError:
                data = b""
            with self._changed:
                if not data:  # the server is gone, and every kernel's sandbox with it
                    self._ready = False
                    for key in range(1, self._counter + 1):
                        self._exits.setdefault(key, -9)
                    self._changed.notify_all()
                    return
                message = json.loads(data)
                if "ready" in message:
                    self._ready = True
                elif "spawned" in message or "failed" in message:
                    self._replies[message.get("spawned", message.get("failed"))] = message
                elif "exited" in message:
                    self._exits[message["exited"]] = message["status"]
                self._changed.notify_all()

    def alive(self):
        return self._ready and self.process.poll() is None

    def spawn(self, channel: Path, arguments, uid: int, limits: Limits, log_fd: int, cgroup_fds=()):
        """Fork a kernel in its own sandbox; returns a ``ForkedKernel`` (a Popen look-alike).

        ``arguments``: the kernel's command-line arguments (``-f <connection file>`` ...);
        ``cgroup_fds``: ``cgroup.procs`` files open for writing, which the fork joins first."""
        import array
        import socket
        from dataclasses import asdict

        if self.root.resolve() not in Path(channel).resolve().parents:
            raise ForkServerError(f"the channel {channel} is not under the fork server's folder {self.root}")
        if not SANDBOX_UID_RANGE[0] <= uid < SANDBOX_UID_RANGE[1]:
            raise ForkServerError(f"refusing user id {uid}: sandbox user ids are in {SANDBOX_UID_RANGE}")
        request_limits = asdict(limits)
        request_limits["limit_data"] = bool(gpu_devices())  # CUDA reserves huge address space; limit data instead
        request_limits["processes"] = limits.processes + 1  # the sandbox's init counts as one
        with self._lock:
            self._counter += 1
            key = self._counter
            message = json.dumps({"spawn": key, "channel": str(channel), "arguments": [str(a) for a in arguments],
                                  "uid": uid, "limits": request_limits, "cgroups": len(cgroup_fds)}).encode()
            fds = array.array("i", [log_fd, *cgroup_fds])
            try:
                self._control.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
            except OSError as error:
                raise ForkServerError(f"the fork server is gone: {error}") from None
        with self._changed:
            if not self._changed.wait_for(lambda: key in self._replies or key in self._exits, self.SPAWN_TIMEOUT):
                raise ForkServerError("the fork server did not answer")
            reply = self._replies.pop(key, None)
        if reply is None:
            raise ForkServerError(f"the fork server died: {self.log_tail()}")
        if "failed" in reply:
            raise ForkServerError(f"the fork server could not start a kernel: {reply['error']}")
        return ForkedKernel(self, key, reply["pid"])

    def exit_status(self, key):
        with self._changed:
            return self._exits.get(key)

    def kill(self, key):
        with self._lock:
            try:
                self._control.send(json.dumps({"kill": key}).encode())
            except OSError:
                pass

    def log_tail(self):
        return file_tail(self.server_log)

    def close(self):
        import socket

        try:
            # shutdown() first: close() alone would not wake the reader thread's recv(), and the
            # server would not see the end of the connection until that thread let go of it.
            self._control.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self._control.close()  # the server kills its kernels and exits
        except OSError:
            pass
        try:
            self.process.wait(timeout=5)
        except Exception:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


class ForkedKernel:
    """The part of ``subprocess.Popen`` jupyter_client's provisioner uses, for a forked kernel."""

    stdin = stdout = stderr = None

    def __init__(self, server: ForkServer, key: int, pid: int):
        self.server, self.key, self.pid = server, key, pid

    @property
    def returncode(self):
        return self.server.exit_status(self.key)

    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            if deadline is not None and time.monotonic() > deadline:
                import subprocess

                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, signum):
        # Only ending the kernel is supported (the grader never interrupts one): the whole sandbox goes.
        if signum in (signal.SIGKILL, signal.SIGTERM):
            self.kill()

    def kill(self):
        self.server.kill(self.key)

    terminate = kill


_FORK_SERVERS = {}  # modules -> ForkServer, one per process
_FORK_SERVERS_LOCK = threading.Lock()


def shared_fork_server(modules=()):
    """This process's fork server for ``modules`` (started on first use; again if it died)."""
    import atexit

    modules = tuple(sorted(set(modules)))
    with _FORK_SERVERS_LOCK:
        server = _FORK_SERVERS.get(modules)
        if server is not None and server.alive():
            return server
        if server is not None:
            server.close()
        if not _FORK_SERVERS:
            atexit.register(close_fork_servers)
        server = _FORK_SERVERS[modules] = ForkServer(modules)
        return server


def close_fork_servers():
    with _FORK_SERVERS_LOCK:
        servers = list(_FORK_SERVERS.values())
        _FORK_SERVERS.clear()
    for server in servers:
        server.close()
    return len(servers)


_LIVE_SANDBOXES = weakref.WeakSet()  # every SandboxedKernelManager of this process, for kill_all_sandboxes()


# The processes of a sandbox that are not the submission's: bubblewrap outside and its init, or a
# forked kernel's init (and, for a moment, the fork that makes it).
SANDBOX_OWN_PROCESSES = 2
_NO_CGROUP_SAID = threading.Event()


def submission_cgroup(limits: Limits, log):
    """A fresh cgroup for one submission (``course.cgroups``), or None; where cgroups cannot be
    used, say once per process that only the per-process limits hold."""
    from .cgroups import give_up, grader_cgroups

    grader, problem = grader_cgroups()
    if grader is not None:
        try:
            return grader.new_submission(limits.memory_bytes, limits.processes + SANDBOX_OWN_PROCESSES, limits.cpus)
        except OSError as error:
            problem = f"a submission cgroup could not be made: {error}"
            give_up(problem)
    if not _NO_CGROUP_SAID.is_set():
        _NO_CGROUP_SAID.set()
        log.warning("no cgroup per submission (%s): memory, processes and CPU are limited per process only "
                    "(rlimits), so several processes of one submission together can use more than %.3g GiB",
                    problem, limits.memory_bytes / GIB)
    return None


def kill_all_sandboxes():
    """Kill every kernel this process started and remove its scratch folder (the process is stopping)."""
    for km in list(_LIVE_SANDBOXES):
        try:
            km.kill_everything()
        except Exception:
            pass
        shutil.rmtree(km.channel.parent, ignore_errors=True)


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel runs in the sandbox described above."""

    def __init__(self, channel: Path, limits: Limits = Limits(), use_bubblewrap: bool = True,
                 fork_server: "ForkServer | None" = None, **kwargs):
        import zmq
        import zmq.asyncio

        self.channel = Path(channel)
        # With a fork server the kernel is forked from it instead of started by bwrap: the same
        # sandbox, without paying for the interpreter and its imports again.
        self.fork_server = fork_server if use_bubblewrap else None
        self.limits = limits
        self.sandbox_uid = SANDBOX_UID_RANGE[0] + secrets.randbelow(SANDBOX_UID_RANGE[1] - SANDBOX_UID_RANGE[0])
        if use_bubblewrap:
            require_sandbox()  # never a silent fallback: no sandbox, no student code
        self.enforced = use_bubblewrap
        self.cgroup = None  # the submission's cgroup, made when its command is (course.cgroups)
        self.channel.mkdir(parents=True, exist_ok=True)
        # The grader refuses oversized messages instead of parsing them.
        context = zmq.asyncio.Context()
        context.setsockopt(zmq.MAXMSGSIZE, limits.max_message_bytes)
        super().__init__(kernel_name="python3", transport="ipc", ip=str(self.channel / "kernel"), context=context, **kwargs)
        self.connection_file = str(self.channel / "kernel.json")
        _LIVE_SANDBOXES.add(self)
        if os.geteuid() == 0:
            os.chown(self.channel, self.sandbox_uid, self.sandbox_uid)
            os.chmod(self.channel, 0o700)

    def format_kernel_cmd(self, extra_arguments=None):
        command = super().format_kernel_cmd(extra_arguments)
        # What a forked kernel gets as its command line: the launcher's arguments (-f <connection
        # file>, and nbclient's --HistoryManager.hist_file=:memory:).
        launcher = [i for i, arg in enumerate(command) if arg == "ipykernel_launcher"]
        self.kernel_arguments = command[launcher[0] + 1:] if launcher else None
        if os.geteuid() == 0:
            os.chown(self.connection_file, self.sandbox_uid, self.sandbox_uid)
        if self.cgroup is None:
            self.cgroup = submission_cgroup(self.limits, self.log)
        # Joins the cgroup before anything else runs (a cold start; a forked kernel joins by itself).
        join = self.cgroup.join_command() if self.cgroup is not None else []
        if not self.enforced:
            warn_unsandboxed(self.log)
            return join + rlimit_only_arguments(self.limits) + command
        return join + bubblewrap_arguments(self.channel, self.sandbox_uid, self.limits) + command

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        if self.fork_server is None:
            return await super()._async_launch_kernel(kernel_cmd, **kw)
        log = kw.get("stdout")
        log_fd = log.fileno() if hasattr(log, "fileno") else os.open(os.devnull, os.O_WRONLY)
        cgroup_fds = []
        try:
            if not getattr(self, "kernel_arguments", None):
                raise ForkServerError(f"the kernel is not ipykernel_launcher ({kernel_cmd[-5:]})")
            if self.cgroup is not None:
                cgroup_fds = self.cgroup.open_procs()
            process = self.fork_server.spawn(self.channel, self.kernel_arguments, self.sandbox_uid, self.limits, log_fd,
                                             cgroup_fds)
        except (ForkServerError, OSError) as error:  # costs time, never a grade: start this kernel cold instead
            self.log.warning("%s; starting the kernel cold", error)
            self.fork_server = None
            return await super()._async_launch_kernel(kernel_cmd, **kw)  # joins the cgroup by its command
        finally:
            for fd in cgroup_fds:
                os.close(fd)
            if not hasattr(log, "fileno"):
                os.close(log_fd)
        self.provisioner.process = process
        self.provisioner.pid = process.pid
        self.provisioner.pgid = None  # signals go through the fork server, which kills the whole sandbox
        self._reconcile_connection_info(self.provisioner.connection_info)

    # Exit statuses of a sandbox whose kernel was stopped by an interrupt or termination signal
    # (bubblewrap, and a forked kernel's init, exit with 128 + the signal that killed the kernel).
    INTERRUPTED_STATUSES = {128 + signal.SIGINT, 128 + signal.SIGTERM, 128 + signal.SIGHUP, 128 + signal.SIGQUIT}

    def ended_from_outside(self, wait: float = 2.0):
        """Whether the kernel's end says nothing about the submission: its sandbox (bubblewrap, or a
        forked kernel's init) was killed by a signal, which nothing inside the sandbox can send (the
        student's code runs as another user, and an init ignores signals from its own namespace),
        or the kernel was stopped by an interrupt or termination signal (Ctrl-C meant for the grader,
        a kill).  A submission that sends one to itself is not graded either: it fails, and says so.
        Without bubblewrap there is no telling: never True."""
        process = getattr(getattr(self, "provisioner", None), "process", None)
        if not self.enforced or process is None or getattr(self, "killed_by_grader", False):
            return False
        deadline = time.monotonic() + wait
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        code = process.poll()
        return code is not None and (code < 0 or code in self.INTERRUPTED_STATUSES)

    def sandbox_processes(self):
        """Every process of this sandbox (by its user id, or the kernel's process tree)."""
        import psutil

        if os.geteuid() == 0:
            return [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == self.sandbox_uid]
        provisioner = getattr(self, "provisioner", None)
        process = getattr(provisioner, "process", None)
        if process is None:
            return []
        try:
            root = psutil.Process(process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def kill_everything(self):
        """Kill the kernel and any process the submission left behind."""
        self.killed_by_grader = True  # its end is the grader's doing, not a signal from outside
        leftovers = [] if os.geteuid() == 0 else self.sandbox_processes()
        process = getattr(getattr(self, "provisioner", None), "process", None)
        if process is not None and process.poll() is None:
            process.kill()  # bubblewrap; its PID namespace dies with it
        if os.geteuid() == 0:
            sweep_user(self.sandbox_uid)
        for leftover in leftovers:
            try:
                leftover.kill()
            except Exception:
                pass
        if self.cgroup is not None:
            if process is not None and hasattr(process, "args"):  # bubblewrap, our child: reaped, it leaves the cgroup
                try:
                    process.wait(timeout=1)
                except Exception:
                    pass
            self.cgroup.remove()  # whatever is left in it dies, then the cgroup goes

    def memory_exceeded(self):
        """Whether the submission's processes together hit its memory limit: the out-of-memory killer
        ended one of them in its cgroup."""
        return self.cgroup is not None and not self.cgroup.removed and self.cgroup.oom_kills() > 0


class Watchdog:
    """Enforces what rlimits cannot: CPU per cell and per notebook summed over all
    the sandbox's processes, the size of the host-side channel folder (all of it, sub-folders
    included), and the memory of the whole submission (its cgroup's out-of-memory kills)."""

    def __init__(self, km: "SandboxedKernelManager", interval: float = 0.25):
        self.km, self.interval = km, interval
        self.violation = None
        self._cell_start_cpu = 0.0
        self._seen = {}  # pid -> last CPU seconds, so exited processes still count
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-watchdog", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)

    def cell_started(self):
        self._cell_start_cpu = self.cpu_seconds()

    def cpu_seconds(self):
        import psutil

        for process in self.km.sandbox_processes():
            try:
                times = process.cpu_times()
                self._seen[(process.pid, process.create_time())] = times.user + times.system + times.children_user + times.children_system
            except psutil.Error:
                pass
        return sum(self._seen.values())

    # What a file or folder costs at least, however small: a submission that makes millions of
    # empty ones fills the host's disk (its inodes) as surely as one big file.
    ENTRY_BYTES = 4096

    def channel_bytes(self, stop_above=None):
        """Bytes under the channel folder, every sub-folder included (links are not followed);
        counting stops once past ``stop_above``."""
        total = 0
        folders = [self.km.channel]
        while folders:
            try:
                with os.scandir(folders.pop()) as entries:
                    for entry in entries:
                        try:
                            size = entry.stat(follow_symlinks=False).st_size
                            if entry.is_dir(follow_symlinks=False):
                                folders.append(entry.path)
                        except OSError:
                            continue
                        total += max(size, self.ENTRY_BYTES)
                        if stop_above is not None and total > stop_above:
                            return total
            except OSError:
                continue
        return total

    def memory_violation(self):
        return (f"the submission's processes together used more than its memory limit of "
                f"{self.km.limits.memory_bytes / GIB:.3g} GiB (the out-of-memory killer ended one of them)")

    def check_memory(self):
        """Record a memory violation if the submission's cgroup saw one; return the violation."""
        if self.violation is None and self.km.memory_exceeded():
            self.violation = self.memory_violation()
        return self.violation

    def _run(self):
        limits = self.km.limits
        while not self._stop.wait(self.interval):
            used = self.cpu_seconds()
            if used - self._cell_start_cpu > limits.cell_cpu_seconds:
                self._kill(f"a cell used more than {limits.cell_cpu_seconds:.0f} s of CPU time")
            elif used > limits.notebook_cpu_seconds:
                self._kill(f"the notebook used more than {limits.notebook_cpu_seconds} s of CPU time")
            elif self.channel_bytes(stop_above=limits.scratch_bytes) > limits.scratch_bytes:
                self._kill(f"the submission wrote more than {limits.scratch_bytes // 1024**2} MiB")
            elif self.km.memory_exceeded():
                self._kill(self.memory_violation())

    def _kill(self, reason):
        if self.violation is None:
            self.violation = reason
        for process in self.km.sandbox_processes():
            try:
                process.kill()
            except Exception:
                pass
        if self.km.cgroup is not None and not self.km.cgroup.removed:
            self.km.cgroup.kill()


def sweep_user(uid: int, rounds: int = 5):
    """SIGKILL every process of ``uid``; repeat while any survive (forks in flight)."""
    import psutil

    for _ in range(rounds):
        alive = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid]
        if not alive:
            return
        for process in alive:
            try:
                process.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        time.sleep(0.05)
