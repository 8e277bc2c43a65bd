"""The ``course`` command: ``course build``, ``course release``, ``course grade``, ``course similarity``,
``course export``."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    Option = tuple[str, dict[str, Any]]  # a flag (or a positional's name) and add_argument's keywords

# Options several commands share, each said once.
COURSE = ("--course", dict(metavar="DIR", help="the course directory (default: the current folder)"))
DB = ("--db", dict(metavar="URL", help="gradebook URL, e.g. postgresql://user@host/db (default: nbgrader_config.py)"))
SUBMISSIONS = ("--submissions", dict(
    metavar="PATH", help="a folder in nbgrader's layout (<student>/<assignment>/*.ipynb), or an LMS export: a zip file "
                         "or a folder of <student>_<anything>_<notebook>.ipynb files (default: submitted/)"))

PATTERN = ("--pattern", dict(metavar="REGEX", help="LMS file name pattern, with named groups student_id and file_id; "
                                                  "{notebooks} stands for the assignment's notebook names "
                                                  "(default: c.Collect.lms_pattern)"))
COLLECT_LMS = ("--lms", dict(choices=("canvas", "moodle"), help=(
    "read the export as this LMS names its files (Canvas 'Download Submissions', Moodle 'Download all "
    "submissions'): the student is the LMS's user id, e.g. canvas-4711 (default: c.Collect.lms)")))
TIMES = ("--submission-times", dict(metavar="FILE", help=(
    "the submission times exported from the LMS (with --lms): Canvas's submissions API as JSON or a CSV with "
    "user_id,submitted_at; Moodle's grading worksheet CSV (see INSTRUCTORS.md)")))
TIMES_ZONE = ("--times-zone", dict(metavar="ZONE", help=(
    "the time zone of times that do not say theirs (Moodle's grading worksheet), e.g. Europe/London")))

GRADE_OPTIONS: list[Option] = [
    SUBMISSIONS,
    ("--student", dict(action="append", metavar="ID", help="regrade only this student (repeat for more), whether "
                                                           "their submission changed or not; nobody else is touched")),
    ("--workers", dict(type=int, metavar="N", help="local worker processes (default: one per core)")),
    ("--scheduler", dict(metavar="tcp://HOST:8786", help="grade on this Dask cluster instead of locally")),
    DB,
    ("--force", dict(action="store_true", help="regrade submissions that have not changed")),
    COURSE,
    COLLECT_LMS,
    PATTERN,
    TIMES,
    TIMES_ZONE,
    ("--roster-only", dict(action="store_true", help="accept only students already in the gradebook")),
    ("--no-feedback", dict(action="store_true", help="do not generate feedback HTML")),
    ("--no-progress", dict(action="store_true", help="no progress bar")),
    ("--no-sandbox", dict(action="store_true", help="grade WITHOUT the bubblewrap sandbox (resource limits only; "
                                                    "student code can read the course files and use the network): "
                                                    "only on a single-user machine")),
]

SIMILARITY_OPTIONS: list[Option] = [
    SUBMISSIONS,
    COLLECT_LMS,
    PATTERN,
    COURSE,
    ("--top", dict(type=int, metavar="N", help="pairs shown side by side in the HTML report")),
]

EXPORT_OPTIONS: list[Option] = [
    ("--lms", dict(choices=("canvas", "moodle"), required=True, help="the LMS that imports the file")),
    ("--roster", dict(required=True, metavar="CSV", help="the LMS's gradebook export (who is enrolled)")),
    ("--to", dict(metavar="CSV", help="the file to write (default: canvas-grades.csv or moodle-grades.csv)")),
    ("--assignment", dict(action="append", default=[], metavar="ID",
                          help="only this assignment (repeat for more; default: every assignment in the gradebook)")),
    ("--missing", dict(choices=("zero", "blank"), help="the score of an enrolled student with no submission "
                                                       "(default: c.LmsExportPlugin.missing, zero)")),
    DB,
    COURSE,
]


def command(verbs: argparse._SubParsersAction[argparse.ArgumentParser], name: str, options: list[Option],
            positional: Option | None = None, **texts: Any) -> argparse.ArgumentParser:
    parser = verbs.add_parser(name, **texts)
    if positional:
        parser.add_argument(positional[0], **positional[1])
    for flag, settings in options:
        parser.add_argument(flag, **settings)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="course", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("build", help="execute the chapters and build the site into _build/html")
    command(verbs, "release", [COURSE], ("assignments", dict(nargs="*", help="assignment ids (default: all in solutions/)")),
            help="generate the student notebooks in assignments/ from solutions/")
    command(verbs, "grade", GRADE_OPTIONS, ("assignments", dict(nargs="+", metavar="assignment", help="assignment id(s)")),
            help="collect, grade (in parallel, sandboxed), write feedback, the grades CSV and a report",
            description="Grade submissions with the trusted pipeline of nbgrader_config.py, in parallel: collect them "
                        "(nbgrader's submitted/ layout, or a zip or folder exported from an LMS), grade them in "
                        "sandboxes on a local process pool or a Dask cluster, record the grades in the gradebook, "
                        "write feedback, grades.csv and reports/<assignment>/report.md. Unchanged submissions are "
                        "not regraded unless --force or --student. Exit status: 0 all graded, 1 some submissions or "
                        "files had problems (see the report), 2 the command could not run or failed.")
    command(verbs, "similarity", SIMILARITY_OPTIONS, ("assignment", dict(help="assignment id")),
            help="rank pairs of students by how similar their answers are (flags, never grades)",
            description="Compare the students' answer cells pairwise with copydetect (MOSS-style fingerprints; the "
                        "released starter code and docstrings excluded) and write reports/<assignment>/similarity.html "
                        "(the most similar pairs, matching lines highlighted) and similarity.csv (every pair that "
                        "shares code). Nothing is graded and the gradebook is not touched.")
    command(verbs, "export", EXPORT_OPTIONS,
            help="write the grades as a CSV that Canvas or Moodle imports as it is",
            description="Write the gradebook's scores (less late penalties) as the LMS's grade import CSV, for the "
                        "students of the LMS's own gradebook export (--roster). Enrolled students with no submission "
                        "get 0 (or a blank) and are listed; graded students missing from the roster are listed and "
                        "left out. Exit status: 0 every student accounted for and every score final, 1 something listed to check "
                        "(left out, ambiguous, or written answers not graded by hand yet), 2 "
                        "could not run.")
    return parser


def run_build(args: argparse.Namespace) -> int:
    from .build import build_site

    print(f"course build: site in _build/html ({build_site():.1f} s)")
    return 0


def run_release(args: argparse.Namespace) -> int:
    from .release import release_assignments

    released = release_assignments(args.assignments or None, root=args.course)
    print(f"course release: {len(released)} assignment(s) in assignments/: {', '.join(released) or 'none'}")
    return 0


def run_grade(args: argparse.Namespace) -> int:
    from .grade import grade

    return grade(args.assignments, root=args.course, submissions=args.submissions, db_url=args.db,
                 workers=args.workers, scheduler=args.scheduler, force=args.force, pattern=args.pattern,
                 roster_only=args.roster_only, feedback=not args.no_feedback, progress=not args.no_progress,
                 sandbox=not args.no_sandbox, students=args.student, lms=args.lms,
                 submission_times=args.submission_times, times_zone=args.times_zone)


def run_similarity(args: argparse.Namespace) -> int:
    from .similarity import SHOWN_PAIRS, similarity

    similarity(args.assignment, root=args.course, submissions=args.submissions, top=SHOWN_PAIRS if args.top is None else args.top,
               pattern=args.pattern, lms=args.lms)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from .export import export

    return export(args.lms, args.roster, root=args.course, to=args.to, assignments=args.assignment,
                  missing=args.missing, db_url=args.db)


RUN: dict[str, Callable[[argparse.Namespace], int]] = {
    "build": run_build, "release": run_release, "grade": run_grade, "similarity": run_similarity, "export": run_export}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "workers", None) is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    if getattr(args, "top", None) is not None and args.top < 1:
        parser.error("--top must be at least 1")
    from .errors import CourseError
    from .workers import skip_slow_optional_imports

    skip_slow_optional_imports()  # every verb imports nbformat, and so jsonschema, on the way
    try:
        return RUN[args.verb](args)
    except CourseError as error:  # the command cannot run as asked: say why, in one line
        print(f"course {args.verb}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stopped:
        print(f"course {args.verb}: interrupted{': ' + str(stopped) if str(stopped) else ''}", file=sys.stderr)
        return 130
    except Exception:  # a crash, not bad input: say so, with the traceback, and exit 2
        import traceback

        traceback.print_exc()
        print(f"course {args.verb}: failed (see the traceback above)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
