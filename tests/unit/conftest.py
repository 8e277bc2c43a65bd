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
