"""The assignments: released notebooks, hidden references, and grading through the standard nbgrader commands."""
import importlib.util
import json
import math
import re
import subprocess
import sys

import nbformat
import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
import torch.nn.functional as F

from chapter_links import CHAPTER_LINK
from course.judge import array_from_reference, load_hidden_checks
from course.student_notebook import site_url
from grading_support import (ASSIGNMENTS, MISTAKES, ROOT, feedback_html, make_course, max_points, nbgrader,
                             written_points, replace_function, scores, solution_notebook, student_version, submit)


def load_make_references():
    spec = importlib.util.spec_from_file_location("make_references", ROOT / "grader_tests" / "make_references.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_references = load_make_references()

REQUIRED = ["softmax", "binary_cross_entropy", "kl_divergence", "bigram_nll", "cross_entropy"]


def graded_cells(notebook):
    """The autograded test cells (a written answer is graded, and by hand: not one of these)."""
    return [c for c in notebook.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
            and not c.metadata["nbgrader"].get("solution")]


def answer_cells(notebook):
    """The functions a student writes."""
    return [c for c in notebook.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")]


def test_required_functions_and_at_least_16_graded_functions():
    names = set()
    for assignment in ASSIGNMENTS:
        notebook = solution_notebook(assignment)
        answers = [c.metadata["nbgrader"]["grade_id"] for c in answer_cells(notebook)]
        tests = [c.metadata["nbgrader"]["grade_id"] for c in graded_cells(notebook)]
        assert tests == [f"test_{a}" for a in answers], f"{assignment}: every function needs its own test cell, in order"
        assert all(c.metadata["nbgrader"]["points"] > 0 for c in graded_cells(notebook))
        names.update(answers)
    assert set(REQUIRED) <= names
    assert len(names) >= 16


def test_every_graded_cell_has_a_hidden_check_and_nothing_else_does():
    for assignment in ASSIGNMENTS:
        tests = {c.metadata["nbgrader"]["grade_id"] for c in graded_cells(solution_notebook(assignment))}
        assert set(load_hidden_checks(assignment)) == tests, assignment


def test_stubs_document_formula_shapes_returns_edge_cases_and_example():
    for assignment in ASSIGNMENTS:
        for cell in answer_cells(solution_notebook(assignment)):
            doc = cell.source.split('"""')[1]
            for parts in (("Formula", "Algorithm"), ("Args",), ("Returns",), ("Edge cases",), ("Example",)):
                assert any(p in doc for p in parts), f"{assignment}/{cell.metadata.nbgrader.grade_id}: docstring lacks {parts[0]}"


def test_references_are_reproducible(tmp_path):
    """Regenerated on this CPU, the references equal the committed ones: the same checks, cases, inputs
    and shapes, inputs within make_references.REPRODUCIBLE_RTOL (last-bit differences between CPUs), and
    computed values within the stability rule's share of their judge's tolerance."""
    subprocess.run([sys.executable, str(ROOT / "grader_tests" / "make_references.py"), str(tmp_path)], check=True, capture_output=True)
    for assignment in ASSIGNMENTS:
        fresh = json.loads((tmp_path / f"{assignment}.json").read_text())
        committed = json.loads((ROOT / "grader_tests" / "references" / f"{assignment}.json").read_text())
        found = make_references.changes(fresh, committed)
        assert not found, (f"grader_tests/references/{assignment}.json is stale (run grader_tests/make_references.py):\n"
                           + "\n".join(found[:20]))


def test_reference_comparison_allows_last_bit_noise_and_nothing_else():
    committed = {"checks": {"test_f": [{"args": [{"data": [1.5, -2.25e-3, 0.0], "dtype": "float64", "shape": [3]}],
                                        "expected": -1.1379052745137685, "tolerance": {"rtol": 1e-7}, "case": "n=3",
                                        "special": [float("-inf"), float("nan")], "count": 7, "flag": True}]}}
    assert make_references.differences(json.loads(json.dumps(committed)), committed) == []
    noisy = json.loads(json.dumps(committed))
    noisy["checks"]["test_f"][0]["expected"] = -1.1379052745137683  # 1 ulp: another CPU's libm
    assert make_references.differences(noisy, committed) == []

    def changed(edit):
        other = json.loads(json.dumps(committed))
        edit(other["checks"]["test_f"][0])
        return make_references.differences(other, committed)

    assert changed(lambda case: case.update(expected=-1.13790527451))  # a real change of value
    assert changed(lambda case: case["args"][0].update(shape=[1, 3]))  # shape
    assert changed(lambda case: case["args"][0]["data"].append(1.0))  # inputs
    assert changed(lambda case: case.update(case="n=4"))  # case name
    assert changed(lambda case: case.update(count=8))  # integers exactly
    assert changed(lambda case: case.update(flag=1))  # a bool is not an int
    assert changed(lambda case: case["special"].__setitem__(0, float("inf")))  # -inf is not +inf
    assert changed(lambda case: case["special"].__setitem__(1, 0.0))  # nan is not a number
    assert changed(lambda case: case.pop("tolerance"))  # keys
    assert changed(lambda case: case["args"][0]["data"].__setitem__(2, 1e-12))  # zero stays (nearly) zero


def arrays(case):
    def value(v):
        if isinstance(v, dict) and "data" in v:
            return array_from_reference(v)
        return v
    return [value(a) for a in case["args"]], {k: value(v) for k, v in case.get("kwargs", {}).items()}


def t(x):
    return torch.as_tensor(x, dtype=torch.float64)


def independent(function, args, kwargs):
    """The same quantity computed by torch/scipy (float64), never by our reference code."""
    if function == "softmax":
        return scipy.special.softmax(args[0] / kwargs.get("temperature", 1.0), axis=kwargs.get("axis", -1))
    if function == "logsumexp":
        return scipy.special.logsumexp(args[0], axis=-1)
    if function == "log_softmax":
        return F.log_softmax(t(args[0]), dim=-1).numpy()
    if function == "binary_cross_entropy":
        return F.binary_cross_entropy(t(args[0]).clamp(1e-7, 1 - 1e-7), t(args[1])).item()
    if function == "bce_with_logits":
        return F.binary_cross_entropy_with_logits(t(args[0]), t(args[1])).item()
    if function == "entropy":
        return scipy.stats.entropy(args[0], axis=-1)
    if function == "distribution_cross_entropy":
        return -(scipy.special.xlogy(args[0], args[1])).sum(-1)
    if function == "kl_divergence":
        return F.kl_div(t(args[1]).log(), t(args[0]), reduction="none").sum(-1).numpy()
    if function == "gaussian_log_pdf":
        return scipy.stats.norm.logpdf(args[0], kwargs.get("mu", 0.0), kwargs.get("sigma", 1.0))
    if function == "bernoulli_log_pmf":
        return scipy.stats.bernoulli.logpmf(args[0], args[1])
    if function == "bernoulli_mle":
        return np.mean(args[0])
    if function == "gaussian_nll":
        return -scipy.stats.norm.logpdf(args[0], args[1], kwargs.get("sigma", 1.0)).mean()
    if function == "mse":
        return F.mse_loss(t(args[0]), t(args[1])).item()
    if function == "cross_entropy":
        return F.cross_entropy(t(args[0]), torch.as_tensor(args[1]), reduction=kwargs.get("reduction", "mean")).numpy()
    if function == "cross_entropy_grad":
        z = t(args[0]).requires_grad_(True)
        F.cross_entropy(z, torch.as_tensor(args[1])).backward()
        return z.grad.numpy()
    if function == "perplexity":
        return np.exp(args[0])
    if function == "expectation":
        return scipy.stats.rv_discrete(values=(args[0], args[1])).mean()
    if function == "variance":
        return scipy.stats.rv_discrete(values=(args[0], args[1])).var()
    return None


def test_float64_references_agree_with_torch_and_scipy():
    checked = 0
    for assignment in ASSIGNMENTS:
        for grade_id, cases in load_hidden_checks(assignment).items():
            for case in cases:
                if case.get("parity") or "strings" in case["expected"]:
                    continue
                args, kwargs = arrays(case)
                other = independent(case["function"], args, kwargs)
                if other is None:
                    continue
                want = array_from_reference(case["expected"])
                assert np.allclose(want, other, rtol=1e-10, atol=1e-12, equal_nan=True), f"{assignment}/{case['case']} ({case['about']})"
                checked += 1
    assert checked >= 41


def test_bigram_references_agree_with_an_independent_count():
    checks = load_hidden_checks("a3-bigram")
    words = checks["test_bigram_counts"][0]["args"][0]
    stoi = {c: i for i, c in enumerate(".abcdefghijklmnopqrstuvwxyz")}
    pairs = [(stoi[a], stoi[b]) for w in words for a, b in zip("." + w, w + ".")]
    counts = np.zeros((27, 27))
    np.add.at(counts, tuple(np.array(pairs).T), 1)
    assert np.array_equal(array_from_reference(checks["test_bigram_counts"][0]["expected"]), counts)
    nll_case = checks["test_bigram_nll"][1]
    probs, odd = arrays(nll_case)[0]
    pairs = [(stoi[a], stoi[b]) for w in odd for a, b in zip("." + w, w + ".")]
    expected = -np.mean([math.log(probs[i, j]) for i, j in pairs])
    assert math.isclose(array_from_reference(nll_case["expected"]).item(), expected, rel_tol=1e-12)


def committed_bytes(path):
    """The file as committed (make book regenerates assignments/ in the working tree), else as on disk."""
    shown = subprocess.run(["git", "-C", str(ROOT), "show", f"HEAD:{path}"], capture_output=True)
    return shown.stdout if shown.returncode == 0 else (ROOT / path).read_bytes()


def test_released_assignments_equal_a_fresh_generate_assignment(tmp_path):
    course = make_course(tmp_path / "course")
    for assignment, name in ASSIGNMENTS.items():
        fresh = (course / "assignments" / assignment / name).read_bytes()
        committed = committed_bytes(f"assignments/{assignment}/{name}")
        assert fresh == committed, f"assignments/{assignment}/{name} differs from `nbgrader generate_assignment {assignment}`"
        assert sorted(p.name for p in (ROOT / "assignments" / assignment).iterdir()) == [name]


def test_no_solution_line_reaches_the_released_notebooks():
    for assignment, name in ASSIGNMENTS.items():
        released = (ROOT / "assignments" / assignment / name).read_text()
        for cell in solution_notebook(assignment).cells:
            inside = False
            for line in cell.source.splitlines():
                if "### BEGIN SOLUTION" in line:
                    inside = True
                elif "### END SOLUTION" in line:
                    inside = False
                elif inside and line.strip():
                    assert json.dumps(line)[1:-1] not in released, f"{assignment}: solution line leaked: {line!r}"


def chapter_title(path):
    return re.search(r"^# (.+)$", path.read_text(), re.M).group(1).strip()


def test_notebooks_link_their_chapters_by_title_and_the_links_resolve():
    """Solution notebooks name chapters as links that work in a clone and on GitHub; released notebooks link the
    chapters on the published site (the 16 links work in Jupyter, Colab and on a hub), no relative path left."""
    for assignment, name in ASSIGNMENTS.items():
        for path in (ROOT / "solutions" / assignment / name, ROOT / "assignments" / assignment / name):
            notebook = nbformat.read(path, as_version=4)
            markdown = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
            links = CHAPTER_LINK.findall(markdown)
            assert links, f"{path.relative_to(ROOT)}: links no chapter"
            assert CHAPTER_LINK.search(notebook.cells[0].source), f"{path.relative_to(ROOT)}: the intro links no chapter"
            # No chapter named only by a bare path, as before: `book/NN-....md`.
            assert not re.search(r"`book/\d\d-[\w-]+(\.md)?`", markdown), f"{path.relative_to(ROOT)}: a bare chapter path"
            if path.is_relative_to(ROOT / "assignments"):
                assert not re.search(r"\]\((?!https?://)[^)]*\.md\b", markdown), f"{path.relative_to(ROOT)}: a relative link"
            for text, target, stem in links:
                chapter = ROOT / "book" / f"{stem}.md"
                if path.is_relative_to(ROOT / "solutions"):  # in a clone: the chapter's source
                    assert (path.parent / target).resolve() == chapter and chapter.is_file(), (
                        f"{path.relative_to(ROOT)}: the link {target} does not reach book/{stem}.md")
                else:  # released, opened alone in Jupyter, Colab or on a hub: the published chapter
                    assert target == f"{site_url(ROOT)}book/{stem}.html" and chapter.is_file(), (
                        f"{path.relative_to(ROOT)}: the link {target} is not the published book/{stem}.html")
                assert " ".join(text.split()) == chapter_title(chapter), (
                    f"{path.relative_to(ROOT)}: the link to {stem} reads {text!r}, the chapter is {chapter_title(chapter)!r}")


def test_released_notebooks_have_no_outputs():
    for assignment, name in ASSIGNMENTS.items():
        for path in (ROOT / "solutions" / assignment / name, ROOT / "assignments" / assignment / name):
            notebook = nbformat.read(path, as_version=4)
            assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), path


@pytest.fixture(scope="module")
def graded_course(tmp_path_factory):
    """Reference, untouched release and one typical mistake per function, graded with stock nbgrader commands."""
    course = make_course(tmp_path_factory.mktemp("graded") / "course")
    for assignment in ASSIGNMENTS:
        submit(course, "reference", assignment, student_version(solution_notebook(assignment)))
        submit(course, "untouched", assignment, nbformat.read(course / "assignments" / assignment / ASSIGNMENTS[assignment], as_version=4))
    for assignment, grade_id, wrong, _ in MISTAKES:
        submit(course, f"mistake-{grade_id}", assignment,
               replace_function(student_version(solution_notebook(assignment)), grade_id, wrong.strip()))
    # nbgrader's assignment argument is a glob: every assignment in one run of each command
    nbgrader(course, "autograde", "*")
    nbgrader(course, "generate_feedback", "*")
    nbgrader(course, "export")
    return course


@pytest.mark.slow
@pytest.mark.parametrize("assignment", list(ASSIGNMENTS))
def test_reference_gets_full_marks_and_untouched_release_gets_zero(graded_course, assignment):
    graded = scores(graded_course, assignment)
    points = max_points(assignment)
    assert graded["reference"] == {**points, "_total": sum(points.values())}
    assert graded["untouched"]["_total"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("assignment, grade_id, wrong, words", MISTAKES, ids=[m[1] for m in MISTAKES])
def test_a_typical_mistake_loses_exactly_that_functions_points(graded_course, assignment, grade_id, wrong, words):
    graded = scores(graded_course, assignment)[f"mistake-{grade_id}"]
    points = max_points(assignment)
    expected = {**points, f"test_{grade_id}": 0.0}
    assert {k: v for k, v in graded.items() if k != "_total"} == expected
    assert graded["_total"] == sum(points.values()) - points[f"test_{grade_id}"]
    html = feedback_html(graded_course, f"mistake-{grade_id}", assignment)
    assert words in html, f"the feedback for {grade_id} does not say {words!r}"


@pytest.mark.slow
def test_feedback_never_shows_hidden_inputs_or_reference_values(graded_course):
    for assignment in ASSIGNMENTS:
        references = load_hidden_checks(assignment)
        values = set()
        for cases in references.values():
            for case in cases:
                for v in case.get("expected", {}).get("data", [])[:50]:
                    if isinstance(v, float) and len(repr(v)) >= 12:
                        values.add(repr(v)[:12])
                for a in case.get("args", []):
                    if isinstance(a, dict) and "data" in a:  # not a5's generated inputs (a gradient, names)
                        values.update(repr(v)[:12] for v in a["data"][:50] if isinstance(v, float) and len(repr(v)) >= 12)
        for student in ["untouched"] + [f"mistake-{m[1]}" for m in MISTAKES if m[0] == assignment]:
            html = feedback_html(graded_course, student, assignment)
            leaked = [v for v in values if v in html]
            assert not leaked, f"{student}/{assignment} feedback shows hidden numbers: {leaked[:3]}"


@pytest.mark.slow
def test_torch_feedback_names_the_device(graded_course):
    html = feedback_html(graded_course, "reference", "a4-torch-cross-entropy")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert f"ran on {device}" in html


@pytest.mark.slow
def test_export_writes_every_grade(graded_course):
    rows = (graded_course / "grades.csv").read_text().splitlines()
    assert rows[0].startswith("assignment,duedate,timestamp,student_id")
    reference = [r.split(",") for r in rows[1:] if ",reference," in r]
    assert {r[0]: float(r[-2]) for r in reference} == {a: float(sum(max_points(a).values())) for a in ASSIGNMENTS}
    # the written answers count in the maximum, and score only when graded by hand
    assert {r[0]: float(r[-1]) for r in reference} == {
        a: float(sum(max_points(a).values()) + sum(written_points(a).values())) for a in ASSIGNMENTS}
    assert all(written_points(a) for a in ASSIGNMENTS)


def solution_namespace(assignment):
    """The solution notebook's non-test code cells, executed: the functions and data a student's notebook has."""
    namespace = {}
    for cell in solution_notebook(assignment).cells:
        if cell.cell_type == "code" and not cell.metadata.get("nbgrader", {}).get("grade"):
            exec(compile(cell.source, f"{assignment}:{cell.metadata.get('nbgrader', {}).get('grade_id')}", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("assignment", list(ASSIGNMENTS))
def test_every_docstring_example_runs_as_a_doctest(assignment):
    """The examples students read are exactly what the reference prints (NumPy 2 and torch reprs included)."""
    import doctest

    namespace = solution_namespace(assignment)
    finder, runner = doctest.DocTestFinder(recurse=False), doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    examples = 0
    for cell in answer_cells(solution_notebook(assignment)):
        name = cell.metadata["nbgrader"]["grade_id"]
        for test in finder.find(namespace[name], name, globs=dict(namespace)):
            examples += len(test.examples)
            runner.run(test)
    summary = runner.summarize(verbose=False)
    assert examples >= len(answer_cells(solution_notebook(assignment)))
    assert summary.failed == 0, f"{assignment}: {summary.failed} docstring example(s) print something else (see above)"


def listed_points(text):
    """{function: points} from a Markdown table row like  | `softmax` | ... | 2 |  (page) or `softmax` (2) (README)."""
    rows = re.findall(r"^\| `(\w+)` \|[^\n]*\| (\d+) \|$", text, flags=re.M)
    return {name: int(points) for name, points in rows}


def test_pages_and_readme_list_every_graded_function_with_its_points():
    readme = (ROOT / "README.md").read_text()
    for assignment in ASSIGNMENTS:
        points = {g.removeprefix("test_"): p for g, p in max_points(assignment).items()}
        page = (ROOT / "book" / "assignments" / f"{assignment}.md").read_text()
        assert listed_points(page) == points, f"book/assignments/{assignment}.md: the table of functions and points is stale"
        assert f"**{sum(points.values())}**" in page, f"book/assignments/{assignment}.md: the total is stale"
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{assignment}` |"))
        assert {n: int(p) for n, p in re.findall(r"`(\w+)` \((\d+)", row)} == points, f"README.md: the row of {assignment} is stale"
        written = sum(written_points(assignment).values())
        assert row.endswith(f"| {sum(points.values())} + {written} |"), f"README.md: the total of {assignment} is stale"
        assert f"graded by hand, **{written}** points" in page, f"book/assignments/{assignment}.md: the written answers are stale"


def test_bigram_nll_visible_check_uses_the_chapters_value():
    """a3's visible bound is chapter 11's count-model NLL (rounded as the chapter prints it)."""
    from course.data import load_names

    stoi = {c: i for i, c in enumerate(".abcdefghijklmnopqrstuvwxyz")}
    pairs = np.array([(stoi[a], stoi[b]) for w in load_names() for a, b in zip("." + w, w + ".")])
    counts = np.zeros((27, 27))
    np.add.at(counts, tuple(pairs.T), 1)
    probs = (counts + 1) / (counts + 1).sum(axis=1, keepdims=True)
    chapter_value = round(float(-np.mean(np.log(probs[pairs[:, 0], pairs[:, 1]]))), 4)
    cell = next(c for c in solution_notebook("a3-bigram").cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_bigram_nll")
    assert f"abs(nll - {chapter_value}) < 1e-4" in cell.source


def torch_optim_trajectory(case):
    """Replay an optimizer case with torch.optim itself: [(param, state...), ...] per step, float64."""
    args, kwargs = arrays(case)
    steps = [{k: array_from_reference(v) if isinstance(v, dict) else v for k, v in step.items()} for step in case["chain"]["steps"]]
    weights = t(args[0]).requires_grad_(True)
    if case["function"] == "sgd_momentum_step":
        optimizer = torch.optim.SGD([weights], lr=kwargs["lr"], momentum=kwargs["momentum"])
        if np.any(args[2]):
            optimizer.state[weights]["momentum_buffer"] = t(args[2])
    else:
        optimizer = torch.optim.Adam([weights], **{k: tuple(v) if k == "betas" else v for k, v in kwargs.items()})
        if steps[0]["4"] > 1:
            optimizer.state[weights] = {"step": torch.tensor(float(steps[0]["4"] - 1)), "exp_avg": t(args[2]), "exp_avg_sq": t(args[3])}
    trajectory = []
    for step in steps:
        weights.grad = t(step["1"])
        optimizer.step()
        state = optimizer.state[weights]
        if case["function"] == "sgd_momentum_step":
            trajectory.append([weights.detach().clone(), state.get("momentum_buffer", weights.grad).clone()])
        else:
            assert state["step"].item() == step["4"], "the chain's t must count torch's steps"
            trajectory.append([weights.detach().clone(), state["exp_avg"].clone(), state["exp_avg_sq"].clone()])
    return np.array([[x.numpy() for x in row] for row in trajectory])


def test_a5_optimizer_references_are_torch_optim_over_several_steps():
    checks = load_hidden_checks("a5-training")
    cases = checks["test_sgd_momentum_step"] + checks["test_adam_step"]
    for case in cases:
        want = array_from_reference(case["expected"])
        assert len(case["chain"]["steps"]) >= 3, case["about"]
        assert np.allclose(want, torch_optim_trajectory(case), rtol=1e-12, atol=1e-15), case["about"]
    adam_firsts = [c["chain"]["steps"][0]["4"] for c in checks["test_adam_step"]]
    assert 1 in adam_firsts, "an Adam case starts at t = 1"
    zero_gradient = [c for c in cases if any(not np.any(array_from_reference(s["1"])) for s in c["chain"]["steps"])]
    assert {c["function"] for c in zero_gradient} == {"sgd_momentum_step", "adam_step"}, "both optimizers meet a zero gradient"


def test_a5_training_reference_beats_the_count_model_margin_on_held_out_names():
    """An independent run of train_bigram's recipe (one-hot @ W, log-softmax by hand) and an independent count model."""
    cases = load_hidden_checks("a5-training")["test_train_bigram"]
    stoi = {c: i for i, c in enumerate(".abcdefghijklmnopqrstuvwxyz")}

    def pairs(words):
        return torch.tensor([(stoi[a], stoi[b]) for w in words for a, b in zip("." + w, w + ".")]).T

    xs, ys = pairs(cases[0]["args"][0]["bigram_indices"]["words"])
    steps, batch_size, lr, seed = cases[0]["args"][2:]
    g = torch.Generator().manual_seed(seed)
    W = torch.randn((27, 27), generator=g, dtype=torch.float64, requires_grad=True)
    for _ in range(steps):
        ix = torch.randint(0, len(xs), (batch_size,), generator=g)
        logits = F.one_hot(xs[ix], 27).double() @ W
        loss = -(logits.log_softmax(dim=1)[torch.arange(batch_size), ys[ix]]).mean()
        W.grad = None
        loss.backward()
        with torch.no_grad():
            W -= lr * W.grad
    assert np.allclose(W.detach().numpy(), array_from_reference(cases[0]["expected"]), rtol=cases[0]["rtol"], atol=cases[0]["atol"])
    heldout_xs, heldout_ys = pairs(cases[2]["measure"]["words"])
    heldout_nll = F.cross_entropy(W.detach()[heldout_xs], heldout_ys).item()
    assert math.isclose(heldout_nll, array_from_reference(cases[2]["expected"]).item(), rel_tol=1e-9)
    counts = torch.zeros((27, 27), dtype=torch.float64).index_put_((xs, ys), torch.ones(len(xs), dtype=torch.float64), accumulate=True)
    probs = (counts + 1) / (counts + 1).sum(dim=1, keepdim=True)
    count_nll = -probs[heldout_xs, heldout_ys].log().mean().item()
    margin_case = cases[3]
    assert math.isclose(array_from_reference(margin_case["expected"]).item(), count_nll, rel_tol=1e-12)
    assert margin_case["rtol"] == 0 and f"within {margin_case['atol']} nats" in margin_case["about"]
    assert abs(heldout_nll - count_nll) < margin_case["atol"]
    assert not set(cases[2]["measure"]["words"]) & set(cases[0]["args"][0]["bigram_indices"]["words"]), "held-out names are not trained on"


def test_a2_visible_check_shows_the_clipping_a_zero_probability_needs():
    """The hidden case with probabilities of exactly 0 and 1 passes only with eps = 1e-7; a visible check says so first."""
    released = nbformat.read(ROOT / "assignments" / "a2-losses" / ASSIGNMENTS["a2-losses"], as_version=4)
    check = next(c.source for c in released.cells
                 if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "test_binary_cross_entropy")
    assert "np.array([0.0]), np.array([1.0])" in check

    def clipped(eps):
        def binary_cross_entropy(probs, labels, eps=eps):
            q = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
            y = np.asarray(labels, dtype=np.float64)
            return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))
        return binary_cross_entropy

    exec(check, {"np": np, "binary_cross_entropy": clipped(1e-7)})   # the reference's clipping passes
    with pytest.raises(AssertionError, match="clip q to"):
        exec(check, {"np": np, "binary_cross_entropy": clipped(1e-12)})
