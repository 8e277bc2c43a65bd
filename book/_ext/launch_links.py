"""Sphinx extension: launch buttons only where they lead somewhere, and an .ipynb download always.

* sphinx-book-theme copies a chapter's executed notebook into ``_sources/`` (the ".ipynb"
  download button) only when some launch service is configured. Here every chapter gets its
  download, configured or not (``offer_notebook_download``).
* Launch buttons appear only for the services given a URL in ``_config.yml``
  (``launch_buttons``), and then only with ``repository.url`` naming the repository that holds
  the book: a service without a repository, or a placeholder address, stops the build with a
  message that says what to set (``check_launch_config``).
* Binder, Colab and JupyterHub open ``book/NN-*.ipynb``, the notebook paired with each chapter
  (the theme uses a chapter's ``.ipynb`` twin when one exists next to its ``.md``); ``make
  notebooks`` writes them from the chapters with jupytext.
"""
from __future__ import annotations

import shutil
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
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(executed, target)
    context["ipynb_source"] = f"{pagename}.ipynb"


def setup(app: Sphinx):
    app.connect("config-inited", check_launch_config)
    # Before sphinx-book-theme builds its header buttons (priority 501).
    app.connect("html-page-context", offer_notebook_download, priority=500)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
