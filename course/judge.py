"""Hidden checks, judged in the grader's own process.

A hidden check is a list of cases stored in ``grader_tests/references/<assignment>.json``
(made by ``grader_tests/make_references.py``; their format, checked as they load: ``course.cases``).  For each case the grader sends
the *inputs* to the student's kernel, receives plain JSON back (see
``course.harness``) and compares it here against the float64 reference, which
never leaves this process.  Anything other than a single well-formed reply
that matches earns nothing.

Feedback names the case ("logits of ±1000") and the likely mistake, never the
hidden inputs or the reference values.
"""
from __future__ import annotations

import functools
import json
import math
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from .cases import HiddenCheckError, array_from_reference, load_hidden_checks  # noqa: F401 (the judge's API)
from .harness import RESULT_MIME, decode_array, encode_array

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from numpy.typing import ArrayLike

    Reply = dict[str, Any]  # one reply of the kernel, parsed; nothing in it is trusted

MAX_REPLY_CHARS = 8_000_000


@dataclass
class Verdict:
    passed: bool
    message: str


def wire_value(value: Any) -> Any:
    """A reference input as it travels to the kernel (exact float bytes)."""
    if isinstance(value, dict) and "data" in value:
        return encode_array(array_from_reference(value))
    if isinstance(value, list):
        return [wire_value(v) for v in value]
    return value


def new_nonce() -> str:
    return secrets.token_hex(16)


def request_for(case: dict[str, Any], nonce: str, device: str = "cpu") -> dict[str, Any]:
    """What the kernel sees: the function name and the inputs, no answer."""
    return {
        "nonce": nonce,
        "case": case["case"],
        "function": case["function"],
        "args": [wire_value(a) for a in case["args"]],
        "kwargs": {k: wire_value(v) for k, v in case.get("kwargs", {}).items()},
        "torch": case.get("torch", False),
        "grad": case.get("grad", False),
        "device": device,
        "grad_probe": wire_value(case.get("grad_probe")),
        "view": case.get("view"),
        "chain": case.get("chain") and {
            "feed": case["chain"]["feed"],
            "steps": [{k: wire_value(v) for k, v in step.items()} for step in case["chain"]["steps"]]},
    }


def request_for_cases(cases: Sequence[dict[str, Any]], nonce: str, device: str = "cpu") -> dict[str, Any]:
    """One request for cases that make the same call (``same_call``): the call once, a reply per case."""
    request = request_for(cases[0], nonce, device)
    del request["case"], request["view"]
    request["views"] = [[case["case"], case.get("view")] for case in cases]
    return request


def same_call(case: dict[str, Any], device: str = "cpu") -> str:
    """What decides a case's call (function, inputs, device, gradient, chain): cases alike in it differ only
    in the part of the result they judge, so one call serves them all."""
    request = request_for(case, "", device)
    for judged_not_sent in ("nonce", "case", "view"):
        del request[judged_not_sent]
    return json.dumps(request, sort_keys=True)


HARNESS_MODULE = "__course_harness__"


@functools.cache
def harness_install_code() -> str:
    """The code the grader runs in a fresh kernel, before the submission's first cell: ``course.harness``
    compiled once, as the module ``HARNESS_MODULE``.  Each hidden-check call (``harness_code``) then costs
    the kernel a call, not a compile of the harness (some 3 ms a call).  The submission can reach the
    module, as it can reach everything its kernel runs: nothing the kernel sends is trusted, and a
    harness the submission breaks fails only the submission."""
    source = (Path(__file__).with_name("harness.py")).read_text()
    return (
        "def __course_harness():\n"
        "    import sys, types\n"
        f"    module = types.ModuleType({HARNESS_MODULE!r})\n"
        f"    exec(compile({source!r}, '<hidden check>', 'exec'), module.__dict__)\n"
        f"    sys.modules[{HARNESS_MODULE!r}] = module\n"
        "__course_harness()\n"
        "del __course_harness\n"
    )


def harness_code(request: dict[str, Any]) -> str:
    """The code of one hidden-check call: the installed harness (``harness_install_code``) run on the
    request.  It defines nothing in the notebook's namespace."""
    return (
        "def __course_case():\n"
        f"    __import__('sys').modules[{HARNESS_MODULE!r}].run_case(globals(), __import__('json').loads({json.dumps(request)!r}))\n"
        "__course_case()\n"
        "del __course_case\n"
    )


def replies_from_outputs(outputs: Iterable[object], nonce: str,
                         case_ids: Sequence[str]) -> list[tuple[Reply | None, str | None]]:
    """For each of the cases one probe judged, its single reply among the probe's outputs or why there is
    none.  A malformed reply, or one for another run or case, fails every case of the probe: what it was
    meant to answer is unknown."""
    replies: dict[str | int, list[Reply]] = {case_id: [] for case_id in case_ids}
    for output in outputs:
        data = output.get("data") if isinstance(output, dict) else None
        if not isinstance(data, dict) or RESULT_MIME not in data:
            continue
        text = data[RESULT_MIME]
        if not isinstance(text, str) or len(text) > MAX_REPLY_CHARS:
            return [(None, "the result was not plain JSON text or was too large")] * len(case_ids)
        try:
            reply = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            return [(None, "the result was not valid JSON")] * len(case_ids)
        case = reply.get("case") if isinstance(reply, dict) else None
        if not isinstance(reply, dict) or reply.get("nonce") != nonce or not isinstance(case, (str, int)) or case not in replies:
            return [(None, "a result from another grading run or another case was received")] * len(case_ids)
        replies[case].append(reply)
    found: list[tuple[Reply | None, str | None]] = []
    for case_id in case_ids:
        if not replies[case_id]:
            found.append((None, "no result came back (was the output hidden, the kernel patched, or the function stuck?)"))
        elif len(replies[case_id]) > 1:
            found.append((None, "more than one result came back for one case"))
        else:
            found.append((replies[case_id][0], None))
    return found


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"non-standard JSON constant {name}")


def decode_number_array(payload: object, what: str = "result") -> np.ndarray:
    """The float64 array a reply carries, or raise ValueError with a student-facing reason."""
    if not isinstance(payload, dict):
        raise ValueError(f"the {what} was not an array or a number")
    if "unsupported" in payload:  # the names are the kernel's word: quoted shortly
        raise ValueError(f"the {what} has type {str(payload['unsupported'])[:80]} (dtype {str(payload.get('dtype'))[:40]}): "
                         "return numbers")
    return decode_array(payload, what)


def describe_shape(shape: Iterable[int]) -> str:
    return "a scalar" if tuple(shape) == () else f"shape {tuple(shape)}"


def judge(case: dict[str, Any], reply: Reply) -> Verdict:
    """Compare one reply with the case's reference.  Returns a Verdict."""
    about = case.get("about", case["case"])
    if "error" in reply:
        return Verdict(False, f"{about}: your function raised {str(reply['error'])[:300]}")
    if "result" not in reply:
        return Verdict(False, f"{about}: no result was returned")
    expected = case["expected"]
    payload = reply["result"]
    if "strings" in expected:
        got = payload.get("strings") if isinstance(payload, dict) else None
        if not isinstance(got, list) or not all(isinstance(s, str) for s in got):
            return Verdict(False, f"{about}: expected a list of strings")
        if got != expected["strings"]:
            return Verdict(False, f"{about}: {case.get('mismatch_hint', 'the strings differ from the expected ones')}")
        return Verdict(True, f"{about}: ok")
    try:
        got = decode_number_array(payload)
    except ValueError as reason:
        return Verdict(False, f"{about}: {reason}")
    if "measure" in case:
        try:
            got = MEASURES[case["measure"]["kind"]](got, case["measure"])
        except ValueError as reason:
            return Verdict(False, f"{about}: {reason}")
    want = array_from_reference(expected).astype(np.float64)
    if got.shape != want.shape:
        hint = f": {case['shape_hint']}" if case.get("shape_hint") else ""
        return Verdict(False, f"{about}: returned {describe_shape(got.shape)}, expected {describe_shape(want.shape)}{hint}")
    dtype = payload.get("dtype")
    if case.get("integer") and not (isinstance(dtype, str) and dtype[:1] in ("i", "u")):
        return Verdict(False, f"{about}: expected integer counts, got dtype {str(dtype)[:40]}")
    rtol, atol = case["rtol"], case["atol"]
    if close(got, want, rtol, atol):
        for other in case.get("also_expected", []):
            value = array_from_reference(other["value"])
            if not close(got, value, other["rtol"], other["atol"]):
                mismatch = nonfinite_mismatch(got, value)
                return Verdict(False, f"{about}: matches the float64 reference but not {other['label']} "
                                      + (f"({mismatch})" if mismatch else "within float32 tolerance"))
        if case.get("grad"):
            return judge_gradient(case, reply, about)
        return Verdict(True, f"{about}: ok")
    return Verdict(False, f"{about}: {diagnose(case, got, want)}")


def judge_gradient(case: dict[str, Any], reply: Reply, about: str) -> Verdict:
    try:
        grad = decode_number_array(reply.get("grad"), "gradient")
    except ValueError as reason:
        return Verdict(False, f"{about}: {reason} (did the loss keep the autograd graph?)")
    want = array_from_reference(case["expected_grad"])
    tolerance = case.get("grad_tolerance", {"rtol": case["rtol"], "atol": case["atol"]})
    if grad.shape != want.shape or not close(grad, want, tolerance["rtol"], tolerance["atol"]):
        mismatch = nonfinite_mismatch(grad, want) if grad.shape == want.shape else None
        if mismatch:
            return Verdict(False, f"{about}: the loss is right but its gradient is not: {mismatch}")
        return Verdict(False, f"{about}: the loss is right but its gradient is not softmax − one-hot (averaged over the batch)")
    return Verdict(True, f"{about}: ok, gradient too")


BIGRAM_CHARS = ".abcdefghijklmnopqrstuvwxyz"


def bigram_weights_nll(weights: np.ndarray, measure: dict[str, Any]) -> np.ndarray:
    """Mean NLL (nats) of the bigrams of ``measure["words"]`` (held-out names) under a one-hot @ W model,
    computed here from the returned W."""
    if weights.shape != (27, 27):
        raise ValueError(f"W must have shape (27, 27), got {describe_shape(weights.shape)}")
    pairs = [(BIGRAM_CHARS.index(a), BIGRAM_CHARS.index(b)) for w in measure["words"] for a, b in zip("." + w, w + ".")]
    xs, ys = np.array(pairs, dtype=np.int64).T
    logits = weights[xs]
    with np.errstate(all="ignore"):  # a diverged W gives nan, which diagnose() names
        top = logits.max(axis=1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
        return np.asarray(np.mean(log_norm - logits[np.arange(len(ys)), ys]))


MEASURES = {"bigram_nll": bigram_weights_nll}  # a case's "measure": what the grader computes from the reply


def close(got: ArrayLike, want: ArrayLike, rtol: float, atol: float) -> bool:
    """Whether ``got`` matches the reference ``want``.

    NaN, +inf and -inf must be exactly where the reference has them (a NaN is not an
    infinity, and +inf is not -inf); the finite entries must agree within the tolerances.
    """
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape or nonfinite_mismatch(got, want):
        return False
    finite = np.isfinite(want)
    return bool(np.allclose(got[finite], want[finite], rtol=rtol, atol=atol))


def value_kinds(values: ArrayLike) -> np.ndarray:
    """Each entry as "nan", "+inf", "-inf" or "a finite value"."""
    values = np.asarray(values, dtype=np.float64)
    return np.select([np.isnan(values), np.isposinf(values), np.isneginf(values)],
                     ["nan", "+inf", "-inf"], "a finite value")


def nonfinite_mismatch(got: ArrayLike, want: ArrayLike) -> str | None:
    """Where ``got`` and ``want`` (same shape) disagree about NaN and infinities, say how, else None.

    Names the first disagreement, "expected -inf where you returned nan", and how many entries
    disagree: that much the student needs to find the bug, and it reveals no hidden input and
    no finite reference value.
    """
    got_kinds, want_kinds = value_kinds(got).ravel(), value_kinds(want).ravel()
    differ = np.flatnonzero(got_kinds != want_kinds)
    if differ.size == 0:
        return None
    first = differ[0]
    count = "" if got_kinds.size == 1 else f" ({differ.size} of {got_kinds.size} entries)"
    return f"expected {want_kinds[first]} where you returned {got_kinds[first]}{count}"


def diagnose(case: dict[str, Any], got: np.ndarray, want: np.ndarray) -> str:
    """A student-facing reason; reveals neither inputs nor reference values."""
    for variant in case.get("variants", []):
        value = array_from_reference(variant["value"])
        compared = got[:variant["first"]] if "first" in variant and got.ndim == 1 else got
        if value.shape == compared.shape and close(compared, value, case["rtol"], case["atol"]):
            return variant["message"]
    mismatch = nonfinite_mismatch(got, want)
    if mismatch:
        wrongly_nan = np.isnan(got) & ~np.isnan(want)
        wrongly_inf = np.isinf(got) & np.isfinite(want)
        hint = case.get("nan_hint") if wrongly_nan.any() else case.get("inf_hint") if wrongly_inf.any() else None
        return f"{mismatch}: {hint}" if hint else mismatch
    nonzero = np.isfinite(want) & (np.abs(want) > 1e-12)  # NaN and infinities already agree here
    if nonzero.any():
        ratios = got[nonzero] / want[nonzero]
        ratio = float(np.median(ratios))
        if np.allclose(ratios, ratio, rtol=1e-6):
            for known, message in RATIO_MESSAGES:
                if math.isclose(ratio, known, rel_tol=1e-6):
                    return message
            batch = case.get("batch")
            if batch and math.isclose(ratio, batch, rel_tol=1e-6):
                return "your result is the batch size times the expected: sum instead of mean"
            if batch and math.isclose(ratio, 1 / batch, rel_tol=1e-6):
                return "your result is the expected divided by the batch size: mean instead of sum"
            if math.isclose(ratio, -1.0, rel_tol=1e-6):
                return "your result has the wrong sign: a loss is the NEGATIVE log-likelihood"
    return case.get("wrong_hint", "the values differ from the expected ones beyond the tolerance")


RATIO_MESSAGES = [
    (1 / math.log(2), "your result is 1/log(2) times the expected: natural log, please (nats, not bits)"),
    (math.log(2), "your result is log(2) times the expected: use log base 2 here (bits)"),
    (1 / math.log(10), "your result is 1/log(10) times the expected: natural log, please, not log10"),
]
