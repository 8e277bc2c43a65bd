"""The wire between the grader and the kernel (course/harness.py): one encoder and one decoder, used by the
grader, by the kernel-side harness and by the parity check.  Arrays cross as float64 bytes, bit for bit:
NaN, both infinities and -0.0 included.  The harness's source runs in the student's kernel, so it must
import nothing from ``course``; here it runs in this process, with the display call captured, exactly as
the grader sends it."""
import ast
import json
import sys

import IPython.display
import numpy as np
import pytest

from course import ROOT
from course.cases import array_from_reference, stored_array
from course.harness import decode_array, encode_array
from course.execute import calls
from course.judge import (HARNESS_MODULE, harness_code, harness_install_code, judge, load_hidden_checks, new_nonce, replies_from_outputs, request_for_cases,
                          wire_value)

NAN, INF = float("nan"), float("inf")

VALUES = {
    "non-finite and signed zeros": np.array([NAN, INF, -INF, -0.0, 0.0, 5e-324, -1.7976931348623157e308]),
    "a scalar": np.array(-0.0),
    "empty": np.zeros((0, 3)),
    "3-d": np.arange(24, dtype=np.float64).reshape(2, 3, 4) / 7,
    "int64 counts": np.array([[0, 3], [2**53, -7]], dtype=np.int64),
}


@pytest.mark.parametrize("value", VALUES.values(), ids=list(VALUES))
def test_the_codec_round_trip_is_bit_for_bit(value):
    wire = json.loads(json.dumps(encode_array(value)))  # as it travels: plain JSON
    back = decode_array(wire).astype(wire["dtype"])
    assert back.dtype == value.dtype and back.shape == value.shape
    assert back.tobytes() == value.tobytes()  # NaN, the infinities and the sign of zero as they were


@pytest.mark.parametrize("value", VALUES.values(), ids=list(VALUES))
def test_a_stored_array_reaches_the_kernel_unchanged(value):
    stored = json.loads(json.dumps(stored_array(value)))  # as a references file holds it
    assert array_from_reference(stored).tobytes() == value.tobytes()
    wire = json.loads(json.dumps(wire_value(stored)))
    assert decode_array(wire).astype(wire["dtype"]).tobytes() == value.tobytes()


def test_plain_values_cross_as_json():
    assert wire_value([3, 0.5, "mean", ["ann", "bob"], None]) == [3, 0.5, "mean", ["ann", "bob"], None]


def test_the_harness_imports_nothing_from_the_course():
    """Its source is executed in the student's kernel, where ``course`` does not exist."""
    tree = ast.parse((ROOT / "course" / "harness.py").read_text())
    for node in ast.walk(tree):  # what only the type checker reads (``if TYPE_CHECKING:``) never runs in the kernel
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree))
    assert imported <= {"__future__", "base64", "binascii", "math", "json", "numpy", "torch", "IPython"}, imported


@pytest.fixture
def kernel(monkeypatch):
    """Runs the code the grader sends, here, and returns the outputs a kernel would have displayed: the
    harness installed first, as in a fresh kernel (and taken out of this process's modules afterwards)."""
    monkeypatch.setitem(sys.modules, HARNESS_MODULE, None)
    exec(compile(harness_install_code(), "<installing cell>", "exec"), {})

    def run(code, namespace):
        outputs = []
        monkeypatch.setattr(IPython.display, "display", lambda data, raw=False: outputs.append(
            {"output_type": "display_data", "data": data, "metadata": {}}))
        exec(compile(code, "<probe cell>", "exec"), namespace)
        return outputs
    return run


def solution_namespace(assignment):
    import nbformat

    (path,) = sorted((ROOT / "solutions" / assignment).glob("*.ipynb"))
    namespace = {}
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code" and not cell.metadata.get("nbgrader", {}).get("grade"):
            exec(compile(cell.source, path.name, "exec"), namespace)
    return namespace


@pytest.mark.parametrize("assignment, grade_id", [("a1-distributions", "test_bernoulli_log_pmf"),
                                                  ("a2-losses", "test_softmax"), ("a3-bigram", "test_bigram_counts"),
                                                  ("a4-torch-cross-entropy", "test_cross_entropy_grad")])
def test_the_reference_solution_passes_through_the_harness(kernel, assignment, grade_id):
    """request -> the harness in a namespace holding the reference solution -> reply -> judge: every case passes,
    -inf (a1's impossible outcome), integer counts (a3) and int64 targets as torch tensors (a4) included."""
    namespace = solution_namespace(assignment)
    for case in load_hidden_checks(assignment)[grade_id]:
        nonce = new_nonce()
        outputs = kernel(harness_code(request_for_cases([case], nonce)), namespace)
        [(reply, problem)] = replies_from_outputs(outputs, nonce, [case["case"]])
        assert problem is None
        verdict = judge(case, reply)
        assert verdict.passed, verdict.message


def test_a_wrong_function_in_the_kernel_gets_the_diagnosis(kernel):
    case = load_hidden_checks("a2-losses")["test_softmax"][2]  # the batch, with the axis=0 mistake listed
    namespace = solution_namespace("a2-losses")
    right = namespace["softmax"]
    namespace["softmax"] = lambda z: right(z, axis=0)
    nonce = new_nonce()
    [(reply, _)] = replies_from_outputs(kernel(harness_code(request_for_cases([case], nonce)), namespace), nonce,
                                        [case["case"]])
    verdict = judge(case, reply)
    assert not verdict.passed and verdict.message.endswith("normalise over the last axis (the classes)")


def test_an_error_in_the_kernel_comes_back_as_a_reply(kernel):
    case = load_hidden_checks("a2-losses")["test_softmax"][0]
    nonce = new_nonce()
    outputs = kernel(harness_code(request_for_cases([case], nonce)), {})
    [(reply, _)] = replies_from_outputs(outputs, nonce, [case["case"]])
    assert judge(case, reply).message.endswith("your function raised NameError: no function named 'softmax' is defined")


def test_cases_that_differ_only_in_their_view_share_one_call(kernel):
    """a5's train_bigram and minibatches cases judge several views (an item of a tuple, the batches' coverage,
    their lengths) of a few calls: the function runs once per distinct call, and each case gets its reply."""
    checks = load_hidden_checks("a5-training")
    namespace = solution_namespace("a5-training")
    made = []
    for grade_id in ("test_minibatches", "test_train_bigram"):
        cases = checks[grade_id]
        groups = calls(dict(enumerate(cases)), "cpu")
        assert len(groups) < len(cases), grade_id  # what there is to save
        function = namespace[cases[0]["function"]]
        namespace[cases[0]["function"]] = lambda *a, _function=function, **k: made.append(1) or _function(*a, **k)
        for group in groups:
            nonce, grouped = new_nonce(), [cases[p] for p in group]
            outputs = kernel(harness_code(request_for_cases(grouped, nonce)), namespace)
            for case, (reply, problem) in zip(grouped, replies_from_outputs(outputs, nonce, [c["case"] for c in grouped])):
                assert problem is None
                verdict = judge(case, reply)
                assert verdict.passed, verdict.message
        assert len(made) == len(groups), grade_id
        made.clear()


def test_in_a_shared_call_a_foreign_reply_fails_every_case_and_a_duplicate_its_own():
    def reply(case, nonce="n"):
        return {"output_type": "display_data", "data": {"application/vnd.course.judge-result+json": json.dumps(
            {"nonce": nonce, "case": case, "result": encode_array(np.array(1.0))})}}

    assert [p for _, p in replies_from_outputs([reply("a"), reply("b")], "n", ["a", "b"])] == [None, None]
    foreign = replies_from_outputs([reply("a"), reply("b"), reply("c")], "n", ["a", "b"])
    assert all(r is None and "another case" in p for r, p in foreign)
    assert all(r is None for r, _ in replies_from_outputs([reply("a"), reply("b", nonce="m")], "n", ["a", "b"]))
    unhashable = {"output_type": "display_data", "data": {"application/vnd.course.judge-result+json": json.dumps(
        {"nonce": "n", "case": ["a"]})}}
    assert all(r is None for r, _ in replies_from_outputs([unhashable], "n", ["a"]))
    twice = replies_from_outputs([reply("a"), reply("a"), reply("b")], "n", ["a", "b"])
    assert twice[0][0] is None and "more than one" in twice[0][1] and twice[1][1] is None


def test_a_generator_result_serves_every_view_of_its_call(kernel):
    """minibatches written with ``yield``: the first view would exhaust it, and the others see nothing."""
    cases = load_hidden_checks("a5-training")["test_minibatches"]
    namespace = solution_namespace("a5-training")
    listed = namespace["minibatches"]
    namespace["minibatches"] = lambda *a, **k: (batch for batch in listed(*a, **k))
    for group in calls(dict(enumerate(cases)), "cpu"):
        nonce, grouped = new_nonce(), [cases[p] for p in group]
        outputs = kernel(harness_code(request_for_cases(grouped, nonce)), namespace)
        for case, (reply, problem) in zip(grouped, replies_from_outputs(outputs, nonce, [c["case"] for c in grouped])):
            assert problem is None and judge(case, reply).passed, judge(case, reply).message


def test_the_installed_harness_and_its_calls_leave_the_notebook_namespace_as_it_was(kernel):
    """The harness lives in a module of its own, and a call's code removes the one name it defines: a student's
    later cells see exactly the names they defined."""
    namespace = solution_namespace("a2-losses")
    before = dict(namespace)
    case = load_hidden_checks("a2-losses")["test_softmax"][0]
    nonce = new_nonce()
    outputs = kernel(harness_code(request_for_cases([case], nonce)), namespace)
    [(reply, problem)] = replies_from_outputs(outputs, nonce, [case["case"]])
    assert problem is None and judge(case, reply).passed
    assert namespace.keys() - {"__builtins__"} == before.keys() - {"__builtins__"}
    assert len(harness_code(request_for_cases([case], nonce))) < 2_000  # a call, not the harness's source again
