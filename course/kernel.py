"""The sandboxed kernel: started through jupyter_client's kernel provisioner API, and watched.

``SandboxedKernelManager`` is jupyter_client's kernel manager for one submission: its channel
folder, its throw-away user id, its limits and its cgroup.  Its kernel starts through
``SandboxProvisioner``, a kernel provisioner (jupyter_client's documented way to change how a
kernel is launched, registered under the entry point group ``jupyter_client.kernel_provisioners``
in ``pyproject.toml`` and named in the kernel spec's ``metadata.kernel_provisioner``): the kernel
command wrapped in bubblewrap and the limits (``course.sandbox``), the submission's cgroup joined
first, or the kernel forked from a fork server (``course.forkserver``) where there is one.

``Watchdog`` enforces what rlimits cannot (CPU summed over the sandbox's processes, the cgroup's
memory kills) and stops a kernel that filled its channel folder, a size-limited tmpfs of its own
(``mount_channel``); ``WarmKernel`` is a kernel started ahead of
time for the next submission (``course.workers`` starts it, ``course.execute`` runs the
submission in it), and ``KernelRecipe`` says what such a kernel is started with.
"""
from __future__ import annotations

import os
import secrets
import signal
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.provisioning import LocalProvisioner

from .files import ENTRY_BYTES, disk_usage, remove_quietly
from .forkserver_client import ForkServer, ForkServerError
from .sandbox import (GIB, SANDBOX_UID_RANGE, Limits, bubblewrap_arguments, require_sandbox, rlimit_only_arguments,
                      socket_folder, thread_environment, warn_unsandboxed)
from .vendor import ConnectedSocketHook

if TYPE_CHECKING:
    import asyncio
    import logging
    from collections.abc import Callable, Iterable

    import psutil
    import zmq
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.connect import KernelConnectionInfo
    from jupyter_client.kernelspec import KernelSpec

    from .cgroups import SubmissionCgroup
    from .forkserver_client import ForkedKernel

    Log = logging.Logger | logging.LoggerAdapter[logging.Logger]

# The name under which pyproject.toml registers SandboxProvisioner (entry point group
# jupyter_client.kernel_provisioners).
PROVISIONER_NAME = "course-sandbox"

# every SandboxedKernelManager of this process, for kill_all_sandboxes()
_LIVE_SANDBOXES: weakref.WeakSet[SandboxedKernelManager] = weakref.WeakSet()


# The processes of a sandbox that are not the submission's: bubblewrap outside and its init, or a
# forked kernel's init (and, for a moment, the fork that makes it).
SANDBOX_OWN_PROCESSES = 2
_NO_CGROUP_SAID = threading.Event()


def submission_cgroup(limits: Limits, log: Log) -> SubmissionCgroup | None:
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


def kill_all_sandboxes() -> None:
    """Kill every kernel this process started and remove its scratch folder (the process is stopping)."""
    for km in list(_LIVE_SANDBOXES):
        try:
            km.kill_everything()
        except Exception:
            pass
        remove_scratch(km.channel.parent)


class ChannelDisk(NamedTuple):
    """How the disk that a kernel's channel folder may use is limited."""

    by_filesystem: bool  # a tmpfs of its own with size= and nr_inodes=: a write past it fails (ENOSPC)
    problem: str | None = None  # why not, where it is only the watchdog's listing


_LISTING_ONLY_SAID = threading.Event()


def mount_channel(channel: Path, uid: int, limits: Limits, log: Log) -> ChannelDisk:
    """Mount a size-limited tmpfs of its own on a kernel's (empty) host-side channel folder.

    The kernel writes there by file descriptor: paths past PATH_MAX, files unlinked while open
    and nameless ones (O_TMPFILE) are out of any listing's sight, but not of the filesystem's
    count.  Its pages are charged to the cgroup of the process that writes them (the submission's),
    and they go when the folder is unmounted (``remove_scratch``).  Needs root on the host; else
    the watchdog's listing is all there is, and the log says so once."""
    from .forkserver import MS_NODEV, MS_NOSUID, mount

    if os.geteuid() != 0:
        disk = ChannelDisk(False, "the grader is not root, so it cannot mount a filesystem per channel")
    else:
        options = (f"size={limits.scratch_bytes},nr_inodes={channel_inodes(limits)},mode=0700,"
                   f"uid={uid},gid={uid}")
        try:
            mount("tmpfs", str(channel), "tmpfs", MS_NOSUID | MS_NODEV, options)
            return ChannelDisk(True)
        except OSError as error:
            disk = ChannelDisk(False, f"a tmpfs for the channel could not be mounted: {error}")
    if not _LISTING_ONLY_SAID.is_set():
        _LISTING_ONLY_SAID.set()
        log.warning("the kernel's channel folder is limited to %d MiB only by a listing (%s): files kept open after "
                    "unlinking, or made nameless, escape it", limits.scratch_bytes // 1024**2, disk.problem)
    return disk


def channel_inodes(limits: Limits) -> int:
    """Files and folders a channel may hold: as many as its size allows at ``ENTRY_BYTES`` each
    (an empty file costs the host an inode and memory, as a full one costs bytes)."""
    return max(1024, limits.scratch_bytes // ENTRY_BYTES)


def unmount_under(folder: Path) -> None:
    """Unmount every mount at or under ``folder`` (channels, a fork server's folder) that a process
    killed mid-submission left behind, so the folder can be removed; root only."""
    if os.geteuid() != 0:
        return
    from .forkserver import mount_points, unmount

    top = str(folder).rstrip("/")
    points = [p for p in set(mount_points()) if p == top or p.startswith(top + "/")]
    for point in sorted(points, key=len, reverse=True):  # the deepest first
        try:
            unmount(point)
        except OSError:
            pass


def remove_scratch(scratch: Path) -> None:
    """Remove a submission's host-side scratch folder: its channel's tmpfs unmounted (whatever the
    kernel wrote there goes with it, named or not), then the rest, at any depth, links not followed.
    Call it once the sandbox is dead."""
    if os.geteuid() == 0:
        from .forkserver import unmount

        try:
            unmount(Path(scratch) / "channel")
        except OSError:
            pass
    remove_quietly(scratch)


def new_scratch(fork_server: ForkServer | None = None) -> Path:
    """A fresh host folder for one submission's channel and kernel log (under the fork server's, if any)."""
    if fork_server is not None:
        return Path(tempfile.mkdtemp(prefix="", dir=fork_server.root))
    return Path(tempfile.mkdtemp(prefix="course-sandbox-", dir=socket_folder()))


class SandboxKernelSpecs(KernelSpecManager):
    """The installed kernel specs, each naming ``SandboxProvisioner`` as its provisioner."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        spec = super().get_kernel_spec(kernel_name)
        spec.metadata["kernel_provisioner"] = {"provisioner_name": PROVISIONER_NAME, "config": {}}
        return spec


class SandboxProvisioner(LocalProvisioner):
    """jupyter_client's local provisioner, with the kernel in the sandbox of its kernel manager
    (``self.parent``, a ``SandboxedKernelManager``): started cold in bubblewrap (or, where the
    instructor allowed it, with the limits only), or forked from the fork server."""

    kernel_arguments: list[str] | None = None  # what a forked kernel gets as its command line

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """The kernel command, wrapped: join the cgroup, then bubblewrap and the limits."""
        kwargs = await super().pre_launch(**kwargs)
        km, command = cast("SandboxedKernelManager", self.parent), kwargs["cmd"]
        # The launcher's arguments (-f <connection file>, and nbclient's --HistoryManager.hist_file=:memory:).
        launcher = [i for i, arg in enumerate(command) if arg == "ipykernel_launcher"]
        self.kernel_arguments = command[launcher[0] + 1:] if launcher else None
        if os.geteuid() == 0:
            os.chown(km.connection_file, km.sandbox_uid, km.sandbox_uid)
        if km.cgroup is None:
            km.cgroup = submission_cgroup(km.limits, km.log)
        # Joins the cgroup before anything else runs (a cold start; a forked kernel joins by itself).
        join = km.cgroup.join_command() if km.cgroup is not None else []
        if km.enforced:
            kwargs["cmd"] = join + bubblewrap_arguments(km.channel, km.sandbox_uid, km.limits) + command
        else:
            warn_unsandboxed(km.log)
            kwargs["cmd"] = join + rlimit_only_arguments(km.limits) + command
            kwargs["env"] = {**kwargs.get("env", os.environ), **thread_environment(km.limits.threads)}
        return kwargs

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        km = cast("SandboxedKernelManager", self.parent)
        if km.fork_server is None:
            return await super().launch_kernel(cmd, **kwargs)
        try:
            process = self.fork(kwargs.get("stdout"))
        except (ForkServerError, OSError) as error:  # costs time, never a grade: start this kernel cold instead
            km.log.warning("%s; starting the kernel cold", error)
            km.fork_server = None
            return await super().launch_kernel(cmd, **kwargs)  # joins the cgroup by its command
        # a forked kernel stands in for the Popen: returncode, poll, wait, send_signal and kill
        self.process, self.pid = process, process.pid  # type: ignore[assignment]
        self.pgid = None  # signals go through the fork server, which kills the whole sandbox
        return self.connection_info

    def fork(self, log: object) -> ForkedKernel:
        """The kernel forked from the kernel manager's fork server, into the submission's cgroup."""
        km = cast("SandboxedKernelManager", self.parent)
        if not self.kernel_arguments:
            raise ForkServerError("the kernel is not ipykernel_launcher")
        log_fd = log.fileno() if hasattr(log, "fileno") else os.open(os.devnull, os.O_WRONLY)
        cgroup_fds = []
        try:
            if km.cgroup is not None:
                cgroup_fds = km.cgroup.open_procs()
            assert km.fork_server is not None  # launch_kernel forks only where there is a fork server
            return km.fork_server.spawn(km.channel, self.kernel_arguments, km.sandbox_uid, km.limits, log_fd, cgroup_fds)
        finally:
            for fd in cgroup_fds:
                os.close(fd)
            if not hasattr(log, "fileno"):
                os.close(log_fd)


class SandboxedKernelManager(ConnectedSocketHook, AsyncKernelManager):
    """A kernel manager whose kernel runs in the sandbox described above (``SandboxProvisioner``)."""

    def __init__(self, channel: Path, limits: Limits = Limits(), use_bubblewrap: bool = True,
                 fork_server: ForkServer | None = None, **kwargs: Any) -> None:
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
        # the submission's cgroup, made when its command is (course.cgroups)
        self.cgroup: SubmissionCgroup | None = None
        self.channel.mkdir(parents=True, exist_ok=True)
        self.channel_disk = (mount_channel(self.channel, self.sandbox_uid, limits, self.log) if use_bubblewrap
                             else ChannelDisk(False, "grading without the sandbox"))
        # Every socket made from this context gets the quiet channels' budget unless made for a channel
        # with a budget of its own (connected_socket): the heartbeat's socket is made elsewhere.
        context = zmq.asyncio.Context()
        set_socket_budget(context, QUIET, limits)
        kwargs.setdefault("kernel_spec_manager", SandboxKernelSpecs())
        kwargs.setdefault("client_class", "course.kernel.SandboxedKernelClient")
        super().__init__(kernel_name="python3", transport="ipc", ip=str(self.channel / "kernel"), context=context, **kwargs)
        self.connection_file = str(self.channel / "kernel.json")
        _LIVE_SANDBOXES.add(self)
        if os.geteuid() == 0:
            os.chown(self.channel, self.sandbox_uid, self.sandbox_uid)
            os.chmod(self.channel, 0o700)

    # Exit statuses of a sandbox whose kernel was stopped by an interrupt or termination signal
    # (bubblewrap, and a forked kernel's init, exit with 128 + the signal that killed the kernel).
    INTERRUPTED_STATUSES = {128 + signal.SIGINT, 128 + signal.SIGTERM, 128 + signal.SIGHUP, 128 + signal.SIGQUIT}

    def ended_from_outside(self, wait: float = 2.0) -> bool:
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

    def sandbox_processes(self) -> list[psutil.Process]:
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

    def kill_everything(self) -> None:
        """Kill the kernel and any process the submission left behind."""
        self.killed_by_grader = True  # its end is the grader's doing, not a signal from outside
        leftovers = [] if os.geteuid() == 0 else self.sandbox_processes()
        process = getattr(getattr(self, "provisioner", None), "process", None)
        if process is not None and process.poll() is None:
            process.kill()  # bubblewrap; its PID namespace dies with it
        if self.cgroup is not None:
            if process is not None and hasattr(process, "args"):  # bubblewrap, our child: reaped, it leaves the cgroup
                try:
                    process.wait(timeout=1)
                except Exception:
                    pass
            self.cgroup.remove()  # whatever is left in it dies, then the cgroup goes
        if os.geteuid() == 0:  # and anything of its user id outside the cgroup (none, unless it had no cgroup)
            sweep_user(self.sandbox_uid)
        for leftover in leftovers:
            try:
                leftover.kill()
            except Exception:
                pass

    def connected_socket(self, channel: str, identity: bytes | None = None) -> zmq.Socket[Any]:
        return budgeted_socket(super().connected_socket, self.context, self.limits, channel, identity)

    def memory_exceeded(self) -> bool:
        """Whether the submission's processes together hit its memory limit: the out-of-memory killer
        ended one of them in its cgroup."""
        return self.cgroup is not None and not self.cgroup.removed and self.cgroup.oom_kills() > 0


class SocketBudget(NamedTuple):
    """What one of the grader's sockets to a kernel may hold: ZeroMQ drops the connection rather
    than take a larger message, and stops reading (the kernel waits) once this many are queued."""

    max_message_bytes: int
    queued_messages: int


QUIET = "quiet"  # stdin, control and heartbeat: the grader reads nothing large there, or nothing at all


def channel_budgets(limits: Limits) -> dict[str, SocketBudget]:
    """The budget of each channel the grader opens to a kernel (``Limits`` says the numbers)."""
    quiet = SocketBudget(limits.quiet_message_bytes, limits.quiet_queue_messages)
    return {"iopub": SocketBudget(limits.max_message_bytes, limits.output_queue_messages),
            "shell": SocketBudget(limits.max_message_bytes, limits.reply_queue_messages),
            "stdin": quiet, "control": quiet, "hb": quiet, QUIET: quiet}


def set_socket_budget(target: zmq.Context[Any] | zmq.Socket[Any], channel: str, limits: Limits = Limits()) -> None:
    """The budget of ``channel`` on a ZeroMQ context (for the sockets it makes next) or socket."""
    import zmq

    budget = channel_budgets(limits)[channel]
    target.setsockopt(zmq.MAXMSGSIZE, budget.max_message_bytes)
    target.setsockopt(zmq.RCVHWM, budget.queued_messages)


def budgeted_socket(make: Callable[[str, bytes | None], zmq.Socket[Any]], context: zmq.Context[Any], limits: Limits,
                    channel: str, identity: bytes | None) -> zmq.Socket[Any]:
    """jupyter_client's socket for ``channel`` (``make``: ``course.vendor.ConnectedSocketHook``), made with that
    channel's budget: set on the context for the moment the socket is made, because the socket is
    connected before it is returned, and an option set after connecting misses that connection.
    One context per kernel, whose sockets are made one at a time."""
    set_socket_budget(context, channel if channel in ("iopub", "shell", "stdin", "control", "hb") else QUIET, limits)
    try:
        return make(channel, identity)
    finally:
        set_socket_budget(context, QUIET, limits)


def _async_client_class() -> type[AsyncKernelClient]:
    from jupyter_client.asynchronous import AsyncKernelClient

    return AsyncKernelClient


if TYPE_CHECKING:
    _AsyncKernelClient = AsyncKernelClient
else:
    _AsyncKernelClient = _async_client_class()


class SandboxedKernelClient(ConnectedSocketHook, _AsyncKernelClient):
    """jupyter_client's asynchronous client, its every socket made with its channel's budget
    (``channel_budgets``); the kernel manager's limits say the numbers."""

    def connected_socket(self, channel: str, identity: bytes | None = None) -> zmq.Socket[Any]:
        limits = getattr(self.parent, "limits", None) or Limits()  # the parent is its kernel manager
        return budgeted_socket(super().connected_socket, self.context, limits, channel, identity)


class Watchdog:
    """Enforces what rlimits cannot: CPU per cell and per notebook summed over all the sandbox's
    processes, and the memory of the whole submission (its cgroup's out-of-memory kills); and
    stops a kernel whose host-side channel folder is full (``channel_full``)."""

    def __init__(self, km: SandboxedKernelManager, interval: float = 0.25) -> None:
        self.km, self.interval = km, interval
        self.violation: str | None = None
        self._cell_start_cpu = 0.0
        # (pid, start time) -> last CPU seconds, so exited processes still count
        self._seen: dict[tuple[int, float], float] = {}
        # the cgroup's account when last read: one baseline, never mixed with _seen
        self._cgroup_cpu: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def cell_started(self) -> None:
        self._cell_start_cpu = self.cpu_seconds()

    def cpu_seconds(self) -> float:
        """CPU time of the sandbox's processes so far: its cgroup's account, one file read; without
        one, summed over its processes (and the last seen time of those that exited)."""
        cgroup = self.km.cgroup
        if cgroup is not None and not cgroup.removed:
            used = cgroup.cpu_seconds()
            if used is not None:
                self._cgroup_cpu = used
                return used
        if self._cgroup_cpu is not None:  # the cgroup is gone (the kernel was stopped): its last account stands
            return self._cgroup_cpu
        import psutil

        for process in self.km.sandbox_processes():
            try:
                times = process.cpu_times()
                self._seen[(process.pid, process.create_time())] = times.user + times.system + times.children_user + times.children_system
            except psutil.Error:
                pass
        return sum(self._seen.values())

    def channel_full(self) -> bool:
        """Whether the submission filled its channel folder.  On its own tmpfs the filesystem refuses
        the write past the limit, and this only notices it (no space or no inode left), so the
        feedback can say why; elsewhere the listing is the limit (``course.files.disk_usage``)."""
        limit = self.km.limits.scratch_bytes
        if self.km.channel_disk.by_filesystem:
            try:
                usage = os.statvfs(self.km.channel)
            except OSError:
                return False
            return usage.f_bavail == 0 or usage.f_favail == 0
        return disk_usage(self.km.channel, stop_above=limit) > limit

    def memory_violation(self) -> str:
        return (f"the submission's processes together used more than its memory limit of "
                f"{self.km.limits.memory_bytes / GIB:.3g} GiB (the out-of-memory killer ended one of them)")

    def check_memory(self) -> str | None:
        """Record a memory violation if the submission's cgroup saw one; return the violation."""
        if self.violation is None and self.km.memory_exceeded():
            self.violation = self.memory_violation()
        return self.violation

    def disk_violation(self) -> str:
        return f"the submission wrote more than {self.km.limits.scratch_bytes // 1024**2} MiB"

    def check_disk(self) -> str | None:
        """Record a full channel folder as the violation; return the violation.  Checked after every
        cell too: the filesystem refuses the write at once, and the cell can end before the next look."""
        if self.violation is None and self.channel_full():
            self.violation = self.disk_violation()
        return self.violation

    def _run(self) -> None:
        limits = self.km.limits
        while not self._stop.wait(self.interval):
            used = self.cpu_seconds()
            if used - self._cell_start_cpu > limits.cell_cpu_seconds:
                self._kill(f"a cell used more than {limits.cell_cpu_seconds:.0f} s of CPU time")
            elif used > limits.notebook_cpu_seconds:
                self._kill(f"the notebook used more than {limits.notebook_cpu_seconds} s of CPU time")
            elif self.channel_full():
                self._kill(self.disk_violation())
            elif self.km.memory_exceeded():
                self._kill(self.memory_violation())

    def _kill(self, reason: str) -> None:
        if self.violation is None:
            self.violation = reason
        for process in self.km.sandbox_processes():
            try:
                process.kill()
            except Exception:
                pass
        if self.km.cgroup is not None and not self.km.cgroup.removed:
            self.km.cgroup.kill()


def sweep_user(uid: int, rounds: int = 5) -> None:
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


class KernelRecipe(NamedTuple):
    """What a sandboxed kernel is started with; a kernel started ahead is used only for a
    submission with the same recipe."""

    limits: Limits
    use_bubblewrap: bool
    modules: tuple[str, ...]  # the heavy modules the fork server (or the warm kernel itself) imports ahead
    fork_server: bool  # fork it from a pre-warmed interpreter, where this machine allows one

    @classmethod
    def of(cls, limits: Limits, use_bubblewrap: bool = True, modules: Iterable[str] | None = (),
           fork_server: bool = True) -> KernelRecipe:
        """A recipe from what a task carries (``course.tasks.WorkerTask``)."""
        return cls(limits, bool(use_bubblewrap), tuple(modules or ()), bool(fork_server))


class WarmKernel:
    """A sandboxed kernel started ahead of time for one future submission: its scratch folder,
    kernel manager and, once it is ready, its client (``course.workers`` starts it, and
    ``course.execute`` runs the submission in it, once)."""

    def __init__(self, recipe: KernelRecipe, fork_server: ForkServer | None = None) -> None:
        self.recipe = recipe
        self.scratch = new_scratch(fork_server)
        self.km = SandboxedKernelManager(self.scratch / "channel", recipe.limits, use_bubblewrap=recipe.use_bubblewrap,
                                         fork_server=fork_server)
        self.kc: AsyncKernelClient | None = None
        # course.execute.LimitedOutputClient, once course.workers.launch made it: its base class is made at run time
        # (course.vendor.NotebookClientHooks), so the type checker sees it as Any anyway
        self.client: Any = None
        self.created = time.monotonic()
        self.task: asyncio.Task[WarmKernel] | None = None  # the asyncio task that makes it ready

    def discard(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        close_kernel(self.km, self.kc)
        remove_scratch(self.scratch)


def close_kernel(km: SandboxedKernelManager, kc: AsyncKernelClient | None) -> None:
    """Kill the kernel's sandbox and release the grader-side sockets."""
    try:
        km.kill_everything()
    except Exception:
        pass
    try:
        if kc is not None:
            kc.stop_channels()
    except Exception:
        pass
    try:
        km.context.destroy(linger=0)
    except Exception:
        pass
