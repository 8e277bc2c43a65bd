"""A chapter as a student reads it in Jupyter or Colab: a notebook, not MyST source.

The chapters (``book/NN-*.md``) are MyST Markdown built by Jupyter Book. Opened as a notebook,
their source shows the site's plumbing. ``student_notebook`` turns a chapter's notebook (the
jupytext reading of the ``.md``, or the executed notebook the build writes) into one that reads
like the site:

* ``{glue:text}`name``` placeholders become the numbers the build glued (``glued_values``
  reads them from the executed notebook), formatted as the site shows them;
* ``{doc}`` roles become Markdown links to the published site (``site_url``: ``_config.yml``'s
  ``sphinx.config.course_site_url``, default ``DEFAULT_SITE_URL``);
* exercises are numbered as on the site ("Exercise 5.1"), and every ``:::{solution}`` moves to a
  "Solutions" section at the end, the way the site keeps them collapsed;
* admonitions and "see also" boxes become block quotes;
* the build's plumbing leaves the code: the ``from myst_nb import glue`` block, every ``glue(...)``
  call, cells tagged ``remove-cell`` (build-only), and the glue outputs of an executed notebook
  (the stream outputs they split are joined again);
* an interactive figure (a ``{raw} html`` block that needs the site's JavaScript) becomes its
  caption and a link to the figure on the site.

Used by the build (the chapter's ".ipynb" download, ``book/_ext/launch_links.py``) and by
``make notebooks`` (``python -m course.student_notebook``: the paired ``book/NN-*.ipynb`` that
Colab and Binder open, written from the chapters and the glued numbers of the last build).
"""
from __future__ import annotations

import ast
import copy
import hashlib
import html
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from . import ROOT

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from nbformat import NotebookNode

# Where the course's own copy is published. A course that publishes its site elsewhere sets
# ``course_site_url`` under ``sphinx: config:`` in ``_config.yml`` (README, "A chapter as a notebook";
# INSTRUCTORS.md, step 1): the chapter notebooks and the released assignments then link there.
DEFAULT_SITE_URL = "https://prob2loss.github.io/course/"

GLUE_ROLE = re.compile(r"\{glue(?::text)?\}`([^`:]+)(?::([^`]*))?`")
DOC_ROLE = re.compile(r"\{doc\}`(?:([^`<]*?)\s*<([^`>]+)>|([^`]+))`")
ANY_ROLE = re.compile(r"\{[a-z][\w:-]*\}`")
FENCE_OPEN = re.compile(r"^(:{3,})\{([\w-]+)\}\s*(.*)$")
OPTION = re.compile(r"^:([\w-]+):\s*(.*)$")
RAW_HTML = re.compile(r"^```\{raw\}\s*html\s*\n(.*?)^```\s*$", re.S | re.M)


def site_url(root: Path | str = ROOT) -> str:
    """The published site's address, ending in "/" (``_config.yml``: ``sphinx.config.course_site_url``; empty or
    unset: ``DEFAULT_SITE_URL``)."""
    config = yaml.safe_load((Path(root) / "_config.yml").read_text(encoding="utf-8")) or {}
    url = str(((config.get("sphinx") or {}).get("config") or {}).get("course_site_url") or "").strip()
    url = url or DEFAULT_SITE_URL
    return url if url.endswith("/") else url + "/"


def page_url(doc: str, base: str, anchor: str = "") -> str:
    """The published page of ``doc`` (a path from the book's root without suffix, e.g. ``book/05-softmax``)."""
    return f"{base}{doc}.html" + (f"#{anchor}" if anchor else "")


def is_glue_output(output: Mapping[str, Any]) -> bool:
    return "scrapbook" in (output.get("metadata") or {})


def glued_values(executed: Mapping[str, Any]) -> dict[str, str]:
    """Name -> the text/plain the chapter glued, from an executed notebook's outputs."""
    values = {}
    for cell in executed["cells"]:
        for output in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            if is_glue_output(output):
                plain = output.get("data", {}).get("text/plain", "")
                values[output["metadata"]["scrapbook"]["name"]] = plain if isinstance(plain, str) else "".join(plain)
    return values


def glued_values_of(doc: str, build: Path) -> dict[str, str]:
    """Name -> text/plain of what chapter ``doc`` glued, as the last build kept it: myst-nb takes the glue
    outputs out of the notebook it writes (``jupyter_execute/<doc>.ipynb``) into ``<doc>.glue.json``."""
    values = {}
    executed = build / "jupyter_execute" / f"{doc}.ipynb"
    if executed.is_file():
        values.update(glued_values(json.loads(executed.read_text(encoding="utf-8"))))
    stored = build / "jupyter_execute" / f"{doc}.glue.json"
    if stored.is_file():
        for name, output in json.loads(stored.read_text(encoding="utf-8")).items():
            plain = output.get("data", {}).get("text/plain", "")
            values[name] = plain if isinstance(plain, str) else "".join(plain)
    return values


def merge_adjacent_streams(outputs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stream outputs that follow one another (the glue outputs that stood between them taken out) as one."""
    kept: list[dict[str, Any]] = []
    for output in outputs:
        previous = kept[-1] if kept else None
        if (output.get("output_type") == "stream" and previous is not None
                and previous.get("output_type") == "stream" and previous.get("name") == output.get("name")):
            previous["text"] = _source({"source": previous["text"]}) + _source({"source": output["text"]})
            continue
        kept.append(output)
    return kept


def readable_number(value: float) -> str:
    """A float as prose shows it: at most 6 significant digits, tiny and huge ones as 8.88e-16."""
    if value == 0 or value != value or value in (float("inf"), float("-inf")):
        return str(value)
    text = repr(value)
    digits = re.sub(r"^0*", "", text.lstrip("-").replace(".", "").split("e")[0])
    if len(digits) <= 6:
        return text
    return format(value, ".3g" if abs(value) < 1e-4 or abs(value) >= 1e7 else ".6g")


def readable(value: object) -> str:
    """A glued value as words: yes/no for a boolean (not Python's True), numbers by ``readable_number``,
    lists and tuples item by item; anything else as ``str`` (what myst-nb shows)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return readable_number(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(readable(v) for v in value) + "]"
    return str(value)


def glue_text(plain: str, spec: str | None = None) -> str:
    """What the site shows for ``{glue:text}`name:spec```: the glued text/plain read back as a Python value,
    formatted with ``spec`` as myst-nb does, or without one for reading (``readable``). A list or tuple takes
    ``spec`` item by item (``{glue:text}`probs:.4f``` shows ``[0.6590, 0.2424, 0.0986]``), so that the prose
    can print a number as the chapter's own tables do, trailing zeros included."""
    try:
        value = ast.literal_eval(plain)
    except (SyntaxError, ValueError):
        value = plain
    if spec and spec != "s":
        from myst_nb.core.variables import format_plain_text

        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(format_plain_text(repr(item), spec) for item in value) + "]"
        return format_plain_text(plain, spec)
    return readable(value)


def title_of(doc: str, root: Path) -> str:
    source = root / f"{doc}.md"
    for line in source.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    raise ValueError(f"{source} has no '# ' title")


def _source(cell: Mapping[str, Any]) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


# ---------------------------------------------------------------- code cells


def _uses_glue(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "glue" for n in ast.walk(node))


def _glue_only(statement: ast.stmt) -> bool:
    """A statement that exists for the build only: a ``glue(...)`` call, or a loop/if of nothing else."""
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
        function = statement.value.func
        return isinstance(function, ast.Name) and function.id == "glue"
    if isinstance(statement, (ast.For, ast.If, ast.With)) and not getattr(statement, "orelse", None):
        return all(_glue_only(s) for s in statement.body)
    return False


def _imports_myst_nb(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Try) and any(
        isinstance(n, ast.ImportFrom) and (n.module or "").startswith("myst_nb") for n in ast.walk(statement)
    )


def strip_build_code(source: str) -> str:
    """The code without the myst_nb import block and the glue calls; an error if glue is used otherwise."""
    tree = ast.parse(source)
    drop: set[int] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for statement in statements:
            if _imports_myst_nb(statement) or _glue_only(statement):
                # a parsed statement has its end_lineno
                drop.update(range(statement.lineno, statement.end_lineno + 1))  # type: ignore[operator]
            elif not _uses_glue(statement):
                continue
            elif isinstance(statement, (ast.For, ast.While, ast.If, ast.With, ast.Try, ast.FunctionDef)):
                bodies = [statement.body, getattr(statement, "orelse", []), getattr(statement, "finalbody", [])]
                bodies += [handler.body for handler in getattr(statement, "handlers", [])]
                if any(_uses_glue(n) for n in ast.iter_child_nodes(statement) if not isinstance(n, ast.stmt)):
                    raise ValueError(f"glue is used in a way the student notebook cannot remove:\n{ast.unparse(statement)}")
                for body in bodies:
                    if body and all(_glue_only(s) for s in body):
                        raise ValueError(f"a block holds only glue calls:\n{ast.unparse(statement)}")
                    visit(body)
            else:
                raise ValueError(f"glue is used in a way the student notebook cannot remove:\n{ast.unparse(statement)}")

    visit(tree.body)
    lines = [line for number, line in enumerate(source.splitlines(), 1) if number not in drop]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n\n", text)  # a removed block leaves at most two blank lines
    return text.strip("\n")


def _clean_outputs(outputs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Outputs without the glue ones, the stream outputs they split joined again."""
    return merge_adjacent_streams([copy.deepcopy(o) for o in outputs if not is_glue_output(o)])


# ---------------------------------------------------------------- markdown cells


class Chapter:
    def __init__(self, doc: str, root: Path, base: str, glued: dict[str, str]) -> None:
        self.doc, self.root, self.base, self.glued = doc, root, base, glued
        match = re.match(r"(\d\d)-", Path(doc).name)
        self.number = int(match.group(1)) if match else None
        self.exercises: dict[str, str] = {}  # label -> "Exercise 5.1"
        self.solutions: list[tuple[str, str]] = []  # (label of the exercise, body)

    # -- roles

    def resolve_roles(self, text: str) -> str:
        def glue(match: re.Match[str]) -> str:
            name, spec = match.group(1), match.group(2)
            if name not in self.glued:
                raise KeyError(f"{self.doc}: no glued value {name!r} (is the build up to date?)")
            return glue_text(self.glued[name], spec)

        def doc(match: re.Match[str]) -> str:
            title, target = (match.group(1), match.group(2)) if match.group(2) else (None, match.group(3))
            target = target.strip()
            path = target.lstrip("/") if target.startswith("/") else str(Path(self.doc).parent / target)
            return f"[{title or title_of(path, self.root)}]({page_url(path, self.base)})"

        return DOC_ROLE.sub(doc, GLUE_ROLE.sub(glue, text))

    # -- fences

    def exercise_name(self, label: str | None) -> str:
        name = f"Exercise {self.number}.{len(self.exercises) + 1}" if self.number else f"Exercise {len(self.exercises) + 1}"
        self.exercises[label or f"unlabelled-{len(self.exercises)}"] = name
        return name

    def fence(self, name: str, argument: str, options: dict[str, str], body: str) -> str:
        body = body.strip("\n")
        if name == "solution":
            self.solutions.append((argument.strip(), body))
            return ""
        if name == "exercise":
            label = options.get("label")
            heading = self.exercise_name(label) + (f": {argument}" if argument else "")
            anchor = f'<a id="{label}"></a>\n' if label else ""
            return f"{anchor}**{heading}.**\n\n{body}"
        title = argument or {"seealso": "See also", "note": "Note", "tip": "Tip", "warning": "Warning"}.get(name, name.title())
        quoted = "\n".join(f"> {line}" if line else ">" for line in f"**{title}**\n\n{body}".splitlines())
        return quoted

    def rewrite_fences(self, text: str) -> str:
        out: list[str]
        lines, out, i = text.split("\n"), [], 0
        while i < len(lines):
            match = FENCE_OPEN.match(lines[i])
            if not match:
                out.append(lines[i])
                i += 1
                continue
            colons, name, argument = match.groups()
            i += 1
            options: dict[str, str] = {}
            while i < len(lines) and OPTION.match(lines[i]):
                key, value = OPTION.match(lines[i]).groups()  # type: ignore[union-attr]  # it matched just above
                options[key] = value
                i += 1
            body: list[str]
            body, depth = [], 1
            while i < len(lines):
                line = lines[i]
                if FENCE_OPEN.match(line) and FENCE_OPEN.match(line).group(1) == colons:  # type: ignore[union-attr]
                    depth += 1
                elif line.strip() == colons:
                    depth -= 1
                    if depth == 0:
                        break
                body.append(line)
                i += 1
            else:
                raise ValueError(f"{self.doc}: a :::{{{name}}} fence is not closed")
            i += 1  # the closing fence
            out.append(self.fence(name, argument.strip(), options, self.rewrite_fences("\n".join(body))))
        return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip("\n")

    def interactive_figure(self, match: re.Match[str]) -> str:
        block = match.group(1)
        anchor = re.search(r'<figure[^>]*\sid="([^"]+)"', block)
        caption = re.search(r"<figcaption[^>]*>(.*?)</figcaption>", block, re.S)
        text = html.unescape(re.sub(r"<[^>]+>", "", caption.group(1))).strip() if caption else "Interactive figure."
        text = re.sub(r"^Interactive figure\.\s*", "", text)
        link = page_url(self.doc, self.base, anchor.group(1) if anchor else "")
        return (f"*Interactive figure.* {text} It needs the course site's JavaScript, so it is not in this "
                f"notebook: [try it on the site]({link}).")

    def markdown(self, text: str) -> str:
        text = RAW_HTML.sub(self.interactive_figure, text)
        return self.resolve_roles(self.rewrite_fences(text))

    def solutions_cells(self) -> list[dict[str, Any]]:
        if not self.solutions:
            return []
        cells = [{"cell_type": "markdown", "metadata": {}, "source":
                  "## Solutions\n\nTry each exercise before you read its solution."}]
        for label, body in self.solutions:
            name = self.exercises.get(label, "Exercise")
            link = f"[{name}](#{label})" if label in self.exercises else name
            cells.append({"cell_type": "markdown", "metadata": {},
                          "source": self.resolve_roles(f"### Solution to {name}\n\nBack to {link}.\n\n{body}")})
        return cells


def student_notebook(notebook: dict[str, Any], doc: str, glued: dict[str, str], root: Path = ROOT,
                     base: str | None = None, keep_outputs: bool = True) -> dict[str, Any]:
    """The notebook a student gets for chapter ``doc`` (e.g. ``book/05-softmax``); ``notebook`` is left as it is."""
    notebook = json.loads(json.dumps(notebook))  # a plain, independent copy (nbformat nodes included)
    chapter = Chapter(doc, root, base or site_url(root), glued)
    cells = []
    for cell in notebook["cells"]:
        metadata = cell.get("metadata", {})
        if cell["cell_type"] == "code":
            if "remove-cell" in metadata.get("tags", []):
                continue
            source = strip_build_code(_source(cell))
            if not source.strip():
                continue
            cell["source"] = source
            cell["outputs"] = _clean_outputs(cell.get("outputs", [])) if keep_outputs else []
            if not keep_outputs:
                cell["execution_count"] = None
        elif cell["cell_type"] == "markdown":
            source = chapter.markdown(_source(cell))
            if not source.strip():
                continue
            cell["source"] = source
        cells.append(cell)
    for extra in chapter.solutions_cells():
        extra["id"] = f"solutions-{len(cells)}"
        cells.append(extra)
    notebook["cells"] = cells
    notebook.get("metadata", {}).pop("jupytext", None)
    return notebook


def paired_notebook(doc: str, root: Path = ROOT, build: Path | None = None) -> NotebookNode:
    """``book/NN-*.ipynb`` as ``make notebooks`` writes it: the chapter's cells, no outputs, numbers from the build."""
    import jupytext
    import nbformat

    build = build or root / "_build"
    executed = build / "jupyter_execute" / f"{doc}.ipynb"
    if not executed.is_file():
        raise SystemExit(f"{executed} is missing: run `course build` first (make notebooks does)")
    source = jupytext.read(root / f"{doc}.md")
    source.metadata.pop("jupytext", None)
    notebook = student_notebook(json.loads(nbformat.writes(source)), doc, glued_values_of(doc, build), root,
                                keep_outputs=False)
    for index, cell in enumerate(notebook["cells"]):  # ids that stay the same from one `make notebooks` to the next
        cell["id"] = hashlib.sha1(f"{doc}:{index}:{cell['cell_type']}".encode()).hexdigest()[:8]
    return nbformat.from_dict(notebook)


def chapters(root: Path = ROOT) -> list[str]:
    return sorted(f"book/{p.stem}" for p in (root / "book").glob("[0-9][0-9]-*.md"))


def main(argv: Sequence[str] | None = None) -> None:
    import nbformat

    root = ROOT
    for doc in chapters(root):
        nbformat.write(paired_notebook(doc, root), root / f"{doc}.ipynb")
    print(f"make notebooks: wrote {len(chapters(root))} chapter notebooks in book/")


if __name__ == "__main__":
    sys.exit(main())  # type: ignore[func-returns-value]  # None: exit status 0
