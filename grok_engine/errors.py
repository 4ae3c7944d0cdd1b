"""The one error type of grok_engine.

Every refusal of bad input raises :class:`GrokError` with a single-line message that names
the offending value and what is allowed; the CLI prints it and exits with code 2.
"""


class GrokError(ValueError):
    """A user-facing, one-line error: the bad value and what is allowed."""


class CorruptCheckpoint(GrokError):
    """A checkpoint file on disk is truncated or unreadable (named in the message)."""


def describe_os_error(exc: OSError) -> str:
    """What went wrong with a file, in words ("permission denied", "is a folder", ...),
    never Python's errno text alone: a permission problem is not a missing file."""
    import errno

    words = {
        errno.ENOENT: "does not exist",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EISDIR: "is a folder, not a file",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EROFS: "read-only file system",
        errno.ENOSPC: "no space left on the device",
        errno.ENAMETOOLONG: "file name too long",
        errno.EEXIST: "already exists",
    }
    if exc.errno in words:
        return words[exc.errno]
    # some libraries (safetensors) raise the subclass without an errno
    by_class = ((FileNotFoundError, errno.ENOENT), (PermissionError, errno.EACCES),
                (IsADirectoryError, errno.EISDIR), (NotADirectoryError, errno.ENOTDIR),
                (FileExistsError, errno.EEXIST))
    for klass, code in by_class:
        if isinstance(exc, klass):
            return words[code]
    return exc.strerror or str(exc) or type(exc).__name__


def os_error(what: str, exc: OSError) -> "GrokError":
    """A GrokError for ``exc`` met while doing ``what`` ("/x/config.json cannot be read")."""
    return GrokError(f"{what}: {describe_os_error(exc)}")
