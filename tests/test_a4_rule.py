"""a4's rule (no F.cross_entropy, F.log_softmax, torch.logsumexp, nn.CrossEntropyLoss), enforced through
`nbgrader autograde` and `course grade`, with real sandboxed kernels: a direct call, an alias, the function
reached through strings (getattr, importlib, __dict__, torch.ops), a call caught in a try, each fails the
function's cases with a note naming the rule; an honest solution that names them in comments and a
docstring keeps full marks.  The source layer alone is tested in tests/unit/test_rules.py."""
import pytest

from course.cases import load_rules
from grading_support import (copy_course, course_grade, environment, feedback_html, make_course, max_points, nbgrader,
                             replace_function, scores, solution_notebook, student_version)

A4 = "a4-torch-cross-entropy"
HONEST_BODY = '''
    m = logits.max(dim=1, keepdim=True).values.detach()
    lse = m.squeeze(1) + torch.log(torch.exp(logits - m).sum(dim=1))
    losses = lse - logits.gather(1, targets.unsqueeze(1)).squeeze(1)
    return {"none": losses, "sum": losses.sum()}.get(reduction, losses.mean())
'''
LIBRARY_GRAD = '''
def cross_entropy_grad(logits, targets):
    z = logits.detach().clone().requires_grad_(True)
    lse = getattr(torch, "logsum" + "exp")(z, dim=1)       # hidden from a reading of the source
    (lse - z.gather(1, targets.unsqueeze(1)).squeeze(1)).mean().backward()
    return z.grad
'''


def cross_entropy(body):
    return 'def cross_entropy(logits, targets, reduction="mean"):' + body


# student -> (the answer cells replaced, the checks that fail, words the feedback must contain)
SUBMISSIONS = {
    "direct": ({"cross_entropy": "import torch.nn.functional as F\n" + cross_entropy(
        "\n    return F.cross_entropy(logits, targets, reduction=reduction)")},
        ["test_cross_entropy"], "uses torch.nn.functional.cross_entropy (cell"),
    "alias": ({"cross_entropy": "from torch.nn import functional as G\n" + cross_entropy(
        "\n    return G.cross_entropy(logits, targets, reduction=reduction)")},
        ["test_cross_entropy"], "uses torch.nn.functional.cross_entropy (cell"),
    "getattr": ({"cross_entropy": cross_entropy(
        "\n    function = getattr(torch.nn.functional, 'cross' + '_entropy')"
        "\n    return function(logits, targets, reduction=reduction)")},
        ["test_cross_entropy"], "called torch.nn.functional.cross_entropy while it ran"),
    "importlib": ({"cross_entropy": "import importlib\n" + cross_entropy(
        "\n    module = importlib.import_module('torch.nn.' + 'functional')"
        "\n    losses = -module.__dict__['log_' + 'softmax'](logits, 1).gather(1, targets.unsqueeze(1)).squeeze(1)"
        "\n    return {'none': losses, 'sum': losses.sum()}.get(reduction, losses.mean())")},
        ["test_cross_entropy"], "called torch.nn.functional.log_softmax while it ran"),
    "operator-by-name": ({"cross_entropy": cross_entropy(
        "\n    log_softmax = getattr(torch.ops.aten, '_log_' + 'softmax')"
        "\n    losses = -log_softmax(logits, 1, False).gather(1, targets.unsqueeze(1)).squeeze(1)"
        "\n    return {'none': losses, 'sum': losses.sum()}.get(reduction, losses.mean())")},
        ["test_cross_entropy"], "called torch.ops.aten._log_softmax while it ran"),
    # right values in the end, but it called the library first: the record of the call fails it
    "caught": ({"cross_entropy": "import torch.nn.functional as F\n" + cross_entropy(
        "\n    try:"
        "\n        return vars(F)['cross' + '_entropy'](logits, targets, reduction=reduction)"
        "\n    except Exception:"
        "\n        pass" + HONEST_BODY)},
        ["test_cross_entropy"], "called torch.nn.functional.cross_entropy while it ran"),
    "gradient-through-strings": ({"cross_entropy_grad": LIBRARY_GRAD}, ["test_cross_entropy_grad"],
                                 "called torch.logsumexp while it ran"),
    "honest-mentions": ({"cross_entropy": "import torch.nn.functional as F  # F.cross_entropy is not allowed; F.softmax is\n"
                         + cross_entropy('\n    """Like F.cross_entropy, without F.log_softmax or torch.logsumexp."""'
                                         '\n    # not torch.logsumexp(logits, 1): a log-sum-exp by hand' + HONEST_BODY)},
                        [], None),
}


def notebook_of(replaced):
    notebook = student_version(solution_notebook(A4))
    for grade_id, source in replaced.items():
        notebook = replace_function(notebook, grade_id, source)
    return notebook


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The same submissions graded by serial `nbgrader autograde` and by `course grade` with two workers."""
    submissions = {student: notebook_of(replaced) for student, (replaced, _, _) in SUBMISSIONS.items()}
    template = make_course(tmp_path_factory.mktemp("a4-rule") / "template" / "course", assignment=A4,
                           submissions={**submissions, "reference": notebook_of({})})
    serial = copy_course(template, template.parent.parent / "serial" / "course")
    autograde = nbgrader(serial, "autograde", A4, check=False, timeout=1800, env=environment())
    parallel = copy_course(template, template.parent.parent / "parallel" / "course")
    course_grade(parallel, A4, "--workers", "2")
    nbgrader(serial, "generate_feedback", A4, check=False)
    return dict(serial=serial, parallel=parallel, log=autograde.stdout + autograde.stderr)


def test_each_layer_fails_the_function_that_broke_the_rule_and_nothing_else(graded):
    points = max_points(A4)
    want = {student: {g: (0 if g in failed else p) for g, p in points.items()}
            for student, (_, failed, _) in SUBMISSIONS.items()}
    want["reference"] = dict(points)
    for course in ("serial", "parallel"):
        got = {s: {g: v for g, v in cells.items() if g != "_total"} for s, cells in scores(graded[course], A4).items()}
        assert got == want, (course, graded["log"][-4000:])


def test_the_feedback_names_the_rule_and_how_it_was_broken(graded):
    (rule,) = load_rules(A4)
    for student, (_, failed, words) in SUBMISSIONS.items():
        if not failed:
            continue
        for course in ("serial", "parallel"):
            feedback = feedback_html(graded[course], student, A4)
            assert rule.says in feedback and words in feedback, (course, student)
