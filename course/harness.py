"""Kernel-side half of a hidden check, and the wire format both halves use.

Its *source text* is sent to the student's kernel, once, before the submission's first cell
(``course.judge.harness_install_code``), so it imports nothing from ``course``; the grader imports the
same module for ``encode_array`` and ``decode_array``.  Nothing the kernel
sends is trusted by the grader.

``run_case`` decodes the inputs of one call, calls the student's function from the notebook's
namespace once, and displays, for each case judged from that call (``views``: the part of the
result each judges), one reply as plain JSON under ``RESULT_MIME``.  Arrays travel both
ways as ``encode_array`` writes them: their values as base64 little-endian float64 bytes (exact,
NaN, infinities and -0.0 included), their shape, and their dtype's name; strings and plain
numbers travel as JSON.  The grader parses the reply in its own process and decides; a kernel
that lies can only send data, and data is compared against references it never sees.
"""
from __future__ import annotations

import base64
import binascii
import math

import numpy

# True for the type checker only: this source also runs in the student's kernel, where it imports nothing for types
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    import torch

RESULT_MIME = "application/vnd.course.judge-result+json"
MAX_DIMENSIONS, MAX_EXTENT = 8, 10**8


def encode_array(value: object) -> dict[str, Any]:
    """An array (or number) on the wire: float64 bytes in base64, shape, and the dtype it had."""
    array = numpy.asarray(value)
    return {"base64": base64.b64encode(numpy.ascontiguousarray(array, dtype="<f8").tobytes()).decode("ascii"),
            "shape": list(array.shape), "dtype": str(array.dtype)}


def decode_array(payload: dict[str, Any], what: str = "result") -> numpy.ndarray:
    """The float64 array ``encode_array`` wrote, or ValueError saying what is malformed about it."""
    shape = payload.get("shape")
    if not (isinstance(shape, list) and all(isinstance(n, int) and 0 <= n < MAX_EXTENT for n in shape)
            and len(shape) <= MAX_DIMENSIONS):
        raise ValueError(f"the {what} had a malformed shape")
    try:
        raw = base64.b64decode(payload.get("base64", ""), validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise ValueError(f"the {what} was not valid base64 data") from None
    if len(raw) != 8 * math.prod(shape):
        raise ValueError(f"the {what} data does not match its shape")
    return numpy.frombuffer(raw, dtype="<f8").reshape(shape)


def generated(spec: dict[str, Any], device: str) -> torch.Tensor:
    """The tensor a "generate" input stands for, drawn from its seed on ``device``: the kernel and the
    grader (``course.parity``) draw the same one."""
    import torch

    generator = torch.Generator(device=device).manual_seed(spec["seed"])
    if spec["kind"] == "normal":
        return torch.randn(spec["shape"], generator=generator, device=device, dtype=getattr(torch, spec["dtype"])) * spec["scale"]
    return torch.randint(0, spec["high"], spec["shape"], generator=generator, device=device)


def decode(value: Any, as_torch: bool, device: str) -> Any:
    """An input as the request carries it, made into the value the student's function is called with."""
    if isinstance(value, dict) and "base64" in value:
        array = decode_array(value, "input").astype(value["dtype"])
        if as_torch:
            import torch

            return torch.from_numpy(array).to(device)
        return array
    if isinstance(value, dict) and "generate" in value:
        return generated(value["generate"], device)
    if isinstance(value, dict) and "quadratic_gradient" in value:
        # the gradient of sum(curvature * (x - minimum)**2 / 2): a grad_fn for gradient descent
        spec = value["quadratic_gradient"]
        curvature, minimum = numpy.asarray(spec["curvature"], float), numpy.asarray(spec["minimum"], float)
        return lambda x: curvature * (x - minimum)
    if isinstance(value, dict) and "bigram_indices" in value:
        # the current (part 0) or next (part 1) character of every bigram of "." + word + "."
        spec = value["bigram_indices"]
        chars = ".abcdefghijklmnopqrstuvwxyz"
        indices = [chars.index(pair[spec["part"]]) for w in spec["words"] for pair in zip("." + w, w + ".")]
        if as_torch:
            import torch

            return torch.tensor(indices, dtype=torch.int64, device=device)
        return numpy.array(indices, dtype=numpy.int64)
    if isinstance(value, list):
        return [decode(v, as_torch, device) for v in value]
    return value

def encode(value: Any) -> dict[str, Any]:
    """A result (or one view of it) as the reply carries it: plain JSON, arrays as ``encode_array`` writes them."""
    kind = type(value).__module__.split(".")[0] + "." + type(value).__name__
    device = None
    if kind == "torch.Tensor":
        device = str(value.device)
        value = value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return {"strings": list(value), "type": kind}
    if isinstance(value, (bool, numpy.bool_)):
        return {"bool": bool(value), "type": kind}
    try:
        array = numpy.asarray(plain(value))
    except ValueError:  # parts of different shapes
        return {"unsupported": kind + " of parts with different shapes", "dtype": "mixed"}
    if array.dtype.kind not in "biuf":
        return {"unsupported": kind, "dtype": str(array.dtype)}
    return dict(encode_array(array), type=kind, device=device)

def error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error)[:300]}"


def run_case(namespace: dict[str, Any], request: dict[str, Any]) -> None:
    import json

    from IPython.display import display

    views = request["views"]  # every case judged from this one call: [case id, the view of the result it judges]
    replies = [{"nonce": request["nonce"], "case": case} for case, _ in views]
    try:
        function = namespace.get(request["function"])
        if not callable(function):
            raise NameError(f"no function named {request['function']!r} is defined")
        device = request.get("device", "cpu")
        as_torch = request.get("torch", False)
        args = [decode(a, as_torch, device) for a in request["args"]]
        kwargs = {k: decode(v, as_torch, device) for k, v in request.get("kwargs", {}).items()}
        if request.get("grad"):
            args[0] = args[0].clone().requires_grad_(True)
        chain = request.get("chain")
        if chain:
            chain = dict(chain, steps=[{k: decode(v, as_torch, device) for k, v in step.items()} for step in chain["steps"]])
        result = call(function, args, kwargs, chain)
        if len(views) > 1 and single_use(result):  # a generator: every view reads it whole
            result = list(result)
        for reply, (_, how) in zip(replies, views):
            try:
                reply["result"] = encode(view(result, how))
            except Exception as error:  # this view of the result fails; the others stand
                reply["error"] = error_text(error)
        if request.get("grad"):
            result.backward()
            grad = args[0].grad
            if request.get("grad_probe") is not None:
                grad = grad.double() @ decode(request["grad_probe"], True, device).double()
            grad = encode(grad)
            for reply in replies:
                reply["grad"] = grad
    except BaseException as error:  # the student's error is feedback, not a grader fault
        for reply in replies:
            reply["error"] = error_text(error)
    for reply in replies:
        display({RESULT_MIME: json.dumps(reply)}, raw=True)


def single_use(value: Any) -> bool:
    """An iterator, which a first reading exhausts (a generator of minibatches, say)."""
    try:
        return iter(value) is value
    except Exception:
        return False


def call(function: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any],
         chain: dict[str, Any] | None = None) -> Any:
    """Call the function once, or, for a chain, once per step: several steps of an optimizer, where
    ``chain["steps"]`` gives each step's new arguments ({position: value}) and ``chain["feed"]`` says
    which outputs become which arguments of the next step ([[output, position], ...]).  A chain returns
    the list of every step's result."""
    if not chain:
        return function(*args, **kwargs)
    args, results = list(args), []
    for step in chain["steps"]:
        for position, value in step.items():
            args[int(position)] = value
        result = function(*args, **kwargs)
        results.append(result)
        for output, position in chain["feed"]:
            args[position] = result[output]
    return results


def plain(value: Any) -> Any:
    """Tensors (also inside tuples and lists, e.g. an optimizer step's (param, state)) as NumPy arrays."""
    if type(value).__module__.split(".")[0] == "torch" and type(value).__name__ == "Tensor":
        return value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)) and not all(isinstance(v, str) for v in value):
        return [plain(v) for v in value]
    return value


def view(value: Any, how: str | None) -> Any:
    """The part of a result a case judges: one item of a tuple, or a summary of a list of batches."""
    if how is None:
        return value
    if how.startswith("item:"):
        return value[int(how[5:])]
    parts = [numpy.asarray(plain(part)).ravel() for part in value]
    if how == "lengths":
        return numpy.array([len(part) for part in parts], dtype=numpy.int64)
    joined = numpy.concatenate(parts) if parts else numpy.zeros(0, dtype=numpy.int64)
    if how == "concatenate":
        return joined
    if how.startswith("coverage:"):  # how often each index 0..n-1 appears
        return numpy.bincount(joined.astype(numpy.int64), minlength=int(how[9:]))
    raise ValueError(f"unknown view {how!r}")
