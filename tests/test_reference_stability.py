"""The hidden references survive another CPU: recomputed here under last-bit noise, every expected value
and every known mistake's value stays far inside the tolerance its judge uses.

Another CPU rounds some operations the other way (other SIMD kernels, another summation order, another
thread split).  A well-conditioned reference moves by a few ulps; an ill-conditioned one, such as a
mistaken training run gone chaotic, moves by any amount, and then a correct submission fails, or a
mistake's hint is given only on the machine that wrote the file.  grader_tests/perturbations.py
simulates the other CPU four ways (rounding of every torch result, inputs moved by one ulp, another
thread count, the libraries' portable code paths); each kind regenerates every reference in its own
process, and stability_problems() names each value that moved.
"""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from grading_support import ASSIGNMENTS, ROOT

GRADER_TESTS = ROOT / "grader_tests"
sys.path.insert(0, str(GRADER_TESTS))
import perturbations  # noqa: E402  (grader_tests/ is not a package: it never ships)


def load_make_references():
    spec = importlib.util.spec_from_file_location("make_references", GRADER_TESTS / "make_references.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_references = load_make_references()


def committed(assignment):
    return json.loads((GRADER_TESTS / "references" / f"{assignment}.json").read_text())


@pytest.fixture(scope="module")
def perturbed(tmp_path_factory):
    """{kind: folder of references recomputed under that noise}; the kinds run side by side."""
    folders, runs = {}, {}
    for kind in perturbations.KINDS:
        folders[kind] = tmp_path_factory.mktemp(f"references-{kind}")
        env = {**os.environ, **perturbations.environment(kind)}
        runs[kind] = subprocess.Popen([sys.executable, str(GRADER_TESTS / "make_references.py"), str(folders[kind]),
                                       "--perturb", kind], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True)
    failed = {}
    for kind, run in runs.items():
        output, _ = run.communicate()
        if run.returncode:
            failed[kind] = output[-3000:]
    assert not failed, "make_references.py --perturb failed:\n" + "\n".join(f"[{k}] {v}" for k, v in failed.items())
    return folders


@pytest.mark.parametrize("kind", perturbations.KINDS)
def test_every_reference_and_every_mistake_is_stable_under(kind, perturbed):
    moved = []
    for assignment in ASSIGNMENTS:
        fresh = json.loads((perturbed[kind] / f"{assignment}.json").read_text())
        moved += perturbations.stability_problems(fresh, committed(assignment))
    assert not moved, (f"under '{kind}' noise these hidden references move further than "
                       f"{perturbations.STABILITY_SHARE:g} of their judge's tolerance (change what is compared, "
                       "not the tolerance; see README, 'Hidden references'):\n" + "\n".join(moved))


@pytest.mark.parametrize("kind, reached", [("rounding", lambda case: case["torch"]), ("inputs", lambda case: True)])
def test_the_noise_reaches_the_references(kind, reached, perturbed):
    """The noise is real: the recomputed values differ from the committed ones, in the last bits (the
    rounding noise reaches the cases computed with torch; the input noise, every case)."""
    changed, total = 0, 0
    for assignment in ASSIGNMENTS:
        fresh = json.loads((perturbed[kind] / f"{assignment}.json").read_text())
        for grade_id, cases in committed(assignment)["checks"].items():
            for case, fresh_case in zip(cases, fresh["checks"][grade_id]):
                if "expected" in case and "data" in case["expected"] and not case.get("integer") and reached(case):
                    total += 1
                    changed += case["expected"]["data"] != fresh_case["expected"]["data"]
    assert total and changed >= total // 2, f"'{kind}' noise changed {changed} of {total} expected values"


def test_the_rounding_noise_exposes_a_chaotic_run():
    """What the check is for: a bigram network trained with the learning rate applied twice is chaotic,
    and 80 steps under the noise already end elsewhere, while the correct recipe does not move."""
    words = __import__("course.data", fromlist=["load_names"]).load_names()[:3000]
    xs, ys = make_references.reference_namespace("a5-training")["bigrams"](words)
    settings = dict(steps=80, batch_size=256, lr=make_references.TRAIN_LR, seed=make_references.TRAIN_SEED)
    results = {}
    for wrong in (None, "lr twice"):
        plain = make_references.train_bigram_variant(xs, ys, wrong=wrong, **settings)[1]
        with perturbations.rounding_noise():
            noisy = make_references.train_bigram_variant(xs, ys, wrong=wrong, **settings)[1]
        results[wrong] = np.max(np.abs(np.subtract(noisy, plain)) / np.abs(plain))
    assert results[None] < 1e-13, results
    assert results["lr twice"] > 1e-6, results


def test_the_check_names_a_value_that_moved_and_passes_one_that_did_not():
    reference = committed("a2-losses")
    assert perturbations.stability_problems(json.loads(json.dumps(reference)), reference) == []
    nudged = json.loads(json.dumps(reference))
    case = nudged["checks"]["test_softmax"][0]
    case["expected"]["data"][0] = float(np.nextafter(case["expected"]["data"][0], 1.0))  # one ulp: another CPU
    assert perturbations.stability_problems(nudged, reference) == []
    case["expected"]["data"][0] *= 1 + 1e-8  # a tenth of the judge's rtol: a correct answer could fail elsewhere
    moved = perturbations.stability_problems(nudged, reference)
    assert len(moved) == 1 and "test_softmax-1" in moved[0] and "expected value moved" in moved[0]
    variant_case = next(c for c in nudged["checks"]["test_softmax"] if c["variants"])
    variant_case["variants"][0]["value"]["data"][0] += 0.5
    assert any("variant" in line for line in perturbations.stability_problems(nudged, reference))
    variant_case["variants"].pop(0)
    assert any("no longer differs" in line for line in perturbations.stability_problems(nudged, reference))


def test_the_simd_environment_reaches_torch_and_numpy():
    """The portable code paths are really taken: torch reports its default kernels, and none of NumPy's
    dispatched CPU features is in use, under that environment."""
    env = {**os.environ, **perturbations.simd_env()}
    printed = subprocess.run([sys.executable, "-c", "import json, torch; from numpy._core import _multiarray_umath as u; "
                              "print(json.dumps([torch.backends.cpu.get_cpu_capability(), "
                              "[f for f in u.__cpu_dispatch__ if u.__cpu_features__.get(f)]]))"],
                             env=env, capture_output=True, text=True, check=True).stdout
    capability, numpy_features = json.loads(printed)
    assert capability == "DEFAULT" and numpy_features == [], printed


def test_the_rounding_noise_reaches_numpy_and_math_in_the_reference_code():
    namespace = perturbations.noisy_modules({"np": np, "math": __import__("math")})
    x = np.linspace(0.1, 3.0, 64)
    assert not np.array_equal(namespace["np"].exp(x), np.exp(x))
    assert np.allclose(namespace["np"].exp(x), np.exp(x), rtol=4e-16, atol=0)
    assert namespace["np"].sum(np.arange(5)) == 10  # whole-number and integer results stay as they are
    assert namespace["np"].ndarray is np.ndarray
    logs = {namespace["math"].log(0.3) for _ in range(20)}
    assert len(logs) > 1 and all(abs(v - np.log(0.3)) <= 2 * abs(np.spacing(np.log(0.3))) for v in logs)
