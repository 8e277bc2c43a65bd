"""The course directory and its ``nbgrader_config.py``, as every ``course`` command reads them."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UsageError

if TYPE_CHECKING:
    from traitlets.config import Config


def course_root(root: str | Path | None = None) -> Path:
    """The course directory (default: the current folder); a folder without ``nbgrader_config.py`` is not one."""
    root = Path(root or ".").resolve()
    if not (root / "nbgrader_config.py").is_file():
        raise UsageError(f"{root} is not a course directory: it has no nbgrader_config.py (use --course)")
    return root


# nbgrader's plug-ins that an nbgrader_config.py written before course/plugins.py imports from elsewhere
MOVED_PLUG_INS = {"SandboxedExecute": "course.execute", "RestoreCellMetadata": "course.sanitize",
                  "ReadableNotebookExporter": "course.sanitize"}


def load_config(root: str | Path | None, db_url: str | None = None) -> Config:
    """The course's nbgrader configuration, with its root and gradebook URL filled in (``--db`` wins)."""
    from traitlets.config.loader import PyFileConfigLoader

    from .record import gradebook_url

    root = course_root(root)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))  # nbgrader_config.py may import modules kept beside it
    try:
        config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    except ImportError as error:
        moved = [name for name in MOVED_PLUG_INS if f"cannot import name '{name}' from '{MOVED_PLUG_INS[name]}'" in str(error)]
        if not moved:
            raise
        raise UsageError(f"{root / 'nbgrader_config.py'}: {', '.join(moved)} is now imported from course.plugins, "
                         f"with nbgrader's other plug-ins: write `from course.plugins import {', '.join(moved)}`") from None
    if "lms_pattern" in config.CourseGrade:  # the old name would be ignored, and the default pattern used
        raise UsageError(f"{root / 'nbgrader_config.py'}: c.CourseGrade.lms_pattern is now c.Collect.lms_pattern "
                         "(course grade and course similarity read it alike): rename it")
    if "root" not in config.CourseDirectory:
        config.CourseDirectory.root = str(root)
    if db_url:
        config.CourseDirectory.db_url = db_url
    if "db_url" in config.CourseDirectory:
        config.CourseDirectory.db_url = gradebook_url(config.CourseDirectory.db_url)
    return config


def is_step(item: object, step: type) -> bool:
    """Whether ``item`` of nbgrader's autograde pipeline is ``step`` or a subclass of it: the pipeline names a
    preprocessor by its class or by its import path (nbconvert imports the path, and so does this)."""
    if isinstance(item, str):
        from traitlets.utils.importstring import import_item

        try:
            item = import_item(item)
        except Exception:  # nbconvert fails on it too, when the pipeline runs, and says so
            return False
    return isinstance(item, type) and issubclass(item, step)


def in_pipeline(config: Config, step: type) -> bool:
    """Whether the course's autograde pipeline (``c.Autograde.autograde_preprocessors``) runs ``step``."""
    return any(is_step(item, step) for item in config.Autograde.get("autograde_preprocessors", []))
