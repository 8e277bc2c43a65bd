"""Unit tests: no kernel, no sandbox, no built site; nearly all run in well under a second (the
trace check starts a small pytest run of its own).

Temporary files the code under test makes (``tempfile``) go to the test's own folder, and
the test fails if any is left there."""
import tempfile

import pytest


@pytest.fixture(autouse=True)
def own_temporary_folder(tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    yield
    left = list(scratch.iterdir())
    assert not left, f"temporary files left behind: {left}"


@pytest.fixture(scope="session")
def empty_gradebook(tmp_path_factory):
    """An empty nbgrader gradebook (SQLite), made once: nbgrader makes a new one by running alembic's migrations
    in a process of their own, some seconds; a test copies it (``gradebook_copy``) and fills it as it needs."""
    import os
    import sys
    from pathlib import Path

    from nbgrader.api import Gradebook

    path = tmp_path_factory.mktemp("gradebook") / "gradebook.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])  # alembic
        with Gradebook(f"sqlite:///{path}"):
            pass
    return path


@pytest.fixture
def gradebook_copy(empty_gradebook):
    """``gradebook_copy(folder)``: the empty gradebook copied into ``folder``; returns its URL."""
    import shutil

    def copy(folder):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(empty_gradebook, folder / "gradebook.db")
        return f"sqlite:///{folder / 'gradebook.db'}"

    return copy
