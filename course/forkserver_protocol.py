"""The fork server's protocol: what the grader (``course.forkserver_client``) and the fork server
(``course.forkserver``) send each other, and what each side checks in what it receives.

Both sides import this module: the grader as ``course.forkserver_protocol``, the server as a copy
next to its own script, inside its sandbox, where the course package is not mounted.  So it imports
nothing but the standard library.  Its functions are pure, but for ``send`` and ``receive``, and are
unit-tested in ``tests/unit/test_forkserver_protocol.py``.

Over a Unix ``SOCK_SEQPACKET`` socket, one JSON object per packet (``encode``, ``decode``):

    -> {"spawn": key, "channel": path, "arguments": [...], "uid": n, "rlimits": [[name, value], ...],
        "scratch_bytes": n, "cgroups": n, "threads": n, "environment": {name: value}}    (spawn_request)
       with the kernel's log file, then n cgroup.procs files, as attached file descriptors
    <- {"ready": pid}                  (once, when the server has imported its modules)
    <- {"spawned": key, "pid": n}  or  {"failed": key, "error": text}
    -> {"kill": key}
    <- {"exited": key, "status": n}   (sent whenever a kernel's sandbox ends)
"""
import array
import json
import os
import resource
import socket
from typing import Any, Iterable, Mapping, Sequence

MAX_PACKET = 65536
MAX_FDS = 8  # a request carries a log and one cgroup.procs per hierarchy (cgroup v1: memory, pids, cpu, cpuacct)

Message = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Framing: one message a packet, file descriptors attached to it.

def encode(message: Message) -> bytes:
    return json.dumps(message).encode()


def decode(data: bytes) -> Message:
    """One message from one packet: a JSON object (``ValueError`` otherwise)."""
    message = json.loads(data)
    if not isinstance(message, dict):
        raise ValueError(f"a fork-server message is a JSON object, not {type(message).__name__}")
    return message


def send(sock: socket.socket, message: Message, fds: Sequence[int] = ()) -> None:
    """Send ``message`` as one packet, with the file descriptors ``fds`` attached (``OSError`` if the other
    side is gone)."""
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sock.sendmsg([encode(message)], ancillary)


def receive(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One packet and the file descriptors attached to it (``b""`` once the other side is gone)."""
    fds = array.array("i")
    data, ancillary, _, _ = sock.recvmsg(MAX_PACKET, socket.CMSG_SPACE(MAX_FDS * fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return data, list(fds)


# --------------------------------------------------------------------------------------------
# Requests, from the grader.

def spawn_request(key: int, channel: "str | os.PathLike[str]", arguments: Iterable[Any], uid: int,
                  rlimit_pairs: Iterable[tuple[str, int]], scratch_bytes: int, cgroups: int, threads: int = 1,
                  environment: "Mapping[str, str] | None" = None) -> Message:
    """The request for one kernel (sent with the log file and ``cgroups`` cgroup.procs files attached);
    ``threads`` compute threads, and ``environment`` what a cold kernel's environment would add."""
    return {"spawn": key, "channel": str(channel), "arguments": [str(a) for a in arguments], "uid": uid,
            "rlimits": [[name, value] for name, value in rlimit_pairs], "scratch_bytes": scratch_bytes,
            "cgroups": cgroups, "threads": threads, "environment": dict(environment or {})}


def kill_request(key: int) -> Message:
    """The request that ends kernel ``key``'s whole sandbox."""
    return {"kill": key}


def request_event(message: Message) -> tuple["str | None", Any]:
    """What a request from the grader asks: ``("spawn", request)``, ``("kill", key)``, or ``(None, None)``
    for anything else (which the server ignores)."""
    if "spawn" in message:
        return "spawn", message
    if "kill" in message:
        return "kill", message["kill"]
    return None, None


def check_spawn_request(request: Message, fd_count: int) -> None:
    """Raise ``ValueError`` unless ``request`` is a well-formed spawn request that came with
    ``fd_count`` file descriptors (a log file, then one per cgroup)."""
    def integer(value: object) -> bool:
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


def resource_number(name: str) -> int:
    """``resource.RLIMIT_<...>`` by its name (``ValueError`` for any other name)."""
    if not isinstance(name, str) or not name.startswith("RLIMIT_") or not hasattr(resource, name):
        raise ValueError(f"unknown resource limit {name!r}")
    return getattr(resource, name)


# --------------------------------------------------------------------------------------------
# Replies, from the server.

def ready_reply(pid: int) -> Message:
    return {"ready": pid}


def spawned_reply(key: int, pid: int) -> Message:
    return {"spawned": key, "pid": pid}


def failed_reply(key: Any, error: str) -> Message:
    """Why kernel ``key`` was not forked (``key`` as the request gave it, which may be malformed)."""
    return {"failed": key, "error": error}


def exited_reply(key: int, status: int) -> Message:
    """Kernel ``key``'s sandbox ended: ``status`` is its init's exit code as ``os.waitstatus_to_exitcode``
    gives it."""
    return {"exited": key, "status": status}


def reply_event(message: Message) -> tuple[str, "int | None", Any]:
    """What a reply from the server says: ``("ready", None, pid)``, ``("answer", key, message)``
    (spawned or failed) or ``("exited", key, status)``; ``ValueError`` for anything else."""
    if "ready" in message:
        return "ready", None, message["ready"]
    if "spawned" in message or "failed" in message:
        return "answer", message.get("spawned", message.get("failed")), message
    if "exited" in message:
        return "exited", message["exited"], message["status"]
    raise ValueError(f"not a fork-server reply: {sorted(message)}")
