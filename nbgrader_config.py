"""nbgrader configuration of the course.

The repository root is the nbgrader course directory: instructor notebooks in
solutions/, released student notebooks in assignments/.  Autograding runs
student code in a bubblewrap sandbox and scores test cells by hidden checks
judged in the grader's process (course/execute.py); the stock nbgrader commands
(generate_assignment, autograde, generate_feedback, export, formgrader) all
go through this file.
"""
import os

from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (CheckCellMetadata, ClearOutput, DeduplicateIds, GetGrades, IgnorePattern,
                                    LimitOutput, OverwriteCells, OverwriteKernelspec, SaveAutoGrades)

from course.late import ApplyLatePolicy, RefreshLatePenalty
from course.plugins import ReadableNotebookExporter, RestoreCellMetadata, SandboxedExecute
from course.sanitize import SanitizeStudentHTML

here = os.path.dirname(os.path.abspath(__file__))
c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)

c.CourseDirectory.root = here
c.CourseDirectory.course_id = "prob2loss"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.db_url = os.environ.get("COURSE_DB_URL", "sqlite:///" + os.path.join(here, "gradebook.db"))

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# Released notebooks link the chapters they practise on the published site (course/chapter_links.py;
# the address: course_site_url in _config.yml), not by their path in this repository, which a student
# who opens the notebook alone does not have. First, so that the checksums nbgrader records are the
# released cells'.
from nbgrader.converters import GenerateAssignment  # noqa: E402

from course.chapter_links import AbsoluteChapterLinks  # noqa: E402

if os.path.isfile(os.path.join(here, "_config.yml")):  # this course's own site address, wherever it is copied
    from course.student_notebook import site_url  # noqa: E402

    c.AbsoluteChapterLinks.site_url = site_url(os.path.abspath(here))
c.GenerateAssignment.preprocessors = [AbsoluteChapterLinks] + list(
    GenerateAssignment.class_traits()["preprocessors"].make_dynamic_default())

# nbgrader's own pipeline, with three changes: tampered cell metadata is restored from the
# gradebook (instead of aborting the whole batch), Execute is replaced by the sandboxed,
# hidden-check executor, and everything a student controls (outputs, markdown and raw cells)
# passes course/sanitize.py before the feedback or the formgrader shows it (after
# SaveAutoGrades, so that nbgrader's checksums see the cells as submitted).
# A file that is not a valid notebook is graded as an empty notebook whose feedback says why.
c.Autograde.exporter_class = ReadableNotebookExporter
c.Autograde.sanitize_preprocessors = [
    ClearOutput,
    DeduplicateIds,
    OverwriteKernelspec,
    RestoreCellMetadata,
    OverwriteCells,
    CheckCellMetadata,
]
c.Autograde.autograde_preprocessors = [
    SandboxedExecute,
    IgnorePattern,
    ClearMetadataPreprocessor,
    LimitOutput,
    SaveAutoGrades,
    SanitizeStudentHTML,
    ApplyLatePolicy,
    CheckCellMetadata,
]
# Feedback says the late penalty on the score as it is when the feedback is written (written answers graded
# by hand since autograding count), the penalty `course export` subtracts.
c.GenerateFeedback.preprocessors = [RefreshLatePenalty, GetGrades, CSSHTMLHeaderPreprocessor]
c.SandboxedExecute.hidden_checks_directory = os.path.join(here, "grader_tests")
# Limits of one submission.  Memory, processes and CPUs hold for all of its processes together,
# in a cgroup per submission (course/cgroups.py: cgroup v2, else v1, made under the grader's own
# cgroup), and memory, processes, CPU time, file size and open files also per process (rlimits).
# Where the grader cannot make cgroups (not root, no writable memory and pids controllers), only
# the per-process limits hold, and the grading log says so.  The defaults are the table in
# course/sandbox.py (Limits); to change one, set it here:
#   c.SandboxedExecute.memory_limit_gib      whole submission; each process too
#   c.SandboxedExecute.max_processes         processes and threads, whole submission
#   c.SandboxedExecute.cpus                  CPUs it may keep busy at once (cgroup only)
#   c.SandboxedExecute.notebook_cpu_seconds  CPU time, all its processes summed (watchdog), and each process
#   c.SandboxedExecute.cell_timeout          wall clock of one cell, seconds
#   c.SandboxedExecute.notebook_timeout      wall clock of the whole notebook, seconds
#   c.SandboxedExecute.output_chars_per_cell output kept per cell
if "COURSE_MEMORY_GIB" in os.environ:
    c.SandboxedExecute.memory_limit_gib = float(os.environ["COURSE_MEMORY_GIB"])

# Late work (course/late.py), applied by nbgrader's own late-penalty step, so `nbgrader autograde`
# and `course grade` agree.  Submission times come from timestamp.txt (nbgrader's) or from an LMS
# file name whose pattern has a `timestamp` group (`course grade --pattern`).  Nothing is late
# until an assignment has a due date.  The defaults: no grace, no penalty, no cutoff, and a
# submission with no time graded as on time (and reported).  For example:
#   c.LatePolicy.due = {"a2-losses": "2026-10-05 23:59:00 UTC"}
#   c.LatePolicy.grace_minutes = 15
#   c.LatePolicy.penalty_percent = 10       # of the score earned, per started period
#   c.LatePolicy.period = "day"             # or "hour"
#   c.LatePolicy.cap_percent = 50
#   c.LatePolicy.zero_after_hours = 72      # later than that: 0
#   c.LatePolicy.without_timestamp = "zero" # or "on-time"
