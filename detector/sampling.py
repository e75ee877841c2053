"""Which images go into each training batch, as a pure function of (seed, rank, iteration).

Deriving every batch from its iteration number (not from a running generator) makes ``--resume``
continue with exactly the batches an uninterrupted run would have seen, on any number of processes.

* ``per_dataset``: each batch comes from one dataset, chosen with the configured ratios (UniDet-style
  dataset-aware batches: one label space per batch).
* ``mixed``: each image independently picks its dataset by ratio.
Within a dataset, images are uniform, or weighted by LVIS-style **repeat factors**
``r(I) = max_c max(1, sqrt(t / f(c)))`` where ``f(c)`` is the fraction of the dataset's images containing
label ``c`` and ``t`` the threshold (0.001 in LVIS).
"""
from __future__ import annotations

import hashlib
import math

import torch

from .config_types import SAMPLING_MODES


def stable_seed(*parts: int | str) -> int:
    """A seed from its parts that is the same in every process and run (Python's ``hash`` of text is
    randomised per process, so it cannot be used here)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def repeat_factors(image_labels: list, threshold: float) -> torch.Tensor:
    """``r(I)`` for each image, given each image's labels (an array of union indices per image)."""
    counts: dict[int, int] = {}
    for labels in image_labels:
        for label in set(labels.tolist()):
            counts[label] = counts.get(label, 0) + 1
    total = len(image_labels)
    category_factor = {c: max(1.0, math.sqrt(threshold / (n / total))) for c, n in counts.items()}
    return torch.tensor([max((category_factor[c] for c in set(labels.tolist())), default=1.0)
                         for labels in image_labels])


class MultiDatasetBatchSampler:
    """Yields lists of (dataset index, image index) for iteration ``i`` on process ``rank``."""

    def __init__(self, dataset_sizes: list[int], ratios: list[float], batch_size: int, mode: str = "per_dataset",
                 seed: int = 0, rank: int = 0, image_weights: list[torch.Tensor | None] | None = None) -> None:
        if mode not in SAMPLING_MODES:
            raise ValueError(f"sampling mode must be one of {SAMPLING_MODES}")
        self.sizes = dataset_sizes
        self.ratios = torch.tensor(ratios, dtype=torch.float64)
        self.batch_size = batch_size
        self.mode = mode
        self.seed = seed
        self.rank = rank
        self.weights = image_weights or [None] * len(dataset_sizes)

    def generator(self, iteration: int) -> torch.Generator:
        return torch.Generator().manual_seed(stable_seed("batch", self.seed, self.rank, iteration))

    def batch(self, iteration: int) -> list[tuple[int, int]]:
        generator = self.generator(iteration)
        if self.mode == "per_dataset":
            chosen = torch.multinomial(self.ratios, 1, generator=generator).repeat(self.batch_size)
        else:
            chosen = torch.multinomial(self.ratios, self.batch_size, replacement=True, generator=generator)
        picks = []
        for dataset in chosen.tolist():
            weights = self.weights[dataset]
            if weights is None:
                image = int(torch.randint(self.sizes[dataset], (1,), generator=generator))
            else:
                image = int(torch.multinomial(weights, 1, generator=generator))
            picks.append((dataset, image))
        return picks
