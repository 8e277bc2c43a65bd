"""Tooling for the course "From probability to loss functions".

The commands an instructor knows, one module each, all reached through ``cli``: ``build`` (the
site), ``release`` (student notebooks), ``grade`` (``course grade``: its worker ``pools`` and
``incremental`` regrading), ``similarity`` (pairs of similar answers) and ``export`` (grades
for the LMS).

Grading is a pipeline, one stage per module, in this order:

* ``collect``: submissions from nbgrader's folders or an LMS export;
* ``sanitize``: the one gate for what a student may show;
* ``execute``: the notebook run cell by cell in the sandbox (``sandbox``: the limits and the
  bwrap command; ``kernel``: the kernel's provisioner and watchdog; ``forkserver``;
  ``cgroups``; ``workers`` for ``course grade``'s pool), the hidden checks sent in
  (``harness``, ``parity``);
* ``judge``: each reply judged against its float64 reference, in the grader's process (the
  hidden checks' format, a JSON Schema checked as they load: ``cases``);
* ``record``: grades into the gradebook (nbgrader's ``Autograde``, for ``course grade``), with
  the ``late`` policy;
* ``feedback``, ``report``: what the student reads, rendered from the grader's verdicts and
  notes (data in the graded notebook), and the report read from the same data.

``plugins`` holds the preprocessors ``nbgrader_config.py`` puts in nbgrader's pipeline
(``RestoreCellMetadata`` for sanitize, ``SandboxedExecute`` for execute), apart from the code they
drive: no module a ``course grade`` worker loads imports nbgrader.
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
