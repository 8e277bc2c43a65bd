"""Kernel-side half of a hidden check.  Its *source text* is sent to the
student's kernel; nothing here is trusted by the grader.

``run_case`` decodes the inputs of one case, calls the student's function
from the notebook's namespace, and displays the result as plain JSON under
``RESULT_MIME``: floats travel as base64 little-endian float64 bytes (exact,
NaN and inf included), strings and integers as JSON.  The grader parses that
JSON in its own process and decides; a kernel that lies can only send data,
and data is compared against references it never sees.
"""
RESULT_MIME = "application/vnd.course.check-result+json"


def run_case(namespace, request):
    import base64
    import json

    import numpy
    from IPython.display import display

    def decode(value, as_torch, device):
        if isinstance(value, dict) and "base64" in value:
            raw = base64.b64decode(value["base64"])
            array = numpy.frombuffer(raw, dtype=value["dtype"]).reshape(value["shape"]).copy()
            if as_torch:
                import torch

                return torch.from_numpy(array).to(device)
            return array
        if isinstance(value, dict) and "generate" in value:
            import torch

            spec = value["generate"]
            generator = torch.Generator(device=device).manual_seed(spec["seed"])
            if spec["kind"] == "normal":
                return torch.randn(spec["shape"], generator=generator, device=device, dtype=getattr(torch, spec["dtype"])) * spec["scale"]
            return torch.randint(0, spec["high"], spec["shape"], generator=generator, device=device)
        if isinstance(value, list):
            return [decode(v, as_torch, device) for v in value]
        return value

    def encode(value):
        kind = type(value).__module__.split(".")[0] + "." + type(value).__name__
        device = None
        if kind == "torch.Tensor":
            device = str(value.device)
            value = value.detach().cpu().numpy()
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return {"strings": list(value), "type": kind}
        if isinstance(value, (bool, numpy.bool_)):
            return {"bool": bool(value), "type": kind}
        array = numpy.asarray(value)
        if array.dtype.kind not in "biuf":
            return {"unsupported": kind, "dtype": str(array.dtype)}
        return {
            "base64": base64.b64encode(numpy.ascontiguousarray(array, dtype="<f8").tobytes()).decode("ascii"),
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            "type": kind,
            "device": device,
        }

    reply = {"nonce": request["nonce"], "case": request["case"]}
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
        result = function(*args, **kwargs)
        reply["result"] = encode(result)
        if request.get("grad"):
            result.backward()
            grad = args[0].grad
            if request.get("grad_probe") is not None:
                grad = grad.double() @ decode(request["grad_probe"], True, device).double()
            reply["grad"] = encode(grad)
    except BaseException as error:  # the student's error is feedback, not a grader fault
        reply["error"] = f"{type(error).__name__}: {str(error)[:300]}"
    display({RESULT_MIME: json.dumps(reply)}, raw=True)
