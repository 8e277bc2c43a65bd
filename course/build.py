"""Build the static site with Jupyter Book 1.x.

Chapters execute at build time through jupyter-cache, so a rebuild with no
changed chapter re-executes nothing.  Sphinx warnings fail the build.
"""
import subprocess
import sys
import time
from pathlib import Path

from . import ROOT


def jupyter_book_command(root: Path = ROOT):
    executable = Path(sys.executable).with_name("jupyter-book")
    return [str(executable), "build", str(root), "--builder", "html", "--warningiserror", "--keep-going"]


def build_site(root: Path = ROOT) -> float:
    """Build ``root`` into ``root/_build/html``; return the wall time in seconds."""
    started = time.perf_counter()
    result = subprocess.run(jupyter_book_command(root), cwd=root)
    if result.returncode != 0:
        raise SystemExit(f"course build: jupyter-book failed (exit {result.returncode}); see the log above")
    return time.perf_counter() - started
