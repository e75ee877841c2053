"""Label-label cosine similarity, written as Parquet, read back as a torch tensor.

Schema (docs/outputs.md): one row per stored pair, columns ``i`` (int32, row label index), ``j`` (int32,
column label index), ``sim`` (float32, cosine of the two label embeddings), sorted by ``i`` then by ``sim``
descending for ``topk`` or by ``j`` for ``dense``. The file's key-value metadata ``scaledet`` holds JSON:
``{"kind": "dense" | "topk", "n_labels": N, "k": K | null, "embeddings_sha256": …}``; the last ties the
file to the embeddings it was computed from, so a similarity file copied in from another build is refused.

* ``dense``: every pair, diagonal included (the soft-label targets for a union of a few thousand labels).
* ``topk``: for each label its K most similar labels (itself included), computed block by block so memory
  stays bounded at 100k labels; absent pairs read back as 0.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import atomic_write, atomic_write_text
from .errors import OutputError, ScaledetError, one_line
from .readers import sha256_of_file

#: Bumped when the file layout changes, so cached similarity files of an older layout are not reused.
FILE_VERSION = 2

SCHEMA = pa.schema([("i", pa.int32()), ("j", pa.int32()), ("sim", pa.float32())])
#: Above this many labels ``--similarity auto`` chooses ``topk``: a dense matrix of 20k labels is already
#: 400M pairs (1.6 GB of float32), more than the soft loss needs.
AUTO_DENSE_MAX_LABELS = 20_000
DEFAULT_TOP_K = 64


def resolve_similarity_kind(kind: str, n_labels: int, top_k: int | None) -> tuple[str, int | None]:
    if kind not in ("auto", "dense", "topk"):
        raise ScaledetError(f"--similarity {kind!r}: choose dense, topk or auto")
    if top_k is not None and top_k <= 0:
        raise ScaledetError(f"--top-k {top_k}: must be a positive number of neighbours")
    if kind == "auto":
        kind = "dense" if n_labels <= AUTO_DENSE_MAX_LABELS else "topk"
    if kind == "topk":
        return kind, min(top_k or DEFAULT_TOP_K, n_labels)
    return kind, None


def _blocks(n: int, block_rows: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, block_rows):
        yield start, min(n, start + block_rows)


def dense_blocks(embeddings: np.ndarray, block_rows: int = 1024) -> Iterator[pa.RecordBatch]:
    n = embeddings.shape[0]
    columns = np.arange(n, dtype=np.int32)
    for start, stop in _blocks(n, block_rows):
        block = embeddings[start:stop] @ embeddings.T
        rows = np.repeat(np.arange(start, stop, dtype=np.int32), n)
        yield pa.record_batch([pa.array(rows), pa.array(np.tile(columns, stop - start)),
                               pa.array(block.astype(np.float32).ravel())], schema=SCHEMA)


def topk_blocks(embeddings: np.ndarray, k: int, block_rows: int = 1024) -> Iterator[pa.RecordBatch]:
    """Each row's k nearest labels by cosine, holding only a block_rows × N score matrix at a time."""
    n = embeddings.shape[0]
    for start, stop in _blocks(n, block_rows):
        scores = embeddings[start:stop] @ embeddings.T
        if k < n:
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            top = np.broadcast_to(np.arange(n), scores.shape).copy()
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1).astype(np.int32)
        top_scores = np.take_along_axis(top_scores, order, axis=1).astype(np.float32)
        rows = np.repeat(np.arange(start, stop, dtype=np.int32), top.shape[1])
        yield pa.record_batch([pa.array(rows), pa.array(top.ravel()), pa.array(top_scores.ravel())],
                              schema=SCHEMA)
        del scores


def write_similarity(path: Path, embeddings: np.ndarray, kind: str, k: int | None = None,
                     block_rows: int = 1024, progress: Callable[[int], None] | None = None) -> int:
    """Stream the similarity pairs to ``path``; returns the number of rows written."""
    n = embeddings.shape[0]
    metadata = {b"scaledet": json.dumps({"kind": kind, "n_labels": n, "k": k,
                                         "embeddings_sha256": embeddings_digest(embeddings)}).encode()}
    batches = dense_blocks(embeddings, block_rows) if kind == "dense" else topk_blocks(embeddings, k, block_rows)
    written = 0
    # zstd level 1 without dictionaries: 3× faster to write than the defaults and smaller (the ``sim``
    # floats are near-unique, so dictionary pages only cost time).
    with pq.ParquetWriter(path, SCHEMA.with_metadata(metadata), compression="zstd", compression_level=1,
                          use_dictionary=False) as writer:
        for batch in batches:
            writer.write_batch(batch)
            written += batch.num_rows
            if progress:
                progress(batch.num_rows // (n if kind == "dense" else k))  # labels done in this block
    return written


def embeddings_digest(embeddings: np.ndarray) -> str:
    """sha256 of the float32 bytes of an embedding matrix: the identity of the vectors a file belongs to."""
    return hashlib.sha256(np.ascontiguousarray(embeddings, dtype=np.float32).tobytes()).hexdigest()


def similarity_cache_key(embeddings: np.ndarray, kind: str, k: int | None) -> str:
    digest = hashlib.sha256(f"{FILE_VERSION}|{kind}|{k}|{embeddings.shape}|".encode())
    digest.update(np.ascontiguousarray(embeddings, dtype=np.float32).tobytes())
    return digest.hexdigest()


def write_similarity_cached(path: Path, embeddings: np.ndarray, kind: str, k: int | None = None,
                            progress: Callable[[int], None] | None = None, keep: int = 8) -> int:
    """``write_similarity``, reusing the file of an earlier build with identical embeddings.

    The file is a pure function of (embeddings, kind, k), so a rebuild of an unchanged union copies it
    from ``<cache_root>/similarity/`` instead of recomputing and re-encoding millions of pairs. Cached
    files carry their sha256 and are verified before use; the ``keep`` most recent are kept.
    """
    from .cache_dir import cache_root

    directory = cache_root() / "similarity"
    key = similarity_cache_key(embeddings, kind, k)
    cached, checksum = directory / f"{key}.parquet", directory / f"{key}.sha256"
    reused = _reuse_cached(cached, checksum, path)
    if reused is not None:
        return reused
    rows = write_similarity(path, embeddings, kind, k, progress=progress)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(cached, lambda tmp: shutil.copyfile(path, tmp))
        atomic_write_text(checksum.with_suffix(".rows"), str(rows))
        atomic_write_text(checksum, sha256_of_file(cached))
        for old in sorted(directory.glob("*.parquet"), key=lambda p: p.stat().st_mtime)[:-keep]:
            for suffix in (".parquet", ".sha256", ".rows"):
                old.with_suffix(suffix).unlink(missing_ok=True)
    except (OSError, ScaledetError):
        pass  # the cache is an optimisation; the output file is already complete
    return rows


def _reuse_cached(cached: Path, checksum: Path, path: Path) -> int | None:
    """Copy a verified cached file to ``path`` and return its row count; None (recompute) when the entry
    is missing, damaged in any of its three files, or unreadable: a bad cache never fails a build."""
    if not (cached.is_file() and checksum.is_file()):
        return None
    try:
        if sha256_of_file(cached) != checksum.read_text().strip():
            raise ValueError("checksum mismatch")
        rows = json.loads(checksum.with_suffix(".rows").read_text())
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise ValueError("bad row count")
        shutil.copyfile(cached, path)
        os.utime(cached)
        return rows
    except (OSError, ValueError, UnicodeDecodeError) as err:
        print(f"warning: cached similarity file {cached} is damaged ({one_line(err)}); recomputing", file=sys.stderr)
        for suffix in (".parquet", ".sha256", ".rows"):
            try:
                cached.with_suffix(suffix).unlink(missing_ok=True)
            except OSError:
                pass
        return None


def read_similarity_meta(path: Path) -> dict:
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException) as err:
        raise OutputError(f"{path}: not a readable Parquet file ({one_line(err)})") from None
    if b"scaledet" not in metadata:
        raise OutputError(f"{path}: not a scaledet similarity file (no 'scaledet' metadata)")
    try:
        meta = json.loads(metadata[b"scaledet"])
    except (ValueError, UnicodeDecodeError):
        meta = None
    if (not isinstance(meta, dict) or meta.get("kind") not in ("dense", "topk")
            or isinstance(meta.get("n_labels"), bool) or not isinstance(meta.get("n_labels"), int)):
        raise OutputError(f"{path}: damaged 'scaledet' metadata in the similarity file")
    return meta


class SimilarityMatrix:
    """The label-label similarities aligned with the label index, as torch tensors.

    The detector only asks for the rows of the labels assigned to its regions (``rows``), which works
    the same for the dense and the top-k file; ``dense()`` materialises all of it for small unions.
    """

    def __init__(self, kind: str, n_labels: int, i: np.ndarray, j: np.ndarray, sim: np.ndarray,
                 k: int | None = None) -> None:
        import torch

        self.kind, self.n_labels, self.k = kind, n_labels, k
        if kind == "dense":
            matrix = np.zeros((n_labels, n_labels), dtype=np.float32)
            matrix[i, j] = sim
            self._dense = torch.from_numpy(matrix)
            self._sparse = None
        else:
            self._dense = None
            import warnings

            indices = torch.from_numpy(np.stack([i, j]).astype(np.int64))
            with warnings.catch_warnings():  # CSR is marked beta; row slicing is all that is used here
                warnings.simplefilter("ignore", UserWarning)
                coo = torch.sparse_coo_tensor(indices, torch.from_numpy(sim), (n_labels, n_labels)).coalesce()
                self._sparse = coo.to_sparse_csr()

    @classmethod
    def load(cls, path: str | Path) -> "SimilarityMatrix":
        path = Path(path)
        meta = read_similarity_meta(path)
        try:
            table = pq.read_table(path, columns=["i", "j", "sim"])
        except (OSError, pa.ArrowException) as err:
            raise OutputError(f"{path}: not a readable similarity file ({one_line(err)})") from None
        i = table.column("i").to_numpy()
        j = table.column("j").to_numpy()
        sim = table.column("sim").to_numpy()
        n = int(meta["n_labels"])
        if len(i) and (i.max() >= n or j.max() >= n or min(i.min(), j.min()) < 0):
            raise OutputError(f"{path}: indices outside 0..{n - 1}")
        if meta["kind"] == "dense" and len(i) != n * n:
            raise OutputError(f"{path}: dense file has {len(i)} rows, expected {n}×{n}")
        return cls(meta["kind"], n, i, j, sim, meta.get("k"))

    def rows(self, indices):
        """(len(indices) × N) float32 tensor of the similarities of the given labels to all labels."""
        import torch

        if self._dense is not None:
            return self._dense.index_select(0, indices.cpu()).to(indices.device)
        selected = [self._sparse[int(r)].to_dense() for r in indices.cpu()]
        if not selected:
            return torch.zeros((0, self.n_labels))
        return torch.stack(selected).to(indices.device)

    def dense(self):
        return self._dense if self._dense is not None else self._sparse.to_dense()

