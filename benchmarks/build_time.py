"""Cold build vs no-change rebuild of the site, in one run.

Copies the book sources into a temporary folder (so the real _build is
untouched), builds once from nothing (every chapter executes), then builds
again with no change (jupyter-cache and Sphinx's environment make that cheap).

    .venv/bin/python benchmarks/build_time.py
"""
import shutil
import subprocess
import tempfile
from pathlib import Path

from course.build import build_site

ROOT = Path(__file__).resolve().parent.parent
BOOK_SOURCES = ["_config.yml", "_toc.yml", "book", "assignments", "course"]


def timed_build(folder: Path) -> float:
    return build_site(folder, stdout=subprocess.DEVNULL)  # the same build `make book` runs


def main():
    with tempfile.TemporaryDirectory(prefix="book-bench-") as tmp:
        folder = Path(tmp)
        for name in BOOK_SOURCES:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            elif source.exists():
                shutil.copy2(source, folder / name)
        cold = timed_build(folder)
        rebuild = timed_build(folder)
    print(f"cold build:         {cold:8.1f} s")
    print(f"no-change rebuild:  {rebuild:8.1f} s")
    print(f"rebuild / cold:     {rebuild / cold:8.1%}  (target: under 15%)")


if __name__ == "__main__":
    main()
