"""course.files: a student's files walked and removed at any depth, links never followed."""
import os
import sys

from course.files import ENTRY_BYTES, disk_usage, remove_tree

# Deeper than the interpreter's recursion limit, and (one-letter folders: two bytes a level) a path
# longer than PATH_MAX (4096): what shutil.rmtree, os.walk and Path.rglob cannot handle.
DEPTH = max(3000, sys.getrecursionlimit() + 500)


def deep_tree(top, depth=DEPTH, payload=b"x" * 1000):
    """``top/a/a/.../a`` ``depth`` levels down, made by file descriptor, with a file at the bottom."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("a", dir_fd=fd)
            child = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd)
        os.write(leaf, payload)
        os.close(leaf)
    finally:
        os.close(fd)


def test_a_tree_deeper_than_the_recursion_limit_and_path_max_is_counted_and_removed(tmp_path):
    top = tmp_path / "channel"
    deep_tree(top)
    assert 2 * DEPTH > os.pathconf("/", "PC_PATH_MAX")
    assert disk_usage(top) == (DEPTH + 1) * ENTRY_BYTES
    remove_tree(top)
    assert not top.exists()


def test_links_are_removed_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("the grader's")
    top = tmp_path / "channel"
    (top / "sub").mkdir(parents=True)
    os.symlink(outside, top / "sub" / "to-a-folder")
    os.symlink(outside / "keep", top / "to-a-file")
    os.symlink(tmp_path, top / "loop")
    (top / "sub" / "locked").mkdir()
    (top / "sub" / "locked" / "file").write_text("x")
    os.chmod(top / "sub" / "locked", 0)
    assert disk_usage(top) == 6 * ENTRY_BYTES
    remove_tree(top)
    assert not top.exists() and (outside / "keep").read_text() == "the grader's"


def test_a_missing_path_or_a_single_file(tmp_path):
    remove_tree(tmp_path / "nothing")
    (tmp_path / "file").write_text("x")
    remove_tree(tmp_path / "file")
    assert not (tmp_path / "file").exists()
