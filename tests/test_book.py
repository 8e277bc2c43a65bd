"""The built site: every chapter executed, its headline numbers, its figures."""
import ast
import json
import math
import os
import re
import subprocess
import sys
import sysconfig
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from course.data import load_names


def toc_chapters(root):
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    return [c["file"] for part in toc["parts"] for c in part["chapters"]]


def numbered_chapters(root):
    """The lectures, book/NN-*.md, in the order of the table of contents."""
    return [c for c in toc_chapters(root) if re.fullmatch(r"book/\d\d-[\w-]+", c)]


CHAPTER_COUNT = 13


def glued(built_site, chapter):
    path = built_site / "jupyter_execute" / f"{chapter}.glue.json"
    assert path.is_file(), f"{path} missing: the chapter glued no numbers or did not execute"
    values = {}
    for key, output in json.loads(path.read_text()).items():
        text = output["data"]["text/plain"]
        values[key] = ast.literal_eval(text)
    return values


# The headline numbers of the course, as the foundation issue and the course-completion issue state them.
EXPECTED = {
    "book/01-why-probability": {"inside_2sigma": 0.975},
    "book/02-random-variables": {"die_mean": 3.5, "die_var": 2.9167},
    "book/03-distributions": {
        "gauss_68": 0.6827, "gauss_95": 0.9545, "gauss_997": 0.9973,
        "xavier_std": 0.0625, "he_std": 0.0884,
        "bernoulli_mean": 0.3, "bernoulli_var": 0.21, "binom_p5": 0.2461,
        "gauss_pdf_table": [0.054, 0.242, 0.3989, 0.242, 0.054],
    },
    "book/04-bayes": {"bayes_posterior": 0.1667},
    "book/05-softmax": {
        "softmax_t1": [0.6590, 0.2424, 0.0986], "softmax_t05": [0.8638, 0.1169, 0.0193],
        "softmax_t2": [0.5017, 0.3043, 0.1940], "softmax_t5": [0.3996, 0.3272, 0.2733],
    },
    "book/06-maximum-likelihood": {
        "mle_numeric": 0.8, "mle_analytic": 0.8,
        "likelihood_8_heads_p5": 0.0439, "likelihood_8_heads_p8": 0.302,
    },
    "book/07-gaussian-nll-mse": {"nll_quadratic_coeff": 0.125, "robust_losses_match_torch": True},
    "book/08-cross-entropy": {
        "ce_value": 0.4170, "ce_grad": [-0.3410, 0.2424, 0.0986], "ce_grad_autograd_match": True,
        "neglog_table": [0.0101, 0.3567, 0.6931, 2.3026, 4.6052, 6.9078],
        "batch3_torch_match": True,
    },
    "book/09-bce": {
        "bce_value": 0.476700, "bce_torch_match": True,
        "bce_lab_value": 0.253, "bce_equals_bernoulli_nll": True,
        # Significant figures: the gradient is -0.99995, not -1.0.
        "bce_grad_at_minus10": -0.99995, "mse_grad_at_minus10": -9.079e-05,
    },
    "book/10-entropy-kl": {
        "entropy_bits": 0.469, "entropy_nats": 0.3251, "ce_equals_h_plus_kl": True,
        "ce_bits_series": [0.522, 0.637, 0.795, 1.0, 1.263, 1.615, 2.122, 3.005],
        "three_outcome_h_kl_ce": [0.8018, 0.0851, 0.8869],
    },
    "book/11-bigram": {"bigram_init_loss_zero": 3.2958},
    "book/12-gradient-descent": {"gd_diverged_rates": [1.05], "sgd_matches_manual": True},
    "book/13-optimizers": {
        "optimizers_match_torch": True, "adam_uncorrected_first_step": 3.1623,
        "zero_grad_accumulation": [3.0, 3.0],
    },
}


def same(actual, expected):
    if isinstance(expected, bool):
        return actual is expected
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(map(same, actual, expected))
    return isinstance(actual, (int, float)) and math.isclose(actual, expected, abs_tol=5e-7)


@pytest.mark.parametrize("chapter", sorted(EXPECTED))
def test_headline_numbers_come_from_executed_code(built_site, chapter):
    values = glued(built_site, chapter)
    for key, expected in EXPECTED[chapter].items():
        assert key in values, f"{chapter} does not glue {key!r}"
        assert same(values[key], expected), f"{chapter}: {key} = {values[key]!r}, expected {expected!r}"


def test_simulations_agree_with_the_exact_values(built_site):
    assert abs(glued(built_site, "book/02-random-variables")["lln_mean"] - 3.5) < 0.02
    assert abs(glued(built_site, "book/03-distributions")["gauss_68_sampled"] - 0.6827) < 0.002
    assert abs(glued(built_site, "book/04-bayes")["bayes_posterior_simulated"] - 0.1667) < 0.01
    mle = glued(built_site, "book/06-maximum-likelihood")
    assert mle["mle_numeric"] == pytest.approx(mle["mle_analytic"], abs=1e-3)
    fits = glued(built_site, "book/07-gaussian-nll-mse")
    assert fits["fit_slope_mse"] == pytest.approx(fits["fit_slope_nll"], abs=1e-3)
    kl = glued(built_site, "book/10-entropy-kl")
    assert kl["kl_min_random"] >= 0 and kl["kl_pq"] != kl["kl_qp"]
    gd = glued(built_site, "book/12-gradient-descent")["gd_final_loss"]
    assert gd[-1] > 25 and all(loss < 25 for loss in gd[:-1])
    assert abs(glued(built_site, "book/03-distributions")["clt_within_1sd"] - 0.6827) < 0.01


def test_bigram_model_on_real_census_names(built_site):
    values = glued(built_site, "book/11-bigram")
    # The chapter reads the names package itself (it must run without `course`): same list.
    assert values["names_count"] == len(load_names()) > 5000
    assert values["bigram_perplexity"] == pytest.approx(math.exp(values["bigram_count_nll"]), rel=1e-3)
    # Trained with minibatches on the training names, the network reaches the count model's NLL there.
    assert abs(values["bigram_torch_nll"] - values["bigram_count_train_nll"]) < 0.05
    # Held-out names are scored too, and are a little harder than the training names.
    assert values["bigram_torch_nll"] < values["bigram_torch_dev_nll"] < math.log(27)
    assert abs(values["bigram_torch_dev_nll"] - values["bigram_count_dev_nll"]) < 0.05
    assert abs(values["bigram_torch_test_nll"] - values["bigram_torch_dev_nll"]) < 0.1
    # A uniform model over 27 symbols scores log(27) = 3.30 nats; real structure does better.
    assert 1.5 < values["bigram_count_nll"] < math.log(27)
    # Zero weights start at the uniform baseline; randn weights start confidently wrong, above it.
    assert values["bigram_init_loss_randn"] > values["bigram_init_loss_zero"] == pytest.approx(math.log(27), abs=1e-4)
    # One name, two units: perplexity = e^nats = 2^bits.
    assert values["emma_nll_bits"] == pytest.approx(values["emma_nll_nats"] / math.log(2), abs=1e-3)
    assert values["emma_perplexity"] == pytest.approx(math.exp(values["emma_nll_nats"]), rel=1e-3)
    assert values["emma_perplexity"] == pytest.approx(2 ** values["emma_nll_bits"], rel=1e-3)
    assert values["emma_perplexity"] > values["bigram_perplexity"]   # as the chapter says


def test_worked_examples_agree_with_their_definitions(built_site):
    fits = glued(built_site, "book/07-gaussian-nll-mse")["robust_fits"]
    mse_fit, mae_fit, huber_fit = fits
    assert mse_fit == pytest.approx(2.84, abs=1e-4)   # the mean of the five measurements
    assert mae_fit == pytest.approx(1.1, abs=1e-4)    # their median
    assert mae_fit < huber_fit < mse_fit
    batch3 = glued(built_site, "book/08-cross-entropy")["batch3_ce"]
    rows = [[2.0, 1.0, 0.1], [0.5, 2.5, 0.3], [1.2, 0.8, 3.0]]
    expected = sum(math.log(sum(map(math.exp, row))) - row[t] for row, t in zip(rows, [0, 1, 0])) / 3
    assert batch3 == pytest.approx(expected, abs=1e-6)
    h, ce, kl = glued(built_site, "book/10-entropy-kl")["first_letter_bits"]
    assert ce == pytest.approx(math.log2(26), abs=1e-4) and kl == pytest.approx(ce - h, abs=2e-4)
    assert 3.5 < h < math.log2(26)
    names = load_names()
    counts = [sum(n[0] == c for n in names) for c in "abcdefghijklmnopqrstuvwxyz"]
    entropy = -sum(k / len(names) * math.log2(k / len(names)) for k in counts if k)
    assert h == pytest.approx(entropy, abs=1e-4)
    gd = glued(built_site, "book/12-gradient-descent")["gd_final_loss"]
    # lr = 0.1 and 0.9 end at 25 * 0.8^100, not at a rounded 0.0; lr = 0.5 lands exactly on 0.
    assert gd[1] == gd[3] == pytest.approx(25 * 0.8**100, rel=1e-3) and gd[2] == 0.0


def test_optimizers_from_scratch_match_torch_optim(built_site):
    values = glued(built_site, "book/13-optimizers")
    assert values["optimizers_match_torch"] is True
    assert 0 <= values["optimizer_max_gap"] < 1e-12
    # Minibatch noise falls like 1/sqrt(batch size).
    assert values["minibatch_noise_slope"] == pytest.approx(-0.5, abs=0.05)
    gd, momentum, rmsprop, adam = values["quadratic_final_losses"]
    assert momentum < gd / 100 and rmsprop < gd / 100


def test_the_toc_lists_every_chapter_and_the_notation_page(root):
    assert len(numbered_chapters(root)) == CHAPTER_COUNT
    assert "book/13-optimizers" in numbered_chapters(root)
    assert "book/notation" in toc_chapters(root)


@pytest.mark.parametrize("chapter_index", range(CHAPTER_COUNT))
def test_every_chapter_executed_without_error_and_shows_figures(root, built_site, chapter_index):
    chapter = numbered_chapters(root)[chapter_index]
    notebook = json.loads((built_site / "jupyter_execute" / f"{chapter}.ipynb").read_text())
    code_cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert code_cells, f"{chapter} has no code cells"
    assert all(c.get("execution_count") for c in code_cells), f"{chapter}: a code cell did not execute"
    errors = [o for c in code_cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, f"{chapter}: {errors[0]['ename']}: {errors[0]['evalue']}"

    page = PageParser.parse(built_site / "html" / f"{chapter}.html")
    figures = [img for img in page.images if "/_images/" in "/" + img.get("src", "")]
    assert figures, f"{chapter} shows no figure"
    for img in figures:
        assert len(img.get("alt", "").strip()) > 20, f"{chapter}: figure {img['src']} has no real alt text"
    for heading in ("Common mistakes", "Exercise", "Checkpoint"):
        assert heading in page.headings, f"{chapter} has no '{heading}' section"
    assert "admonition" in page.classes and "tip" in page.classes, f"{chapter} has no intuition box"
    assert "solution" in page.classes and "dropdown" in page.classes, f"{chapter}: no hidden exercise solution"


def test_figures_have_titles_and_axis_labels(root):
    """Each plotting cell sets a title and labels both axes (checked in the source)."""
    for chapter in numbered_chapters(root):
        source = (root / f"{chapter}.md").read_text()
        for cell in re.findall(r"```\{code-cell\}.*?```", source, flags=re.S):
            if "plt.show()" not in cell:
                continue
            assert "alt:" in cell, f"{chapter}: a figure cell without alt text"
            assert re.search(r"set_title|suptitle|title\(", cell), f"{chapter}: a figure without a title"
            assert re.search(r"set_xlabel|xlabel\(|supxlabel", cell), f"{chapter}: a figure without an x label"
            assert re.search(r"set_ylabel|ylabel\(|supylabel", cell), f"{chapter}: a figure without a y label"


def test_names_loader_reads_the_census_lists():
    names = load_names()
    assert len(names) == len(set(names)) > 5000
    assert names[:2] == ["james", "john"] or "mary" in names[:5]
    assert all(n.isalpha() and n.islower() for n in names)


def test_names_loader_names_the_bad_file_and_line(tmp_path):
    (tmp_path / "dist.female.first").write_text("MARY 2.629 2.629 1\nBROKEN LINE\n")
    with pytest.raises(ValueError, match=r"dist\.female\.first, line 2"):
        load_names(files=("dist.female.first",), folder=tmp_path)


@pytest.mark.parametrize("chapter_index", range(CHAPTER_COUNT))
def test_every_chapter_has_objectives_notation_reading_practice_and_exercises(root, built_site, chapter_index):
    chapter = numbered_chapters(root)[chapter_index]
    source = (root / f"{chapter}.md").read_text()
    page = PageParser.parse(built_site / "html" / f"{chapter}.html")
    for words in ("Learning objectives", "Prerequisites", "Practise this chapter"):
        assert words in page.text, f"{chapter} has no '{words}'"
    assert "Further reading" in page.headings, f"{chapter} has no further reading"
    assert any(href.split("#")[0] == "notation.html" for href in page.links), f"{chapter} does not link the notation page"
    assert any(href.startswith("assignments/") for href in page.links), f"{chapter} links no assignment"
    exercises = re.findall(r"^:::\{exercise\}\n:label: [\w-]+\n\n(.*)$", source, flags=re.M)
    assert len(exercises) >= 2, f"{chapter} has {len(exercises)} exercise(s)"
    assert any(re.match(r"\*(Derivation|Predict)", first) for first in exercises), (
        f"{chapter}: no exercise is a derivation or a prediction"
    )


def test_one_notation_truth_p_model_q_and_one_meaning_per_symbol(root):
    for chapter in numbered_chapters(root):
        source = (root / f"{chapter}.md").read_text()
        assert "H(q, p)" not in source, f"{chapter}: cross-entropy with the model first"
        assert not re.search(r"= p - q\b", source), f"{chapter}: gradient written as truth minus model"
        if chapter != "book/06-maximum-likelihood":
            # The likelihood's symbol; chapter 1 once used it for the NLL.
            assert r"\mathcal{L}" not in source, f"{chapter} uses the likelihood's symbol"
    cross_entropy = (root / "book/08-cross-entropy.md").read_text()
    assert r"q = \operatorname{softmax}(z)" in cross_entropy and "H(P, Q)" in cross_entropy
    assert r"= q - p." in cross_entropy
    notation = (root / "book/notation.md").read_text()
    assert "P, Q model" in notation or "P is the truth, Q is the model" in notation


def test_a_chapter_notebook_runs_without_course_and_myst_nb(root, tmp_path):
    """A chapter converted to .ipynb (as a reader downloads it) runs in a kernel whose Python lacks both."""
    import jupytext
    import nbclient

    # A site folder holding everything the environment has, except myst_nb and the course package.
    site_packages = Path(sysconfig.get_paths()["purelib"])
    filtered = tmp_path / "site-packages"
    filtered.mkdir()
    excluded = re.compile(r"(myst_nb|__editable__|prob2loss|course)", re.I)
    for entry in site_packages.iterdir():
        if not excluded.search(entry.name):
            (filtered / entry.name).symlink_to(entry)
    # -S: no site-packages but the filtered one; the kernel starts in tmp_path, not the repository.
    python = [sys.executable, "-S", "-c", f"import site; site.addsitedir({str(filtered)!r}); "
              "from ipykernel import kernelapp; kernelapp.launch_new_instance()"]
    env_dirs = {name: tmp_path / name.lower() for name in (
        "JUPYTER_PATH", "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "IPYTHONDIR", "MPLCONFIGDIR")}
    for folder in env_dirs.values():
        folder.mkdir()
    kernel_dir = env_dirs["JUPYTER_PATH"] / "kernels" / "without-course"
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(json.dumps({
        "argv": python + ["-f", "{connection_file}"], "display_name": "without course", "language": "python",
    }))
    env = {**os.environ, **{k: str(v) for k, v in env_dirs.items()}, "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)

    probe = subprocess.run(
        python[:2] + ["-c", f"import site; site.addsitedir({str(filtered)!r}); import importlib.util as u; "
                      "print([u.find_spec(m) is None for m in ('course', 'myst_nb', 'names', 'torch')])"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[True, True, False, False]", probe.stdout + probe.stderr

    notebook = jupytext.read(root / "book/11-bigram.md")
    notebook.metadata["kernelspec"] = {"name": "without-course", "display_name": "without course", "language": "python"}
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k in env_dirs or k == "PYTHONNOUSERSITE"})
    try:
        client = nbclient.NotebookClient(notebook, kernel_name="without-course", timeout=600,
                                         resources={"metadata": {"path": str(tmp_path)}})
        client.execute(env=env)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert code_cells and all(c.execution_count for c in code_cells)
    printed = "".join(o.get("text", "") for c in code_cells for o in c.outputs if o.output_type == "stream")
    assert f"{len(load_names())} names" in printed


class PageParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.headings, self.classes = [], set(), set()
        self.links, self.text = [], ""
        self._heading = None

    @classmethod
    def parse(cls, path):
        parser = cls()
        parser.feed(path.read_text(encoding="utf-8"))
        return parser

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.classes.update((attrs.get("class") or "").split())
        if tag == "img":
            self.images.append(attrs)
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if re.fullmatch(r"h[1-6]", tag):
            self._heading = ""

    def handle_endtag(self, tag):
        if re.fullmatch(r"h[1-6]", tag) and self._heading is not None:
            # Without the chapter and section numbers the numbered table of contents adds ("1.3. ").
            self.headings.add(re.sub(r"^\d+(\.\d+)*\.?\s+", "", self._heading.strip().rstrip("#").strip()))
            self._heading = None

    def handle_data(self, data):
        self.text += data
        if self._heading is not None:
            self._heading += data


@pytest.mark.parametrize("chapter_index", range(CHAPTER_COUNT))
def test_a_chapter_imports_nothing_a_reader_lacks(root, chapter_index):
    """A downloaded chapter runs in plain Jupyter or Colab: no `course` import, and `myst_nb` only with a fallback."""
    import jupytext

    chapter = sorted((root / "book").glob("[0-9][0-9]-*.md"))[chapter_index]
    code = "\n".join(c.source for c in jupytext.read(chapter).cells if c.cell_type == "code")
    assert not re.search(r"^\s*(from|import)\s+course\b", code, re.M), f"{chapter.name} imports the course package"
    for match in re.finditer(r"^(\s*)(from myst_nb import|import myst_nb)", code, re.M):
        before = code[:match.start()].rstrip().splitlines()
        assert match.group(1) and before and before[-1].strip() == "try:", \
            f"{chapter.name}: myst_nb is imported without a fallback"
