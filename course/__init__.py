"""Tooling for the course "From probability to loss functions".

The commands an instructor knows, one module each, all reached through ``cli``: ``build`` (the
site), ``release`` (student notebooks), ``grade`` (``course grade``: its stages ``planning``,
``scheduling`` and ``recording``, ``plan``: what one run grades, its worker ``pools`` and
``incremental`` regrading, ``tasks``: what a worker gets and sends back, ``accounting``: its CPU by
stage), ``similarity`` (pairs of similar answers) and ``export`` (grades for the LMS).  ``build`` and ``release`` use ``student_notebook`` (each chapter as a downloadable notebook),
``chapter_links`` and ``data`` (the names data); every command reads the course's ``config``.

Grading is a pipeline, one stage per module, in this order:

* ``collect``: submissions from nbgrader's folders or an LMS export (``lms_export``: the export read within
  bounds; ``lms``: Canvas's and Moodle's own names and files; ``files``: a student's files walked, read and
  removed at any depth);
* ``sanitize``: a submitted notebook read within bounds (``submitted_notebook``), then the one gate for
  what a student may show;
* ``execute``: the notebook run cell by cell in the sandbox (``sandbox``: the limits and the
  bwrap command; ``kernel``: the kernel's provisioner and watchdog; ``forkserver``: the fork server,
  a script run in its own sandbox, ``forkserver_client``: the grader's side of it, and
  ``forkserver_protocol``: what the two send each other; ``cgroups``; ``workers`` for
  ``course grade``'s pool), the hidden checks sent in (``harness``, ``parity``), an assignment's
  ``rules`` enforced (``guard`` in the kernel);
* ``judge``: each reply judged against its float64 reference, in the grader's process (the
  hidden checks' format, a JSON Schema checked as they load: ``cases``);
* ``record``: grades into the gradebook (nbgrader's ``Autograde``, for ``course grade``), with
  the ``late`` policy;
* ``feedback``, ``notes``, ``report``: what the student reads, rendered from the grader's verdicts and
  grading notes (data in the graded notebook), and the report read from the same data.

``plugins`` holds the plug-ins ``nbgrader_config.py`` puts in nbgrader's pipeline
(``ReadableNotebookExporter`` for collect, ``RestoreCellMetadata`` for sanitize, ``SandboxedExecute`` for
execute), apart from the code they drive: no module a ``course grade`` worker loads imports nbgrader.
``vendor`` holds every private name of nbgrader, nbclient and jupyter_client the course relies on;
``errors`` the ``CourseError`` a command reports in one line.
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
