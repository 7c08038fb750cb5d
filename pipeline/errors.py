"""User-facing errors: the CLI prints their message (no traceback) and exits with status 2."""


class PipelineError(Exception):
    """An expected failure with a message that says what was wrong and what to do."""
