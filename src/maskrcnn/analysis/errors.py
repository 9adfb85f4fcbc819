"""The error type of the analysis tools (one clear message; the CLI prints it as one line)."""


class AnalysisError(ValueError):
    """An input to an `analyze` command that is not what was expected."""
