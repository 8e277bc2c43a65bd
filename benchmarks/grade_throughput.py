"""Throughput of `course grade` against stock, serial `nbgrader autograde`, on the same submissions.

Both grade identical copies of 75 submissions of the whole course (15 per assignment, all five
assignments): correct ones, partly wrong ones (one function with a typical mistake) and broken
ones (untouched stubs, a syntax error, an exception at the top, a file that is not a notebook).

* stock        - nbgrader 0.9.6's own pipeline and Execute preprocessor (no sandbox, no hidden
                 checks; CONFIGS["stock"] of sandbox_overhead.py), one `nbgrader autograde` per
                 assignment, then `nbgrader generate_feedback` per assignment and `nbgrader export`;
* course grade - `course grade a1-distributions a2-losses a3-bigram a4-torch-cross-entropy a5-training`: the
                 trusted pipeline (bubblewrap sandbox, hidden checks) on a local pool, one worker
                 per core, kernels forked from a pre-warmed fork server; feedback, grades.csv and
                 reports included;
* course grade --no-feedback - the same without feedback (grades, grades.csv and reports), to
                 compare with `nbgrader autograde` alone.

Printed: wall time and seconds per submission of each, the throughput ratios (grading alone:
stock autograde vs `course grade --no-feedback`; everything: stock autograde + generate_feedback
+ export vs `course grade`), the peak memory of each run's process tree (PSS summed over every
process, kernels included, sampled every 0.5 s), and whether the honest (correct) submissions got
identical scores from both, and, from the CPU account each `course grade` run writes
(reports/grade-cpu.json, course.accounting), the CPU-seconds per submission by stage and assignment and
the overhead above the kernel's own CPU.

    .venv/bin/python benchmarks/grade_throughput.py [--per-assignment 15] [--workers N]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
from grading_support import (ASSIGNMENTS, BIN, environment, make_course, released_notebook,  # noqa: E402
                             replace_function, scores, solution_notebook, student_version, submit)
from sandbox_overhead import CONFIGS  # noqa: E402

MISTAKES = {
    "a1-distributions": {"mse": "def mse(y, y_hat):\n    import numpy as np\n    return float(np.sum((np.asarray(y) - np.asarray(y_hat)) ** 2))",
                         "bernoulli_mle": "def bernoulli_mle(x):\n    return 0.5",
                         "gaussian_nll": "def gaussian_nll(y, mu, sigma=1.0):\n    return 0.0"},
    "a2-losses": {"kl_divergence": "def kl_divergence(p, q):\n    import numpy as np\n    p, q = np.asarray(p, float), np.asarray(q, float)\n    return np.sum(q * np.log(q / p), axis=-1)",
                  "entropy": "def entropy(p):\n    import numpy as np\n    p = np.asarray(p, float)\n    return -np.sum(p * np.log2(p), axis=-1)",
                  "softmax": "def softmax(logits, temperature=1.0, axis=-1):\n    import numpy as np\n    e = np.exp(np.asarray(logits, float))\n    return e / e.sum(axis=axis, keepdims=True)"},
    "a3-bigram": {"perplexity": "def perplexity(nll):\n    return nll",
                  "bigram_nll": "def bigram_nll(probs, words):\n    return 0.0"},
    "a4-torch-cross-entropy": {"cross_entropy_grad": "def cross_entropy_grad(logits, targets):\n    return logits * 0",
                               "cross_entropy": "def cross_entropy(logits, targets, reduction='mean'):\n    import torch\n    return torch.zeros(())"},
    "a5-training": {"adam_step": "def adam_step(param, grad, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):\n    m = betas[0] * m + (1 - betas[0]) * grad\n    v = betas[1] * v + (1 - betas[1]) * grad**2\n    return param - lr * m / (v.sqrt() + eps), m, v",
                    "minibatches": "def minibatches(n, batch_size, generator_seed):\n    import torch\n    return list(torch.arange(n).split(batch_size))"},
}


def populate(course, per_assignment, assignments=tuple(ASSIGNMENTS)):
    """{(assignment, student): kind} with kind in correct / wrong / broken."""
    kinds = {}
    for assignment in assignments:
        reference = student_version(solution_notebook(assignment))
        mistakes = list(MISTAKES[assignment].items())
        for i in range(per_assignment):
            student = f"student{i:02d}"
            share = i % 15
            if share < 6:  # correct, each a little different (a note of the student's own)
                notebook = nbformat.from_dict(reference)
                notebook.cells.insert(1, nbformat.v4.new_markdown_cell(f"Submitted by {student}."))
                kind = "correct"
            elif share < 11:  # partly wrong: one function with a typical mistake
                function, source = mistakes[share % len(mistakes)]
                notebook = replace_function(reference, function, source)
                kind = "wrong"
            else:  # broken in four ways
                kind = "broken"
                notebook = released_notebook(course, assignment)
                if share == 12:
                    notebook = nbformat.from_dict(reference)
                    notebook.cells[2 if len(notebook.cells) > 2 else 0].source += "\ndef oops(:\n"
                elif share == 13:
                    notebook = nbformat.from_dict(reference)
                    notebook.cells.insert(2, nbformat.v4.new_code_cell("raise RuntimeError('crashed at the top')"))
                elif share == 14:
                    submit(course, student, assignment, raw_text='{"cells": [ not a notebook')
                    kinds[(assignment, student)] = kind
                    continue
            submit(course, student, assignment, notebook)
            kinds[(assignment, student)] = kind
    return kinds


class MemorySampler:
    """Peak memory of a process and all its descendants, sampled in a thread.

    Summed as PSS (proportional set size): a page shared by several processes, such as the
    modules kernels forked from one fork server inherit, is counted once in all, not once per
    process as an RSS sum would."""

    def __init__(self, pid, interval=0.5):
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                total = 0
                for process in [root, *root.children(recursive=True)]:
                    try:
                        total += process.memory_full_info().pss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, total)
            except psutil.Error:
                pass
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.peak


def speed_probe(rounds=5):
    """Seconds a fixed single-threaded pure-Python workload takes now, the best of ``rounds``: how fast this
    machine runs at the moment.  A shared virtual machine's speed drifts by tens of percent over minutes (the
    kernels' CPU for the very same submissions has differed by a third between two runs), so every timed phase is
    bracketed by probes, and each ratio is also given at equal machine speed."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        total = 0
        for number in range(3_000_000):
            total += number * number % 7
        best = min(best, time.perf_counter() - started)
    return best


def timed(command, cwd):
    # Stock nbgrader runs the students' code on the host: what torch caches there (torchinductor_<user>)
    # goes into the run's own temporary folder, removed with it. Both commands run as an instructor runs them,
    # without the tests' start-up file (course grade leaves the slow optional import out by itself).
    env = dict(environment(startup=False), TMPDIR=str(Path(cwd).parent))
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = MemorySampler(process.pid)
    output, _ = process.communicate()
    peak = sampler.stop()
    return time.perf_counter() - started, peak, process.returncode, output


def stage_table(account_path, process_wall):
    """The CPU account `course grade` wrote (reports/grade-cpu.json, course.accounting) as a table of
    CPU-seconds per submission, by stage and assignment; returns the lines and the overhead per submission
    above the kernel's own CPU (everything but the kernel running the student's code and the checks, and idle)."""
    import json

    from course.accounting import GRADING_PROCESS_STAGES, WHOLE_RUN, Stage

    account = json.loads(Path(account_path).read_text())
    seconds, counts = account["cpu_seconds"], account["submissions"]
    total = sum(counts.values()) or 1
    assignments = [a for a in seconds if a != WHOLE_RUN]
    columns = [*assignments, "all, per submission"]
    width = max(len(str(s)) for s in Stage) + 2
    lines = [f"{'CPU-s per submission':{width}s}" + "".join(f"{c[:22]:>24s}" for c in columns)]
    overall = {}
    for stage in Stage:
        row = []
        for assignment in assignments:
            value = seconds[assignment].get(str(stage))
            row.append(f"{value / counts.get(assignment, 1):24.3f}" if value is not None else f"{'':24s}")
        whole = sum(stages.get(str(stage), 0.0) for stages in seconds.values())
        if stage is Stage.IDLE:  # the seconds before the account started (Python, imports) were idle as well
            whole += account["cores"] * max(0.0, process_wall - account["wall_seconds"])
        overall[stage] = whole
        lines.append(f"{str(stage):{width}s}" + "".join(row) + f"{whole / total:24.3f}")
    overhead = sum(v for stage, v in overall.items() if stage not in (Stage.KERNEL_RUN, Stage.IDLE)) / total
    # How many workers one grading process can keep busy: a worker (and its kernels) needs `workers_side`
    # CPU-s per submission, the grading process `grader_side`, and the grading process is one thread.
    grader_side = sum(overall[s] for s in (*GRADING_PROCESS_STAGES, Stage.GRADER_OTHER)) \
        + seconds.get(WHOLE_RUN, {}).get(str(Stage.MESSAGES), 0.0)
    workers_side = sum(overall[s] for s in (Stage.KERNEL_START, Stage.KERNEL_RUN, Stage.MESSAGES, Stage.WORKER_OTHER)) \
        - seconds.get(WHOLE_RUN, {}).get(str(Stage.MESSAGES), 0.0)
    lines.append(f"grading process {grader_side / total:.3f} CPU-s per submission, each worker and its kernels "
                 f"{workers_side / total:.3f}: one grading process can feed about {workers_side / max(grader_side, 1e-9):.1f} workers")
    lines.append(f"{len(assignments)} assignments, {total} submissions, {account['cores']} cores, "
                 f"{process_wall:.1f} s wall ({account['wall_seconds']:.1f} s of it accounted)")
    if account.get("first_task_began_after_seconds") is not None:
        lines.append(f"a worker took the first task {process_wall - account['wall_seconds'] + account['first_task_began_after_seconds']:.1f} s "
                     f"after the command started, and finished the last {account['wall_seconds'] - account['last_task_ended_after_seconds']:.1f} s "
                     "before it ended")
    return lines, overhead


def scale_only(per_assignment, chosen, workers):
    """`course grade --no-feedback` alone: seconds and CPU per submission, peak memory, the stage table."""
    import json

    from course.accounting import Stage

    with tempfile.TemporaryDirectory(prefix="grade-throughput-") as tmp:
        bare = make_course(Path(tmp) / "no-feedback")
        count = len(populate(bare, per_assignment, chosen))
        print(f"{count} submissions ({per_assignment} per assignment), {os.cpu_count()} cores", flush=True)
        command = [str(BIN / "course"), "grade", *chosen, "--no-progress", "--no-feedback"]
        if workers:
            command += ["--workers", str(workers)]
        seconds, peak, code, output = timed(command, bare)
        print(output.strip())
        lines, overhead = stage_table(bare / "reports" / "grade-cpu.json", seconds)
        account = json.loads((bare / "reports" / "grade-cpu.json").read_text())
        used = sum(v for a in account["cpu_seconds"].values() for k, v in a.items() if k != str(Stage.IDLE))
    print(f"course grade --no-feedback (exit {code}): {seconds:.1f} s, {seconds / count:.3f} s and "
          f"{used / count:.3f} CPU-s per submission (idle excluded), peak memory {peak / 2**20:.0f} MiB")
    print("\n".join(lines))
    print(f"overhead above the kernel's own CPU: {overhead:.3f} CPU-s per submission")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-assignment", type=int, default=15)
    parser.add_argument("--workers", type=int, default=None, help="course grade --workers (default: one per core)")
    parser.add_argument("--assignments", nargs="+", choices=list(ASSIGNMENTS), default=list(ASSIGNMENTS),
                        help="grade only these (default: all; a1 to a4 compare with runs made before a5 existed)")
    parser.add_argument("--scale-only", action="store_true",
                        help="only `course grade --no-feedback`: its cost per submission, memory and CPU account, to "
                             "compare a large run (--per-assignment 120: 600 submissions) with the default one")
    args = parser.parse_args()
    chosen = args.assignments
    if args.scale_only:
        return scale_only(args.per_assignment, chosen, args.workers)
    with tempfile.TemporaryDirectory(prefix="grade-throughput-") as tmp:
        stock = make_course(Path(tmp) / "stock", extra_config=CONFIGS["stock"])
        ours = make_course(Path(tmp) / "course")
        kinds = populate(stock, args.per_assignment, chosen)
        populate(ours, args.per_assignment, chosen)
        bare = make_course(Path(tmp) / "no-feedback")
        populate(bare, args.per_assignment, chosen)
        count = len(kinds)
        print(f"{count} submissions ({args.per_assignment} per assignment), {os.cpu_count()} cores", flush=True)

        autograde_seconds, feedback_seconds, stock_peak = 0.0, 0.0, 0
        probes = [speed_probe()]  # before and after each phase: stock autograde, its feedback, ours twice
        for assignment in chosen:
            seconds, peak, _, _ = timed([str(BIN / "nbgrader"), "autograde", assignment], stock)
            autograde_seconds += seconds
            stock_peak = max(stock_peak, peak)
            print(f"stock nbgrader autograde {assignment:24s} {seconds:6.1f} s", flush=True)
        probes.append(speed_probe())
        for assignment in chosen:
            seconds, peak, _, _ = timed([str(BIN / "nbgrader"), "generate_feedback", assignment], stock)
            feedback_seconds += seconds
            stock_peak = max(stock_peak, peak)
        seconds, peak, _, _ = timed([str(BIN / "nbgrader"), "export"], stock)
        feedback_seconds += seconds
        print(f"stock nbgrader generate_feedback + export  {feedback_seconds:6.1f} s", flush=True)
        probes.append(speed_probe())

        command = [str(BIN / "course"), "grade", *chosen, "--no-progress"]
        if args.workers:
            command += ["--workers", str(args.workers)]
        bare_seconds, bare_peak, code, output = timed(command + ["--no-feedback"], bare)
        print(f"course grade --no-feedback (exit {code})    {bare_seconds:6.1f} s", flush=True)
        probes.append(speed_probe())
        ours_seconds, ours_peak, code, output = timed(command, ours)
        probes.append(speed_probe())
        print(output.strip())
        print(f"course grade (exit {code})                 {ours_seconds:6.1f} s", flush=True)

        bare_stages, bare_overhead = stage_table(bare / "reports" / "grade-cpu.json", bare_seconds)
        ours_stages, ours_overhead = stage_table(ours / "reports" / "grade-cpu.json", ours_seconds)

        honest_same, honest_total, other_same, other_total = 0, 0, 0, 0
        mismatches = []
        for assignment in chosen:
            a, b = scores(stock, assignment), scores(ours, assignment)
            assert scores(bare, assignment) == b, "course grade gave different grades with and without feedback"
            for (name, student), kind in kinds.items():
                if name != assignment:
                    continue
                got_stock = a.get(student, {}).get("_total")
                got_ours = b.get(student, {}).get("_total")
                if kind == "correct":
                    honest_total += 1
                    honest_same += got_stock == got_ours
                    if got_stock != got_ours:
                        mismatches.append((assignment, student, got_stock, got_ours))
                else:
                    other_total += 1
                    other_same += got_stock == got_ours

    stock_full = autograde_seconds + feedback_seconds
    print()
    print(f"{'':34s} {'wall':>8s} {'per submission':>15s} {'peak memory':>12s}")
    print(f"{'stock nbgrader autograde':34s} {autograde_seconds:7.1f}s {autograde_seconds / count:14.2f}s {stock_peak / 2**20:10.0f} MiB")
    print(f"{'stock autograde+feedback+export':34s} {stock_full:7.1f}s {stock_full / count:14.2f}s")
    print(f"{'course grade --no-feedback':34s} {bare_seconds:7.1f}s {bare_seconds / count:14.2f}s {bare_peak / 2**20:10.0f} MiB")
    print(f"{'course grade (all of it)':34s} {ours_seconds:7.1f}s {ours_seconds / count:14.2f}s {ours_peak / 2**20:10.0f} MiB")
    print()
    print(f"throughput, grading: course grade --no-feedback vs stock autograde:   {autograde_seconds / bare_seconds:.2f}x  (target: 8x)")
    print(f"throughput, everything: course grade vs stock autograde+feedback+export: {stock_full / ours_seconds:.2f}x")
    print(f"(course grade with feedback vs stock autograde alone: {autograde_seconds / ours_seconds:.2f}x)")
    # Each phase's seconds divided by the machine's probe time around it (the mean of the probes before and after).
    speed = [(a + b) / 2 for a, b in zip(probes, probes[1:])]  # stock autograde, its feedback, ours bare, ours full
    print(f"machine speed probe, seconds (lower is faster): {' | '.join(f'{p:.3f}' for p in probes)} "
          "(before stock autograde | after it | after its feedback and export | after course grade --no-feedback | "
          "after course grade)")
    print(f"at equal machine speed: grading {(autograde_seconds / speed[0]) / (bare_seconds / speed[2]):.2f}x, "
          f"everything {(autograde_seconds / speed[0] + feedback_seconds / speed[1]) / (ours_seconds / speed[3]):.2f}x")
    print()
    print("Where the CPU goes, course grade --no-feedback (reports/grade-cpu.json; idle: cores x wall not used or not measured):")
    print("\n".join(bare_stages))
    print(f"overhead above the kernel's own CPU: {bare_overhead:.3f} CPU-s per submission (target: at most 0.15)")
    print()
    print("Where the CPU goes, course grade with feedback:")
    print("\n".join(ours_stages))
    print(f"overhead above the kernel's own CPU: {ours_overhead:.3f} CPU-s per submission")
    print()
    print(f"honest submissions with identical scores: {honest_same}/{honest_total}"
          + (f"  MISMATCHES: {mismatches}" if mismatches else ""))
    print(f"other submissions with identical scores:  {other_same}/{other_total} "
          "(stock runs the visible tests in the student's kernel, the trusted pipeline hidden checks)")


if __name__ == "__main__":
    main()
