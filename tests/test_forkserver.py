"""The fork server: kernels forked from one pre-warmed interpreter are as isolated as cold ones,
from the host and from each other.  Real bubblewrap, real kernels, real namespaces."""
import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from course.forkserver_client import ForkServer, ForkServerError
from course.kernel import SandboxedKernelManager, new_scratch
from course.sandbox import THREAD_VARIABLES, Limits
from nbclient import NotebookClient

pytestmark = pytest.mark.skipif(not ForkServer.available(), reason="the fork server needs root and bubblewrap")
ROOT = Path(__file__).resolve().parent.parent
LIMITS = Limits(memory_bytes=2 * 1024**3, cell_seconds=60, scratch_bytes=64 * 1024**2)

# Walks the file system for every folder this process can write to, and leaves a marker there.
LEAVE_MARKERS = r"""
import os, subprocess
written = []
for top, folders, files in os.walk('/', topdown=True):
    folders[:] = [f for f in folders if os.path.join(top, f) not in ('/proc', '/sys')]
    try:
        with open(os.path.join(top, '.left-by-student-a'), 'w') as marker:
            marker.write('a')
        written.append(top)
    except OSError:
        pass
# a daemon that would outlive the kernel if it could, and a System V shared memory segment
subprocess.Popen(['sleep', '600'], start_new_session=True)
import ctypes
libc = ctypes.CDLL(None)
segment = libc.shmget(0x5EC2E7, 4096, 0o1666)
print(json.dumps({'written': written, 'segment': segment}))
"""

LOOK_FOR_MARKERS = r"""
import os, json, ctypes
found = []
for top, folders, files in os.walk('/', topdown=True):
    folders[:] = [f for f in folders if os.path.join(top, f) not in ('/proc', '/sys')]
    if '.left-by-student-a' in files:
        found.append(top)
processes = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
commands = [open(f'/proc/{p}/cmdline', 'rb').read().split(b'\0')[0].decode() for p in processes]
segment = ctypes.CDLL(None).shmget(0x5EC2E7, 0, 0)
print(json.dumps({'found': found, 'processes': commands, 'segment': segment}))
"""

WHO_AM_I = r"""
import json, os, socket
CHANNELS = %r
status = dict(line.split(':', 1) for line in open('/proc/self/status'))
def can(action):
    try:
        action()
        return True
    except OSError:
        return False
def outside():
    with socket.create_connection(('1.1.1.1', 53), timeout=2):
        pass
def loopback():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
print(json.dumps({
    'uid': os.getuid(), 'gid': os.getgid(), 'groups': os.getgroups(),
    'caps': {k: int(status[k], 16) for k in ('CapInh', 'CapPrm', 'CapEff', 'CapAmb')},
    'no_new_privs': int(status['NoNewPrivs']),
    'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),
    'course_visible': os.path.exists(%r), 'solutions_visible': os.path.exists(%r),
    'write_usr': can(lambda: open('/usr/x', 'w')), 'network': can(outside), 'loopback': can(loopback),
    'channels': sorted(os.listdir(CHANNELS)) if os.path.isdir(CHANNELS) else None,
    'cwd': os.getcwd(), 'torch_preloaded': 'torch' in __import__('sys').modules,
    'environment_visible': os.path.isfile(os.path.join(__import__('sys').prefix, 'pyvenv.cfg')),
    'lazy_import': __import__('importlib').util.find_spec('nbformat') is not None and bool(__import__('nbformat')),
}))
"""


@pytest.fixture(scope="module")
def server():
    server = ForkServer(("numpy",))
    yield server
    server.close()


def run(server, source, limits=LIMITS):
    """Run one cell in a kernel forked by ``server``; return its parsed JSON output and the kernel manager."""
    scratch = new_scratch(server)
    km = SandboxedKernelManager(scratch / "channel", limits, fork_server=server)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import json\n" + source)])
    client = NotebookClient(notebook, km=km, timeout=limits.cell_seconds, kernel_name="python3", allow_errors=True)
    with open(scratch / "kernel.log", "wb") as log:
        client.execute(stdout=log, stderr=log)
    texts = [o.get("text", "") for o in notebook.cells[0].outputs if o.get("output_type") == "stream"]
    errors = [o for o in notebook.cells[0].outputs if o.get("output_type") == "error"]
    assert not errors, errors
    assert km.fork_server is server, "the kernel was not forked (it fell back to a cold start)"
    return json.loads(texts[-1].strip().splitlines()[-1]), km


def test_a_forked_kernel_is_sandboxed_like_a_cold_one(server):
    other = new_scratch(server) / "channel"  # another submission's channel, there at the same time
    other.mkdir()
    (other / "kernel.json").write_text("{}")
    seen, km = run(server, WHO_AM_I % (str(server.root), str(ROOT / "grader_tests"), str(ROOT / "solutions")))
    km.kill_everything()
    assert seen["channels"] == [km.channel.parent.name], "only its own channel is visible"
    assert seen["uid"] == km.sandbox_uid != 0 and seen["gid"] == km.sandbox_uid and seen["groups"] == []
    assert seen["caps"] == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapAmb": 0} and seen["no_new_privs"] == 1
    assert not seen["course_visible"] and not seen["solutions_visible"]
    assert not seen["write_usr"] and not seen["network"] and seen["loopback"]
    assert seen["cwd"] == "/home/student"
    # The Python environment stays mounted, read-only, even where it lives under /tmp (a CI clone):
    assert seen["environment_visible"] and seen["lazy_import"]
    assert seen["pids"][:2] == [1, 2], "PID 1 (the reaper) and the kernel, in a namespace of their own"
    assert not seen["torch_preloaded"], "this server preloads numpy only"


def files_named(folder, name):
    """Every file called ``name`` under ``folder``. os.walk passes over a folder that another run removes
    while the walk is under way (shared places such as /tmp), where Path.glob raises."""
    return [Path(parent) / name for parent, _, files in os.walk(folder) if name in files]


def test_nothing_crosses_from_one_student_to_the_next(server):
    left, first = run(server, LEAVE_MARKERS)
    assert "/home/student" in left["written"] and "/tmp" in left["written"] and left["segment"] >= 0
    uid = first.sandbox_uid
    # attributes read by process_iter itself: a process that ends meanwhile (another test's) is skipped
    assert any(p.info["name"] == "sleep" and p.info["uids"] and p.info["uids"].real == uid
               for p in psutil.process_iter(["name", "uids"]))
    first.kill_everything()
    time.sleep(0.2)
    assert not [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid], \
        "a process of the first submission outlived its sandbox"
    seen, second = run(server, LOOK_FOR_MARKERS)
    second.kill_everything()
    assert second.sandbox_uid != uid
    assert seen["found"] == [], f"the second submission found files of the first: {seen['found']}"
    assert seen["segment"] == -1, "the first submission's shared memory reached the second"
    assert "sleep" not in seen["processes"]
    for folder in ("/tmp", "/var/tmp", "/dev/shm", str(server.root)):
        reached = [m for m in files_named(folder, ".left-by-student-a") if m.parent != first.channel]
        assert not reached, f"a marker reached the host outside the submission's own channel: {reached}"


def test_a_forked_kernel_cannot_reach_the_fork_servers_own_code(server):
    """The server imports its protocol from a copy beside its script; a kernel it forks has neither in its modules,
    nor their folder on its path, nor the files where a student could read or import them."""
    seen, km = run(server, """
import importlib.util, sys
print(json.dumps({
    'modules': sorted(m for m in sys.modules if 'forkserver' in m or m == '__main__' and 'forkserver' in
                      str(getattr(sys.modules[m], '__file__', ''))),
    'importable': importlib.util.find_spec('forkserver_protocol') is not None,
    'path': [p for p in sys.path if p and os.path.isfile(os.path.join(p, 'forkserver_protocol.py'))],
}))
""".replace("os.path", "__import__('os').path"))
    km.kill_everything()
    assert (server.root / "forkserver_protocol.py").is_file(), "the server's protocol copy is not where it is looked for"
    assert seen == {"modules": [], "importable": False, "path": []}, seen


def test_the_kernel_holds_no_handle_to_the_fork_server(server):
    _, km = run(server, "print(json.dumps({}))")
    try:
        script = str(server.root / "forkserver.py")
        interpreter = next(p for p in psutil.Process(server.process.pid).children(recursive=True)
                           if p.uids().real == 0 and p.cmdline()[:2] == [sys.executable, script])
        server_sockets = {os.readlink(f"/proc/{interpreter.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{interpreter.pid}/fd")
                          if os.readlink(f"/proc/{interpreter.pid}/fd/{fd}").startswith("socket:")}
        # The server's end of the control connection: the descriptor its command line names.
        control = os.readlink(f"/proc/{interpreter.pid}/fd/{interpreter.cmdline()[2]}")
        held = set()
        for process in km.sandbox_processes():
            for fd in os.listdir(f"/proc/{process.pid}/fd"):
                try:
                    held.add(os.readlink(f"/proc/{process.pid}/fd/{fd}"))
                except OSError:
                    pass
        assert control.startswith("socket:"), f"the fork server's control descriptor is {control}, not a socket"
        assert held, "the kernel's open files could not be read"
        assert control not in held, "a kernel inherited the fork server's control socket"
        assert not (held & server_sockets), "a kernel holds a socket of the fork server"
    finally:
        km.kill_everything()


@pytest.mark.parametrize("cpus", [1, 2])
def test_a_forked_kernel_starts_one_compute_thread_per_cpu_it_may_use(server, cpus):
    # More threads than the cgroup's CPU quota make every parallel region wait on throttled threads.
    seen, km = run(server, "import os\nprint(json.dumps({n: os.environ.get(n) for n in %r}))" % (THREAD_VARIABLES,),
                   limits=dataclasses.replace(LIMITS, cpus=cpus))
    km.kill_everything()
    assert seen == {name: str(cpus) for name in THREAD_VARIABLES}


def test_memory_and_cpu_limits_hold_in_a_forked_kernel(server):
    seen, km = run(server, """
import resource
blocks = []
try:
    while True:
        blocks.append(bytearray(128 * 1024 * 1024))
except MemoryError:
    pass
print(json.dumps({'held': len(blocks) * 128, 'cpu': resource.getrlimit(resource.RLIMIT_CPU)[0],
                  'nproc': resource.getrlimit(resource.RLIMIT_NPROC)[0]}))
""")
    km.kill_everything()
    assert seen["held"] < 2048, "the 2 GiB memory limit did not hold"
    assert seen["cpu"] == LIMITS.notebook_cpu_seconds and seen["nproc"] == LIMITS.processes + 1


def test_a_sandbox_that_cannot_be_set_up_is_refused_and_the_server_goes_on(server):
    scratch = new_scratch(server)
    missing = scratch / "channel"  # never made: the sandbox cannot mount it
    with open(scratch / "kernel.log", "wb") as log:
        with pytest.raises(ForkServerError, match="mount"):
            server.spawn(missing, ["-f", str(missing / "kernel.json")], 250_000, LIMITS, log.fileno())
        with pytest.raises(ForkServerError, match="user id"):
            server.spawn(missing, ["-f", str(missing / "kernel.json")], 0, LIMITS, log.fileno())
    seen, km = run(server, "print(json.dumps({'still': 'serving'}))")
    km.kill_everything()
    assert seen == {"still": "serving"}


def test_a_dead_fork_server_costs_time_not_a_grade(tmp_path):
    server = ForkServer(())
    try:
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        scratch = new_scratch(server)
        km = SandboxedKernelManager(scratch / "channel", LIMITS, fork_server=server)
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import os\nprint(os.getuid())")])
        with open(scratch / "kernel.log", "wb") as log:
            NotebookClient(notebook, km=km, timeout=60, kernel_name="python3").execute(stdout=log, stderr=log)
        assert km.fork_server is None, "expected a cold start after the fork server died"
        assert notebook.cells[0].outputs[0]["text"].strip() == str(km.sandbox_uid)
        km.kill_everything()
    finally:
        server.close()


@pytest.mark.slow
def test_nbgrader_autograde_forks_kernels_with_the_assignments_modules(tmp_path):
    from grading_support import make_course, max_points, nbgrader, scores, solution_notebook, student_version, submit

    course = make_course(tmp_path / "course")
    assignment = "a4-torch-cross-entropy"
    submit(course, "honest", assignment, student_version(solution_notebook(assignment)))
    log = nbgrader(course, "autograde", assignment).stderr
    assert "kernels are forked from a pre-warmed sandboxed interpreter (numpy, torch imported)" in log, log[-3000:]
    assert scores(course, assignment)["honest"]["_total"] == sum(max_points(assignment).values())
