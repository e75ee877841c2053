"""User-facing errors.

Every mistake a user can make (a malformed file, an unknown dataset key, a weights file that does not
match) is raised as a :class:`ScaledetError` whose message is one line naming the input and the problem.
The command-line layer prints that line and exits non-zero; a traceback is reserved for our own bugs.
"""
from __future__ import annotations


def one_line(err: BaseException, limit: int = 160) -> str:
    """An exception's message folded onto one line and cut to ``limit`` characters, for error reports."""
    return " ".join(str(err).split())[:limit]


class ScaledetError(Exception):
    """A problem with the user's input, reported as one line (``str(err)``)."""


class TaxonomyError(ScaledetError):
    """A taxonomy file or dataset key cannot be read or is inconsistent."""


class EncoderError(ScaledetError):
    """A text encoder cannot be built (unknown name, missing or mismatched weights)."""


class OutputError(ScaledetError):
    """A labelspace output directory is missing, incomplete or from an incompatible build."""
