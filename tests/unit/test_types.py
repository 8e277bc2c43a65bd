"""``course/`` is typed: mypy passes on it at the strictness ``pyproject.toml`` states (``[tool.mypy]``), and every
public function and method says the type of each parameter and of what it returns.  No module is left out, and a new
module of ``course/`` is annotated from the start."""
import ast
import gc
import sys
import tomllib

from course import ROOT



def test_mypy_passes_on_the_course_package(tmp_path):
    """mypy as ``make unit`` runs it: the configuration of pyproject.toml, its cache in this test's own folder
    (nothing is left in the repository), every module analysed from scratch."""
    from mypy import api

    try:
        report, errors, status = api.run(["--config-file", str(ROOT / "pyproject.toml"),
                                          "--cache-dir", str(tmp_path / "mypy-cache"), str(ROOT / "course")])
    finally:
        # mypy 2.4 keeps its last build in a global (every module's syntax tree and types, some 500,000 objects,
        # 170 MB), which every later full garbage collection of this process would walk: let it go now
        state = getattr(sys.modules.get("mypy.modules_state"), "modules_state", None)
        if state is not None:
            state.modules, state.node_fixer = {}, None
            gc.collect()
    assert status == 0, f"mypy found problems in course/:\n{report}{errors}"


def test_no_course_module_is_left_out_of_the_type_check():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    ignored = [module for override in config.get("overrides", [])
               if override.get("ignore_errors") or override.get("follow_imports") == "skip"
               for module in override["module"] if module.startswith("course")]
    assert config["files"] == ["course"] and ignored == []


def unannotated(path):
    """``(line, name, what is missing)`` of every public function and method of a module (its name does not start
    with ``_``, ``__init__`` included; methods of public classes) that leaves a parameter or its return unannotated.
    ``self`` and ``cls`` need none."""
    found = []

    def visit(body, in_class):
        for node in body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                visit(node.body, True)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                    not node.name.startswith("_") or node.name == "__init__"):
                arguments = node.args
                parameters = arguments.posonlyargs + arguments.args + arguments.kwonlyargs
                parameters += [p for p in (arguments.vararg, arguments.kwarg) if p is not None]
                missing = [p.arg for index, p in enumerate(parameters) if p.annotation is None
                           and not (in_class and index == 0 and p.arg in ("self", "cls"))]
                missing += ["return"] if node.returns is None else []
                if missing:
                    found.append((node.lineno, node.name, missing))

    visit(ast.parse(path.read_text(), str(path)).body, False)
    return found


def test_every_public_function_is_annotated():
    modules = sorted((ROOT / "course").glob("*.py"))
    assert len(modules) > 30
    missing = [f"course/{path.name}:{line}: {name}: {', '.join(what)}"
               for path in modules for line, name, what in unannotated(path)]
    assert not missing, "public functions without annotations:\n" + "\n".join(missing)


def test_the_check_finds_what_is_missing(tmp_path):
    """The check itself: a parameter, a return, a method of a public class; not ``self``, nor a private helper."""
    module = tmp_path / "example.py"
    module.write_text("def f(x, y: int) -> int: ...\n"
                      "def g(x: int): ...\n"
                      "def _helper(x): ...\n"
                      "class Public:\n"
                      "    def __init__(self, a) -> None: ...\n"
                      "    def method(self, *args: int, **kwargs) -> None: ...\n"
                      "    @classmethod\n"
                      "    def of(cls) -> 'Public': ...\n"
                      "class _Private:\n"
                      "    def method(self, x): ...\n")
    assert unannotated(module) == [(1, "f", ["x"]), (2, "g", ["return"]), (5, "__init__", ["a"]),
                                   (6, "method", ["kwargs"])]
