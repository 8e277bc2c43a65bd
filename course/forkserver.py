"""The fork server: a pre-warmed interpreter that forks one fresh, sandboxed kernel per submission.

Importing torch costs over a second of CPU in every new process, more than running a whole
submission.  So one interpreter per worker imports the heavy modules once (those the
assignment's *source* notebooks import, never a student's choice), inside a bubblewrap sandbox
of its own, and then only forks.  It never runs student code and never receives any: it gets a
channel folder, a user id, resource limits, a log file descriptor and the submission's
``cgroup.procs`` files (open for writing), and answers with a process id.

Each fork enters the sandbox a cold kernel gets from bubblewrap, before any student code runs:

* new mount, PID, network, IPC and UTS namespaces: its own ``/proc``; fresh, size-limited
  tmpfs folders for ``/tmp``, ``/var/tmp``, ``/dev/shm`` and the home folder; the folder with every
  submission's channel hidden under an empty tmpfs, and only its own channel put back; no
  network but its own loopback;
* the submission's cgroup (memory, processes and CPU of all its processes together), joined
  first, so that everything the sandbox starts is in it;
* the resource limits (``course.sandbox.rlimits``: memory, CPU, processes, file size, open
  files, no core dumps);
* a throw-away user id, no supplementary groups, every capability gone (checked), and
  ``no_new_privs``;
* PID 1 of its namespace is a small reaper (as bubblewrap's own init is), so when the grader
  kills it every process of that submission dies with it.

Nothing is shared between two students but the pages both inherit from the fork server,
copy-on-write: the modules as they were right after import.  The random generators are
re-seeded in each kernel.

This one module holds both sides, in the order a request travels:

1. the protocol, which both sides share (pure functions, unit-tested in
   ``tests/unit/test_forkserver_protocol.py``);
2. the server: this file runs inside the sandbox, copied into the fork server's own folder, as
   a script: it imports nothing of the course package there (the course folder is not
   mounted), only the standard library and ipykernel;
3. the client, in the grader's process: ``ForkServer`` starts a server and asks it for
   kernels, ``fork_server_for`` is the one place that decides whether kernels are forked or
   start cold.

Protocol, over a Unix ``SOCK_SEQPACKET`` socket (one JSON message per packet):

    -> {"spawn": key, "channel": path, "arguments": [...], "uid": n, "rlimits": [[name, value], ...],
        "scratch_bytes": n, "cgroups": n}
       with the kernel's log file, then n cgroup.procs files, as attached file descriptors
    <- {"ready": pid}                  (once, when the server has imported its modules)
    <- {"spawned": key, "pid": n}  or  {"failed": key, "error": text}
    -> {"kill": key}
    <- {"exited": key, "status": n}   (sent whenever a kernel's sandbox ends)
"""
import array
import ctypes
import errno
import functools
import gc
import json
import os
import re
import resource
import select
import signal
import socket
import sys
import threading
import time
from pathlib import Path

if __package__:  # the grader's side; inside the fork server's sandbox this file runs alone, as a script
    from .sandbox import (FORK_SCRATCH_STAGING, FORK_STAGING, SANDBOX_HOME, SANDBOX_UID_RANGE, Limits, bubblewrap,
                          file_tail, fork_server_arguments, rlimits, socket_folder, thread_environment)

MAX_PACKET = 65536
MAX_FDS = 8  # a request carries a log and one cgroup.procs per hierarchy (cgroup v1: memory, pids, cpu, cpuacct)
# What the server ever writes on a kernel's behalf into its exit status: 128 + the signal that ended it.
SIGNAL_EXIT_BASE = 128


# --------------------------------------------------------------------------------------------
# 1. The protocol: messages as bytes, and what each side checks in what it receives.

def encode(message):
    return json.dumps(message).encode()


def decode(data):
    """One message from one packet: a JSON object (``ValueError`` otherwise)."""
    message = json.loads(data)
    if not isinstance(message, dict):
        raise ValueError(f"a fork-server message is a JSON object, not {type(message).__name__}")
    return message


def spawn_request(key, channel, arguments, uid, rlimit_pairs, scratch_bytes, cgroups, threads=1, environment=None):
    """The request for one kernel (sent with the log file and ``cgroups`` cgroup.procs files attached);
    ``threads`` compute threads, and ``environment`` what a cold kernel's environment would add."""
    return {"spawn": key, "channel": str(channel), "arguments": [str(a) for a in arguments], "uid": uid,
            "rlimits": [[name, value] for name, value in rlimit_pairs], "scratch_bytes": scratch_bytes,
            "cgroups": cgroups, "threads": threads, "environment": dict(environment or {})}


def check_spawn_request(request, fd_count):
    """Raise ``ValueError`` unless ``request`` is a well-formed spawn request that came with
    ``fd_count`` file descriptors (a log file, then one per cgroup)."""
    def integer(value):
        return isinstance(value, int) and not isinstance(value, bool)

    if not integer(request.get("spawn")):
        raise ValueError("a spawn request needs an integer key")
    if not isinstance(request.get("channel"), str) or not os.path.isabs(request["channel"]):
        raise ValueError("the channel is not an absolute path")
    if not isinstance(request.get("arguments"), list) or not all(isinstance(a, str) for a in request["arguments"]):
        raise ValueError("the kernel's arguments are not a list of strings")
    if not integer(request.get("uid")) or request["uid"] <= 0:
        raise ValueError("the user id is not a positive integer")
    if not integer(request.get("scratch_bytes")) or request["scratch_bytes"] <= 0:
        raise ValueError("the scratch size is not a positive integer")
    pairs = request.get("rlimits")
    if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
        raise ValueError("the resource limits are not [name, value] pairs")
    for name, value in pairs:
        resource_number(name)
        if not integer(value) or value < 0:
            raise ValueError(f"the limit of {name} is not a non-negative integer")
    if not integer(request.get("threads", 1)) or request.get("threads", 1) < 1:
        raise ValueError("the thread count is not a positive integer")
    environment = request.get("environment", {})
    if not isinstance(environment, dict) or not all(isinstance(k, str) and isinstance(v, str) and k and "=" not in k
                                                    for k, v in environment.items()):
        raise ValueError("the environment is not a map of names to strings")
    cgroups = request.get("cgroups", 0)
    if not integer(cgroups) or fd_count != 1 + cgroups:
        raise ValueError("the file descriptors that came with the request are not a log and its cgroups")


def resource_number(name):
    """``resource.RLIMIT_<...>`` by its name (``ValueError`` for any other name)."""
    if not isinstance(name, str) or not name.startswith("RLIMIT_") or not hasattr(resource, name):
        raise ValueError(f"unknown resource limit {name!r}")
    return getattr(resource, name)


def reply_event(message):
    """What a reply from the server says: ``("ready", None, pid)``, ``("answer", key, message)``
    (spawned or failed) or ``("exited", key, status)``; ``ValueError`` for anything else."""
    if "ready" in message:
        return "ready", None, message["ready"]
    if "spawned" in message or "failed" in message:
        return "answer", message.get("spawned", message.get("failed")), message
    if "exited" in message:
        return "exited", message["exited"], message["status"]
    raise ValueError(f"not a fork-server reply: {sorted(message)}")


def sandbox_report(answer: bytes):
    """The pid of a new sandbox's init, from what the fork wrote on its report pipe: one JSON
    object a line, ``pid`` then ``ready`` (or an ``error``); ``RuntimeError`` if it did not start."""
    report = {}
    for line in answer.splitlines():
        report.update(json.loads(line))
    if "error" in report or not report.get("ready") or "pid" not in report:
        raise RuntimeError(report.get("error", "the sandbox did not start (see the kernel log)"))
    return report["pid"]


def init_exit_code(code):
    """A sandbox init's exit code for its kernel's ``code`` (as ``os.waitstatus_to_exitcode`` gives
    it): what bubblewrap gives, 128 + the signal that killed the kernel, else its own code."""
    return SIGNAL_EXIT_BASE - code if code < 0 else code & 0xFF


def capped(value, hard):
    """A limit no higher than the hard limit this process has (raising one needs a capability)."""
    return value if hard == resource.RLIM_INFINITY else min(value, hard)


def unescape_mount_point(field):
    """A mount point as ``/proc/self/mountinfo`` writes it (spaces and the like as octal escapes)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_to_keep(points, folder, hide):
    """The mount points under ``folder`` that a fresh tmpfs there must keep (topmost first, none
    under another kept one), leaving out ``hide`` and what is under it."""
    kept = []
    top, hide = folder.rstrip("/") + "/", hide.rstrip("/")
    for point in sorted(set(points)):
        inside = point.startswith(top)
        hidden = point == hide or point.startswith(hide + "/")
        if inside and not hidden and not any(point.startswith(k + "/") for k in kept):
            kept.append(point)
    return kept


# --------------------------------------------------------------------------------------------
# 2. The server, inside its sandbox (as root there, with the capabilities it needs to build each
#    kernel's sandbox).

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE, MS_SHARED = 4096, 8192, 16384, 1 << 18, 1 << 20
MNT_DETACH = 2
PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 4, 36, 38
INIT_IGNORES = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


@functools.cache
def libc():
    library = ctypes.CDLL(None, use_errno=True)
    library.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    library.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    library.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return library


def checked(result, what):
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def mount(source, target, fstype, flags, data=None):
    def encoded(text):
        return None if text is None else text.encode()

    checked(libc().mount(encoded(source), encoded(target), encoded(fstype), flags, encoded(data)), f"mount {target}")


def unmount(target):
    """Detach the mount at ``target`` (lazily: it goes once nothing uses it); False if none was there."""
    if libc().umount2(str(target).encode(), MNT_DETACH) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOENT):  # not a mount point, or no such folder
        return False
    raise OSError(error, f"umount {target}: {os.strerror(error)}")


def prctl(option, value):
    checked(libc().prctl(option, value, 0, 0, 0), f"prctl {option}")


def start_server(modules):
    """The server's own set-up: quiet stdio, the kernels' reaper, and the modules imported once.
    Returns a file descriptor of ``/dev/null``."""
    # Stray output of an import must not reach the grader: stdout goes to the log (stderr).
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)
    prctl(PR_SET_CHILD_SUBREAPER, 1)  # each kernel's init is re-parented here when its first parent exits
    # Ctrl-C is the grader's to handle: a stray interrupt must not end every kernel of this server.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for module in modules:
        try:
            __import__(module)
        except Exception as error:  # a cold kernel would meet the same error when the student imports it
            print(f"fork server: could not import {module}: {type(error).__name__}: {error}", file=sys.stderr)
    import ipykernel.kernelapp  # noqa: F401 - what every kernel needs
    gc.collect()
    gc.freeze()  # keep the imported objects out of the children's collections: fewer copied pages
    return null


def drop_privileges(uid, rlimit_pairs):
    """Apply the resource limits, then become ``uid`` with no groups and no capability (checked)."""
    for name, value in rlimit_pairs:
        kind = resource_number(name)
        value = capped(value, resource.getrlimit(kind)[1])
        resource.setrlimit(kind, (value, value))
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # from root to another user: the effective and permitted sets are cleared
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    checked(libc().capset(header, (ctypes.c_uint32 * 6)()), "capset")  # and the inheritable set too
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("CapInh", "CapPrm", "CapEff", "CapAmb") and int(value, 16) != 0:
                raise PermissionError(f"{name} is {value.strip()} after dropping privileges")
    if os.getuid() != uid or os.geteuid() != uid or os.getgroups():
        raise PermissionError("could not change to the sandbox user")


def mount_points():
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:  # the fifth field
            yield unescape_mount_point(line.split()[4])


def fresh_tmpfs(folder, options, hide, staging):
    """A new tmpfs at ``folder`` that keeps what is mounted under it (a virtual environment
    under /tmp, read-only), except ``hide`` (every submission's channel).

    The tmpfs is made at ``staging``, the mounts under ``folder`` are bound into it read-only,
    and then it is moved over ``folder`` with them."""
    mount("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NODEV, options)
    for point in mounts_to_keep(mount_points(), folder, hide):
        target = staging + point[len(folder.rstrip("/")):]
        if os.path.isdir(point):
            os.makedirs(target, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            open(target, "a").close()
        mount(point, target, None, MS_BIND | MS_REC)
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    mount(staging, folder, None, MS_MOVE)


def enter_sandbox(request, settings):
    """In a new mount namespace: fresh /proc and scratch space; only this channel visible."""
    channels, staging = settings["channels"], settings["staging"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for path in ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"):  # read-only, as bubblewrap does
        if os.path.exists(path):
            mount(path, path, None, MS_BIND | MS_REC)
            mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount(request["channel"], staging, None, MS_BIND)
    for folder in ("/tmp", "/var/tmp", settings["home"], "/dev/shm"):
        if os.path.isdir(folder):
            fresh_tmpfs(folder, f"size={request['scratch_bytes']},mode=1777", channels, settings["scratch_staging"])
    if os.path.isdir(channels):  # not under one of those folders: hide it by itself
        mount("tmpfs", channels, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    os.makedirs(request["channel"], mode=0o755, exist_ok=True)
    mount(staging, request["channel"], None, MS_MOVE)
    try:  # the loopback interface up, as bubblewrap leaves it
        import fcntl
        import struct

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            fcntl.ioctl(sock, 0x8914, struct.pack("16sH14x", b"lo", 0x1 | 0x8 | 0x40))  # SIOCSIFFLAGS UP|LOOPBACK|RUNNING
    except OSError:
        pass


def run_kernel(arguments, threads=1, environment=None):
    """The kernel itself: what ``python -m ipykernel_launcher <arguments>`` does, with ``threads`` compute
    threads (the server imported torch before it knew how many) and ``environment`` added."""
    import random

    os.environ.update(environment or {})
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)

    prctl(PR_SET_DUMPABLE, 1)  # like a freshly exec'd kernel (dropping privileges cleared it)
    for number in INIT_IGNORES:  # the signal handling of a freshly started Python
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    gc.unfreeze()
    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]
    sys.argv = ["ipykernel_launcher", *arguments]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


def child(request, settings, log_fd, cgroup_fds, report, null):
    """Forked for one submission: never returns.

    Reports on ``report``, one JSON line each: the pid of the sandbox's init (from this
    process), then ``ready`` or the ``error`` that stopped the sandbox's set-up (from the init),
    so a failure here is the server's answer, and the grader can start that kernel cold."""
    try:
        try:
            for fd in cgroup_fds:  # "0": this process; the sandbox's init and kernel inherit the cgroup
                os.write(fd, b"0")
        except OSError as error:
            os.write(report, encode({"error": f"could not join the submission's cgroup: {error}"}) + b"\n")
            raise
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        keep = {0, 1, 2, report}
        for fd in os.listdir("/proc/self/fd"):
            if int(fd) not in keep:
                try:
                    os.close(int(fd))  # the control socket above all
                except OSError:
                    pass
        checked(libc().unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
        init = os.fork()
        if init:
            os.write(report, encode({"pid": init}) + b"\n")
            os._exit(0)
        try:
            enter_sandbox(request, settings)
            drop_privileges(request["uid"], request["rlimits"])
            os.chdir(settings["home"])
        except BaseException as error:  # noqa: BLE001
            os.write(report, encode({"error": f"{type(error).__name__}: {error}"}) + b"\n")
            raise
        os.write(report, encode({"ready": True}) + b"\n")
        os.close(report)
        # The init outlives its kernel only by being killed from outside (SIGKILL cannot be
        # ignored), so a death by a signal tells the grader the kernel's end was not the student's.
        for number in INIT_IGNORES:
            signal.signal(number, signal.SIG_IGN)
        kernel = os.fork()
        if kernel == 0:
            try:
                run_kernel(request["arguments"], request.get("threads", 1), request.get("environment"))
            finally:
                os._exit(0)
        while True:  # init: reap everything; end when the kernel ends, which ends the namespace
            try:
                pid, status = os.wait()
            except ChildProcessError:
                os._exit(0)
            if pid == kernel:
                os._exit(init_exit_code(os.waitstatus_to_exitcode(status)))
    except BaseException as error:  # noqa: BLE001
        try:
            print(f"fork server: could not start the sandboxed kernel: {type(error).__name__}: {error}",
                  file=sys.stderr, flush=True)
        finally:
            os._exit(127)


def spawn(request, settings, log_fd, cgroup_fds, null):
    """Fork one sandboxed kernel; returns the pid of its sandbox's init."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        child(request, settings, log_fd, cgroup_fds, write_end, null)
    os.close(write_end)
    answer = b""
    while chunk := os.read(read_end, 4096):
        answer += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    return sandbox_report(answer)


def receive(control):
    """One packet from the grader and the file descriptors attached to it."""
    fds = array.array("i")
    data, ancillary, _, _ = control.recvmsg(MAX_PACKET, socket.CMSG_SPACE(MAX_FDS * fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return data, list(fds)


def kill_kernels(kernels, keys):
    """SIGKILL the sandbox init of each kernel whose key is in ``keys`` (pid -> key in ``kernels``)."""
    for pid, key in kernels.items():
        if key in keys:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def answer_spawn(request, fds, settings, kernels, null):
    """The reply to a spawn request: the kernel forked (and remembered in ``kernels``), or why not."""
    try:
        check_spawn_request(request, len(fds))
        pid = spawn(request, settings, fds[0], fds[1:], null)
    except Exception as error:  # noqa: BLE001
        return {"failed": request.get("spawn"), "error": f"{type(error).__name__}: {error}"}
    kernels[pid] = request["spawn"]
    return {"spawned": request["spawn"], "pid": pid}


def reap(kernels, send):
    """Collect every ended child; say which kernels' sandboxes ended, with their status."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in kernels:
            send({"exited": kernels.pop(pid), "status": os.waitstatus_to_exitcode(status)})


def serve(control_fd, settings):
    """The server's loop: answer requests until the grader goes away, then kill every kernel.

    ``settings``: ``modules`` to import, ``channels`` (the folder of every channel),
    ``home``, and ``staging`` and ``scratch_staging`` (empty folders to mount at for a moment)."""
    control = socket.socket(fileno=control_fd)
    null = start_server(settings["modules"])

    def send(message):
        control.send(encode(message))

    kernels = {}  # pid of each kernel's init -> key
    send({"ready": os.getpid()})
    while True:
        readable, _, _ = select.select([control], [], [], 0.05)
        if readable:
            data, fds = receive(control)
            if not data:  # the grader went away: so do its kernels
                kill_kernels(kernels, set(kernels.values()))
                return
            request = decode(data)
            if "spawn" in request:
                send(answer_spawn(request, fds, settings, kernels, null))
            elif "kill" in request:
                kill_kernels(kernels, {request["kill"]})
            for fd in fds:
                os.close(fd)
        reap(kernels, send)


# --------------------------------------------------------------------------------------------
# 3. The client, in the grader's process.

class ForkServerError(RuntimeError):
    pass


def check_spawn(root: Path, channel: Path, uid: int):
    """Raise ``ForkServerError`` unless ``channel`` is under the server's ``root`` and ``uid`` is a
    sandbox user id: the server is never asked to expose another folder or become a real user."""
    if Path(root).resolve() not in Path(channel).resolve().parents:
        raise ForkServerError(f"the channel {channel} is not under the fork server's folder {root}")
    if not SANDBOX_UID_RANGE[0] <= uid < SANDBOX_UID_RANGE[1]:
        raise ForkServerError(f"refusing user id {uid}: sandbox user ids are in {SANDBOX_UID_RANGE}")


class ForkServer:
    """The grader's side of a fork server: one pre-warmed interpreter, in its own bubblewrap
    sandbox, that forks a fresh sandboxed kernel for each submission.

    Needs root (it gives each kernel its own user id) and bubblewrap; ``available()`` says
    whether this machine has both.  Every kernel's channel folder must be made under ``root``.
    """

    START_TIMEOUT = 120.0
    SPAWN_TIMEOUT = 30.0

    @staticmethod
    def available():
        return os.geteuid() == 0 and bubblewrap() is not None and sys.platform.startswith("linux")

    def __init__(self, modules=()):
        import shutil
        import subprocess
        import tempfile

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
        shutil.copyfile(__file__, script)
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
                data = self._control.recv(MAX_PACKET)
            except OSError:
                data = b""
            with self._changed:
                if not data:  # the server is gone, and every kernel's sandbox with it
                    self._ready = False
                    for key in range(1, self._counter + 1):
                        self._exits.setdefault(key, -9)
                    self._changed.notify_all()
                    return
                kind, key, value = reply_event(decode(data))
                if kind == "ready":
                    self._ready = True
                elif kind == "answer":
                    self._replies[key] = value
                else:
                    self._exits[key] = value
                self._changed.notify_all()

    def alive(self):
        return self._ready and self.process.poll() is None

    def spawn(self, channel: Path, arguments, uid: int, limits: "Limits", log_fd: int, cgroup_fds=()):
        """Fork a kernel in its own sandbox; returns a ``ForkedKernel`` (a Popen look-alike).

        ``arguments``: the kernel's command-line arguments (``-f <connection file>`` ...);
        ``cgroup_fds``: ``cgroup.procs`` files open for writing, which the fork joins first."""
        check_spawn(self.root, channel, uid)
        # The sandbox's init counts as one process.
        pairs = rlimits(limits, processes=limits.processes + 1)
        with self._lock:
            self._counter += 1
            key = self._counter
            message = encode(spawn_request(key, channel, arguments, uid, pairs, limits.scratch_bytes, len(cgroup_fds),
                                           limits.threads, thread_environment(limits.threads)))
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
                self._control.send(encode({"kill": key}))
            except OSError:
                pass

    def log_tail(self):
        return file_tail(self.server_log)

    def close(self):
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
        from .files import remove_quietly

        remove_quietly(self.root)


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


def fork_server_for(modules, use_bubblewrap, wanted, log=None, where=None):
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


if __name__ == "__main__":
    del sys.path[0]  # this script's folder: a kernel's imports must not look there
    serve(int(sys.argv[1]), json.loads(sys.argv[2]))
