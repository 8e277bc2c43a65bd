"""The torch cross-entropy check on the grading machine's own device.

Inputs are generated from a fresh seed on every grading run (so no answer
can be prepared in advance): the kernel and the grader draw the same logits
with ``torch.Generator`` on the same device.  The grader computes, in its own
process, ``F.cross_entropy`` on that device and a float64 reference, and the
student's per-sample losses, mean and gradient must match both.

Sizes: a GPU gets a language-model-sized batch (4096 x 50257, float32); a CPU
a smaller one.  The feedback always says which device ran.
"""
from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from .cases import stored_array
from .harness import generated

if TYPE_CHECKING:
    import torch

SIZES = {"cuda": (4096, 50257), "cpu": (512, 2000)}
LOGIT_SCALE = 3.0
# float32 log-sum-exp over C classes carries a relative error of a few
# C-independent ulps per term plus summation error ~ sqrt(C) * 6e-8, i.e.
# about 1e-5 absolute on a loss near log(50257) = 10.8.  1e-4 leaves a
# margin for a different (honest) summation order; a wrong formula is off
# by far more.
LOSS_TOLERANCE = dict(rtol=1e-4, atol=1e-4)
# Gradient entries are (softmax - onehot) / N; compared through random
# projections relative to their own scale.
GRAD_RTOL = 1e-3


def stored(tensor: torch.Tensor) -> dict[str, Any]:
    return stored_array(tensor.detach().cpu().numpy())


def parity_case(case: dict[str, Any], device: str) -> dict[str, Any]:
    """Turn a stored parity case into a concrete case for this run and device."""
    import torch
    import torch.nn.functional as F

    rows, classes = SIZES[device]
    seed = secrets.randbits(31)
    logits_spec = {"generate": {"kind": "normal", "shape": [rows, classes], "seed": seed, "dtype": "float32", "scale": LOGIT_SCALE}}
    targets_spec = {"generate": {"kind": "randint", "shape": [rows], "seed": seed + 1, "high": classes}}
    probe_spec = {"generate": {"kind": "normal", "shape": [classes], "seed": seed + 2, "dtype": "float64", "scale": 1.0}}

    logits, targets, probe = (generated(spec["generate"], device) for spec in (logits_spec, targets_spec, probe_spec))
    reduction = case["reduction"]
    template = {k: v for k, v in case.items() if k not in ("parity", "reduction")}
    concrete = dict(template, args=[logits_spec, targets_spec], kwargs={"reduction": reduction}, torch=True,
                    about=f"{case['about']} ({rows} x {classes}, float32, on {device})", **LOSS_TOLERANCE)
    same_device = F.cross_entropy(logits, targets, reduction=reduction)
    float64 = F.cross_entropy(logits.double(), targets, reduction=reduction)
    concrete["expected"] = stored(float64)
    concrete["also_expected"] = [{"value": stored(same_device), "label": f"F.cross_entropy on {device}", **LOSS_TOLERANCE}]
    if case.get("grad"):
        leaf = logits.double().requires_grad_(True)
        F.cross_entropy(leaf, targets).backward()
        projected = leaf.grad @ probe
        scale = float(projected.abs().max())
        concrete["grad_probe"] = probe_spec
        concrete["expected_grad"] = stored(projected)
        concrete["grad_tolerance"] = {"rtol": GRAD_RTOL, "atol": GRAD_RTOL * scale}
    return concrete
