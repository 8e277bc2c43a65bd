"""The grader's side of the fork server (``course.forkserver``): ``ForkServer`` starts one, in its
own bubblewrap sandbox, and asks it for kernels; ``ForkedKernel`` is what jupyter_client's
provisioner (``course.kernel``) holds for a forked kernel; ``fork_server_for`` is the one place that
decides whether kernels are forked or start cold.

What the client checks before it asks (``check_spawn``: its own channels, throw-away user ids
only) is unit-tested in ``tests/unit/test_forkserver_protocol.py``; real servers and kernels in
``tests/test_forkserver.py``.
"""
import atexit
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence, cast

from . import forkserver, forkserver_protocol
from .files import remove_quietly
from .forkserver import MS_BIND, MS_SHARED, mount, unmount
from .forkserver_protocol import MAX_PACKET, decode, kill_request, reply_event, send, spawn_request
from .sandbox import (FORK_SCRATCH_STAGING, FORK_STAGING, SANDBOX_HOME, SANDBOX_UID_RANGE, Limits, bubblewrap,
                      file_tail, fork_server_arguments, rlimits, socket_folder, thread_environment)

if TYPE_CHECKING:
    from .forkserver_protocol import Message


class ForkServerError(RuntimeError):
    pass


def check_spawn(root: Path, channel: Path, uid: int) -> None:
    """Raise ``ForkServerError`` unless ``channel`` is under the server's ``root`` and ``uid`` is a
    sandbox user id: the server is never asked to expose another folder or become a real user."""
    if Path(root).resolve() not in Path(channel).resolve().parents:
        raise ForkServerError(f"the channel {channel} is not under the fork server's folder {root}")
    if not SANDBOX_UID_RANGE[0] <= uid < SANDBOX_UID_RANGE[1]:
        raise ForkServerError(f"refusing user id {uid}: sandbox user ids are in {SANDBOX_UID_RANGE}")


def install_server(folder: Path) -> Path:
    """Copy the server's script into ``folder``, the fork server's own, with the protocol module it
    imports next to it: the course package is not mounted in the server's sandbox.  Returns the script."""
    for source in (forkserver_protocol.__file__, forkserver.__file__):
        copy = Path(folder) / Path(source).name
        shutil.copyfile(source, copy)
        os.chmod(copy, 0o644)
    return Path(folder) / Path(forkserver.__file__).name


class ForkServer:
    """The grader's side of a fork server: one pre-warmed interpreter, in its own bubblewrap
    sandbox, that forks a fresh sandboxed kernel for each submission.

    Needs root (it gives each kernel its own user id) and bubblewrap; ``available()`` says
    whether this machine has both.  Every kernel's channel folder must be made under ``root``.
    """

    START_TIMEOUT = 120.0
    SPAWN_TIMEOUT = 30.0

    @staticmethod
    def available() -> bool:
        return os.geteuid() == 0 and bubblewrap() is not None and sys.platform.startswith("linux")

    def __init__(self, modules: Iterable[str] = ()) -> None:
        if not self.available():
            raise ForkServerError("a fork server needs root and bubblewrap on Linux")
        self.modules = tuple(modules)
        self.root = Path(tempfile.mkdtemp(prefix="course-fs-", dir=socket_folder()))
        # Each kernel's channel is a size-limited tmpfs that the grader mounts on the host once the
        # server runs (course.kernel.mount_channel).  The server's sandbox sees it only if the folder
        # of every channel is a shared mount here: bubblewrap's copy of it is then its slave, and
        # receives every mount (and unmount) made under it.
        try:
            mount(str(self.root), str(self.root), None, MS_BIND)
            mount(None, str(self.root), None, MS_SHARED)
        except OSError as error:  # then kernels start cold, each with its channel mounted before bubblewrap
            unmount(self.root)
            os.rmdir(self.root)
            raise ForkServerError(f"the fork server's folder cannot be a shared mount: {error}") from None
        self._control, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._lock = threading.Lock()
        self._replies: dict[int, Message] = {}  # key -> reply message, once it came
        self._exits: dict[int, int] = {}  # key -> exit status, once that kernel's sandbox ended
        self._changed = threading.Condition()
        self._ready = False
        self._counter = 0
        self.server_log = self.root / "server.log"
        settings = {"modules": list(self.modules), "staging": FORK_STAGING, "scratch_staging": FORK_SCRATCH_STAGING,
                    "channels": str(self.root), "home": str(SANDBOX_HOME)}
        script = install_server(self.root)
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

    def _read(self) -> None:
        while True:
            try:
                data = self._control.recv(MAX_PACKET)
            except OSError:
                data = b""
            with self._changed:
                if not data:  # the server is gone, and every kernel's sandbox with it
                    self._ready = False
                    for ended in range(1, self._counter + 1):
                        self._exits.setdefault(ended, -9)
                    self._changed.notify_all()
                    return
                kind, key, value = reply_event(decode(data))
                if kind == "ready":
                    self._ready = True
                # A spawned, failed or exited reply names its kernel: the integer key this client sent.
                elif kind == "answer":
                    self._replies[cast(int, key)] = value
                else:
                    self._exits[cast(int, key)] = value
                self._changed.notify_all()

    def alive(self) -> bool:
        return self._ready and self.process.poll() is None

    def spawn(self, channel: Path, arguments: Iterable[str], uid: int, limits: Limits, log_fd: int,
              cgroup_fds: Sequence[int] = ()) -> "ForkedKernel":
        """Fork a kernel in its own sandbox; returns a ``ForkedKernel`` (a Popen look-alike).

        ``arguments``: the kernel's command-line arguments (``-f <connection file>`` ...);
        ``cgroup_fds``: ``cgroup.procs`` files open for writing, which the fork joins first."""
        check_spawn(self.root, channel, uid)
        # The sandbox's init counts as one process.
        pairs = rlimits(limits, processes=limits.processes + 1)
        with self._lock:
            self._counter += 1
            key = self._counter
            request = spawn_request(key, channel, arguments, uid, pairs, limits.scratch_bytes, len(cgroup_fds),
                                    limits.threads, thread_environment(limits.threads))
            try:
                send(self._control, request, [log_fd, *cgroup_fds])
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

    def exit_status(self, key: int) -> "int | None":
        with self._changed:
            return self._exits.get(key)

    def kill(self, key: int) -> None:
        with self._lock:
            try:
                send(self._control, kill_request(key))
            except OSError:
                pass

    def log_tail(self) -> str:
        return file_tail(self.server_log)

    def close(self) -> None:
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
        try:
            unmount(self.root)  # and with it any kernel's channel still mounted under it
        except OSError:
            pass
        remove_quietly(self.root)


class ForkedKernel:
    """The part of ``subprocess.Popen`` jupyter_client's provisioner uses, for a forked kernel."""

    stdin = stdout = stderr = None

    def __init__(self, server: ForkServer, key: int, pid: int) -> None:
        self.server, self.key, self.pid = server, key, pid

    @property
    def returncode(self) -> "int | None":
        return self.server.exit_status(self.key)

    def poll(self) -> "int | None":
        return self.returncode

    def wait(self, timeout: "float | None" = None) -> int:
        start = time.monotonic()
        while self.returncode is None:
            if timeout is not None and time.monotonic() > start + timeout:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        # Only ending the kernel is supported (the grader never interrupts one): the whole sandbox goes.
        if signum in (signal.SIGKILL, signal.SIGTERM):
            self.kill()

    def kill(self) -> None:
        self.server.kill(self.key)

    terminate = kill


_FORK_SERVERS: dict[tuple[str, ...], ForkServer] = {}  # modules -> ForkServer, one per process
_FORK_SERVERS_LOCK = threading.Lock()


def shared_fork_server(modules: Iterable[str] = ()) -> ForkServer:
    """This process's fork server for ``modules`` (started on first use; again if it died)."""
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


def close_fork_servers() -> int:
    with _FORK_SERVERS_LOCK:
        servers = list(_FORK_SERVERS.values())
        _FORK_SERVERS.clear()
    for server in servers:
        server.close()
    return len(servers)


def fork_server_for(modules: Iterable[str], use_bubblewrap: bool, wanted: bool,
                    log: "logging.Logger | logging.LoggerAdapter[logging.Logger] | None" = None,
                    where: "str | None" = None) -> "ForkServer | None":
    """Whether kernels are forked or start cold, decided here and nowhere else: this process's fork
    server for ``modules``, or None (not wanted, not possible here, or it failed to start: then
    kernels start cold, which costs time, never a grade)."""
    if not (wanted and use_bubblewrap and ForkServer.available()):
        return None
    try:
        return shared_fork_server(modules)
    except ForkServerError as error:
        if log is not None:
            log.warning("%sno fork server (%s); kernels start cold", f"{where}: " if where else "", error)
        return None
