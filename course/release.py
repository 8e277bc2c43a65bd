"""Release student notebooks: ``solutions/<id>/`` -> ``assignments/<id>/``.

This is ``nbgrader generate_assignment`` for every assignment, run with the
course's ``nbgrader_config.py``, so what we commit in ``assignments/`` is
exactly what nbgrader produces.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .config import course_root
from .errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Iterable


def assignment_ids(root: Path) -> list[str]:
    source = root / "solutions"
    return sorted(p.name for p in source.iterdir() if p.is_dir() and any(p.glob("*.ipynb"))) if source.is_dir() else []


def release_assignments(ids: Iterable[str] | None = None, root: str | Path | None = None) -> list[str]:
    root = course_root(root)
    ids = list(ids) if ids else assignment_ids(root)
    bin_dir = Path(sys.executable).parent
    nbgrader = str(bin_dir / "nbgrader")
    # nbgrader runs `alembic` (the gradebook's migrations) from PATH.
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    for assignment in ids:
        if not (root / "solutions" / assignment).is_dir():
            raise UsageError(f"no folder solutions/{assignment}/ in {root}")
        result = subprocess.run(
            [nbgrader, "generate_assignment", assignment, "--force", "--log-level=ERROR"], cwd=root, env=env
        )
        if result.returncode != 0:
            raise UsageError(f"nbgrader generate_assignment {assignment} failed (exit {result.returncode}; its messages are above)")
    return ids
