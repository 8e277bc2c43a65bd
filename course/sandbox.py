"""Where student code runs: a Jupyter kernel inside a bubblewrap sandbox.

The kernel talks to the grader over Unix sockets (ZMQ ``ipc`` transport) in
the submission's scratch folder, so the sandbox can have no network at all.
Inside it:

* the system, the Python installation and the virtual environment are
  mounted read-only; nothing else of the host exists (no course folder, no
  solutions, no ``grader_tests/``, no gradebook, no other submission);
* the only writable place is the submission's own scratch folder (plus a
  private ``/tmp`` that vanishes with the sandbox);
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

from jupyter_client import KernelManager

GIB = 1024**3
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
    output_chars_per_cell: int = 20_000  # output kept in the graded notebook
    open_files: int = 1024


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


def bubblewrap_arguments(scratch: Path, uid: int, limits: Limits):
    """The bwrap command line that wraps the kernel command."""
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
    for path in _read_only_mounts():
        mount("--ro-bind", path)
    for device in sorted(Path("/dev").glob("nvidia*")):  # GPU parity checks
        args.extend(["--dev-bind", str(device), str(device)])
    args.extend(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp"])
    mount("--bind", str(scratch))
    args.extend(["--chdir", str(scratch), "--clearenv"])
    for name, value in sandbox_environment(scratch).items():
        args.extend(["--setenv", name, value])
    args.append("--")
    args.extend(limit_arguments(limits))
    if os.geteuid() == 0:
        args.extend(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all", "--"])
    return args


def limit_arguments(limits: Limits):
    return ["prlimit", f"--as={limits.memory_bytes}", f"--nproc={limits.processes}",
            f"--cpu={limits.notebook_cpu_seconds}", f"--fsize={limits.file_bytes}",
            "--core=0", f"--nofile={limits.open_files}", "--"]


def sandbox_environment(scratch: Path):
    return {
        "HOME": str(scratch),
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "MPLCONFIGDIR": str(scratch / ".matplotlib"),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "IPYTHONDIR": str(scratch / ".ipython"),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "LANG": "C.UTF-8",
    }


class SandboxedKernelManager(KernelManager):
    """A kernel manager whose kernel runs in the sandbox described above."""

    def __init__(self, scratch: Path, limits: Limits = Limits(), **kwargs):
        self.scratch = Path(scratch)
        self.limits = limits
        self.sandbox_uid = SANDBOX_UID_RANGE[0] + secrets.randbelow(SANDBOX_UID_RANGE[1] - SANDBOX_UID_RANGE[0])
        self.enforced = bubblewrap() is not None
        self.scratch.mkdir(parents=True, exist_ok=True)
        super().__init__(kernel_name="python3", transport="ipc", ip=str(self.scratch / ".kernel"), **kwargs)
        self.connection_file = str(self.scratch / ".kernel.json")
        if os.geteuid() == 0:
            os.chown(self.scratch, self.sandbox_uid, self.sandbox_uid)
            os.chmod(self.scratch, 0o700)

    def format_kernel_cmd(self, extra_arguments=None):
        command = super().format_kernel_cmd(extra_arguments)
        if os.geteuid() == 0:
            os.chown(self.connection_file, self.sandbox_uid, self.sandbox_uid)
        if not self.enforced:
            warnings.warn(
                "bubblewrap (bwrap) is not installed: student code runs WITHOUT the sandbox. "
                "Not enforced: no-network, read-only system, hidden course files, process isolation. "
                "Only resource limits (memory, CPU, processes, file size) apply. "
                "Install it with `apt-get install bubblewrap`.",
                SandboxUnavailable, stacklevel=2)
            return limit_arguments(self.limits) + command
        return bubblewrap_arguments(self.scratch, self.sandbox_uid, self.limits) + command

    def kill_everything(self):
        """Kill the kernel and any process the submission left behind."""
        try:
            if self.has_kernel:
                self.shutdown_kernel(now=True)
        except Exception:
            pass
        if os.geteuid() == 0:
            sweep_user(self.sandbox_uid)


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
