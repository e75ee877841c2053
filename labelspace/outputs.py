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
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import OutputError
from .union import Label

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
])


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``final`` only if the block completes."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not final.is_dir():
        raise OutputError(f"{final}: exists and is not a directory")
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.building-", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; the output is an ordinary directory
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    retired = None
    if final.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, retired / "previous")
    os.replace(staging, final)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


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
        directory = Path(directory)
        manifest_path = directory / MANIFEST_FILE
        if not manifest_path.is_file():
            raise OutputError(f"{directory}: not a labelspace build (no {MANIFEST_FILE}; run 'scaledet-labels build --out {directory}')")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except ValueError:
            raise OutputError(f"{manifest_path}: malformed JSON") from None
        if manifest.get("format") != FORMAT:
            raise OutputError(f"{manifest_path}: format {manifest.get('format')!r}, this scaledet reads {FORMAT}")
        for name in (LABELS_FILE, EMBEDDINGS_FILE, SIMILARITY_FILE):
            if not (directory / name).is_file():
                raise OutputError(f"{directory}: incomplete build, {name} is missing")
        labels = pq.read_table(directory / LABELS_FILE)
        embeddings = np.load(directory / EMBEDDINGS_FILE, mmap_mode=None if with_embeddings else "r")
        if embeddings.shape[0] != labels.num_rows:
            raise OutputError(f"{directory}: {EMBEDDINGS_FILE} has {embeddings.shape[0]} rows for {labels.num_rows} labels")
        return cls(directory, manifest, labels, embeddings)

    @property
    def global_ids(self) -> list[str]:
        return self.labels.column("global_id").to_pylist()

    @property
    def datasets(self) -> list[str]:
        return [d["key"] for d in self.manifest["datasets"]]

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
