"""The built site: every chapter executed, its headline numbers, its figures."""
import ast
import json
import math
import os
import re
import subprocess
import sys
import sysconfig
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from course.data import load_names


def toc_chapters(root):
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    return [c["file"] for part in toc["parts"] for c in part["chapters"]]


def numbered_chapters(root):
    """The lectures, book/NN-*.md, in the order of the table of contents."""
    return [c for c in toc_chapters(root) if re.fullmatch(r"book/\d\d-[\w-]+", c)]


CHAPTER_COUNT = 13


def glued(built_site, chapter):
    path = built_site / "jupyter_execute" / f"{chapter}.glue.json"
    assert path.is_file(), f"{path} missing: the chapter glued no numbers or did not execute"
    values = {}
    for key, output in json.loads(path.read_text()).items():
        text = output["data"]["text/plain"]
        values[key] = ast.literal_eval(text)
    return values


# The headline numbers of the course, as the foundation issue and the course-completion issue state them.
EXPECTED = {
    "book/01-why-probability": {"inside_2sigma": 0.975},
    "book/02-random-variables": {"die_mean": 3.5, "die_var": 2.9167},
    "book/03-distributions": {
        "gauss_68": 0.6827, "gauss_95": 0.9545, "gauss_997": 0.9973,
        "xavier_std": 0.0625, "he_std": 0.0884,
        "bernoulli_mean": 0.3, "bernoulli_var": 0.21, "binom_p5": 0.2461,
        "gauss_pdf_table": [0.054, 0.242, 0.3989, 0.242, 0.054],
    },
    "book/04-bayes": {"bayes_posterior": 0.1667},
    "book/05-softmax": {
        "softmax_t1": [0.6590, 0.2424, 0.0986], "softmax_t05": [0.8638, 0.1169, 0.0193],
        "softmax_t2": [0.5017, 0.3043, 0.1940], "softmax_t5": [0.3996, 0.3272, 0.2733],
    },
    "book/06-maximum-likelihood": {
        "mle_numeric": 0.8, "mle_analytic": 0.8,
        "likelihood_8_heads_p5": 0.0439, "likelihood_8_heads_p8": 0.302,
    },
    "book/07-gaussian-nll-mse": {"nll_quadratic_coeff": 0.125, "robust_losses_match_torch": True},
    "book/08-cross-entropy": {
        "ce_value": 0.4170, "ce_grad": [-0.3410, 0.2424, 0.0986], "ce_grad_autograd_match": True,
        "neglog_table": [0.0101, 0.3567, 0.6931, 2.3026, 4.6052, 6.9078],
        "batch3_torch_match": True,
    },
    "book/09-bce": {
        "bce_value": 0.476700, "bce_torch_match": True,
        "bce_lab_value": 0.253, "bce_equals_bernoulli_nll": True,
        # Significant figures: the gradient is -0.99995, not -1.0.
        "bce_grad_at_minus10": -0.99995, "mse_grad_at_minus10": -9.079e-05,
    },
    "book/10-entropy-kl": {
        "entropy_bits": 0.469, "entropy_nats": 0.3251, "ce_equals_h_plus_kl": True,
        "ce_bits_series": [0.522, 0.637, 0.795, 1.0, 1.263, 1.615, 2.122, 3.005],
        "three_outcome_h_kl_ce": [0.8018, 0.0851, 0.8869],
    },
    "book/11-bigram": {"bigram_init_loss_zero": 3.2958},
    "book/12-gradient-descent": {"gd_diverged_rates": [1.05], "sgd_matches_manual": True},
    "book/13-optimizers": {
        "optimizers_match_torch": True, "adam_uncorrected_first_step": 3.1623,
        "zero_grad_accumulation": [3.0, 3.0],
    },
}


def same(actual, expected):
    if isinstance(expected, bool):
        return actual is expected
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(map(same, actual, expected))
    return isinstance(actual, (int, float)) and math.isclose(actual, expected, abs_tol=5e-7)


@pytest.mark.parametrize("chapter", sorted(EXPECTED))
def test_headline_numbers_come_from_executed_code(built_site, chapter):
    values = glued(built_site, chapter)
    for key, expected in EXPECTED[chapter].items():
        assert key in values, f"{chapter} does not glue {key!r}"
        assert same(values[key], expected), f"{chapter}: {key} = {values[key]!r}, expected {expected!r}"


def test_simulations_agree_with_the_exact_values(built_site):
    assert abs(glued(built_site, "book/02-random-variables")["lln_mean"] - 3.5) < 0.02
    assert abs(glued(built_site, "book/03-distributions")["gauss_68_sampled"] - 0.6827) < 0.002
    assert abs(glued(built_site, "book/04-bayes")["bayes_posterior_simulated"] - 0.1667) < 0.01
    mle = glued(built_site, "book/06-maximum-likelihood")
    assert mle["mle_numeric"] == pytest.approx(mle["mle_analytic"], abs=1e-3)
    fits = glued(built_site, "book/07-gaussian-nll-mse")
    assert fits["fit_slope_mse"] == pytest.approx(fits["fit_slope_nll"], abs=1e-3)
    kl = glued(built_site, "book/10-entropy-kl")
    assert kl["kl_min_random"] >= 0 and kl["kl_pq"] != kl["kl_qp"]
    gd = glued(built_site, "book/12-gradient-descent")["gd_final_loss"]
    assert gd[-1] > 25 and all(loss < 25 for loss in gd[:-1])
    assert abs(glued(built_site, "book/03-distributions")["clt_within_1sd"] - 0.6827) < 0.01


def test_bigram_model_on_real_census_names(built_site):
    values = glued(built_site, "book/11-bigram")
    # The chapter reads the names package itself (it must run without `course`): same list.
    assert values["names_count"] == len(load_names()) > 5000
    assert values["bigram_perplexity"] == pytest.approx(math.exp(values["bigram_count_nll"]), rel=1e-3)
    # Trained with minibatches on the training names, the network reaches the count model's NLL there.
    assert abs(values["bigram_torch_nll"] - values["bigram_count_train_nll"]) < 0.05
    # Held-out names are scored too, and are a little harder than the training names.
    assert values["bigram_torch_nll"] < values["bigram_torch_dev_nll"] < math.log(27)
    assert abs(values["bigram_torch_dev_nll"] - values["bigram_count_dev_nll"]) < 0.05
    assert abs(values["bigram_torch_test_nll"] - values["bigram_torch_dev_nll"]) < 0.1
    # A uniform model over 27 symbols scores log(27) = 3.30 nats; real structure does better.
    assert 1.5 < values["bigram_count_nll"] < math.log(27)
    # Zero weights start at the uniform baseline; randn weights start confidently wrong, above it.
    assert values["bigram_init_loss_randn"] > values["bigram_init_loss_zero"] == pytest.approx(math.log(27), abs=1e-4)
    # One name, two units: perplexity = e^nats = 2^bits.
    assert values["emma_nll_bits"] == pytest.approx(values["emma_nll_nats"] / math.log(2), abs=1e-3)
    assert values["emma_perplexity"] == pytest.approx(math.exp(values["emma_nll_nats"]), rel=1e-3)
    assert values["emma_perplexity"] == pytest.approx(2 ** values["emma_nll_bits"], rel=1e-3)
    assert values["emma_perplexity"] > values["bigram_perplexity"]   # as the chapter says


def test_worked_examples_agree_with_their_definitions(built_site):
    fits = glued(built_site, "book/07-gaussian-nll-mse")["robust_fits"]
    mse_fit, mae_fit, huber_fit = fits
    assert mse_fit == pytest.approx(2.84, abs=1e-4)   # the mean of the five measurements
    assert mae_fit == pytest.approx(1.1, abs=1e-4)    # their median
    assert mae_fit < huber_fit < mse_fit
    batch3 = glued(built_site, "book/08-cross-entropy")["batch3_ce"]
    # the source labs' batch: each row's largest logit is its target, and the loss is 0.767950
    rows = [[0.1, 0.2, 0.7], [0.1, 0.7, 0.2], [0.7, 0.1, 0.2]]
    expected = sum(math.log(sum(map(math.exp, row))) - row[t] for row, t in zip(rows, [2, 1, 0])) / 3
    assert batch3 == pytest.approx(expected, abs=1e-6) == pytest.approx(0.767950, abs=1e-6)
    h, ce, kl = glued(built_site, "book/10-entropy-kl")["first_letter_bits"]
    assert ce == pytest.approx(math.log2(26), abs=1e-4) and kl == pytest.approx(ce - h, abs=2e-4)
    assert 3.5 < h < math.log2(26)
    names = load_names()
    counts = [sum(n[0] == c for n in names) for c in "abcdefghijklmnopqrstuvwxyz"]
    entropy = -sum(k / len(names) * math.log2(k / len(names)) for k in counts if k)
    assert h == pytest.approx(entropy, abs=1e-4)
    gd_values = glued(built_site, "book/12-gradient-descent")
    gd = gd_values["gd_final_loss"]
    # lr = 0.1 and 0.9 end at 25 * 0.8^100, not at a rounded 0.0; lr = 0.5 lands exactly on 0.
    assert gd[1] == pytest.approx(25 * 0.8**100, rel=1e-9) and gd[3] == pytest.approx(gd[1], rel=1e-9)
    assert gd[2] == 0.0 and gd[-1] == pytest.approx(25 * 1.1**100, rel=1e-9)
    # The text shows them to 4 significant figures: 344515.3 as 3.445e+05, never as 344500.0.
    shown = gd_values["gd_final_loss_text"].split(", ")
    assert shown == [f"{v:.4g}" for v in gd] and shown[-1] == "3.445e+05"
    for text, value in zip(shown, gd):
        assert_shows_truly(text, value)
    assert float(gd_values["gd_slow_final_loss"]) == pytest.approx(gd[0], rel=0.05)
    assert gd_values["gd_growth_factor"] == f"{1.1**100:,.0f}"
    gd_text = page_text(built_site, "book/12-gradient-descent")
    assert f"from 25 to about {gd_values['gd_slow_final_loss']}" in gd_text
    assert f"about {gd_values['gd_growth_factor']}" in gd_text and "13,800" not in gd_text


def shown_number(text):
    """A number as the page shows it ("116,700", "4.8%", "-0.3", "3.445e+05") as a float."""
    text = str(text).replace(",", "")
    return float(text[:-1]) / 100 if text.endswith("%") else float(text)


def assert_shows_truly(text, value, significant=4, what="shown"):
    """A number as displayed: zero only for a true zero, otherwise within half a unit of its last
    significant figure (so 0.81 cannot show as 0.82)."""
    shown = shown_number(text)
    assert (shown == 0) == (value == 0), f"{what}: {text!r} for {value!r}"
    if value:
        last_figure = 10 ** (math.floor(math.log10(abs(value))) - significant + 1)
        assert abs(shown - value) <= 0.5 * last_figure * (1 + 1e-9), f"{what}: {text!r} for {value!r}"


def page_text(built_site, chapter):
    return " ".join(PageParser.parse(built_site / "html" / f"{chapter}.html").text.split())


def printed(built_site, chapter):
    notebook = json.loads((built_site / "jupyter_execute" / f"{chapter}.ipynb").read_text())
    return "".join("".join(o.get("text", "")) for c in notebook["cells"] if c["cell_type"] == "code"
                   for o in c.get("outputs", []) if o["output_type"] == "stream")


def test_statements_follow_the_computed_numbers(built_site):
    # Chapter 7: the Laplace density against the Gaussian's at a residual of 4, (e^-4 / 2) / (e^-8 / sqrt(2 pi)).
    ratio = glued(built_site, "book/07-gaussian-nll-mse")["laplace_over_gaussian_at_4"]
    assert ratio == pytest.approx(0.5 * math.sqrt(2 * math.pi) * math.exp(4), abs=0.05)
    assert f"at a residual of 4 the Laplace density is {ratio} times the Gaussian" in page_text(
        built_site, "book/07-gaussian-nll-mse")

    # Chapter 11: both models measured from the lowest training NLL any table reaches; neither claimed lower.
    bigram = glued(built_site, "book/11-bigram")
    floor = bigram["bigram_train_min_nll"]
    assert floor < bigram["bigram_count_train_nll"] and floor < bigram["bigram_torch_nll"]
    assert bigram["bigram_smoothing_cost"] == pytest.approx(bigram["bigram_count_train_nll"] - floor, abs=2e-4)
    assert bigram["bigram_network_shortfall"] == pytest.approx(bigram["bigram_torch_nll"] - floor, abs=2e-4)
    assert bigram["bigram_network_minus_count"] == pytest.approx(
        bigram["bigram_torch_nll"] - bigram["bigram_count_train_nll"], abs=2e-4)
    bigram_text = page_text(built_site, "book/11-bigram")
    # the learned table against the smoothed counts: close where data is plenty, apart on the rare row q
    busiest_gap, rare_gap = float(bigram["bigram_busiest_rows_gap"]), float(bigram["bigram_rare_row_gap"])
    assert 0 < busiest_gap < rare_gap, (busiest_gap, rare_gap)
    assert f"agree to within {bigram['bigram_busiest_rows_gap']} in every entry" in bigram_text
    assert "hair" not in bigram_text and "lower on the training names" not in bigram_text
    # the plateau at lr 20 lies above where the network ends once the rate is cut; the uniform baseline's
    # 27 choices against the perplexity; the gradient of row q against row a, as their counts
    plateau = float(bigram["bigram_plateau_nll"])
    assert bigram["bigram_torch_nll"] < plateau < math.log(27), plateau
    assert f"a plateau near {bigram['bigram_plateau_nll']} nats" in bigram_text
    assert float(bigram["bigram_choices_cut"]) == pytest.approx(27 / bigram["bigram_perplexity"], abs=0.05)
    assert float(bigram["bigram_a_over_q"]) > 10
    assert f"gradient {bigram['bigram_a_over_q']} times smaller than" in bigram_text
    assert "2.5 nats" not in bigram_text and "a hundred times" not in bigram_text
    assert f"{bigram['bigram_network_minus_count']} nats apart (network minus count model)" in bigram_text

    # Chapter 13: with bias correction Adam's first step is eta only up to epsilon (1e-8 against |g| = 0.002).
    deviation = glued(built_site, "book/13-optimizers")["adam_corrected_first_step_deviation"]
    assert deviation == pytest.approx(0.1 * 1e-8 / (0.002 + 1e-8), rel=0.02) and 0 < deviation < 1e-5
    optimizers_text = page_text(built_site, "book/13-optimizers")
    assert "is exactly" not in optimizers_text.split("Adam without bias correction")[1][:400]
    assert "0.0999995" in printed(built_site, "book/13-optimizers")

    # Chapter 9: the stable BCE of a confidently right logit is tiny, not 0.00.
    bce_rows = [line.split() for line in printed(built_site, "book/09-bce").splitlines()
                if re.match(r"\s*-?100\.0\s+[01]\.0\s", line)]
    assert len(bce_rows) == 4
    for logit, label, _, _, stable, _ in bce_rows:
        z, y = float(logit), float(label)
        exact = max(z, 0) - z * y + math.log1p(math.exp(-abs(z)))
        assert_shows_truly(stable, exact)


def sigmoid(z):
    return 1 / (1 + math.exp(-z))


def softmax(z):
    exps = [math.exp(v - max(z)) for v in z]
    return [e / sum(exps) for e in exps]


def double_softmax_gradient_ratio(z, target):
    """|grad of CE(z)| over |grad of CE(softmax(z))| with respect to z: q - p, and J^T (softmax(q) - p)."""
    q = softmax(z)
    right = [qi - (i == target) for i, qi in enumerate(q)]
    outer = [ri - (i == target) for i, ri in enumerate(softmax(q))]
    # the softmax Jacobian is diag(q) - q q^T, symmetric
    double = [sum((q[i] * (i == j) - q[i] * q[j]) * outer[i] for i in range(len(z))) for j in range(len(z))]
    return math.hypot(*right) / math.hypot(*double)


def map_coin(heads, flips):
    """The MAP heads probability with a N(0, 1) prior on the logit: the root of heads - flips sigmoid(w) - w."""
    from scipy.optimize import brentq
    return sigmoid(brentq(lambda w: heads - flips * sigmoid(w) - w, -50, 50, xtol=1e-14))


def first_letter_counts():
    names = load_names()
    return [sum(n[0] == c for n in names) for c in "abcdefghijklmnopqrstuvwxyz"], len(names)


def first_letter_entropy_bits():
    counts, total = first_letter_counts()
    return -sum(k / total * math.log2(k / total) for k in counts if k)


def first_letter_half_and_half():
    """Mean NLL (bits) of the names' first letters under 0.5 P_hat + 0.5 uniform, and its KL from P_hat."""
    counts, total = first_letter_counts()
    model = [0.5 * k / total + 0.5 / 26 for k in counts]
    nll = -sum(k * math.log2(m) for k, m in zip(counts, model)) / total
    return nll, nll - first_letter_entropy_bits()


def bits(distribution, model):
    return -sum(p * math.log2(q) for p, q in zip(distribution, model))


def bayes_posterior(prior, sensitivity=0.99, false_positive_rate=0.05):
    return sensitivity * prior / (sensitivity * prior + false_positive_rate * (1 - prior))


# Numbers in the prose (solutions included), each glued as the text it shows: the sentence around it,
# the formula it must equal, and the significant figures it is shown to. `{}` marks the glued text.
PROSE_NUMBERS = {
    "book/02-random-variables": [
        ("rolls_for_error_001", 4 * (35 / 12) / 0.01**2, 4, "about {} rolls: a little more"),
    ],
    "book/03-distributions": [
        ("he_std_1024", math.sqrt(2 / 1024), 3, "about {}. With width 1024"),
        ("he_width_factor", 0.5 * 1024 * 0.0884**2, 2, "about {}, against 1 for He, so after 20 layers"),
        ("he_width_growth", (0.5 * 1024 * 0.0884**2) ** 20, 2, "about {} times larger"),
    ],
    "book/04-bayes": [
        ("bayes_p_positive", 0.99 * 0.01 + 0.05 * 0.99, 4, "{}, only"),
        ("bayes_true_positive", 0.99 * 0.01, 4, "only {} comes from people who have the disease"),
        ("second_test_posterior", bayes_posterior(bayes_posterior(0.01)), 2, "to about {}. Each test"),
        ("second_test_likelihood_ratio", 0.99 / 0.05, 4, "{}: the odds go from"),
        ("second_test_odds_one", bayes_posterior(0.01) / (1 - bayes_posterior(0.01)), 4, "to {} to"),
        ("second_test_odds_two", (1 / 99) * (0.99 / 0.05) ** 2, 4, "to {}."),
        ("break_even_prevalence", 0.05 / 1.04, 2, "about {}. Below a prevalence"),
        ("break_even_percent", 0.05 / 1.04, 2, "prevalence of about {}, a positive"),
    ],
    "book/05-softmax": [("doubling_temperature", 1 / math.log(2), 5, "about {}.")],
    "book/06-maximum-likelihood": [
        ("likelihood_ratio_p8_p5", 0.8**8 * 0.2**2 / 0.5**10, 2, "about {} times more likely"),
        ("likelihood_at_mle", 0.8**8 * 0.2**2, 2, "even at its maximum it is only {}."),
        # the integral of p^8 (1 - p)^2 over [0, 1] is the Beta function B(9, 3) = 8! 2! / 11!
        ("likelihood_area", math.factorial(8) * 2 / math.factorial(11), 2, "integrates to about {} over"),
        ("smallest_float64", math.ulp(0.0), 2, "below about {}, and"),
        ("log_smallest_float64", math.log(math.ulp(0.0)), 3, "about {}, which is exactly why"),
        # maximum likelihood is KL to the data: the coin's P_hat = (0.8, 0.2)
        ("coin_data_entropy", -(0.8 * math.log(0.8) + 0.2 * math.log(0.2)), 4, "{} nats. The fair coin"),
        ("coin_mean_nll_fair", math.log(2), 4, "mean NLL, {}, is that entropy plus"),
        ("coin_kl_fair", math.log(2) + 0.8 * math.log(0.8) + 0.2 * math.log(0.2), 4, "a KL divergence of {}; at"),
        # MAP with a N(0, 1) prior on the logit: the root of k - n sigmoid(w) - w = 0
        ("map_8_of_10", map_coin(8, 10), 3, "8 heads in 10 give {} instead of 0.8"),
        ("map_3_of_3", map_coin(3, 3), 3, "3 heads in 3 give {} instead of"),
        ("map_800_of_1000", map_coin(800, 1000), 4, "the MAP estimate, {}, is almost the MLE"),
        ("weight_decay_prior_sd", 1 / math.sqrt(50_000 * 5e-4), 2, "about {} here"),
    ],
    "book/07-gaussian-nll-mse": [
        ("nll_constant", 0.5 * math.log(8 * math.pi), 4, "about {}, so both bottom out"),
        ("full_minus_default", 0.5 * math.log(2 * math.pi), 3, "differ by about {} even"),
        ("measurements_median", 1.1, 4, "median {}, mean"),
        ("measurements_mean", sum([1.0, 1.2, 0.9, 1.1, 10.0]) / 5, 4, "mean {}, as the fits found"),
    ],
    "book/08-cross-entropy": [
        ("neglog_confident", -math.log(0.99), 1, "pays about {}. A coin flip"),
        ("neglog_factor_10", math.log(10), 2, "about {}, so a model"),
        ("neglog_catastrophic", -math.log(0.001), 2, "pays about {}, as much as"),
        ("catastrophic_over_confident", math.log(0.001) / math.log(0.99), 3, "as much as {} confident correct"),
        ("ce_q_true", math.exp(2) / (math.exp(2) + math.exp(1) + math.exp(0.1)), 3, "{} (the worked example)"),
        ("perfect_probs_as_logits_loss", math.log(1 + 2 / math.e), 3, "about {}. The argmax survives"),
        # the labs' 3 x 3 batch: every row's softmax is a permutation of softmax([0.1, 0.2, 0.7])
        ("batch3_ce_text", -math.log(softmax([0.1, 0.2, 0.7])[2]), 6, "the mean cross-entropy of the batch is {}."),
        ("batch3_q_high", softmax([0.1, 0.2, 0.7])[2], 4, "{} on the largest logit 0.7,"),
        ("batch3_q_mid", softmax([0.1, 0.2, 0.7])[1], 4, "{} on 0.2 and"),
        ("batch3_q_low", softmax([0.1, 0.2, 0.7])[0], 4, "{} on 0.1. Each target"),
        ("double_softmax_floor", math.log(1 + 2 / math.e), 4, "{}, however good the predictions get"),
        ("double_softmax_grad_ratio", double_softmax_gradient_ratio([2.0, 1.0, 0.1], 0), 2,
         "the first gradient is {} times smaller than the right one"),
        ("index_loss", (math.log(sum(map(math.exp, [2.0, 1.0, 0.1]))) - 2.0
                        + math.log(sum(map(math.exp, [0.5, 2.5, 0.3]))) - 2.5) / 2, 5,
         "With integer targets the loss is {}, with the float"),
        ("one_hot_same_loss", (math.log(sum(map(math.exp, [2.0, 1.0, 0.1]))) - 2.0
                               + math.log(sum(map(math.exp, [0.5, 2.5, 0.3]))) - 2.5) / 2, 5,
         "one-hot matrix {}: the same number"),
        # the multiclass hinge at z = [2, 1, 0.1]: 0 for class 0, 2.1 for class 1, 4.8 for class 2
        ("hinge_ce_example", math.log(sum(map(math.exp, [2.0, 1.0, 0.1]))) - 2.0, 4,
         "cross-entropy still charges {} and keeps pushing"),
        ("hinge_score_example", 1 + math.exp(-2.1) + math.exp(-4.8), 4, "add up to {} at these logits"),
        ("hinge_score_zero", 3 * math.exp(-2), 4, "and to {} at"),
        ("binary_hinge_score_0", 2 / math.e, 4, "about {}. At"),
        ("binary_hinge_score_2", 1 + math.exp(-3), 4, "about {}. The sum changes"),
        ("uniform_loss_10", math.log(10), 4, "about {} for"),
        ("uniform_loss_50000", math.log(50_000), 4, "about {} for"),
    ],
    "book/09-bce": [
        ("bce_at_logit_zero", math.log(2), 3, "about {}, whatever the label"),
        ("epsilon_loss_cap", -math.log(1e-7), 2, "caps the loss at about {} and"),
        ("sigmoid_at_minus10", sigmoid(-10), 2, "is only {} but the label is 1"),
        # BCE's gradient sigma - 1 over MSE's 2 (sigma - 1) sigma (1 - sigma), rounded to thousands
        ("bce_over_mse_grad", 1 / (2 * sigmoid(-10) * (1 - sigmoid(-10))), 2, "about {} times smaller"),
        ("mse_grad_peak", 2 * (1 / 3 - 1) * (1 / 3) * (2 / 3), 1, "never stronger than about {}"),
        ("mse_grad_peak_logit", math.log(1 / 2), 2, "about {}) and vanishes"),
        ("softplus_3", math.log1p(math.exp(3)), 5, "about {}. For"),
        ("label_zero_bce_grad", sigmoid(10), 5, "BCE gives about {} while"),
        ("label_zero_mse_grad", 2 * sigmoid(10) ** 2 * (1 - sigmoid(10)), 2, "MSE gives about {}. Only BCE"),
        # F.binary_cross_entropy's gradient at q = 0, label 1: (q - 1) / max(q (1 - q), 1e-12)
        ("bce_prob_grad_at_zero", -1e12, 2, "it is about {} (PyTorch divides"),
    ],
    "book/10-entropy-kl": [
        ("nats_per_bit", math.log(2), 3, "nats, about {}. Deep learning"),
        ("nats_per_bit", math.log(2), 3, "about {}. Calling KL"),
        ("opposite_over_entropy", bits([0.9, 0.1], [0.1, 0.9]) / bits([0.9, 0.1], [0.9, 0.1]), 2,
         "costs about {} times"),
        ("mle_kl_entropy", first_letter_entropy_bits(), 4, "{} bits, plus its KL divergence from the data"),
        ("mle_kl_half_nll", first_letter_half_and_half()[0], 4, "mixture scores {} bits, of which"),
        ("mle_kl_half_kl", first_letter_half_and_half()[1], 4, "of which {} is KL"),
    ],
    "book/11-bigram": [
        ("bigram_init_loss_zero", math.log(27), 5, "about {} (where the zero-initialised network started)"),
        ("bigram_prior_sd_100", 1 / math.sqrt(200), 3, "about {} for"),
    ],
    "book/12-gradient-descent": [
        # x and y shrink by 1 - 2 eta and 1 - 20 eta per step from (3, 4)
        ("elongated_loss_009", 9 * 0.82**100 + 160 * 0.8**100, 2, "falls to about {} (although"),
        ("elongated_x_factor_009", 1 - 2 * 0.09, 2, "with factor {});"),
        ("elongated_y_factor_011", 1 - 20 * 0.11, 2, "multiplied by {} every step"),
        ("steps_bound_01", math.log(25e6) / math.log(1 / 0.64), 3, "about {}, so"),
        ("steps_bound_045", math.log(25e6) / math.log(100), 2, "about {}, so"),
    ],
}


@pytest.mark.parametrize("chapter", sorted(PROSE_NUMBERS))
def test_numbers_in_the_prose_are_computed(built_site, chapter):
    values, text = glued(built_site, chapter), page_text(built_site, chapter)
    for key, exact, significant, sentence in PROSE_NUMBERS[chapter]:
        assert key in values, f"{chapter} does not glue {key!r}"
        assert_shows_truly(values[key], exact, significant, what=f"{chapter}: {key} (its formula gives the second)")
        assert sentence.format(values[key]) in text, f"{chapter}: the text does not read {sentence.format(values[key])!r}"


def test_counts_and_step_numbers_in_the_prose_are_exact(built_site):
    bayes = glued(built_site, "book/04-bayes")
    sick = round(10_000 * 0.01)
    assert [bayes[k] for k in ("counts_sick", "counts_sick_positive", "counts_healthy_positive", "counts_positive")] \
        == [sick, round(sick * 0.99), round((10_000 - sick) * 0.05), round(sick * 0.99) + round((10_000 - sick) * 0.05)]
    assert bayes["counts_healthy"] == f"{10_000 - sick:,d}"
    bayes_text = page_text(built_site, "book/04-bayes")
    assert (f"Of the 10,000 people, {bayes['counts_sick']} are sick and {bayes['counts_sick_positive']} of them "
            f"test positive, but {bayes['counts_healthy_positive']} of the {bayes['counts_healthy']} healthy") in bayes_text
    assert f"they are {bayes['counts_sick_positive']} of {bayes['counts_positive']} positives" in bayes_text
    assert r"\frac{0.0099}{0.0594}" not in bayes_text and "1.04" not in bayes_text

    gd = glued(built_site, "book/12-gradient-descent")
    for lr, name in [(0.1, "01"), (0.45, "045")]:
        # the first step t with 25 (1 - 2 lr)^(2t) below 1e-6
        first = next(t for t in range(1000) if 25 * (1 - 2 * lr) ** (2 * t) < 1e-6)
        assert gd[f"steps_needed_{name}"] == first
        assert f"so {first} steps" in page_text(built_site, "book/12-gradient-descent")

    mle = glued(built_site, "book/06-maximum-likelihood")
    import numpy as np   # the chapter's sample, drawn again

    probs = np.random.default_rng(0).uniform(0.05, 0.95, size=1000)
    assert float(mle["sum_of_1000_logs"]) == pytest.approx(np.sum(np.log(probs)), abs=0.5)
    assert f"about {mle['sum_of_1000_logs']}. That is far below" in page_text(built_site, "book/06-maximum-likelihood")

    fits = glued(built_site, "book/07-gaussian-nll-mse")
    assert float(fits["measurements_median"]) == pytest.approx(fits["robust_fits"][1], abs=1e-4)
    assert float(fits["measurements_mean"]) == pytest.approx(fits["robust_fits"][0], abs=1e-4)
    assert f"multiplied by {fits['nll_quadratic_coeff']:.4f} and shifted" in page_text(built_site, "book/07-gaussian-nll-mse")

    cross_entropy = glued(built_site, "book/08-cross-entropy")
    logits = [2.0, 1.0, 0.1]
    softmax = [math.exp(z) / sum(map(math.exp, logits)) for z in logits]
    assert cross_entropy["ce_probs"] == [round(q, 3) for q in softmax]
    assert f"treats the probabilities {cross_entropy['ce_probs']} as if" in page_text(built_site, "book/08-cross-entropy")

    bce = glued(built_site, "book/09-bce")
    assert bce["softplus_40_float32"] == 40.0   # float32 softplus(40) is 40 to its precision
    assert f"PyTorch give {bce['softplus_40_float32']}." in page_text(built_site, "book/09-bce")


def test_optimizers_from_scratch_match_torch_optim(built_site):
    values = glued(built_site, "book/13-optimizers")
    assert values["optimizers_match_torch"] is True
    assert 0 <= values["optimizer_max_gap"] < 1e-12
    # Minibatch noise falls like 1/sqrt(batch size).
    assert values["minibatch_noise_slope"] == pytest.approx(-0.5, abs=0.05)
    gd, momentum, rmsprop, adam = values["quadratic_final_losses"]
    assert momentum < gd / 100 and rmsprop < gd / 100


def test_the_toc_lists_every_chapter_and_the_notation_page(root):
    assert len(numbered_chapters(root)) == CHAPTER_COUNT
    assert "book/13-optimizers" in numbered_chapters(root)
    assert "book/notation" in toc_chapters(root)


@pytest.mark.parametrize("chapter_index", range(CHAPTER_COUNT))
def test_every_chapter_executed_without_error_and_shows_figures(root, built_site, chapter_index):
    chapter = numbered_chapters(root)[chapter_index]
    notebook = json.loads((built_site / "jupyter_execute" / f"{chapter}.ipynb").read_text())
    code_cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert code_cells, f"{chapter} has no code cells"
    assert all(c.get("execution_count") for c in code_cells), f"{chapter}: a code cell did not execute"
    errors = [o for c in code_cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, f"{chapter}: {errors[0]['ename']}: {errors[0]['evalue']}"

    page = PageParser.parse(built_site / "html" / f"{chapter}.html")
    figures = [img for img in page.images if "/_images/" in "/" + img.get("src", "")]
    assert figures, f"{chapter} shows no figure"
    for img in figures:
        assert len(img.get("alt", "").strip()) > 20, f"{chapter}: figure {img['src']} has no real alt text"
    for heading in ("Common mistakes", "Exercise", "Checkpoint"):
        assert heading in page.headings, f"{chapter} has no '{heading}' section"
    assert "admonition" in page.classes and "tip" in page.classes, f"{chapter} has no intuition box"
    assert "solution" in page.classes and "dropdown" in page.classes, f"{chapter}: no hidden exercise solution"


def test_figures_have_titles_and_axis_labels(root):
    """Each plotting cell sets a title and labels both axes (checked in the source)."""
    for chapter in numbered_chapters(root):
        source = (root / f"{chapter}.md").read_text()
        for cell in re.findall(r"```\{code-cell\}.*?```", source, flags=re.S):
            if "plt.show()" not in cell:
                continue
            assert "alt:" in cell, f"{chapter}: a figure cell without alt text"
            assert re.search(r"set_title|suptitle|title\(", cell), f"{chapter}: a figure without a title"
            assert re.search(r"set_xlabel|xlabel\(|supxlabel", cell), f"{chapter}: a figure without an x label"
            assert re.search(r"set_ylabel|ylabel\(|supylabel", cell), f"{chapter}: a figure without a y label"


def test_names_loader_reads_the_census_lists():
    names = load_names()
    assert len(names) == len(set(names)) > 5000
    # Most common first (the two lists' frequencies summed: "michael" is on both, so it passes "mary"), ties by name.
    assert names[:5] == ["james", "john", "robert", "michael", "mary"]
    assert all(n.isalpha() and n.islower() for n in names)


def test_names_loader_names_the_bad_file_and_line(tmp_path):
    (tmp_path / "dist.female.first").write_text("MARY 2.629 2.629 1\nBROKEN LINE\n")
    with pytest.raises(ValueError, match=r"dist\.female\.first, line 2"):
        load_names(files=("dist.female.first",), folder=tmp_path)


@pytest.mark.parametrize("chapter_index", range(CHAPTER_COUNT))
def test_every_chapter_has_objectives_notation_reading_practice_and_exercises(root, built_site, chapter_index):
    chapter = numbered_chapters(root)[chapter_index]
    source = (root / f"{chapter}.md").read_text()
    page = PageParser.parse(built_site / "html" / f"{chapter}.html")
    for words in ("Learning objectives", "Prerequisites", "Practise this chapter"):
        assert words in page.text, f"{chapter} has no '{words}'"
    assert "Further reading" in page.headings, f"{chapter} has no further reading"
    assert any(href.split("#")[0] == "notation.html" for href in page.links), f"{chapter} does not link the notation page"
    assert any(href.startswith("assignments/") for href in page.links), f"{chapter} links no assignment"
    exercises = re.findall(r"^:::\{exercise\}\n:label: [\w-]+\n\n(.*)$", source, flags=re.M)
    assert len(exercises) >= 2, f"{chapter} has {len(exercises)} exercise(s)"
    assert any(re.match(r"\*(Derivation|Predict)", first) for first in exercises), (
        f"{chapter}: no exercise is a derivation or a prediction"
    )


# Forms that write the MODEL's probabilities with p or P (the notation page gives P to the truth, Q to the
# model). Each was in the book once. The truth's own p (a one-hot target, the data's distribution, a
# Bernoulli parameter, the surprise -log p of an outcome) matches none of them.
MODEL_WRITTEN_AS_P = {
    "a softmax or sigmoid output stored as p/P": re.compile(
        r"^\s*[pP](?:_\w+)?\s*=[^=\n]*\b(?:softmax|sigmoid)\(", re.M),
    "a plain-text -log p (figures, printed labels)": re.compile(r"(?<!\\)[-\u2212]\s*log\s*p(?![\w\[(])"),
    "the derivative -1/p or the gradient p - 1 of a loss": re.compile(r"[-\u2212]\s*1\s*/\s*p\b|\bp\s*[-\u2212]\s*1\b"),
    "p(true class)": re.compile(r"\bp\s*\(\s*true class"),
    "binary cross-entropy with p for the model": re.compile(
        r"\by(?:_\w|_\{\w+\})?\s*\*?\s*\\?log\s*\(?\s*p(?![a-zA-Z])|\bBCE\(p\b"),
    "the table of model probabilities, p(z=...), as p": re.compile(r"\bp\(z="),
}


def notation_sources(root):
    """Every text a student reads: the chapters, the interactive figures, the solution and released notebooks."""
    import nbformat

    sources = {f"{c}.md": (root / f"{c}.md").read_text() for c in numbered_chapters(root)}
    sources["book/_static/interactive-figures.js"] = (root / "book/_static/interactive-figures.js").read_text()
    for folder in ("solutions", "assignments"):
        for path in sorted((root / folder).glob("*/*.ipynb")):
            notebook = nbformat.read(path, as_version=4)
            sources[str(path.relative_to(root))] = "\n".join(c.source for c in notebook.cells)
    return sources


def model_written_as_p(text):
    return [(what, m.group(0)) for what, pattern in MODEL_WRITTEN_AS_P.items() for m in pattern.finditer(text)]


def test_one_notation_truth_p_model_q_and_one_meaning_per_symbol(root):
    for chapter in numbered_chapters(root):
        source = (root / f"{chapter}.md").read_text()
        assert "H(q, p)" not in source, f"{chapter}: cross-entropy with the model first"
        assert not re.search(r"= p - q\b", source), f"{chapter}: gradient written as truth minus model"
        if chapter != "book/06-maximum-likelihood":
            # The likelihood's symbol; chapter 1 once used it for the NLL.
            assert r"\mathcal{L}" not in source, f"{chapter} uses the likelihood's symbol"
    for name, text in notation_sources(root).items():
        assert not model_written_as_p(text), f"{name} writes the model's probabilities as p: {model_written_as_p(text)}"
    cross_entropy = (root / "book/08-cross-entropy.md").read_text()
    assert r"q = \operatorname{softmax}(z)" in cross_entropy and "H(P, Q)" in cross_entropy
    assert r"= q - p." in cross_entropy
    # The bigram chapter's tables are all models (counts or network): none is called P.
    bigram_code = "\n".join(re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", (root / "book/11-bigram.md").read_text(), re.S))
    assert not re.search(r"^\s*P\w*\s*=", bigram_code, re.M), "book/11-bigram names a model's table P"
    assert "model P" not in (root / "book/10-entropy-kl.md").read_text()
    notation = (root / "book/notation.md").read_text()
    assert "P is the truth, Q is the model" in notation


@pytest.mark.parametrize("planted", [
    "p = softmax(logits)", "P_nn = torch.softmax(W, dim=1)", "p_t1 = softmax(logits, temperature=1.0)",
    'print("naive   -log p:", loss)', "loss \u2212log p (left, with its tangent of slope \u22121/p)",
    'title: "\\u2202loss/\\u2202z_true = p \u2212 1"', "<label>p(true class)</label>",
    "$-[y\\log p + (1-y)\\log(1-p)]$", "Formula: -mean(y * log(p) + (1 - y) * log(1 - p))",
    "$$\\mathrm{BCE}(p, y) = -\\frac{1}{N}\\sum_n \\big[y_n \\log p_n\\big]$$", "{'p(z=2)':>7}",
])
def test_the_notation_check_catches_the_model_written_as_p(planted):
    assert model_written_as_p(planted), planted


@pytest.mark.parametrize("truth", [
    r"$-\log p$: certain events ($p=1$) carry no surprise", r"H(P) = -\sum_{k=1}^{K} p_k \log p_k",
    r"\ell(p) = k \log p + (n-k)\log(1-p)", "p = rng.dirichlet(np.ones(6))", "q = softmax(z)",
    r"$\mathrm{BCE}(q, y) = -[y_n \log q_n + (1-y_n)\log(1-q_n)]$", "P_first = counts / len(first_letters)",
    "-(k * np.log(p) + (n - k) * np.log(1 - p))", "p, q = np.array([0.9, 0.1]), np.array([0.5, 0.5])",
])
def test_the_notation_check_leaves_the_truths_p_alone(truth):
    assert not model_written_as_p(truth), model_written_as_p(truth)


def test_a_chapter_notebook_runs_without_course_and_myst_nb(root, tmp_path):
    """A chapter converted to .ipynb (as a reader downloads it) runs in a kernel whose Python lacks both."""
    import jupytext
    import nbclient

    # A site folder holding everything the environment has, except myst_nb and the course package.
    site_packages = Path(sysconfig.get_paths()["purelib"])
    filtered = tmp_path / "site-packages"
    filtered.mkdir()
    excluded = re.compile(r"(myst_nb|__editable__|prob2loss|course)", re.I)
    for entry in site_packages.iterdir():
        if not excluded.search(entry.name):
            (filtered / entry.name).symlink_to(entry)
    # -S: no site-packages but the filtered one; the kernel starts in tmp_path, not the repository.
    python = [sys.executable, "-S", "-c", f"import site; site.addsitedir({str(filtered)!r}); "
              "from ipykernel import kernelapp; kernelapp.launch_new_instance()"]
    env_dirs = {name: tmp_path / name.lower() for name in (
        "JUPYTER_PATH", "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "IPYTHONDIR", "MPLCONFIGDIR")}
    for folder in env_dirs.values():
        folder.mkdir()
    kernel_dir = env_dirs["JUPYTER_PATH"] / "kernels" / "without-course"
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(json.dumps({
        "argv": python + ["-f", "{connection_file}"], "display_name": "without course", "language": "python",
    }))
    env = {**os.environ, **{k: str(v) for k, v in env_dirs.items()}, "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)

    probe = subprocess.run(
        python[:2] + ["-c", f"import site; site.addsitedir({str(filtered)!r}); import importlib.util as u; "
                      "print([u.find_spec(m) is None for m in ('course', 'myst_nb', 'names', 'torch')])"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[True, True, False, False]", probe.stdout + probe.stderr

    notebook = jupytext.read(root / "book/11-bigram.md")
    notebook.metadata["kernelspec"] = {"name": "without-course", "display_name": "without course", "language": "python"}
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k in env_dirs or k == "PYTHONNOUSERSITE"})
    try:
        client = nbclient.NotebookClient(notebook, kernel_name="without-course", timeout=600,
                                         resources={"metadata": {"path": str(tmp_path)}})
        client.execute(env=env)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert code_cells and all(c.execution_count for c in code_cells)
    printed = "".join(o.get("text", "") for c in code_cells for o in c.outputs if o.output_type == "stream")
    assert f"{len(load_names())} names" in printed


class PageParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.headings, self.classes = [], set(), set()
        self.links, self.text = [], ""
        self._heading = None

    @classmethod
    def parse(cls, path):
        parser = cls()
        parser.feed(path.read_text(encoding="utf-8"))
        return parser

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.classes.update((attrs.get("class") or "").split())
        if tag == "img":
            self.images.append(attrs)
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if re.fullmatch(r"h[1-6]", tag):
            self._heading = ""

    def handle_endtag(self, tag):
        if re.fullmatch(r"h[1-6]", tag) and self._heading is not None:
            # Without the chapter and section numbers the numbered table of contents adds ("1.3. ").
            self.headings.add(re.sub(r"^\d+(\.\d+)*\.?\s+", "", self._heading.strip().rstrip("#").strip()))
            self._heading = None

    def handle_data(self, data):
        self.text += data
        if self._heading is not None:
            self._heading += data


@pytest.mark.parametrize("chapter_index", range(CHAPTER_COUNT))
def test_a_chapter_imports_nothing_a_reader_lacks(root, chapter_index):
    """A downloaded chapter runs in plain Jupyter or Colab: no `course` import, and `myst_nb` only with a fallback."""
    import jupytext

    chapter = sorted((root / "book").glob("[0-9][0-9]-*.md"))[chapter_index]
    code = "\n".join(c.source for c in jupytext.read(chapter).cells if c.cell_type == "code")
    assert not re.search(r"^\s*(from|import)\s+course\b", code, re.M), f"{chapter.name} imports the course package"
    for match in re.finditer(r"^(\s*)(from myst_nb import|import myst_nb)", code, re.M):
        before = code[:match.start()].rstrip().splitlines()
        assert match.group(1) and before and before[-1].strip() == "try:", \
            f"{chapter.name}: myst_nb is imported without a fallback"
    # Any other package Colab does not ship is imported under a try whose ImportError handler tells the
    # reader the one command to run.
    for module, handler in guarded_imports(code).items():
        assert module in COLAB_SHIPS or module in sys.stdlib_module_names or handler is not None, (
            f"{chapter.name} imports {module}, which Colab lacks, without a try/except ImportError")
        if handler is not None and module != "myst_nb":
            assert f"%pip install {module}" in handler, (
                f"{chapter.name}: the ImportError for {module} does not say `%pip install {module}`")


# The packages a fresh Colab runtime has (the standard library aside) that the chapters use.
COLAB_SHIPS = {"numpy", "matplotlib", "scipy", "torch"}


def guarded_imports(code):
    """Each imported top-level module: the source of the ImportError handler around it, or None."""
    import ast

    tree = ast.parse(code)
    found = {}

    def imported(node):
        if isinstance(node, ast.Import):
            return [alias.name.split(".")[0] for alias in node.names]
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            return [node.module.split(".")[0]]
        return []

    def catches_import_error(handler):
        names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        return any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names)

    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            handlers = [h for h in node.handlers if catches_import_error(h)]
            for inner in node.body:
                for module in imported(inner):
                    found[module] = ast.get_source_segment(code, handlers[0]) if handlers else None
    for node in ast.walk(tree):
        for module in imported(node):
            found.setdefault(module, None)
    return found


@pytest.mark.parametrize("chapter", ["book/10-entropy-kl.md", "book/11-bigram.md"])
def test_a_chapter_without_the_names_package_says_how_to_install_it(root, chapter, tmp_path):
    """Run the chapter's guarded import of `names` in a Python where the package cannot be imported."""
    import ast

    import jupytext

    code = "\n".join(c.source for c in jupytext.read(root / chapter).cells if c.cell_type == "code")
    guard = next(node for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Try)
                 and any(isinstance(n, ast.Import) and n.names[0].name == "names" for n in node.body))
    # sys.modules[name] = None makes every import of that name raise ImportError.
    script = "import sys\nsys.modules['names'] = None\n" + ast.get_source_segment(code, guard)
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode != 0
    assert "ImportError" in run.stderr and "%pip install names" in run.stderr, run.stderr
    # With the package present, the same lines import it quietly.
    ok = subprocess.run([sys.executable, "-c", ast.get_source_segment(code, guard)], cwd=tmp_path,
                        capture_output=True, text=True)
    assert ok.returncode == 0 and not ok.stderr, ok.stderr


def bigram_reference():
    """The chapter 11 numbers recomputed from the names alone, with the chapter's split (numpy seed 0, 80/10/10)."""
    import numpy as np

    names = load_names()
    itos = ["."] + sorted(set("".join(names)))
    stoi = {c: i for i, c in enumerate(itos)}

    def counts(words):
        table = np.zeros((27, 27))
        for w in words:
            for a, b in zip("." + w, w + "."):
                table[stoi[a], stoi[b]] += 1
        return table

    order = np.random.default_rng(0).permutation(len(names))
    n_train = int(0.8 * len(names))
    full, train = counts(names), counts([names[i] for i in order[:n_train]])
    rows = full / full.sum(axis=1, keepdims=True)
    weights = full.sum(axis=1) / full.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        row_entropy = -np.nansum(np.where(rows > 0, rows * np.log(rows), 0.0), axis=1)
    next_marginal = full.sum(axis=0) / full.sum()
    add_one = (full + 1) / (full + 1).sum(axis=1, keepdims=True)
    return {"stoi": stoi, "full": full, "train": train, "weights": weights, "row_entropy": row_entropy,
            "cond_entropy": float(weights @ row_entropy),
            "next_entropy": float(-(next_marginal * np.log(next_marginal)).sum()),
            "add_one": add_one}


def test_the_deeper_sections_follow_their_data(built_site):
    """The wrong claims of the course-review issue, fixed: each number recomputed here, each in its sentence."""
    import numpy as np

    def shown_in(chapter, items):
        values, text = glued(built_site, chapter), page_text(built_site, chapter)
        for key, exact, significant, sentence in items:
            assert_shows_truly(values[key], exact, significant, what=f"{chapter}: {key}")
            assert sentence.format(values[key]) in text, f"{chapter}: the text does not read {sentence.format(values[key])!r}"
        return values, text

    # Chapter 1: the 2-sigma band checked on fresh points, not only on the residuals sigma-hat came from.
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(0.0, 1.0, size=80))
    y = np.sin(2 * np.pi * x) + rng.normal(0.0, 0.25, size=80)
    coeffs = np.polyfit(x, y, deg=3)
    sigma_hat = float(np.sqrt(np.mean((y - np.polyval(coeffs, x)) ** 2)))
    x_new = rng.uniform(0.0, 1.0, size=10_000)
    y_new = np.sin(2 * np.pi * x_new) + rng.normal(0.0, 0.25, size=10_000)
    fresh = float(np.mean(np.abs(y_new - np.polyval(coeffs, x_new)) < 2 * sigma_hat))
    assert fresh < 0.95 and sigma_hat < 0.25   # as the text explains
    shown_in("book/01-why-probability", [
        ("inside_2sigma_new", fresh, 3, "only a fraction {} lands inside the band, below"),
        ("sigma_hat_demo", sigma_hat, 3, "{} is smaller than the true noise level 0.25"),
    ])

    # Chapter 8: double softmax keeps the argmax; its loss stays just above log(1 + 2/e).
    values, _ = shown_in("book/08-cross-entropy", [])
    floor = math.log(1 + 2 / math.e)
    assert float(values["double_softmax_q0"]) > 0.999
    assert floor <= float(values["double_softmax_loss"]) < floor + 0.001
    text = page_text(built_site, "book/08-cross-entropy")
    assert f"puts {values['double_softmax_q0']} on the true class" in text
    assert f"stuck at {values['double_softmax_loss']}, just above the floor" in text
    assert f"the hinge loss is exactly {values['hinge_example']}" in text
    assert float(values["hinge_example"]) == 0.0
    assert "trains slowly towards the wrong target" not in text and "not a one-hot float matrix" not in text

    # Chapter 9: the clamp keeps the gradient with respect to q; the logit's dies because sigma rounds to 0.
    bce = glued(built_site, "book/09-bce")
    assert bce["bce_logit_grad_at_zero"] == 0.0
    assert f"the logit gets {bce['bce_logit_grad_at_zero']}" in page_text(built_site, "book/09-bce")

    # Chapter 10: KL names its direction.
    kl_text = page_text(built_site, "book/10-entropy-kl")
    assert "forward KL, which is what maximum likelihood does) is mass-covering" in kl_text

    # Chapter 11: the q row, emma, the conditional entropy, the matched penalty.
    ref = bigram_reference()
    q, u, e, m = (ref["stoi"][c] for c in "quem")
    full, train = ref["full"], ref["train"]
    q_followers = {j: int(full[q, j]) for j in range(27) if full[q, j]}
    assert len(q_followers) == 2 and q_followers[ref["stoi"]["i"]] == 1
    values, text = shown_in("book/11-bigram", [
        ("bigram_q_u_raw", train[q, u] / train[q].sum(), 3, "the unsmoothed training counts {} ("),
        ("bigram_q_u_add_one", (train[q, u] + 1) / (train[q].sum() + 27), 2, "the add-one table only {}. The network"),
        ("emma_em_nats", -math.log(ref["add_one"][e, m]), 3, "The expensive steps are em, at {} nats"),
        ("emma_mm_nats", -math.log(ref["add_one"][m, m]), 3, "mm, at {}: both"),
        ("bigram_cond_entropy", ref["cond_entropy"], 4, "{} nats, exactly the mean NLL of the unsmoothed table"),
        ("bigram_next_entropy", ref["next_entropy"], 4, "an entropy of {} nats; the previous"),
        ("bigram_context_gain", ref["next_entropy"] - ref["cond_entropy"], 4, "removes {} nats of it"),
        ("bigram_first_letter_bits", ref["row_entropy"][0] / math.log(2), 4, "its entropy, {} bits, is the first-letter"),
        ("bigram_lecture_lambda", 0.01 * train.sum() / 729, 2, "{}: about the same strength"),
    ])
    assert values["bigram_unseen_count"] == int((full == 0).sum())
    assert (values["bigram_q_total"], values["bigram_q_u"], values["bigram_q_other"]) == (
        int(full[q].sum()), q_followers[u], int(full[q].sum()) - q_followers[u]) and values["bigram_q_other"] == 1
    assert (values["bigram_q_u_train"], values["bigram_q_train"]) == (int(train[q, u]), int(train[q].sum()))
    # The network's q row has converged to the data: close to the unsmoothed estimate, far from add-one.
    network_q_u = float(values["bigram_q_u_network"])
    assert abs(network_q_u - train[q, u] / train[q].sum()) < 0.01 < float(values["bigram_q_u_add_one"]) and network_q_u > 0.9
    assert f"the network gives it {values['bigram_q_u_network']}, the unsmoothed" in text
    assert "has moved little" not in text and "a rare pair, even in a common name" not in text
    assert "anything except u, never occur" not in text and "as in Karpathy's makemore lecture" not in text
    # The first letters' entropy is chapter 10's, in bits.
    assert float(values["bigram_first_letter_bits"]) == pytest.approx(
        glued(built_site, "book/10-entropy-kl")["first_letter_bits"][0], abs=1e-4)
    # The matched penalty: same training NLL as add-one by construction, a dev NLL within 0.01, and on the q row
    # between add-one and the unsmoothed counts.
    lam = float(values["bigram_matching_lambda"])
    assert 0.1 < lam < 1.0
    assert abs(float(values["bigram_penalty_dev_nll"]) - float(values["bigram_add_one_dev_nll"])) < 0.01
    assert float(values["bigram_add_one_dev_nll"]) == pytest.approx(values["bigram_count_dev_nll"], abs=1e-4)
    assert float(values["bigram_q_u_add_one"]) < float(values["bigram_penalty_q_u"]) < network_q_u
    for key in ("bigram_matching_lambda", "bigram_penalty_dev_nll", "bigram_add_one_dev_nll", "bigram_penalty_q_u"):
        assert str(values[key]) in text, key
    # the figure's comparison: add-one pulls the rarest rows (q, x) harder, the penalty the three busiest
    add_one_pull, penalty_pull = values["bigram_pull_add_one"], values["bigram_pull_penalty"]
    assert all(a > b for a, b in zip(add_one_pull[:2], penalty_pull[:2]))
    assert all(a < b for a, b in zip(add_one_pull[2:], penalty_pull[2:]))
    assert min(add_one_pull[:2]) > max(add_one_pull[2:]) and min(penalty_pull[:2]) > max(penalty_pull[2:])
    assert "add-one’s fixed 27 imaginary counts pull the rarest rows harder, while the penalty pulls the busiest rows harder" in text
    top = int(np.argmax(ref["weights"] * ref["row_entropy"]))
    itos = {i: c for c, i in ref["stoi"].items()}
    assert values["bigram_top_row"] == repr(itos[top])


def test_one_meaning_per_symbol(root):
    """The notation clashes the course review found stay fixed."""
    chapters = {c: (root / f"{c}.md").read_text() for c in numbered_chapters(root)}
    # ell is a per-example loss, never the log-likelihood
    assert r"\ell(p)" not in chapters["book/06-maximum-likelihood"] and r"d\ell" not in chapters["book/06-maximum-likelihood"]
    # the softmax has no temperature inside; a temperature divides the logits
    assert r"\operatorname{softmax}(z)_i = \frac{e^{z_i / T}}" not in chapters["book/05-softmax"]
    # b is the line's intercept, not the Laplace scale; theta is never the distribution computed in chapter 1
    assert r"\frac{1}{2b}" not in chapters["book/07-gaussian-nll-mse"]
    assert r"\theta = f_w" not in chapters["book/01-why-probability"]
    # alpha is add-alpha smoothing only; RMSprop's decay is rho
    assert r"\alpha s_{t-1}" not in chapters["book/13-optimizers"]
    notation = (root / "book/notation.md").read_text()
    assert r"| $\ell(\theta) = \log" not in notation
    for symbol in (r"$\rho$", r"$\alpha$", r"$\lambda$", r"$\tau$", "$T$"):
        assert symbol in notation, symbol
    index = (root / "book/index.md").read_text()
    assert "Every loss function you meet in deep learning is a negative log-likelihood" not in index
    assert "hinge loss" in index
