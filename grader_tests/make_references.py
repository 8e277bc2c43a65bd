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
``changes()``: the same structure exactly, inputs within ``REPRODUCIBLE_RTOL``,
computed values within a hundredth of their judge's tolerance.  That is only
safe because every computed value is *stable*: recomputed under last-bit noise
(``--perturb``, see perturbations.py) it moves by less than that; a value that
is not (a chaotic training run) is not compared at all (README, "Hidden
references must be stable").

This folder never reaches students or the site: the grader reads it in its
own process, and the sandbox cannot see it.
"""
import contextlib
import json
import math
import sys
from pathlib import Path

import nbformat
import numpy as np

from course.cases import problems, stored_array

sys.path.insert(0, str(Path(__file__).resolve().parent))  # perturbations.py, beside this file, as a script or imported
from perturbations import (KINDS as PERTURBATIONS, InputNoise, NudgedGenerator, noisy_modules, rounding_noise,
                           stability_problems)

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
# Two implementations of one recipe (the reference's optimizer step and torch.optim's) agree this
# closely, under the last-bit noise of perturbations.py too; a mistaken recipe is off by 1e-3 or more.
SAME_RECIPE = dict(rtol=1e-9, atol=1e-12)
# Near zero a relative bound means nothing: a value that cancels to about 0 (KL(P||P)) carries the
# rounding of its order-1 terms, a few ulps of 1.  Still five orders inside the grading atol.
REPRODUCIBLE_ATOL = 1e-15


def encode_arg(value):
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return value
    return stored_array(value)


def reference_namespace(assignment):
    """Run the solution notebook's non-test code cells; return their namespace."""
    namespace = {}
    (notebook_path,) = sorted((ROOT / "solutions" / assignment).glob("*.ipynb"))
    notebook = nbformat.read(notebook_path, as_version=4)
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and not meta.get("grade"):
            exec(compile(cell.source, f"{notebook_path.name}:{meta.get('grade_id')}", "exec"), namespace)
    return noisy_modules(namespace) if NUMPY_NOISE else namespace


class Cases:
    """Collects the cases of one assignment, computing expected values with the reference."""

    def __init__(self, assignment):
        self.assignment = assignment
        self.ref = reference_namespace(assignment)
        self.checks = {}
        self.rules = []  # the assignment's rules (course/cases.py, "rule"), enforced by course/rules.py

    def add(self, grade_id, function, about, args, kwargs=None, tolerance=FLOAT64, variants=(), torch=False, **extra):
        kwargs = kwargs or {}
        if INPUT_NOISE is not None:
            args = [INPUT_NOISE.literal(a) for a in args]
            kwargs = {k: INPUT_NOISE.literal(v) for k, v in kwargs.items()}
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
            case["expected"] = stored_array(self.numpy(expected))
        case["variants"] = []
        for message, wrong in variants:
            value = self.numpy(wrong(self.ref, *call_args, **call_kwargs))
            if value.shape == self.numpy(expected).shape and not np.allclose(value, self.numpy(expected), rtol=1e-6, equal_nan=True):
                case["variants"].append({"message": message, "value": stored_array(value)})
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
        references = {"assignment": self.assignment, "checks": self.checks, **({"rules": self.rules} if self.rules else {})}
        found = problems(references)
        assert not found, f"{self.assignment}: the cases break the format of course/cases.py: " + "; ".join(found[:5])
        path.write_text(json.dumps(references, sort_keys=True, indent=1) + "\n")
        return path


# Set by --perturb inputs (grader_tests/perturbations.py): every input moved by one ulp.
INPUT_NOISE = None
# Set by --perturb rounding: the reference code's numpy and math results moved by one ulp.
NUMPY_NOISE = False


def rng(salt):
    generator = np.random.default_rng([SEED, salt])
    return generator if INPUT_NOISE is None else NudgedGenerator(generator, INPUT_NOISE)


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
    unweighted = ("you averaged the values: weight each value by its probability", lambda r, x, p: float(np.mean(x)))
    moments = [
        ("12 values with random probabilities", g.normal(size=12) * 5, random_distribution(g, 12)),
        ("all the probability on one value (p = 1, the others p = 0)", np.array([4.0, -2.5, 1e6, 7.0]), np.array([0.0, 1.0, 0.0, 0.0])),
        ("100 values, some with probability 0", g.normal(size=100) * 3 + 2, random_distribution(g, 100, zeros=True)[::-1].copy()),
    ]
    for about, values, probs in moments:
        c.add("test_expectation", "expectation", about, [values, probs], variants=[unweighted],
              wrong_hint="E[X] is the sum of probability times value")
    for about, values, probs in moments:
        c.add("test_variance", "variance", about, [values, probs],
              variants=[("you computed E[X]^2 - E[X^2]: the variance is E[X^2] - E[X]^2, never negative",
                         lambda r, x, p: -r["variance"](x, p)),
                        ("you returned the standard deviation: the variance is its square",
                         lambda r, x, p: math.sqrt(r["variance"](x, p))),
                        ("you ignored the probabilities: weight each squared deviation by its probability",
                         lambda r, x, p: float(np.var(x))),
                        ("that is E[X^2]: subtract E[X]^2 (or square the deviations from the mean)",
                         lambda r, x, p: float(np.sum(p * x**2)))],
              wrong_hint="Var[X] is the probability-weighted mean of (x - E[X])^2")
    posterior_mistakes = [
        ("that is the sensitivity P(+ | D): Bayes' rule turns it around with the prior",
         lambda r, prior, s, f: np.broadcast_to(np.asarray(s, dtype=float), np.broadcast(prior, s, f).shape) + 0.0),
        ("the false positives are missing from the denominator: P(+) = sens * prior + fpr * (1 - prior)",
         lambda r, prior, s, f: _quietly(r["posterior"], prior, s, 0.0 * np.asarray(f))),
        ("the prior is missing from the numerator: sensitivity * prior / P(+)",
         lambda r, prior, s, f: np.asarray(s) / (np.asarray(s) * prior + np.asarray(f) * (1 - np.asarray(prior)))),
    ]
    c.add("test_posterior", "posterior", "priors from 0 to 1 (0 and 1 included) with one test",
          [np.array([0.0, 1e-4, 0.01, 0.3, 0.9, 1.0]), 0.9, 0.02], variants=posterior_mistakes,
          nan_hint="prior 0 and prior 1 must give 0 and 1, not nan")
    c.add("test_posterior", "posterior", "20 random tests and priors",
          [g.random(20) * 0.2, g.random(20) * 0.5 + 0.5, g.random(20) * 0.1 + 0.001], variants=posterior_mistakes)
    c.add("test_posterior", "posterior", "a rare condition and a test without false positives",
          [np.array([1e-6, 0.5]), np.array([0.7, 0.7]), np.array([0.0, 0.0])])
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


def _quietly(function, *args):
    with np.errstate(all="ignore"):
        return function(*args)


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
    # The intro's rule. The names are every spelling of the three functions (and their nn modules); the
    # operators are what they all run, refused in the kernel whatever reaches them.
    c.rules.append({
        "rule": "no-library-cross-entropy",
        "says": "F.cross_entropy, F.log_softmax, torch.logsumexp and nn.CrossEntropyLoss may not be used, under any name",
        "forbidden": ["torch.nn.functional.cross_entropy", "torch.nn.functional.log_softmax", "torch.logsumexp",
                      "torch.nn.CrossEntropyLoss", "torch.nn.LogSoftmax", "torch.log_softmax", "torch.special.log_softmax",
                      "torch.special.logsumexp", "torch.Tensor.log_softmax", "torch.Tensor.logsumexp",
                      "torch._C._nn.cross_entropy_loss"],
        "ops": ["aten::_log_softmax", "aten::logsumexp"],
    })
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
          expected_grad=stored_array(_autograd(c.ref["cross_entropy"], logits, targets)))
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


def training():
    import torch

    import course.data
    from course.harness import call, plain, view

    c = Cases("a5-training")
    g = rng(5)
    ref = c.ref
    literal = INPUT_NOISE.literal if INPUT_NOISE is not None else (lambda value: value)  # --perturb inputs

    def add(grade_id, function, about, args, kwargs, expected, variants=(), tolerance=FLOAT64, first_steps=(), **extra):
        """A case whose expected value (and mistakes' values) were computed here, not by Cases.add."""
        expected = np.asarray(plain(expected), dtype=np.float64)
        case = {"case": f"{grade_id}-{len(c.checks.get(grade_id, [])) + 1}", "function": function, "about": about,
                "args": [a if isinstance(a, dict) and "data" not in a else encode_arg(a) for a in args],
                "kwargs": kwargs, "torch": extra.pop("torch", False), **tolerance, **extra,
                "expected": stored_array(expected), "variants": []}
        for message, value in variants:
            value = np.asarray(plain(value), dtype=np.float64)
            if value.shape == expected.shape and not np.allclose(value, expected, rtol=1e-6, equal_nan=True):
                case["variants"].append({"message": message, "value": stored_array(value)})
        for message, value in first_steps:  # a chaotic mistake: its first steps only (perturbations.py)
            value = np.asarray(plain(value), dtype=np.float64)
            # told apart from the answer by the judge's own tolerance, or it would name a correct curve
            if not np.allclose(value, expected[:len(value)], rtol=tolerance["rtol"], atol=tolerance["atol"], equal_nan=True):
                case["variants"].append({"message": message, "value": stored_array(value), "first": len(value)})
        c.checks.setdefault(grade_id, []).append(case)
        return case

    # Gradient descent on f(x) = sum(curvature * (x - minimum)**2 / 2), whose gradient the kernel builds.
    def descent(about, curvature, minimum, x0, lr, steps):
        curvature, minimum, x0, lr = (literal(v) for v in (np.asarray(curvature, float), np.asarray(minimum, float), x0, lr))
        spec = {"quadratic_gradient": {"curvature": curvature.tolist(), "minimum": minimum.tolist()}}

        def grad_fn(x):
            return curvature * (x - minimum)

        def in_place(x0, lr, steps):  # x -= ... on one array, appended every step
            x = np.array(x0, dtype=np.float64)
            for _step in range(steps):
                x -= lr * grad_fn(x)
            return np.stack([x] * (steps + 1))

        add("test_gradient_descent", "gradient_descent", about, [spec, x0, lr, steps], {},
            ref["gradient_descent"](grad_fn, x0, lr, steps),
            variants=[("the learning rate was applied twice: x - lr * grad(x), once per step",
                       ref["gradient_descent"](grad_fn, x0, lr * lr, steps)),
                      ("you moved uphill: subtract lr * grad(x), do not add it",
                       ref["gradient_descent"](grad_fn, x0, -lr, steps)),
                      ("every row is the last point: you changed one array in place and appended it each step "
                       "(write x = x - lr * grad_fn(x))", in_place(x0, lr, steps))],
            shape_hint="the trajectory has steps + 1 rows: x0 first, then the point after each step")

    descent("chapter 12's bowl from (3, 4), lr = 0.1, 20 steps", [2.0, 2.0], [0.0, 0.0], np.array([3.0, 4.0]), 0.1, 20)
    descent("a narrow valley in 6 dimensions, 30 steps", g.uniform(0.5, 12.0, 6), g.normal(size=6), g.normal(size=6) * 3, 0.15, 30)
    descent("a scalar start with overshooting steps (lr = 0.9)", 2.0, 0.5, 2.0, 0.9, 12)
    descent("zero steps", [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], g.normal(size=3), 0.1, 0)

    # Optimizer steps: several steps chained in the kernel, against torch.optim in float64.
    def tensor(x):
        return torch.tensor(np.asarray(x, dtype=np.float64))

    def chained(step, start, grads, feed, extra_steps=(), kwargs=None):
        steps = [{"1": tensor(grad), **extra} for grad, extra in zip(grads, extra_steps or [{}] * len(grads))]
        return call(step, [tensor(a) if isinstance(a, np.ndarray) else a for a in start], kwargs or {}, {"steps": steps, "feed": feed})

    def wire_chain(grads, extra_steps=()):
        return {"steps": [{"1": stored_array(grad), **extra} for grad, extra in zip(grads, extra_steps or [{}] * len(grads))]}

    def torch_sgd(param, velocity, grads, lr, momentum):
        weights = tensor(param).requires_grad_(True)
        optimizer = torch.optim.SGD([weights], lr=lr, momentum=momentum)
        if np.any(velocity):
            optimizer.state[weights]["momentum_buffer"] = tensor(velocity)
        trajectory = []
        for grad in grads:
            weights.grad = tensor(grad)
            optimizer.step()
            # with momentum = 0 torch keeps no buffer: the velocity is then the gradient itself
            velocity = optimizer.state[weights].get("momentum_buffer", weights.grad)
            trajectory.append([weights.detach().clone(), velocity.clone()])
        return trajectory

    sgd_feed = [[0, 0], [1, 2]]
    sgd_mistakes = [
        ("the parameter moved with the OLD velocity: update the velocity first, then move by the new one",
         lambda p, g, v, lr, momentum: (p - lr * v, momentum * v + g)),
        ("momentum added with the wrong sign: param - lr * velocity, with velocity = momentum * velocity + grad",
         lambda p, g, v, lr, momentum: (p + lr * (momentum * v + g), momentum * v + g)),
        ("the learning rate was applied twice: torch keeps velocity = momentum * velocity + grad (no lr inside)",
         lambda p, g, v, lr, momentum: (p - lr * (momentum * v + lr * g), momentum * v + lr * g)),
        ("that is the other convention (velocity = momentum * velocity - lr * grad); torch's SGD keeps "
         "velocity = momentum * velocity + grad and subtracts lr * velocity",
         lambda p, g, v, lr, momentum: (p + (momentum * v - lr * g), momentum * v - lr * g)),
        ("torch's SGD has no dampening: velocity = momentum * velocity + grad, not an average with (1 - momentum)",
         lambda p, g, v, lr, momentum: (p - lr * (momentum * v + (1 - momentum) * g), momentum * v + (1 - momentum) * g)),
        ("momentum multiplies the old velocity only: velocity = momentum * velocity + grad",
         lambda p, g, v, lr, momentum: (p - lr * momentum * (v + g), momentum * (v + g))),
    ]

    def momentum_case(about, param, velocity, grads, lr, momentum):
        lr, momentum = literal(lr), literal(momentum)
        expected = torch_sgd(param, velocity, grads, lr, momentum)
        kwargs = {"lr": lr, "momentum": momentum}
        start = [param, 0.0, velocity]
        mine = chained(ref["sgd_momentum_step"], start, grads, sgd_feed, kwargs=kwargs)
        assert np.allclose(plain(mine), plain(expected), **SAME_RECIPE), f"reference sgd_momentum_step != torch.optim.SGD ({about})"
        add("test_sgd_momentum_step", "sgd_momentum_step", about, start, kwargs, expected, torch=True,
            chain={**wire_chain(grads), "feed": sgd_feed},
            variants=[(message, chained(wrong, start, grads, sgd_feed, kwargs=kwargs)) for message, wrong in sgd_mistakes],
            wrong_hint="the steps differ from torch.optim.SGD(lr, momentum): velocity = momentum * velocity + grad, "
                       "then param - lr * velocity")

    n = 12
    momentum_case("5 steps from rest on random tensors (t = 1 first), lr = 0.1, momentum = 0.9",
                  g.normal(size=n), np.zeros(n), g.normal(size=(5, n)), 0.1, 0.9)
    zero_grads = g.normal(size=(4, n))
    zero_grads[1:3] = 0.0
    momentum_case("4 steps from a running velocity, two of them with a zero gradient, lr = 0.05, momentum = 0.5",
                  g.normal(size=n), g.normal(size=n), zero_grads, 0.05, 0.5)
    momentum_case("3 steps of a (4, 3) matrix with momentum = 0 (plain SGD)",
                  g.normal(size=(4, 3)), np.zeros((4, 3)), g.normal(size=(3, 4, 3)), 0.3, 0.0)

    def torch_adam(param, m, v, first_t, grads, lr, betas, eps):
        weights = tensor(param).requires_grad_(True)
        optimizer = torch.optim.Adam([weights], lr=lr, betas=tuple(betas), eps=eps)
        if first_t > 1:
            optimizer.state[weights] = {"step": torch.tensor(float(first_t - 1)), "exp_avg": tensor(m), "exp_avg_sq": tensor(v)}
        trajectory = []
        for grad in grads:
            weights.grad = tensor(grad)
            optimizer.step()
            state = optimizer.state[weights]
            trajectory.append([weights.detach().clone(), state["exp_avg"].clone(), state["exp_avg_sq"].clone()])
        return trajectory

    adam_feed = [[0, 0], [1, 2], [2, 3]]

    def adam_mistake(kind):
        def step(p, g, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
            b1, b2 = betas
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            m_hat, v_hat = (m, v) if kind == "uncorrected" else (m / (1 - b1**t), v / (1 - b2**t))
            if kind == "eps inside":
                return p - lr * m_hat / (v_hat + eps).sqrt(), m, v
            if kind == "lr twice":
                return p - lr * lr * m_hat / (v_hat.sqrt() + eps), m, v
            if kind == "no sqrt":
                return p - lr * m_hat / (v_hat + eps), m, v
            return p - lr * m_hat / (v_hat.sqrt() + eps), m, v
        return step

    adam_mistakes = [
        ("Adam without bias correction: divide m by (1 - beta1**t) and v by (1 - beta2**t)", adam_mistake("uncorrected")),
        ("eps goes outside the square root: sqrt(v_hat) + eps", adam_mistake("eps inside")),
        ("the learning rate was applied twice", adam_mistake("lr twice")),
        ("divide by the square ROOT of v_hat", adam_mistake("no sqrt")),
    ]

    def adam_case(about, param, m, v, first_t, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, pass_defaults=False):
        if pass_defaults:  # defaults the student's function supplies itself are exact
            lr, betas, eps = literal(lr), literal(betas), literal(eps)
        expected = torch_adam(param, m, v, first_t, grads, lr, betas, eps)
        kwargs = {"lr": lr, "betas": list(betas), "eps": eps} if pass_defaults else {}
        start = [param, 0.0, m, v, 0]
        ts = [{"4": first_t + k} for k in range(len(grads))]
        mine = chained(ref["adam_step"], start, grads, adam_feed, ts, kwargs)
        assert np.allclose(plain(mine), plain(expected), **SAME_RECIPE), f"reference adam_step != torch.optim.Adam ({about})"
        add("test_adam_step", "adam_step", about, start, kwargs, expected, torch=True,
            chain={**wire_chain(grads, ts), "feed": adam_feed},
            variants=[(message, chained(wrong, start, grads, adam_feed, ts, kwargs)) for message, wrong in adam_mistakes],
            wrong_hint="the steps differ from torch.optim.Adam: check the bias correction, the order of the updates "
                       "and that eps is added after the square root")

    n = 10
    adam_case("5 steps from t = 1 on random tensors, default lr, betas and eps",
              g.normal(size=n), np.zeros(n), np.zeros(n), 1, g.normal(size=(5, n)))
    zero_grads = g.normal(size=(4, n))
    zero_grads[0] = 0.0
    zero_grads[2] = 0.0
    adam_case("a zero gradient at t = 1 (no move) and later, lr = 0.01",
              g.normal(size=n), np.zeros(n), np.zeros(n), 1, zero_grads, lr=0.01, pass_defaults=True)
    adam_case("3 steps from t = 20 with running averages, lr = 0.05, betas = (0.8, 0.99), eps = 1e-6",
              g.normal(size=(3, 4)), g.normal(size=(3, 4)) * 0.1, g.random((3, 4)) * 0.01, 20,
              g.normal(size=(3, 3, 4)), lr=0.05, betas=(0.8, 0.99), eps=1e-6, pass_defaults=True)

    # Minibatches: judged through views of the list of batches (coverage, sizes, order).
    def batches_wrong(kind, n, batch_size, seed):
        generator = torch.Generator().manual_seed(seed)
        if kind == "with replacement":
            return list(torch.randint(0, n, (n,), generator=generator).split(batch_size))
        return [b for b in torch.randperm(n, generator=generator).split(batch_size) if len(b) == batch_size]

    repeat_hint = ("an epoch must hold every index exactly once: your batches repeat or drop examples "
                   "(shuffle with torch.randperm instead of sampling with replacement, and keep the last, smaller batch)")
    for n, batch_size, seed in ((100, 32, 3), (64, 64, 11), (50, 7, 2026)):
        batches = ref["minibatches"](n, batch_size, seed)
        args = [n, batch_size, seed]
        about = f"{n} examples in batches of {batch_size}"
        add("test_minibatches", "minibatches", f"{about}: each index once", args, {},
            view(batches, f"coverage:{n}"), tolerance=EXACT, integer=True, view=f"coverage:{n}", wrong_hint=repeat_hint,
            shape_hint="every index must lie in 0, ..., n - 1")
        add("test_minibatches", "minibatches", f"{about}: batch sizes", args, {}, view(batches, "lengths"),
            tolerance=EXACT, integer=True, view="lengths",
            variants=[(repeat_hint, view(batches_wrong("with replacement", n, batch_size, seed), "lengths"))],
            wrong_hint="every batch holds batch_size indices except the last, which holds the rest",
            shape_hint="there are ceil(n / batch_size) batches: keep the last, smaller one")
        add("test_minibatches", "minibatches", f"{about}: the order for seed {seed}", args, {},
            view(batches, "concatenate"), tolerance=EXACT, integer=True, view="concatenate",
            wrong_hint="the order differs: use torch.randperm(n, generator=torch.Generator().manual_seed(seed)) "
                       "and cut it into consecutive batches")

    # The bigram network: trained in the kernel, judged here on held-out names.
    words = course.data.load_names()
    order = g.permutation(len(words))
    train_words = [words[i] for i in sorted(order[:TRAIN_NAMES])]
    heldout_words = [words[i] for i in sorted(order[TRAIN_NAMES:TRAIN_NAMES + HELDOUT_NAMES])]
    xs, ys = (np.asarray(t.numpy()) for t in ref["bigrams"](train_words))
    heldout_xs, heldout_ys = (np.asarray(t.numpy()) for t in ref["bigrams"](heldout_words))
    settings = dict(steps=TRAIN_STEPS, batch_size=TRAIN_BATCH, lr=TRAIN_LR, seed=TRAIN_SEED)
    # the kernel turns the names into xs and ys itself (a short list of words travels, not 2 x 20k indices)
    args = [{"bigram_indices": {"words": train_words, "part": part}} for part in (0, 1)] + list(settings.values())

    def first_losses(wrong=None):
        return train_bigram_variant(torch.from_numpy(xs), torch.from_numpy(ys), wrong=wrong,
                                    **{**settings, "steps": FIRST_STEPS})[1]

    W, losses = ref["train_bigram"](torch.from_numpy(xs), torch.from_numpy(ys), **settings)
    assert np.allclose(first_losses(), losses[:FIRST_STEPS], **SAME_RECIPE), "train_bigram_variant() is not the reference recipe"
    # Each mistake makes training chaotic (the step is too large, or grows): after a few dozen steps the
    # weights depend on how the CPU rounds, so W, the held-out NLL and the later losses of a mistaken
    # run are no signature of the mistake on another machine.  Its first FIRST_STEPS losses are.
    mistakes = [("sum instead of mean: the loss must be the MEAN cross-entropy over the batch", "sum"),
                ("the learning rate was applied twice", "lr twice"),
                ("W.grad was never reset: gradients accumulated over the steps (set W.grad = None each step)", "no reset")]
    early_losses = {kind: first_losses(kind) for _, kind in mistakes}
    recipe_hint = ("W differs from the reference: follow the recipe exactly (one generator: W first, then one "
                   "torch.randint batch per step; float64; W -= lr * W.grad)")
    measure = {"kind": "bigram_nll", "words": heldout_words}
    count_nll = _count_model_nll(xs, ys, heldout_xs, heldout_ys)
    trained_nll = float(_weights_nll(W.numpy(), heldout_words))
    assert trained_nll < count_nll + HELDOUT_MARGIN, (trained_nll, count_nll)
    size = f"{len(train_words)} names, {TRAIN_STEPS} steps"
    add("test_train_bigram", "train_bigram", f"W after training on {size}", args, {}, W, torch=True, view="item:0",
        tolerance=TRAINED, wrong_hint=recipe_hint)
    add("test_train_bigram", "train_bigram", f"the loss curve on {size}", args, {}, losses, torch=True, view="item:1",
        tolerance=TRAINED, first_steps=[(m, early_losses[k]) for m, k in mistakes],
        wrong_hint="the recorded losses differ: record each minibatch's mean loss before its update",
        shape_hint="return one loss per step")
    add("test_train_bigram", "train_bigram", "the held-out NLL of your W against the reference's", args, {}, trained_nll,
        torch=True, view="item:0", measure=measure, tolerance=TRAINED,
        wrong_hint="the held-out NLL differs from the reference's: follow the recipe exactly")
    add("test_train_bigram", "train_bigram",
        f"the held-out NLL of your W within {HELDOUT_MARGIN} nats of the smoothed count model's", args, {}, count_nll,
        torch=True, view="item:0", measure=measure, tolerance=dict(rtol=0.0, atol=HELDOUT_MARGIN),
        wrong_hint=f"your trained model is more than {HELDOUT_MARGIN} nats from the count model on held-out names: "
                   "is the loss the mean cross-entropy, and the step W -= lr * W.grad?")
    return c


# a5's training run: small enough that grading a correct notebook takes well under 10 s of CPU.
TRAIN_NAMES, HELDOUT_NAMES = 3000, 1000
TRAIN_STEPS, TRAIN_BATCH, TRAIN_LR, TRAIN_SEED = 500, 256, 20.0, 5
HELDOUT_MARGIN = 0.05  # nats
# A mistaken run's losses stay a signature of the mistake this long: under the last-bit noise of
# perturbations.py they move by less than 1e-14 relative over 10 steps, and by up to 10 % after 60.
FIRST_STEPS = 10
# The trained W goes through hundreds of float64 steps; honest implementations (W[xs] or one_hot @ W,
# F.cross_entropy or a hand-written one) differ by rounding that grows to ~1e-12 relative; 1e-6 leaves room.
TRAINED = dict(rtol=1e-6, atol=1e-9)


def train_bigram_variant(xs, ys, steps, batch_size, lr, seed, wrong=None):
    """The recipe of train_bigram, one-hot @ W, optionally with one typical mistake."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    W = torch.randn((27, 27), generator=g, dtype=torch.float64, requires_grad=True)
    losses = []
    while len(losses) < steps:
        ix = torch.randint(0, len(xs), (batch_size,), generator=g)
        logits = F.one_hot(xs[ix], 27).double() @ W
        loss = F.cross_entropy(logits, ys[ix], reduction="sum" if wrong == "sum" else "mean")
        if wrong != "no reset":
            W.grad = None
        loss.backward()
        W.data -= (lr * lr if wrong == "lr twice" else lr) * W.grad
        losses.append(float(loss))
    return W.detach(), losses


def _weights_nll(W, words):
    from course.judge import bigram_weights_nll

    return float(bigram_weights_nll(np.asarray(W), {"words": words}))


def _count_model_nll(xs, ys, heldout_xs, heldout_ys):
    counts = np.zeros((27, 27))
    np.add.at(counts, (xs, ys), 1.0)
    probs = (counts + 1) / (counts + 1).sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(probs[heldout_xs, heldout_ys])))


BUILDERS = (distributions, losses, bigram, torch_cross_entropy, training)


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


def changes(fresh, committed):
    """Where a regenerated references file (parsed JSON) differs from the committed one by more than
    another CPU may: the structure, the inputs and the words by differences(); the computed values (the
    expected ones, the mistakes', the float32 and gradient expectations) by the stability rule, within
    STABILITY_SHARE of the tolerance their judge uses, as tests/test_reference_stability.py holds them."""
    return differences(_inputs_only(fresh), _inputs_only(committed)) + stability_problems(fresh, committed)


def _inputs_only(references):
    """The file with each computed value's numbers left out (their shape and dtype kept)."""
    def strip(case):
        case = dict(case)
        for key in ("expected", "expected_grad"):
            if isinstance(case.get(key), dict) and "data" in case[key]:
                case[key] = {**case[key], "data": None}
        for key in ("variants", "also_expected"):
            if key in case:
                case[key] = [{**item, "value": {**item["value"], "data": None}} for item in case[key]]
        return case
    return {**references, "checks": {grade_id: [strip(case) for case in cases]
                                     for grade_id, cases in references["checks"].items()}}


def main(folder=OUT, perturb=None):
    """Write every assignment's references into ``folder``; with ``perturb``, recompute them under
    that kind of last-bit noise (perturbations.py) for the stability test, never for grading."""
    global INPUT_NOISE, NUMPY_NOISE
    noise = contextlib.nullcontext()
    if perturb == "inputs":
        INPUT_NOISE = InputNoise()
    elif perturb == "rounding":
        noise, NUMPY_NOISE = rounding_noise(), True
    elif perturb == "threads":
        import torch

        torch.set_num_threads(1 if torch.get_num_threads() > 1 else 3)
    for build in BUILDERS:
        with noise:
            cases = build()
        path = cases.write(Path(folder))
        total = sum(len(v) for v in cases.checks.values())
        print(f"{path}: {len(cases.checks)} checks, {total} cases")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=OUT, help=f"where to write (default {OUT})")
    parser.add_argument("--perturb", choices=PERTURBATIONS,
                        help="recompute under last-bit noise, to test the references' stability (set "
                             "perturbations.environment(KIND) in the environment first)")
    options = parser.parse_args()
    main(options.folder, options.perturb)
