"""The fork server's protocol and the checks each side makes (course/forkserver_protocol.py, with the
pure parts of the server, course/forkserver.py, and of its client, course/forkserver_client.py), without a
server: no kernel, no bubblewrap, no namespaces.

What the grader sends is checked twice: by the client before it asks (the channel must be one of
the server's, the user id a throw-away one) and by the server when the request arrives (every
field of the right kind, a resource limit by its real name, as many file descriptors as the
request says).  The limits a fork takes are the same list the bwrap command line and the
fallback without bubblewrap apply (``course.sandbox.rlimits``)."""
import json
import os
import resource
import signal

import pytest

from course.forkserver import capped, init_exit_code, mounts_to_keep, sandbox_report, unescape_mount_point
from course.forkserver_client import ForkServerError, check_spawn
from course.forkserver_protocol import (check_spawn_request, decode, encode, exited_reply, failed_reply, kill_request,
                                        ready_reply, reply_event, request_event, resource_number, spawn_request,
                                        spawned_reply)
from course.sandbox import SANDBOX_UID_RANGE, Limits, limit_arguments, rlimit_only_arguments, rlimits

LIMITS = Limits(memory_bytes=2 * 1024**3, processes=10, notebook_cpu_seconds=30, file_bytes=1024, open_files=99)
UID = SANDBOX_UID_RANGE[0] + 7


def request(**changes):
    """A spawn request as the client makes it, decoded as the server reads it."""
    made = spawn_request(3, "/tmp/fs/abc/channel", ["-f", "/tmp/fs/abc/channel/kernel.json"], UID,
                         rlimits(LIMITS, processes=LIMITS.processes + 1), LIMITS.scratch_bytes, 1)
    return {**decode(encode(made)), **changes}


def test_a_spawn_request_survives_the_wire_and_passes_the_servers_checks():
    sent = request()
    check_spawn_request(sent, fd_count=2)  # the log and one cgroup
    assert sent["spawn"] == 3 and sent["uid"] == UID and sent["cgroups"] == 1
    assert dict(map(tuple, sent["rlimits"]))["RLIMIT_NPROC"] == LIMITS.processes + 1
    assert all(isinstance(a, str) for a in sent["arguments"])


@pytest.mark.parametrize("changes, problem", [
    ({"spawn": "3"}, "integer key"),
    ({"spawn": True}, "integer key"),
    ({"channel": "relative/channel"}, "absolute path"),
    ({"channel": None}, "absolute path"),
    ({"arguments": "-f kernel.json"}, "list of strings"),
    ({"arguments": ["-f", 3]}, "list of strings"),
    ({"uid": 0}, "user id"),
    ({"uid": "200007"}, "user id"),
    ({"scratch_bytes": 0}, "scratch size"),
    ({"rlimits": [["RLIMIT_AS"]]}, "pairs"),
    ({"rlimits": {"RLIMIT_AS": 1}}, "pairs"),
    ({"rlimits": [["RLIMIT_NOPE", 1]]}, "unknown resource limit"),
    ({"rlimits": [["__class__", 1]]}, "unknown resource limit"),
    ({"rlimits": [["RLIMIT_CPU", -1]]}, "non-negative integer"),
    ({"rlimits": [["RLIMIT_CPU", 1.5]]}, "non-negative integer"),
    ({"cgroups": 2}, "not a log and its cgroups"),
    ({"cgroups": "1"}, "not a log and its cgroups"),
    ({"threads": 0}, "thread count"),
    ({"threads": "2"}, "thread count"),
    ({"environment": {"OMP_NUM_THREADS": 1}}, "map of names"),
    ({"environment": {"A=B": "1"}}, "map of names"),
    ({"environment": ["OMP_NUM_THREADS=1"]}, "map of names"),
])
def test_a_malformed_spawn_request_is_refused_with_the_reason(changes, problem):
    with pytest.raises(ValueError, match=problem):
        check_spawn_request(request(**changes), fd_count=2)


def test_file_descriptors_must_be_a_log_and_one_per_cgroup():
    with pytest.raises(ValueError, match="not a log and its cgroups"):
        check_spawn_request(request(), fd_count=1)
    check_spawn_request(request(cgroups=0), fd_count=1)


@pytest.mark.parametrize("data", [b"[1, 2]", b'"spawn"', b"17"])
def test_a_message_is_a_json_object(data):
    with pytest.raises(ValueError, match="JSON object"):
        decode(data)


def test_a_packet_that_is_not_json_is_refused():
    with pytest.raises(json.JSONDecodeError, match="Expecting property name"):  # a ValueError, as decode says
        decode(b"{not json")


def test_replies_say_what_they_are():
    assert reply_event(decode(encode(ready_reply(41)))) == ("ready", None, 41)
    spawned = {"spawned": 3, "pid": 99}
    assert spawned_reply(3, 99) == spawned and reply_event(spawned) == ("answer", 3, spawned)
    failed = {"failed": 4, "error": "OSError: mount"}
    assert failed_reply(4, "OSError: mount") == failed and reply_event(failed) == ("answer", 4, failed)
    assert exited_reply(3, 137) == {"exited": 3, "status": 137}
    assert reply_event(decode(encode(exited_reply(3, 137)))) == ("exited", 3, 137)
    with pytest.raises(ValueError, match="not a fork-server reply"):
        reply_event({"hello": 1})


def test_requests_say_what_they_are():
    sent = request()
    assert request_event(sent) == ("spawn", sent)
    assert kill_request(3) == {"kill": 3}
    assert request_event(decode(encode(kill_request(3)))) == ("kill", 3)
    assert request_event({"hello": 1}) == (None, None)  # ignored by the server


def test_the_client_asks_only_for_its_own_channels_and_throw_away_user_ids(tmp_path):
    root = tmp_path / "fs"
    (root / "abc" / "channel").mkdir(parents=True)
    check_spawn(root, root / "abc" / "channel", UID)
    with pytest.raises(ForkServerError, match="not under the fork server's folder"):
        check_spawn(root, tmp_path / "elsewhere" / "channel", UID)
    with pytest.raises(ForkServerError, match="not under the fork server's folder"):
        check_spawn(root, root / "abc" / ".." / ".." / "channel", UID)  # .. is resolved first
    with pytest.raises(ForkServerError, match="not under the fork server's folder"):
        check_spawn(root, root, UID)
    for uid in (0, 1000, SANDBOX_UID_RANGE[0] - 1, SANDBOX_UID_RANGE[1]):
        with pytest.raises(ForkServerError, match="refusing user id"):
            check_spawn(root, root / "abc" / "channel", uid)


def test_a_forks_report_gives_its_inits_pid_or_the_error():
    assert sandbox_report(b'{"pid": 1234}\n{"ready": true}\n') == 1234
    with pytest.raises(RuntimeError, match="could not join"):
        sandbox_report(b'{"error": "could not join the submission\'s cgroup: EACCES"}\n')
    with pytest.raises(RuntimeError, match="mount /tmp"):
        sandbox_report(b'{"pid": 1234}\n{"error": "OSError: mount /tmp: Permission denied"}\n')
    with pytest.raises(RuntimeError, match="did not start"):
        sandbox_report(b'{"pid": 1234}\n')  # the init died before it said ready
    with pytest.raises(RuntimeError, match="did not start"):
        sandbox_report(b"")


def test_an_inits_exit_code_is_what_bubblewrap_gives():
    assert init_exit_code(0) == 0
    assert init_exit_code(3) == 3
    assert init_exit_code(-signal.SIGKILL) == 128 + signal.SIGKILL
    assert init_exit_code(-signal.SIGINT) == 128 + signal.SIGINT


def test_a_limit_is_never_above_the_hard_limit():
    assert capped(100, resource.RLIM_INFINITY) == 100
    assert capped(100, 50) == 50
    assert capped(10, 50) == 10


def test_resource_limits_are_named_by_the_resource_module():
    assert resource_number("RLIMIT_NOFILE") == resource.RLIMIT_NOFILE
    for name in ("NOFILE", "RLIMIT_", "rlimit_nofile", 7, None):
        with pytest.raises(ValueError, match="unknown resource limit"):
            resource_number(name)


def test_a_fresh_tmpfs_keeps_what_is_mounted_under_it_but_the_channels():
    points = ["/", "/tmp", "/tmp/venv", "/tmp/venv/lib", "/tmp/course-fs-1", "/tmp/course-fs-1/abc/channel",
              "/tmpfoo", "/usr", "/tmp/other", "/tmp/other"]
    assert mounts_to_keep(points, "/tmp", hide="/tmp/course-fs-1") == ["/tmp/other", "/tmp/venv"]
    assert mounts_to_keep(points, "/tmp/", hide="/tmp/course-fs-1/") == ["/tmp/other", "/tmp/venv"]
    assert mounts_to_keep(points, "/var/tmp", hide="/tmp/course-fs-1") == []


def test_mount_points_with_spaces_are_read_back():
    assert unescape_mount_point(r"/tmp/with\040space") == "/tmp/with space"
    assert unescape_mount_point(r"/a\011tab\134slash") == "/a\ttab\\slash"
    assert unescape_mount_point("/plain") == "/plain"


def test_one_list_of_rlimits_feeds_prlimit_the_fork_server_and_the_fallback(monkeypatch):
    monkeypatch.setattr("course.sandbox.gpu_devices", lambda: [])
    pairs = dict(rlimits(LIMITS, processes=LIMITS.processes))
    assert pairs == {"RLIMIT_AS": LIMITS.memory_bytes, "RLIMIT_CPU": 30, "RLIMIT_FSIZE": 1024, "RLIMIT_CORE": 0,
                     "RLIMIT_NOFILE": 99, "RLIMIT_NPROC": 10}
    assert all(hasattr(resource, name) for name in pairs)
    command = limit_arguments(LIMITS)
    assert command[0] == "prlimit" and command[-1] == "--"
    assert sorted(command[1:-1]) == sorted(f"--{name[7:].lower()}={value}" for name, value in pairs.items())
    assert "RLIMIT_NPROC" not in dict(rlimits(LIMITS))  # no process limit unless one is given
    # On a GPU machine the memory limit is on data, not address space (CUDA reserves a lot of it) ...
    monkeypatch.setattr("course.sandbox.gpu_devices", lambda: ["/dev/nvidia0"])
    assert dict(rlimits(LIMITS))["RLIMIT_DATA"] == LIMITS.memory_bytes and "RLIMIT_AS" not in dict(rlimits(LIMITS))
    assert f"--data={LIMITS.memory_bytes}" in limit_arguments(LIMITS)
    # ... except without bubblewrap, where the fallback always limits address space.
    fallback = rlimit_only_arguments(LIMITS)
    assert f"('RLIMIT_AS', {LIMITS.memory_bytes})" in fallback[2] and "RLIMIT_DATA" not in fallback[2]


def test_the_fallback_applies_the_limits_then_runs_the_kernel(tmp_path):
    """The fallback's program, run for real on a harmless command: the limits are in place."""
    import subprocess

    command = rlimit_only_arguments(LIMITS) + ["/bin/sh", "-c", "ulimit -n; ulimit -t"]
    shown = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert shown == ["99", "30"]


def test_the_limit_defaults_are_read_from_the_one_table():
    from course.execute import LimitedOutputClient
    from course.plugins import SandboxedExecute

    defaults = Limits()
    assert SandboxedExecute().limits() == defaults
    assert LimitedOutputClient.output_chars_per_cell == defaults.output_chars_per_cell
    assert LimitedOutputClient.received_bytes_per_cell == defaults.output_bytes_per_cell
    assert LimitedOutputClient.received_bytes_per_submission == defaults.output_bytes_per_submission


def test_the_server_script_imports_nothing_of_the_course_package(tmp_path):
    """The server runs as a copy of its script, with the protocol's next to it, inside its sandbox, where the
    course package is not."""
    import subprocess
    import sys

    from course.forkserver_client import install_server

    folder = tmp_path / "server"
    folder.mkdir()
    script = install_server(folder)
    assert sorted(path.name for path in folder.iterdir()) == ["forkserver.py", "forkserver_protocol.py"]
    # As a script's: sys.path[0] is its folder.
    probe = ("import json, runpy, sys; sys.path[:0] = ['']; names = runpy.run_path(sys.argv[1]); "
             "print(json.dumps([sorted(m for m in sys.modules if m == 'course' or m.startswith('course.')), "
             "sys.modules['forkserver_protocol'].__file__]))")
    shown = subprocess.run([sys.executable, "-c", probe, str(script)], capture_output=True, text=True, timeout=60,
                           cwd=folder, env={**os.environ, "PYTHONPATH": ""}, check=True)
    assert json.loads(shown.stdout) == [[], str(folder / "forkserver_protocol.py")]


def test_a_spawn_request_with_a_cgroup_per_hierarchy_arrives_whole():
    # A request carries the log and one cgroup.procs per hierarchy; a packet with more descriptors than
    # the server reads would lose some, and every kernel would start cold.  Sent as the grader sends it,
    # read as the server reads it.
    import socket

    from course.cgroups import OPTIONAL, REQUIRED
    from course.forkserver_protocol import receive, send

    cgroups = len(REQUIRED) + len(OPTIONAL)
    grader, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sent = [os.open(os.devnull, os.O_RDONLY) for _ in range(1 + cgroups)]
    received = []
    try:
        request = spawn_request(1, "/channel", ["-f", "kernel.json"], SANDBOX_UID_RANGE[0], [], 1024, cgroups)
        send(grader, request, sent)
        data, received = receive(server)
        assert len(received) == 1 + cgroups
        check_spawn_request(decode(data), len(received))
    finally:
        for fd in sent + received:
            os.close(fd)
        grader.close()
        server.close()
