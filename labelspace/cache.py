"""A content-addressed cache of prompt embeddings.

Key = sha256(encoder identity, template, prompt text). The identity includes the weights' sha256, so a
new checkpoint never meets old vectors. Entries live in append-only *shards* under
``<cache_root>/embeddings/<identity digest>/``: each shard is an ``.npz`` holding ``keys``, ``vectors`` and a
``meta`` record (identity, dimension, row count, sha256 of the vectors). A shard whose meta does not match
the encoder or whose checksum fails is reported, deleted and its texts re-encoded: a corrupt cache is
never silently used. Shards are written to a temporary name and renamed, so an interrupted build leaves
only whole shards behind; the build adds a shard after every chunk it encodes, so a killed cold build
resumes where it stopped.

The cache is optional: a damaged shard of any kind is discarded, and a cache directory that cannot be
written (read-only, full) is reported once and the build goes on without it.
"""
from __future__ import annotations

import hashlib
import json
import sys
import uuid
from pathlib import Path
from typing import Iterable

import numpy as np

from .io.atomic import atomic_write
from .io.cache_dir import cache_root
from .io.errors import ScaledetError, one_line
from .io.temporaries import remove_stale_temporaries

#: More shards than this are merged into one on the next write, keeping start-up reads few and large.
MAX_SHARDS = 32


def entry_key(identity: str, template: str, text: str) -> str:
    return hashlib.sha256("\x1f".join((identity, template, text)).encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Vectors of one encoder identity, loaded lazily from its shard directory."""

    def __init__(self, identity: str, dim: int, root: Path | None = None) -> None:
        self.identity = identity
        self.dim = dim
        digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:24]
        self.directory = (root or cache_root()) / "embeddings" / digest
        self._index: dict[str, tuple[int, int]] | None = None
        self._vectors: list[np.ndarray] = []
        self.discarded: list[str] = []
        self.writable = True
        self._swept = False  # leftovers of killed builds are removed once, before the first write

    # ------------------------------------------------------------------ reading
    def _load(self) -> dict[str, tuple[int, int]]:
        if self._index is not None:
            return self._index
        self._index = {}
        self._vectors = []
        try:
            shards = sorted(self.directory.glob("shard-*.npz")) if self.directory.is_dir() else []
        except OSError:
            shards = []
        for shard in shards:
            loaded = self._read_shard(shard)
            if loaded is None:
                continue
            keys, vectors = loaded
            shard_number = len(self._vectors)
            self._vectors.append(vectors)
            for row, key in enumerate(keys):
                self._index[key] = (shard_number, row)
        return self._index

    def _read_shard(self, shard: Path) -> tuple[list[str], np.ndarray] | None:
        try:
            with np.load(shard, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                keys = [str(k) for k in data["keys"]]
                vectors = np.ascontiguousarray(data["vectors"], dtype=np.float32)
        except Exception as err:  # noqa: BLE001 - any failure to parse a cache file means it is damaged
            self._discard(shard, f"unreadable ({type(err).__name__})")
            return None
        if not isinstance(meta, dict):
            self._discard(shard, "missing its metadata")
            return None
        problem = None
        if meta.get("identity") != self.identity:
            problem = "made by another encoder"
        elif vectors.ndim != 2 or vectors.shape != (len(keys), self.dim) or meta.get("rows") != len(keys):
            problem = f"shape {vectors.shape} does not match {len(keys)} keys × {self.dim} dims"
        elif hashlib.sha256(vectors.tobytes()).hexdigest() != meta.get("vectors_sha256"):
            problem = "checksum mismatch"
        elif not np.all(np.isfinite(vectors)):
            problem = "non-finite values"
        if problem:
            self._discard(shard, problem)
            return None
        return keys, vectors

    def _discard(self, shard: Path, reason: str) -> None:
        print(f"warning: embedding cache shard {shard} is {reason}; discarding it and re-encoding its texts",
              file=sys.stderr)
        self.discarded.append(str(shard))
        try:
            shard.unlink()
        except OSError:
            pass

    def lookup(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """Vectors for the keys that are cached (missing keys are simply absent)."""
        index = self._load()
        found = {}
        for key in keys:
            where = index.get(key)
            if where is not None:
                found[key] = self._vectors[where[0]][where[1]]
        return found

    def __len__(self) -> int:
        return len(self._load())

    # ------------------------------------------------------------------ writing
    def add(self, keys: list[str], vectors: np.ndarray) -> None:
        """Persist new entries as one shard (merging all shards when there are too many). A cache that
        cannot be written is reported once and left alone: the build never fails because of it."""
        if not keys or not self.writable:
            return
        try:
            self._add(keys, np.ascontiguousarray(vectors, dtype=np.float32))
        except (OSError, ScaledetError) as err:
            self.writable = False
            print(f"warning: embedding cache {self.directory} cannot be written ({one_line(err)}); "
                  "continuing without caching", file=sys.stderr)

    def _add(self, keys: list[str], vectors: np.ndarray) -> None:
        index = self._load()
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self._swept:
            remove_stale_temporaries(self.directory)
            self._swept = True
        existing = sorted(self.directory.glob("shard-*.npz"))
        if len(existing) + 1 > MAX_SHARDS:
            all_keys = list(index) + keys
            all_vectors = np.concatenate([self.lookup_matrix(list(index)), vectors])
            self._write_shard(all_keys, all_vectors)
            for shard in existing:
                shard.unlink(missing_ok=True)
            self._index = None
            return
        self._write_shard(keys, vectors)
        shard_number = len(self._vectors)
        self._vectors.append(vectors)
        for row, key in enumerate(keys):
            index[key] = (shard_number, row)

    def lookup_matrix(self, keys: list[str]) -> np.ndarray:
        found = self.lookup(keys)
        return np.stack([found[k] for k in keys]) if keys else np.zeros((0, self.dim), np.float32)

    def _write_shard(self, keys: list[str], vectors: np.ndarray) -> None:
        meta = {
            "identity": self.identity,
            "dim": self.dim,
            "rows": len(keys),
            "vectors_sha256": hashlib.sha256(vectors.tobytes()).hexdigest(),
        }
        name = f"shard-{len(list(self.directory.glob('shard-*.npz'))):05d}-{uuid.uuid4().hex[:8]}"
        atomic_write(self.directory / f"{name}.npz",
                     lambda tmp: np.savez(tmp, keys=np.array(keys), vectors=vectors, meta=np.array(json.dumps(meta))))
