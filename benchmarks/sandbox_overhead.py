"""Wall time of grading the same submissions with and without the sandbox, in one run.

Three configurations grade identical copies of the same submissions (reference,
untouched and typical-mistake notebooks of every assignment) through
`nbgrader autograde`:

* stock      - nbgrader 0.9.6's own Execute preprocessor (no sandbox, no hidden checks);
* no-bwrap   - the course's trusted pipeline with bubblewrap turned off (resource limits only);
* bwrap-cold - the trusted pipeline in bubblewrap, every kernel started cold (fork_server = False);
* sandboxed  - the trusted pipeline in bubblewrap, kernels forked from a fork server (the default).

The sandbox's own overhead is bwrap-cold / no-bwrap (both start every kernel cold); the target is
at most 10%.  sandboxed / bwrap-cold is what the fork server saves.
Configurations alternate over rounds to spread machine noise; medians are printed.

    .venv/bin/python benchmarks/sandbox_overhead.py [--rounds 3]
"""
import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from grading_support import (ASSIGNMENTS, make_course, nbgrader, released_notebook, replace_function,  # noqa: E402
                             solution_notebook, student_version, submit)

CONFIGS = {
    "stock": "c.Autograde.autograde_preprocessors = [__import__('nbgrader.preprocessors', fromlist=['x']).Execute, "
             "IgnorePattern, ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]",
    "no-bwrap": "c.SandboxedExecute.use_bubblewrap = False",
    "bwrap-cold": "c.SandboxedExecute.fork_server = False",
    "sandboxed": "",
}
MISTAKE = {"a1-distributions": "mse", "a2-losses": "kl_divergence", "a3-bigram": "perplexity", "a4-torch-cross-entropy": "cross_entropy_grad"}


def populate(course):
    count = 0
    for assignment in ASSIGNMENTS:
        reference = student_version(solution_notebook(assignment))
        submit(course, "reference", assignment, reference)
        submit(course, "untouched", assignment, released_notebook(course, assignment))
        wrong = replace_function(reference, MISTAKE[assignment], f"def {MISTAKE[assignment]}(*args, **kwargs):\n    return 0.0")
        submit(course, "mistake", assignment, wrong)
        count += 3
    return count


def grade_all(course):
    started = time.perf_counter()
    for assignment in ASSIGNMENTS:
        nbgrader(course, "autograde", assignment, "--force", check=False, timeout=3600)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    times = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as tmp:
        courses = {name: make_course(Path(tmp) / name, extra_config=config) for name, config in CONFIGS.items()}
        count = {name: populate(course) for name, course in courses.items()}["sandboxed"]
        for round_number in range(args.rounds):
            for name, course in courses.items():
                seconds = grade_all(course)
                times[name].append(seconds)
                print(f"round {round_number + 1}: {name:10s} {seconds:7.1f} s", flush=True)
        for course in courses.values():
            shutil.rmtree(course / "autograded", ignore_errors=True)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"\n{count} submissions per configuration, median of {args.rounds} rounds")
    for name in CONFIGS:
        print(f"{name:10s} {median[name]:7.1f} s  ({median[name] / count:5.2f} s per submission)")
    overhead = median["bwrap-cold"] / median["no-bwrap"] - 1
    print(f"\nsandbox overhead (bwrap-cold vs no-bwrap):    {overhead:+.1%}  (target: at most +10%)")
    print(f"fork server (sandboxed vs bwrap-cold):        {median['sandboxed'] / median['bwrap-cold']:.2f}x the wall time")
    print(f"trusted pipeline (sandboxed) vs stock nbgrader: {median['sandboxed'] / median['stock']:.2f}x the wall time")


if __name__ == "__main__":
    main()
