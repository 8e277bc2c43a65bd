"""The fork server: a pre-warmed interpreter that forks one fresh, sandboxed kernel per submission.

Importing torch costs over a second of CPU in every new process, more than running a whole
submission.  So one interpreter per worker imports the heavy modules once (those the
assignment's *source* notebooks import, never a student's choice), inside a bubblewrap sandbox
of its own, and then only forks.  It never runs student code and never receives any: it gets a
channel folder, a user id, limits, a log file descriptor and the submission's ``cgroup.procs``
files (open for writing), and answers with a process id.

Each fork enters the sandbox a cold kernel gets from bubblewrap, before any student code runs:

* new mount, PID, network, IPC and UTS namespaces: its own ``/proc``; fresh, size-limited
  tmpfs folders for ``/tmp``, ``/var/tmp``, ``/dev/shm`` and the home folder; the folder with every
  submission's channel hidden under an empty tmpfs, and only its own channel put back; no
  network but its own loopback;
* the submission's cgroup (memory, processes and CPU of all its processes together), joined
  first, so that everything the sandbox starts is in it;
* the resource limits (memory, CPU, processes, file size, open files, no core dumps);
* a throw-away user id, no supplementary groups, every capability gone (checked), and
  ``no_new_privs``;
* PID 1 of its namespace is a small reaper (as bubblewrap's own init is), so when the grader
  kills it every process of that submission dies with it.

Nothing is shared between two students but the pages both inherit from the fork server,
copy-on-write: the modules as they were right after import.  The random generators are
re-seeded in each kernel.

This file runs inside the sandbox, copied into the fork server's own folder: it imports nothing
of the course package (the course folder is not mounted there), only the standard library and
ipykernel.

Protocol, over a Unix ``SOCK_SEQPACKET`` socket (one JSON message per packet):

    -> {"spawn": key, "channel": path, "arguments": [...], "uid": n, "limits": {...}, "cgroups": n}
       with the kernel's log file, then n cgroup.procs files, as attached file descriptors
    <- {"spawned": key, "pid": n}  or  {"failed": key, "error": text}
    -> {"kill": key}
    <- {"exited": key, "status": n}   (sent whenever a kernel's sandbox ends)
"""


def serve(control_fd, settings):
    import array
    import ctypes
    import gc
    import json
    import os
    import resource
    import select
    import signal
    import socket
    import sys

    CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
    CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
    MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
    MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 4096, 8192, 16384, 1 << 18
    PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 4, 36, 38
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

    def checked(result, what):
        if result != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"{what}: {os.strerror(error)}")

    def mount(source, target, fstype, flags, data=None):
        encode = lambda s: None if s is None else s.encode()  # noqa: E731
        checked(libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data)), f"mount {target}")

    def prctl(option, value):
        checked(libc.prctl(option, value, 0, 0, 0), f"prctl {option}")

    INIT_IGNORES = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
    control = socket.socket(fileno=control_fd)
    staging = settings["staging"]
    scratch_staging = settings["scratch_staging"]
    channels = settings["channels"]
    home = settings["home"]

    # Stray output of an import must not reach the grader: stdout goes to the log (stderr).
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)
    prctl(PR_SET_CHILD_SUBREAPER, 1)  # each kernel's init is re-parented here when its first parent exits
    # Ctrl-C is the grader's to handle: a stray interrupt must not end every kernel of this server.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for module in settings["modules"]:
        try:
            __import__(module)
        except Exception as error:  # a cold kernel would meet the same error when the student imports it
            print(f"fork server: could not import {module}: {type(error).__name__}: {error}", file=sys.stderr)
    import ipykernel.kernelapp  # noqa: F401 - what every kernel needs
    gc.collect()
    gc.freeze()  # keep the imported objects out of the children's collections: fewer copied pages

    def drop_privileges(uid, limits):
        for kind, value in ((resource.RLIMIT_DATA if limits["limit_data"] else resource.RLIMIT_AS, limits["memory_bytes"]),
                            (resource.RLIMIT_NPROC, limits["processes"]),
                            (resource.RLIMIT_CPU, limits["notebook_cpu_seconds"]),
                            (resource.RLIMIT_FSIZE, limits["file_bytes"]),
                            (resource.RLIMIT_CORE, 0),
                            (resource.RLIMIT_NOFILE, limits["open_files"])):
            hard = resource.getrlimit(kind)[1]
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)  # raising needs a capability
            resource.setrlimit(kind, (value, value))
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # from root to another user: the effective and permitted sets are cleared
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
        checked(libc.capset(header, (ctypes.c_uint32 * 6)()), "capset")  # and the inheritable set too
        prctl(PR_SET_NO_NEW_PRIVS, 1)
        with open("/proc/self/status") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in ("CapInh", "CapPrm", "CapEff", "CapAmb") and int(value, 16) != 0:
                    raise PermissionError(f"{name} is {value.strip()} after dropping privileges")
        if os.getuid() != uid or os.geteuid() != uid or os.getgroups():
            raise PermissionError("could not change to the sandbox user")

    def mount_points():
        import re

        with open("/proc/self/mountinfo") as mounts:
            for line in mounts:  # the fifth field; spaces and the like are written as octal escapes
                yield re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])

    def fresh_tmpfs(folder, options, hide):
        """A new tmpfs at ``folder`` that keeps what is mounted under it (a virtual environment
        under /tmp, read-only), except ``hide`` (every submission's channel).

        The tmpfs is made at a staging point, the mounts under ``folder`` are bound into it
        read-only, and then it is moved over ``folder`` with them."""
        mount("tmpfs", scratch_staging, "tmpfs", MS_NOSUID | MS_NODEV, options)
        kept = []
        for point in sorted(set(mount_points())):
            inside = point.startswith(folder.rstrip("/") + "/")
            hidden = point == hide or point.startswith(hide.rstrip("/") + "/")
            if not inside or hidden or any(point.startswith(k + "/") for k in kept):
                continue
            target = scratch_staging + point[len(folder.rstrip("/")):]
            if os.path.isdir(point):
                os.makedirs(target, mode=0o755, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
                open(target, "a").close()
            mount(point, target, None, MS_BIND | MS_REC)
            mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
            kept.append(point)
        mount(scratch_staging, folder, None, MS_MOVE)

    def enter_sandbox(request):
        """In a new mount namespace: fresh /proc and scratch space; only this channel visible."""
        limits = request["limits"]
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        for path in ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"):  # read-only, as bubblewrap does
            if os.path.exists(path):
                mount(path, path, None, MS_BIND | MS_REC)
                mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
        mount(request["channel"], staging, None, MS_BIND)
        for folder in ("/tmp", "/var/tmp", home, "/dev/shm"):
            if os.path.isdir(folder):
                fresh_tmpfs(folder, f"size={limits['scratch_bytes']},mode=1777", hide=channels)
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

    def run_kernel(arguments):
        """The kernel itself: what ``python -m ipykernel_launcher <arguments>`` does."""
        import random

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

    def child(request, log_fd, cgroup_fds, report):
        """Forked for one submission: never returns.

        Reports on ``report``, one JSON line each: the pid of the sandbox's init (from this
        process), then ``ready`` or the ``error`` that stopped the sandbox's set-up (from the init),
        so a failure here is the server's answer, and the grader can start that kernel cold."""
        try:
            try:
                for fd in cgroup_fds:  # "0": this process; the sandbox's init and kernel inherit the cgroup
                    os.write(fd, b"0")
            except OSError as error:
                os.write(report, json.dumps({"error": f"could not join the submission's cgroup: {error}"}).encode() + b"\n")
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
            checked(libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
            init = os.fork()
            if init:
                os.write(report, json.dumps({"pid": init}).encode() + b"\n")
                os._exit(0)
            try:
                enter_sandbox(request)
                drop_privileges(request["uid"], request["limits"])
                os.chdir(home)
            except BaseException as error:  # noqa: BLE001
                os.write(report, json.dumps({"error": f"{type(error).__name__}: {error}"}).encode() + b"\n")
                raise
            os.write(report, b'{"ready": true}\n')
            os.close(report)
            # The init outlives its kernel only by being killed from outside (SIGKILL cannot be
            # ignored), so a death by a signal tells the grader the kernel's end was not the student's.
            for number in INIT_IGNORES:
                signal.signal(number, signal.SIG_IGN)
            kernel = os.fork()
            if kernel == 0:
                try:
                    run_kernel(request["arguments"])
                finally:
                    os._exit(0)
            while True:  # init: reap everything; end when the kernel ends, which ends the namespace
                try:
                    pid, status = os.wait()
                except ChildProcessError:
                    os._exit(0)
                if pid == kernel:  # its status as bubblewrap gives it: 128 + the signal that killed it
                    code = os.waitstatus_to_exitcode(status)
                    os._exit(128 - code if code < 0 else code & 0xFF)
        except BaseException as error:  # noqa: BLE001
            try:
                print(f"fork server: could not start the sandboxed kernel: {type(error).__name__}: {error}",
                      file=sys.stderr, flush=True)
            finally:
                os._exit(127)

    def spawn(request, log_fd, cgroup_fds):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            child(request, log_fd, cgroup_fds, write_end)
        os.close(write_end)
        answer = b""
        while chunk := os.read(read_end, 4096):
            answer += chunk
        os.close(read_end)
        os.waitpid(pid, 0)
        report = {}
        for line in answer.splitlines():
            report.update(json.loads(line))
        if "error" in report or not report.get("ready"):
            raise RuntimeError(report.get("error", "the sandbox did not start (see the kernel log)"))
        return report["pid"]

    def send(message):
        control.send(json.dumps(message).encode())

    kernels = {}  # pid of each kernel's init -> key
    send({"ready": os.getpid()})
    while True:
        readable, _, _ = select.select([control], [], [], 0.05)
        if readable:
            fds = array.array("i")
            data, ancillary, _, _ = control.recvmsg(65536, socket.CMSG_SPACE(4 * fds.itemsize))
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            if not data:  # the grader went away: so do its kernels
                for pid in kernels:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                return
            request = json.loads(data)
            if "spawn" in request:
                try:
                    if len(fds) != 1 + request.get("cgroups", 0):
                        raise ValueError("the file descriptors that came with the request are not a log and its cgroups")
                    pid = spawn(request, fds[0], list(fds[1:]))
                    kernels[pid] = request["spawn"]
                    send({"spawned": request["spawn"], "pid": pid})
                except Exception as error:  # noqa: BLE001
                    send({"failed": request["spawn"], "error": f"{type(error).__name__}: {error}"})
            elif "kill" in request:
                for pid, key in kernels.items():
                    if key == request["kill"]:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except OSError:
                            pass
            for fd in fds:
                os.close(fd)
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in kernels:
                send({"exited": kernels.pop(pid), "status": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    import json
    import sys

    del sys.path[0]  # this script's folder: a kernel's imports must not look there
    serve(int(sys.argv[1]), json.loads(sys.argv[2]))
