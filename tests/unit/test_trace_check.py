"""The suite's own guard: a run that leaves a file in the home folder fails, with and without
pytest-xdist workers (tests/conftest.py checks once, in the main process, after every worker)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parent.parent / "conftest.py"
LEAKY_TEST = '''
import os
from pathlib import Path

def test_leaves_a_file_at_home():
    (Path.home() / os.environ["LEAK_NAME"]).write_text("left behind")
'''


@pytest.mark.parametrize("workers", [[], ["--numprocesses=2", "--dist=loadfile"]], ids=["one process", "xdist"])
def test_a_run_that_leaves_a_file_at_home_fails(tmp_path, workers):
    suite = tmp_path / "suite"
    suite.mkdir()
    shutil.copy(CONFTEST, suite / "conftest.py")
    (suite / "test_leaky.py").write_text(LEAKY_TEST)
    (tmp_path / "home").mkdir()
    (tmp_path / "inner-tmp").mkdir()
    env = dict(os.environ, HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path / "inner-tmp"), LEAK_NAME="leak-check")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *workers, str(suite)],
                            cwd=suite, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    # /tmp and /dev/shm are watched too, where other runs come and go: the leak must be among what is named
    left = result.stdout.split("the tests left these behind: ", 1)[-1]
    assert f"'{tmp_path / 'home' / 'leak-check'}'" in left, result.stdout
    assert not list((tmp_path / "inner-tmp").iterdir()), "the run's own temporary folder was not removed"
