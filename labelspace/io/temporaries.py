"""Names of temporary files and staging folders, and sweeping the ones killed runs left.

Temporary names carry the writing process's id and a token that only scaledet can make (an HMAC under a
key kept in the cache directory, :func:`temporary_token`): the next run removes leftovers of killed
processes (:func:`remove_stale_temporaries`), and a user's file named like one is never touched.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import shutil
from functools import lru_cache
from pathlib import Path

#: ``.NAME.tmp<pid>-<nonce>-<token>SUFFIX`` (a file) and ``.NAME.<building|old>-<pid>-<nonce>-<token>`` (a folder)
_TEMPORARY_FILE = re.compile(r"^\.(?P<stem>.*)\.tmp(?P<pid>\d+)-(?P<nonce>[0-9a-f]{8})-(?P<token>[0-9a-f]{20})(?P<suffix>.*)$")
_TEMPORARY_DIR = re.compile(r"^\.(?P<stem>.*)\.(?P<role>building|old)-(?P<pid>\d+)-(?P<nonce>[0-9a-f]{8})-(?P<token>[0-9a-f]{20})$")
KEY_FILE = ".temporary-names.key"


def _temporary_key() -> bytes:
    """The key temporary names are signed with: 32 random bytes in the cache directory, made on first use
    (readable by the user only). Without a writable cache, a key for this process alone: its temporaries
    are then never swept by a later run, which errs on the side of keeping files."""
    from .cache_dir import cache_root

    return _key_of(cache_root() / KEY_FILE)


@lru_cache(maxsize=8)
def _key_of(path: Path) -> bytes:
    """The key kept at ``path`` (one per cache folder: ``$SCALEDET_CACHE`` may change within a process)."""
    try:
        key = path.read_bytes()
        if len(key) == 32:
            return key
    except OSError:
        pass
    key = secrets.token_bytes(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(key)
    except FileExistsError:  # another process made it first
        try:
            existing = path.read_bytes()
            return existing if len(existing) == 32 else key
        except OSError:
            return key
    except OSError:
        return key
    return key


def signature(message: str) -> str:
    """HMAC-SHA256 of ``message`` under the cache's key: what scaledet wrote itself can be told from what
    was edited or planted (temporary names, the weights-hash memo)."""
    return hmac.new(_temporary_key(), message.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def temporary_token(role: str, pid: int, nonce: str, name: str) -> str:
    """The part of a temporary name that proves scaledet made it (for ``name``, by process ``pid``)."""
    return signature(f"{role}:{pid}:{nonce}:{name}")[:20]


def temporary_file_name(path: Path) -> Path:
    """``.STEM.tmp<pid>-<nonce>-<token>SUFFIX`` beside ``path`` (the suffix kept for writers that look at it)."""
    pid, nonce = os.getpid(), secrets.token_hex(4)
    token = temporary_token("tmp", pid, nonce, path.name)
    return path.with_name(f".{path.stem}.tmp{pid}-{nonce}-{token}{path.suffix}")


def make_temporary_dir(final: Path, role: str = "building") -> Path:
    """A new folder ``.NAME.<role>-<pid>-<nonce>-<token>`` beside ``final``, readable like any output."""
    pid, nonce = os.getpid(), secrets.token_hex(4)
    folder = final.with_name(f".{final.name}.{role}-{pid}-{nonce}-{temporary_token(role, pid, nonce, final.name)}")
    umask = os.umask(0)
    os.umask(umask)
    os.mkdir(folder, 0o777 & ~umask)
    return folder


def _temporary_owner(name: str) -> int | None:
    """The pid of the scaledet process that made temporary ``name``, or None when the name is not one of
    ours (wrong shape, or a token that does not verify)."""
    match = _TEMPORARY_FILE.match(name)
    if match is not None:
        role, original = "tmp", match["stem"] + match["suffix"]
    else:
        match = _TEMPORARY_DIR.match(name)
        if match is None:
            return None
        role, original = match["role"], match["stem"]
    expected = temporary_token(role, int(match["pid"]), match["nonce"], original)
    return int(match["pid"]) if hmac.compare_digest(expected, match["token"]) else None


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
    """Remove temporary files and staging folders in ``directory`` left by scaledet processes that no
    longer run (a kill -9 during a write). Only names whose token verifies are touched; those of running
    processes are left alone."""
    removed: list[Path] = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        owner = _temporary_owner(entry.name)
        if owner is None or pid_alive(owner):
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
