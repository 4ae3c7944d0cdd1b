"""The one error type of grok_engine.

Every refusal of bad input raises :class:`GrokError` with a single-line message that names
the offending value and what is allowed; the CLI prints it and exits with code 2.
"""


class GrokError(ValueError):
    """A user-facing, one-line error: the bad value and what is allowed."""


class CorruptCheckpoint(GrokError):
    """A checkpoint file on disk is truncated or unreadable (named in the message)."""


def describe_os_error(exc: OSError) -> str:
    """What went wrong with a file, in words ('permission denied', 'no such file or
    folder', ...), for messages that name the file themselves."""
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "no such file or folder"
    return (exc.strerror or str(exc)).lower()
