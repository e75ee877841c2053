"""User-facing errors.

Every mistake a user can make (a malformed file, an unknown dataset key, a weights file that does not
match) is raised as a :class:`ScaledetError` whose message is one line naming the input and the problem.
The command-line layer prints that line and exits 2; :func:`explain` is the one place where an exception
from the file system or a library that escaped the specific checks becomes such a line, and anything it
does not recognise is reported as a bug (exit 1) in one line too.
"""
from __future__ import annotations

import errno
import os

#: Exit codes of both commands: a user's mistake or an unusable input, and a bug of ours.
EXIT_USER_ERROR = 2
EXIT_BUG = 1


def one_line(err: BaseException | str, limit: int = 160) -> str:
    """An exception's message folded onto one line and cut to ``limit`` characters, for error reports."""
    return " ".join(str(err).split())[:limit]


def excerpt(value: object, limit: int = 60) -> str:
    """A short ``repr`` of a value read from a user's file, for an error message: nested lists and long
    strings are cut by :mod:`reprlib`, so a huge value costs nothing to show."""
    import reprlib

    shortener = reprlib.Repr()
    shortener.maxlevel, shortener.maxstring, shortener.maxother = 3, limit, limit
    return shortener.repr(value)[:limit + 20]


class ScaledetError(Exception):
    """A problem with the user's input, reported as one line (``str(err)``)."""


class TaxonomyError(ScaledetError):
    """A taxonomy file or dataset key cannot be read or is inconsistent."""


class EncoderError(ScaledetError):
    """A text encoder cannot be built (unknown name, missing or mismatched weights)."""


class OutputError(ScaledetError):
    """A labelspace output directory is missing, incomplete or from an incompatible build."""


class ConfigError(ScaledetError):
    """A training config key or value is wrong (unknown key, wrong type, out of range)."""


_ERRNO_WORDS = {
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EISDIR: "is a directory",
    errno.ENOENT: "no such file or directory",
    errno.EEXIST: "already exists",
    errno.EBUSY: "busy (a mount point or in use)",
    errno.EXDEV: "on another device (cannot be renamed into place)",
    errno.ENOTEMPTY: "directory not empty",
    errno.EDQUOT: "disk quota exceeded",
}


def os_error_words(err: OSError) -> str:
    """What went wrong in a file-system error, in words a user can act on (no path)."""
    return _ERRNO_WORDS.get(err.errno or -1) or err.strerror or one_line(err)


def describe_os_error(err: OSError) -> str:
    """``PATH: what went wrong`` for an error of the file system."""
    words = os_error_words(err)
    if err.errno == errno.EEXIST and err.filename is not None and os.path.isfile(err.filename):
        words = "is a file, so no folder can be made there or under it"  # mkdir(parents=True) on a/file/sub
    path = err.filename if err.filename is not None else ""
    if err.filename2 is not None:
        path = f"{path} → {err.filename2}"
    return f"{path}: {words}" if path else words


def explain(err: BaseException) -> tuple[str, int]:
    """The one-line message and exit code for any exception that reached the command line."""
    if isinstance(err, ScaledetError):
        return str(err), EXIT_USER_ERROR
    if isinstance(err, OSError):
        return describe_os_error(err), EXIT_USER_ERROR
    if isinstance(err, MemoryError):
        return "out of memory (try a smaller batch, fewer labels, or --similarity topk)", EXIT_USER_ERROR
    name = type(err).__name__
    return (f"internal error ({name}: {one_line(err)}); this is a bug in scaledet: run again with "
            "SCALEDET_DEBUG=1 for the full trace and report it", EXIT_BUG)
