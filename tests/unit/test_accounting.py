"""The CPU account of ``course grade``: cgroup clocks read right, tasks and stages summed, idle derived."""
import time

import pytest

from course.accounting import WHOLE_RUN, CpuAccount, KernelMarks, Stage, TaskCpu
from course.cgroups import SubmissionCgroup


class _Grader:
    def released(self):
        pass


def test_a_cgroup_v2_account_is_its_cpu_stat_usage(tmp_path):
    # cgroup v2 keeps cpu.stat in every cgroup, the cpu controller enabled or not (Documentation/admin-guide/cgroup-v2.rst)
    (tmp_path / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    cgroup = SubmissionCgroup(_Grader(), {"memory": tmp_path, "pids": tmp_path}, 2)
    assert cgroup.cpu_seconds() == pytest.approx(2.5)


def test_a_cgroup_v1_account_is_cpuacct_usage_in_nanoseconds(tmp_path):
    memory, accounting = tmp_path / "memory", tmp_path / "cpuacct"
    memory.mkdir()
    accounting.mkdir()
    (accounting / "cpuacct.usage").write_text("1250000000\n")
    assert SubmissionCgroup(_Grader(), {"memory": memory, "cpuacct": accounting}, 1).cpu_seconds() == pytest.approx(1.25)
    # no cpuacct hierarchy, or a file that cannot be read: no account, never a made-up zero
    assert SubmissionCgroup(_Grader(), {"memory": memory}, 1).cpu_seconds() is None
    (accounting / "cpuacct.usage").write_text("garbage")
    assert SubmissionCgroup(_Grader(), {"memory": memory, "cpuacct": accounting}, 1).cpu_seconds() is None


def test_a_task_splits_at_the_moment_the_kernel_was_ready():
    marks = KernelMarks()
    marks.worker_at_ready, marks.kernel_at_ready, marks.kernel_at_end = 10.5, 0.2, 1.7
    cpu = marks.task(worker_at_start=10.0, worker="host:1", worker_at_end=11.25)
    assert (cpu.worker_start, cpu.kernel_start, cpu.kernel_run, cpu.messages) == pytest.approx((0.5, 0.2, 1.5, 0.75))
    never_ready = KernelMarks().task(worker_at_start=10.0, worker="host:1", worker_at_end=10.4)
    assert (never_ready.worker_start, never_ready.messages, never_ready.kernel_run) == pytest.approx((0.4, 0.0, 0.0))


def test_the_account_sums_stages_counts_workers_once_and_derives_idle():
    account = CpuAccount(cores=2)
    account.add("a1", Stage.RECORD, 0.5)
    for end in (3.0, 4.0):  # two tasks on one worker: 1.0 + 1.0 of them its own, 4.0 since it started
        account.task("a1", TaskCpu(worker_start=0.25, kernel_start=0.1, kernel_run=2.0, messages=0.75,
                                   worker_total=end, worker="w:1"))
    account.finish()
    a1 = account.seconds["a1"]
    assert a1[Stage.KERNEL_START] == pytest.approx(0.7)
    assert a1[Stage.KERNEL_RUN] == pytest.approx(4.0)
    assert a1[Stage.MESSAGES] == pytest.approx(1.5)
    assert account.seconds[WHOLE_RUN][Stage.WORKER_OTHER] == pytest.approx(2.0)
    used = sum(v for stages in account.seconds.values() for s, v in stages.items() if s != Stage.IDLE)
    assert account.seconds[WHOLE_RUN][Stage.IDLE] == pytest.approx(max(0.0, 2 * account.wall - used))
    assert set(account.to_json()["cpu_seconds"]) == {"a1", WHOLE_RUN}


def test_a_stage_clock_counts_this_threads_cpu_not_waiting():
    account = CpuAccount(cores=1)
    with account.clock("a1", Stage.SANITIZE):
        time.sleep(0.2)
    with account.clock("a1", Stage.RECORD):
        deadline = time.thread_time() + 0.05
        while time.thread_time() < deadline:
            pass
    assert account.seconds["a1"][Stage.SANITIZE] < 0.05
    assert account.seconds["a1"][Stage.RECORD] >= 0.05


def test_the_account_says_when_the_workers_took_the_first_task_and_finished_the_last():
    account = CpuAccount(cores=2)
    epoch = account._epoch
    account.task("a1", TaskCpu(began=epoch + 3.0, ended=epoch + 5.0))
    account.task("a1", TaskCpu(began=epoch + 2.0, ended=epoch + 4.0))  # results come back in any order
    account.task("a1", TaskCpu())  # a worker that sent no clock (an older one) changes nothing
    seen = account.finish().to_json()
    assert (seen["first_task_began_after_seconds"], seen["last_task_ended_after_seconds"]) == (2.0, 5.0)
