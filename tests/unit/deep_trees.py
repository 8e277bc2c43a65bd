"""Folder trees deeper than anything a student's files should hold, for the tests of walking and collecting
them (test_files.py, test_collect.py)."""
import os
import sys

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
