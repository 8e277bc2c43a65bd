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
  network namespaces, with limits on memory, CPU time, processes, file size;
* every process dies with the sandbox: bubblewrap's PID namespace is torn
  down when grading of that submission ends, and a sweep kills anything left
  under the throw-away user id.

Without bubblewrap (an instructor's Mac, say) grading still runs with the
resource limits only, and a loud warning names what is not enforced.
"""
import os
import secrets
import shutil
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from jupyter_client import AsyncKernelManager

GIB = 1024**3
SANDBOX_HOME = Path("/home/student")
# User ids well above any real account; one per sandbox so that process
# limits and the final sweep apply to exactly one submission.
SANDBOX_UID_RANGE = (200_000, 900_000)


@dataclass(frozen=True)
class Limits:
    memory_bytes: int = 4 * GIB  # address space of each process
    processes: int = 64  # processes and threads of the sandbox user
    notebook_cpu_seconds: int = 600  # CPU time of each process, whole notebook
    cell_seconds: float = 120.0  # wall clock of one cell
    notebook_seconds: float = 600.0  # wall clock of the whole notebook
    file_bytes: int = 256 * 1024**2  # largest file the sandbox may write
    cell_cpu_seconds: float = 120.0  # CPU time of all sandbox processes during one cell
    output_chars_per_cell: int = 20_000  # output kept in the graded notebook
    open_files: int = 1024
    scratch_bytes: int = 512 * 1024**2  # writable space: the home/work folder and /tmp each
    max_message_bytes: int = 64 * 1024**2  # largest message the kernel may send the grader


class SandboxUnavailable(UserWarning):
    pass


def bubblewrap():
    return shutil.which("bwrap")


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
        args.extend(["--perms", "01777", "--size", str(limits.scratch_bytes), "--tmpfs", folder])
    for path in _read_only_mounts():
        mount("--ro-bind", path)
    for device in gpu_devices():  # GPU parity checks
        args.extend(["--dev-bind", str(device), str(device)])
    mount("--bind", str(channel))
    args.extend(["--chdir", str(SANDBOX_HOME), "--clearenv"])
    for name, value in sandbox_environment(SANDBOX_HOME).items():
        args.extend(["--setenv", name, value])
    args.append("--")
    args.extend(limit_arguments(limits))
    if os.geteuid() == 0:
        args.extend(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all", "--"])
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


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel runs in the sandbox described above."""

    def __init__(self, channel: Path, limits: Limits = Limits(), use_bubblewrap: bool = True, **kwargs):
        import zmq
        import zmq.asyncio

        self.channel = Path(channel)
        self.limits = limits
        self.sandbox_uid = SANDBOX_UID_RANGE[0] + secrets.randbelow(SANDBOX_UID_RANGE[1] - SANDBOX_UID_RANGE[0])
        self.enforced = use_bubblewrap and bubblewrap() is not None
        self.channel.mkdir(parents=True, exist_ok=True)
        # The grader refuses oversized messages instead of parsing them.
        context = zmq.asyncio.Context()
        context.setsockopt(zmq.MAXMSGSIZE, limits.max_message_bytes)
        super().__init__(kernel_name="python3", transport="ipc", ip=str(self.channel / "kernel"), context=context, **kwargs)
        self.connection_file = str(self.channel / "kernel.json")
        if os.geteuid() == 0:
            os.chown(self.channel, self.sandbox_uid, self.sandbox_uid)
            os.chmod(self.channel, 0o700)

    def format_kernel_cmd(self, extra_arguments=None):
        command = super().format_kernel_cmd(extra_arguments)
        if os.geteuid() == 0:
            os.chown(self.connection_file, self.sandbox_uid, self.sandbox_uid)
        if not self.enforced:
            warnings.warn(
                "bubblewrap (bwrap) is not installed or is turned off: student code runs WITHOUT the sandbox. "
                "Not enforced: no-network, read-only system, hidden course files, process isolation. "
                "Only resource limits (memory, CPU, processes, file size) apply. "
                "Install it with `apt-get install bubblewrap`.",
                SandboxUnavailable, stacklevel=2)
            self.log.warning("SANDBOX NOT ENFORCED (bubblewrap missing): network, filesystem and process "
                             "isolation are off; only resource limits apply. Install bubblewrap.")
            return rlimit_only_arguments(self.limits) + command
        return bubblewrap_arguments(self.channel, self.sandbox_uid, self.limits) + command

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


class Watchdog:
    """Enforces what rlimits cannot: CPU per cell and per notebook summed over all
    the sandbox's processes, and the size of the host-side channel folder."""

    def __init__(self, km: "SandboxedKernelManager", interval: float = 0.25):
        import threading

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

    def channel_bytes(self):
        total = 0
        try:
            with os.scandir(self.km.channel) as entries:
                for entry in entries:
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            pass
        return total

    def _run(self):
        limits = self.km.limits
        while not self._stop.wait(self.interval):
            used = self.cpu_seconds()
            if used - self._cell_start_cpu > limits.cell_cpu_seconds:
                self._kill(f"a cell used more than {limits.cell_cpu_seconds:.0f} s of CPU time")
            elif used > limits.notebook_cpu_seconds:
                self._kill(f"the notebook used more than {limits.notebook_cpu_seconds} s of CPU time")
            elif self.channel_bytes() > limits.scratch_bytes:
                self._kill(f"the submission wrote more than {limits.scratch_bytes // 1024**2} MiB")

    def _kill(self, reason):
        if self.violation is None:
            self.violation = reason
        for process in self.km.sandbox_processes():
            try:
                process.kill()
            except Exception:
                pass


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
