"""Kernel-side half of an assignment's rules (``course.rules``): the forbidden functions made to fail.

Its *source text* is sent to the student's kernel and run there before the first cell of the
submission (``course.rules.guard_code``), so it imports nothing from ``course``.  ``install`` makes
each rule's names unusable, under every spelling it can reach:

* every dotted name of ``forbidden`` (``torch.nn.functional.cross_entropy``, ``torch.Tensor.log_softmax``)
  is replaced, in the module or class that holds it, by a function that refuses.  The module
  object is the one every import, ``getattr``, ``importlib.import_module`` and ``__dict__`` reach,
  so those spellings meet the refusal too;
* every PyTorch operator of ``ops`` (``aten::_log_softmax``) gets, through ``torch.library``, a
  kernel for the CPU and CUDA dispatch keys that refuses.  That covers the spellings no
  attribute reaches: ``torch._C``'s functions, ``torch.ops.aten``, ``Tensor`` methods of the C
  base class, a module reloaded from its source, and every library function built on the
  operator (``nn.CrossEntropyLoss``, ``torch.special.logsumexp``).

A refusal raises ``ForbiddenCallError`` and, first, displays a record under ``FORBIDDEN_MIME``.
That message leaves the kernel at once, and the grader keeps it in its own process
(``course.execute.LimitedOutputClient``): a submission that catches the error has still been seen.
A record the submission forges only fails the submission itself.  What this cannot stop is code
that takes the guard apart from inside the same process (the registration found through ``gc``
and destroyed), nor an operator ``torch.compile`` generates code for (its kernels are not the
dispatcher's CPU and CUDA ones): the grader's reading of the source (``course.rules.source_breaches``)
is the other layer, and such code reads as what it is.
"""
from __future__ import annotations

# True for the type checker only: this source runs in the student's kernel, where it imports nothing for types
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

FORBIDDEN_MIME = "application/vnd.course.forbidden-call+json"


class ForbiddenCallError(RuntimeError):
    """A forbidden function or operator was called."""


def install(rules: list[dict[str, Any]]) -> None:
    """Make the names and operators of ``rules`` (the references file's form, as JSON data) refuse."""
    import importlib
    import json
    import warnings

    from IPython import get_ipython

    # Bound now, before any student code runs: a later patch of IPython.display does not silence it.
    publish = get_ipython().display_pub.publish
    dumps = json.dumps
    keep: list[object] = []  # the torch.library registrations live as long as this list: the refusals' closure holds it

    def refusal(rule: dict[str, Any], name: str) -> Callable[..., NoReturn]:
        message = f"{name} may not be used in this assignment: {rule['says']}"

        def refuse(*args: Any, **kwargs: Any) -> NoReturn:
            publish({FORBIDDEN_MIME: dumps({"rule": rule["rule"], "name": name})})
            raise ForbiddenCallError(message)

        refuse.__name__ = refuse.__qualname__ = name.rsplit(".", 1)[-1].split("::")[-1]
        refuse.keep = keep  # type: ignore[attr-defined]  # the function's own attribute: it keeps the list alive
        return refuse

    def holder(path: str) -> Any:
        """The module or class named by ``path``, importing modules as needed; None if there is none."""
        parts = path.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                found: Any = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for part in parts[cut:]:
                found = getattr(found, part, None)
            return found
        return None

    for rule in rules:
        for name in rule["forbidden"]:
            path, attribute = name.rsplit(".", 1)
            owner = holder(path)
            if owner is not None and hasattr(owner, attribute):  # a library the kernel lacks cannot be called
                setattr(owner, attribute, refusal(rule, name))
        if rule.get("ops"):
            import torch

            library = torch.library.Library("aten", "IMPL")
            keep.append(library)
            with warnings.catch_warnings():  # "overriding a previously registered kernel": that is the point
                warnings.simplefilter("ignore")
                for op in rule["ops"]:
                    namespace, name = op.split("::")
                    if namespace != "aten":
                        raise ValueError(f"only aten operators can be refused, not {op}")
                    for overload in getattr(torch.ops.aten, name).overloads():
                        qualified = name if overload == "default" else f"{name}.{overload}"
                        for key in ("CPU", "CUDA"):
                            library.impl(qualified, refusal(rule, f"torch.ops.aten.{qualified}"), key)
