"""The ``course`` command: ``course build``, ``course release``, ``course grade``, ``course similarity``, ``course export``."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="course", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("build", help="execute the chapters and build the site into _build/html")
    release = verbs.add_parser("release", help="generate the student notebooks in assignments/ from solutions/")
    release.add_argument("assignments", nargs="*", help="assignment ids (default: all in solutions/)")
    grade = verbs.add_parser(
        "grade", help="collect, grade (in parallel, sandboxed), write feedback, the grades CSV and a report",
        description="Grade submissions with the trusted pipeline of nbgrader_config.py, in parallel: collect them "
                    "(nbgrader's submitted/ layout, or a zip or folder exported from an LMS), grade them in "
                    "sandboxes on a local process pool or a Dask cluster, record the grades in the gradebook, "
                    "write feedback, grades.csv and reports/<assignment>/report.md. Unchanged submissions are "
                    "not regraded unless --force. Exit status: 0 all graded, 1 some submissions or files had "
                    "problems (see the report), 2 the command could not run or failed.")
    grade.add_argument("assignments", nargs="+", metavar="assignment", help="assignment id(s)")
    grade.add_argument("--submissions", metavar="PATH",
                       help="a folder in nbgrader's layout (<student>/<assignment>/*.ipynb), or an LMS export: a zip "
                            "file or a folder of <student>_<anything>_<notebook>.ipynb files (default: submitted/)")
    grade.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: one per core)")
    grade.add_argument("--scheduler", metavar="tcp://HOST:8786", help="grade on this Dask cluster instead of locally")
    grade.add_argument("--db", metavar="URL", help="gradebook URL, e.g. postgresql://user@host/db (default: nbgrader_config.py)")
    grade.add_argument("--force", action="store_true", help="regrade submissions that have not changed")
    grade.add_argument("--course", metavar="DIR", help="the course directory (default: the current folder)")
    grade.add_argument("--pattern", metavar="REGEX",
                       help="LMS file name pattern, with named groups student_id and file_id; {notebooks} stands for "
                            "the assignment's notebook names (default: c.CourseGrade.lms_pattern)")
    grade.add_argument("--roster-only", action="store_true", help="accept only students already in the gradebook")
    grade.add_argument("--no-feedback", action="store_true", help="do not generate feedback HTML")
    grade.add_argument("--no-progress", action="store_true", help="no progress bar")
    grade.add_argument("--no-sandbox", action="store_true",
                       help="grade WITHOUT the bubblewrap sandbox (resource limits only; student code can read "
                            "the course files and use the network): only on a single-user machine")
    similar = verbs.add_parser(
        "similarity", help="rank pairs of students by how similar their answers are (flags, never grades)",
        description="Compare the students' answer cells pairwise with copydetect (MOSS-style fingerprints; the "
                    "released starter code and docstrings excluded) and write reports/<assignment>/similarity.html "
                    "(the most similar pairs, matching lines highlighted) and similarity.csv (every pair that shares "
                    "code). Nothing is graded and the gradebook is not touched.")
    similar.add_argument("assignment", help="assignment id")
    similar.add_argument("--submissions", metavar="PATH",
                         help="a folder in nbgrader's layout, or an LMS export (default: submitted/)")
    similar.add_argument("--course", metavar="DIR", help="the course directory (default: the current folder)")
    similar.add_argument("--top", type=int, metavar="N", help="pairs shown side by side in the HTML report")
    export = verbs.add_parser(
        "export", help="write the grades as a CSV that Canvas or Moodle imports as it is",
        description="Write the gradebook's scores (less late penalties) as the LMS's grade import CSV, for the "
                    "students of the LMS's own gradebook export (--roster). Enrolled students with no submission get "
                    "0 (or a blank) and are listed; graded students missing from the roster are listed and left out. "
                    "Exit status: 0 every student accounted for, 1 some graded students left out, 2 could not run.")
    export.add_argument("--lms", choices=("canvas", "moodle"), required=True, help="the LMS that imports the file")
    export.add_argument("--roster", required=True, metavar="CSV", help="the LMS's gradebook export (who is enrolled)")
    export.add_argument("--to", metavar="CSV", help="the file to write (default: canvas-grades.csv or moodle-grades.csv)")
    export.add_argument("--assignment", action="append", default=[], metavar="ID",
                        help="only this assignment (repeat for more; default: every assignment in the gradebook)")
    export.add_argument("--missing", choices=("zero", "blank"),
                        help="the score of an enrolled student with no submission (default: c.LmsExportPlugin.missing, zero)")
    export.add_argument("--db", metavar="URL", help="gradebook URL (default: nbgrader_config.py)")
    export.add_argument("--course", metavar="DIR", help="the course directory (default: the current folder)")
    args = parser.parse_args(argv)

    if args.verb == "build":
        from .build import build_site
        seconds = build_site()
        print(f"course build: site in _build/html ({seconds:.1f} s)")
    elif args.verb == "release":
        from .release import release_assignments
        released = release_assignments(args.assignments or None)
        print(f"course release: {len(released)} assignment(s) in assignments/: {', '.join(released) or 'none'}")
    elif args.verb == "grade":
        from .workers import skip_slow_optional_imports
        skip_slow_optional_imports()
        from .grade import UsageError, grade
        if args.workers is not None and args.workers < 1:
            parser.error("--workers must be at least 1")
        try:
            return grade(args.assignments, root=args.course, submissions=args.submissions, db_url=args.db,
                         workers=args.workers, scheduler=args.scheduler, force=args.force, pattern=args.pattern,
                         roster_only=args.roster_only, feedback=not args.no_feedback, progress=not args.no_progress,
                         sandbox=not args.no_sandbox)
        except UsageError as error:
            print(f"course grade: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as stopped:
            print(f"course grade: interrupted{': ' + str(stopped) if str(stopped) else ''}", file=sys.stderr)
            return 130
        except Exception:  # a crash, not a bad submission: say so, with the traceback, and exit 2
            import traceback
            traceback.print_exc()
            print("course grade: failed (see the traceback above)", file=sys.stderr)
            return 2
    elif args.verb == "similarity":
        from .grade import UsageError
        from .similarity import SHOWN_PAIRS, SimilarityError, similarity
        try:
            similarity(args.assignment, root=args.course, submissions=args.submissions, top=args.top or SHOWN_PAIRS)
        except (SimilarityError, UsageError) as error:
            print(f"course similarity: {error}", file=sys.stderr)
            return 2
    elif args.verb == "export":
        from .export import RosterError, export
        from .grade import UsageError
        try:
            return export(args.lms, args.roster, root=args.course, to=args.to, assignments=args.assignment,
                          missing=args.missing, db_url=args.db)
        except (RosterError, UsageError) as error:
            print(f"course export: {error}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
