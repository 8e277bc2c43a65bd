"""The site as students use it.

Static checks read ``_build/html``: launch buttons, notebook downloads, assignment links, headings, no CDN
assets, and no leak of solutions, hidden checks or their reference values.

Browser checks (marker ``browser``) serve ``_build/html`` on a loopback http.server and drive Debian's
chromium, headless, through Playwright: every page loads with no console error and no request to another
host, math is typeset, figures are shown, the interactive figures compute the right numbers as their
sliders move, assignments download byte for byte, search finds words, and a screenshot is kept under
``_build/screenshots/``.
"""
import contextlib
import functools
import html
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import types
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
from chapter_links import CHAPTER_LINK  # noqa: E402


# --------------------------------------------------------------------------- the book's structure


def toc_docs(root):
    """Every document of the book, in reading order (root first)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    docs = [toc["root"]]

    def walk(entries):
        for entry in entries:
            docs.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc["parts"]:
        walk(part["chapters"])
    return docs


def site_pages(root):
    """Every page a reader can open: the book's documents, the search page and the index."""
    return toc_docs(root) + ["search", "genindex"]


def chapters(root):
    return [doc for doc in toc_docs(root) if re.fullmatch(r"book/\d\d-[\w-]+", doc)]


def assignments(root):
    """{assignment id: released notebook}: one .ipynb per folder of assignments/."""
    found = {}
    for folder in sorted(p for p in (root / "assignments").iterdir() if p.is_dir()):
        notebooks = sorted(folder.glob("*.ipynb"))
        assert len(notebooks) == 1, f"{folder} should hold exactly one released notebook, found {notebooks}"
        found[folder.name] = notebooks[0]
    assert found, "assignments/ is empty: `make book` releases the assignments"
    return found


def practised_chapters(notebook):
    """The chapters an assignment's intro cell links, e.g. [Softmax and temperature](../../book/05-softmax.md)."""
    intro = "".join(json.loads(notebook.read_text())["cells"][0]["source"])
    return [f"book/{stem}" for _, _, stem in CHAPTER_LINK.findall(intro)]


class Page(HTMLParser):
    """Links, headings of the article, and images of one built page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links, self.scripts, self.stylesheets, self.images, self.headings = [], [], [], [], []
        self._article_depth = 0

    @classmethod
    def read(cls, path):
        page = cls()
        page.feed(path.read_text(encoding="utf-8"))
        return page

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "article" and "bd-article" in (attrs.get("class") or ""):
            self._article_depth = 1
        elif self._article_depth and tag == "article":
            self._article_depth += 1
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs)
        if tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])
        if tag == "link" and "stylesheet" in (attrs.get("rel") or "") and attrs.get("href"):
            self.stylesheets.append(attrs["href"])
        if tag == "img":
            self.images.append(attrs)
        if self._article_depth and re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))

    def handle_endtag(self, tag):
        if tag == "article" and self._article_depth:
            self._article_depth -= 1

    def hrefs(self):
        return [link["href"] for link in self.links]


def html_path(built_site, doc):
    return built_site / "html" / f"{doc}.html"


def is_external(url):
    return urlsplit(url).scheme in ("http", "https", "ws", "wss", "ftp")


# --------------------------------------------------------------------------- static checks


def test_pages_load_nothing_from_other_hosts(root, built_site):
    """Scripts and stylesheets are all served by the site itself (MathJax included)."""
    for doc in site_pages(root):
        page = Page.read(html_path(built_site, doc))
        external = [u for u in page.scripts + page.stylesheets if is_external(u) or u.startswith("//")]
        assert not external, f"{doc}.html loads {external} from another host"
    mathjax = built_site / "html" / "_static" / "mathjax"
    assert (mathjax / "tex-mml-chtml.js").is_file(), "MathJax is not vendored into _static/mathjax"
    assert list((mathjax / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff")), "MathJax fonts missing"
    for css in (built_site / "html" / "_static").rglob("*.css"):
        text = css.read_text(encoding="utf-8", errors="replace")
        assert not re.search(r"@import\s+(url\()?['\"]?(https?:)?//", text), f"{css} imports a remote stylesheet"
        assert not re.search(r"url\(\s*['\"]?(https?:)?//", text), f"{css} loads a remote resource"


LAUNCH_SERVICES = {"binderhub_url": "Binder", "colab_url": "Colab", "jupyterhub_url": "JupyterHub"}


def launch_config(root):
    config = yaml.safe_load((root / "_config.yml").read_text())
    return config.get("repository") or {}, config.get("launch_buttons") or {}


def launch_links(hrefs, launch):
    """{service: [links]} of the configured launch services found among a page's links."""
    found = {}
    for key, name in LAUNCH_SERVICES.items():
        base = str(launch.get(key) or "").strip().rstrip("/")
        if base:
            found[name] = [h for h in hrefs if h.startswith(base + "/")]
    return found


def launched_path(service, link):
    """The repository path a launch link opens."""
    parts = urlsplit(link)
    if service == "Colab":  # .../github/ORG/REPO/blob/BRANCH/PATH
        return parts.path.split("/blob/", 1)[1].split("/", 1)[1]
    query = dict(pair.split("=", 1) for pair in parts.query.split("&"))
    if service == "Binder":  # ...?urlpath=tree/PATH
        return query["urlpath"].split("/", 1)[1]
    return unquote(query["urlpath"]).split("/", 2)[2]  # JupyterHub: urlpath=tree/REPO/PATH


def assert_launch_links_open_files_in_the_repository(root, page_html, repository, launch, doc):
    hrefs = [html.unescape(h) for h in Page.read(page_html).hrefs()]
    links = launch_links(hrefs, launch)
    for service, found in links.items():
        assert found, f"{doc}: no {service} button, though launch_buttons configures it"
        for link in found:
            path = launched_path(service, link)
            assert path == f"{doc}.ipynb", f"{doc}: {service} opens {path}, not the chapter's paired notebook"
            assert (root / path).is_file(), f"{doc}: {service} opens {path}, which is not in the repository"
            if service in ("Binder", "Colab"):
                assert f"/{repository.get('branch', 'main')}" in link, link
    return links


@pytest.mark.parametrize("doc", chapters(ROOT))
def test_chapter_offers_its_notebook_and_launch_buttons_only_where_configured(root, built_site, doc):
    """The .ipynb download is always there; a launch button only for a service given a URL (none by default)."""
    repository, launch = launch_config(root)
    hrefs = [html.unescape(h) for h in Page.read(html_path(built_site, doc)).hrefs()]
    links = assert_launch_links_open_files_in_the_repository(root, html_path(built_site, doc), repository, launch, doc)
    unconfigured = [h for h in hrefs if re.search(r"mybinder|colab\.research|/hub/user-redirect|example\.(org|com)", h)]
    assert len(unconfigured) == sum(map(len, links.values())), f"{doc}: launch links nobody configured: {unconfigured}"

    notebooks = [h for h in hrefs if h.endswith(".ipynb") and "_sources/" in h]
    assert notebooks, f"{doc}: no .ipynb download button"
    notebook = (html_path(built_site, doc).parent / notebooks[0]).resolve()
    assert notebook.is_file(), f"{doc}: the .ipynb download {notebooks[0]} is missing"
    cells = json.loads(notebook.read_text())["cells"]
    assert any(c["cell_type"] == "code" and c.get("outputs") for c in cells), f"{notebook} has no outputs"


def solution_lines(root, doc):
    """A distinctive line of every solution of a chapter (its first plain line of prose or code)."""
    text = (root / f"{doc}.md").read_text(encoding="utf-8")
    found = []
    for body in re.findall(r"^:::\{solution\}[^\n]*\n(.*?)^:::\s*$", text, re.S | re.M):
        lines = [line.strip() for line in body.splitlines()
                 if len(line.strip()) > 24 and not re.search(r"[{}`$:\\]|^\W", line.strip())]
        if lines:
            found.append(lines[0])
    return found


def assert_reads_as_a_notebook(root, built_site, doc, notebook, where):
    """The checks of issue 25 on one chapter notebook, opened as JSON."""
    from course.student_notebook import site_url

    base = site_url(root)
    cells = notebook["cells"]
    text = lambda cell: cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])  # noqa: E731
    markdown = [text(c) for c in cells if c["cell_type"] == "markdown"]
    code = [text(c) for c in cells if c["cell_type"] == "code"]
    everything = "\n".join(markdown)
    roles = re.findall(r"\{[a-z][\w:-]*\}`[^`]*`", everything)
    assert not roles, f"{where}: MyST roles left: {roles[:5]}"
    fences = re.findall(r"^(?::::+|```)\{[\w-]+\}.*$", everything, re.M)
    assert not fences, f"{where}: MyST directives left: {fences[:5]}"
    assert "<figure" not in everything and "<svg" not in everything, f"{where}: raw HTML figure left"
    plumbing = [c for c in code if "myst_nb" in c or re.search(r"\bglue\(", c)]
    assert not plumbing, f"{where}: build plumbing in code cells: {plumbing[0][:300]}"
    # Every glued number is written in, as the site shows it (myst-nb's own rendering, a "pasted-text" span).
    straight = str.maketrans("\u2018\u2019\u201c\u201d", "''\"\"")  # the site's smart quotes (Sphinx's smartquotes)
    shown = [html.unescape(value).translate(straight) for value in
             re.findall(r'<span class="pasted-text">([^<]*)</span>', html_path(built_site, doc).read_text(encoding="utf-8"))]
    missing = [value for value in shown if value not in everything]
    assert not missing, f"{where}: glued values the site shows are not in the text: {missing[:5]}"
    source = (root / f"{doc}.md").read_text(encoding="utf-8")
    assert "{glue:text}" not in everything
    # Solutions: none before the "Solutions" heading, every one after it.
    headings = [i for i, c in enumerate(markdown) if c.startswith("## Solutions")]
    solutions = solution_lines(root, doc)
    if solutions:
        assert len(headings) == 1, f"{where}: no single '## Solutions' section"
        before, after = "\n".join(markdown[:headings[0]]), "\n".join(markdown[headings[0]:])
        for line in solutions:
            assert line not in before, f"{where}: solution text before the end: {line!r}"
            assert line in after, f"{where}: a solution is missing from the end: {line!r}"
        assert headings[0] == len(markdown) - source.count(":::{solution}") - 1
    # Links to the site: absolute, on the configured site, to pages the build has.
    links = re.findall(r"\]\((https?://[^)\s]+)\)", everything)
    for link in links:
        if link.startswith(base):
            page = link[len(base):].split("#")[0]
            assert (built_site / "html" / page).is_file(), f"{where}: {link} is not a page of the site"
    if "{doc}`" in source:
        assert any(link.startswith(base) for link in links), f"{where}: no cross-reference became a link"
    if "{raw} html" in source:
        assert any(link.startswith(f"{base}{doc}.html#") for link in links), f"{where}: no link to its figure"
    return everything


@pytest.mark.parametrize("doc", chapters(ROOT))
def test_downloaded_chapter_notebook_reads_as_a_notebook(root, built_site, doc):
    """The .ipynb a chapter offers: numbers written in, links to the site, solutions at the end, no plumbing;
    its code cells keep their outputs, one box per cell's stream (no glue output between prints)."""
    path = built_site / "html" / "_sources" / f"{doc}.ipynb"
    notebook = json.loads(path.read_text())
    everything = assert_reads_as_a_notebook(root, built_site, doc, notebook, path.name)
    from course.student_notebook import GLUE_ROLE, glue_text, glued_values_of

    values = glued_values_of(doc, built_site)
    for name, spec in GLUE_ROLE.findall((root / f"{doc}.md").read_text()):
        shown = glue_text(values[name], spec or None)
        assert shown in everything, f"{path.name}: the glued {name} ({shown!r}) is not written in"
    for cell in notebook["cells"]:
        outputs = cell.get("outputs", [])
        assert not any("scrapbook" in o.get("metadata", {}) for o in outputs), f"{path.name}: a glue output is left"
        kinds = [(o["output_type"], o.get("name")) for o in outputs]
        assert all(a != b or a[0] != "stream" for a, b in zip(kinds, kinds[1:])), f"{path.name}: a split output"
    assert any(c["cell_type"] == "code" and c.get("outputs") for c in notebook["cells"]), f"{path.name}: no outputs"


@pytest.mark.parametrize("doc", chapters(ROOT))
def test_paired_notebooks_are_the_student_notebooks_of_their_chapters(root, built_site, doc):
    """book/NN-*.ipynb (what Colab and Binder open) is what `make notebooks` writes from the chapter and the
    build's numbers, without outputs, and reads as a notebook."""
    from course.student_notebook import paired_notebook

    paired = root / f"{doc}.ipynb"
    assert paired.is_file(), f"{paired.relative_to(root)} is missing: run `make notebooks` and commit it"
    committed = json.loads(paired.read_text())
    expected = json.loads(json.dumps(paired_notebook(doc, root, built_site)))
    as_text = lambda source: source if isinstance(source, str) else "".join(source)  # noqa: E731
    want = [(c["cell_type"], as_text(c["source"])) for c in expected["cells"]]
    have = [(c["cell_type"], as_text(c["source"])) for c in committed["cells"]]
    assert have == want, f"{paired.relative_to(root)} differs from {doc}.md: run `make notebooks` and commit it"
    assert not any(c.get("outputs") for c in committed["cells"]), f"{paired.relative_to(root)} has outputs"
    assert_reads_as_a_notebook(root, built_site, doc, committed, paired.name)


def test_the_notebook_check_catches_myst_left_in_a_notebook(root, built_site):
    """The check above fails on a notebook with a role, a placeholder, plumbing or a solution left in place."""
    doc = "book/05-softmax"
    good = json.loads((root / f"{doc}.ipynb").read_text())
    for planted in ("See {doc}`04-bayes`.", "About {glue:text}`doubling_temperature`.",
                    ":::{solution} x\nText\n:::", "```{raw} html\n<figure></figure>\n```"):
        bad = json.loads(json.dumps(good))
        bad["cells"].insert(1, {"cell_type": "markdown", "metadata": {}, "source": planted})
        with pytest.raises(AssertionError):
            assert_reads_as_a_notebook(root, built_site, doc, bad, "planted")
    bad = json.loads(json.dumps(good))
    bad["cells"].insert(1, {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                            "source": "from myst_nb import glue"})
    with pytest.raises(AssertionError):
        assert_reads_as_a_notebook(root, built_site, doc, bad, "planted")
    bad = json.loads(json.dumps(good))
    heading = next(i for i, c in enumerate(bad["cells"]) if "".join(c["source"]).startswith("## Solutions"))
    bad["cells"].insert(2, bad["cells"][heading + 1])
    with pytest.raises(AssertionError):
        assert_reads_as_a_notebook(root, built_site, doc, bad, "planted")


def imported_modules(root):
    """Top-level modules the chapters and the released assignments import (the standard library left out)."""
    import ast

    import jupytext

    sources = [c.source for p in sorted((root / "book").glob("[0-9][0-9]-*.md")) for c in jupytext.read(p).cells
               if c.cell_type == "code"]
    sources += [c["source"] if isinstance(c["source"], str) else "".join(c["source"])
                for nb in assignments(root).values() for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
    modules = set()
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:  # a cell with IPython magics
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"myst_nb"}  # myst_nb: the build's, behind an ImportError guard


# Import name -> the name pip installs it under.
DISTRIBUTIONS = {"numpy": "numpy", "scipy": "scipy", "matplotlib": "matplotlib", "torch": "torch", "names": "names"}


def test_setup_page_lists_every_module_the_notebooks_import(root, built_site):
    """The set-up page offers a requirements file that pins every package the chapters and assignments import,
    at the version the course is built with, and says which Python and how to open a notebook."""
    modules = imported_modules(root)
    assert {"numpy", "torch", "scipy", "matplotlib", "names"} <= modules, modules
    unknown = modules - set(DISTRIBUTIONS)
    assert not unknown, f"the notebooks import {unknown}: add them to book/requirements.txt and DISTRIBUTIONS"
    requirements = dict(line.split("==") for line in (root / "book/requirements.txt").read_text().splitlines()
                        if line and not line.startswith("#"))
    lock = dict(line.split("==") for line in (root / "requirements.lock").read_text().splitlines() if "==" in line)
    for module in modules:
        name = DISTRIBUTIONS[module]
        assert name in requirements, f"book/requirements.txt does not list {name} (imported as {module})"
        assert requirements[name] == lock[name], f"{name}: {requirements[name]} in book/requirements.txt, {lock[name]} in the lock"
    assert "jupyterlab" in requirements
    page = (built_site / "html" / "book" / "setup.html").read_text()
    hrefs = Page.read(built_site / "html" / "book" / "setup.html").hrefs()
    download = [h for h in hrefs if h.endswith("requirements.txt")]
    assert download and (built_site / "html" / "book" / download[0]).resolve().read_bytes() == \
        (root / "book/requirements.txt").read_bytes()
    for words in ("Python 3.11", "pip install -r requirements.txt", "jupyter lab", "Colab"):
        assert words in html.unescape(re.sub(r"<[^>]+>", "", page)), f"the set-up page does not say {words!r}"
    assert "book/setup" in toc_docs(root)


@pytest.mark.parametrize("doc", chapters(ROOT))
def test_site_code_cells_show_no_build_plumbing(root, built_site, doc):
    """A chapter page's code (what readers read and the copy button copies) has no glue() call and no myst_nb
    import; the chapter's source has them, the kernel ran them."""
    text = html.unescape(re.sub(r"<[^>]+>", "", html_path(built_site, doc).read_text(encoding="utf-8")))
    source = (root / f"{doc}.md").read_text(encoding="utf-8")
    assert "glue(" in source
    assert not re.search(r"\bglue\(", text), f"{doc}: a glue() call is shown"
    assert "myst_nb" not in text, f"{doc}: the myst_nb import is shown"


def significant_digits(number: str) -> int:
    mantissa = number.lstrip("-+").split("e")[0].split("E")[0].replace(".", "").lstrip("0")
    return len(mantissa)


def test_glued_numbers_are_formatted_for_reading(root, built_site):
    """Every number glued into the prose of a chapter (span.pasted-text) has at most 6 significant digits and
    no glued value is Python's True or False; the student notebooks say the same words."""
    from course.student_notebook import glue_text

    assert glue_text("8.881784197001252e-16") == "8.88e-16" and glue_text("True") == "yes"  # the planted cases
    seen = 0
    for doc in chapters(root):
        page = html_path(built_site, doc).read_text(encoding="utf-8")
        for text in re.findall(r'<span class="pasted-text">(.*?)</span>', page, re.S):
            text = html.unescape(text)
            seen += 1
            assert text not in ("True", "False"), f"{doc}: a bare boolean in the prose: {text!r}"
            assert not re.search(r"\b(True|False)\b", text), f"{doc}: {text!r}"
            for number in re.findall(r"-?\d[\d.]*(?:e[-+]?\d+)?", text):
                assert significant_digits(number) <= 6, f"{doc}: {number} in the prose has more than 6 significant digits"
    assert seen > 100, f"only {seen} glued values found"


class ProseAndOutputs(HTMLParser):
    """A chapter page's glued numbers in the prose (``span.pasted-text``) and the text its code cells print
    (``div.cell_output``: streams, tables, reprs)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.pasted, self.outputs = [], []
        self._divs, self._output_at, self._in_pasted = 0, None, False

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if tag == "div":
            self._divs += 1
            if self._output_at is None and "cell_output" in classes:
                self._output_at = self._divs
        elif tag == "span" and "pasted-text" in classes:
            self._in_pasted = True
            self.pasted.append("")

    def handle_endtag(self, tag):
        if tag == "div":
            if self._output_at == self._divs:
                self._output_at = None
                self.outputs.append("\n")
            self._divs -= 1
        elif tag == "span":
            self._in_pasted = False

    def handle_data(self, data):
        if self._in_pasted:
            self.pasted[-1] += data
        if self._output_at is not None:
            self.outputs.append(data)


STRAIGHT_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
DECIMAL = re.compile(r"(?<![\w.])-?\d+\.\d+(?![\w.])")  # 0.194, -3.5; not 1e-5, 6.9e-05, 1.2.3


def dropped_trailing_zeros(prose_texts, printed):
    """Numbers in the prose that the chapter's printed output shows with trailing zeros the prose drops
    (prose 0.194, table 0.1940): (the glued text, its number, the printed number)."""
    printed_numbers = set(DECIMAL.findall(printed))
    found = []
    for text in prose_texts:
        for number in DECIMAL.findall(text):
            for shown in printed_numbers:
                if shown != number and shown.startswith(number) and set(shown[len(number):]) == {"0"}:
                    found.append((text, number, shown))
    return found


def test_the_trailing_zeros_check_catches_a_dropped_zero():
    assert dropped_trailing_zeros(["[0.5017, 0.3043, 0.194]"], "2.0 |  0.5017  0.3043   0.1940 | 1.6487") \
        == [("[0.5017, 0.3043, 0.194]", "0.194", "0.1940")]
    assert dropped_trailing_zeros(["2.382"], "test: network NLL 2.3820   count model 2.3732")
    # the same number as printed, another number, a number in scientific notation, an integer: no finding
    assert not dropped_trailing_zeros(["0.1940", "0.19", "6.9", "3"], "0.1940 0.1900001 6.90000e-05 3.000 0.19 0.4")


def test_glued_numbers_show_the_decimals_of_the_chapters_own_tables(root, built_site):
    """A number glued into a chapter's prose is printed as the chapter's own output prints it: never 0.194 in the
    text beside 0.1940 in the table above it (``{glue:text}`name:.4f``` formats it as the table does). The
    chapter's notebook (the .ipynb download, course/student_notebook.py) writes every glued text as the site
    shows it."""
    problems, seen = [], 0
    for doc in chapters(root):
        page = ProseAndOutputs()
        page.feed(html_path(built_site, doc).read_text(encoding="utf-8"))
        seen += len(page.pasted)
        problems += [f"{doc}: the prose says {number} ({text!r}), the output prints {shown}"
                     for text, number, shown in dropped_trailing_zeros(page.pasted, "".join(page.outputs))]
        notebook = json.loads((built_site / "html" / "_sources" / f"{doc}.ipynb").read_text(encoding="utf-8"))
        markdown = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown")
        plain = lambda text: " ".join(text.translate(STRAIGHT_QUOTES).split())  # noqa: E731 (Sphinx's smart quotes)
        problems += [f"{doc}.ipynb does not show the site's {text!r}" for text in page.pasted
                     if plain(text) not in plain(markdown)]
    assert seen > 100, f"only {seen} glued values found"
    assert not problems, f"{len(problems)} places:\n" + "\n".join(problems)


def jupyter_book(root, config, toc, out):
    """Build the chapters with another _config.yml, without executing them, into out/_build."""
    out.mkdir(parents=True, exist_ok=True)
    config_file, toc_file = out / "_config.yml", out / "_toc.yml"
    config_file.write_text(yaml.safe_dump(config))
    toc_file.write_text(yaml.safe_dump(toc))
    command = [
        str(Path(sys.executable).with_name("jupyter-book")), "build", str(root), "--builder", "html",
        "--config", str(config_file), "--toc", str(toc_file), "--path-output", str(out),
    ]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_configured_launch_buttons_open_notebooks_that_exist_in_the_repository(root, tmp_path):
    """With a repository and all three services configured, every chapter's launch links open its paired
    notebook, at that path in the repository; a placeholder address stops the build with a clear message."""
    config = yaml.safe_load((root / "_config.yml").read_text())
    config["repository"]["url"] = "https://github.com/some-university/prob2loss"
    config["launch_buttons"].update(
        binderhub_url="https://mybinder.org", colab_url="https://colab.research.google.com",
        jupyterhub_url="https://hub.some-university.edu",
    )
    config["execute"]["execute_notebooks"] = "off"  # the links are what is checked, not the outputs
    extensions = config["sphinx"]["local_extensions"]  # relative to the config file, which moves
    config["sphinx"]["local_extensions"] = {name: str(root / path) for name, path in extensions.items()}
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    toc["parts"] = toc["parts"][:1]  # the chapters
    result = jupyter_book(root, config, toc, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for doc in chapters(root):
        links = assert_launch_links_open_files_in_the_repository(
            root, tmp_path / "_build" / "html" / f"{doc}.html", config["repository"], config["launch_buttons"], doc
        )
        assert set(links) == {"Binder", "Colab", "JupyterHub"}, links

    config["launch_buttons"]["jupyterhub_url"] = "https://jupyterhub.example.org"
    result = jupyter_book(root, config, toc, tmp_path / "placeholder")
    assert result.returncode != 0
    assert "launch_buttons.jupyterhub_url" in result.stdout + result.stderr, result.stdout[-2000:]


def test_a_configured_site_url_reaches_the_assignments_and_the_chapter_notebooks(root, built_site, tmp_path):
    """An instructor who publishes the site elsewhere sets course_site_url in _config.yml: `nbgrader
    generate_assignment` (what `course release` runs) links the released notebook's chapters there, and the chapter
    notebooks (the site's .ipynb download, `make notebooks`) link their cross-references and interactive figures
    there; nothing links the default address. Unset, both use the default."""
    sys.path.insert(0, str(root / "book" / "_ext"))
    try:
        import launch_links
    finally:
        sys.path.remove(str(root / "book" / "_ext"))
    from course.student_notebook import DEFAULT_SITE_URL, glued_values_of, paired_notebook, site_url, student_notebook

    configured = "https://courses.some-university.edu/prob2loss"  # no trailing slash: one is added
    course = tmp_path / "course"
    (course / "solutions").mkdir(parents=True)
    shutil.copytree(root / "solutions" / "a1-distributions", course / "solutions" / "a1-distributions")
    shutil.copy2(root / "nbgrader_config.py", course / "nbgrader_config.py")
    config = yaml.safe_load((root / "_config.yml").read_text())
    assert not config["sphinx"]["config"]["course_site_url"] and site_url(root) == DEFAULT_SITE_URL
    config["sphinx"]["config"]["course_site_url"] = configured
    (course / "_config.yml").write_text(yaml.safe_dump(config))
    shutil.copytree(root / "book", course / "book", ignore=shutil.ignore_patterns("*.ipynb", "_*"))
    assert site_url(course) == configured + "/"

    bin_dir = Path(sys.executable).parent
    result = subprocess.run([str(bin_dir / "nbgrader"), "generate_assignment", "a1-distributions", "--force",
                             "--log-level=ERROR"], cwd=course, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    released = (course / "assignments" / "a1-distributions").glob("*.ipynb")
    text = "\n".join("".join(c["source"]) for path in released for c in json.loads(path.read_text())["cells"])
    links = [target for _, target, _ in CHAPTER_LINK.findall(text)]
    assert links and all(link.startswith(f"{configured}/book/") for link in links), links
    assert DEFAULT_SITE_URL not in text

    doc = "book/05-softmax"  # cross-references and an interactive figure
    executed = json.loads((built_site / "jupyter_execute" / f"{doc}.ipynb").read_text())
    download_base = launch_links.site_url(types.SimpleNamespace(course_site_url=configured))  # the site's build
    for notebook in (paired_notebook(doc, course, built_site),  # make notebooks
                     student_notebook(executed, doc, glued_values_of(doc, built_site), course, base=download_base)):
        markdown = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown")
        links = re.findall(r"\]\((https?://[^)\s]+)\)", markdown)
        assert any(link.startswith(f"{configured}/{doc}.html#") for link in links), links
        assert any(link.startswith(f"{configured}/book/") and doc not in link for link in links), links
        assert DEFAULT_SITE_URL not in markdown
    assert launch_links.site_url(types.SimpleNamespace(course_site_url="")) == DEFAULT_SITE_URL


def test_every_assignment_page_links_only_its_released_notebook(root, built_site):
    released = assignments(root)
    for assignment, notebook in released.items():
        path = html_path(built_site, f"book/assignments/{assignment}")
        assert path.is_file(), f"no assignment page for {assignment}: add book/assignments/{assignment}.md to _toc.yml"
        page = Page.read(path)
        downloads = [h for h in page.hrefs() if "_downloads/" in h]
        assert downloads, f"{assignment}: its page has no download link"
        for href in downloads:
            target = (path.parent / href).resolve()
            assert target.read_bytes() == notebook.read_bytes(), f"{assignment}: {href} is not {notebook}"
        text = path.read_text(encoding="utf-8")
        for word in ("Jupyter", "visible checks", "Submit"):
            assert word in text, f"{assignment}: the page does not explain '{word}'"


def test_every_download_on_the_site_is_a_released_notebook(root, built_site):
    """Every file in _downloads is a released notebook, the zip of one beside it (for file://), or the set-up
    page's requirements file."""
    import zipfile

    released = {nb.read_bytes(): nb for nb in assignments(root).values()}
    released[(root / "book" / "requirements.txt").read_bytes()] = root / "book" / "requirements.txt"
    downloads = [p for p in (built_site / "html" / "_downloads").rglob("*") if p.is_file()]
    assert downloads, "the site offers no assignment download"
    for path in downloads:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                assert archive.namelist() == [path.with_suffix(".ipynb").name], f"{path} holds {archive.namelist()}"
                assert archive.read(archive.namelist()[0]) == path.with_suffix(".ipynb").read_bytes(), path
            continue
        assert path.read_bytes() in released, f"{path} is not byte-identical to a notebook in assignments/"
    for path in (built_site / "html").rglob("*.html"):
        for href in Page.read(path).hrefs():
            assert not re.search(r"(^|/)(solutions|grader_tests)/", href), f"{path} links {href}"


def test_practised_chapters_link_their_assignments(root, built_site):
    pairs = 0
    for assignment, notebook in assignments(root).items():
        named = practised_chapters(notebook)
        assert named, f"{notebook}: the intro cell links no chapter ([title](../../book/NN-....md))"
        for chapter in named:
            hrefs = Page.read(html_path(built_site, chapter)).hrefs()
            assert any(h.split("#")[0].endswith(f"assignments/{assignment}.html") for h in hrefs), (
                f"{chapter} is practised by {assignment} but does not link book/assignments/{assignment}"
            )
            pairs += 1
    assert pairs >= 4


def test_headings_are_in_order_and_images_have_alt_text(root, built_site):
    for doc in toc_docs(root):
        page = Page.read(html_path(built_site, doc))
        levels = page.headings
        assert levels and levels[0] == 1 and levels.count(1) == 1, f"{doc}: one h1 first, found {levels}"
        for before, after in zip(levels, levels[1:]):
            assert after <= before + 1, f"{doc}: heading level jumps from h{before} to h{after}"
        for img in page.images:
            assert (img.get("alt") or "").strip(), f"{doc}: image {img.get('src')} has no alt text"


# --------------------------------------------------------------------------- leaks

WHITESPACE = re.compile(r"\s+")
FLOAT = re.compile(r"\d*\.\d+(?:[eE][-+]?\d+)?")
SOLUTION = ("### BEGIN SOLUTION", "### END SOLUTION")
HIDDEN = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
BINARY = {".png", ".jpg", ".jpeg", ".gif", ".ico", ".woff", ".woff2", ".ttf", ".eot", ".inv", ".pickle", ".doctree"}


def normalise(text):
    return WHITESPACE.sub(" ", text).strip()


def json_strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from json_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from json_strings(item)


class TextOnly(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts = []

    def handle_data(self, data):
        self.parts.append(data)


def readable_forms(path):
    """The file's text as stored, plus its visible text (HTML) or its decoded strings (JSON)."""
    if path.suffix.lower() in BINARY:
        return []
    raw = path.read_bytes()
    if b"\0" in raw[:4096]:
        return []
    text = raw.decode("utf-8", errors="replace")
    forms = [text]
    if path.suffix in (".html", ".htm", ".svg", ".xml"):
        parser = TextOnly()
        parser.feed(text)
        forms.append("".join(parser.parts))  # code highlighted into <span>s reads as plain lines here
    if path.suffix in (".ipynb", ".json"):
        try:
            forms.append("\n".join(json_strings(json.loads(text))))
        except ValueError:
            pass
    return forms


def published_text(folders):
    """All text a student can read in these folders, whitespace-normalised, as one string."""
    forms = []
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                forms.extend(readable_forms(path))
    return "\n".join(normalise(form) for form in forms)


def split_regions(source, markers):
    """(inside, outside) lines of the regions between the markers."""
    inside, outside, within = [], [], False
    for line in source.splitlines():
        if markers[0] in line:
            within = True
        elif markers[1] in line:
            within = False
        else:
            (inside if within else outside).append(line)
    return inside, outside


def secret_lines(root):
    """Lines of solution regions, hidden-test regions and grader_tests/ sources that must stay private.

    Trivial lines are ignored: blank lines, comments, lines shorter than 20 characters, and lines that
    the released notebooks show anyway (text of the source notebooks outside those regions, such as
    `def` signatures and docstrings). The public text comes from solutions/, not from assignments/, so
    a solution line that leaked into a released notebook is still caught.
    """
    secrets, public = [], []
    for notebook in sorted((root / "solutions").glob("*/*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            source = "".join(cell["source"])
            solution, rest = split_regions(source, SOLUTION)
            hidden, rest = split_regions("\n".join(rest), HIDDEN)
            public.extend(rest)
            secrets.extend((f"{notebook.relative_to(root)} (solution)", line) for line in solution + hidden)
    for path in sorted((root / "grader_tests").rglob("*")):
        if path.is_file() and path.suffix.lower() not in BINARY | {".json"} and "__pycache__" not in path.parts:
            secrets.extend((str(path.relative_to(root)), line) for line in path.read_text(errors="replace").splitlines())
    public_text = "\n".join(normalise(line) for line in public)

    def trivial(line):
        return len(line) < 20 or line.startswith("#") or line in public_text

    kept = {}
    for where, line in secrets:
        line = normalise(line)
        if not trivial(line):
            kept.setdefault(line, where)
    return kept




def reference_floats(root):
    """repr() of every float in grader_tests/references/*.json with at least 8 significant digits."""
    found = set()

    def walk(value):
        if isinstance(value, float) and math.isfinite(value):
            text = repr(abs(value))
            if significant_digits(text) >= 8:
                found.add(text)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for path in sorted((root / "grader_tests" / "references").glob("*.json")):
        walk(json.loads(path.read_text()))
    return found


def find_leaks(root, folders):
    text = published_text(folders)
    leaks = [f"{where}: {line!r}" for line, where in secret_lines(root).items() if line in text]
    numbers = set(FLOAT.findall(text))
    leaks += [f"grader_tests/references: {value}" for value in sorted(reference_floats(root) & numbers)]
    return leaks


def test_nothing_private_reaches_the_site_or_the_released_notebooks(root, built_site):
    assert secret_lines(root), "found no solution lines to look for: has solutions/ moved?"
    assert len(reference_floats(root)) > 100, "found no reference values to look for"
    leaks = find_leaks(root, [built_site / "html", root / "assignments"])
    assert not leaks, "private material is published:\n" + "\n".join(leaks[:20])


def test_the_leak_check_catches_a_planted_leak(root, tmp_path):
    """A solution line inside highlighted HTML, and a reference value in a notebook, are both found."""
    line, where = next(iter(secret_lines(root).items()))
    tokens = "".join(f'<span class="n">{html.escape(token)}</span>' for token in re.split(r"(\W)", line) if token)
    (tmp_path / "page.html").write_text(f"<html><body><pre>{tokens}</pre></body></html>")
    value = sorted(reference_floats(root))[0]
    (tmp_path / "nb.ipynb").write_text(json.dumps({"cells": [{"source": [f"x = {value}\n"]}]}))
    leaks = find_leaks(root, [tmp_path])
    assert any(repr(line) in leak for leak in leaks), leaks
    assert any(value in leak for leak in leaks), leaks


# --------------------------------------------------------------------------- browser


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(folder):
    """http.server on a free loopback port, serving folder; yields its URL."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def site_url(built_site):
    with serve(built_site / "html") as url:
        yield url


class Visit:
    """A browser tab on the served site that records everything that went wrong."""

    def __init__(self, browser, site_url):
        self.site = urlsplit(site_url).netloc
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        self.problems = []
        self.closed = False
        self.context.route(lambda url: not self.is_local(url), self.refuse)
        self.page = self.context.new_page()
        self.page.on("console", lambda msg: msg.type == "error" and self.problems.append(f"console error: {msg.text}"))
        self.page.on("pageerror", lambda error: self.problems.append(f"uncaught exception: {error}"))
        self.in_flight = {}
        self.page.on("request", self.started)
        self.page.on("requestfinished", self.ended)
        self.page.on("requestfailed", self.failed)
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))

    def is_local(self, url):
        parts = urlsplit(url)
        return parts.scheme not in ("http", "https", "ws", "wss") or parts.netloc == self.site

    def started(self, request):
        self.in_flight[id(request)] = request.url

    def ended(self, request):
        self.in_flight.pop(id(request), None)

    def failed(self, request):
        self.ended(request)
        self.problems.append(f"request failed: {request.url} ({request.failure})")

    def wait_until_quiet(self, quiet_s=0.3, timeout_s=20.0):
        """Wait until no request has been in flight for quiet_s (late fonts, lazy MathJax parts)."""
        deadline = time.monotonic() + timeout_s
        last_busy = time.monotonic()
        while True:
            now = time.monotonic()
            if self.in_flight:
                last_busy = now
            elif now - last_busy >= quiet_s:
                return
            if now > deadline:
                self.problems.append(f"requests still pending after {timeout_s:.0f} s: {sorted(self.in_flight.values())}")
                return
            self.page.wait_for_timeout(50)

    def refuse(self, route):
        self.problems.append(f"request to another host: {route.request.url}")
        route.abort()

    def open(self, url):
        self.page.goto(url, wait_until="load")
        return self.settle()

    def settle(self):
        self.page.wait_for_load_state("load")
        # MathJax typesets asynchronously after it loads; then its fonts load.
        self.page.evaluate(
            "() => (window.MathJax && MathJax.startup && MathJax.startup.promise) ? MathJax.startup.promise : null"
        )
        self.page.evaluate("() => document.fonts.ready.then(() => null)")
        self.wait_until_quiet()
        return self.page

    def close(self):
        if not self.closed:
            self.closed = True
            self.context.close()


@pytest.fixture()
def visit(browser, site_url):
    visits = []

    def open_page(path):
        tab = Visit(browser, site_url)
        visits.append(tab)
        tab.open(urljoin(site_url, path))
        return tab

    yield open_page
    for tab in visits:
        tab.close()


@contextlib.contextmanager
def planted_page(browser, folder, markup):
    """A page written for a test, open in the browser as the site's pages are."""
    (folder / "page.html").write_text(markup)
    with serve(folder) as url:
        tab = Visit(browser, url)
        try:
            tab.open(url + "page.html")
            yield tab
        finally:
            tab.close()


@pytest.mark.browser
def test_the_browser_check_catches_requests_to_other_hosts(browser, tmp_path):
    markup = ('<html><head><script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script>'
              '<link rel="stylesheet" href="https://unpkg.com/thebe@0.8.2/lib/index.css"></head>'
              '<body><script>console.error("broken")</script><img alt="x" src="missing.png"></body></html>')
    with planted_page(browser, tmp_path, markup) as tab:
        pass
    problems = "\n".join(tab.problems)
    assert "request to another host: https://cdn.jsdelivr.net/" in problems, problems
    assert "request to another host: https://unpkg.com/" in problems, problems
    assert "console error: broken" in problems and "HTTP 404" in problems, problems


PAGE_STATE = """() => {
  const article = document.querySelector('article.bd-article') || document.body;
  const images = [...article.querySelectorAll('img')];
  const math = [...article.querySelectorAll('.math')];
  return {
    images: images.map(img => ({src: img.getAttribute('src'), ok: img.complete && img.naturalWidth > 0,
                                 shown: img.getBoundingClientRect().width > 0})),
    math: math.length,
    typeset: math.filter(m => m.querySelector('mjx-container')).length,
    containers: document.querySelectorAll('mjx-container').length,
    errors: [...document.querySelectorAll('mjx-merror')].map(e => e.textContent),
    title: document.title,
  };
}"""


@pytest.mark.browser
def test_every_page_renders_offline_with_math_and_figures(root, visit, desktop_pages):
    tab = visit("book/index.html")
    tab.page.goto(tab.page.url.rsplit("/book/", 1)[0] + "/")  # the site's root redirects to the book
    tab.page.wait_for_url("**/book/index.html")
    tab.settle()
    assert not tab.problems, tab.problems
    checked_math = 0
    for doc, seen in desktop_pages.items():
        state = seen["state"]
        assert not seen["problems"], f"{doc}.html:\n" + "\n".join(seen["problems"])
        assert state["title"], f"{doc}.html has no title"
        for image in state["images"]:
            assert image["ok"] and image["shown"], f"{doc}.html: figure {image['src']} is not shown"
        if doc in chapters(root):
            assert state["images"], f"{doc}.html shows no figure"
        if state["math"]:
            assert state["typeset"] == state["math"], f"{doc}.html: {state['math'] - state['typeset']} formulas not typeset"
            assert not state["errors"], f"{doc}.html: MathJax errors {state['errors']}"
            checked_math += 1
    assert checked_math >= 10, f"only {checked_math} pages had typeset math"


# A code cell's output boxes, in order, as the reader sees them: one box per run of printed text (stdout, and
# stderr apart), a figure or a value between two runs. Two text boxes of the same stream side by side are one
# output split in two (a glue() call stood between two prints, issue 25).
SPLIT_OUTPUTS = """() => [...document.querySelectorAll('.bd-article .cell')].flatMap(cell => {
  const output = cell.querySelector(':scope > .cell_output');
  if (!output) return [];
  const boxes = [...output.children].filter(e => e.getBoundingClientRect().height > 0).map(e =>
    e.classList.contains('stream') ? 'stdout' : e.classList.contains('stderr') ? 'stderr' : e.tagName.toLowerCase());
  const split = boxes.some((box, i) => i > 0 && box === boxes[i - 1] && (box === 'stdout' || box === 'stderr'));
  if (!split) return [];
  const code = cell.querySelector('.cell_input pre');
  return [{boxes, code: code ? code.textContent.trim().split('\\n')[0] : '', text: output.textContent.trim().slice(0, 80)}];
})"""


@pytest.mark.browser
def test_each_code_cell_prints_into_one_box(desktop_pages):
    """No code cell on any page shows its printed text split into two boxes side by side (chapter 3's Xavier/He
    cell and chapter 6's coin cell were, where glue() calls stood between the prints); text printed after a
    figure is a box of its own, after the figure."""
    split = [f"{doc}: {cell['boxes']} in the cell starting {cell['code']!r} ({cell['text']!r})"
             for doc, seen in desktop_pages.items() for cell in seen["split_outputs"]]
    assert not split, "one output shown as several boxes:\n" + "\n".join(split)


@pytest.mark.browser
def test_the_split_output_check_catches_two_boxes_of_one_print(browser, tmp_path):
    box = '<div class="output stream highlight-myst-ansi"><div class="highlight"><pre>{}</pre></div></div>'
    markup = ('<html><body><article class="bd-article"><div class="cell"><div class="cell_input"><pre>print(1)</pre>'
              '</div><div class="cell_output">' + box.format("Xavier std = 0.0625") + box.format("He std = 0.0884")
              + '</div></div><div class="cell"><div class="cell_input"><pre>plot</pre></div><div class="cell_output">'
              + box.format("before") + '<img alt="a figure" width="10" height="10" src="data:image/gif;base64,'
              'R0lGODlhAQABAAAAACw=">' + box.format("after") + '</div></div></article></body></html>')
    with planted_page(browser, tmp_path, markup) as tab:
        split = tab.page.evaluate(SPLIT_OUTPUTS)
    assert [cell["boxes"] for cell in split] == [["stdout", "stdout"]], split


@pytest.mark.browser
def test_site_works_opened_from_its_folder(built_site, browser, site_url):
    """A student who copies _build/html to a laptop and opens index.html: file://, no server."""
    folder = (built_site / "html").resolve().as_uri() + "/"
    tab = Visit(browser, site_url)
    try:
        page = tab.page
        page.goto(folder + "index.html")
        page.wait_for_url("**/book/index.html")
        tab.settle()
        tab.open(folder + "book/05-softmax.html")
        state = page.evaluate(PAGE_STATE)
        assert state["math"] and state["typeset"] == state["math"], state
        page.get_by_label("temperature T", exact=True).fill("0.5")
        assert readouts(page, "[data-p2l-figure='softmax']", "probability") == ["0.8638", "0.1169", "0.0193"]
        tab.open(folder + "search.html?q=softmax")
        results = page.locator("#search-results ul.search li")
        results.first.wait_for(timeout=15_000)
        assert results.count() > 0
        assert not tab.problems, tab.problems
    finally:
        tab.close()


def assert_downloads_zip(page, link, tmp_path, notebook, page_name):
    """Clicking ``link`` downloads ``<notebook stem>.zip`` holding exactly ``notebook``, and the tab stays on
    ``page_name`` (a file:// page cannot download a bare .ipynb: the browser shows it instead)."""
    import zipfile

    with page.expect_download(timeout=15_000) as download:
        link.click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == f"{notebook.stem}.zip", saved.name
    with zipfile.ZipFile(saved) as archive:
        assert archive.read(notebook.name) == notebook.read_bytes()
    assert page.url.endswith(page_name), f"the tab left the page: {page.url}"


@pytest.mark.browser
def test_notebooks_download_from_the_folder(root, built_site, browser, site_url, tmp_path):
    """Opened from its folder (file://), the site saves notebooks instead of showing them as text: a chapter's
    download button and an assignment's link each save a .zip that holds the notebook the site serves."""
    folder = (built_site / "html").resolve().as_uri() + "/"
    tab = Visit(browser, site_url)
    try:
        page = tab.page
        tab.open(folder + "book/05-softmax.html")
        page.locator("button[aria-label='Download this page']:visible").click()
        assert_downloads_zip(page, page.locator("a.btn-download-notebook-button, a[href*='_sources/'][href$='.zip']").first,
                             tmp_path, built_site / "html/_sources/book/05-softmax.ipynb", "book/05-softmax.html")

        tab.open(folder + "book/assignments/a2-losses.html")
        assert_downloads_zip(page, page.locator("a[href*='_downloads/']").first, tmp_path,
                             root / "assignments/a2-losses/losses.ipynb", "a2-losses.html")
        # A link that downloads ends its navigation with ERR_ABORTED: that is the download, not a failure.
        problems = [p for p in tab.problems if not (p.endswith("(net::ERR_ABORTED)") and ".zip" in p)]
        assert not problems, problems
    finally:
        tab.close()


def softmax(logits, temperature):
    z = [v / temperature for v in logits]
    m = max(z)
    e = [math.exp(v - m) for v in z]
    return [v / sum(e) for v in e]


def readouts(page, figure, role):
    return page.locator(f"{figure} [data-role='{role}']").all_inner_texts()


def assert_accessible(page, figure):
    """Every control has a label, and the plot has a text description."""
    unlabelled = page.evaluate(
        "(fig) => [...document.querySelectorAll(fig + ' input')].filter(i => !i.labels.length).map(i => i.id)", figure
    )
    assert not unlabelled, f"inputs without a label: {unlabelled}"
    svg = page.locator(f"{figure} svg")
    assert svg.get_attribute("role") == "img" and len(svg.get_attribute("aria-label") or "") > 40


@pytest.mark.browser
def test_softmax_figure_follows_temperature_and_logits(visit):
    tab = visit("book/05-softmax.html")
    page, fig = tab.page, "[data-p2l-figure='softmax']"
    assert_accessible(page, fig)
    page.locator(fig).scroll_into_view_if_needed()

    def shown():
        return readouts(page, fig, "probability")

    def expect(logits, t):
        return [f"{p:.4f}" for p in softmax(logits, t)]

    assert shown() == expect([2, 1, 0.1], 1.0) == ["0.6590", "0.2424", "0.0986"]
    slider = page.get_by_label("temperature T", exact=True)
    slider.fill("0.5")
    assert shown() == ["0.8638", "0.1169", "0.0193"]
    assert readouts(page, fig, "temperature-value") == ["0.50"]
    # A keyboard user moves the slider one step (0.05) at a time.
    slider.focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert readouts(page, fig, "temperature-value") == ["0.60"]
    assert shown() == expect([2, 1, 0.1], 0.6)
    slider.fill("5")
    assert shown() == expect([2, 1, 0.1], 5.0)
    # Editing a logit re-computes every probability.
    page.get_by_label("logit z₃", exact=True).fill("3")
    assert shown() == expect([2, 1, 3], 5.0)
    page.get_by_label("logit z₁", exact=True).fill("-1.5")
    slider.fill("0.25")
    assert shown() == expect([-1.5, 1, 3], 0.25)
    # The plot's bar labels and its accessible description carry the same numbers.
    bars = page.locator(f"{fig} svg text.p2l-value").all_text_contents()
    assert bars == shown()
    label = page.locator(f"{fig} svg").get_attribute("aria-label")
    assert all(value in label for value in shown()), label
    page.get_by_label("logit z₂", exact=True).fill("")
    assert "must be a number" in page.locator(f"{fig} [data-role='status']").inner_text()
    assert not tab.problems, tab.problems


def normal_cdf(x, mu, sigma):
    return 0.5 * (1 + math.erf((x - mu) / (sigma * math.sqrt(2))))


@pytest.mark.browser
def test_gaussian_figure_moves_its_bands(visit):
    tab = visit("book/03-distributions.html")
    page, fig = tab.page, "[data-p2l-figure='gaussian']"
    assert_accessible(page, fig)

    def check(mu, sigma):
        for k in (1, 2, 3):
            lo, hi = mu - k * sigma, mu + k * sigma
            assert readouts(page, fig, f"band-{k}") == [f"[{lo:.2f}, {hi:.2f}]".replace("-0.00", "0.00")]
            mass = 100 * (normal_cdf(hi, mu, sigma) - normal_cdf(lo, mu, sigma))
            assert readouts(page, fig, f"mass-{k}") == [f"{mass:.2f}%"]
        peak = 1 / (sigma * math.sqrt(2 * math.pi))
        assert readouts(page, fig, "peak") == [f"{peak:.4f}"]
        assert readouts(page, fig, "below-zero") == [f"{normal_cdf(0, mu, sigma):.4f}"]

    check(0.0, 1.0)
    assert readouts(page, fig, "mass-1") == ["68.27%"]
    assert readouts(page, fig, "mass-2") == ["95.45%"]
    assert readouts(page, fig, "mass-3") == ["99.73%"]
    page.get_by_label("mean μ", exact=True).fill("1")
    page.get_by_label("standard deviation σ", exact=True).fill("2")
    check(1.0, 2.0)
    assert readouts(page, fig, "band-1") == ["[-1.00, 3.00]"]
    assert readouts(page, fig, "below-zero") == ["0.3085"]
    page.get_by_label("mean μ", exact=True).focus()
    page.keyboard.press("ArrowLeft")
    assert readouts(page, fig, "mu-value") == ["0.9"]
    check(0.9, 2.0)
    page.get_by_label("standard deviation σ", exact=True).fill("0.4")
    page.get_by_label("mean μ", exact=True).fill("-2.5")
    check(-2.5, 0.4)
    assert "99.73%" in page.locator(f"{fig} svg").get_attribute("aria-label")
    assert not tab.problems, tab.problems


@pytest.mark.browser
def test_cross_entropy_figure_shows_loss_and_gradient(visit):
    tab = visit("book/08-cross-entropy.html")
    page, fig = tab.page, "[data-p2l-figure='cross-entropy']"
    assert_accessible(page, fig)

    def check(q):
        assert readouts(page, fig, "q-value") == [f"{q:.3f}"]
        assert readouts(page, fig, "loss") == [f"{-math.log(q):.4f}"]
        assert readouts(page, fig, "grad-logit") == [f"{q - 1:.4f}"]
        assert readouts(page, fig, "grad-prob") == [f"{-1 / q:.4f}"]

    check(0.659)
    assert readouts(page, fig, "loss") == ["0.4170"]          # the chapter's worked example
    assert readouts(page, fig, "grad-logit") == ["-0.3410"]
    slider = page.get_by_label("q(true class)", exact=True)
    slider.fill("0.1")
    check(0.1)
    assert readouts(page, fig, "loss") == ["2.3026"]
    slider.focus()
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    check(0.105)
    slider.fill("0.999")
    check(0.999)
    slider.fill("0.001")
    check(0.001)
    assert not tab.problems, tab.problems


# The first plot's axis ticks, in document order: each tick is a <line> followed by its <text> label.
# Vertical tick lines mark the x axis, horizontal ones the y axis.
TICKS_AND_TANGENT = """(fig) => {
  const axes = document.querySelector(fig + ' svg g.p2l-axes');
  const ticks = {x: [], y: []};
  const children = [...axes.children];
  children.forEach((node, i) => {
    const label = children[i + 1];
    if (node.tagName !== 'line' || !label || label.tagName !== 'text') return;
    const [x1, y1, x2, y2] = ['x1', 'y1', 'x2', 'y2'].map(a => Number(node.getAttribute(a)));
    if (x1 === x2) ticks.x.push([Number(label.textContent), x1]);
    else if (y1 === y2) ticks.y.push([Number(label.textContent), y1]);
  });
  const tangent = document.querySelector(fig + ' svg line.p2l-tangent');
  return {ticks, tangent: ['x1', 'y1', 'x2', 'y2'].map(a => Number(tangent.getAttribute(a)))};
}"""


def pixel_to_value(ticks):
    """The axis's linear scale, inverted: from the first and last labelled tick."""
    (v0, px0), (v1, px1) = ticks[0], ticks[-1]
    return lambda px: v0 + (px - px0) * (v1 - v0) / (px1 - px0)


@pytest.mark.browser
def test_cross_entropy_figure_draws_its_tangent_with_slope_minus_one_over_q(visit):
    """The drawn tangent, read back from the SVG through the plot's own axis scale, has slope -1/q
    and touches the loss curve at q, even at small q where the line is cut at the plot's top."""
    tab = visit("book/08-cross-entropy.html")
    page, fig = tab.page, "[data-p2l-figure='cross-entropy']"
    slider = page.get_by_label("q(true class)", exact=True)
    for q in (0.001, 0.02, 0.2, 0.659):
        slider.fill(str(q))
        assert readouts(page, fig, "q-value") == [f"{q:.3f}"]
        drawn = page.evaluate(TICKS_AND_TANGENT, fig)
        assert [v for v, _ in drawn["ticks"]["x"]] == [0, 0.25, 0.5, 0.75, 1]
        assert [v for v, _ in drawn["ticks"]["y"]] == [0, 1, 2, 3, 4, 5, 6, 7]
        x_of, y_of = pixel_to_value(drawn["ticks"]["x"]), pixel_to_value(drawn["ticks"]["y"])
        x1, y1, x2, y2 = drawn["tangent"]
        (q1, loss1), (q2, loss2) = (x_of(x1), y_of(y1)), (x_of(x2), y_of(y2))
        # The coordinates are written with full double precision, so only rounding in the
        # scale's inversion separates the slope from -1/q: a relative 1e-6 is ample, and the
        # old drawing (slope -58 at q = 0.001) is far outside it.
        slope = (loss2 - loss1) / (q2 - q1)
        assert slope == pytest.approx(-1 / q, rel=1e-6), f"q = {q}: drawn slope {slope}"
        assert q1 <= q <= q2, f"q = {q}: the tangent spans [{q1}, {q2}]"
        assert loss1 + slope * (q - q1) == pytest.approx(-math.log(q), rel=1e-6), f"q = {q}: misses the curve"
        for loss in (loss1, loss2):
            assert -1e-9 <= loss <= 7 + 1e-9, f"q = {q}: the tangent leaves the plot (loss {loss})"
        assert math.hypot(x2 - x1, y2 - y1) > 20, f"q = {q}: the tangent is drawn too short to see"
    assert not tab.problems, tab.problems


@pytest.mark.browser
def test_assignments_download_byte_for_byte(root, visit):
    for assignment, notebook in assignments(root).items():
        tab = visit(f"book/assignments/{assignment}.html")
        link = tab.page.locator("article a.download", has_text=notebook.name).first
        with tab.page.expect_download() as download:
            link.click()
        saved = Path(download.value.path())
        assert download.value.suggested_filename == notebook.name
        assert saved.read_bytes() == notebook.read_bytes(), f"{assignment}: the download differs from {notebook}"
        assert not tab.problems, tab.problems
        tab.close()


@pytest.mark.browser
def test_search_finds_softmax(visit):
    tab = visit("search.html?q=softmax")
    results = tab.page.locator("#search-results ul.search li")
    results.first.wait_for(timeout=15_000)
    hrefs = [results.nth(i).locator("a").first.get_attribute("href") for i in range(results.count())]
    assert any("05-softmax" in h for h in hrefs), hrefs
    assert not tab.problems, tab.problems


@pytest.mark.browser
def test_search_results_are_clean_unique_and_highlight_the_opened_page(visit):
    """Summaries hold the chapter's text, not its header chrome (".pdf", "Contents"); no page is listed twice
    under one title; the result opened highlights the words searched for."""
    tab = visit("search.html?q=cross-entropy")
    page = tab.page
    results = page.locator("#search-results ul.search > li")
    results.first.wait_for(timeout=15_000)
    page.locator("#search-results ul.search > li p.context").first.wait_for(timeout=15_000)
    page.wait_for_timeout(500)
    entries = page.evaluate("""() => [...document.querySelectorAll('#search-results ul.search > li')].map(li => ({
        href: li.querySelector('a').getAttribute('href'), title: li.querySelector('a').textContent,
        summary: (li.querySelector('p.context') || {textContent: ''}).textContent}))""")
    keys = [(e["href"].split("#")[0].split("?")[0], re.sub(r"^[\d.]+\s+", "", e["title"]).strip().lower()) for e in entries]
    assert len(keys) == len(set(keys)), f"a result listed twice: {keys}"
    for entry in entries:
        assert not re.search(r"\.pdf\b|\bContents\b|Download this page|Toggle", entry["summary"]), entry
    bce = [e for e in entries if "09-bce" in e["href"]]
    assert len(bce) >= 1
    page.locator("#search-results ul.search > li a").first.click()
    page.wait_for_load_state("load")
    page.wait_for_function("() => document.querySelectorAll('span.highlighted').length > 0", timeout=10_000)
    assert not tab.problems, tab.problems


CONTRAST = """(selector) => {
  function rgb(color) {
    const m = color.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const parts = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return {r: parts[0], g: parts[1], b: parts[2], a: parts.length > 3 ? parts[3] : 1};
  }
  function background(el) {
    for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
      const c = rgb(getComputedStyle(node).backgroundColor);
      if (c && c.a > 0.9) return c;
    }
    return rgb(getComputedStyle(document.body).backgroundColor) || {r: 255, g: 255, b: 255};
  }
  function luminance(c) {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
  }
  function hidden(el) {
    for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
      const s = getComputedStyle(node);
      if (s.visibility === "hidden" || s.display === "none" || Number(s.opacity) === 0) return true;
    }
    return false;
  }
  const out = [];
  for (const el of document.querySelectorAll(selector)) {
    if (!el.textContent.trim() || el.getBoundingClientRect().width === 0 || hidden(el)) continue;
    const style = getComputedStyle(el);
    const fg = rgb(el instanceof SVGElement ? style.fill : style.color);
    const bg = background(el instanceof SVGElement ? el.ownerSVGElement : el);
    const [l1, l2] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
    out.push({text: el.textContent.trim().slice(0, 40), ratio: (l1 + 0.05) / (l2 + 0.05)});
  }
  return out;
}"""


@pytest.mark.browser
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_text_is_readable_in_both_colour_themes(visit, theme):
    """WCAG AA: text, links, code, figure labels and plot text at 4.5:1 or more against their background."""
    selectors = ", ".join(
        f"article {s}" for s in ("p", "li", "th", "td", "a", "code", "label", "output", "figcaption", "svg text")
    )
    for doc in ("book/03-distributions", "book/05-softmax", "book/08-cross-entropy", "book/assignments/index"):
        tab = visit(f"{doc}.html")
        tab.page.evaluate("(theme) => { document.documentElement.dataset.theme = theme; }", theme)
        measured = tab.page.evaluate(CONTRAST, selectors)
        assert len(measured) > 20, f"{doc}: measured only {len(measured)} elements"
        poor = [m for m in measured if m["ratio"] < 4.5]
        assert not poor, f"{doc}: text below 4.5:1 contrast in the {theme} theme: {poor[:5]}"
        tab.close()


@pytest.mark.browser
def test_screenshot_of_a_chapter(built_site, visit):
    """Keeps _build/screenshots/05-softmax.png (the chapter as a reader first sees it) and
    05-softmax-interactive.png (its interactive figure at T = 0.5) for a person to look at."""
    tab = visit("book/05-softmax.html")
    out = built_site / "screenshots"
    out.mkdir(exist_ok=True)
    tab.page.screenshot(path=str(out / "05-softmax.png"))
    figure = tab.page.locator("[data-p2l-figure='softmax']")
    tab.page.get_by_label("temperature T", exact=True).fill("0.5")
    tab.page.evaluate("() => document.activeElement && document.activeElement.blur()")
    figure.screenshot(path=str(out / "05-softmax-interactive.png"))
    for name in ("05-softmax.png", "05-softmax-interactive.png"):
        assert (out / name).stat().st_size > 10_000, f"{name} looks empty"
    assert not tab.problems, tab.problems


# --------------------------------------------------------------------------- every device (issue 13)


def open_tab(browser, site_url, path, width=1280, height=900, theme=None):
    """A Visit at another window size, optionally in a colour theme the reader chose."""
    tab = Visit(browser, site_url)
    tab.page.set_viewport_size({"width": width, "height": height})
    if theme:
        tab.context.add_init_script(f"localStorage.setItem('theme', '{theme}'); localStorage.setItem('mode', '{theme}');")
    tab.open(urljoin(site_url, path))
    return tab


@pytest.fixture()
def device(browser, site_url):
    tabs = []

    def open_page(path, **kwargs):
        tab = open_tab(browser, site_url, path, **kwargs)
        tabs.append(tab)
        return tab

    yield open_page
    for tab in tabs:
        tab.close()


IMAGES = """() => [...document.querySelectorAll('article img')].map(i => ({src: i.getAttribute('src'),
  shown: i.getBoundingClientRect().width, natural: i.naturalWidth}))"""


@pytest.fixture(scope="module")
def desktop_pages(root, browser, site_url):
    """Every page of the site opened once, at 1280 px in the light theme, with what the checks below
    measure on it (one load per page, not one per check): the problems the tab saw while loading, the
    rendering state, blocks wider than the text column, figures, exercise titles and an axe audit."""
    pages, docs = {}, toc_docs(root)
    for doc in site_pages(root):
        tab = open_tab(browser, site_url, f"{doc}.html", theme="light")
        try:
            assert tab.page.evaluate("() => document.documentElement.dataset.theme") == "light"
            seen = {"problems": list(tab.problems), "state": tab.page.evaluate(PAGE_STATE)}
            if doc in docs:
                seen["overflow"] = tab.page.evaluate(OVERFLOW)
                seen["column"] = tab.page.locator("article.bd-article").bounding_box()["width"]
            seen["images"] = tab.page.evaluate(IMAGES)
            seen["exercises"] = tab.page.locator("article .exercise .admonition-title").all_inner_texts()
            seen["split_outputs"] = tab.page.evaluate(SPLIT_OUTPUTS)
            audit = axe_audit(tab.page)
            seen["axe"] = audit.generate_report() if audit.violations_count else None
            # Then the reader switches to the dark theme with the header's button (it cycles light, auto, dark
            # under a light system preference), and the rules that read colours run again once the colours
            # have settled: one more audit, no second load.
            for _ in range(2):
                tab.page.locator(".theme-switch-button:visible").first.click()
                if tab.page.evaluate("() => document.documentElement.dataset.theme") == "dark":
                    break
            seen["theme after the switch"] = tab.page.evaluate("() => document.documentElement.dataset.theme")
            # The pointer leaves the button, so its "Color mode" tooltip (shown on hover, fading in) is gone before
            # the audit, as it is for a reader who goes on reading.
            tab.page.mouse.move(0, 0)
            tab.page.wait_for_function("() => !document.querySelector('.tooltip')")
            tab.page.wait_for_function(
                "() => document.getAnimations().every(a => !(a instanceof CSSTransition) || a.playState !== 'running')")
            dark = axe_audit(tab.page, rules=AXE_COLOUR_RULES)
            seen["axe dark"] = dark.generate_report() if dark.violations_count else None
            pages[doc] = seen
        finally:
            tab.close()
    return pages


@pytest.mark.browser
@pytest.mark.parametrize("width", [390, 800])
def test_navigation_opens_on_a_phone_and_follows_a_link(device, width):
    tab = device("book/03-distributions.html", width=width, height=800)
    page = tab.page
    toggle = page.locator("button.primary-toggle:visible")
    assert toggle.count() == 1, f"{toggle.count()} visible primary toggles at {width} px"
    link = page.locator("#pst-primary-sidebar-modal a.reference", has_text="Softmax and temperature")
    assert not link.is_visible()
    toggle.click()
    link.wait_for(state="visible", timeout=5_000)
    link.click()
    page.wait_for_url("**/book/05-softmax.html")
    tab.settle()
    assert page.locator("article h1", has_text="Softmax").first.is_visible()
    assert not tab.problems, tab.problems


@pytest.mark.browser
def test_sidebar_toggle_hides_and_shows_the_sidebar_on_a_laptop(device):
    tab = device("book/03-distributions.html")
    page = tab.page
    sidebar = page.locator("#pst-primary-sidebar")
    content = page.locator(".bd-main")
    assert sidebar.is_visible()
    width_with_sidebar = content.bounding_box()["width"]
    page.locator("button.primary-toggle:visible").click()
    sidebar.wait_for(state="hidden", timeout=5_000)
    assert content.bounding_box()["width"] > width_with_sidebar + 150, "the content did not take the sidebar's room"
    page.locator("button.primary-toggle:visible").click()
    sidebar.wait_for(state="visible", timeout=5_000)
    assert not tab.problems, tab.problems


OVERFLOW = """() => {
  const article = document.querySelector('article.bd-article');
  const right = article.getBoundingClientRect().right + 1;
  const wide = [];
  const selectors = 'pre, div.math, mjx-container[display="true"], .table-wrapper, table, .cell_output, img, svg.p2l-plot';
  for (const el of article.querySelectorAll(selectors)) {
    const box = el.getBoundingClientRect();
    if (box.width === 0) continue;
    if (el.scrollWidth > el.clientWidth + 1 || box.right > right) {
      wide.push(`${el.tagName.toLowerCase()}.${el.className.baseVal ?? el.className}: ${el.scrollWidth} px in ${el.clientWidth} px: ` +
                el.textContent.trim().slice(0, 60));
    }
  }
  return wide;
}"""


@pytest.mark.browser
def test_no_code_output_or_equation_overflows_at_1280_px(root, desktop_pages):
    wide, narrow = [], []
    for doc in toc_docs(root):
        wide += [f"{doc}: {block}" for block in desktop_pages[doc]["overflow"]]
        column = desktop_pages[doc]["column"]
        if column < 760:
            narrow.append(f"{doc}: the text column is only {column:.0f} px wide at 1280 px")
    assert not narrow, narrow
    assert not wide, "wider than the text column at 1280 px:\n" + "\n".join(wide)


FIGURE_TEXT = """(selector) => [...document.querySelectorAll(selector)].map(svg => {
  const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
  return [...svg.querySelectorAll('text')].filter(t => t.textContent.trim()).map(t => ({
    text: t.textContent.trim(), px: parseFloat(getComputedStyle(t).fontSize) * scale}));
}).flat()"""


@pytest.mark.browser
def test_phone_width_has_no_sideways_scroll_and_readable_figure_labels(root, built_site, device):
    """At 390 px (one load per page): the page does not scroll sideways; the interactive figures' text is 9 px or
    more; every matplotlib figure is fitted to the column (no box that scrolls sideways, no figure wider than
    the text) and its smallest text (tick labels, legends) is still about 9 CSS px or more."""
    points = smallest_figure_font_points(root)
    checked = 0
    for doc in toc_docs(root):
        tab = device(f"{doc}.html", width=390, height=844)
        page_width = tab.page.evaluate("() => document.documentElement.scrollWidth")
        assert page_width <= 390, f"{doc}: the page is {page_width} px wide on a 390 px phone"
        labels = tab.page.evaluate(FIGURE_TEXT, "svg.p2l-plot")
        small = [label for label in labels if label["px"] < 9]
        assert not small, f"{doc}: interactive figure text below 9 px at 390 px: {small[:5]}"
        if doc in ("book/03-distributions", "book/05-softmax", "book/08-cross-entropy"):
            assert labels, f"{doc}: no interactive figure text measured"
        tab.page.wait_for_function("() => [...document.images].every(i => i.complete)")
        for image in tab.page.evaluate(FIGURE_IMAGES):
            px = figure_text_px(built_site, doc, image, points)
            if px is None:
                continue
            assert image["shown"] <= image["column"] + 0.5 and not image["scrolls"], (
                f"{doc}: {image['src']} is {image['shown']:.0f} px wide in a {image['column']:.0f} px column at 390 px")
            assert px >= 9, (f"{doc}: {image['src']} fitted to {image['shown']:.0f} px at 390 px (drawn "
                             f"{image['natural']} px wide): its {points:g} pt text is {px:.1f} CSS px")
            checked += 1
        tab.close()
    assert checked >= 25, f"only {checked} matplotlib figures measured"


AXIS_TITLES_CLEAR = """(selector) => [...document.querySelectorAll(selector)].map(svg => {
  const outer = svg.getBoundingClientRect();
  const texts = [...svg.querySelectorAll('.p2l-axes text')].map(t => ({
    title: t.classList.contains('p2l-axis-title'), text: t.textContent, box: t.getBoundingClientRect()}));
  const overlaps = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
  const problems = [];
  for (const t of texts) {
    if (t.box.left < outer.left - 1 || t.box.right > outer.right + 1 || t.box.top < outer.top - 1 || t.box.bottom > outer.bottom + 1)
      problems.push('cut off: ' + t.text);
    if (!t.title) continue;
    for (const u of texts) if (!u.title && overlaps(t.box, u.box)) problems.push(t.text + ' over ' + u.text);
  }
  return {titles: texts.filter(t => t.title).length, problems};
})"""


@pytest.mark.browser
@pytest.mark.parametrize("width", [390, 1280])
def test_axis_titles_of_the_interactive_figures_clear_their_tick_labels(device, width):
    """Chapters 3, 5 and 8: no axis title over a tick label, no text cut off by the plot's edge."""
    for doc in ("book/03-distributions", "book/05-softmax", "book/08-cross-entropy"):
        tab = device(f"{doc}.html", width=width, height=844)
        for figure in tab.page.evaluate(AXIS_TITLES_CLEAR, "svg.p2l-plot"):
            assert figure["titles"] >= 2, f"{doc}: axis titles not found"
            assert not figure["problems"], f"{doc} at {width} px: {figure['problems']}"
        tab.close()


@pytest.mark.browser
def test_gaussian_axes_hold_the_three_sigma_band(device):
    """At μ = 3, σ = 3 the ±3σ band reaches x = 12: the x axis goes that far, and the peak fits at σ = 0.4."""
    tab = device("book/03-distributions.html", width=1280)
    page, fig = tab.page, "[data-p2l-figure='gaussian']"
    page.get_by_label("mean μ", exact=True).fill("3")
    page.get_by_label("standard deviation σ", exact=True).fill("3")
    x_range = json.loads(page.locator(f"{fig} svg").get_attribute("data-x-range"))
    assert x_range[0] <= 3 - 9 and x_range[1] >= 3 + 9, x_range
    band = page.locator(f"{fig} svg path.p2l-band-3").bounding_box()
    plot = page.locator(f"{fig} svg .p2l-axes line").first.bounding_box()  # the x axis
    assert band["x"] >= plot["x"] - 1 and band["x"] + band["width"] <= plot["x"] + plot["width"] + 1, (band, plot)
    labels = page.evaluate(f"() => [...document.querySelectorAll(\"{fig} svg .p2l-axes text\")].map(t => t.textContent)")
    ticks = [float(t.replace("\u2212", "-")) for t in labels if re.fullmatch(r"[-\u2212]?\d+", t)]
    assert max(ticks) >= 12, ticks
    peak = 1 / (3 * math.sqrt(2 * math.pi))
    y_range = json.loads(page.locator(f"{fig} svg").get_attribute("data-y-range"))
    assert peak < y_range[1] <= 3 * peak, f"the y axis does not fit the peak {peak:.3f}: {y_range}"
    page.get_by_label("standard deviation σ", exact=True).fill("0.4")
    y_range = json.loads(page.locator(f"{fig} svg").get_attribute("data-y-range"))
    assert y_range[1] >= 1 / (0.4 * math.sqrt(2 * math.pi)), y_range


@pytest.mark.browser
def test_softmax_figure_clears_its_output_on_invalid_input(visit):
    tab = visit("book/05-softmax.html")
    page, fig = tab.page, "[data-p2l-figure='softmax']"
    assert readouts(page, fig, "probability")
    page.get_by_label("logit z₂", exact=True).fill("")
    assert "must be a number" in page.locator(f"{fig} [data-role='status']").inner_text()
    assert readouts(page, fig, "probability") == [], "the old table stays beside the error"
    assert page.locator(f"{fig} svg rect.p2l-bar").count() == 0, "the old bars stay beside the error"
    assert "must be a number" in page.locator(f"{fig} svg").get_attribute("aria-label")
    page.get_by_label("logit z₂", exact=True).fill("1")
    assert readouts(page, fig, "probability") == ["0.6590", "0.2424", "0.0986"]
    assert page.locator(f"{fig} svg rect.p2l-bar").count() == 3


WIDE_EQUATIONS = """() => [...document.querySelectorAll('.bd-article mjx-container[display="true"]')]
  .filter(m => m.scrollWidth > m.clientWidth + 1).map(m => m.textContent.slice(0, 60))"""


@pytest.mark.browser
def test_display_equations_fit_a_phone(device):
    """Long display equations are broken into lines (aligned), not cut at 390 px."""
    for doc in ("book/03-distributions", "book/08-cross-entropy"):
        tab = device(f"{doc}.html", width=390, height=844)
        tab.page.wait_for_function("() => document.querySelectorAll('mjx-container').length > 0")
        wide = tab.page.evaluate(WIDE_EQUATIONS)
        assert not wide, f"{doc}: equations cut at 390 px: {wide}"
        tab.close()


FIGURE_IMAGES = """() => [...document.querySelectorAll('.bd-article .cell_output img')].map(i => ({
  src: i.getAttribute('src'), shown: i.getBoundingClientRect().width, natural: i.naturalWidth,
  column: i.closest('.cell_output').getBoundingClientRect().width,
  scrolls: (() => { for (let e = i.parentElement; e && !e.matches('article'); e = e.parentElement)
    if (e.scrollWidth > e.clientWidth + 1 && ['auto', 'scroll'].includes(getComputedStyle(e).overflowX)) return true;
    return false; })(),
  filter: getComputedStyle(i).filter}))"""


@pytest.mark.browser
def test_matplotlib_figures_follow_dark_mode(device):
    """In the dark theme the white PNGs are inverted (hues kept): no light card on a dark page. Checked on the
    pixels Chromium draws, not only on the style: in the dark theme a figure is dark on the whole (its mean
    luminance), hardly any of it is light, and its background (its commonest colour) is within a few percent
    of the page's; the same figure in the light theme is light, so the measure tells the two apart."""
    tab = device("book/03-distributions.html", width=1280, theme="dark")
    images = tab.page.evaluate(FIGURE_IMAGES)
    assert images
    assert all("invert" in image["filter"] for image in images), images[:2]
    light = device("book/03-distributions.html", width=1280, theme="light")
    assert all("invert" not in image["filter"] for image in light.page.evaluate(FIGURE_IMAGES))
    shown = {}
    for theme, page in (("dark", tab.page), ("light", light.page)):
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        figure = page.locator(".bd-article .cell_output img").first
        figure.scroll_into_view_if_needed()
        page.wait_for_timeout(100)
        background = figure.evaluate(PAGE_BEHIND)
        shown[theme] = (figure_luminance(figure.screenshot()), css_luminance(background))
    (dark, page_dark), (light_figure, page_light) = shown["dark"], shown["light"]
    assert dark["mean"] < 0.3 and dark["light_share"] < 0.05, f"a light figure on the dark page: {dark}"
    assert abs(dark["background"] - page_dark) < 0.08, f"the figure's ground {dark} is not the page's {page_dark:.3f}"
    assert light_figure["mean"] > 0.7 and light_figure["light_share"] > 0.5, f"the light theme's figure: {light_figure}"
    assert abs(light_figure["background"] - page_light) < 0.08, (light_figure, page_light)


# The colour the page shows behind an element: the first ancestor's background that is not transparent.
PAGE_BEHIND = """(element) => {
  for (let e = element.parentElement; e; e = e.parentElement) {
    const colour = getComputedStyle(e).backgroundColor;
    if (colour !== 'transparent' && !/^rgba\\(.*,\\s*0\\)$/.test(colour)) return colour;
  }
  return 'rgb(255, 255, 255)';
}"""


def relative_luminance(red, green, blue):
    """WCAG's relative luminance of an sRGB colour (0..255 channels): 0 black, 1 white."""
    def linear(channel):
        channel /= 255
        return channel / 12.92 if channel <= 0.04045 else ((channel + 0.055) / 1.055) ** 2.4
    return 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)


def css_luminance(colour):
    red, green, blue = (float(v) for v in re.findall(r"[\d.]+", colour)[:3])
    return relative_luminance(red, green, blue)


def figure_luminance(png):
    """A screenshot's mean luminance, the share of light pixels (luminance above 0.6) and the luminance of its
    commonest colour (a figure's background)."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float).reshape(-1, 3) / 255
    linear = np.where(pixels <= 0.04045, pixels / 12.92, ((pixels + 0.055) / 1.055) ** 2.4)
    luminance = linear @ np.array([0.2126, 0.7152, 0.0722])
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    commonest = colours[counts.argmax()] * 255
    return {"mean": round(float(luminance.mean()), 3), "light_share": round(float((luminance > 0.6).mean()), 3),
            "background": round(float(relative_luminance(*commonest)), 3)}


def png_dpi(data):
    """The dots per inch matplotlib stored in a PNG (its pHYs chunk), or None."""
    position = 8
    while position < len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        kind = data[position + 4:position + 8]
        if kind == b"pHYs":
            per_metre = int.from_bytes(data[position + 8:position + 12], "big")
            return per_metre * 0.0254
        position += 12 + length
    return None


def figure_text_px(built_site, doc, image, points):
    """The CSS pixels of a matplotlib figure's smallest text (``points`` at the PNG's dpi) as the page draws
    the image (``shown`` of ``natural`` px); None for an image that is not a matplotlib PNG."""
    data = (html_path(built_site, doc).parent / image["src"]).read_bytes()
    dpi = png_dpi(data) if data.startswith(b"\x89PNG") else None
    return None if dpi is None else points * dpi / 72 * image["shown"] / image["natural"]


def smallest_figure_font_points(root):
    """The smallest font matplotlib uses in the chapters' figures: its defaults, or a size a chapter sets."""
    import matplotlib
    from matplotlib.font_manager import font_scalings as scale

    base = matplotlib.rcParams["font.size"]
    sizes = [base]
    for key in ("xtick.labelsize", "ytick.labelsize", "legend.fontsize", "axes.labelsize", "axes.titlesize"):
        value = matplotlib.rcParams[key]
        sizes.append(base * scale[value] if isinstance(value, str) else float(value))
    for doc in chapters(root):
        source = (root / f"{doc}.md").read_text()
        for value in re.findall(r"\b(?:fontsize|labelsize|titlesize)\s*=\s*['\"]?([\w.-]+)", source):
            sizes.append(base * scale[value] if value in scale else float(value))
    return min(sizes)


@pytest.mark.browser
def test_figure_text_is_at_least_9_px_at_1280_px(root, built_site, desktop_pages):
    """A figure's smallest font (points x dpi / 72 in the PNG) times the scale it is drawn at."""
    points = smallest_figure_font_points(root)
    checked = 0
    for doc in chapters(root):
        for image in desktop_pages[doc]["images"]:
            px = figure_text_px(built_site, doc, image, points)
            if px is None:
                continue
            assert px >= 9, f"{doc}: {image['src']} is drawn at {image['shown']:.0f} of {image['natural']} px: text {px:.1f} px"
            checked += 1
    assert checked >= 12, f"only {checked} matplotlib figures measured"


@pytest.mark.browser
def test_search_summaries_show_formulas_as_text_not_tex(visit):
    tab = visit("search.html?q=matrix")
    summaries = tab.page.locator("#search-results ul.search li p.context")
    summaries.first.wait_for(timeout=20_000)
    texts = summaries.all_inner_texts()
    assert texts and any(texts), "no search summary shown"
    raw = [t for t in texts if re.search(r"\\[(){}\[\]]|\\[A-Za-z]+", t)]
    assert not raw, f"search summaries show TeX: {raw[:3]}"
    assert tab.page.evaluate("() => p2lTexToText('\\\\(W \\\\in \\\\mathbb{R}^{27 \\\\times 27}\\\\)')") == "W ∈ R^27 × 27"
    assert not tab.problems, tab.problems


PRINTED = """() => {
  const shown = el => el && el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
  const pres = [...document.querySelectorAll('article pre')];
  return {
    pre: pres.length,
    unwrapped: pres.filter(p => getComputedStyle(p).whiteSpace !== 'pre-wrap' || p.scrollWidth > p.clientWidth + 1).length,
    chrome: [...document.querySelectorAll('.dropdown-launch-buttons, .dropdown-download-buttons, .article-header-buttons, .search-button-field')].filter(shown).length,
    solutions: [...document.querySelectorAll('article .solution > :not(.admonition-title)')].filter(shown).length,
    solutionTitles: [...document.querySelectorAll('article .solution > .admonition-title')].filter(shown).length,
    exercises: [...document.querySelectorAll('article .exercise')].filter(shown).length,
  };
}"""


@pytest.mark.browser
def test_print_wraps_code_and_leaves_out_chrome_and_solutions(device):
    tab = device("book/11-bigram.html")
    tab.page.emulate_media(media="print")
    printed = tab.page.evaluate(PRINTED)
    assert printed["pre"] > 5 and printed["unwrapped"] == 0, printed
    assert printed["chrome"] == 0, printed
    assert printed["exercises"] > 0 and printed["solutionTitles"] > 0 and printed["solutions"] == 0, printed
    tab.page.emulate_media(media="screen")
    assert tab.page.evaluate(PRINTED)["chrome"] > 0, "the buttons should show on screen"


@pytest.mark.browser
def test_favicon_is_served(site_url, visit):
    tab = visit("book/index.html")
    icon = tab.page.locator("link[rel~='icon']").get_attribute("href")
    assert icon, "no <link rel=icon>"
    for url in (urljoin(tab.page.url, icon), urljoin(site_url, "favicon.ico")):
        response = tab.page.request.get(url)
        assert response.ok, f"{url}: HTTP {response.status}"
        assert len(response.body()) > 100
    assert not tab.problems, tab.problems


BAND_CONTRAST = """() => {
  const band = document.querySelector("[data-p2l-figure='gaussian'] .p2l-band-3");
  const style = getComputedStyle(band);
  const rgb = c => c.match(/[\\d.]+/g).map(Number);
  const fill = rgb(style.fill), alpha = parseFloat(style.fillOpacity);
  let node = band.ownerSVGElement, bg;
  for (; node && node.nodeType === 1; node = node.parentElement) {
    const c = rgb(getComputedStyle(node).backgroundColor);
    if (c.length === 3 || c[3] > 0.9) { bg = c; break; }
  }
  const mixed = fill.slice(0, 3).map((v, i) => alpha * v + (1 - alpha) * bg[i]);
  const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
                     return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const [a, b] = [lum(mixed), lum(bg)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""


@pytest.mark.browser
def test_three_sigma_band_is_visible_in_both_themes(device):
    """The faintest band (±3σ) stands out from the figure's background: 1.5:1 in dark mode, where it
    was 1.2:1 and nearly invisible; in light mode it keeps its pale look (1.2:1)."""
    for theme, least in (("dark", 1.5), ("light", 1.2)):
        tab = device("book/03-distributions.html", theme=theme)
        assert tab.page.evaluate("() => document.documentElement.dataset.theme") == theme
        ratio = tab.page.evaluate(BAND_CONTRAST)
        assert ratio >= least, f"{theme}: the ±3σ band is at {ratio:.2f}:1 against its background"
        tab.close()


@pytest.mark.browser
def test_title_appears_once_in_the_sidebar(device):
    tab = device("book/05-softmax.html")
    text = tab.page.locator("#pst-primary-sidebar").inner_text()
    assert text.count("From probability to loss functions") == 1, text[:500]


@pytest.mark.browser
def test_exercises_are_numbered_per_chapter(root, desktop_pages):
    numbered = 0
    for number, doc in enumerate(chapters(root), start=1):
        titles = desktop_pages[doc]["exercises"]
        expected = [f"Exercise {number}.{k}" for k in range(1, len(titles) + 1)]
        assert [t.split("(")[0].strip() for t in titles] == expected, f"{doc}: {titles}"
        numbered += len(titles)
    assert numbered >= 12


FOCUS_RING = """() => {
  const el = document.activeElement;
  const s = getComputedStyle(el);
  return {tag: el.tagName, label: el.getAttribute('aria-label') || el.getAttribute('title') || el.textContent.trim().slice(0, 30),
          outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2,
          shadow: s.boxShadow !== 'none'};
}"""


@pytest.mark.browser
def test_keyboard_focus_is_visible_on_every_control_of_the_header(device):
    """Tab through the page's chrome: search, sidebar toggle, launch/download menus, colour mode..."""
    tab = device("book/05-softmax.html")
    page = tab.page
    seen, invisible = [], []
    for _ in range(25):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUS_RING)
        seen.append(focused["label"])
        if not (focused["outline"] or focused["shadow"]):
            invisible.append(focused)
    assert not invisible, f"focused without a visible indicator: {invisible}"
    for expected in ("Search", "Toggle primary sidebar", "Download this page"):
        assert any(expected.lower() in (label or "").lower() for label in seen), (expected, seen)


@pytest.mark.browser
def test_formulas_are_out_of_the_tab_order_but_read_to_screen_readers(device):
    tab = device("book/08-cross-entropy.html")
    page = tab.page
    formulas = page.evaluate(
        "() => [...document.querySelectorAll('mjx-container')].map(m => ({tab: m.tabIndex, "
        "mathml: !!m.querySelector('mjx-assistive-mml math'), hidden: m.querySelector('mjx-assistive-mml')?.getAttribute('aria-hidden')}))"
    )
    assert len(formulas) > 20
    assert all(f["tab"] < 0 for f in formulas), "formulas are Tab stops"
    assert all(f["mathml"] and f["hidden"] != "true" for f in formulas), "formulas lack MathML for screen readers"
    slider = page.get_by_label("q(true class)", exact=True)
    for presses in range(1, 81):
        page.keyboard.press("Tab")
        focused = page.evaluate("() => ({id: document.activeElement.id, "
                                "formula: !!document.activeElement.closest('mjx-container')})")
        assert not focused["formula"], f"Tab press {presses} stopped on a formula"
        if focused["id"] == slider.get_attribute("id"):
            break
    else:
        pytest.fail("the first slider is not reached within 80 Tab presses")
    # Every press lands on a link or control before the slider: nothing else is a Tab stop.
    stops = page.evaluate(
        "(slider) => [...document.querySelectorAll('a[href], button, input, select, textarea, [tabindex]')]"
        ".filter(e => e.tabIndex >= 0 && e.offsetParent !== null && !e.closest('mjx-container')"
        " && (e.compareDocumentPosition(slider) & Node.DOCUMENT_POSITION_FOLLOWING)).length",
        slider.element_handle())
    assert presses <= stops + 1, f"{presses} Tab presses for {stops} links and controls before the slider"


# The WCAG 2.1 AA rules whose outcome depends on colours (the rest read the DOM, the same in both themes).
AXE_COLOUR_RULES = ["color-contrast", "link-in-text-block"]


def axe_audit(page, rules=None):
    """axe-core's WCAG 2.1 A and AA rules on the page (or only ``rules``)."""
    from axe_playwright_python.sync_playwright import Axe

    run_only = ({"type": "rule", "values": rules} if rules else
                {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]})
    return Axe().run(page, options={"runOnly": run_only, "resultTypes": ["violations"]})


@pytest.mark.browser
def test_every_page_passes_axe_wcag_21_aa(desktop_pages):
    failures = [f"{doc}.html (light):\n{seen['axe']}" for doc, seen in desktop_pages.items() if seen["axe"]]
    assert not failures, "\n".join(failures)[:8000]


@pytest.mark.browser
def test_every_page_passes_axe_colour_rules_in_the_dark_theme(desktop_pages):
    """The dark theme changes colours only, so the rules that read colours are audited again in it, on each page
    switched to dark by its button (pages loaded in dark: the colour-mode, readable-text and figure tests)."""
    assert {doc: seen["theme after the switch"] for doc, seen in desktop_pages.items()} == dict.fromkeys(desktop_pages, "dark")
    failures = [f"{doc}.html (dark):\n{seen['axe dark']}" for doc, seen in desktop_pages.items() if seen["axe dark"]]
    assert not failures, "\n".join(failures)[:8000]


@pytest.mark.browser
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_colour_mode_button_name_matches_its_content_on_every_load(root, device, theme):
    """axe's label-content-name-mismatch on .theme-switch-button came on about one load in four (Font Awesome
    swapping the icons raced site.js). Audited after the page has settled and again a moment later, on
    several loads of several pages, so the race cannot hide."""
    rules = ["label-content-name-mismatch", "button-name", "svg-img-alt"]
    for doc in ("book/index", "book/05-softmax", "book/setup", "search"):
        for attempt in range(3):
            tab = device(f"{doc}.html", theme=theme)
            for _ in range(2):
                results = axe_audit(tab.page, rules=rules)
                assert not results.violations_count, f"{doc} ({theme}, load {attempt + 1}):\n{results.generate_report()}"
                names = tab.page.evaluate("""() => [...document.querySelectorAll('.theme-switch-button')].map(b =>
                    [b.getAttribute('aria-label'), b.querySelectorAll('title, [title]').length])""")
                assert names and all(n == ["Color mode", 0] for n in names), names
                tab.page.wait_for_timeout(300)
            tab.close()


@pytest.mark.browser
@pytest.mark.parametrize("width", [390, 1280, 1680])
def test_chapters_have_an_on_this_page_contents_list(root, device, width):
    """Every chapter lists its sections: a column at 1280 px, the drawer of the header's button on a phone.
    No header button is dead: each one that is shown opens or does something."""
    for doc in ("book/05-softmax", "book/11-bigram"):
        tab = device(f"{doc}.html", width=width, height=844)
        page = tab.page
        sections = page.locator("article h2").count()
        toc = page.locator(".bd-sidebar-secondary nav.page-toc a, .bd-sidebar-secondary .page-toc a")
        if width < 1600:  # a drawer that the header's contents button opens
            toggle = page.locator("button.secondary-toggle:visible").first
            assert toggle.count(), f"{doc}: no contents button at {width} px"
            toggle.click()
            page.wait_for_timeout(400)
            toc = page.locator("dialog#pst-secondary-sidebar-modal[open] .page-toc a")
        visible = [a for a in toc.all() if a.is_visible()]
        assert len(visible) >= min(sections, 3), f"{doc} at {width} px: {len(visible)} contents links for {sections} sections"
        visible[1].click()
        page.wait_for_timeout(300)
        assert "#" in page.url, f"{doc}: the contents link did not go to its section"
        tab.close()


@pytest.mark.browser
def test_axe_audit_finds_a_planted_violation(browser, tmp_path):
    markup = ('<html lang="en"><head><title>t</title></head><body><main><img src="x.png">'
              '<button></button><p style="color:#aaa;background:#fff">faint</p></main></body></html>')
    with planted_page(browser, tmp_path, markup) as tab:
        ids = {v["id"] for v in axe_audit(tab.page).response["violations"]}
    assert {"image-alt", "button-name", "color-contrast"} <= ids, ids


BLOCK_IMPORTS = '''import importlib.abc, sys

class Blocked(importlib.abc.MetaPathFinder):
    """A kernel like a student's: the course's own packages are not installed."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("course", "myst_nb", "jupyter_book"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Blocked())
'''


@pytest.mark.browser
@pytest.mark.slow
# Executing every chapter again would double the build's cost; these three cover glued numbers, the
# names data and torch training. tests/test_book.py runs chapter 11 the same way and checks that no
# chapter imports the course package or an unguarded myst_nb.
@pytest.mark.parametrize("doc", ["book/01-why-probability", "book/10-entropy-kl", "book/13-optimizers"])
def test_downloaded_chapter_notebook_runs_in_a_clean_kernel(root, visit, tmp_path, monkeypatch, doc):
    """The .ipynb the chapter page offers, downloaded through the site, runs top to bottom in a fresh
    kernel where neither `course` nor `myst_nb` can be imported, in an empty folder."""
    import nbformat
    from nbclient import NotebookClient

    tab = visit(f"{doc}.html")
    page = tab.page
    page.locator("button[aria-label='Download this page']:visible").click()
    with page.expect_download() as download:
        page.locator("a[href$='.ipynb']:visible").first.click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.suffix == ".ipynb"
    notebook = nbformat.read(saved, as_version=4)
    for cell in notebook.cells:
        cell.outputs = [] if cell.cell_type == "code" else cell.get("outputs")

    (tmp_path / "blocked").mkdir()
    (tmp_path / "blocked" / "sitecustomize.py").write_text(BLOCK_IMPORTS)
    work = tmp_path / "work"
    work.mkdir()
    for name, folder in (("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython"), ("MPLCONFIGDIR", "mpl")):
        (tmp_path / folder).mkdir()
        monkeypatch.setenv(name, str(tmp_path / folder))
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "blocked"))
    notebook.cells.append(nbformat.v4.new_code_cell(
        "for name in ('course', 'myst_nb'):\n"
        "    try:\n        __import__(name)\n    except ModuleNotFoundError:\n        print(name, 'is not installed')"
    ))
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}})
    client.execute(env=env)
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors, f"{doc}: " + "\n".join(e["ename"] + ": " + e["evalue"] for e in errors)
    assert notebook.cells[-1].outputs[0]["text"].split("\n")[:2] == ["course is not installed", "myst_nb is not installed"]
