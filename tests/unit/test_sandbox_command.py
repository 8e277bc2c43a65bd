"""The bwrap command line a cold kernel starts with (course/sandbox.py), read as data: no sandbox is started."""
from pathlib import Path

from course.sandbox import THREAD_VARIABLES, Limits, bubblewrap_arguments


def settings(arguments):
    return {arguments[i + 1]: arguments[i + 2] for i, a in enumerate(arguments) if a == "--setenv"}


def test_a_cold_kernel_starts_one_compute_thread_per_cpu_it_may_use():
    for cpus, threads in ((1.0, "1"), (2.0, "2"), (0.5, "1"), (2.5, "2")):
        env = settings(bubblewrap_arguments(Path("/tmp/channel"), 200007, Limits(cpus=cpus)))
        assert {name: env[name] for name in THREAD_VARIABLES} == dict.fromkeys(THREAD_VARIABLES, threads), cpus


def test_the_environment_is_cleared_first_and_holds_no_secret():
    arguments = bubblewrap_arguments(Path("/tmp/channel"), 200007, Limits())
    assert arguments.index("--clearenv") < arguments.index("--setenv")
    assert not {name for name in settings(arguments) if "TOKEN" in name or "KEY" in name or "DB" in name}
