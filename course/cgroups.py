"""One cgroup per submission: memory, processes and CPU limited for all of its processes together.

Resource limits (rlimits) hold per process: a submission that starts several processes could
hold several times the stated memory.  So each sandbox also gets a control group of its own,
made under this grading process's own cgroup, in a folder of this process (``course-grader-<pid>``)
that goes when its last submission does:

* ``memory``: at most the stated memory for everything the submission runs, its scratch tmpfs
  folders included, and no swap; when the kernel's out-of-memory killer fires inside it, the
  grader says the submission exceeded the memory limit (``oom_kills``);
* ``pids``: at most the stated number of processes and threads;
* ``cpu``: at most the stated number of CPUs' worth of time (one by default);
* CPU accounting: the CPU time of everything the submission ran, exited processes included
  (``cpu_seconds``: ``cpu.stat`` on v2, ``cpuacct.usage`` on v1), read in one file instead of
  listing the machine's processes;
* at the end every process in it is killed (``cgroup.kill`` on cgroup v2; on v1 every process
  listed, until none is left) and the cgroup is removed.

cgroup v2 is used where its memory and pids controllers can be delegated to our own sub-folder;
else cgroup v1 (``memory``, ``pids`` and, if there, ``cpu`` hierarchies) where writable, as root.
Where neither works, ``grader_cgroups()`` says why, and only the rlimits hold.

A process joins before any student code runs: a cold kernel's command starts with a tiny shell
step that writes its own pid into each ``cgroup.procs`` and then execs bubblewrap
(``join_command``); a forked kernel gets ``cgroup.procs`` file descriptors opened here
(``open_procs``) and writes ``0`` ("this process") to each before it builds its sandbox.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

PARENT_PREFIX = "course-grader-"
REQUIRED = ("memory", "pids")
OPTIONAL = ("cpu", "cpuacct")  # cpuacct: cgroup v1's CPU accounting (v2 has cpu.stat in every cgroup)
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class Mount:
    point: str  # where it is mounted here
    root: str  # which folder of the hierarchy appears there
    fstype: str
    options: frozenset[str]  # the file system's own options (for cgroup v1: its controllers)


def _unescape(text: str) -> str:
    """mountinfo writes spaces, tabs, newlines and backslashes in paths as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of a ``/proc/<pid>/mountinfo`` text."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        separator = fields.index("-", 6)
        if len(fields) < separator + 4:
            continue
        mounts.append(Mount(point=_unescape(fields[4]), root=_unescape(fields[3]), fstype=fields[separator + 1],
                            options=frozenset(fields[separator + 3].split(","))))
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``{controller: path}`` from a ``/proc/<pid>/cgroup`` text; ``""`` is the cgroup v2 path."""
    paths = {}
    for line in text.splitlines():
        number, sep, rest = line.partition(":")
        controllers, sep2, path = rest.partition(":")
        if not sep or not sep2:
            continue
        if number == "0" and controllers == "":
            paths[""] = path
        else:
            for controller in controllers.split(","):
                if controller:
                    paths[controller] = path
    return paths


def _inside(mount: Mount, path: str) -> Path | None:
    """Where the cgroup ``path`` (of the whole hierarchy) is under this mount, or None."""
    root = mount.root.rstrip("/")
    if path != root and not path.startswith(root + "/"):
        return None  # outside what this mount shows (another cgroup namespace)
    return Path(mount.point, path[len(root):].lstrip("/"))


@dataclass(frozen=True)
class Layout:
    """This process's own cgroup folder for each controller: one folder for all on v2."""
    version: int
    folders: dict[str, Path] = field(default_factory=dict)  # controller -> Path


def candidate_layouts(proc_cgroup: str, mountinfo: str) -> list[Layout]:
    """The layouts that may hold our cgroups, best first: cgroup v2 (one folder for every
    controller), then cgroup v1 (a hierarchy per controller), from the texts of
    ``/proc/self/cgroup`` and ``/proc/self/mountinfo``.  Which controllers a v2 folder offers,
    and whether anything is writable, is for ``Layout`` checks on the live system."""
    paths = parse_proc_cgroup(proc_cgroup)
    mounts = parse_mountinfo(mountinfo)
    layouts = []
    if "" in paths:
        for mount in mounts:
            if mount.fstype == "cgroup2":
                folder = _inside(mount, paths[""])
                if folder is not None:
                    layouts.append(Layout(2, {c: folder for c in REQUIRED + OPTIONAL}))
                    break
    folders: dict[str, Path] = {}
    for controller in REQUIRED + OPTIONAL:
        if controller not in paths:
            continue
        for mount in mounts:
            if mount.fstype == "cgroup" and controller in mount.options:
                folder = _inside(mount, paths[controller])
                if folder is not None:
                    folders[controller] = folder
                    break
    if all(c in folders for c in REQUIRED):
        layouts.append(Layout(1, folders))
    return layouts


def layout_problem(layout: Layout) -> str | None:
    """Why we cannot make submission cgroups in this layout (None when we can)."""
    if layout.version == 2:
        folder = layout.folders["memory"]
        try:
            offered = set((folder / "cgroup.controllers").read_text().split())
        except OSError as error:
            return f"cgroup v2 at {folder}: {error.strerror}"
        missing = [c for c in REQUIRED if c not in offered]
        if missing:
            return f"cgroup v2 at {folder} offers no {' or '.join(missing)} controller"
        if not os.access(folder, os.W_OK):
            return f"cgroup v2 at {folder} is not writable"
        return None
    for controller in REQUIRED:
        folder = layout.folders[controller]
        if not os.access(folder / "cgroup.procs", os.W_OK) or not os.access(folder, os.W_OK):
            return f"cgroup v1 {controller} folder {folder} is not writable"
    return None


def discover(proc: str = "/proc/self") -> tuple[Layout, None] | tuple[None, str]:
    """``(layout, None)`` for this process, or ``(None, why not)``."""
    try:
        proc_cgroup = Path(proc, "cgroup").read_text()
        mountinfo = Path(proc, "mountinfo").read_text()
    except OSError as error:
        return None, f"cannot read {proc}/cgroup or mountinfo: {error.strerror}"
    problems = []
    for layout in candidate_layouts(proc_cgroup, mountinfo):
        problem = layout_problem(layout)
        if problem is None:
            if layout.version == 1:  # an optional hierarchy we cannot write to is left out, not a failure
                layout = Layout(1, {c: f for c, f in layout.folders.items() if c in REQUIRED or os.access(f, os.W_OK)})
            return layout, None
        problems.append(problem)
    return None, "; ".join(problems) or "no cgroup v2 or v1 memory and pids hierarchy is mounted"


def _write(path: Path, value: object) -> None:
    with open(path, "w") as f:
        f.write(str(value))


def _pids(folder: Path) -> list[int]:
    try:
        return [int(p) for p in (folder / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


class SubmissionCgroup:
    """The cgroup (one folder per hierarchy on v1) of one submission's sandbox."""

    def __init__(self, grader: GraderCgroups | _NoGrader, folders: dict[str, Path], version: int) -> None:
        self.grader, self.folders, self.version = grader, folders, version
        self.removed = False

    def _unique_folders(self) -> list[Path]:
        return list(dict.fromkeys(self.folders.values()))

    def procs_files(self) -> list[Path]:
        """The ``cgroup.procs`` files a process writes itself into to join."""
        return [folder / "cgroup.procs" for folder in self._unique_folders()]

    def join_command(self) -> list[str]:
        """A prefix for a command line: joins this cgroup, then execs the rest of the line."""
        steps = " && ".join(f"echo $$ > {shlex.quote(str(path))}" for path in self.procs_files())
        return ["/bin/sh", "-c", f'{steps} && exec "$@"', "course-cgroup-join"]

    def open_procs(self) -> list[int]:
        """File descriptors of the ``cgroup.procs`` files, open for writing (the caller closes them):
        the process that writes ``0`` to each joins."""
        fds = []
        try:
            for path in self.procs_files():
                fds.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    def oom_kills(self) -> int:
        """How many processes the out-of-memory killer ended in this cgroup."""
        folder = self.folders["memory"]
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            for line in (folder / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
            if self.version == 1:  # kernels before 4.13 do not count kills: count hits of the limit
                return int((folder / "memory.failcnt").read_text())
        except (OSError, ValueError):
            pass
        return 0

    def cpu_seconds(self) -> float | None:
        """CPU time (user and system) of every process that ran in this cgroup, exited ones included;
        None where the hierarchy keeps no account (cgroup v1 without ``cpuacct``)."""
        try:
            if self.version == 2:
                for line in (self.folders["memory"] / "cpu.stat").read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "usage_usec":
                        return int(value) / 1e6
                return None
            folder = self.folders.get("cpuacct")
            return None if folder is None else int((folder / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            return None

    def kill(self, rounds: int = 100) -> bool:
        """SIGKILL every process in the cgroup; repeat until none is left (forks in flight)."""
        folders = self._unique_folders()
        if self.version == 2 and (folders[0] / "cgroup.kill").exists():
            try:
                _write(folders[0] / "cgroup.kill", 1)
            except OSError:
                pass
        for _ in range(rounds):
            alive = {pid for folder in folders for pid in _pids(folder)}
            if not alive:
                return True
            for pid in alive:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.01)
        return False

    def remove(self) -> None:
        """Kill everything in it and remove it (again: nothing happens)."""
        if self.removed:
            return
        self.removed = True
        self.kill()
        for folder in self._unique_folders():
            for _ in range(200):  # a killed process leaves its cgroup once it is reaped
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    self.kill(rounds=1)
                    time.sleep(0.01)
        self.grader.released()


class GraderCgroups:
    """This grading process's parent folder of submission cgroups, in each hierarchy; made with
    its first submission, removed with its last."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.pid = os.getpid()
        self.parents = {c: folder / f"{PARENT_PREFIX}{self.pid}" for c, folder in layout.folders.items()}
        self._lock = threading.Lock()
        self._live = 0
        self._made = 0

    def _unique(self, folders: Mapping[str, Path]) -> list[Path]:
        return list(dict.fromkeys(folders.values()))

    def _make_parents(self) -> None:
        _remove_stale_parents(self._unique(self.layout.folders))
        if self.layout.version == 2:
            own = self.layout.folders["memory"]
            wanted = self._v2_controllers(own)
            enabled = set((own / "cgroup.subtree_control").read_text().split())
            if not set(wanted) <= enabled:
                # Fails (busy) where our own cgroup holds processes and is not the root: then v2 is not ours to use.
                _write(own / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted if c not in enabled))
        for folder in self._unique(self.parents):
            folder.mkdir(exist_ok=True)
        if self.layout.version == 2:
            parent = self.parents["memory"]
            _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in self._v2_controllers(parent.parent)))

    @staticmethod
    def _v2_controllers(folder: Path) -> list[str]:
        offered = set((folder / "cgroup.controllers").read_text().split())
        return [c for c in REQUIRED + OPTIONAL if c in offered]

    def _remove_parents(self) -> None:
        for folder in self._unique(self.parents):
            try:
                folder.rmdir()
            except OSError:
                pass

    def new_submission(self, memory_bytes: int, processes: int, cpus: float) -> SubmissionCgroup:
        """A fresh cgroup with these limits (raises OSError when one cannot be made)."""
        with self._lock:
            if self._live == 0:
                self._make_parents()
            self._live += 1
            self._made += 1
            name = f"submission-{self._made}"
        folders = {c: parent / name for c, parent in self.parents.items()}
        cgroup = SubmissionCgroup(self, folders, self.layout.version)
        try:
            for folder in cgroup._unique_folders():
                folder.mkdir()
            self._set_limits(folders, memory_bytes, processes, cpus)
        except BaseException:
            cgroup.remove()
            raise
        return cgroup

    def _set_limits(self, folders: Mapping[str, Path], memory_bytes: int, processes: int, cpus: float) -> None:
        memory, pids, cpu = folders["memory"], folders["pids"], folders.get("cpu")
        quota = int(cpus * CPU_PERIOD_US)
        if self.layout.version == 2:
            _write(memory / "memory.max", memory_bytes)
            if (memory / "memory.swap.max").exists():
                _write(memory / "memory.swap.max", 0)
            _write(pids / "pids.max", processes)
            if cpu is not None and (cpu / "cpu.max").exists():
                _write(cpu / "cpu.max", f"{quota} {CPU_PERIOD_US}")
            return
        _write(memory / "memory.limit_in_bytes", memory_bytes)
        if (memory / "memory.memsw.limit_in_bytes").exists():  # memory and swap together: no swap
            _write(memory / "memory.memsw.limit_in_bytes", memory_bytes)
        elif (memory / "memory.swappiness").exists():
            _write(memory / "memory.swappiness", 0)
        _write(pids / "pids.max", processes)
        if cpu is not None and (cpu / "cpu.cfs_quota_us").exists():
            _write(cpu / "cpu.cfs_period_us", CPU_PERIOD_US)
            _write(cpu / "cpu.cfs_quota_us", quota)

    def released(self) -> None:
        with self._lock:
            self._live -= 1
            if self._live == 0:
                self._remove_parents()


def _remove_stale_parents(folders: Iterable[Path]) -> None:
    """Empty parent folders of grading processes that are gone (killed before they could clean up)."""
    for folder in folders:
        try:
            names = [e.name for e in os.scandir(folder) if e.is_dir() and e.name.startswith(PARENT_PREFIX)]
        except OSError:
            continue
        for name in names:
            pid = name[len(PARENT_PREFIX):]
            if not pid.isdigit() or Path(f"/proc/{pid}").exists():
                continue
            stale = folder / name
            for child in [c for c in stale.iterdir() if c.is_dir()] if stale.is_dir() else []:
                SubmissionCgroup(_NoGrader(), {"memory": child}, 1).kill(rounds=20)
                try:
                    child.rmdir()
                except OSError:
                    pass
            try:
                stale.rmdir()
            except OSError:
                pass


class _NoGrader:
    def released(self) -> None:
        pass


_GRADER: dict[int, tuple[GraderCgroups | None, str | None]] = {}  # pid -> (GraderCgroups or None, why not)
_GRADER_LOCK = threading.Lock()


def grader_cgroups() -> tuple[GraderCgroups | None, str | None]:
    """``(GraderCgroups, None)`` for this process, or ``(None, why cgroups cannot be used)``.
    Per process: a worker forked from a grader gets its own."""
    with _GRADER_LOCK:
        pid = os.getpid()
        if pid not in _GRADER:
            layout, problem = discover()
            _GRADER[pid] = (GraderCgroups(layout), None) if layout else (None, problem)
        return _GRADER[pid]


def give_up(problem: str) -> None:
    """Make no more cgroups in this process (one could not be made: ``problem`` says why)."""
    with _GRADER_LOCK:
        _GRADER[os.getpid()] = (None, problem)
