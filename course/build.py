"""Build the static site with Jupyter Book 1.x.

Chapters execute at build time through jupyter-cache, so a rebuild with no
changed chapter re-executes nothing.  Sphinx warnings fail the build.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import ROOT

if TYPE_CHECKING:
    from typing import IO


def jupyter_book_command(root: Path = ROOT) -> list[str]:
    executable = Path(sys.executable).with_name("jupyter-book")
    return [str(executable), "build", str(root), "--builder", "html", "--warningiserror", "--keep-going"]


def build_site(root: Path = ROOT, stdout: IO[bytes] | int | None = None) -> float:
    """Build ``root`` into ``root/_build/html``; return the wall time in seconds (``stdout``: where
    Jupyter Book's log goes, as for ``subprocess.run``; default: this process's own)."""
    started = time.perf_counter()
    # Chapter kernels write temporary files (torch's optimizers make a torchinductor cache folder in
    # the temp directory on their first step); they stay in the build folder and go with the build.
    build_folder = root / "_build"
    build_folder.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=build_folder, prefix="tmp-", ignore_cleanup_errors=True) as scratch:
        environment = dict(os.environ, TMPDIR=scratch)
        result = subprocess.run(jupyter_book_command(root), cwd=root, env=environment, stdout=stdout)
    if result.returncode != 0:
        raise SystemExit(f"course build: jupyter-book failed (exit {result.returncode}); see the log above")
    return time.perf_counter() - started
