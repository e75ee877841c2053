"""Label-label cosine similarity, written as Parquet, read back as a torch tensor.

Schema (docs/outputs.md): one row per stored pair, columns ``i`` (int32, row label index), ``j`` (int32,
column label index), ``sim`` (float32, cosine of the two label embeddings), sorted by ``i`` then by ``sim``
descending for ``topk`` or by ``j`` for ``dense``. The file's key-value metadata ``scaledet`` holds JSON:
``{"kind": "dense" | "topk", "n_labels": N, "k": K | null, "embeddings_sha256": …}``; the last ties the
file to the embeddings it was computed from, so a similarity file copied in from another build is refused.

* ``dense``: every pair, diagonal included (the soft-label targets for a union of a few thousand labels).
* ``topk``: for each label its K most similar labels (itself included), computed tile by tile over the
  upper triangle of the symmetric score matrix, so memory is linear in N (100k labels: ``benchmarks/similarity.py``);
  absent pairs read back as 0.
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

from .io.atomic import atomic_write, atomic_write_text
from .io.errors import OutputError, ScaledetError, one_line
from .io.parquet_files import read_parquet
from .io.temporaries import remove_stale_temporaries
from .io.digests import sha256_of_file

#: Bumped when the file layout changes, so cached similarity files of an older layout are not reused.
FILE_VERSION = 3

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


#: Rows × columns of one score tile of the top-k pass (4 MiB of float32). Measured on 100k MiniLM vectors
#: with 2 threads: 1024 → 35 s, 2048 → 41 s, 4096 → 47 s, 512 → 51 s; smaller tiles let more rows skip
#: the top-k (see ``_merge_topk``) until the per-tile overhead wins.
TOPK_TILE = 1024


def topk_blocks(embeddings: np.ndarray, k: int, block_rows: int = TOPK_TILE) -> Iterator[pa.RecordBatch]:
    """Each row's k nearest labels by cosine (itself included), one record batch per block of rows.

    The score matrix E·Eᵀ is symmetric, so only its upper triangle of tiles is computed: tile (a, b) with
    b ≥ a updates the running top-k of the rows of block a from its rows and those of block b from its
    columns. That halves the matrix products, which are nearly all of the time. Block a is final once the
    outer pass over a is done (the tiles (a', a), a' < a, came earlier), so it is written then: memory is
    one tile plus the running N × k lists, linear in N.
    """
    import torch

    n = embeddings.shape[0]
    vectors = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
    best_scores = torch.full((n, k), -float("inf"))
    best_index = torch.zeros((n, k), dtype=torch.int64)
    starts = list(_blocks(n, block_rows))
    with torch.inference_mode():
        for a, (a0, a1) in enumerate(starts):
            for b0, b1 in starts[a:]:
                tile = vectors[a0:a1] @ vectors[b0:b1].T
                _merge_topk(best_scores, best_index, a0, tile, b0, k)
                if b0 != a0:
                    _merge_topk(best_scores, best_index, b0, tile.T, a0, k)
            # every row met its own block's diagonal tile, so ``_merge_topk`` left it sorted best first
            rows = np.repeat(np.arange(a0, a1, dtype=np.int32), k)
            yield pa.record_batch([pa.array(rows), pa.array(best_index[a0:a1].to(torch.int32).numpy().ravel()),
                                   pa.array(best_scores[a0:a1].numpy().ravel())], schema=SCHEMA)


def _merge_topk(best_scores, best_index, row_offset: int, tile, column_offset: int, k: int) -> None:
    """Fold ``tile`` (rows from ``row_offset``, columns from ``column_offset`` of the score matrix) into
    the running top-k of its rows, kept sorted best first.

    Only rows whose best score in the tile beats their current k-th best can change; finding them is a
    cheap max, and after the first few tiles it is a small share of the rows. That matters most for the
    transposed tile, whose top-k reads memory across the grain."""
    import torch

    candidates = (tile.amax(dim=1) > best_scores[row_offset:row_offset + tile.shape[0], k - 1]).nonzero().squeeze(1)
    if candidates.numel() == 0:
        return
    rows = candidates + row_offset
    part = tile.index_select(0, candidates) if candidates.numel() < tile.shape[0] else tile.contiguous()
    scores, index = part.topk(min(k, tile.shape[1]), dim=1)
    merged_scores = torch.cat([best_scores[rows], scores], dim=1)
    merged_index = torch.cat([best_index[rows], index + column_offset], dim=1)
    keep_scores, keep = merged_scores.topk(k, dim=1)
    best_scores[rows] = keep_scores
    best_index[rows] = merged_index.gather(1, keep)


def write_similarity(path: Path, embeddings: np.ndarray, kind: str, k: int | None = None,
                     block_rows: int | None = None, progress: Callable[[int], None] | None = None) -> int:
    """Stream the similarity pairs to ``path``; returns the number of rows written."""
    n = embeddings.shape[0]
    metadata = {b"scaledet": json.dumps({"kind": kind, "n_labels": n, "k": k,
                                         "embeddings_sha256": embeddings_digest(embeddings)}).encode()}
    if kind == "dense":
        batches = dense_blocks(embeddings, block_rows or 1024)
    else:
        batches = topk_blocks(embeddings, k, block_rows or TOPK_TILE)
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
    from .io.cache_dir import cache_root

    directory = cache_root() / "similarity"
    key = similarity_cache_key(embeddings, kind, k)
    cached, checksum = directory / f"{key}.parquet", directory / f"{key}.sha256"
    reused = _reuse_cached(cached, checksum, path)
    if reused is not None:
        return reused
    rows = write_similarity(path, embeddings, kind, k, progress=progress)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(directory)  # a copy a killed build left half-written (up to GBs)
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
    except (OSError, ValueError, pa.ArrowException) as err:  # a flipped byte in a column name: UnicodeDecodeError
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
            table = read_parquet(path, columns=["i", "j", "sim"])
        except (OSError, ValueError, pa.ArrowException) as err:
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

