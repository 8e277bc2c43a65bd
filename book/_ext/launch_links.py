"""Sphinx extension: launch buttons only where they lead somewhere, and an .ipynb download always.

* sphinx-book-theme copies a chapter's executed notebook into ``_sources/`` (the ".ipynb"
  download button) only when some launch service is configured. Here every chapter gets its
  download, configured or not (``offer_notebook_download``), and it is the notebook a student
  reads (``course/student_notebook.py``): numbers written in, links to the published site,
  solutions at the end, no build plumbing.
* Every notebook the site offers (a chapter's, an assignment's) also has a ``.zip`` beside it
  (``zip_notebooks``): from the site's folder (file://) browsers show an ``.ipynb`` as text
  instead of saving it, so there ``site.js`` points the download links at the zips.
* Launch buttons appear only for the services given a URL in ``_config.yml``
  (``launch_buttons``), and then only with ``repository.url`` naming the repository that holds
  the book: a service without a repository, or a placeholder address, stops the build with a
  message that says what to set (``check_launch_config``).
* Binder, Colab and JupyterHub open ``book/NN-*.ipynb``, the notebook paired with each chapter
  (the theme uses a chapter's ``.ipynb`` twin when one exists next to its ``.md``); ``make
  notebooks`` writes them from the chapters with jupytext.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

from sphinx.application import Sphinx
from sphinx.errors import ConfigError

SERVICES = ("binderhub_url", "colab_url", "jupyterhub_url", "jupyterlite_url", "deepnote_url")
PLACEHOLDER_HOSTS = ("example.org", "example.com", "example.net", "localhost")


def _placeholder(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return not host or any(host == p or host.endswith("." + p) for p in PLACEHOLDER_HOSTS)


def check_launch_config(app: Sphinx, config) -> None:
    options = config.html_theme_options or {}
    launch = options.get("launch_buttons") or {}
    configured = {key: str(launch[key]).strip() for key in SERVICES if str(launch.get(key) or "").strip()}
    if not configured:
        return
    for key, url in configured.items():
        if key != "jupyterlite_url" and _placeholder(url):
            raise ConfigError(
                f"_config.yml: launch_buttons.{key} is {url!r}, a placeholder; give your service's real "
                "address or leave it empty (no button)"
            )
    repository = str(options.get("repository_url") or "").strip()
    if not repository or _placeholder(repository):
        raise ConfigError(
            f"_config.yml: launch_buttons sets {', '.join(sorted(configured))}, but repository.url is "
            f"{repository!r}; set it to the public repository that holds this book, or leave the launch "
            "URLs empty"
        )


def offer_notebook_download(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Copy the executed notebook of a MyST notebook page into _sources/ and offer it."""
    if app.builder.format != "html" or not context.get("sourcename", "").endswith((".md", ".md.txt")):
        return
    executed = Path(app.outdir).parent / "jupyter_execute" / f"{pagename}.ipynb"
    if not executed.is_file():
        return  # a plain Markdown page, not a notebook
    if getattr(app.config, "nb_execution_mode", None) == "off":
        return  # a preview built without running the chapters: no numbers to write into a student's copy
    from course.student_notebook import glued_values_of, student_notebook

    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    notebook = json.loads(executed.read_text(encoding="utf-8"))
    readable = student_notebook(notebook, pagename, glued_values_of(pagename, Path(app.outdir).parent),
                                Path(app.srcdir),
                                base=site_url(app.config))
    target.write_text(json.dumps(readable, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    context["ipynb_source"] = f"{pagename}.ipynb"


def site_url(config) -> str:
    from course.student_notebook import DEFAULT_SITE_URL

    url = str(config.course_site_url or "").strip() or DEFAULT_SITE_URL
    return url if url.endswith("/") else url + "/"


def write_zip(notebook: Path) -> Path:
    """``name.zip`` beside ``name.ipynb``, holding it (a fixed date: the same notebook gives the same zip)."""
    target = notebook.with_suffix(".zip")
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(notebook.name, date_time=(2026, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        archive.writestr(info, notebook.read_bytes())
    return target


def zip_notebooks(app: Sphinx, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    for folder in ("_sources", "_downloads"):
        for notebook in (out / folder).rglob("*.ipynb"):
            write_zip(notebook)


def merge_only_adjacent_streams() -> None:
    """One box per run of printed text: myst-nb takes glue outputs out of a cell, which left the prints
    before and after each ``glue()`` call in boxes of their own. With ``nb_merge_streams`` on (_config.yml),
    myst-nb's coalescing is replaced by one that joins only streams that follow one another, so text
    printed after a figure stays after it."""
    from myst_nb.core import render

    from course.student_notebook import merge_adjacent_streams

    render.coalesce_streams = merge_adjacent_streams


def readable_glued_text() -> None:
    """``{glue:text}`` without a format shows numbers for reading (at most 6 significant digits, 8.88e-16
    rather than 8.881784197001252e-16) and booleans as yes/no, not Python's ``True``; with a format
    (``{glue:text}`name:.4f```, as a chapter's table prints the number) lists are formatted item by item.
    Both are ``course.student_notebook.glue_text``, which the student notebooks use too."""
    from myst_nb.ext.glue import roles

    from course.student_notebook import glue_text

    original = roles.format_plain_text
    if getattr(original, "readable", False):
        return

    def format_for_reading(text, fmt_spec):
        return glue_text(text, fmt_spec)

    format_for_reading.readable = True
    roles.format_plain_text = format_for_reading


def hide_build_code(app: Sphinx, doctree) -> None:
    """The site's code cells without the build's plumbing (the ``from myst_nb import glue`` block and the
    ``glue(...)`` calls), which readers would otherwise read and copy; the kernel ran them all the same."""
    from docutils import nodes

    from course.student_notebook import strip_build_code

    for container in list(doctree.findall(nodes.container)):
        if "cell_input" not in container.get("classes", []):
            continue
        for block in list(container.findall(nodes.literal_block)):
            source = block.astext()
            if "glue" not in source:
                continue
            try:
                stripped = strip_build_code(source)
            except (SyntaxError, ValueError):
                continue  # not plain Python, or glue used another way: shown as written
            if not stripped.strip():
                container.parent.remove(container)
                break
            block.children = [nodes.Text(stripped)]
            block.rawsource = stripped


def setup(app: Sphinx):
    merge_only_adjacent_streams()
    readable_glued_text()
    app.connect("doctree-read", hide_build_code)
    app.add_config_value("course_site_url", "", "html")
    app.connect("build-finished", zip_notebooks)
    app.connect("config-inited", check_launch_config)
    # Before sphinx-book-theme builds its header buttons (priority 501).
    app.connect("html-page-context", offer_notebook_download, priority=500)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
