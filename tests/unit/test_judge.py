"""The judge (course/judge.py) on its own: no kernel, no sandbox, milliseconds per test.

A reply is built exactly as the kernel-side harness builds one (float64 bytes in base64), and
judged against hand-made cases and the course's real hidden checks.  NaN, +inf and -inf must be
where the reference has them, position by position; the verdict says which kind was expected
where the student returned another, and never a hidden input or a finite reference value.
"""
import base64

import numpy as np
import pytest

from course.judge import close, judge, load_hidden_checks, nonfinite_mismatch

NAN, INF = float("nan"), float("inf")


def reply(values, grad=None):
    def encode(array):
        array = np.asarray(array, dtype=np.float64)
        return {"base64": base64.b64encode(array.astype("<f8").tobytes()).decode("ascii"),
                "shape": list(array.shape), "dtype": str(array.dtype)}

    answer = {"nonce": "n", "case": "c", "result": encode(values)}
    if grad is not None:
        answer["grad"] = encode(grad)
    return answer


def reference(values):
    array = np.asarray(values, dtype=np.float64)
    return {"data": array.ravel().tolist(), "dtype": "float64", "shape": list(array.shape)}


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
