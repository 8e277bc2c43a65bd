"""The hidden-check case: its format, defined once as a JSON Schema, and the form of stored arrays.

``grader_tests/references/<assignment>.json`` (written by ``grader_tests/make_references.py``)
holds ``{"assignment": id, "checks": {grade_id: [case, ...]}}``.  A case names the function to
call, its hidden inputs, the float64 reference and its tolerance, and what the feedback may say:
the outputs of known mistakes, hints for NaN and infinities, the case's plain-words name.  A
parity case is a template instead: ``course.parity`` draws its inputs and references on the
grading machine's device at every run.

The file is checked against ``REFERENCES_SCHEMA`` when the checks are loaded, before any
submission is graded: a case the judge could not read is the instructor's error, named by file,
check and case, never a student's failure half-way through a run.  Arrays are stored as
``{"data": [...], "dtype": "float64" | "int64", "shape": [...]}``, NaN and infinities as the
JSON constants Python writes; on the way to and from the kernel they travel as base64 float64
bytes (``course.harness``).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import numpy as np

from . import ROOT
from .errors import CourseError

if TYPE_CHECKING:
    from collections.abc import Iterator


class HiddenCheckError(CourseError):
    """The hidden checks themselves are broken: an instructor problem, not a student's."""


def stored_array(value: object) -> dict[str, Any]:
    """An array (or number) as a references file stores it: integers as int64, everything else float64."""
    array = np.asarray(value)
    dtype = "int64" if array.dtype.kind in "iub" else "float64"
    array = array.astype(dtype)
    return {"data": array.ravel().tolist(), "dtype": dtype, "shape": list(array.shape)}


def array_from_reference(value: dict[str, Any]) -> np.ndarray:
    return np.asarray(value["data"], dtype=value["dtype"]).reshape(value["shape"])


TOLERANCE = {"type": "number", "minimum": 0}
TEXT = {"type": "string", "minLength": 1}
WORDS = {"type": "array", "items": {"type": "string"}}

REFERENCES_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["assignment", "checks"],
    "additionalProperties": False,
    "properties": {
        "assignment": TEXT,
        "rules": {
            "description": "rules of the assignment that the grader enforces (course.rules); the file may have none",
            "type": "array", "items": {"$ref": "#/$defs/rule"},
        },
        "checks": {
            "description": "each graded test cell's grade id, and the cases the grader runs for it",
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/stored_case"}},
        },
    },
    "$defs": {
        "rule": {
            "description": ("names a submission must not use: a use found in the source, or a call made while it runs, "
                            "fails every case of the function that used it (course.rules)"),
            "type": "object",
            "required": ["rule", "says", "forbidden"],
            "additionalProperties": False,
            "properties": {
                "rule": {**TEXT, "description": "the rule's id"},
                "says": {**TEXT, "description": "the rule in the assignment's words, quoted in the feedback"},
                "forbidden": {"type": "array", "minItems": 1, "uniqueItems": True,
                              "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*([.][A-Za-z_][A-Za-z0-9_]*)+$"},
                              "description": ("dotted names (module.attribute...) of the functions and classes forbidden; "
                                              "a name under torch.Tensor forbids that method on any value")},
                "ops": {"type": "array", "uniqueItems": True,
                        "items": {"type": "string", "pattern": "^[a-z_][a-z0-9_]*::[A-Za-z_][A-Za-z0-9_]*$"},
                        "description": ("PyTorch operators (aten::name) made to fail in the kernel under every spelling "
                                        "(torch.ops, torch._C, a reloaded module): the operators the forbidden names run")},
                "functions": {"type": "array", "minItems": 1, "items": TEXT,
                              "description": "the student's functions bound by the rule; absent: every function a case calls"},
            },
        },
        "array": {
            "description": "numbers of one dtype, row-major; NaN and infinities as JSON's NaN, Infinity, -Infinity",
            "type": "object",
            "required": ["data", "dtype", "shape"],
            "additionalProperties": False,
            "properties": {
                "data": {"type": "array", "items": {"type": "number"}},
                "dtype": {"enum": ["float64", "int64"]},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            },
            "sizeMatchesShape": True,
        },
        "input": {
            "description": ("an input: a number, string, boolean or null, a stored array, a list of inputs, "
                            "or a quadratic_gradient, bigram_indices or generate object"),
            "anyOf": [
                {"type": ["number", "string", "boolean", "null"]},
                {"$ref": "#/$defs/array"},
                {"type": "array", "items": {"$ref": "#/$defs/input"}},
                {"description": "the gradient function of sum(curvature * (x - minimum)**2 / 2), built in the kernel",
                 "type": "object", "required": ["quadratic_gradient"], "additionalProperties": False,
                 "properties": {"quadratic_gradient": {
                     "type": "object", "required": ["curvature", "minimum"], "additionalProperties": False,
                     "properties": {"curvature": {"$ref": "#/$defs/numbers"}, "minimum": {"$ref": "#/$defs/numbers"}}}}},
                {"description": "the current (part 0) or next (part 1) character index of every bigram of the words",
                 "type": "object", "required": ["bigram_indices"], "additionalProperties": False,
                 "properties": {"bigram_indices": {
                     "type": "object", "required": ["words", "part"], "additionalProperties": False,
                     "properties": {"words": WORDS, "part": {"enum": [0, 1]}}}}},
                {"description": "a tensor drawn in the kernel from a seed (parity cases, made at grading time)",
                 "type": "object", "required": ["generate"], "additionalProperties": False,
                 "properties": {"generate": {
                     "type": "object", "required": ["kind", "shape", "seed"], "additionalProperties": False,
                     "properties": {"kind": {"enum": ["normal", "randint"]},
                                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                                    "seed": {"type": "integer"}, "dtype": {"enum": ["float32", "float64"]},
                                    "scale": {"type": "number"}, "high": {"type": "integer", "minimum": 1}}}}},
            ],
        },
        "numbers": {"description": "a number or a (nested) list of numbers", "anyOf": [{"type": "number"}, {"type": "array", "items": {"$ref": "#/$defs/numbers"}}]},
        "stored_case": {
            "description": "a parity template, or a case judged as it is stored",
            "if": {"type": "object", "required": ["parity"]},
            "then": {"$ref": "#/$defs/parity_template"},
            "else": {"$ref": "#/$defs/case"},
        },
        "parity_template": {
            "description": "cross_entropy against F.cross_entropy on the grading device; course.parity makes the case",
            "type": "object",
            "required": ["case", "function", "about", "parity", "reduction", "grad"],
            "additionalProperties": False,
            "properties": {
                "case": TEXT, "function": TEXT, "about": TEXT,
                "parity": {"const": True},
                "reduction": {"enum": ["none", "mean", "sum"]},
                "grad": {"type": "boolean"},
                "batch": {"type": ["integer", "null"], "minimum": 1},
                "nan_hint": TEXT, "inf_hint": TEXT, "wrong_hint": TEXT,
            },
        },
        "case": {
            "description": "one call of the student's function (or a chain of calls) and what its result must be",
            "type": "object",
            "required": ["case", "function", "args", "expected", "rtol", "atol"],
            "additionalProperties": False,
            "properties": {
                "case": {**TEXT, "description": "the case's id; a reply names it"},
                "function": TEXT,
                "about": {**TEXT, "description": "the case in the feedback's words; never a hidden input"},
                "args": {"type": "array", "items": {"$ref": "#/$defs/input"}},
                "kwargs": {"type": "object", "additionalProperties": {"$ref": "#/$defs/input"}},
                "torch": {"type": "boolean", "description": "arrays reach the function as torch tensors"},
                "chain": {
                    "description": "several calls: each step's new arguments by position, and which outputs feed which arguments",
                    "type": "object", "required": ["steps", "feed"], "additionalProperties": False,
                    "properties": {
                        "steps": {"type": "array", "minItems": 1, "items": {
                            "type": "object", "propertyNames": {"pattern": "^[0-9]+$"},
                            "additionalProperties": {"$ref": "#/$defs/input"}}},
                        "feed": {"type": "array", "items": {
                            "type": "array", "prefixItems": [{"type": "integer", "minimum": 0}] * 2,
                            "minItems": 2, "maxItems": 2}},
                    },
                },
                "view": {"type": "string", "pattern": "^(item:[0-9]+|lengths|concatenate|coverage:[0-9]+)$",
                         "description": "the part of the result judged"},
                "measure": {
                    "description": "what the grader computes from the result before comparing it",
                    "type": "object", "required": ["kind", "words"], "additionalProperties": False,
                    "properties": {"kind": {"enum": ["bigram_nll"]}, "words": WORDS},
                },
                "expected": {"description": "a stored array, or {\"strings\": [...]}", "anyOf": [
                    {"$ref": "#/$defs/array"},
                    {"type": "object", "required": ["strings"], "additionalProperties": False,
                     "properties": {"strings": WORDS}}]},
                "rtol": TOLERANCE,
                "atol": TOLERANCE,
                "integer": {"type": "boolean", "description": "the result must have an integer dtype"},
                "also_expected": {"type": "array", "items": {
                    "type": "object", "required": ["value", "label", "rtol", "atol"], "additionalProperties": False,
                    "properties": {"value": {"$ref": "#/$defs/array"}, "label": TEXT, "rtol": TOLERANCE, "atol": TOLERANCE}}},
                "grad": {"type": "boolean", "description": "the loss's gradient with respect to the first argument is judged too"},
                "expected_grad": {"$ref": "#/$defs/array"},
                "grad_probe": {"$ref": "#/$defs/input"},
                "grad_tolerance": {"type": "object", "required": ["rtol", "atol"], "additionalProperties": False,
                                   "properties": {"rtol": TOLERANCE, "atol": TOLERANCE}},
                "variants": {"type": "array", "items": {
                    "type": "object", "required": ["message", "value"], "additionalProperties": False,
                    "properties": {
                        "message": TEXT, "value": {"$ref": "#/$defs/array"},
                        "first": {"type": "integer", "minimum": 1, "description":
                                  "the value is the mistake's first entries only: a mistaken run whose later "
                                  "steps depend on the CPU (a chaotic one) is recognised by its first steps"}}}},
                "batch": {"type": ["integer", "null"], "minimum": 1},
                "nan_hint": TEXT, "inf_hint": TEXT, "wrong_hint": TEXT, "shape_hint": TEXT, "mismatch_hint": TEXT,
            },
            "if": {"required": ["grad"], "properties": {"grad": {"const": True}}},
            "then": {"required": ["expected_grad"]},
        },
    },
}


def _size_matches_shape(validator: Any, wanted: bool, instance: object,
                        schema: dict[str, Any]) -> Iterator[jsonschema.ValidationError]:
    data, shape = (instance.get("data"), instance.get("shape")) if isinstance(instance, dict) else (None, None)
    if wanted and isinstance(data, list) and isinstance(shape, list) and all(isinstance(n, int) for n in shape):
        if len(data) != math.prod(shape):
            yield jsonschema.ValidationError(f"{len(data)} numbers do not fill the shape {shape}")


# JSON Schema counts 2.0 as an integer; a shape or a seed must be a true int (bool is not one either).
ReferencesValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"sizeMatchesShape": _size_matches_shape},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda checker, value: isinstance(value, int) and not isinstance(value, bool)))


def problems(data: Any) -> list[str]:
    """Every way ``data`` (a parsed references file) breaks the format, as readable lines, most relevant first."""
    errors = sorted(ReferencesValidator(REFERENCES_SCHEMA).iter_errors(data), key=jsonschema.exceptions.relevance)
    lines = [_describe(data, error) for error in errors]
    lines += [f"case id {name!r} is used by {count} cases: ids must be unique"
              for name, count in _duplicate_ids(data).items()]
    if not lines:  # a rule bound to a function no case calls would bind nothing: a typo, most likely
        called = {case["function"] for cases in data["checks"].values() for case in cases}
        lines += [f"rule {rule['rule']!r}: no case calls {name!r}"
                  for rule in data.get("rules", []) for name in rule.get("functions", []) if name not in called]
        lines += _dead_first_steps(data)
    return lines


def _dead_first_steps(data: dict[str, Any]) -> list[str]:
    """A variant of a mistake's first entries that could never be recognised: ``first`` must be its own length,
    and the expected value a list at least that long (the judge compares the reply's first entries)."""
    found = []
    for grade_id, cases in data["checks"].items():
        for index, case in enumerate(cases):
            for number, variant in enumerate(case.get("variants", [])):
                if "first" not in variant:
                    continue
                where = f"check {grade_id!r}, case {index} ({case['case']!r}): variants[{number}]"
                if variant["value"]["shape"] != [variant["first"]]:
                    found.append(f"{where}: first is {variant['first']}, but the value has shape {variant['value']['shape']}")
                elif len(case["expected"].get("shape", [])) != 1 or case["expected"]["shape"][0] < variant["first"]:
                    found.append(f"{where}: first is {variant['first']}, but the expected value has shape "
                                 f"{case['expected'].get('shape')}")
    return found


def _meant(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """The error to report.  A value that fits none of an ``anyOf``'s forms was most likely meant as the one
    whose type and required keys it has: report what is wrong inside that one, else say which forms there are."""
    while error.validator == "anyOf":
        forms: dict[object, list[jsonschema.ValidationError]] = {}
        for inner in error.context:
            forms.setdefault(inner.relative_schema_path[0], []).append(inner)
        meant = [inner for inner in forms.values()
                 if not any(e.validator in ("type", "required") and not e.relative_path for e in inner)]
        if len(meant) != 1:
            return jsonschema.ValidationError(f"not {error.schema.get('description', 'of a known form')}",
                                             path=list(error.absolute_path))
        error = jsonschema.exceptions.best_match(meant[0])
    return error


def _describe(data: Any, error: jsonschema.ValidationError) -> str:
    error = _meant(error)
    path = list(error.absolute_path)
    if len(path) >= 3 and path[0] == "checks":
        grade_id, index, inside = path[1], path[2], path[3:]
        case = data["checks"][grade_id][index]
        name = case.get("case") if isinstance(case, dict) else None
        where = f"check {grade_id!r}, case {index}" + (f" ({name!r})" if isinstance(name, str) else "")
    else:
        where, inside = "the file", path
    at = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in inside).lstrip(".")
    message = error.message if len(error.message) <= 200 else error.message[:200] + "..."  # it may quote a whole array
    return f"{where}: {at + ': ' if at else ''}{message}"


def _duplicate_ids(data: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    checks = data.get("checks") if isinstance(data, dict) else None
    for cases in (checks.values() if isinstance(checks, dict) else []):
        for case in (cases if isinstance(cases, list) else []):
            if isinstance(case, dict) and isinstance(case.get("case"), str):
                counts[case["case"]] = counts.get(case["case"], 0) + 1
    return {name: count for name, count in counts.items() if count > 1}


def references_path(assignment: str, hidden_checks: str | Path = ROOT / "grader_tests") -> Path:
    """Where an assignment's hidden checks are, in the hidden checks folder (``c.SandboxedExecute.hidden_checks_directory``)."""
    return Path(hidden_checks) / "references" / f"{assignment}.json"


def _load_references(assignment: str, hidden_checks: str | Path) -> dict[str, Any]:
    """The parsed references file of an assignment, checked against the schema."""
    path = references_path(assignment, hidden_checks)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise HiddenCheckError(f"{path}: no hidden checks for assignment {assignment!r}") from None
    except json.JSONDecodeError as error:
        raise HiddenCheckError(f"{path}: not valid JSON ({error})") from None
    found = problems(data)
    if not found and data["assignment"] != assignment:
        found = [f"the file: assignment: {data['assignment']!r} is not {assignment!r}, the file's name"]
    if found:
        more = f" (and {len(found) - 1} more problem{'s' * (len(found) > 2)})" if len(found) > 1 else ""
        raise HiddenCheckError(f"{path}: {found[0]}{more}; fix the file or rerun grader_tests/make_references.py")
    return data


def load_hidden_checks(assignment: str,
                       hidden_checks: str | Path = ROOT / "grader_tests") -> dict[str, list[dict[str, Any]]]:
    """``{grade_id: [case, ...]}`` for one assignment, every case checked against the schema."""
    return _load_references(assignment, hidden_checks)["checks"]


@dataclass(frozen=True)
class Rule:
    """A rule of an assignment (``"rules"`` in its references file): names a submission must not use.

    ``course.rules`` enforces it twice: in the grader's process on the submitted source, and in the
    kernel, where the forbidden names and ``ops`` fail from before the first cell runs."""

    rule: str
    says: str
    forbidden: tuple[str, ...]
    ops: tuple[str, ...] = ()
    functions: tuple[str, ...] | None = None  # None: every function a case of the assignment calls

    @classmethod
    def of(cls, data: dict[str, Any]) -> Rule:
        """From the references file's form."""
        functions = data.get("functions")
        return cls(data["rule"], data["says"], tuple(data["forbidden"]), tuple(data.get("ops", ())),
                   None if functions is None else tuple(functions))

    def binds(self, function: str) -> bool:
        return self.functions is None or function in self.functions


def load_rules(assignment: str, hidden_checks: str | Path = ROOT / "grader_tests") -> tuple[Rule, ...]:
    """The assignment's rules (``Rule``), checked against the schema with its cases."""
    return tuple(Rule.of(rule) for rule in _load_references(assignment, hidden_checks).get("rules", []))
