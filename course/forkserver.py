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

This module is the server, and it runs as a script: the grader (``course.forkserver_client``)
copies it into the fork server's own folder, with ``course.forkserver_protocol`` (the messages
both sides send) next to it, and starts it in its sandbox.  The course package is not mounted
there, so this file imports nothing of it: only the standard library, ipykernel and that copy of
the protocol.  The grader imports it as ``course.forkserver`` for the mounts it makes on the host
too (``mount``, ``unmount``, ``mount_points``); its pure functions are unit-tested in
``tests/unit/test_forkserver_protocol.py``.
"""
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
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterable, Iterator, Mapping, NoReturn, Sequence

# The type checker reads the first branch only (TYPE_CHECKING is False at run time, when __package__ decides).
if TYPE_CHECKING or __package__:  # imported by the grader (for its mounts) or a test
    from .forkserver_protocol import (Message, check_spawn_request, decode, encode, exited_reply, failed_reply,
                                      ready_reply, receive, request_event, resource_number, send, spawned_reply)
else:  # the script, in its sandbox: the protocol was copied next to it, and this folder is sys.path[0] until serve()
    from forkserver_protocol import (Message, check_spawn_request, decode, encode, exited_reply, failed_reply,
                                     ready_reply, receive, request_event, resource_number, send, spawned_reply)

# What the server ever writes on a kernel's behalf into its exit status: 128 + the signal that ended it.
SIGNAL_EXIT_BASE = 128


# --------------------------------------------------------------------------------------------
# 1. What a fork reports on its pipe, an init's exit code, limits and mount points.

def write_report(report: int, **fields: Any) -> None:
    """One line on a fork's report pipe (read back by ``sandbox_report``)."""
    os.write(report, encode(fields) + b"\n")


def sandbox_report(answer: bytes) -> int:
    """The pid of a new sandbox's init, from what the fork wrote on its report pipe: one JSON
    object a line, ``pid`` then ``ready`` (or an ``error``); ``RuntimeError`` if it did not start."""
    report = {}
    for line in answer.splitlines():
        report.update(json.loads(line))
    if "error" in report or not report.get("ready") or "pid" not in report:
        raise RuntimeError(report.get("error", "the sandbox did not start (see the kernel log)"))
    return report["pid"]


def init_exit_code(code: int) -> int:
    """A sandbox init's exit code for its kernel's ``code`` (as ``os.waitstatus_to_exitcode`` gives
    it): what bubblewrap gives, 128 + the signal that killed the kernel, else its own code."""
    return SIGNAL_EXIT_BASE - code if code < 0 else code & 0xFF


def capped(value: int, hard: int) -> int:
    """A limit no higher than the hard limit this process has (raising one needs a capability)."""
    return value if hard == resource.RLIM_INFINITY else min(value, hard)


def unescape_mount_point(field: str) -> str:
    """A mount point as ``/proc/self/mountinfo`` writes it (spaces and the like as octal escapes)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_to_keep(points: Iterable[str], folder: str, hide: str) -> list[str]:
    """The mount points under ``folder`` that a fresh tmpfs there must keep (topmost first, none
    under another kept one), leaving out ``hide`` and what is under it."""
    kept: list[str] = []
    top, hide = folder.rstrip("/") + "/", hide.rstrip("/")
    for point in sorted(set(points)):
        inside = point.startswith(top)
        hidden = point == hide or point.startswith(hide + "/")
        if inside and not hidden and not any(point.startswith(k + "/") for k in kept):
            kept.append(point)
    return kept


# --------------------------------------------------------------------------------------------
# 2. The system calls the os module lacks (the grader mounts on the host with these too).

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE, MS_SHARED = 4096, 8192, 16384, 1 << 18, 1 << 20
MNT_DETACH = 2
PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 4, 36, 38


@functools.cache
def libc() -> ctypes.CDLL:
    library = ctypes.CDLL(None, use_errno=True)
    library.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    library.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    library.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return library


def checked(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def mount(source: "str | None", target: str, fstype: "str | None", flags: int, data: "str | None" = None) -> None:
    def encoded(text: "str | None") -> "bytes | None":
        return None if text is None else text.encode()

    checked(libc().mount(encoded(source), encoded(target), encoded(fstype), flags, encoded(data)), f"mount {target}")


def unmount(target: "str | os.PathLike[str]") -> bool:
    """Detach the mount at ``target`` (lazily: it goes once nothing uses it); False if none was there."""
    if libc().umount2(str(target).encode(), MNT_DETACH) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOENT):  # not a mount point, or no such folder
        return False
    raise OSError(error, f"umount {target}: {os.strerror(error)}")


def prctl(option: int, value: int) -> None:
    checked(libc().prctl(option, value, 0, 0, 0), f"prctl {option}")


def mount_points() -> Iterator[str]:
    """Every mount point this process sees, as ``/proc/self/mountinfo`` lists them."""
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:  # the fifth field
            yield unescape_mount_point(line.split()[4])


# --------------------------------------------------------------------------------------------
# 3. The server, inside its sandbox (as root there, with the capabilities it needs to build each
#    kernel's sandbox).

INIT_IGNORES = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def start_server(modules: Iterable[str]) -> int:
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


def drop_privileges(uid: int, rlimit_pairs: Iterable[Sequence[Any]]) -> None:
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


def fresh_tmpfs(folder: str, options: str, hide: str, staging: str) -> None:
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


def enter_sandbox(request: Message, settings: Mapping[str, Any]) -> None:
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


def run_kernel(arguments: Sequence[str], threads: int = 1, environment: "Mapping[str, str] | None" = None) -> None:
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
    if not __package__:  # the protocol's copy next to this script: a cold kernel could not import it
        del sys.modules[decode.__module__]
    sys.argv = ["ipykernel_launcher", *arguments]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


def child(request: Message, settings: Mapping[str, Any], log_fd: int, cgroup_fds: Sequence[int], report: int,
          null: int) -> NoReturn:
    """Forked for one submission: never returns.

    Reports on ``report``, one JSON line each: the pid of the sandbox's init (from this
    process), then ``ready`` or the ``error`` that stopped the sandbox's set-up (from the init),
    so a failure here is the server's answer, and the grader can start that kernel cold."""
    try:
        try:
            for fd in cgroup_fds:  # "0": this process; the sandbox's init and kernel inherit the cgroup
                os.write(fd, b"0")
        except OSError as error:
            write_report(report, error=f"could not join the submission's cgroup: {error}")
            raise
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        keep = {0, 1, 2, report}
        for entry in os.listdir("/proc/self/fd"):
            if int(entry) not in keep:
                try:
                    os.close(int(entry))  # the control socket above all
                except OSError:
                    pass
        checked(libc().unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
        init = os.fork()
        if init:
            write_report(report, pid=init)
            os._exit(0)
        try:
            enter_sandbox(request, settings)
            drop_privileges(request["uid"], request["rlimits"])
            os.chdir(settings["home"])
        except BaseException as error:  # noqa: BLE001
            write_report(report, error=f"{type(error).__name__}: {error}")
            raise
        write_report(report, ready=True)
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


def spawn(request: Message, settings: Mapping[str, Any], log_fd: int, cgroup_fds: Sequence[int], null: int) -> int:
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


def kill_kernels(kernels: Mapping[int, int], keys: Collection[int]) -> None:
    """SIGKILL the sandbox init of each kernel whose key is in ``keys`` (pid -> key in ``kernels``)."""
    for pid, key in kernels.items():
        if key in keys:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def answer_spawn(request: Message, fds: Sequence[int], settings: Mapping[str, Any], kernels: dict[int, int],
                 null: int) -> Message:
    """The reply to a spawn request: the kernel forked (and remembered in ``kernels``), or why not."""
    try:
        check_spawn_request(request, len(fds))
        pid = spawn(request, settings, fds[0], fds[1:], null)
    except Exception as error:  # noqa: BLE001
        return failed_reply(request.get("spawn"), f"{type(error).__name__}: {error}")
    kernels[pid] = request["spawn"]
    return spawned_reply(request["spawn"], pid)


def reap(kernels: dict[int, int], reply: Callable[[Message], None]) -> None:
    """Collect every ended child; say which kernels' sandboxes ended, with their status."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in kernels:
            reply(exited_reply(kernels.pop(pid), os.waitstatus_to_exitcode(status)))


def serve(control_fd: int, settings: Mapping[str, Any]) -> None:
    """The server's loop: answer requests until the grader goes away, then kill every kernel.

    ``settings``: ``modules`` to import, ``channels`` (the folder of every channel),
    ``home``, and ``staging`` and ``scratch_staging`` (empty folders to mount at for a moment)."""
    control = socket.socket(fileno=control_fd)
    null = start_server(settings["modules"])

    def reply(message: Message) -> None:
        send(control, message)

    kernels: dict[int, int] = {}  # pid of each kernel's init -> key
    reply(ready_reply(os.getpid()))
    while True:
        readable, _, _ = select.select([control], [], [], 0.05)
        if readable:
            data, fds = receive(control)
            if not data:  # the grader went away: so do its kernels
                kill_kernels(kernels, set(kernels.values()))
                return
            kind, value = request_event(decode(data))
            if kind == "spawn":
                reply(answer_spawn(value, fds, settings, kernels, null))
            elif kind == "kill":
                kill_kernels(kernels, {value})
            for fd in fds:
                os.close(fd)
        reap(kernels, reply)


if __name__ == "__main__":
    del sys.path[0]  # this script's folder: a kernel's imports must not look there
    serve(int(sys.argv[1]), json.loads(sys.argv[2]))
