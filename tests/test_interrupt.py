"""Stopping and signals never turn into a grade.

Ctrl-C stops `course grade` within seconds, kills every kernel and fork server, keeps what was
recorded and leaves the rest for the next run. A signal that reaches one kernel, its sandbox or the
fork server from outside makes that submission's run no grade at all: `course grade` grades it again,
`nbgrader autograde` records nothing for it.
"""
import contextlib
import os
import signal
import subprocess
import tempfile
import time

import psutil
import pytest

from grading_support import (BIN, add_cell, environment, make_course, max_points, nbgrader, released_notebook, scores,
                             solution_notebook, student_version, submit)

pytestmark = [pytest.mark.slow]

SANDBOX_UIDS = range(200_000, 900_000)
ASLEEP = "asleep"  # the file the sleeping cell writes in its kernel's working folder, for the test to see
SLEEPS = (f"import time\nopen({ASLEEP!r}, 'w').close()\n"
          "time.sleep(15)  # long enough for the test to find this kernel and signal it")
# The course-grade signal test keeps its first timing: signalled sooner, its fork-server kill can land during the
# grading process's own re-execution of the first submission, which then records nothing (right), while nbgrader
# leaves a placeholder submission of 0 in the gradebook, which the test counts as a wrong grade.
SLEEPS_LONG = "import time\ntime.sleep(30)  # long enough for the test to find this kernel and signal it"


def correct(assignment):
    return student_version(solution_notebook(assignment))


def full(assignment):
    return sum(max_points(assignment).values())


def start_course_grade(course, assignment, *args):
    """`course grade` as a terminal starts it: its own process group, which Ctrl-C signals as a whole.
    Its temporary folder is a short one of this run's (a long one sends Unix sockets to /tmp)."""
    env = environment()
    env["TMPDIR"] = tempfile.mkdtemp(prefix="g")
    return subprocess.Popen([str(BIN / "course"), "grade", assignment, "--no-progress", *args], cwd=course, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


@contextlib.contextmanager
def killed_at_the_end(process):
    """Whatever happens in the test, no grader it started outlives it: first stopped as Ctrl-C does
    (it then removes what it made), killed only if that does not end it."""
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()


def only_right_grades_then_all(course, assignment, expected, workers, log=""):
    """What the disturbed run recorded is right; the next run grades the rest, right too."""
    recorded = {s: g["_total"] for s, g in scores(course, assignment).items()}
    wrong = {s: (total, expected[s]) for s, total in recorded.items() if total != expected[s]}
    assert not wrong, f"a disturbed run recorded wrong grades: {wrong}\n{log[-4000:]}"
    grader = start_course_grade(course, assignment, "--workers", workers)
    out, err = grader.communicate(timeout=900)
    assert grader.returncode == 0, f"{out}\n{err}"
    assert {s: g["_total"] for s, g in scores(course, assignment).items()} == expected
    return recorded


def wait_for(condition, what, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def grade_log(course):
    path = course / "reports" / "grade.log"
    return path.read_text() if path.exists() else ""


def descendants(pid):
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def alive(processes):
    left = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                left.append(process)
        except psutil.Error:
            pass
    return left


def sandbox_uid(process):
    try:
        return process.uids().real in SANDBOX_UIDS
    except psutil.Error:
        return False


def asleep_under(pid):
    """The kernels under ``pid`` that run the submission's sleep: its cell wrote ``ASLEEP`` in the kernel's working
    folder, which the host reads through ``/proc`` whatever the sandbox's mounts."""
    found = []
    for kernel in kernels_under(pid):
        try:
            if os.path.exists(f"/proc/{kernel.pid}/cwd/{ASLEEP}"):
                found.append(kernel)
        except OSError:
            pass
    return found


def kernels_under(pid):
    """Each sandbox's innermost process of the sandbox user: the kernel itself (under a forked
    kernel's init, or under bubblewrap)."""
    found = []
    for process in descendants(pid):
        if sandbox_uid(process) and not any(sandbox_uid(child) for child in process.children()):
            found.append(process)
    return found


def runs_the_fork_server_script(process):
    """An interpreter (not a bubblewrap around one) whose script is the fork server's."""
    command = process.cmdline()
    return bool(command) and "bwrap" not in os.path.basename(command[0]) \
        and any(os.path.basename(argument) == "forkserver.py" for argument in command[1:])


def fork_servers_under(pid):
    """The fork servers' own interpreters: not the bubblewrap processes around them, nor the kernels they fork
    (whose parent chain, up to ``pid``, holds a fork server).  Only ``pid``'s own descendants are looked at: a
    test run's command line may name tests/test_forkserver.py."""
    found = []
    under = descendants(pid)
    for process in under:
        try:
            if runs_the_fork_server_script(process) and not sandbox_uid(process) \
                    and not any(runs_the_fork_server_script(p) for p in process.parents() if p in under):
                found.append(process)
        except psutil.Error:
            pass
    return found


def test_ctrl_c_stops_course_grade_and_the_next_run_finishes_with_the_right_grades(tmp_path):
    assignment = "a3-bigram"
    course = make_course(tmp_path / "course")
    expected = {}
    for index in range(6):
        submit(course, f"student{index}", assignment, correct(assignment))
        expected[f"student{index}"] = full(assignment)
    submit(course, "untouched", assignment, released_notebook(course, assignment))
    expected["untouched"] = 0.0

    with killed_at_the_end(start_course_grade(course, assignment, "--workers", "2")) as grader:
        wait_for(lambda: "executed in" in grade_log(course) or grader.poll() is not None, "a first graded notebook")
        assert grader.poll() is None, grader.communicate()
        everything = descendants(grader.pid)
        assert fork_servers_under(grader.pid) and kernels_under(grader.pid), "nothing in flight to interrupt"
        os.killpg(grader.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        out, err = grader.communicate(timeout=120)
    assert grader.returncode == 130, f"{out}\n{err}"
    assert "interrupted:" in err and "left ungraded" in err and "run the same command again" in err, err
    left = wait_for(lambda: not alive(everything) or None, "every worker, kernel and fork server to end", timeout=30)
    assert left, [p.cmdline() for p in alive(everything)]
    recorded = only_right_grades_then_all(course, assignment, expected, "2", grade_log(course))
    assert len(recorded) < len(expected), "the batch ran to the end instead of stopping"


def test_a_signal_to_a_kernel_or_a_fork_server_never_becomes_a_grade_in_course_grade(tmp_path):
    assignment = "a2-losses"
    course = make_course(tmp_path / "course")
    for student in ("sleeper-a", "sleeper-b"):
        submit(course, student, assignment, add_cell(correct(assignment), SLEEPS_LONG, position=2))
    submit(course, "honest", assignment, correct(assignment))
    expected = {student: full(assignment) for student in ("sleeper-a", "sleeper-b", "honest")}

    with killed_at_the_end(start_course_grade(course, assignment, "--workers", "1")) as grader:
        wait_for(lambda: kernels_under(grader.pid), "the first sandboxed kernel")
        time.sleep(10.0)  # the first submission is in its 30-second sleep by now
        for kernel in kernels_under(grader.pid):  # it, and the idle kernel started ahead for the next one
            kernel.send_signal(signal.SIGINT)
        wait_for(lambda: "interrupted" in grade_log(course), "the interrupted run to be noticed", timeout=120)
        wait_for(lambda: kernels_under(grader.pid), "a kernel in flight again")
        servers = wait_for(lambda: fork_servers_under(grader.pid), "a fork server")
        for server in servers:
            server.send_signal(signal.SIGINT)  # a stray interrupt: ignored, costs nothing
        time.sleep(1.0)
        assert all(s.is_running() for s in servers), "a fork server died of SIGINT"
        for server in servers:
            server.kill()  # the fork server dies, and the kernels it forked with it
        out, err = grader.communicate(timeout=900)
    assert grader.returncode in (0, 1), f"{out}\n{err}"
    log = grade_log(course)
    assert "KeyboardInterrupt" in log and "executing it here" in log, log[-4000:]
    only_right_grades_then_all(course, assignment, expected, "1", log)


def test_a_signal_to_a_kernel_records_nothing_in_nbgrader_autograde(tmp_path):
    assignment = "a2-losses"
    course = make_course(tmp_path / "course")
    submit(course, "interrupted", assignment, add_cell(correct(assignment), SLEEPS, position=2))
    env = environment()
    autograde = subprocess.Popen([str(BIN / "nbgrader"), "autograde", assignment], cwd=course, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    with killed_at_the_end(autograde) as grader:
        wait_for(lambda: asleep_under(grader.pid), "the submission's sleep")
        for kernel in kernels_under(grader.pid):
            kernel.send_signal(signal.SIGINT)
        out, err = grader.communicate(timeout=600)
    assert grader.returncode != 0
    assert "grading was interrupted" in out + err, (out + err)[-3000:]
    assert not (course / "autograded" / "interrupted" / assignment).exists()
    assert not any(g.get("_total") for g in scores(course, assignment).values())

    nbgrader(course, "autograde", assignment, "--force")  # graded again, undisturbed: full marks
    assert scores(course, assignment)["interrupted"]["_total"] == full(assignment)
