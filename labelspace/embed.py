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
from .encoders import TextEncoder, l2_normalize
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


def embed_prompt_names(names: list[str], templates: tuple[str, ...], encoder: TextEncoder,
                       cache: EmbeddingCache | None = None, batch_size: int = 128,
                       progress: ProgressFactory | None = None) -> tuple[np.ndarray, EmbedStats]:
    """Embed normalised label names with each template; returns (N × D float32, stats)."""
    identity = encoder.identity
    unique_names = list(dict.fromkeys(names))
    jobs = [(template, name, entry_key(identity, template, name)) for name in unique_names for template in templates]
    cached = cache.lookup(k for _, _, k in jobs) if cache is not None else {}
    missing = [(t, n, k) for t, n, k in jobs if k not in cached]
    vectors = dict(cached)
    if missing:
        texts = [render(t, n) for t, n, _ in missing]
        bar = progress(len(texts)) if progress else None
        encoded = encoder.encode(texts, batch_size=batch_size, progress=bar.update if bar else None)
        if bar:
            bar.close()
        new_keys = [k for _, _, k in missing]
        if cache is not None:
            cache.add(new_keys, encoded)
        vectors.update(zip(new_keys, encoded))
    dim = encoder.dim
    # jobs are name-major, so the (names × templates × D) block is one reshape away
    stacked = np.stack([vectors[k] for _, _, k in jobs]) if jobs else np.zeros((0, dim), np.float32)
    per_name = stacked.reshape(len(unique_names), len(templates), dim).mean(axis=1)
    row_of = {name: row for row, name in enumerate(unique_names)}
    matrix = per_name[[row_of[n] for n in names]] if names else np.zeros((0, dim), np.float32)
    stats = EmbedStats(texts=len(jobs), cache_hits=len(cached), encoded=len(missing),
                       discarded_shards=len(cache.discarded) if cache is not None else 0)
    return l2_normalize(matrix), stats
