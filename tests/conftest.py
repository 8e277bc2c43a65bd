import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build"


@pytest.fixture(scope="session")
def root():
    return ROOT


@pytest.fixture(scope="session")
def built_site():
    """The site that `make book` built; `make test` builds it first."""
    html = BUILD / "html"
    if not (html / "index.html").is_file():
        pytest.fail("_build/html is missing: run `make book` (make test does this for you)")
    return BUILD
