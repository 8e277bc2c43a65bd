"""The source layer of an assignment's rules (course/rules.py): a forbidden name found however the source
spells it, charged to the function that uses it (or reaches it), never to a comment or a docstring; and the
rule's place in the hidden-check format.  No kernel: the run-time layer is tested in tests/test_adversarial.py."""
import copy
import json

import pytest

from course.cases import Rule, load_rules, problems, references_path
from course.rules import Breach, Layer, Use, run_breach, source_breaches

A4 = "a4-torch-cross-entropy"
CHECKS = {"test_cross_entropy": [{"case": "c1", "function": "cross_entropy"}],
          "test_cross_entropy_grad": [{"case": "g1", "function": "cross_entropy_grad"}]}
HONEST_GRAD = '''
def cross_entropy_grad(logits, targets):
    q = torch.softmax(logits, dim=1)
    q[torch.arange(len(targets)), targets] -= 1
    return q / len(targets)
'''


def a4_rule():
    (rule,) = load_rules(A4)
    return rule


def notebook(*sources):
    """Cells as the grader reads them: the locked imports cell, the student's cells, a graded test cell."""
    cells = [{"cell_type": "code", "source": "import torch", "metadata": {"nbgrader": {"locked": True}}}]
    cells += [{"cell_type": "code", "source": s, "metadata": {"nbgrader": {"solution": True}}} for s in sources]
    cells.append({"cell_type": "code", "source": "import torch.nn.functional as F\nF.cross_entropy(z, y)",
                  "metadata": {"nbgrader": {"grade": True, "solution": False}}})  # a top-level call: charges nothing
    return cells


def broken(*sources):
    """{function: forbidden name} of each bound function the source layer finds breaking a4's rule."""
    return {b.function: b.name for b in source_breaches(notebook(*sources), [a4_rule()], CHECKS)}


def test_a4_ships_its_rule():
    rule = a4_rule()
    assert {"torch.nn.functional.cross_entropy", "torch.nn.functional.log_softmax", "torch.logsumexp",
            "torch.nn.CrossEntropyLoss"} <= set(rule.forbidden)
    assert set(rule.ops) == {"aten::_log_softmax", "aten::logsumexp"}
    assert rule.functions is None  # both graded functions are bound


@pytest.mark.parametrize("source, name", [
    ("import torch.nn.functional as F\ndef cross_entropy(z, y, reduction='mean'):\n    return F.cross_entropy(z, y)",
     "torch.nn.functional.cross_entropy"),
    ("def cross_entropy(z, y, reduction='mean'):\n    return torch.nn.functional.cross_entropy(z, y)",
     "torch.nn.functional.cross_entropy"),
    ("from torch.nn import functional as G\ndef cross_entropy(z, y, reduction='mean'):\n    return G.cross_entropy(z, y)",
     "torch.nn.functional.cross_entropy"),
    ("from torch import logsumexp as l\ndef cross_entropy(z, y, reduction='mean'):\n    return (l(z, 1) - z[0, y]).mean()",
     "torch.logsumexp"),
    ("from torch.nn.functional import *\ndef cross_entropy(z, y, reduction='mean'):\n    return log_softmax(z, 1)[0, y]",
     "torch.nn.functional.log_softmax"),
    ("def cross_entropy(z, y, reduction='mean'):\n    return -z.log_softmax(1)[0, y]", "torch.Tensor.log_softmax"),
    ("def cross_entropy(z, y, reduction='mean'):\n    return torch.nn.CrossEntropyLoss()(z, y)", "torch.nn.CrossEntropyLoss"),
    ("def cross_entropy(z, y, reduction='mean'):\n    return torch.special.logsumexp(z, 1).mean()", "torch.special.logsumexp"),
    # through strings
    ("import torch.nn.functional as F\ndef cross_entropy(z, y, reduction='mean'):\n    return getattr(F, 'cross_entropy')(z, y)",
     "torch.nn.functional.cross_entropy"),
    ("import importlib\ndef cross_entropy(z, y, reduction='mean'):\n"
     "    return importlib.import_module('torch.nn.functional').cross_entropy(z, y)", "torch.nn.functional.cross_entropy"),
    ("def cross_entropy(z, y, reduction='mean'):\n    return __import__('torch').logsumexp(z, 1).mean()", "torch.logsumexp"),
    ("def cross_entropy(z, y, reduction='mean'):\n    return torch.nn.functional.__dict__['log_softmax'](z, 1)[0, y]",
     "torch.nn.functional.log_softmax"),
    ("import sys\ndef cross_entropy(z, y, reduction='mean'):\n    return sys.modules['torch.nn.functional'].cross_entropy(z, y)",
     "torch.nn.functional.cross_entropy"),
    ("def cross_entropy(z, y, reduction='mean'):\n    return getattr(z, 'logsumexp')(1).mean()", "torch.Tensor.logsumexp"),
    ("def cross_entropy(z, y, reduction='mean'):\n    return torch.ops.aten._log_softmax.default(z, 1, False)[0, y]",
     "torch.ops.aten._log_softmax"),
    # the module under another of its names
    ("import torch.nn.modules.loss as L\ndef cross_entropy(z, y, reduction='mean'):\n    return L.F.cross_entropy(z, y)",
     "torch.nn.functional.cross_entropy"),
])
def test_a_forbidden_name_is_found_however_it_is_spelled(source, name):
    assert broken(source) == {"cross_entropy": name}


@pytest.mark.parametrize("source", [
    # the function is the library's own
    "from torch.nn.functional import cross_entropy",
    "import torch.nn.functional as F\ncross_entropy = F.cross_entropy",
    "cross_entropy = lambda z, y, reduction='mean': torch.logsumexp(z, 1).mean()",
    # through a helper, an alias made at top level, or an alias made in another cell
    "def lse(z):\n    return torch.logsumexp(z, 1)\n\ndef cross_entropy(z, y, reduction='mean'):\n    return (lse(z) - z[0, y]).mean()",
    "import torch.nn.functional as F\nce = F.cross_entropy\ndef cross_entropy(z, y, reduction='mean'):\n    return ce(z, y)",
])
def test_the_function_is_charged_when_it_reaches_the_name(source):
    assert "cross_entropy" in broken(source)


def test_an_alias_made_in_an_earlier_cell_counts():
    assert broken("from torch.nn import functional as G", "def cross_entropy(z, y, reduction='mean'):\n    return G.cross_entropy(z, y)") \
        == {"cross_entropy": "torch.nn.functional.cross_entropy"}


def test_the_use_names_its_cell_and_line():
    (breach,) = source_breaches(notebook(HONEST_GRAD, "import torch.nn.functional as F\n\ndef cross_entropy(z, y):\n"
                                                      "    return F.cross_entropy(z, y)"), [a4_rule()], CHECKS)
    assert breach == Breach(a4_rule(), "cross_entropy", "torch.nn.functional.cross_entropy", Layer.SOURCE, Use(
        "torch.nn.functional.cross_entropy", 3, 4))
    assert "cell 3, line 4" in breach.note() and a4_rule().says in breach.note()
    assert breach.again() == "not graded: cross_entropy breaks the assignment's rule, as above"


HONEST = '''
import torch.nn.functional as F  # F.softmax is allowed; F.cross_entropy is not, nor torch.logsumexp

def cross_entropy(logits, targets, reduction="mean"):
    """Like F.cross_entropy, without F.log_softmax or torch.logsumexp: a stable log-sum-exp by hand."""
    m = logits.max(dim=1, keepdim=True).values.detach()  # not torch.logsumexp(logits, 1)
    lse = m.squeeze(1) + torch.log(torch.exp(logits - m).sum(dim=1))
    losses = lse - logits.gather(1, targets.unsqueeze(1)).squeeze(1)
    note = "compare with torch.nn.functional.cross_entropy"
    return {"none": losses, "sum": losses.sum()}.get(reduction, losses.mean())
'''


def test_an_honest_solution_that_names_the_functions_in_comments_docstrings_and_strings_passes():
    assert broken(HONEST, HONEST_GRAD) == {}


def test_a_top_level_comparison_with_the_library_charges_no_function():
    assert broken(HONEST, HONEST_GRAD, "print(cross_entropy(z, y), F.cross_entropy(z, y))") == {}


def test_magics_and_cells_that_do_not_parse_are_read_as_the_kernel_reads_them():
    assert broken("%time x = 1\ndef cross_entropy(z, y):\n    return torch.logsumexp(z, 1).mean()",
                  "def oops(:") == {"cross_entropy": "torch.logsumexp"}


def test_a_name_nested_too_deep_to_read_does_not_stop_the_grader():
    deep = "import torch.nn.functional as F\nx = F" + ".a" * 5000
    assert broken(deep, "def cross_entropy(z, y):\n    return torch.logsumexp(z, 1).mean()") \
        == {"cross_entropy": "torch.logsumexp"}


def test_a_rule_binds_only_the_functions_it_names():
    rule = Rule.of({"rule": "r", "says": "no logsumexp", "forbidden": ["torch.logsumexp"], "functions": ["cross_entropy_grad"]})
    source = "def cross_entropy(z, y):\n    return torch.logsumexp(z, 1)\ndef cross_entropy_grad(z, y):\n    return torch.logsumexp(z, 1)"
    assert [b.function for b in source_breaches(notebook(source), [rule], CHECKS)] == ["cross_entropy_grad"]


def test_a_refusal_record_received_during_a_case_is_that_functions_breach():
    rule = a4_rule()
    assert run_breach([rule], "cross_entropy", []) is None
    breach = run_breach([rule], "cross_entropy", [{"rule": rule.rule, "name": "torch.ops.aten._log_softmax"}])
    assert breach == Breach(rule, "cross_entropy", "torch.ops.aten._log_softmax", Layer.RUN)
    assert "called torch.ops.aten._log_softmax while it ran" in breach.note()
    unbound = Rule.of({"rule": "r", "says": "s", "forbidden": ["torch.logsumexp"], "functions": ["other"]})
    assert run_breach([unbound], "cross_entropy", [{"name": "torch.logsumexp"}]) is None


def test_a_rule_is_refused_by_the_format_when_it_is_malformed():
    data = json.loads(references_path(A4).read_text())
    for change, words in [(lambda r: r.pop("says"), "'says' is a required property"),
                          (lambda r: r.update(forbidden=["cross_entropy"]), "does not match"),
                          (lambda r: r.update(ops=["_log_softmax"]), "does not match"),
                          (lambda r: r.update(functions=["cross_entropy_typo"]), "no case calls 'cross_entropy_typo'")]:
        changed = copy.deepcopy(data)
        change(changed["rules"][0])
        assert any(words in line for line in problems(changed)), (words, problems(changed))
