"""Which directories a command may write into, and what a killed run leaves behind.

The rule every command follows: it writes only into a directory that is missing, empty, or holds its
own kind of output (a labelspace build is recognised by its ``manifest.json``, every other output by the
small marker file it writes, ``.scaledet-output.json``). Anything else is refused with one line unless the
user passes ``--force``. A symlink is followed, so the link a user made keeps pointing at the new output.

What may be deleted is decided by ownership, never by a marker alone or a name pattern: a marker lists
every file its command wrote, with its sha256 (:func:`record_output_files`), and a command removes only
files so listed (:func:`is_owned_output`). Temporary names carry the writing process's id and a token
that only scaledet can make (an HMAC under a key kept in the cache directory, :func:`temporary_token`):
the next run removes leftovers of killed processes, and a user's file named like one is never touched.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from .digests import sha256_of_file
from .errors import OutputError
from .temporaries import _temporary_owner, remove_stale_temporaries

MARKER_FILE = ".scaledet-output.json"
BUILD_KIND = "labelspace build"
GRAPH_KIND = "label graph"
MERGE_KIND = "concept merge"
EXPORT_KIND = "labelspace export"
REPORT_KIND = "labelspace report"
UNIFY_KIND = "unified training set"
#: Outputs made from a build that may live inside it (``graph/``, ``merge/``, ``exports/``, ``report/``): a
#: rebuild replaces them when every file in them is one their marker lists.
BUILD_DERIVED_KINDS = (GRAPH_KIND, MERGE_KIND, EXPORT_KIND, REPORT_KIND)
def output_kind(directory: Path) -> str | None:
    """The kind of scaledet output ``directory`` holds, or None (not ours, or not readable as ours)."""
    manifest = directory / "manifest.json"
    if manifest.is_file():
        try:
            document = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            document = None
        if isinstance(document, dict) and str(document.get("format", "")).startswith("scaledet.labelspace/"):
            return BUILD_KIND
    document = _read_marker(directory)
    return document["kind"] if isinstance(document.get("kind"), str) else None


def _is_empty(directory: Path) -> bool:
    with os.scandir(directory) as entries:
        return next(entries, None) is None


#: Set by the command-line entry points: a command holds a lock on each folder it writes until it exits
#: (:func:`hold_output_lock`). Library calls in one process (tests, notebooks) take none.
HOLD_LOCKS = False
_held_locks: dict[str, int] = {}


def hold_output_lock(directory: Path, flag: str) -> None:
    """One writer per output folder: take an exclusive lock on it for the rest of this process, or refuse
    in one line naming the process that holds it. The lock is an ``flock`` on a file in the cache directory
    named by the folder's resolved path (nothing is written beside your folders); the kernel releases it
    when the holding process ends, killed or not, so no stale lock is ever left."""
    import fcntl

    from .cache_dir import cache_root

    resolved = str(Path(directory).resolve())
    if not HOLD_LOCKS or resolved in _held_locks:
        return
    if os.environ.get("RANK", "0") != "0":  # distributed training: rank 0 writes, and holds the lock
        return
    lock_dir = cache_root() / "locks"
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(lock_dir / (hashlib.sha256(resolved.encode()).hexdigest()[:32] + ".lock"),
                             os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return  # no writable cache: no lock, as before (the folder checks still apply)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            holder = os.pread(descriptor, 200, 0).decode("utf-8", "replace").strip() or "another process"
        except OSError:
            holder = "another process"
        os.close(descriptor)
        raise OutputError(f"{flag} {directory}: is being written by {holder[:160]}; wait for it to finish, or name "
                          "another folder") from None
    import sys

    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"process {os.getpid()} ({' '.join(os.path.basename(a) for a in sys.argv[:2])})".encode(), 0)
    _held_locks[resolved] = descriptor


def refuse_unsafe_output(path: Path, flag: str) -> None:
    """Folders no command writes into, with or without ``--force``: ``/``, your home folder and every folder
    above it, and every folder above the current one (writing there puts files among everything below)."""
    resolved = path.resolve()
    if resolved == Path(resolved.anchor):
        raise OutputError(f"{flag} {path}: the root directory cannot be an output; name a new directory")
    home = Path.home().resolve()
    if resolved == home or resolved in home.parents:
        raise OutputError(f"{flag} {path}: is your home directory or above it, which is never written into, even "
                          "with --force; name a new directory")
    if resolved in Path.cwd().resolve().parents:
        raise OutputError(f"{flag} {path}: is above the current directory, which is never written into, even with "
                          "--force; name a new directory")


def check_output_dir(path: str | Path, kind: str, flag: str, force: bool = False,
                     inputs: tuple[Path, ...] = ()) -> Path:
    """Refuse to write into ``path`` unless it is missing, empty, of ``kind``, or ``force`` is given; and
    refuse, whatever the flags, when ``path`` is one of the ``inputs`` or holds one of them (an export into
    the build itself could replace the build's ``manifest.json``; a build whose ``--out`` holds its own
    ``--dataset-file`` would replace that file), or is a folder no command writes into
    (:func:`refuse_unsafe_output`). A command run from the command line then holds the folder's lock.

    Returns the path to write to: the target of a symlink, so that replacing the output never replaces
    the user's link, and ``.`` as an absolute path (it has no name to stage beside)."""
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    if path.name in ("", ".."):  # ``.``: staging and swaps need a folder name
        path = Path(os.path.abspath(path))
    refuse_unsafe_output(path, flag)
    for source in inputs:
        source_path = Path(source).resolve()
        if path.resolve() == source_path:
            raise OutputError(f"{flag} {path}: is the input {source} itself; outputs never go among their inputs' "
                              "files, even with --force; name another directory")
        if path.resolve() in source_path.parents:
            raise OutputError(f"{flag} {path}: holds the input {source}; outputs never go among their inputs' "
                              "files, even with --force; name another directory")
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path}: exists and is not a directory")
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise OutputError(f"{flag} {path}: {blocking} is a file, so no folder can be made under it")
    if path.is_dir() and not force and not _is_empty(path):
        found = output_kind(path)
        if found != kind:
            what = f"a {found} output" if found else "files scaledet did not write"
            raise OutputError(f"{flag} {path}: holds {what}, not a {kind}; choose a new or empty directory, "
                              "or add --force to write into it anyway")
    hold_output_lock(path, flag)
    if path.is_dir():
        remove_stale_temporaries(path)  # what a killed run of this output left (the lock says none runs now)
    return path


@contextmanager
def undone_on_failure(directory: Path):
    """Run an output's writing so that, if it fails, no folder is left that was not there before: a folder
    this run made is removed whole, an empty one it found is emptied again (what was in it is all this
    run's). A folder that held an earlier output is left to the command's own clean-up of what it wrote."""
    directory = Path(directory)
    existed = directory.exists()
    was_empty = existed and directory.is_dir() and _is_empty(directory)
    try:
        yield
    except BaseException:
        if not existed and directory.is_dir() and not directory.is_symlink():
            shutil.rmtree(directory, ignore_errors=True)
        elif was_empty:
            for entry in list(directory.iterdir()):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        raise


def check_replaceable(path: Path, flag: str) -> None:
    """A directory that is replaced as a whole (by rename) must, besides what no command writes into
    (:func:`refuse_unsafe_output`), not be a mount point or the current directory, whatever flags are given."""
    refuse_unsafe_output(path, flag)
    resolved = path.resolve()
    if os.path.ismount(resolved):
        raise OutputError(f"{flag} {path}: a mount point cannot be replaced; name a directory inside it")
    if resolved == Path.cwd().resolve():
        raise OutputError(f"{flag} {path}: is the current directory or above it; name a new directory")


def mark_output_dir(directory: Path, kind: str, **details) -> None:
    """Claim ``directory`` for an output of ``kind`` (before writing into it), keeping the files an
    earlier run of the same kind recorded there."""
    previous = _read_marker(directory)
    files = previous.get("files", {}) if previous.get("kind") == kind else {}
    write_marker(directory, {"kind": kind, **details, "files": files})


MARKER_DIGEST_KEY = "marker_sha256"


def write_marker(directory: Path, document: dict) -> None:
    """A marker carries the sha256 of its own content: a flipped byte in a recorded file digest or in the
    kind must not make a damaged file look recorded, or another command's folder look like this one's."""
    from .atomic import atomic_write_json
    from .sealed_json import seal

    atomic_write_json(directory / MARKER_FILE, seal(document, MARKER_DIGEST_KEY))


def _read_marker(directory: Path) -> dict:
    """The marker of ``directory``; ``{}`` (no output of ours) when it is missing, unreadable, or does not
    match the digest it carries, so that everything checked against it fails closed."""
    try:
        document = json.loads((directory / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    from .sealed_json import is_sealed

    if not is_sealed(document, MARKER_DIGEST_KEY):
        return {}
    return {key: value for key, value in document.items() if key != MARKER_DIGEST_KEY}


def recorded_files(directory: Path) -> set[str]:
    """The names of the files an output's marker lists as its own."""
    files = _read_marker(Path(directory)).get("files")
    return set(files) if isinstance(files, dict) else set()


def record_output_files(directory: Path, paths: list[Path]) -> None:
    """Add ``paths`` (files just written into ``directory``) with their sha256 to its marker, written last:
    the record of what this output owns, and what a reader checks the files against."""
    marker = _read_marker(directory)
    files = dict(marker.get("files") or {})
    for path in paths:
        files[Path(path).name] = sha256_of_file(Path(path))
    write_marker(directory, {**marker, "files": files})


def recorded_sha256(path: Path) -> str | None:
    """The sha256 that the marker of ``path``'s folder lists for it, if any."""
    expected = (_read_marker(Path(path).parent).get("files") or {}).get(Path(path).name)
    return expected if isinstance(expected, str) else None


def verify_recorded_file(path: Path, required: bool = False) -> None:
    """A file read back is the one its command wrote: when its folder's marker lists it, its sha256 must
    match (a flipped byte in a checkpoint or ``merged.parquet`` otherwise loads and gives wrong answers).
    ``required``: a file with no other check of its own must be listed, by a marker that is intact."""
    path = Path(path)
    expected = recorded_sha256(path)
    if expected is None and required:
        raise OutputError(f"{path}: no intact {MARKER_FILE} beside it lists its sha256, so damage cannot be "
                          "detected; write it again (or copy its whole folder)")
    if expected is not None and path.is_file() and sha256_of_file(path) != expected:
        raise OutputError(f"{path}: does not match the sha256 recorded in {path.parent / MARKER_FILE} when it was "
                          "written (a damaged or replaced file); write it again")


def is_owned_output(directory: Path, kinds: tuple[str, ...]) -> bool:
    """Whether every entry of ``directory`` belongs to an output of one of ``kinds``: its marker, files the
    marker lists, and scaledet temporaries."""
    marker = _read_marker(directory)
    if marker.get("kind") not in kinds or not isinstance(marker.get("files"), dict):
        return False
    return all(entry.name == MARKER_FILE
               or (entry.name in marker["files"] and entry.is_file() and not entry.is_symlink())
               or _temporary_owner(entry.name) is not None
               for entry in directory.iterdir())


def refuse_shadowing(outputs: list[Path], inputs: list[Path], flag: str) -> None:
    """No output file may replace an input file (``predict --out`` in the image folder, say)."""
    sources = {Path(p).resolve() for p in inputs}
    for output in outputs:
        if Path(output).resolve() in sources:
            raise OutputError(f"{flag}: {output} would replace the input file of that name; name another directory")
