"""The detector's view of a labelspace build: text embeddings, similarity, and id mappings.

This is the only place the detector learns anything about label semantics, and it learns it from the
build directory alone (``labels.parquet``, ``embeddings.npy``, ``similarity.parquet``, ``manifest.json``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scaledet.labelspace.io.errors import ScaledetError
from scaledet.labelspace.outputs import LabelSpaceOutput
from scaledet.labelspace.prompts import normalize_name


@dataclass
class Vocabulary:
    """Text embeddings (C × D) and the names that go with the rows, for one call of the classifier."""

    names: list[str]
    embeddings: torch.Tensor
    #: The ``category_id`` each row is written with in the COCO results format: the dataset's own ids for a
    #: built-in dataset, else 1 … C in the vocabulary's order.
    category_ids: list[int] | None = None

    def __len__(self) -> int:
        return len(self.names)

    def category_id(self, row: int) -> int:
        return self.category_ids[row] if self.category_ids is not None else row + 1


class UnifiedLabelSpace:
    """A labelspace build, loaded for training: union embeddings, similarity rows, dataset lookups."""

    def __init__(self, directory: str | Path) -> None:
        self.output = LabelSpaceOutput.load(directory)
        self.directory = Path(directory)
        self.global_ids: list[str] = self.output.global_ids
        self.embeddings = torch.from_numpy(np.ascontiguousarray(self.output.embeddings))
        self._similarity = None
        rows = self.output.labels.select(["dataset", "local_id", "name"]).to_pylist()
        self._by_dataset: dict[str, list[int]] = {}
        self._local: dict[tuple[str, str], int] = {}
        self._by_name: dict[tuple[str, str], int] = {}
        for index, row in enumerate(rows):
            self._by_dataset.setdefault(row["dataset"], []).append(index)
            self._local[(row["dataset"], row["local_id"])] = index
            self._by_name[(row["dataset"], normalize_name(row["name"]))] = index
        self.names = [row["name"] for row in rows]

    @property
    def encoder(self) -> dict:
        return self.output.manifest["encoder"]

    @property
    def num_labels(self) -> int:
        return len(self.global_ids)

    @property
    def datasets(self) -> list[str]:
        return list(self._by_dataset)

    def similarity(self):
        if self._similarity is None:
            self._similarity = self.output.similarity()
        return self._similarity

    def require_dataset(self, key: str, where: str) -> list[int]:
        if key not in self._by_dataset:
            raise ScaledetError(f"{where}: dataset key {key!r} is not in the labelspace build {self.directory} "
                                f"(it has {', '.join(self.datasets)})")
        return self._by_dataset[key]

    def dataset_indices(self, key: str) -> list[int]:
        return self.require_dataset(key, "dataset")

    def dataset_mask(self, key: str) -> torch.Tensor:
        mask = torch.zeros(self.num_labels, dtype=torch.bool)
        mask[self.require_dataset(key, "dataset")] = True
        return mask

    def global_index(self, global_id, where: str) -> int:
        """The union index of ``global_id`` (``coco/person``), as a unified training set names its labels."""
        if not hasattr(self, "_global"):
            self._global = {g: i for i, g in enumerate(self.global_ids)}
        if not isinstance(global_id, str) or global_id not in self._global:
            raise ScaledetError(f"{where}: label {str(global_id)[:60]!r} is not in the labelspace build {self.directory}")
        return self._global[global_id]

    def union_index(self, dataset: str, local_id: str, name: str, where: str) -> int:
        """Map an annotation file's category to its union index: by local id, checked by name; else by name."""
        index = self._local.get((dataset, local_id))
        if index is not None and normalize_name(self.names[index]) == normalize_name(name):
            return index
        index_by_name = self._by_name.get((dataset, normalize_name(name)))
        if index_by_name is not None:
            return index_by_name
        raise ScaledetError(f"{where}: category {local_id} {name!r} is not a label of dataset {dataset!r} in "
                            f"{self.directory}")

    def vocabulary(self, dataset: str | None = None) -> Vocabulary:
        """The union (``None``) or one dataset's labels as a classifier vocabulary."""
        indices = list(range(self.num_labels)) if dataset is None else self.dataset_indices(dataset)
        return Vocabulary([self.global_ids[i] for i in indices], self.embeddings[indices])

    def fingerprint(self) -> dict:
        """What a checkpoint records to refuse a build it was not trained on."""
        return {"encoder_identity": self.encoder["identity"], "dim": int(self.embeddings.shape[1]),
                "num_labels": self.num_labels}


def labelspace_ids_digest(labelspace: UnifiedLabelSpace) -> str:
    """sha256 of the union's global ids in order: what a checkpoint and an annotation index record of the
    union they were made with."""
    import hashlib

    return hashlib.sha256("\n".join(labelspace.global_ids).encode()).hexdigest()
