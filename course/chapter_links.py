"""Links from assignment notebooks to the chapters they practise, as students can follow them.

The instructor notebooks in ``solutions/`` link chapters by their path in the repository,
``[Softmax and temperature](../../book/05-softmax.md)``, which works in a clone and on GitHub.
A released notebook travels alone (Jupyter, Colab, a hub) where that path leads nowhere, so
``nbgrader generate_assignment`` (``nbgrader_config.py``) runs ``AbsoluteChapterLinks`` first:
every such link becomes the chapter's page on the published site, ``course_site_url`` in
``_config.yml`` (``course.student_notebook.site_url``) + ``book/05-softmax.html``.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, Unicode

if TYPE_CHECKING:
    from nbformat import NotebookNode

# [title](relative/path/book/NN-name.md#anchor): the link text (possibly wrapped), the path, the chapter, the anchor.
RELATIVE_CHAPTER_LINK = re.compile(r"(\[[^\]]+\])\((?:\.\./)*book/(\d\d-[\w-]+)\.md(#[\w-]+)?\)")


def absolute_chapter_links(text: str, base: str) -> str:
    return RELATIVE_CHAPTER_LINK.sub(lambda m: f"{m.group(1)}({base}book/{m.group(2)}.html{m.group(3) or ''})", text)


class AbsoluteChapterLinks(Preprocessor):
    """Markdown links to ``book/NN-*.md`` become links to the chapter on the published site."""

    enabled = Bool(True)  # nbconvert's preprocessors are off unless enabled
    site_url = Unicode("", help="the published site (default: _config.yml's course_site_url)").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        from .student_notebook import site_url

        base = self.site_url or site_url()
        base = base if base.endswith("/") else base + "/"
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = absolute_chapter_links(cell.source, base)
        return nb, resources
