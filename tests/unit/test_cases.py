"""The hidden-check case format (course/cases.py): every shipped references file fits it, and a file that
does not is refused as it loads, with a message naming the file, the check, the case and what is wrong."""
import copy
import json

import pytest

from course import ROOT
from course.cases import REFERENCES_SCHEMA, ReferencesValidator, problems, references_path, stored_array
from course.judge import HiddenCheckError, load_hidden_checks
from course.parity import parity_case

ASSIGNMENTS = sorted(p.stem for p in (ROOT / "grader_tests" / "references").glob("*.json"))


def test_the_schema_is_a_valid_json_schema():
    ReferencesValidator.check_schema(REFERENCES_SCHEMA)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_shipped_references_file_fits_the_format(assignment):
    assert problems(json.loads(references_path(assignment).read_text())) == []
    # A check for every test cell of the assignment, each of at least one case, every case of a function the
    # assignment asks for (defined in an answer cell of the solution: a misspelt name would fail every student),
    # the test cell's own function among them (test_softmax checks softmax).
    import re

    import nbformat

    notebook = nbformat.read(next((ROOT / "solutions" / assignment).glob("*.ipynb")), as_version=4)
    test_cells = {c.metadata["nbgrader"]["grade_id"] for c in notebook.cells
                  if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")}
    asked = {name for c in notebook.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")
             for name in re.findall(r"^def (\w+)\(", c.source, re.M)}
    checks = load_hidden_checks(assignment)
    assert set(checks) == test_cells
    for test_cell, cases in checks.items():
        named = [case["function"] for case in cases]
        assert named and set(named) <= asked and test_cell.removeprefix("test_") in named, (test_cell, named, asked)


def test_every_kind_of_case_is_shipped():
    """The format describes the cases make_references writes, no fewer: each optional part appears somewhere."""
    used = {key for a in ASSIGNMENTS for cases in load_hidden_checks(a).values() for c in cases for key in c}
    described = set(REFERENCES_SCHEMA["$defs"]["case"]["properties"]) | set(REFERENCES_SCHEMA["$defs"]["parity_template"]["properties"])
    made_per_run = {"also_expected", "grad_probe", "grad_tolerance"}  # by course/parity.py, at grading time
    assert described - used == made_per_run


@pytest.mark.parametrize("reduction, grad", [("none", False), ("mean", True)])
def test_a_parity_case_made_for_a_run_fits_the_format(reduction, grad):
    (template,) = [c for c in load_hidden_checks("a4-torch-cross-entropy")["test_cross_entropy"]
                   if c.get("parity") and c["reduction"] == reduction]
    concrete = parity_case(template, "cpu")
    assert bool(concrete.get("grad")) == grad
    assert problems({"assignment": "a4-torch-cross-entropy", "checks": {"test_cross_entropy": [concrete]}}) == []


def write_changed_references(root, change):
    """a2's references with one change, written under ``root`` as the grader finds them; returns the path."""
    data = json.loads(references_path("a2-losses").read_text())
    change(data)
    path = references_path("a2-losses", root)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    return path


def softmax_case(data):
    return data["checks"]["test_softmax"][1]


# a change to a2's second softmax case ('test_softmax-2'), and the words that must say what is wrong
BROKEN = {
    "a required part missing": (lambda d: softmax_case(d).pop("expected"), "'expected' is a required property"),
    "an unknown part": (lambda d: softmax_case(d).update(tolerance=1e-7), "'tolerance' was unexpected"),
    "a negative tolerance": (lambda d: softmax_case(d).update(rtol=-1e-7), "rtol: -1e-07 is less than the minimum of 0"),
    "a tolerance as text": (lambda d: softmax_case(d).update(atol="1e-10"), "atol: '1e-10' is not of type 'number'"),
    "data that does not fill the shape": (lambda d: softmax_case(d)["args"][0].update(shape=[5]),
                                          "args[0]: 4 numbers do not fill the shape [5]"),
    "a float extent": (lambda d: softmax_case(d)["expected"].update(shape=[4.0]),
                       "expected.shape[0]: 4.0 is not of type 'integer'"),
    "an unknown dtype": (lambda d: softmax_case(d)["args"][0].update(dtype="float32"),
                         "args[0].dtype: 'float32' is not one of ['float64', 'int64']"),
    "an input of no known form": (lambda d: softmax_case(d)["args"].__setitem__(0, {"base64": "AAAA"}),
                                  "args[0]: not an input: a number, string"),
    "an unknown view": (lambda d: softmax_case(d).update(view="item"), "view: 'item' does not match"),
    "a variant without its value": (lambda d: softmax_case(d)["variants"].append({"message": "m"}),
                                    "variants[0]: 'value' is a required property"),
    "a mistake's first entries longer than its value": (
        lambda d: softmax_case(d)["variants"].append({"message": "m", "first": 3, "value": stored_array([0.1, 0.2])}),
        "first is 3, but the value has shape [2]"),
    "a mistake's first entries beyond the expected value": (
        lambda d: softmax_case(d)["variants"].append({"message": "m", "first": 9, "value": stored_array([0.1] * 9)}),
        "first is 9, but the expected value has shape [4]"),
    "a gradient case without its reference": (lambda d: softmax_case(d).update(grad=True),
                                              "'expected_grad' is a required property"),
    "an unknown measure": (lambda d: softmax_case(d).update(measure={"kind": "accuracy", "words": []}),
                           "measure.kind: 'accuracy' is not one of ['bigram_nll']"),
    "a chain step by name": (lambda d: softmax_case(d).update(chain={"steps": [{"grad": 1.0}], "feed": []}),
                             "chain.steps[0]: 'grad' does not match '^[0-9]+$'"),
    "a parity template without its reduction": (lambda d: softmax_case(d).update(parity=True),
                                                "'reduction' is a required property"),
    "a case that is not an object": (lambda d: d["checks"]["test_softmax"].__setitem__(1, "softmax"),
                                     "'softmax' is not of type 'object'"),
}


@pytest.mark.parametrize("change, words", BROKEN.values(), ids=list(BROKEN))
def test_a_broken_case_is_refused_naming_file_check_and_case(tmp_path, change, words):
    path = write_changed_references(tmp_path, change)
    with pytest.raises(HiddenCheckError) as refused:
        load_hidden_checks("a2-losses", tmp_path)
    message = str(refused.value)
    assert message.startswith(f"{path}: check 'test_softmax', case 1"), message
    assert words in message, message
    assert "make_references.py" in message


FILE_PROBLEMS = {
    "no checks": (lambda d: d.pop("checks"), "the file: 'checks' is a required property"),
    "a check without cases": (lambda d: d["checks"].update(test_softmax=[]), "the file: checks.test_softmax: [] should be non-empty"),
    "another assignment's file": (lambda d: d.update(assignment="a1-distributions"),
                                  "the file: assignment: 'a1-distributions' is not 'a2-losses'"),
    "two cases with one id": (lambda d: softmax_case(d).update(case="test_softmax-1"),
                              "case id 'test_softmax-1' is used by 2 cases: ids must be unique"),
}


@pytest.mark.parametrize("change, words", FILE_PROBLEMS.values(), ids=list(FILE_PROBLEMS))
def test_a_broken_file_is_refused_naming_the_file(tmp_path, change, words):
    path = write_changed_references(tmp_path, change)
    with pytest.raises(HiddenCheckError, match="^" + str(path)) as refused:
        load_hidden_checks("a2-losses", tmp_path)
    assert words in str(refused.value)


def test_a_missing_or_unparsable_file_is_named(tmp_path):
    with pytest.raises(HiddenCheckError, match="no hidden checks for assignment 'a2-losses'"):
        load_hidden_checks("a2-losses", tmp_path)
    path = references_path("a2-losses", tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text('{"checks": ')
    with pytest.raises(HiddenCheckError, match="not valid JSON"):
        load_hidden_checks("a2-losses", tmp_path)


def test_every_problem_is_counted_and_a_huge_value_is_not_quoted_whole():
    data = json.loads(references_path("a2-losses").read_text())
    for case in data["checks"]["test_softmax"]:
        case["rtol"] = -1.0
    data["checks"]["test_softmax"][0]["expected"] = list(range(100_000))
    found = problems(copy.deepcopy(data))
    assert len(found) == len(data["checks"]["test_softmax"]) + 1
    assert max(len(line) for line in found) < 400


def test_a_broken_file_fails_the_submission_before_any_of_its_code_runs(tmp_path, monkeypatch):
    """nbgrader autograde's preprocessor: the instructor's error stops the submission, unrecorded; no kernel starts."""
    import logging

    import nbformat

    import course.plugins
    from course.plugins import SandboxedExecute

    monkeypatch.setattr(course.plugins, "require_sandbox", lambda: None)  # whether bubblewrap works here is not the point

    path = write_changed_references(tmp_path, lambda data: softmax_case(data).pop("expected"))
    ran = tmp_path / "ran"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"open({str(ran)!r}, 'w').close()")])
    executor = SandboxedExecute(hidden_checks_directory=str(path.parent.parent), log=logging.getLogger("test"))
    resources = {"nbgrader": {"assignment": "a2-losses", "student": "someone", "notebook": "losses"}}
    with pytest.raises(HiddenCheckError, match="'expected' is a required property"):
        executor.preprocess(notebook, resources)
    assert not ran.exists()
