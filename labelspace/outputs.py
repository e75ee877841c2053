"""The build output directory: the contract every other part of scaledet reads (docs/outputs.md).

``DIR/labels.parquet``      one row per label, row order = label index
``DIR/embeddings.npy``      N × D float32, L2-normalised, row i = label index i
``DIR/similarity.parquet``  label-label cosine similarity (see ``similarity.py``)
``DIR/manifest.json``       datasets (source, sha256, count), encoder, templates, versions

Writes are atomic at the directory level: everything is written into a fresh sibling directory, which
then replaces ``DIR`` by rename. A build that fails or is interrupted leaves the previous ``DIR`` intact.
"""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from .io.errors import OutputError, one_line, os_error_words
from .io.parquet_files import read_parquet
from .union import Label
from .io.sealed_json import is_sealed, seal

FORMAT = "scaledet.labelspace/1"
LABELS_FILE = "labels.parquet"
EMBEDDINGS_FILE = "embeddings.npy"
SIMILARITY_FILE = "similarity.parquet"
MANIFEST_FILE = "manifest.json"

LABELS_SCHEMA = pa.schema([
    ("index", pa.int32()),
    ("global_id", pa.string()),
    ("dataset", pa.string()),
    ("local_id", pa.string()),
    ("name", pa.string()),
    ("prompt", pa.string()),
    ("synonyms", pa.list_(pa.string())),
    ("definition", pa.string()),
    ("parent", pa.list_(pa.string())),
    ("part_of", pa.list_(pa.string())),
    ("synset", pa.string()),
    ("frequency", pa.string()),
    ("supercategory", pa.string()),
])
#: Columns added after the first release: builds made before them load with the column all null.
OPTIONAL_LABEL_COLUMNS = ("supercategory",)


#: What a build directory holds; anything else in it (but scaledet outputs made from the build, such as
#: ``graph/``, ``exports/``, ``report/``, holding only files their markers list) is the user's and stops a
#: rebuild from replacing the directory.
BUILD_FILES = (LABELS_FILE, EMBEDDINGS_FILE, SIMILARITY_FILE, MANIFEST_FILE)


def foreign_entries(directory: Path) -> list[Path]:
    """Entries of a build directory that a rebuild may not remove: anything but the build's own files,
    scaledet temporaries, and outputs made from the build (graph, merge, exports, report) whose every file
    their marker lists. A file a user put into ``graph/`` makes ``graph/`` foreign; so does a run or a
    prediction folder placed inside the build."""
    from .io.output_dirs import BUILD_DERIVED_KINDS, _temporary_owner, is_owned_output

    foreign = []
    for entry in sorted(directory.iterdir()):
        if entry.name in BUILD_FILES and entry.is_file() and not entry.is_symlink():
            continue
        if _temporary_owner(entry.name) is not None:
            continue
        if entry.is_dir() and not entry.is_symlink() and is_owned_output(entry, BUILD_DERIVED_KINDS):
            continue
        foreign.append(entry)
    return foreign


def check_build_out(out: Path, force: bool = False, inputs: tuple[Path, ...] = ()) -> Path:
    """The directory ``build --out`` may replace: missing, empty, or an earlier build holding nothing of
    the user's; anything else only with ``--force``; never one that holds the build's own input files
    (``inputs``), which replacing it would delete. Returns the real path (a symlink's target)."""
    from .io.output_dirs import BUILD_KIND, check_output_dir, check_replaceable

    final = check_output_dir(out, BUILD_KIND, "--out", force, inputs=inputs)
    check_replaceable(final, "--out")
    if final.is_dir() and not force:
        foreign = foreign_entries(final)
        if foreign:
            raise OutputError(f"--out {out}: the earlier build holds {foreign[0].name!r}, which neither the build "
                              "nor a command made from it wrote; move it away or add --force to replace the whole "
                              "directory")
    return final


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``final`` only if the block completes.

    Staging and retired folders are siblings named ``.NAME.building-<pid>-<nonce>-<token>`` and
    ``.NAME.old-…`` (:func:`~.output_dirs.make_temporary_dir`); those of killed runs are removed here, before a
    new one is made."""
    from .io.temporaries import make_temporary_dir, remove_stale_temporaries

    final = Path(final)
    if final.is_symlink():
        final = final.resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not final.is_dir():
        raise OutputError(f"{final}: exists and is not a directory")
    remove_stale_temporaries(final.parent, prefix=f".{final.name}.")
    staging = make_temporary_dir(final, "building")
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    retired = None
    try:
        if final.exists():
            retired = make_temporary_dir(final, "old")
            os.replace(final, retired / "previous")
        os.replace(staging, final)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        if retired is not None and (retired / "previous").exists() and not final.exists():
            os.replace(retired / "previous", final)
        raise OutputError(f"{final}: cannot be replaced ({os_error_words(err)})") from None
    finally:
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)


@contextmanager
def whole_output(destination: Path, kind: str, keep_recorded: bool = False, **details) -> Iterator[Path]:
    """Yield a staging folder whose files replace ``destination`` as a whole when the block completes, so a
    reader (or a killed run) never sees files of two runs side by side: an export's ``.npy`` beside another
    export's ``.labels.txt``, or a new ``merged.parquet`` beside an old ``unified.csv``.

    ``keep_recorded``: the files ``destination``'s marker records (an export folder holds several exports)
    are carried over into the staging folder first, hard-linked where the file system allows. A folder that
    holds anything scaledet did not write (``--force``) is written into in place instead, file by file."""
    from .io.output_dirs import _read_marker, is_owned_output, mark_output_dir, write_marker

    in_use = destination.resolve() == Path.cwd().resolve()  # swapping it would pull the folder from under you
    if in_use or (destination.is_dir() and any(destination.iterdir()) and not is_owned_output(destination, (kind,))):
        # the current folder (``--out .``), or a folder that also holds files of yours (written into with
        # --force): neither is moved or removed, so the files are written in place, each atomically
        mark_output_dir(destination, kind, **details)
        yield destination
        return
    previous = _read_marker(destination) if keep_recorded else {}
    with atomic_directory(destination) as staging:
        if previous.get("kind") == kind:
            for name in previous.get("files") or {}:
                source = destination / name
                if source.is_file() and not source.is_symlink() and "/" not in name:
                    try:
                        os.link(source, staging / name)
                    except OSError:
                        shutil.copy2(source, staging / name)
            write_marker(staging, previous)
        mark_output_dir(staging, kind, **details)
        yield staging


def labels_table(labels: list[Label], templates: tuple[str, ...]) -> pa.Table:
    first = templates[0]
    return pa.Table.from_pylist([
        {
            "index": label.index,
            "global_id": label.global_id,
            "dataset": label.dataset,
            "local_id": label.local_id,
            "name": label.name,
            "prompt": first.replace("{}", label.prompt_name),
            "synonyms": list(label.synonyms),
            "definition": label.definition,
            "parent": list(label.parents),
            "part_of": list(label.part_of),
            "synset": label.synset,
            "frequency": label.frequency,
            "supercategory": label.supercategory,
        }
        for label in labels
    ], schema=LABELS_SCHEMA)


@dataclass
class LabelSpaceOutput:
    """A build directory, read back. ``labels`` is a pyarrow Table in index order."""

    directory: Path
    manifest: dict
    labels: pa.Table
    embeddings: np.ndarray

    @classmethod
    def load(cls, directory: str | Path, with_embeddings: bool = True) -> "LabelSpaceOutput":
        """Read a build, checking each file against the manifest: a damaged, truncated or mismatched
        file is a one-line :class:`OutputError` naming it, never a library traceback."""
        directory = Path(directory)
        manifest_path = directory / MANIFEST_FILE
        if not manifest_path.is_file():
            raise OutputError(f"{directory}: not a labelspace build (no {MANIFEST_FILE}; run 'scaledet-labels build --out {directory}')")
        manifest = read_manifest(manifest_path)
        for name in (LABELS_FILE, EMBEDDINGS_FILE, SIMILARITY_FILE):
            if not (directory / name).is_file():
                raise OutputError(f"{directory}: incomplete build, {name} is missing")
        _check_file_digests(directory, manifest, (LABELS_FILE,))
        labels = _read_labels(directory / LABELS_FILE)
        embeddings = _read_embeddings(directory / EMBEDDINGS_FILE, with_embeddings)
        n = manifest["n_labels"]
        if labels.num_rows != n:
            raise OutputError(f"{directory / LABELS_FILE}: {labels.num_rows} rows, the manifest says {n} labels")
        if embeddings.shape != (n, manifest["encoder"]["dim"]):
            raise OutputError(f"{directory / EMBEDDINGS_FILE}: shape {embeddings.shape}, the manifest says "
                              f"{n} × {manifest['encoder']['dim']}")
        expected = _embeddings_sha256(manifest)
        if with_embeddings and expected:
            from .similarity import embeddings_digest

            if embeddings_digest(embeddings) != expected:
                raise OutputError(f"{directory / EMBEDDINGS_FILE}: checksum does not match the manifest (a damaged "
                                  "or replaced file; rebuild)")
        _check_similarity_belongs(directory / SIMILARITY_FILE, manifest)  # the clearer message first
        _check_file_digests(directory, manifest, (SIMILARITY_FILE,))
        return cls(directory, manifest, labels, embeddings)

    @property
    def global_ids(self) -> list[str]:
        return self.labels.column("global_id").to_pylist()

    @property
    def datasets(self) -> list[str]:
        return [d["key"] for d in self.manifest["datasets"]]

    @property
    def embeddings_sha256(self) -> str | None:
        """The checksum of ``embeddings.npy`` the manifest records (None for builds made before it was)."""
        return _embeddings_sha256(self.manifest)

    @property
    def encoder_identity(self) -> str:
        return self.manifest["encoder"]["identity"]

    def similarity(self):
        from .similarity import SimilarityMatrix

        return SimilarityMatrix.load(self.directory / SIMILARITY_FILE)

    def dataset_indices(self, dataset: str) -> np.ndarray:
        """Label indices of one dataset, in its category order."""
        column = np.asarray(self.labels.column("dataset").to_pylist())
        return np.flatnonzero(column == dataset)


#: Manifest keys every reader relies on, with the type each must have.
_MANIFEST_KEYS = {"n_labels": int, "datasets": list, "encoder": dict, "templates": list, "similarity": dict}


MANIFEST_DIGEST_KEY = "manifest_sha256"


def with_manifest_digest(manifest: dict) -> dict:
    """The manifest with the digest it carries: one changed byte of a template changes every exported
    vocabulary, and nothing else in the build would notice."""
    return seal(manifest, MANIFEST_DIGEST_KEY)


def read_manifest(path: Path) -> dict:
    """A build's manifest, checked against the digest it carries before any of its keys is used."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise OutputError(f"{path}: malformed JSON") from None
    if not isinstance(manifest, dict):
        raise OutputError(f"{path}: a manifest is a JSON object, found {type(manifest).__name__}")
    carried = manifest.get(MANIFEST_DIGEST_KEY)
    if carried is None:
        raise OutputError(f"{path}: carries no {MANIFEST_DIGEST_KEY}, so damage to it cannot be detected (a build "
                          "of an earlier scaledet); build it again")
    if not is_sealed(manifest, MANIFEST_DIGEST_KEY):
        raise OutputError(f"{path}: does not match the {MANIFEST_DIGEST_KEY} it carries (a damaged or edited "
                          "manifest); build it again")
    if manifest.get("format") != FORMAT:
        raise OutputError(f"{path}: format {manifest.get('format')!r}, this scaledet reads {FORMAT}")
    for key, kind in _MANIFEST_KEYS.items():
        value = manifest.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise OutputError(f"{path}: '{key}' is missing or not a {kind.__name__}")
    encoder = manifest["encoder"]
    if not all(isinstance(encoder.get(k), str) for k in ("name", "identity")) or not isinstance(encoder.get("dim"), int):
        raise OutputError(f"{path}: 'encoder' needs name, identity and dim")
    for position, dataset in enumerate(manifest["datasets"]):
        if not isinstance(dataset, dict) or not all(k in dataset for k in ("key", "source", "format", "count")):
            raise OutputError(f"{path}: datasets[{position}] needs key, source, format and count")
    if not all(isinstance(t, str) for t in manifest["templates"]) or not manifest["templates"]:
        raise OutputError(f"{path}: 'templates' must be a non-empty list of text")
    return manifest


def _embeddings_sha256(manifest: dict) -> str | None:
    """The embeddings checksum a manifest records (builds made before it was recorded have none)."""
    embeddings = manifest.get("embeddings")
    return embeddings.get("sha256") if isinstance(embeddings, dict) else None


def _read_labels(path: Path) -> pa.Table:
    try:
        labels = read_parquet(path)
        labels.validate(full=True)  # every string valid UTF-8, every offset in range: a flipped byte shows here
        names = list(labels.column_names)
    except Exception as err:  # noqa: BLE001 - a damaged file surfaces as Arrow, OS or Unicode errors
        raise OutputError(f"{path}: not a readable Parquet file ({one_line(err)})") from None
    missing = [name for name in LABELS_SCHEMA.names if name not in names and name not in OPTIONAL_LABEL_COLUMNS]
    if missing:
        raise OutputError(f"{path}: no '{missing[0]}' column (not a scaledet labels file)")
    for name in OPTIONAL_LABEL_COLUMNS:
        if name not in names:
            labels = labels.append_column(LABELS_SCHEMA.field(name), pa.nulls(labels.num_rows, pa.string()))
    return labels


def _read_embeddings(path: Path, in_memory: bool) -> np.ndarray:
    try:
        embeddings = np.load(path, mmap_mode=None if in_memory else "r", allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - numpy parses the header with ast: a damaged one raises anything
        raise OutputError(f"{path}: not a readable .npy file ({one_line(err)})") from None
    if embeddings.ndim != 2 or embeddings.dtype != np.float32:
        raise OutputError(f"{path}: expected a 2-d float32 array, found {embeddings.ndim}-d {embeddings.dtype}")
    return embeddings


def _check_file_digests(directory: Path, manifest: dict, names: tuple[str, ...]) -> None:
    """``labels.parquet`` and ``similarity.parquet`` against the sha256 the manifest records (builds made
    before it did record nothing and are not checked): one flipped byte can otherwise load cleanly, as
    ``coco/sasep`` or as wrong soft-loss targets."""
    from .io.digests import sha256_of_file

    files = manifest.get("files")
    if not isinstance(files, dict):
        return
    for name in names:
        expected = files.get(name)
        if isinstance(expected, str) and sha256_of_file(directory / name) != expected:
            raise OutputError(f"{directory / name}: does not match the sha256 in {MANIFEST_FILE} (a damaged or "
                              "replaced file; rebuild)")


def _check_similarity_belongs(path: Path, manifest: dict) -> None:
    """The similarity file must be this build's: same label count, and (for files that record it) made
    from the same embeddings."""
    from .similarity import read_similarity_meta

    meta = read_similarity_meta(path)
    if meta["n_labels"] != manifest["n_labels"]:
        raise OutputError(f"{path}: has {meta['n_labels']} labels, the build has {manifest['n_labels']} "
                          "(a similarity file from another build)")
    expected = _embeddings_sha256(manifest)
    found = meta.get("embeddings_sha256")
    if expected and found and expected != found:
        raise OutputError(f"{path}: computed from other embeddings than this build's (a similarity file "
                          "from another build)")
