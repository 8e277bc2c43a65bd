"""Sphinx extension: a site that works with no internet.

* MathJax 3 is served from the build (``_static/mathjax``) instead of a CDN.  It
  comes from the pinned PyPI package ``django-static-mathjax`` (a verbatim copy
  of the MathJax release, fonts included), so nothing is committed and nothing
  is fetched at build time beyond ``pip install``.
* sphinx-thebe's loader, which would fetch thebe from unpkg.com, and its
  per-page configuration are left off the pages unless thebe launch buttons
  are switched on in ``_config.yml``.

* Chapters executed from the jupyter-cache keep their outputs in
  ``_build/jupyter_execute/*.ipynb``, the notebooks behind each chapter's
  ".ipynb" download button (see ``keep_cached_outputs``).

Enabled in ``_config.yml`` (``sphinx.local_extensions``); ``mathjax_path`` there
points at ``mathjax/<MATHJAX_BUNDLE>``.
"""
from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

# The combined component the site loads: TeX input, CommonHTML output, menu, fonts by URL.
MATHJAX_BUNDLE = "tex-mml-chtml.js"
# Combined bundles the site does not load, and latest.js, whose whole job is to
# fetch "the latest MathJax" from a CDN.  Everything else in es5/ is kept: the
# components that the bundle loads on demand (TeX extensions, fonts, the
# accessibility explorer and its speech rules, the SVG renderer of the menu).
SKIPPED = {
    "latest.js", "node-main.js", "tex-chtml.js", "tex-chtml-full.js", "tex-chtml-full-speech.js",
    "tex-svg.js", "tex-svg-full.js", "tex-mml-svg.js", "mml-chtml.js", "mml-svg.js",
}


def mathjax_source() -> Path:
    """The ``es5`` folder of the installed MathJax release."""
    try:
        root = Path(str(resources.files("mathjax"))) / "static" / "mathjax"
    except ModuleNotFoundError as error:
        raise ExtensionError(
            "offline_site: MathJax is not installed; `make book` installs django-static-mathjax "
            "from requirements.lock"
        ) from error
    es5 = root / "es5"
    if not (es5 / MATHJAX_BUNDLE).is_file():
        raise ExtensionError(f"offline_site: {es5 / MATHJAX_BUNDLE} is missing")
    return es5


def _ignore(folder: str, names: list[str]) -> set[str]:
    if Path(folder).name == "es5":
        return {n for n in names if n in SKIPPED}
    return set()


def check_config(app: Sphinx, config) -> None:
    expected = f"mathjax/{MATHJAX_BUNDLE}"
    if config.mathjax_path != expected:
        raise ExtensionError(f"offline_site: set sphinx.config.mathjax_path to {expected!r} in _config.yml")
    mathjax_source()  # fail early, before hours of execution, when MathJax is missing


def copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / "mathjax"
    shutil.copytree(mathjax_source(), target, ignore=_ignore, dirs_exist_ok=True)
    logger.info("offline_site: MathJax copied to %s", target)


def thebe_enabled(app: Sphinx) -> bool:
    launch = (app.config.html_theme_options or {}).get("launch_buttons") or {}
    return bool(launch.get("thebe"))


def drop_thebe_loader(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Remove sphinx-thebe's scripts (a CDN URL) and stylesheet from the page."""
    if thebe_enabled(app):
        return
    def filename(asset) -> str:
        return str(getattr(asset, "filename", asset) or "").split("?")[0]

    scripts = context.get("script_files")
    if scripts is not None:
        context["script_files"] = [
            js for js in scripts
            if not filename(js).endswith("sphinx-thebe.js")
            and "THEBE_JS_URL" not in (getattr(js, "attributes", None) or {}).get("body", "")
        ]
    styles = context.get("css_files")
    if styles is not None:
        context["css_files"] = [css for css in styles if not filename(css).endswith("sphinx-thebe.css")]


def keep_cached_outputs() -> None:
    """Make myst-nb write the *executed* notebook when it takes a chapter from the cache.

    myst-nb 1.4 writes ``jupyter_execute/<doc>.ipynb`` from the notebook object it parsed. On a
    fresh execution that object receives the outputs in place, but on a cache hit the cache client
    swaps in a merged copy and the written notebook has no outputs (nor execution counts). Every
    re-read of an unchanged chapter (e.g. after a change to _config.yml) then published an empty
    notebook as the chapter's .ipynb download. Here the merged notebook is copied into the parsed
    object, so both paths write the same executed notebook.
    """
    from myst_nb.core.execute.cache import NotebookClientCache

    start_client = NotebookClientCache.start_client
    if getattr(start_client, "keeps_cached_outputs", False):
        return

    def start_client_keeping_outputs(self):
        parsed = self._notebook
        start_client(self)
        merged = self._notebook
        if merged is not parsed:
            parsed.clear()
            parsed.update(merged)
            self._notebook = parsed

    start_client_keeping_outputs.keeps_cached_outputs = True
    NotebookClientCache.start_client = start_client_keeping_outputs


def drop_thebe_config(app: Sphinx, doctree, docname) -> None:
    """Remove sphinx-thebe's per-page configuration (a Binder repository it would launch)."""
    if thebe_enabled(app):
        return
    for node in list(doctree.findall(nodes.raw)):
        text = node.astext()
        if "text/x-thebe-config" in text or "kernelName = " in text:
            node.parent.remove(node)


def setup(app: Sphinx):
    keep_cached_outputs()
    app.connect("doctree-resolved", drop_thebe_config, priority=900)
    app.connect("config-inited", check_config)
    # After sphinx-thebe and the themes have filled in the page's assets.
    app.connect("html-page-context", drop_thebe_loader, priority=900)
    app.connect("build-finished", copy_mathjax)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
