"""An assignment's rules, enforced in two layers; either one fails the cases of the function that broke it.

A rule (``course.cases.Rule``, ``"rules"`` in a references file) names functions a submission must
not use.  Code can hide a call from any reading of it, and a reading sees what no single run
does, so the grader does both:

1. *the source*, read here in the grader's process before the kernel starts
   (``source_breaches``): the syntax tree of every code cell, every
   name resolved through the imports and assignments made before it (``import
   torch.nn.functional as F``, ``from torch.nn import functional as G``, ``from torch import
   logsumexp as l``, ``ce = F.cross_entropy``), and the spellings through constant strings
   (``getattr(F, "cross_entropy")``, ``importlib.import_module("torch.nn.functional")``,
   ``F.__dict__["cross_entropy"]``, ``sys.modules[...]``).  A use counts against a bound function
   if it is inside it, or inside a top-level function, class or assignment the function refers
   to (directly or through others).  A use at top level (a comparison of one's own result with
   the library's) binds nothing here; the run-time layer still refuses the call.  Comments and
   docstrings are not code: an honest solution that names the function there passes.
   Names are resolved in one scope, the notebook's: a parameter that shadows an alias is read as
   the alias.
2. *the run*: ``guard_code`` is run in the kernel before the first cell (``course.guard``):
   the forbidden names and operators refuse, and each refusal leaves a record the grader keeps.
   A record that arrives while a function's case runs is that function's breach.

The verdicts: ``Breach.note`` is the message every case of the function gets.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cases import Rule
from .guard import FORBIDDEN_MIME  # noqa: F401 (the record's type, for the grader's client)

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

# Other spellings of the same modules, for the source layer: what a name resolved through them means.
SAME_MODULE = {
    "torch.nn.modules.loss.F": "torch.nn.functional",
    "torch.nn.modules.activation.F": "torch.nn.functional",
    "torch.nn.modules.loss": "torch.nn",
    "torch.nn.modules": "torch.nn",
    "torch._C._VariableFunctions": "torch",
}
TENSOR = "torch.Tensor"  # a forbidden name under it is a method: forbidden on any value the source cannot name


class Layer(Enum):
    """Which layer saw the breach."""

    SOURCE = "source"  # the submitted source uses a forbidden name
    RUN = "run"  # the kernel refused a call while the function's case ran


@dataclass(frozen=True)
class Use:
    """One use of a forbidden name in the source."""

    name: str  # the forbidden name it resolves to
    cell: int  # 1-based, as the notebook shows it
    line: int

    def where(self) -> str:
        return f"cell {self.cell}, line {self.line}"


@dataclass(frozen=True)
class Breach:
    """A function that broke a rule: every case of it fails with ``note()``."""

    rule: Rule
    function: str
    name: str  # the forbidden name used or called
    layer: Layer
    use: Use | None = None  # where in the source (the source layer)

    def note(self) -> str:
        how = (f"uses {self.name} ({self.use.where()})"  # type: ignore[union-attr]  # a source breach has its use
               if self.layer is Layer.SOURCE else f"called {self.name} while it ran")
        return f"breaks the assignment's rule ({self.rule.says}): {self.function} {how}"

    def again(self) -> str:
        """The note for the function's other cases, after ``note()`` was said."""
        return f"not graded: {self.function} breaks the assignment's rule, as above"


def bound_functions(rule: Rule, checks: Mapping[str, Iterable[Mapping[str, Any]]]) -> list[str]:
    """The functions that ``rule`` binds among those the cases of ``checks`` call, in order."""
    called = dict.fromkeys(case["function"] for cases in checks.values() for case in cases)
    return [function for function in called if rule.binds(function)]


# ---- the source layer -------------------------------------------------------------------------------

def source_breaches(cells: Iterable[Mapping[str, Any]], rules: Sequence[Rule],
                    checks: Mapping[str, Iterable[Mapping[str, Any]]]) -> list[Breach]:
    """Each bound function whose source uses a forbidden name, once per rule (the first use found).

    ``cells``: the notebook's cells (dicts with ``cell_type``, ``source``, ``metadata``)."""
    if not rules:
        return []
    trees = list(_trees(cells))
    breaches = []
    for rule in rules:
        reading = _Reading(rule)
        for number, tree in trees:
            reading.read(number, tree)
        for function in bound_functions(rule, checks):
            use = reading.first_use_reached_from(function)
            if use is not None:
                breaches.append(Breach(rule, function, use.name, Layer.SOURCE, use))
    return breaches


def _trees(cells: Iterable[Mapping[str, Any]]) -> Iterator[tuple[int, ast.Module]]:
    """(1-based cell number, syntax tree) of every code cell.  The instructor's cells are read too (a cell's
    metadata is no proof of who wrote it); their top-level calls bind no function.  IPython syntax
    (magics, ``!``) is first made Python, as the kernel does; a cell that still does not parse cannot run
    either."""
    from IPython.core.inputtransformer2 import TransformerManager

    transformer = TransformerManager()
    for number, cell in enumerate(cells, start=1):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        try:
            yield number, ast.parse(transformer.transform_cell(source))
        except (SyntaxError, ValueError, RecursionError):
            continue


def _constant(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


class _Reading:
    """The notebook read top to bottom for one rule: what each name refers to, which top-level
    definition refers to which names, and where each uses a forbidden name."""

    def __init__(self, rule: Rule) -> None:
        self.forbidden = set(rule.forbidden)
        self.ops = set(rule.ops)
        self.methods = {name[len(TENSOR) + 1:] for name in rule.forbidden if name.startswith(TENSOR + ".")}
        self.paths = dict(BUILTINS)  # name -> the dotted path it refers to (a module or an object in one)
        self.refers: dict[str, set[str]] = {}  # top-level name -> the names its definitions load
        self.uses: dict[str, list[Use]] = {}  # top-level name -> its uses of forbidden names

    def read(self, number: int, tree: ast.Module) -> None:
        for statement in tree.body:
            try:
                self._statement(number, statement)
            except RecursionError:  # a name nested thousands deep: not read here; the run-time layer still holds
                continue

    def _statement(self, number: int, statement: ast.stmt) -> None:
        if isinstance(statement, (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try)):
            # Definitions inside a top-level block are top-level definitions; its header binds nothing.
            for field in ("body", "orelse", "finalbody"):
                for inner in getattr(statement, field, []):
                    self._statement(number, inner)
            for handler in getattr(statement, "handlers", []):
                for inner in handler.body:
                    self._statement(number, inner)
            return
        owners = _bound_names(statement)
        uses: list[Use] = []
        for node in _walk_in_order(statement):
            self._bind(node)
            name = self._forbidden_use(node)
            if name is not None:
                uses.append(Use(name, number, getattr(node, "lineno", 0)))
        loaded = {n.id for n in ast.walk(statement) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        for owner in owners:
            self.refers.setdefault(owner, set()).update(loaded)
            self.uses.setdefault(owner, []).extend(uses)

    def _bind(self, node: ast.AST) -> None:
        """Record what the names an import or an assignment binds now refer to."""
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    self.paths[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    self.paths[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if alias.name == "*":
                    for name in self.forbidden:
                        holder, _, leaf = name.rpartition(".")
                        if self._canonical(holder) == self._canonical(node.module):
                            self.paths[leaf] = name
                else:
                    self.paths[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            path = self._resolve(node.value)
            for target in targets:
                if isinstance(target, ast.Name):
                    if path is None:
                        self.paths.pop(target.id, None)  # rebound to something else
                    else:
                        self.paths[target.id] = path

    def _resolve(self, node: ast.AST) -> str | None:
        """The dotted path an expression refers to, where the source says it; else None."""
        if isinstance(node, ast.Name):
            return self.paths.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self._resolve(node.value)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Subscript):  # X.__dict__["name"], vars(X)["name"], sys.modules["module"]
            key = _constant(node.slice)
            if key is None:
                return None
            if isinstance(node.value, ast.Attribute) and node.value.attr == "__dict__":
                base = self._resolve(node.value.value)
                return f"{base}.{key}" if base else None
            if isinstance(node.value, ast.Call) and self._resolve(node.value.func) == "builtins.vars" \
                    and len(node.value.args) == 1:
                base = self._resolve(node.value.args[0])
                return f"{base}.{key}" if base else None
            if self._resolve(node.value) == "sys.modules":
                return key
            return None
        if isinstance(node, ast.Call):
            function = self._resolve(node.func)
            first = _constant(node.args[0]) if node.args else None
            if function == "builtins.getattr" and len(node.args) >= 2:
                base, attribute = self._resolve(node.args[0]), _constant(node.args[1])
                return f"{base}.{attribute}" if base and attribute else None
            if function == "importlib.import_module" and first:
                return first
            if function == "builtins.__import__" and first:  # the package, or with a fromlist the module itself
                fromlist = node.args[3] if len(node.args) > 3 else next(
                    (k.value for k in node.keywords if k.arg == "fromlist"), None)
                empty = fromlist is None or (isinstance(fromlist, (ast.Tuple, ast.List)) and not fromlist.elts)
                return first.split(".")[0] if empty else first
        return None

    def _canonical(self, path: str) -> str:
        for other, same in SAME_MODULE.items():
            if path == other or path.startswith(other + "."):
                return same + path[len(other):]
        return path

    def _forbidden_use(self, node: ast.AST) -> str | None:
        """The forbidden name this node refers to, or None.  Only the outermost node of a dotted
        name counts (``torch.logsumexp``, not also ``torch``), so that a use is found once."""
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:  # from torch import logsumexp
            for alias in node.names:
                path: str | None = self._canonical(f"{node.module}.{alias.name}")
                if path in self.forbidden:
                    return path
            return None
        path = self._resolve(node) if isinstance(node, (ast.Name, ast.Attribute, ast.Subscript, ast.Call)) else None
        if path is not None:
            path = self._canonical(path)
            for name in self.forbidden:  # the name itself, or anything reached through it (its __wrapped__)
                if path == name or path.startswith(name + "."):
                    return name
            if path.startswith("torch.ops.aten."):  # an operator the rule refuses, any overload
                op = path[len("torch.ops.aten."):].split(".")[0]
                if f"aten::{op}" in self.ops:
                    return f"torch.ops.aten.{op}"
            return None
        # A method on a value the source cannot name (a tensor): x.log_softmax, getattr(x, "log_softmax").
        if isinstance(node, ast.Attribute) and node.attr in self.methods:
            return f"{TENSOR}.{node.attr}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                and len(node.args) >= 2 and _constant(node.args[1]) in self.methods:
            return f"{TENSOR}.{_constant(node.args[1])}"
        return None

    def first_use_reached_from(self, function: str) -> Use | None:
        """The first forbidden use in ``function``'s definitions or in a top-level definition it
        refers to, directly or through others; None if there is none."""
        seen, waiting = set(), [function]
        found: list[Use] = []
        while waiting:
            name = waiting.pop()
            if name in seen or name not in self.refers:
                continue
            seen.add(name)
            found.extend(self.uses.get(name, []))
            waiting.extend(self.refers[name])
        return min(found, key=lambda use: (use.cell, use.line)) if found else None


# Names Python gives every module without an import; the source can shadow them like any other name.
BUILTINS = {"getattr": "builtins.getattr", "vars": "builtins.vars", "__import__": "builtins.__import__"}


def _walk_in_order(statement: ast.AST) -> list[ast.AST]:
    """The nodes of a statement in source order (``ast.walk`` is breadth-first), so that a name is
    bound before a later line uses it."""
    return sorted(ast.walk(statement), key=lambda node: (getattr(node, "lineno", 0), getattr(node, "col_offset", 0)))


def _bound_names(statement: ast.stmt) -> list[str]:
    """The top-level names a statement defines or assigns: the owners of what it uses."""
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [statement.name]
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return [alias.asname or alias.name.split(".")[0] for alias in statement.names if alias.name != "*"]
    if isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return []


# ---- the run-time layer -----------------------------------------------------------------------------

def guard_code(rules: Iterable[Rule]) -> str:
    """The code the grader runs in the kernel before the submission's first cell: ``course.guard``'s
    ``install`` with the rules.  It defines nothing in the notebook's namespace."""
    source = Path(__file__).with_name("guard.py").read_text()
    data = [{"rule": r.rule, "says": r.says, "forbidden": list(r.forbidden), "ops": list(r.ops)} for r in rules]
    return (
        "def __course_rules():\n"
        "    __ns = {}\n"
        f"    exec(compile({source!r}, '<assignment rules>', 'exec'), __ns)\n"
        f"    __ns['install'](__import__('json').loads({json.dumps(data)!r}))\n"
        "__course_rules()\n"
        "del __course_rules\n"
    )


def run_breach(rules: Sequence[Rule], function: str, records: Iterable[object]) -> Breach | None:
    """The breach that refusal records (``{"name": ...}`` as the kernel sent them) received while a
    case of ``function`` ran make, or None.  A record may be forged by the submission; it can only
    fail the submission itself, so the first one a binding rule covers is taken as it is."""
    for record in records:
        name = str(record.get("name", "a forbidden function"))[:120] if isinstance(record, dict) else "a forbidden function"
        for rule in rules:
            if rule.binds(function) and (name in rule.forbidden or name.startswith("torch.ops.aten.")
                                         and f"aten::{name[len('torch.ops.aten.'):].split('.')[0]}" in rule.ops):
                return Breach(rule, function, name, Layer.RUN)
        binding = [rule for rule in rules if rule.binds(function)]
        if binding:  # a name no rule lists (forged): still a refusal record, under the first binding rule
            return Breach(binding[0], function, name, Layer.RUN)
    return None
