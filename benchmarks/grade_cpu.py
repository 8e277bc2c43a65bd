"""CPU seconds that grading one correct submission costs in the sandbox, per assignment, on one core.

For each assignment, the reference solution gets one extra last cell that prints the CPU time
(user + system, every thread) its kernel has used since it started: the notebook's own cells and
every hidden check (each runs in the same kernel, right after its test cell). The batch is graded
by the standard `nbgrader autograde`, pinned to one core with `taskset -c 0`, and the number is read
back from the autograded notebook. The target for every assignment, a5-training included, is under
10 CPU-seconds.

    .venv/bin/python benchmarks/grade_cpu.py [assignment ...]
"""
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from grading_support import ASSIGNMENTS, BIN, environment, make_course, solution_notebook, student_version, submit  # noqa: E402

CPU_PROBE = """
import resource
usage = resource.getrusage(resource.RUSAGE_SELF)
print(f"KERNEL_CPU_SECONDS {usage.ru_utime + usage.ru_stime:.3f}")
"""
TARGET_SECONDS = 10.0


def main():
    chosen = sys.argv[1:] or list(ASSIGNMENTS)
    one_core = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    with tempfile.TemporaryDirectory(prefix="grade-cpu-") as tmp:
        course = make_course(Path(tmp) / "course")
        print(f"{'assignment':24s} {'kernel CPU':>11s} {'autograde wall':>15s}   (one core: {bool(one_core)})")
        for assignment in chosen:
            notebook = student_version(solution_notebook(assignment))
            notebook.cells.append(nbformat.v4.new_code_cell(CPU_PROBE))
            submit(course, "reference", assignment, notebook)
            started = time.perf_counter()
            subprocess.run([*one_core, str(BIN / "nbgrader"), "autograde", assignment], cwd=course, env=environment(startup=False),
                           check=True, capture_output=True)
            wall = time.perf_counter() - started
            graded = nbformat.read(course / "autograded" / "reference" / assignment / ASSIGNMENTS[assignment], as_version=4)
            printed = "".join(o.get("text", "") for c in graded.cells if c.cell_type == "code" for o in c.get("outputs", []))
            found = re.search(r"KERNEL_CPU_SECONDS ([\d.]+)", printed)
            cpu = float(found.group(1)) if found else float("nan")
            verdict = "ok" if cpu < TARGET_SECONDS else f"OVER the {TARGET_SECONDS:.0f} s target"
            print(f"{assignment:24s} {cpu:10.2f}s {wall:14.1f}s   {verdict}", flush=True)


if __name__ == "__main__":
    main()
