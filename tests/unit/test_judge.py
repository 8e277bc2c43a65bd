"""The judge (course/judge.py) on its own: no kernel, no sandbox, milliseconds per test.

A reply is built with the kernel-side harness's own encoder (float64 bytes in base64), and
judged against hand-made cases and the course's real hidden checks.  NaN, +inf and -inf must be
where the reference has them, position by position; the verdict says which kind was expected
where the student returned another, and never a hidden input or a finite reference value.
"""
import json
import math

import numpy as np
import pytest

from course.cases import stored_array as reference
from course.harness import RESULT_MIME, encode_array
from course.judge import (MAX_REPLY_CHARS, RATIO_MESSAGES, close, judge, load_hidden_checks, nonfinite_mismatch,
                          replies_from_outputs)

NAN, INF = float("nan"), float("inf")


def reply(values, grad=None):
    """A reply as the kernel-side harness builds one."""
    answer = {"nonce": "n", "case": "c", "result": encode_array(np.asarray(values, dtype=np.float64))}
    if grad is not None:
        answer["grad"] = encode_array(np.asarray(grad, dtype=np.float64))
    return answer


def case(expected, **extra):
    return {"case": "c", "about": "the case", "expected": reference(expected), "rtol": 1e-7, "atol": 1e-10, **extra}


# (reference, a reply that agrees on every finite entry but not on a non-finite one, the words expected)
MISMATCHES = {
    "nan for -inf": ([0.0, -INF], [0.0, NAN], "expected -inf where you returned nan"),
    "+inf for -inf": ([0.0, -INF], [0.0, INF], "expected -inf where you returned +inf"),
    "-inf for +inf": ([INF, 1.5], [-INF, 1.5], "expected +inf where you returned -inf"),
    "inf for nan": ([NAN, 2.0], [INF, 2.0], "expected nan where you returned +inf"),
    "finite for nan": ([NAN, 2.0], [0.0, 2.0], "expected nan where you returned a finite value"),
    "finite for -inf": ([-INF, 2.0], [-1e308, 2.0], "expected -inf where you returned a finite value"),
    "nan for finite": ([1.0, 2.0], [1.0, NAN], "expected a finite value where you returned nan"),
    "scalar nan for -inf": (-INF, NAN, "expected -inf where you returned nan"),
    "scalar +inf for -inf": (-INF, INF, "expected -inf where you returned +inf"),
    "nested, 3-d": (np.array([[[1.0, -INF], [NAN, INF]]] * 2), np.array([[[1.0, -INF], [NAN, -INF]]] * 2),
                    "expected +inf where you returned -inf (2 of 8 entries)"),
}


@pytest.mark.parametrize("want, got, words", MISMATCHES.values(), ids=list(MISMATCHES))
def test_every_kind_of_non_finite_value_must_be_where_the_reference_has_it(want, got, words):
    assert judge(case(want), reply(want)).passed  # the same values in the same places pass
    assert nonfinite_mismatch(np.asarray(want), np.asarray(want)) is None
    assert not close(np.asarray(got), np.asarray(want), rtol=1e-7, atol=1e-10)
    verdict = judge(case(want), reply(got))
    assert not verdict.passed
    assert words in verdict.message, verdict.message


def test_finite_entries_next_to_matching_infinities_still_need_the_tolerance():
    assert judge(case([-INF, 1.0]), reply([-INF, 1.0 + 1e-12])).passed
    assert not judge(case([-INF, 1.0]), reply([-INF, 1.1])).passed
    assert not judge(case([-INF, 1.0]), reply([INF, 1.0])).passed


def test_the_verdict_reveals_no_finite_reference_value():
    want = [0.123456789, -INF, 7.654321]
    verdict = judge(case(want), reply([0.0, NAN, 0.0]))
    assert not verdict.passed
    assert "0.123" not in verdict.message and "7.65" not in verdict.message
    assert "expected -inf where you returned nan" in verdict.message  # the first disagreement


def test_the_case_hint_follows_a_wrong_nan():
    verdict = judge(case([0.0, -INF], nan_hint="0 * log(0) must count as 0"), reply([0.0, NAN]))
    assert verdict.message.endswith("expected -inf where you returned nan (1 of 2 entries): 0 * log(0) must count as 0")


def test_a_gradient_must_match_its_non_finite_values_too():
    checked = case([1.0], grad=True, expected_grad=reference([[0.5, -INF]]))
    assert judge(checked, reply([1.0], grad=[[0.5, -INF]])).passed
    verdict = judge(checked, reply([1.0], grad=[[0.5, NAN]]))
    assert not verdict.passed and "gradient" in verdict.message
    assert "expected -inf where you returned nan" in verdict.message


def test_a_second_reference_must_match_its_non_finite_values_too():
    checked = case([1.0, -INF], also_expected=[{"value": reference([1.0, NAN]), "rtol": 1e-3, "atol": 1e-3,
                                                "label": "torch's float32 result"}])
    verdict = judge(checked, reply([1.0, -INF]))
    assert not verdict.passed and "expected nan where you returned -inf" in verdict.message


def test_a_variant_is_recognised_only_with_its_own_non_finite_values():
    variant = {"value": reference([INF, 1.0]), "message": "you swapped the arguments"}
    checked = case([2.0, 1.0], variants=[variant])
    assert judge(checked, reply([INF, 1.0])).message.endswith("you swapped the arguments")
    assert "swapped" not in judge(checked, reply([-INF, 1.0])).message
    assert "swapped" not in judge(checked, reply([NAN, 1.0])).message


def test_the_real_reference_with_minus_infinity_rejects_nan_and_plus_infinity():
    """a1's bernoulli_log_pmf: log-probability -inf for an impossible outcome."""
    cases = {c["case"]: c for c in load_hidden_checks("a1-distributions")["test_bernoulli_log_pmf"]}
    impossible = cases["test_bernoulli_log_pmf-2"]
    want = np.asarray(impossible["expected"]["data"], dtype=np.float64)
    assert np.isneginf(want).any()
    assert judge(impossible, reply(want)).passed
    for wrong, words in ((np.where(np.isneginf(want), NAN, want), "expected -inf where you returned nan"),
                         (np.where(np.isneginf(want), INF, want), "expected -inf where you returned +inf")):
        verdict = judge(impossible, reply(wrong))
        assert not verdict.passed and words in verdict.message, verdict.message


# ---- reply parsing: exactly one well-formed reply for this run's nonce and this case -----------------------

NONCE, CASE = "a" * 32, "test_softmax-2"


def display_output(text):
    return {"output_type": "display_data", "data": {RESULT_MIME: text}, "metadata": {}}


def reply_text(**fields):
    return json.dumps({"nonce": NONCE, "case": CASE, "result": encode_array([1.0, 2.0]), **fields})


def test_one_well_formed_reply_is_taken_and_other_outputs_are_ignored():
    outputs = [{"output_type": "stream", "name": "stdout", "text": "hello"},
               {"output_type": "display_data", "data": {"text/plain": "1"}, "metadata": {}},
               display_output(reply_text())]
    [(got, problem)] = replies_from_outputs(outputs, NONCE, [CASE])
    assert problem is None and got["nonce"] == NONCE and got["result"]["shape"] == [2]


# each output list, and the words of the reason it earns nothing
REJECTED = {
    "no reply": ([{"output_type": "stream", "name": "stdout", "text": "1"}], "no result came back"),
    "duplicated": ([display_output(reply_text())] * 2, "more than one result came back for one case"),
    "replayed (another run's nonce)": ([display_output(reply_text(nonce="0" * 32))], "another grading run or another case"),
    "another case's reply": ([display_output(reply_text(case="test_softmax-1"))], "another grading run or another case"),
    "not JSON": ([display_output("{'nonce': ")], "not valid JSON"),
    "NaN as a JSON constant": ([display_output(reply_text()[:-1] + ', "x": NaN}')], "not valid JSON"),
    "deeply nested": ([display_output("[" * 100_000 + "]" * 100_000)], "not valid JSON"),
    "a JSON list": ([display_output("[1, 2]")], "another grading run or another case"),
    "not text": ([{"output_type": "display_data", "data": {RESULT_MIME: {"nonce": NONCE}}, "metadata": {}}],
                 "not plain JSON text or was too large"),
    "oversized": ([display_output(reply_text(padding="x" * MAX_REPLY_CHARS))], "not plain JSON text or was too large"),
    "a good reply after a replayed one": ([display_output(reply_text(nonce="0" * 32)), display_output(reply_text())],
                                          "another grading run or another case"),
}


@pytest.mark.parametrize("outputs, words", REJECTED.values(), ids=list(REJECTED))
def test_anything_but_one_well_formed_reply_earns_nothing(outputs, words):
    [(got, problem)] = replies_from_outputs(outputs, NONCE, [CASE])
    assert got is None and words in problem, problem


# ---- the judge, path by path ----------------------------------------------------------------------------

def test_an_error_in_the_students_function_is_quoted_shortly():
    verdict = judge(case([1.0]), {"nonce": "n", "case": "c", "error": "ZeroDivisionError: " + "x" * 1000})
    assert not verdict.passed and verdict.message.startswith("the case: your function raised ZeroDivisionError")
    assert len(verdict.message) < 400


def test_a_reply_without_a_result_earns_nothing():
    assert judge(case([1.0]), {"nonce": "n", "case": "c"}).message == "the case: no result was returned"


def test_the_case_id_names_a_case_without_about():
    checked = {k: v for k, v in case([1.0]).items() if k != "about"}
    assert judge(checked, reply([2.0])).message.startswith("c: ")


MALFORMED_RESULTS = {
    "not an object": ([1, 2], "the result was not an array or a number"),
    "an unsupported type": ({"unsupported": "builtins.dict", "dtype": "object"},
                            "the result has type builtins.dict (dtype object): return numbers"),
    "a long unsupported type": ({"unsupported": "t" * 10_000, "dtype": None},
                                f"the result has type {'t' * 80} (dtype None): return numbers"),
    "a negative extent": ({"base64": "", "shape": [-1]}, "the result had a malformed shape"),
    "a float extent": ({"base64": "", "shape": [1.0]}, "the result had a malformed shape"),
    "nine dimensions": ({"base64": "", "shape": [1] * 9}, "the result had a malformed shape"),
    "no shape": ({"base64": ""}, "the result had a malformed shape"),
    "bad base64": ({"base64": "not base64!", "shape": [1]}, "the result was not valid base64 data"),
    "too few bytes": ({"base64": encode_array([1.0])["base64"], "shape": [2]}, "the result data does not match its shape"),
}


@pytest.mark.parametrize("payload, words", MALFORMED_RESULTS.values(), ids=list(MALFORMED_RESULTS))
def test_a_malformed_result_is_named(payload, words):
    verdict = judge(case([1.0]), {"nonce": "n", "case": "c", "result": payload})
    assert not verdict.passed and verdict.message == f"the case: {words}"


def test_a_malformed_gradient_asks_about_the_graph():
    checked = case([1.0], grad=True, expected_grad=reference([0.5]))
    verdict = judge(checked, {"nonce": "n", "case": "c", "result": encode_array([1.0])})
    assert not verdict.passed
    assert verdict.message == "the case: the gradient was not an array or a number (did the loss keep the autograd graph?)"


def test_a_wrong_gradient_is_named_as_such():
    checked = case([1.0], grad=True, expected_grad=reference([0.5, -0.5]))
    assert judge(checked, reply([1.0], grad=[0.5, -0.5])).message == "the case: ok, gradient too"
    verdict = judge(checked, reply([1.0], grad=[1.0, -1.0]))
    assert verdict.message.endswith("the loss is right but its gradient is not softmax − one-hot (averaged over the batch)")


def test_strings_must_be_the_expected_list():
    checked = {"case": "c", "about": "names", "expected": {"strings": ["ann", "bob"]}, "rtol": 0, "atol": 0,
               "mismatch_hint": "use one generator"}
    assert judge(checked, {"result": {"strings": ["ann", "bob"]}}).passed
    assert judge(checked, {"result": {"strings": ["bob", "ann"]}}).message == "names: use one generator"
    assert judge(checked, {"result": encode_array([1.0])}).message == "names: expected a list of strings"
    assert judge(checked, {"result": {"strings": ["ann", 2]}}).message == "names: expected a list of strings"


def test_a_wrong_shape_is_named_with_the_cases_hint():
    checked = case(np.zeros((2, 3)), shape_hint="the trajectory has steps + 1 rows")
    verdict = judge(checked, reply(np.zeros((3, 3))))
    assert verdict.message == "the case: returned shape (3, 3), expected shape (2, 3): the trajectory has steps + 1 rows"
    assert judge(case(2.0), reply([2.0])).message == "the case: returned shape (1,), expected a scalar"


def test_integer_results_must_have_an_integer_dtype():
    checked = case(np.array([1, 2]), integer=True, rtol=0.0, atol=0.0)
    assert judge(checked, {"result": encode_array(np.array([1, 2]))}).passed
    verdict = judge(checked, {"result": encode_array(np.array([1.0, 2.0]))})
    assert verdict.message == "the case: expected integer counts, got dtype float64"
    for forged in (None, 64, ["int64"], "x" * 1000):  # a dtype no kernel writes: a failed case, never a crash
        verdict = judge(checked, {"result": dict(encode_array(np.array([1, 2])), dtype=forged)})
        assert not verdict.passed and "expected integer counts" in verdict.message and len(verdict.message) < 120


def test_a_second_reference_has_its_own_tolerance_and_label():
    checked = case([1.0], also_expected=[{"value": reference([1.001]), "rtol": 1e-5, "atol": 0.0, "label": "F.cross_entropy on cpu"}])
    verdict = judge(checked, reply([1.0]))
    assert verdict.message == "the case: matches the float64 reference but not F.cross_entropy on cpu within float32 tolerance"
    checked["also_expected"][0]["rtol"] = 1e-2
    assert judge(checked, reply([1.0])).passed


def test_the_held_out_nll_is_computed_from_the_returned_weights():
    words = ["ab", "ba"]
    measure = {"kind": "bigram_nll", "words": words}
    uniform = np.log(27.0)  # equal weights: every next character has probability 1/27
    checked = case(uniform, measure=measure)
    assert judge(checked, reply(np.zeros((27, 27)))).passed
    assert judge(checked, reply(np.zeros((3, 3)))).message == "the case: W must have shape (27, 27), got shape (3, 3)"
    verdict = judge(checked, reply(np.full((27, 27), NAN)))
    assert verdict.message.startswith("the case: expected a finite value where you returned nan")


# ---- diagnose(): each known mistake, and never a hidden value ----------------------------------------------

def diagnosis(checked, got):
    verdict = judge(checked, reply(got))
    assert not verdict.passed
    return verdict.message.removeprefix("the case: ")


def test_a_known_mistakes_output_is_named_by_its_message():
    variants = [{"message": "you swapped p and 1 - p", "value": reference([0.3, 0.8])},
                {"message": "sigma is not the variance", "value": reference([0.5, 0.5])}]
    checked = case([0.7, 0.2], variants=variants)
    assert diagnosis(checked, [0.3, 0.8]) == "you swapped p and 1 - p"
    assert diagnosis(checked, [0.5, 0.5 + 1e-12]) == "sigma is not the variance"
    assert diagnosis(checked, [0.5, 0.6]) == "the values differ from the expected ones beyond the tolerance"


def test_a_chaotic_mistake_is_named_by_its_first_steps_only():
    """A mistaken training run diverges into a trajectory that depends on the CPU's last bits: its
    variant stores only its first steps, and a reply whose first steps match is named, whatever follows."""
    want = np.array([3.69, 3.67, 3.46, 3.28, 3.25])
    checked = case(want, variants=[{"message": "the learning rate was applied twice", "value": reference([3.69, 5.16]), "first": 2}])
    assert diagnosis(checked, [3.69, 5.16, 9.03, 8.75, 8.93]) == "the learning rate was applied twice"
    assert diagnosis(checked, [3.69, 5.16, -1.0, 1e9, NAN]) == "the learning rate was applied twice"
    assert diagnosis(checked, [3.69, 5.17, 9.03, 8.75, 8.93]) == "the values differ from the expected ones beyond the tolerance"
    assert diagnosis(checked, [3.69]).startswith("returned shape (1,)")  # too short: the shape is wrong first


@pytest.mark.parametrize("ratio, message", RATIO_MESSAGES, ids=["bits for nats", "log2 wanted", "log10"])
def test_a_result_off_by_a_log_base_is_named(ratio, message):
    want = np.array([0.25, 1.5, 3.0])
    assert diagnosis(case(want), want * ratio) == message


def test_sum_for_mean_mean_for_sum_and_the_sign_are_named():
    want = np.array([0.25, 1.5, 3.0])
    assert diagnosis(case(want, batch=64), want * 64) == "your result is the batch size times the expected: sum instead of mean"
    assert diagnosis(case(want, batch=64), want / 64) == "your result is the expected divided by the batch size: mean instead of sum"
    assert diagnosis(case(want), -want) == "your result has the wrong sign: a loss is the NEGATIVE log-likelihood"
    assert diagnosis(case(want), want * 64) == "the values differ from the expected ones beyond the tolerance"  # no batch given


def test_a_ratio_that_is_not_constant_is_not_a_known_mistake():
    want = np.array([0.25, 1.5, 3.0])
    assert diagnosis(case(want, wrong_hint="E[X] is the sum of p times x"), want * [2, 3, 4]) == "E[X] is the sum of p times x"


def test_a_wrong_infinity_gets_the_inf_hint_and_a_wrong_nan_the_nan_hint():
    checked = case([1.0, 2.0], inf_hint="take the log analytically", nan_hint="subtract the max")
    assert diagnosis(checked, [1.0, -INF]).endswith("expected a finite value where you returned -inf (1 of 2 entries): take the log analytically")
    assert diagnosis(checked, [NAN, 2.0]).endswith("expected a finite value where you returned nan (1 of 2 entries): subtract the max")
    assert diagnosis(case([1.0, 2.0]), [NAN, 2.0]) == "expected a finite value where you returned nan (1 of 2 entries)"


def test_a_known_mistake_is_recognised_before_a_non_finite_mismatch():
    checked = case([0.0, -INF], variants=[{"message": "you multiplied 0 by log(0)", "value": reference([NAN, -INF])}],
                   nan_hint="pick the term by the outcome")
    assert diagnosis(checked, [NAN, -INF]) == "you multiplied 0 by log(0)"


def test_no_diagnosis_quotes_a_hidden_value():
    want = np.array([0.1234567, 2.7654321])
    for got in (want * 2, -want, [NAN, 1.0], want / math.log(2)):
        message = diagnosis(case(want, batch=2), got)
        assert "0.123" not in message and "2.765" not in message, message
