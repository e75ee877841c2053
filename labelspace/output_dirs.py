"""Which directories a command may write into, and what a killed run leaves behind.

The rule every command follows: it writes only into a directory that is missing, empty, or holds its
own kind of output (a labelspace build is recognised by its ``manifest.json``, every other output by the
small marker file it writes, ``.scaledet-output.json``). Anything else is refused with one line unless the
user passes ``--force``. A symlink is followed, so the link a user made keeps pointing at the new output.

Temporary names carry the writing process's id (``.NAME.tmp<pid>.ext``, ``.NAME.building-<pid>-…``), so
the next run can tell leftovers of a killed process from the work of one still running, and remove them.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from .errors import OutputError

MARKER_FILE = ".scaledet-output.json"
BUILD_KIND = "labelspace build"
_PID_IN_NAME = re.compile(r"(?:\.tmp|\.building-|\.old-)(\d+)")


def output_kind(directory: Path) -> str | None:
    """The kind of scaledet output ``directory`` holds, or None (not ours, or not readable as ours)."""
    manifest = directory / "manifest.json"
    if manifest.is_file():
        try:
            document = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            document = None
        if isinstance(document, dict) and str(document.get("format", "")).startswith("scaledet.labelspace/"):
            return BUILD_KIND
    marker = directory / MARKER_FILE
    if marker.is_file():
        try:
            document = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if isinstance(document, dict) and isinstance(document.get("kind"), str):
            return document["kind"]
    return None


def _is_empty(directory: Path) -> bool:
    with os.scandir(directory) as entries:
        return next(entries, None) is None


def check_output_dir(path: str | Path, kind: str, flag: str, force: bool = False) -> Path:
    """Refuse to write into ``path`` unless it is missing, empty, of ``kind``, or ``force`` is given.

    Returns the path to write to: the target of a symlink, so that replacing the output never replaces
    the user's link."""
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path}: exists and is not a directory")
    if path.is_dir() and not force and not _is_empty(path):
        found = output_kind(path)
        if found != kind:
            what = f"a {found} output" if found else "files scaledet did not write"
            raise OutputError(f"{flag} {path}: holds {what}, not a {kind}; choose a new or empty directory, "
                              "or add --force to write into it anyway")
    return path


def check_replaceable(path: Path, flag: str) -> None:
    """A directory that is replaced as a whole (by rename) must not be ``/``, a mount point, or the
    current directory or one above it."""
    resolved = path.resolve()
    if resolved == Path(resolved.anchor):
        raise OutputError(f"{flag} {path}: the root directory cannot be an output; name a new directory")
    if os.path.ismount(resolved):
        raise OutputError(f"{flag} {path}: a mount point cannot be replaced; name a directory inside it")
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise OutputError(f"{flag} {path}: is the current directory or above it; name a new directory")


def mark_output_dir(directory: Path, kind: str, **details) -> None:
    """Write the marker that lets the next run recognise ``directory`` as its own output."""
    from .atomic import atomic_write_json

    atomic_write_json(directory / MARKER_FILE, {"kind": kind, **details})


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(directory: Path, prefix: str = ".") -> list[Path]:
    """Remove temporary files and staging folders in ``directory`` left by processes that no longer run
    (a kill -9 during a write). Those of running processes are left alone."""
    removed: list[Path] = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        match = _PID_IN_NAME.search(entry.name)
        if match is None or pid_alive(int(match.group(1))):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            pass
    return removed
