"""The ``course`` command: ``course build``, ``course release``, ``course grade``."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="course", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("build", help="execute the chapters and build the site into _build/html")
    release = verbs.add_parser("release", help="generate the student notebooks in assignments/ from solutions/")
    release.add_argument("assignments", nargs="*", help="assignment ids (default: all in solutions/)")
    args = parser.parse_args(argv)

    if args.verb == "build":
        from .build import build_site
        seconds = build_site()
        print(f"course build: site in _build/html ({seconds:.1f} s)")
    elif args.verb == "release":
        from .release import release_assignments
        released = release_assignments(args.assignments or None)
        print(f"course release: {len(released)} assignment(s) in assignments/: {', '.join(released) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
