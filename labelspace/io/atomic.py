"""Writing files so that readers only ever see the old version or the complete new one.

Every output of scaledet (builds, exports, graphs, reports, checkpoints, predictions) goes through here:
the content is written to a temporary name in the same directory and renamed over the target, and a
failed write removes its temporary file and leaves the previous target untouched. The temporary name
carries the process id and a token only scaledet can make (``.NAME.tmp<pid>-<nonce>-<token>.ext``), so that
a later run can remove what a killed one left, and nothing else
(:func:`~.output_dirs.remove_stale_temporaries`).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

from .errors import OutputError, one_line, os_error_words


def temporary_name(path: Path) -> Path:
    from .temporaries import temporary_file_name

    return temporary_file_name(path)


def _free_space_words(path: Path) -> str:
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return "the write failed"
    return "no space left on the device" if free < (1 << 20) else f"the write failed with {free >> 20:,} MiB free"


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` and rename ``tmp`` to ``path``; the suffix is kept for writers that look at it.

    A file-system error (disk full, read-only, permission) is reported against ``path``, the file the
    user asked for, not the temporary name."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise OutputError(f"{path}: cannot be written ({os_error_words(err)})") from None
    except RuntimeError as err:
        # torch's and pyarrow's writers report a failed write (a full disk) as a RuntimeError of their own
        if "writ" not in str(err).lower():
            raise
        raise OutputError(f"{path}: cannot be written ({_free_space_words(path)}; {one_line(err, 80)})") from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, document) -> Path:
    return atomic_write_text(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")


class StagedFiles:
    """Several files that appear together or not at all: each is written under a temporary name now, and
    :meth:`commit` renames them all into place at the end. A run that fails before the commit
    (:meth:`discard`) leaves every file of an earlier run in the folder as it was, never a mix of the two
    runs and never a file removed."""

    def __init__(self) -> None:
        self.pending: list[tuple[Path, Path]] = []

    def write(self, path: Path, write: Callable[[Path], None]) -> Path:
        path = Path(path)
        tmp = temporary_name(path)
        self.pending.append((tmp, path))
        try:
            write(tmp)
        except OSError as err:
            raise OutputError(f"{path}: cannot be written ({os_error_words(err)})") from None
        return path

    def write_text(self, path: Path, text: str) -> Path:
        return self.write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def commit(self) -> list[Path]:
        for _, path in self.pending:  # what would stop a rename midway, found before the first one
            if path.is_dir() and not path.is_symlink():
                raise OutputError(f"{path}: is a directory, so the file cannot be written there; move it away")
        done = []
        for tmp, path in self.pending:
            try:
                os.replace(tmp, path)
            except OSError as err:
                raise OutputError(f"{path}: cannot be written ({os_error_words(err)})") from None
            done.append(path)
        self.pending = []
        return done

    def discard(self) -> None:
        for tmp, _ in self.pending:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        self.pending = []
