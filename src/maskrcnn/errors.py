"""The one base type of the errors a user can cause, and how the command line shows them.

Every exception class this package raises for a user's mistake (a bad image, annotation,
config value or option, a missing file, weights that do not fit) derives from `UserError`,
so the front doors (`maskrcnn ...` and `python -m maskrcnn.engine.train`) turn it into one
line `maskrcnn: error: ...` instead of a traceback. Any other exception is a bug and keeps
its traceback. `UserError` is a `ValueError`, so callers that caught ValueError still do.
"""

from __future__ import annotations

# File-system errors a user causes by naming a path; shown as one line too.
FILE_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


class UserError(ValueError):
    """A mistake a user can make; its message names the file or field and what was expected."""


def is_user_error(exc: BaseException) -> bool:
    """Errors shown as one line: `UserError` and file-system errors on a path the user gave."""
    return isinstance(exc, (UserError, *FILE_ERRORS))


def error_message(exc: BaseException) -> str:
    """The one line shown for `exc` (after `maskrcnn: error: `)."""
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__
