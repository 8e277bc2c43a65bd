"""Compute the hidden checks' float64 reference values.

    .venv/bin/python grader_tests/make_references.py

For every assignment it executes the reference implementations (the
solution cells of ``solutions/<id>/*.ipynb``) in float64 on seeded inputs,
edge cases included, and writes ``grader_tests/references/<id>.json``:
``{"checks": {grade_id: [case, ...]}}``.  A case holds the hidden inputs, the
expected output, the tolerance, and the outputs of known mistakes (so the
feedback can name the mistake without revealing the answer).  Inputs are
seeded and the JSON is written with sorted keys, so running it twice on one
machine gives identical files.  On another CPU the float64 values may differ
in the last bits (``log``, ``exp`` and reductions take different SIMD paths),
so regenerated references are compared with the committed ones by
``differences()``: the same structure exactly, floats within
``REPRODUCIBLE_RTOL``.

This folder never reaches students or the site: the grader reads it in its
own process, and the sandbox cannot see it.
"""
import json
import math
from pathlib import Path

import nbformat
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "references"
SEED = 20261121

# Tolerances.  Inputs are float64 and honest float64 implementations differ
# only by summation order and by equivalent formulas (log1p vs log, max
# subtraction), i.e. by a few ulps times the number of terms: ~1e-13
# relative for our sizes.  rtol=1e-7 leaves six orders of magnitude for
# honest variation; every listed mistake is off by more than 1e-3.  atol
# covers exact zeros (KL(P||P), entropy of a one-hot).
FLOAT64 = dict(rtol=1e-7, atol=1e-10)
# Torch functions may be given float32 inputs by students' own tests, but
# the hidden inputs here are float64 tensors, so the same tolerance holds.
TORCH_FLOAT64 = FLOAT64
EXACT = dict(rtol=0.0, atol=0.0)
# How far a regenerated reference may drift from the committed one: a few ulps of float64 (2.2e-16)
# times the terms summed, as between two CPUs' math libraries. Five orders of magnitude inside the
# grading tolerance above, so a reference that passes this grades every submission the same.
REPRODUCIBLE_RTOL = 1e-12
# Near zero a relative bound means nothing: a value that cancels to about 0 (KL(P||P)) carries the
# rounding of its order-1 terms, a few ulps of 1.  Still five orders inside the grading atol.
REPRODUCIBLE_ATOL = 1e-15


def encode(value):
    array = np.asarray(value)
    dtype = "int64" if array.dtype.kind in "iub" else "float64"
    array = array.astype(dtype)
    return {"data": array.ravel().tolist(), "dtype": dtype, "shape": list(array.shape)}


def encode_arg(value):
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return value
    return encode(value)


def reference_namespace(assignment):
    """Run the solution notebook's non-test code cells; return their namespace."""
    namespace = {}
    (notebook_path,) = sorted((ROOT / "solutions" / assignment).glob("*.ipynb"))
    notebook = nbformat.read(notebook_path, as_version=4)
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and not meta.get("grade"):
            exec(compile(cell.source, f"{notebook_path.name}:{meta.get('grade_id')}", "exec"), namespace)
    return namespace


class Cases:
    """Collects the cases of one assignment, computing expected values with the reference."""

    def __init__(self, assignment):
        self.assignment = assignment
        self.ref = reference_namespace(assignment)
        self.checks = {}

    def add(self, grade_id, function, about, args, kwargs=None, tolerance=FLOAT64, variants=(), torch=False, **extra):
        kwargs = kwargs or {}
        fn = self.ref[function]
        call_args = [self.to_torch(a) if torch else a for a in args]
        call_kwargs = {k: self.to_torch(v) if torch else v for k, v in kwargs.items()}
        expected = fn(*call_args, **call_kwargs)
        case = {
            "case": f"{grade_id}-{len(self.checks.get(grade_id, [])) + 1}",
            "function": function,
            "about": about,
            "args": [encode_arg(a) for a in args],
            "kwargs": {k: encode_arg(v) for k, v in kwargs.items()},
            "torch": torch,
            **tolerance,
            **extra,
        }
        if isinstance(expected, list) and all(isinstance(s, str) for s in expected):
            case["expected"] = {"strings": expected}
        else:
            case["expected"] = encode(self.numpy(expected))
        case["variants"] = []
        for message, wrong in variants:
            value = self.numpy(wrong(self.ref, *call_args, **call_kwargs))
            if value.shape == self.numpy(expected).shape and not np.allclose(value, self.numpy(expected), rtol=1e-6, equal_nan=True):
                case["variants"].append({"message": message, "value": encode(value)})
        self.checks.setdefault(grade_id, []).append(case)
        return case

    @staticmethod
    def to_torch(value):
        import torch

        return torch.from_numpy(np.asarray(value)) if isinstance(value, np.ndarray) else value

    @staticmethod
    def numpy(value):
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        return np.asarray(value, dtype=np.float64)

    def write(self, folder=OUT):
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.assignment}.json"
        path.write_text(json.dumps({"assignment": self.assignment, "checks": self.checks}, sort_keys=True, indent=1) + "\n")
        return path


def rng(salt):
    return np.random.default_rng([SEED, salt])


def random_distribution(g, shape, zeros=False):
    p = g.random(shape) + 0.05
    if zeros:
        p[..., 0] = 0.0
    return p / p.sum(axis=-1, keepdims=True)


def distributions():
    c = Cases("a1-distributions")
    g = rng(1)
    x = g.normal(size=50) * 3
    c.add("test_gaussian_log_pdf", "gaussian_log_pdf", "a batch of 50 points, standard normal", [x])
    c.add("test_gaussian_log_pdf", "gaussian_log_pdf", "points with mu = 1.5, sigma = 0.3", [x], {"mu": 1.5, "sigma": 0.3},
          variants=[("you used sigma as the variance: the density needs sigma**2",
                     lambda r, x, mu, sigma: r["gaussian_log_pdf"](x, mu, math.sqrt(sigma)))])
    c.add("test_gaussian_log_pdf", "gaussian_log_pdf", "a point 40 sigma from the mean", [np.array([40.0])],
          inf_hint="take the log analytically, not np.log of the density")
    k = (g.random(40) < 0.4).astype(float)
    p = g.random(40) * 0.98 + 0.01
    c.add("test_bernoulli_log_pmf", "bernoulli_log_pmf", "40 outcomes with random p", [k, p],
          variants=[("you swapped the roles of p and 1 - p", lambda r, k, p: r["bernoulli_log_pmf"](k, 1 - p))])
    c.add("test_bernoulli_log_pmf", "bernoulli_log_pmf", "probabilities of exactly 0 and 1",
          [np.array([1.0, 0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0, 1.0])],
          nan_hint="0 * log(0) must count as 0: pick the log term by the outcome instead of multiplying")
    for n, heads in ((10, 8), (37, 0), (25, 25), (1000, 613)):
        samples = np.array([1] * heads + [0] * (n - heads))
        g.shuffle(samples)
        c.add("test_bernoulli_mle", "bernoulli_mle", f"{n} flips", [samples])
    y, mu = g.normal(size=64), g.normal(size=64)
    c.add("test_gaussian_nll", "gaussian_nll", "a batch of 64 with sigma = 1", [y, mu], batch=64)
    c.add("test_gaussian_nll", "gaussian_nll", "a batch of 64 with sigma = 2.5", [y, mu], {"sigma": 2.5}, batch=64,
          variants=[("you dropped the constant 0.5 * log(2 pi sigma^2): that is MSE / (2 sigma^2), not the NLL",
                     lambda r, y, mu, sigma: float(np.mean((y - mu) ** 2) / (2 * sigma**2)))])
    c.add("test_gaussian_nll", "gaussian_nll", "a single example", [np.array([3.0]), np.array([-1.0])], {"sigma": 0.5})
    c.add("test_mse", "mse", "a batch of 64", [y, mu], batch=64,
          variants=[("you took the square root: that is the RMSE", lambda r, a, b: math.sqrt(r["mse"](a, b)))])
    c.add("test_mse", "mse", "a (16, 3) batch", [g.normal(size=(16, 3)), g.normal(size=(16, 3))], batch=48)
    return c


def losses():
    c = Cases("a2-losses")
    g = rng(2)
    softmax_hint = "logits of ±1000 overflow exp: subtract the max before exp"
    c.add("test_softmax", "softmax", "random logits of 10 classes", [g.normal(size=10) * 2], nan_hint=softmax_hint)
    c.add("test_softmax", "softmax", "logits of ±1000", [np.array([1000.0, -1000.0, 999.0, 0.0])], nan_hint=softmax_hint)
    batch = g.normal(size=(32, 7)) * 3
    c.add("test_softmax", "softmax", "a batch of shape (32, 7)", [batch], nan_hint=softmax_hint,
          variants=[("each row must sum to 1: normalise over the last axis (the classes)",
                     lambda r, z: r["softmax"](z, axis=0))])
    c.add("test_softmax", "softmax", "temperature 0.5", [batch], {"temperature": 0.5}, nan_hint=softmax_hint,
          variants=[("the temperature was ignored: divide the logits by T", lambda r, z, temperature: r["softmax"](z)),
                    ("you multiplied by the temperature: divide the logits by T",
                     lambda r, z, temperature: r["softmax"](z * temperature))])
    c.add("test_softmax", "softmax", "temperature 10 on large logits", [batch * 300], {"temperature": 10.0}, nan_hint=softmax_hint)
    lse_hint = "subtract the max before exp, then add it back after the log"
    c.add("test_logsumexp", "logsumexp", "a batch of shape (32, 7)", [batch], inf_hint=lse_hint, nan_hint=lse_hint)
    c.add("test_logsumexp", "logsumexp", "values near ±1000", [np.array([[1000.0, 999.0], [-1000.0, -1001.0]])],
          inf_hint=lse_hint, nan_hint=lse_hint)
    c.add("test_log_softmax", "log_softmax", "a batch of shape (32, 7)", [batch], inf_hint=lse_hint, nan_hint=lse_hint,
          variants=[("you returned the softmax, not its log", lambda r, z: r["softmax"](z))])
    c.add("test_log_softmax", "log_softmax", "logits of ±1000", [np.array([1000.0, -1000.0, 0.0])],
          inf_hint="log(softmax) underflows to log(0): use z - logsumexp(z)", nan_hint=lse_hint)
    probs = g.random(64)
    labels = (g.random(64) < 0.5).astype(float)
    clip_hint = "clip the probabilities to [eps, 1 - eps] before the log"
    c.add("test_binary_cross_entropy", "binary_cross_entropy", "a batch of 64", [probs, labels], batch=64, inf_hint=clip_hint, nan_hint=clip_hint,
          variants=[("you swapped predictions and labels", lambda r, p, y: r["binary_cross_entropy"](y, p))])
    c.add("test_binary_cross_entropy", "binary_cross_entropy", "probabilities of exactly 0 and 1",
          [np.array([0.0, 1.0, 1.0, 0.0, 0.5]), np.array([1.0, 0.0, 1.0, 0.0, 1.0])], batch=5, inf_hint=clip_hint, nan_hint=clip_hint)
    logits = g.normal(size=64) * 4
    stable_hint = "use the stable form max(z, 0) - z*y + log(1 + exp(-|z|)) instead of log(sigmoid(z))"
    c.add("test_bce_with_logits", "bce_with_logits", "the book's five logits",
          [np.array([-0.5, -0.8, 0.0, 0.8, 0.5]), np.array([0.0, 0.0, 1.0, 1.0, 1.0])], batch=5, inf_hint=stable_hint, nan_hint=stable_hint)
    c.add("test_bce_with_logits", "bce_with_logits", "a batch of 64", [logits, labels], batch=64, inf_hint=stable_hint, nan_hint=stable_hint,
          variants=[("the inputs are logits: you treated them as probabilities",
                     lambda r, z, y: r["binary_cross_entropy"](z, y))])
    c.add("test_bce_with_logits", "bce_with_logits", "logits of ±1000",
          [np.array([1000.0, -1000.0, 1000.0, -1000.0]), np.array([1.0, 0.0, 0.0, 1.0])], batch=4,
          inf_hint=stable_hint, nan_hint=stable_hint)
    p = random_distribution(g, (20, 6))
    q = random_distribution(g, (20, 6))
    pz = random_distribution(g, (20, 6), zeros=True)
    zero_hint = "terms with p = 0 must count as 0 (0 * log 0 = 0)"
    c.add("test_entropy", "entropy", "a batch of 20 distributions", [p], nan_hint=zero_hint)
    c.add("test_entropy", "entropy", "distributions with zeros, and a one-hot", [np.vstack([pz, np.eye(6)[:1]])], nan_hint=zero_hint)
    c.add("test_distribution_cross_entropy", "distribution_cross_entropy", "a batch of 20 pairs", [p, q], nan_hint=zero_hint,
          variants=[("you computed H(Q, P): the first argument is the true distribution",
                     lambda r, p, q: r["distribution_cross_entropy"](q, p))])
    c.add("test_distribution_cross_entropy", "distribution_cross_entropy", "true distributions with zeros", [pz, q], nan_hint=zero_hint)
    kl_swapped = ("KL with swapped arguments: KL(P || Q) is not KL(Q || P)", lambda r, p, q: r["kl_divergence"](q, p))
    c.add("test_kl_divergence", "kl_divergence", "a batch of 20 pairs", [p, q], nan_hint=zero_hint, variants=[kl_swapped])
    c.add("test_kl_divergence", "kl_divergence", "P with zeros", [pz, q], nan_hint=zero_hint, variants=[kl_swapped])
    c.add("test_kl_divergence", "kl_divergence", "KL of a distribution with itself", [q, q], nan_hint=zero_hint)
    return c


def bigram():
    c = Cases("a3-bigram")
    g = rng(3)
    words = c.ref["words"]
    hidden = [words[i] for i in sorted(g.choice(len(words), size=300, replace=False))]
    odd = ["a", "zz", "qxj", "bob", "xavier", "yy"]
    c.add("test_bigram_counts", "bigram_counts", "300 census names", [hidden], tolerance=EXACT, integer=True,
          variants=[("you forgot the '.' start and end tokens",
                     lambda r, ws: r["bigram_counts"](ws) - _boundary_counts(r, ws))])
    c.add("test_bigram_counts", "bigram_counts", "short and unusual words", [odd], tolerance=EXACT, integer=True)
    counts = c.ref["bigram_counts"](hidden)
    c.add("test_bigram_probs", "bigram_probs", "counts of 300 names, smoothing 1", [counts],
          variants=[("normalise each ROW (the current character), not each column",
                     lambda r, n: (n + 1.0) / (n + 1.0).sum(axis=0, keepdims=True))])
    c.add("test_bigram_probs", "bigram_probs", "counts of 300 names, smoothing 0.1", [counts], {"smoothing": 0.1},
          variants=[("the smoothing argument was ignored", lambda r, n, smoothing: r["bigram_probs"](n))])
    probs = c.ref["bigram_probs"](c.ref["bigram_counts"](words))
    log2_ratio = "your result is 1/log(2) times the expected: natural log, please (nats, not bits)"
    c.add("test_bigram_nll", "bigram_nll", "the full model on 300 names", [probs, hidden],
          variants=[("sum instead of mean: divide by the number of bigrams",
                     lambda r, P, ws: r["bigram_nll"](P, ws) * sum(len(w) + 1 for w in ws)),
                    ("you averaged over names instead of over bigrams",
                     lambda r, P, ws: r["bigram_nll"](P, ws) * sum(len(w) + 1 for w in ws) / len(ws)),
                    ("you left out the end-of-name token '.'", lambda r, P, ws: _nll_without_end(r, P, ws))],
          wrong_hint="the mean NLL over all bigrams (start and end tokens included) differs")
    c.add("test_bigram_nll", "bigram_nll", "unusual words", [probs, odd])
    c.add("test_perplexity", "perplexity", "several mean NLLs", [np.array([0.0, 1.0, 2.3, np.log(27)])],
          variants=[("perplexity is exp(NLL) for an NLL in nats, not 2**NLL", lambda r, x: 2.0**x)])
    c.add("test_sample_names", "sample_names", "20 names from the census model", [probs, 20, 1234],
          mismatch_hint="the names differ: use one torch.Generator seeded once, torch.multinomial(row, 1, replacement=True, generator=g) per character, start and stop at '.'")
    c.add("test_sample_names", "sample_names", "5 names from another seed", [probs, 5, 7],
          mismatch_hint="the names differ: use one torch.Generator seeded once, torch.multinomial(row, 1, replacement=True, generator=g) per character, start and stop at '.'")
    return c


def _boundary_counts(r, words):
    counts = np.zeros((27, 27), dtype=np.int64)
    for w in words:
        counts[0, r["STOI"][w[0]]] += 1
        counts[r["STOI"][w[-1]], 0] += 1
    return counts


def _nll_without_end(r, probs, words):
    total, n = 0.0, 0
    for w in words:
        chars = ["."] + list(w)
        for a, b in zip(chars, chars[1:]):
            total -= math.log(probs[r["STOI"][a], r["STOI"][b]])
            n += 1
    return total / n


def torch_cross_entropy():
    import torch

    c = Cases("a4-torch-cross-entropy")
    g = rng(4)
    nan_hint = "logits of ±1000 overflow exp: subtract the row max (log-sum-exp)"
    logits = g.normal(size=(64, 10)) * 3
    targets = g.integers(0, 10, size=64)

    def on_probabilities(r, z, y, reduction="mean"):
        return r["cross_entropy"](torch.softmax(z, dim=1), y, reduction=reduction)

    for reduction in ("mean", "none", "sum"):
        c.add("test_cross_entropy", "cross_entropy", f"a batch of 64 x 10, reduction={reduction!r}", [logits, targets],
              {"reduction": reduction}, torch=True, tolerance=TORCH_FLOAT64, batch=64, nan_hint=nan_hint,
              variants=[("cross_entropy was applied to probabilities: it takes logits (no softmax first)", on_probabilities)])
    extreme = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 999.0], [0.0, 0.0, 1000.0]])
    c.add("test_cross_entropy", "cross_entropy", "logits of ±1000", [extreme, np.array([1, 2, 2])], {"reduction": "none"},
          torch=True, tolerance=TORCH_FLOAT64, nan_hint=nan_hint, inf_hint=nan_hint)
    c.add("test_cross_entropy", "cross_entropy", "the mean loss and its gradient (autograd)", [logits, targets], torch=True,
          tolerance=TORCH_FLOAT64, grad=True, batch=64,
          expected_grad=encode(_autograd(c.ref["cross_entropy"], logits, targets)))
    # GPU parity: concrete inputs are drawn per grading run on the grader's device (course/parity.py).
    for reduction, grad in (("none", False), ("mean", True)):
        c.checks["test_cross_entropy"].append({
            "case": f"test_cross_entropy-parity-{reduction}", "function": "cross_entropy", "parity": True,
            "reduction": reduction, "grad": grad, "batch": None,
            "about": f"parity with F.cross_entropy, reduction={reduction!r}" + (" and gradient" if grad else ""),
            "nan_hint": nan_hint,
        })
    grad_hint = "the gradient of the MEAN loss is (softmax - one_hot) / N"
    c.add("test_cross_entropy_grad", "cross_entropy_grad", "a batch of 64 x 10", [logits, targets], torch=True, batch=64,
          nan_hint=grad_hint,
          variants=[("you forgot to divide by the batch size N", lambda r, z, y: r["cross_entropy_grad"](z, y) * z.shape[0]),
                    ("the sign is flipped: it is softmax MINUS one-hot", lambda r, z, y: -r["cross_entropy_grad"](z, y))])
    c.add("test_cross_entropy_grad", "cross_entropy_grad", "logits of ±1000", [extreme, np.array([1, 2, 2])], torch=True,
          nan_hint="logits of ±1000 overflow exp: subtract the row max before exp")
    return c


def _autograd(cross_entropy, logits, targets):
    import torch

    z = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    cross_entropy(z, torch.tensor(targets)).backward()
    return z.grad.numpy()


BUILDERS = (distributions, losses, bigram, torch_cross_entropy)


def differences(fresh, committed, where="$"):
    """Where two reference files (parsed JSON) differ by more than CPUs may: every key, list length,
    string, boolean and integer exactly; floats within REPRODUCIBLE_RTOL; NaN and infinities as they are."""
    if isinstance(committed, dict) and isinstance(fresh, dict):
        if fresh.keys() != committed.keys():
            return [f"{where}: keys {sorted(fresh.keys() ^ committed.keys())} differ"]
        return [d for key in committed for d in differences(fresh[key], committed[key], f"{where}.{key}")]
    if isinstance(committed, list) and isinstance(fresh, list):
        if len(fresh) != len(committed):
            return [f"{where}: {len(fresh)} items, committed {len(committed)}"]
        return [d for i, (a, b) in enumerate(zip(fresh, committed)) for d in differences(a, b, f"{where}[{i}]")]
    if isinstance(committed, float) and isinstance(fresh, (float, int)) and not isinstance(fresh, bool):
        if math.isnan(committed) or math.isinf(committed):
            same = (math.isnan(fresh) if math.isnan(committed) else fresh == committed)
        else:
            same = math.isclose(fresh, committed, rel_tol=REPRODUCIBLE_RTOL, abs_tol=REPRODUCIBLE_ATOL)
        return [] if same else [f"{where}: {fresh!r}, committed {committed!r}"]
    if type(fresh) is not type(committed) or fresh != committed:
        return [f"{where}: {fresh!r}, committed {committed!r}"]
    return []


def main(folder=OUT):
    for build in BUILDERS:
        cases = build()
        path = cases.write(Path(folder))
        total = sum(len(v) for v in cases.checks.values())
        print(f"{path}: {len(cases.checks)} checks, {total} cases")


if __name__ == "__main__":
    import sys

    main(*sys.argv[1:2])
