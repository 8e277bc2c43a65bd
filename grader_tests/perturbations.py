"""Last-bit noise for the hidden references: what another CPU does to them, simulated on this one.

Another CPU computes the same float64 formulas along other paths (other SIMD kernels in libm and in
the BLAS, another summation order, another split of a reduction between threads), so any operation
may round the other way.  A well-conditioned reference then moves by a few ulps and grades every
submission the same; an ill-conditioned one (a chaotic training run) moves by any amount, and no
tolerance can save it.  So a reference must be *stable*: recomputed under last-bit noise, every
value stays far inside the tolerance its judge uses.

``make_references.py OUT --perturb KIND`` recomputes every reference under one kind of noise:

- ``rounding``: the result of every floating-point torch operation (forward and backward, at the
  aten level) is moved by one ulp up or down at random, as if each were rounded on another machine;
  so are the results of numpy's and math's transcendental functions and reductions called by the
  reference implementations (``NoisyModule``);
- ``inputs``: every random input, and every literal input that is not a whole number, moved by one
  ulp at random (exact edge cases such as probabilities 0 and 1, labels and counts stay as they are:
  they are facts of the case, not measurements);
- ``threads``: another thread count for OpenMP, OpenBLAS and MKL (through the environment the caller
  sets) and for torch's intra-op pool; it changes results only where an operation is large enough to
  be split between threads (torch's grain is 32768 elements), so it guards what grows, not today's sizes;
- ``simd``: the environment (``SIMD_ENV``, set by the caller before the interpreter starts) sends
  torch to its portable kernels instead of AVX2/AVX-512 or NEON, NumPy to its baseline loops, MKL
  to its compatible code path and OpenBLAS to an older core's kernels.

``stability_problems(perturbed, committed)`` names every value that moved further than
``STABILITY_SHARE`` of its judge's tolerance.  tests/test_reference_stability.py runs them all.
"""
import math
import os
import platform

import numpy as np

KINDS = ("rounding", "inputs", "threads", "simd")
NOISE_SEED = 20261207

# A value may move by at most this share of the tolerance its judge uses: what is left covers the
# same noise on the grading machine's side, in the student's own code, a hundred times over.
STABILITY_SHARE = 0.01


def simd_env():
    """The environment that sends every library this process uses along its portable code paths."""
    env = {
        "ATEN_CPU_CAPABILITY": "default",  # torch: no AVX2/AVX-512 (or SVE) kernels
        "MKL_CBWR": "COMPATIBLE",  # MKL (torch's BLAS on x86-64): its CPU-independent code path
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
    }
    try:
        from numpy._core import _multiarray_umath as umath  # the list of NumPy's dispatched features

        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(umath.__cpu_dispatch__)
    except (ImportError, AttributeError):
        pass
    # OpenBLAS (NumPy's BLAS) built for many cores picks its kernels by the CPU unless told.
    env["OPENBLAS_CORETYPE"] = {"x86_64": "Nehalem", "aarch64": "ARMV8"}.get(platform.machine(), "")
    return {key: value for key, value in env.items() if value}


def thread_env():
    """Another thread count than this machine's default, for the pools that read the environment."""
    count = "1" if (os.cpu_count() or 1) > 1 else "3"
    return {name: count for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def environment(kind):
    """The variables the caller sets before starting ``make_references.py --perturb kind``."""
    return simd_env() if kind == "simd" else thread_env() if kind == "threads" else {}


def _nudge(values, generator):
    """``values`` (float64) each moved one ulp up or down at random; zeros, NaN and infinities kept."""
    values = np.asarray(values, dtype=np.float64)
    up = generator.random(values.shape) < 0.5
    moved = np.where(up, np.nextafter(values, np.inf), np.nextafter(values, -np.inf))
    return np.where(np.isfinite(values) & (values != 0), moved, values)


class InputNoise:
    """Moves inputs by one ulp: every random draw, and literal inputs that are not whole numbers."""

    def __init__(self):
        self.generator = np.random.default_rng(NOISE_SEED)

    def draw(self, values):
        """A float array just drawn from a seeded generator, nudged."""
        values = np.asarray(values)
        if values.dtype.kind != "f":
            return values
        nudged = _nudge(values, self.generator)
        return nudged if nudged.shape else float(nudged)

    def literal(self, value):
        """A literal input: nudged unless it is a whole number (or all whole numbers: labels, counts)."""
        if isinstance(value, bool) or isinstance(value, (int, str)):
            return value
        if isinstance(value, (list, tuple)):  # (beta1, beta2), a list of rates
            return type(value)(self.literal(item) for item in value)
        if isinstance(value, float):
            return value if value.is_integer() or not math.isfinite(value) else float(_nudge(value, self.generator))
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            whole = ~np.isfinite(value) | (value == np.round(value))
            return np.where(whole, value, _nudge(value, self.generator))
        return value


class NudgedGenerator:
    """A numpy Generator whose float draws are nudged by one ulp; everything else passes through."""

    FLOAT_DRAWS = ("random", "normal", "uniform", "standard_normal")

    def __init__(self, generator, noise):
        self._generator, self._noise = generator, noise

    def __getattr__(self, name):
        attribute = getattr(self._generator, name)
        if name not in self.FLOAT_DRAWS:
            return attribute
        return lambda *args, **kwargs: self._noise.draw(attribute(*args, **kwargs))


class NoisyModule:
    """numpy (or math) as the reference code sees it under the rounding noise: the functions whose results another
    CPU may round otherwise (libm's transcendental functions; reductions and products, whose summation order
    differs) return float results moved one ulp at random.  Operators + - * / and sqrt need none: IEEE 754 rounds
    them correctly on every CPU.  Array methods (``x.sum()``) are not reached; the input noise covers them."""

    NOISY = ("exp", "log", "log1p", "expm1", "log2", "log10", "exp2", "tanh", "sin", "cos", "power", "logaddexp",
             "sum", "mean", "var", "std", "average", "dot", "matmul", "einsum", "prod", "cumsum", "fsum")

    def __init__(self, module, generator):
        self._module, self._generator = module, generator

    def __getattr__(self, name):
        attribute = getattr(self._module, name)
        if name not in self.NOISY or not callable(attribute):
            return attribute

        def noisy(*args, **kwargs):
            result = attribute(*args, **kwargs)
            values = np.asarray(result) if isinstance(result, (float, np.ndarray, np.floating)) else None
            if values is None or values.dtype.kind != "f":
                return result
            moved = _nudge(values, self._generator)
            return float(moved) if isinstance(result, float) else moved if moved.shape else np.float64(moved)
        return noisy


def noisy_modules(namespace):
    """``namespace`` (a reference implementation's globals) with numpy and math under the rounding noise."""
    generator = np.random.default_rng(NOISE_SEED + 1)
    for name, module in list(namespace.items()):
        if getattr(module, "__name__", None) in ("numpy", "math"):
            namespace[name] = NoisyModule(module, generator)
    return namespace


def rounding_noise():
    """A dispatch mode under which every floating-point torch result is rounded one ulp off at random.

    At the aten level, so autograd's backward, optimizers and in-place updates are covered too."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_map

    generator = torch.Generator().manual_seed(NOISE_SEED)

    def nudge(value):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.numel() == 0:
            return value
        # below autograd (a dispatch mode sees aten operators after it), so nothing here joins a graph
        up = torch.rand(value.shape, generator=generator) < 0.5
        moved = torch.where(up, torch.nextafter(value, torch.full_like(value, math.inf)),
                            torch.nextafter(value, torch.full_like(value, -math.inf)))
        # a whole-number result (a step counter, a count) is exact on every CPU: IEEE arithmetic on
        # whole numbers is, and libm's exp(0) and log(1) are too
        keep = ~torch.isfinite(value) | (value == torch.round(value))
        return torch.where(keep, value, moved)

    class RoundingNoise(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            if func in _EXACT_OPS:
                return result
            if isinstance(result, torch.Tensor) and _is_alias_of_input(result, args):
                # an in-place op (W -= ...): round the stored value itself
                result.copy_(nudge(result))
                return result
            return tree_map(lambda value: value if _is_view(value) else nudge(value), result)

    _EXACT_OPS = _exact_ops(torch)
    return RoundingNoise()


def _exact_ops(torch):
    """Operations that only move, select or copy values: no rounding happens in them on any CPU."""
    aten = torch.ops.aten
    names = ("detach", "clone", "copy_", "_to_copy", "view", "_unsafe_view", "reshape", "t", "transpose",
             "permute", "expand", "select", "slice", "index", "index_select", "gather", "unsqueeze", "squeeze",
             "cat", "stack", "split", "split_with_sizes", "unbind", "lift_fresh", "alias", "empty_like", "zeros_like",
             "ones_like", "full_like", "fill_", "zero_", "as_strided", "contiguous", "max", "amax", "min", "amin",
             "argmax", "argmin", "where", "masked_fill", "one_hot", "scalar_tensor", "_local_scalar_dense",
             "eq", "ne", "lt", "le", "gt", "ge", "isfinite", "isnan", "isinf", "abs", "neg", "sign", "_has_compatible_shallow_copy_type",
             # uniform draws are exact (whole random bits, scaled); normal ones (Box-Muller's log and cos) are not
             "nextafter", "rand", "randint", "randperm", "uniform_", "random_",
             "arange", "zeros", "ones", "full", "empty", "new_zeros", "new_ones", "new_empty", "new_full",
             "set_", "resize_", "item")
    ops = set()
    for name in names:
        packet = getattr(aten, name, None)
        if packet is not None:
            ops.update(getattr(packet, overload) for overload in packet.overloads())
    return ops


def _is_view(value):
    import torch

    return isinstance(value, torch.Tensor) and value._is_view()


def _is_alias_of_input(result, args):
    import torch

    return any(isinstance(a, torch.Tensor) and a.data_ptr() == result.data_ptr() and a.numel() == result.numel()
               for a in args)


# ---- judging what moved ---------------------------------------------------------------------------------

def _values(stored):
    """A stored array ({"data", "dtype", "shape"}) as a float64 array; None when it holds no numbers."""
    if isinstance(stored, dict) and "data" in stored:
        from course.cases import array_from_reference

        return np.asarray(array_from_reference(stored), dtype=np.float64)
    return None


def _moved(fresh, committed, rtol, atol):
    """How a fresh value differs from the committed one beyond ``STABILITY_SHARE`` of the tolerance."""
    got, want = _values(fresh), _values(committed)
    if got is None or want is None:
        return None if fresh == committed else "changed"
    if got.shape != want.shape:
        return f"shape {got.shape}, committed {want.shape}"
    kinds_differ = (np.isnan(got) != np.isnan(want)) | (np.isinf(got) & (got != want))
    if kinds_differ.any():
        return f"{int(kinds_differ.sum())} entries changed between finite, nan and inf"
    finite = np.isfinite(want)
    allowed = STABILITY_SHARE * (atol + rtol * np.abs(want[finite]))
    excess = np.abs(got[finite] - want[finite]) - allowed
    if excess.size and excess.max() > 0:
        worst = int(np.argmax(excess))
        return (f"moved by {abs(got[finite][worst] - want[finite][worst]):.3g} where "
                f"{STABILITY_SHARE:g} of the judge's tolerance allows {allowed[worst]:.3g} "
                f"({int((excess > 0).sum())} of {excess.size} entries)")
    return None


def stability_problems(perturbed, committed):
    """Every expected value, variant, float32 expectation and gradient of ``committed`` (a parsed
    references file) that ``perturbed`` (the same file recomputed under noise) moved further than
    STABILITY_SHARE of the tolerance its judge applies; and every variant that appeared or vanished."""
    found = []
    for grade_id in perturbed["checks"].keys() - committed["checks"].keys():
        found.append(f"{committed['assignment']} {grade_id}: a check only in the recomputed file")
    for grade_id, cases in committed["checks"].items():
        fresh_cases = {case["case"]: case for case in perturbed["checks"].get(grade_id, [])}
        for extra in fresh_cases.keys() - {case["case"] for case in cases}:
            found.append(f"{committed['assignment']} {extra}: a case only in the recomputed file")
        for case in cases:
            name = f"{committed['assignment']} {case['case']} ({case.get('about', '')})"
            fresh = fresh_cases.get(case["case"])
            if fresh is None:
                found.append(f"{name}: missing when recomputed")
                continue
            if "expected" not in case:  # a parity template: computed on the grading device, not stored
                continue
            rtol, atol = case["rtol"], case["atol"]
            moved = _moved(fresh["expected"], case["expected"], rtol, atol)
            if moved:
                found.append(f"{name}: expected value {moved}")
            fresh_variants = {v["message"]: v["value"] for v in fresh.get("variants", [])}
            for variant in case.get("variants", []):
                if variant["message"] not in fresh_variants:
                    found.append(f"{name}: variant {variant['message']!r} no longer differs from the answer")
                    continue
                moved = _moved(fresh_variants[variant["message"]], variant["value"], rtol, atol)
                if moved:
                    found.append(f"{name}: variant {variant['message']!r} {moved}")
            for message in fresh_variants.keys() - {v["message"] for v in case.get("variants", [])}:
                found.append(f"{name}: variant {message!r} appears only when recomputed")
            if len(fresh.get("also_expected", [])) != len(case.get("also_expected", [])):
                found.append(f"{name}: {len(fresh.get('also_expected', []))} float32 expectations when recomputed, "
                             f"{len(case.get('also_expected', []))} committed")
            for fresh_also, also in zip(fresh.get("also_expected", []), case.get("also_expected", [])):
                moved = _moved(fresh_also["value"], also["value"], also["rtol"], also["atol"])
                if moved:
                    found.append(f"{name}: {also['label']} {moved}")
            if "expected_grad" in case:
                tolerance = case.get("grad_tolerance", {"rtol": rtol, "atol": atol})
                moved = _moved(fresh.get("expected_grad"), case["expected_grad"], tolerance["rtol"], tolerance["atol"])
                if moved:
                    found.append(f"{name}: gradient {moved}")
    return found
