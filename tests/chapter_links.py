"""The markdown link to a chapter, as assignment notebooks write it, read by the notebook and the site checks.

A module of its own (not conftest): ``from conftest import`` gets whichever conftest.py was imported last.
"""
import re

# [its title](relative/path/to/book/NN-name.md) in solutions/, [its title](https://site/book/NN-name.html) in the
# released notebooks (course/chapter_links.py), the title possibly wrapped; groups: the title, the target, the
# chapter's file stem.
CHAPTER_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]*book/(\d\d-[\w-]+)\.(?:md|html))\)")
