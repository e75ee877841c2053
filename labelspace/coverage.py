"""Which concepts each dataset annotates, where: ``coverage.csv``.

For each concept and each source dataset of a ``unify`` run: the images in which the concept is positive
(every instance boxed), partial (present, not every instance boxed), negative (absent) and unknown, and its
boxes. The states are :mod:`.label_states`'s, the ones training and ``unify``'s lists use; a concept's state
in an image is its members' best (positive over partial over negative over unknown), as for a unified
category. A concept that a dataset leaves unknown in most of its images is one that dataset cannot teach or
test: the LVIS answer to "LVIS models miss people" was to add COCO, whose images say where people are.

Counting is dense, a block of images at a time (``unify``'s blocks): each concept's state in each image
is the best of its members' columns of the block's images × labels state matrix, and the counts are one
``bincount`` of (concept, state) per block.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .label_states import STATE_RANK, LabelRelations

COVERAGE_FILE = "coverage.csv"
COVERAGE_COLUMNS = ("concept", "name", "dataset", "images", "positive", "partial", "negative", "unknown", "boxes")
_RANKED = ("unknown", "negative", "partial", "positive")


@dataclass
class _DatasetCounts:
    images: int
    ranks: np.ndarray                 # concepts × 4: images per (concept, state rank)
    boxes: np.ndarray                 # per concept


@dataclass
class CoverageCounter:
    """Counts per (dataset, concept, state) over the images of each source, added a block at a time."""

    relations: LabelRelations
    names: list[str]                  # per concept: a name to show
    datasets: dict[str, _DatasetCounts] = field(default_factory=dict)

    def __post_init__(self) -> None:
        concepts = self.relations.concept
        self.num_concepts = int(concepts.max()) + 1 if len(concepts) else 0
        order = np.argsort(concepts, kind="stable")
        self._members = order
        self._starts = np.searchsorted(concepts[order], np.arange(self.num_concepts))

    def start(self, dataset: str) -> None:
        if dataset not in self.datasets:
            self.datasets[dataset] = _DatasetCounts(0, np.zeros((self.num_concepts, 4), dtype=np.int64),
                                                    np.zeros(self.num_concepts, dtype=np.int64))

    def add_block(self, dataset: str, states: np.ndarray) -> None:
        """A block of images of ``dataset``, with their label states as an images × labels matrix
        (``DatasetCoverage.block_states``)."""
        counts = self.datasets[dataset]
        counts.images += len(states)
        if not len(states) or not self.num_concepts:
            return
        ranks = np.maximum.reduceat(STATE_RANK[states[:, self._members]], self._starts, axis=1)
        cells = ranks.astype(np.int32) + 4 * np.arange(self.num_concepts, dtype=np.int32)
        counts.ranks += np.bincount(cells.ravel(), minlength=4 * self.num_concepts).reshape(-1, 4)

    def add_boxes(self, dataset: str, labels: np.ndarray) -> None:
        counts = self.datasets[dataset]
        counts.boxes += np.bincount(self.relations.concept[labels], minlength=self.num_concepts)

    def table(self) -> np.ndarray:
        """datasets × concepts × (unknown, negative, partial, positive) image counts."""
        result = np.zeros((len(self.datasets), self.num_concepts, 4), dtype=np.int64)
        for d, counts in enumerate(self.datasets.values()):
            result[d] = counts.ranks
        return result

    def rows(self) -> list[tuple]:
        """``coverage.csv``'s rows: per concept that a source's dataset has a label of, per source."""
        table = self.table()
        keys = concept_names(self.relations, self.relations.global_ids)  # a concept's key: its first label
        source_numbers = [self.relations.datasets.index(d) for d in self.datasets]
        covered = np.unique(self.relations.concept[np.isin(self.relations.dataset_of, source_numbers)])
        rows = []
        for c in covered.tolist():
            for d, (dataset, counts) in enumerate(self.datasets.items()):
                unknown, negative, partial, positive = table[d, c].tolist()
                rows.append((keys[c], self.names[c], dataset, counts.images, positive, partial, negative, unknown,
                             int(counts.boxes[c])))
        return rows

    def csv_text(self) -> str:
        from .io.text_files import csv_cell

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COVERAGE_COLUMNS)
        writer.writerows((csv_cell(concept), csv_cell(name), csv_cell(dataset), *numbers)
                         for concept, name, dataset, *numbers in self.rows())
        return buffer.getvalue()


def concept_names(relations: LabelRelations, label_names: list[str]) -> list[str]:
    """Per concept, the name of its first label (the merge's concept key is its first label too)."""
    names = [""] * (int(relations.concept.max()) + 1 if len(relations.concept) else 0)
    for j in reversed(range(len(relations.concept))):
        names[relations.concept[j]] = label_names[j]
    return names


@dataclass
class CoverageRow:
    concept: str
    name: str
    dataset: str
    images: int
    positive: int
    partial: int
    negative: int
    unknown: int
    boxes: int

    @property
    def unknown_share(self) -> float:
        return self.unknown / self.images if self.images else 0.0


def read_coverage(path: Path) -> list[CoverageRow]:
    """``coverage.csv`` as written by ``unify``; a file of another shape is one error line."""
    from .io.errors import ScaledetError
    from .io.text_files import csv_cell_value, read_text

    reader = csv.reader(io.StringIO(read_text(path)))
    header = next(reader, None)
    if header is None or tuple(header) != COVERAGE_COLUMNS:
        raise ScaledetError(f"{path}: not a coverage.csv (expected the columns {', '.join(COVERAGE_COLUMNS)})")
    rows = []
    for number, row in enumerate(reader, start=2):
        try:
            rows.append(CoverageRow(csv_cell_value(row[0]), csv_cell_value(row[1]), csv_cell_value(row[2]),
                                    *(int(value) for value in row[3:9])))
        except (ValueError, IndexError):
            raise ScaledetError(f"{path}: line {number} is not a coverage row") from None
    return rows


def mostly_unknown(rows: list[CoverageRow], share: float = 0.5) -> list[CoverageRow]:
    """Rows in which a dataset leaves a concept unknown in more than ``share`` of its images."""
    return sorted((r for r in rows if r.unknown_share > share), key=lambda r: (-r.unknown_share, r.name, r.dataset))
