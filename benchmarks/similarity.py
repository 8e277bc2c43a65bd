"""How long `course similarity` takes for a large class (target: 300 submissions in under a minute on 2 cores).

The class is made from the honest variants of tests/unit/similarity_variants.py: each student picks one way of
writing each function and renames its variables at random, and every tenth student copies another one.
Printed: the wall time of the whole command (reading, fingerprinting, every pair compared, both reports
written), the number of pairs compared, and how many planted copies rank above every honest pair.

    .venv/bin/python benchmarks/similarity.py [--students 300]
"""
import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "unit"))
from similarity_variants import ASSIGNMENT, NOTEBOOK, ROOT, VARIANTS, student_notebook, write  # noqa: E402

from course.similarity import similarity  # noqa: E402

NAMES = ["a", "b", "c", "val", "arr", "tmp", "res", "out", "w", "k"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=300)
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="similarity-benchmark-") as folder:
        course = Path(folder)
        shutil.copy2(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
        shutil.copytree(ROOT / "assignments" / ASSIGNMENT, course / "assignments" / ASSIGNMENT)
        release = nbformat.read(course / "assignments" / ASSIGNMENT / NOTEBOOK, as_version=4)
        choices, copies = {}, set()
        for i in range(args.students):
            student = f"s{i:04d}"
            if i % 10 == 9:
                original = f"s{rng.randrange(i - 9, i):04d}"
                choices[student] = choices[original]
                copies.add(frozenset((student, original)))
            else:
                choices[student] = {name: rng.randrange(3) for name in VARIANTS}
            rename = {old: rng.choice(NAMES) + str(i) for old in ("z", "x", "p", "q", "m", "e", "v", "t", "s")}
            write(course / "submitted", student, student_notebook(release, choices[student], rename=rename))
        start = time.perf_counter()
        pairs = similarity(ASSIGNMENT, root=course, out=lambda _: None)
        seconds = time.perf_counter() - start
    n = args.students
    honest_best = max((p.similarity for p in pairs if frozenset((p.first.student, p.second.student)) not in copies
                       and choices[p.first.student] != choices[p.second.student]), default=0)
    found = sum(1 for p in pairs if frozenset((p.first.student, p.second.student)) in copies and p.similarity > honest_best)
    print(f"{n} submissions, {n * (n - 1) // 2} pairs, {len(pairs)} sharing code: {seconds:.1f} s "
          f"(target under 60 s; {seconds / 60:.0%} of it)")
    print(f"planted copies ranked above every honest pair with different choices: {found} of {len(copies)}")


if __name__ == "__main__":
    main()
