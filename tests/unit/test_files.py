"""course.files: a student's files walked and removed at any depth, links never followed."""
import os

from course.files import ENTRY_BYTES, disk_usage, remove_tree
from deep_trees import DEPTH, deep_tree


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
