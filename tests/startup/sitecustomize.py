"""Run at start-up by the Python processes the tests launch: ``grading_support.environment()`` puts this folder
on their ``PYTHONPATH`` (the stock ``nbgrader`` commands, the Jupyter server of formgrader, ``course``).

jsonschema, which nbformat imports, imports ``rfc3987_syntax`` if it is installed: an optional extra that
compiles a grammar on import, about 2 CPU-seconds in every process, for the ``iri`` string formats, which no
notebook schema uses. ``course`` leaves it out the same way (``course.workers.skip_slow_optional_imports``);
here the tests' many ``nbgrader`` processes do too. Nothing they do changes.
"""
import sys

if "jsonschema" not in sys.modules:
    sys.modules.setdefault("rfc3987_syntax", None)
