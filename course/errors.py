"""The errors a ``course`` command reports to its user in one line, without a traceback: ``CourseError`` and its
kinds.  Each message names the file or the option and what is wrong, so the user can mend it.  Anything else that
escapes a command is a fault of the course's own, reported with its traceback (``course.cli``)."""


class CourseError(Exception):
    """Something the user of a ``course`` command has to mend; the message says what, and where."""


class UsageError(CourseError):
    """The command cannot run as asked (no course here, an unknown assignment, a roster that is not the LMS's
    export, ...)."""
