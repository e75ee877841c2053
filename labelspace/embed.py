"""Prompt embeddings for a list of labels, through the cache.

A label's embedding is the L2-normalised mean of its prompts' embeddings over the templates (one template
by default, so then it is just that prompt's embedding). Only texts missing from the cache reach the
encoder, so the model is not even loaded when everything is cached.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .cache import EmbeddingCache, entry_key
from .encoders import TextEncoder
from .prompts import render

ProgressFactory = Callable[[int], "ProgressBar"]


class ProgressBar:
    """Minimal interface the embedder needs from a progress display."""

    def update(self, n: int) -> None: ...

    def close(self) -> None: ...


@dataclass
class EmbedStats:
    texts: int
    cache_hits: int
    encoded: int
    discarded_shards: int


#: A cold build writes a cache shard at least this often (in texts) and at most ~16 times in all.
MIN_CHUNK_TEXTS = 512


def _chunk_size(total: int, batch_size: int) -> int:
    size = max(MIN_CHUNK_TEXTS, -(-total // 16))
    return -(-size // batch_size) * batch_size  # whole batches, so chunking never changes a batch


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def embed_prompt_names(names: list[str], templates: tuple[str, ...], encoder: TextEncoder,
                       cache: EmbeddingCache | None = None, batch_size: int | None = None,
                       progress: ProgressFactory | None = None) -> tuple[np.ndarray, EmbedStats]:
    """Embed normalised label names with each template; returns (N × D float32, stats). ``batch_size``
    None: the encoder device's default, decided only when something must be encoded (a fully cached
    build never imports torch)."""
    identity = encoder.identity
    unique_names = list(dict.fromkeys(names))
    jobs = [(template, name, entry_key(identity, template, name)) for name in unique_names for template in templates]
    cached = cache.lookup(k for _, _, k in jobs) if cache is not None else {}
    missing = [(t, n, k) for t, n, k in jobs if k not in cached]
    vectors = dict(cached)
    if missing:
        if batch_size is None:
            from .encoders import default_batch_size

            batch_size = default_batch_size(getattr(encoder, "device", "cpu"))
        bar = progress(len(missing)) if progress else None
        for chunk in _chunks(missing, _chunk_size(len(missing), batch_size)):
            encoded = encoder.encode([render(t, n) for t, n, _ in chunk], batch_size=batch_size,
                                     progress=bar.update if bar else None)
            chunk_keys = [k for _, _, k in chunk]
            if cache is not None:
                cache.add(chunk_keys, encoded)  # as we go: a killed build resumes from here
            vectors.update(zip(chunk_keys, encoded))
        if bar:
            bar.close()
    stats = EmbedStats(texts=len(jobs), cache_hits=len(cached), encoded=len(missing),
                       discarded_shards=len(cache.discarded) if cache is not None else 0)
    # One N × D matrix, filled and normalised in place: at 100k labels every extra copy is 150 MB, and
    # stacking, averaging, reordering and normalising as separate arrays once made this the build's peak.
    per_name = np.zeros((len(unique_names), encoder.dim), dtype=np.float32)
    for position, (_, _, key) in enumerate(jobs):  # name-major: templates of one name are adjacent
        per_name[position // len(templates)] += vectors[key]
    del vectors, cached
    per_name /= np.maximum(np.linalg.norm(per_name, axis=1, keepdims=True), 1e-12)
    if len(unique_names) == len(names):
        return per_name, stats  # names were unique, so unique_names is names in the same order
    row_of = {name: row for row, name in enumerate(unique_names)}
    return per_name[[row_of[n] for n in names]], stats
