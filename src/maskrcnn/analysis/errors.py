"""The error type of the analysis tools (one clear message; the CLI prints it as one line)."""

from maskrcnn.errors import UserError


class AnalysisError(UserError):
    """An input to an `analyze` command that is not what was expected."""
