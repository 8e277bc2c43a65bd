"""The one kind of error a ``course`` command reports in a line, without a traceback: it cannot run as asked
(no course here, an unknown assignment, a roster that is not the LMS's export, ...).  The message names the
file or the option and what is wrong."""


class UsageError(Exception):
    """The command cannot run as asked; the message says why."""
