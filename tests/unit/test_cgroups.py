"""Where a grading process makes its submissions' cgroups: its own cgroup of each controller,
from the texts of /proc/self/cgroup and /proc/self/mountinfo, on cgroup v1, v2 and hybrid machines;
the shell step that makes a cold kernel join; the channel folder counted with its sub-folders."""
import os
import subprocess
from pathlib import Path

from course.cgroups import Layout, SubmissionCgroup, candidate_layouts, parse_mountinfo, parse_proc_cgroup
from course.files import ENTRY_BYTES, disk_usage

# A hybrid machine (v1 controllers, a v2 mount with no controllers), the process in a memory sub-cgroup.
HYBRID_CGROUP = """\
9:name=systemd:/
8:pids:/
5:devices:/
4:memory:/process_api/8b2a17
2:cpu,cpuacct:/grading
0::/
"""
HYBRID_MOUNTS = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
# A systemd machine with only cgroup v2.
UNIFIED_CGROUP = "0::/system.slice/grader.service\n"
UNIFIED_MOUNTS = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""
# A container on v1 without a cgroup namespace: each hierarchy shows only the container's own folder.
CONTAINER_V1_CGROUP = "11:memory:/docker/abc\n10:pids:/docker/abc/grader\n3:cpu,cpuacct:/docker/abc\n"
CONTAINER_V1_MOUNTS = """\
700 690 0:40 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory
701 690 0:41 /docker/abc /sys/fs/cgroup/pids ro,nosuid - cgroup cgroup rw,pids
702 690 0:42 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct
"""


def test_proc_cgroup_names_each_controller_and_the_v2_path():
    paths = parse_proc_cgroup(HYBRID_CGROUP)
    assert paths["memory"] == "/process_api/8b2a17"
    assert paths["cpu"] == paths["cpuacct"] == "/grading"
    assert paths["pids"] == "/" and paths[""] == "/"
    assert paths["name=systemd"] == "/"


def test_mountinfo_gives_mount_point_root_type_and_controllers():
    mounts = {m.point: m for m in parse_mountinfo(HYBRID_MOUNTS)}
    assert mounts["/sys/fs/cgroup/memory"].fstype == "cgroup"
    assert "memory" in mounts["/sys/fs/cgroup/memory"].options
    assert mounts["/sys/fs/cgroup/cpu,cpuacct"].options >= {"cpu", "cpuacct"}
    assert mounts["/sys/fs/cgroup/unified"].fstype == "cgroup2"
    escaped = parse_mountinfo(r"50 1 0:50 / /mnt/my\040cgroups rw - cgroup2 cgroup2 rw" + "\n")
    assert escaped[0].point == "/mnt/my cgroups"
    # optional fields (shared:N, master:N) before the separator do not shift the others
    assert parse_mountinfo(UNIFIED_MOUNTS)[2].fstype == "cgroup2"


def test_hybrid_machine_offers_its_v2_mount_first_and_v1_folders_under_our_own_cgroups():
    v2, v1 = candidate_layouts(HYBRID_CGROUP, HYBRID_MOUNTS)
    assert v2.version == 2 and v2.folders["memory"] == Path("/sys/fs/cgroup/unified")
    assert v1.version == 1
    assert v1.folders == {"memory": Path("/sys/fs/cgroup/memory/process_api/8b2a17"),
                          "pids": Path("/sys/fs/cgroup/pids"),
                          "cpu": Path("/sys/fs/cgroup/cpu,cpuacct/grading"),
                          "cpuacct": Path("/sys/fs/cgroup/cpu,cpuacct/grading")}


def test_unified_machine_uses_one_folder_for_every_controller():
    [layout] = candidate_layouts(UNIFIED_CGROUP, UNIFIED_MOUNTS)
    folder = Path("/sys/fs/cgroup/system.slice/grader.service")
    assert layout == Layout(2, {"memory": folder, "pids": folder, "cpu": folder, "cpuacct": folder})


def test_a_mount_of_a_sub_folder_is_followed_to_our_path_below_it():
    [layout] = candidate_layouts(CONTAINER_V1_CGROUP, CONTAINER_V1_MOUNTS)
    assert layout.folders == {"memory": Path("/sys/fs/cgroup/memory"), "pids": Path("/sys/fs/cgroup/pids/grader"),
                              "cpu": Path("/sys/fs/cgroup/cpu,cpuacct"), "cpuacct": Path("/sys/fs/cgroup/cpu,cpuacct")}


def test_no_layout_without_memory_and_pids_or_when_our_cgroup_is_not_visible():
    no_pids = "\n".join(line for line in HYBRID_MOUNTS.splitlines() if "pids" not in line)
    [v2_only] = candidate_layouts(HYBRID_CGROUP, no_pids)
    assert v2_only.version == 2
    outside = CONTAINER_V1_CGROUP.replace("/docker/abc", "/docker/other")
    assert candidate_layouts(outside, CONTAINER_V1_MOUNTS) == []
    assert candidate_layouts("", "") == []


def test_the_join_step_writes_its_own_pid_then_execs_the_command(tmp_path):
    folders = {"memory": tmp_path / "mem ory's", "pids": tmp_path / "pids"}
    for folder in folders.values():
        folder.mkdir()
    cgroup = SubmissionCgroup(None, folders, 1)
    command = cgroup.join_command() + ["/bin/sh", "-c", 'echo "$$ $1"', "sh", "it ran"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    pid, said = result.stdout.split(" ", 1)
    assert said == "it ran\n"  # exec: the same process runs the command, with its arguments intact
    for folder in folders.values():
        assert (folder / "cgroup.procs").read_text().strip() == pid


def test_the_channel_folder_is_counted_with_its_sub_folders_without_following_links(tmp_path):
    channel = tmp_path / "channel"
    (channel / "a" / "b").mkdir(parents=True)
    (channel / "top").write_bytes(b"x" * 10_000)
    (channel / "a" / "b" / "deep").write_bytes(b"x" * 3_000_000)
    outside = tmp_path / "outside"
    outside.write_bytes(b"x" * 50_000_000)
    os.symlink(outside, channel / "a" / "link")
    os.symlink(tmp_path, channel / "a" / "loop")
    total = disk_usage(channel)
    assert 3_010_000 <= total < 3_010_000 + 10 * ENTRY_BYTES
    assert disk_usage(channel, stop_above=1_000) < total  # stops counting once over
