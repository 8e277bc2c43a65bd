"""``course/`` as a pipeline: its modules import one another without a cycle, counting the imports inside
functions too (a lazy import that only hides a cycle still is one)."""
import ast
import graphlib

from course import ROOT


def course_imports():
    """{module: the course modules it imports, anywhere in its source}."""
    graph = {}
    for path in sorted((ROOT / "course").glob("*.py")):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                imported |= {node.module.split(".")[0]} if node.module else {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("course."):
                imported.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("course.")}
        graph[path.stem] = imported - {path.stem}
    return graph


def test_the_course_modules_import_one_another_without_a_cycle():
    graph = course_imports()
    assert {"grade", "execute", "notes", "late", "sanitize", "feedback", "plugins"} <= graph.keys()
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        raise AssertionError(f"an import cycle: {' -> '.join(error.args[1])}") from None
    # the notes are said by the late policy and rendered safely: late -> notes -> sanitize, never back
    assert order.index("sanitize") < order.index("notes") < order.index("late")


def test_every_module_is_in_the_readmes_module_table_and_the_package_docstring():
    """A newcomer reads ``course/`` through the README's table and ``course/__init__.py``: neither leaves a module out."""
    import re

    import course

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("`course/`, module by module"):readme.index("## The chapters")]
    modules = {path.stem for path in (ROOT / "course").glob("*.py")} - {"__init__"}
    assert not modules - set(re.findall(r"`(\w+)\.py`", table)), "not in the README's table"
    assert not modules - set(re.findall(r"``(\w+)``", course.__doc__)), "not in course/__init__.py"


def test_no_test_module_imports_another():
    """Test modules share helpers through helper modules (``tests/grading_support.py``, ``tests/attacks.py``, ...),
    never by importing one another: a test file is run, moved or split on its own."""
    test_modules = {path.stem for path in (ROOT / "tests").rglob("test_*.py")}
    found = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            found += [f"{path.relative_to(ROOT)} imports {name}" for name in names
                      if name.split(".")[-1] in test_modules or name.split(".")[0] in test_modules]
    assert found == []
