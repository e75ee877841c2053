"""Per-image label states: what one training image says about every label of the union.

A class that one dataset never annotates sits unlabeled in its images. Treating every unannotated label as
absent (ScaleDet's union scope) trains ``o365/Person`` as a negative on every COCO person; treating every
other dataset's label as unknown (UniDet's dataset scope) throws away what the image does say ("no person
here" also means no ``o365/Person``). The states below use what the build knows: its concepts (``merge``),
its hierarchy (``parent``, lifted through concepts) and each dataset's annotation protocol.

State of label ``j`` on an image of dataset ``d`` (codes as stored):

============  ====================================================================================
POSITIVE (2)  present, every instance boxed: the image's own exhaustive annotations
PARTIAL (3)   present, not every instance boxed (LVIS ``not_exhaustive``, OpenImages verified-present
              without a box), or implied present: an ancestor of a present label
NEGATIVE (1)  absent: an exhaustive dataset's unannotated label, LVIS ``neg_category_ids``, OpenImages
              verified-absent labels, anything of the same concept, and every descendant of these
UNKNOWN (0)   nothing is known: concepts ``d`` does not cover, LVIS labels that are neither annotated nor
              in ``neg_category_ids``, OpenImages labels without a verified label
============  ====================================================================================

The rules, in order (``docs/detector.md`` has them as a table, with real examples):

1. the image's own labels, by protocol: ``exhaustive`` (COCO, Objects365, most files): annotated →
   POSITIVE, the rest NEGATIVE. ``federated`` (LVIS): annotated → POSITIVE (PARTIAL when in
   ``not_exhaustive_category_ids``), ``neg_category_ids`` → NEGATIVE, the rest UNKNOWN. ``verified``
   (OpenImages): boxed → POSITIVE, verified present → PARTIAL, verified absent → NEGATIVE, the rest UNKNOWN.
2. a label of another dataset takes the state of the image's own label of the same concept; a concept the
   image's dataset does not cover stays UNKNOWN.
3. every ancestor of a present (POSITIVE or PARTIAL) label is at least PARTIAL, never NEGATIVE.
4. every descendant of a NEGATIVE label that is not present is NEGATIVE.

States are computed per image on the fly from small per-dataset tables (:class:`DatasetCoverage`: a label
mask and one int32 per label), never stored as images × labels, so the memory-mapped index, DataLoader
workers and DDP work unchanged (``unify`` computes them for a block of images at a time and writes them
out: :meth:`DatasetCoverage.block_states`). The training loss, ``scaledet-labels unify`` and the docs all read this
module.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

UNKNOWN, NEGATIVE, POSITIVE, PARTIAL = 0, 1, 2, 3
STATE_NAMES = {UNKNOWN: "unknown", NEGATIVE: "negative", POSITIVE: "positive", PARTIAL: "partial"}
#: state → rank, best last, and back: where several labels stand for one thing (a concept's members, a
#: unified category's), its state is their best: POSITIVE over PARTIAL over NEGATIVE over UNKNOWN
STATE_RANK = np.zeros(4, dtype=np.int8)
STATE_RANK[[UNKNOWN, NEGATIVE, PARTIAL, POSITIVE]] = [0, 1, 2, 3]
STATE_OF_RANK = np.array([UNKNOWN, NEGATIVE, PARTIAL, POSITIVE], dtype=np.int8)
EXHAUSTIVE, FEDERATED, VERIFIED = "exhaustive", "federated", "verified"
PROTOCOLS = (EXHAUSTIVE, FEDERATED, VERIFIED)


@dataclass
class Closure:
    """A transitive relation between labels in CSR form: the labels related to label ``j`` are
    ``indices[indptr[j]:indptr[j + 1]]``."""

    indptr: np.ndarray
    indices: np.ndarray

    def of(self, labels: np.ndarray) -> np.ndarray:
        """All labels related to any of ``labels`` (with repeats), without a Python loop per label."""
        starts, stops = self.indptr[labels], self.indptr[labels + 1]
        lengths = stops - starts
        if lengths.sum() == 0:
            return np.zeros(0, dtype=np.int64)
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        return self.indices[np.arange(lengths.sum()) + offsets]

    @cached_property
    def related(self) -> np.ndarray:
        """The labels related to at least one label (found once per build, not once per block)."""
        return np.flatnonzero(np.diff(self.indptr) > 0)

    def pairs(self, rows: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, related label) for every pair (``rows[i]``, ``labels[i]``): :meth:`of` for many images."""
        lengths = self.indptr[labels + 1] - self.indptr[labels]
        return np.repeat(rows, lengths), self.of(labels)

    @classmethod
    def from_lists(cls, lists: list[list[int]]) -> "Closure":
        lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        indices = np.fromiter((i for x in lists for i in x), dtype=np.int64, count=int(lengths.sum()))
        return cls(indptr, indices)


@dataclass
class LabelRelations:
    """What the build says about how labels relate: dataset, concept and hierarchy of each label.

    ``concept[j]`` is an int per label (labels of one concept share it; without a merge every label is its
    own concept). ``ancestors`` / ``descendants`` are transitive and lifted through concepts: the parent of
    ``oid/Cat`` is ``oid/Animal``, so when ``coco/cat`` and ``oid/Cat`` are one concept, ``oid/Animal`` is
    an ancestor of ``coco/cat`` too."""

    global_ids: list[str]
    dataset_of: np.ndarray
    datasets: list[str]
    concept: np.ndarray
    ancestors: Closure
    descendants: Closure
    merge_file: str | None = None
    merge_sha256: str | None = None
    #: concept → its parent concepts (one step up the hierarchy, lifted through concepts): what
    #: ``translate`` walks to find the nearest coarser label, where the closures above lose the distance
    parent_concepts: list[set[int]] | None = None

    @classmethod
    def from_build(cls, output, concepts: list[str] | None = None, merge_file: Path | None = None,
                   merge_sha256: str | None = None) -> "LabelRelations":
        """``output`` a :class:`~.outputs.LabelSpaceOutput`; ``concepts`` one concept key per label (the
        ``concept`` column of ``merge/merged.parquet``), or None for no merges."""
        rows = output.labels.select(["dataset", "parent"]).to_pylist()
        global_ids = output.global_ids
        datasets = list(dict.fromkeys(row["dataset"] for row in rows))
        dataset_number = {d: i for i, d in enumerate(datasets)}
        dataset_of = np.fromiter((dataset_number[row["dataset"]] for row in rows), dtype=np.int32, count=len(rows))
        keys = concepts if concepts is not None else global_ids
        concept_number: dict[str, int] = {}
        concept = np.fromiter((concept_number.setdefault(k, len(concept_number)) for k in keys), dtype=np.int64,
                              count=len(keys))
        by_global_id = {g: index for index, g in enumerate(global_ids)}  # ``parent`` holds global ids
        up: list[set[int]] = [set() for _ in concept_number]  # concept → parent concepts
        for index, row in enumerate(rows):
            for parent in row["parent"] or ():
                parent_index = by_global_id.get(parent)
                if parent_index is not None and concept[parent_index] != concept[index]:
                    up[concept[index]].add(int(concept[parent_index]))
        members: list[list[int]] = [[] for _ in concept_number]
        for index, c in enumerate(concept):
            members[c].append(index)
        ancestor_concepts = [_reachable(c, up) for c in range(len(up))]
        down: list[set[int]] = [set() for _ in up]
        for c, above in enumerate(ancestor_concepts):
            for a in above:
                down[a].add(c)
        ancestors = Closure.from_lists([[m for a in sorted(ancestor_concepts[concept[j]]) for m in members[a]]
                                        for j in range(len(rows))])
        descendants = Closure.from_lists([[m for d in sorted(down[concept[j]]) for m in members[d]]
                                          for j in range(len(rows))])
        return cls(global_ids, dataset_of, datasets, concept, ancestors, descendants,
                   str(merge_file) if merge_file else None, merge_sha256, up)

    def coverage(self, dataset: str, protocol: str) -> "DatasetCoverage":
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol {protocol!r}: one of {PROTOCOLS}")
        own = self.dataset_of == self.datasets.index(dataset)
        own_of_concept = {int(self.concept[j]): j for j in np.flatnonzero(own)}
        follow = np.fromiter((own_of_concept.get(int(c), -1) for c in self.concept), dtype=np.int64,
                             count=len(self.concept))
        return DatasetCoverage(self, dataset, protocol, own, follow)


def _reachable(start: int, edges: list[set[int]]) -> set[int]:
    seen: set[int] = set()
    stack = list(edges[start])
    while stack:
        node = stack.pop()
        if node not in seen and node != start:
            seen.add(node)
            stack.extend(edges[node])
    return seen


@dataclass
class DatasetCoverage:
    """One dataset's table: which labels are its own (``own``) and, for every label, the own label of the
    same concept (``follow``, -1 where the dataset does not cover that concept). ``states`` applies the
    module's rules to one image."""

    relations: LabelRelations
    dataset: str
    protocol: str
    own: np.ndarray
    follow: np.ndarray

    @cached_property
    def _others(self) -> tuple[np.ndarray, np.ndarray]:
        """(labels of other datasets whose concept this dataset covers, the own label each follows): the
        same for every image, so found once."""
        others = np.flatnonzero((self.follow >= 0) & ~self.own)
        return others, self.follow[others]

    def states(self, annotated, negatives=(), not_exhaustive=(), verified_present=()) -> np.ndarray:
        """int8 state of every label for one image, given union indices of its annotated labels (boxes,
        crowd boxes included), its explicit negatives (LVIS ``neg_category_ids``, OpenImages verified
        absent), LVIS ``not_exhaustive_category_ids`` and OpenImages verified-present labels."""
        annotated = np.asarray(annotated, dtype=np.int64)
        states = np.zeros(len(self.own), dtype=np.int8)
        if self.protocol == EXHAUSTIVE:
            states[self.own] = NEGATIVE
        states[np.asarray(negatives, dtype=np.int64)] = NEGATIVE
        states[np.asarray(verified_present, dtype=np.int64)] = PARTIAL
        states[annotated] = POSITIVE
        partial = np.intersect1d(np.asarray(not_exhaustive, dtype=np.int64), annotated)
        states[partial] = PARTIAL
        others, followed = self._others
        states[others] = states[followed]
        present = np.flatnonzero(states >= POSITIVE)
        above = self.relations.ancestors.of(present)
        states[above] = np.where(states[above] == POSITIVE, POSITIVE, PARTIAL)
        below = self.relations.descendants.of(np.flatnonzero(states == NEGATIVE))
        states[below] = np.where(states[below] >= POSITIVE, states[below], NEGATIVE)
        return states

    def block_states(self, annotated: tuple[np.ndarray, np.ndarray], negatives: tuple[np.ndarray, np.ndarray],
                     not_exhaustive: tuple[np.ndarray, np.ndarray],
                     verified_present: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """:meth:`states` of a block of images at once, as an images × labels int8 matrix: each argument is
        one list per image in CSR form, ``(offsets, union indices)``. The same rules in the same order, on
        (image, label) pairs instead of one image's labels: what ``unify`` uses for millions of images.
        :meth:`states` stays the per-image twin (about half the cost for one image, which training and
        ``translate`` pay per image); ``tests/test_unify.py`` checks each row against it."""
        count = len(annotated[0]) - 1
        states = np.zeros((count, len(self.own)), dtype=np.int8)
        if self.protocol == EXHAUSTIVE:
            states[:, self.own] = NEGATIVE
        states[csr_cells(negatives)] = NEGATIVE
        states[csr_cells(verified_present)] = PARTIAL
        boxed = csr_cells(annotated)
        states[boxed] = POSITIVE
        rows, labels = csr_cells(not_exhaustive)
        annotated_too = states[rows, labels] == POSITIVE  # only annotated labels are POSITIVE so far
        states[rows[annotated_too], labels[annotated_too]] = PARTIAL
        others, followed = self._others
        states[:, others] = states[:, followed]
        above = self._related_pairs(states >= POSITIVE, self.relations.ancestors)
        states[above] = np.where(states[above] == POSITIVE, POSITIVE, PARTIAL)
        below = self._related_pairs(states == NEGATIVE, self.relations.descendants)
        states[below] = np.where(states[below] >= POSITIVE, states[below], NEGATIVE)
        return states

    @staticmethod
    def _related_pairs(cells: np.ndarray, closure: Closure) -> tuple[np.ndarray, np.ndarray]:
        """(row, related label) for the True cells of an images × labels mask: only the columns of labels
        that have relations are searched (an exhaustive image is negative for hundreds of labels)."""
        rows, columns = np.nonzero(cells[:, closure.related])
        return closure.pairs(rows, closure.related[columns])


def csr_cells(lists: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(row, value) of every value of a list per row in CSR form (``offsets``, ``values``)."""
    offsets, values = lists
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets)), np.asarray(values, dtype=np.int64)


def combine_states(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, int]:
    """Two sources' states of one image: present in either wins (POSITIVE over PARTIAL), then NEGATIVE.
    Also the number of categories one source calls present and the other negative."""
    present_a, present_b = a >= POSITIVE, b >= POSITIVE
    conflicts = int(np.sum((present_a & (b == NEGATIVE)) | (present_b & (a == NEGATIVE))))
    out = np.where((a == NEGATIVE) | (b == NEGATIVE), NEGATIVE, UNKNOWN).astype(np.int8)
    out[present_a | present_b] = PARTIAL
    out[(a == POSITIVE) | (b == POSITIVE)] = POSITIVE
    return out, conflicts


def image_states(coverages: list["DatasetCoverage"], annotated, lists: dict[str, np.ndarray]) -> np.ndarray:
    """The states of one image that one or more sources annotate: each source's rules applied to the
    image's annotated labels and explicit lists, then combined (:func:`combine_states`). Training on a
    unified file, ``unify``'s explicit lists and evaluation of a compact unified file all call this, so
    that every reader of one file sees the same states."""
    states = None
    for coverage in coverages:
        these = coverage.states(annotated, negatives=lists.get("neg_category_ids", ()),
                                not_exhaustive=lists.get("not_exhaustive_category_ids", ()),
                                verified_present=lists.get("pos_category_ids", ()))
        states = these if states is None else combine_states(states, these)[0]
    return states


def hard_loss_columns(states, own):
    """The labels whose hard-loss column an image vouches for on every region (``federated`` scope):
    its NEGATIVE labels, and its own POSITIVE ones (exhaustively boxed: a region off their boxes is not
    one). Other present labels are trained only where they are a region's assigned label; UNKNOWN never.
    ``states`` and ``own`` (the dataset's label mask) are NumPy arrays or torch tensors alike."""
    return (states == NEGATIVE) | ((states == POSITIVE) & own)


def protocol_of_file(categories: list[dict], image_fields: set[str]) -> str:
    """How an annotation file was annotated, from its fields: OpenImages (``mid`` categories or verified
    image labels) → verified; LVIS (``neg_category_ids`` / ``not_exhaustive_category_ids``) → federated;
    anything else → exhaustive."""
    if any(c.get("mid") for c in categories) or "pos_category_ids" in image_fields:
        return VERIFIED
    if image_fields & {"neg_category_ids", "not_exhaustive_category_ids"}:
        return FEDERATED
    return EXHAUSTIVE


def relations_for_build(output, merge: str | Path | None = "auto") -> LabelRelations:
    """The relations of a build with the concepts of its merge: ``auto`` reads ``BUILD/merge/merged.parquet``
    when it exists (and then no merge otherwise), a path reads that file, None uses none."""
    from .merge_io import MERGED_FILE, load_concepts
    from .io.digests import sha256_of_file

    path = None
    if merge == "auto":
        candidate = Path(output.directory) / "merge" / MERGED_FILE
        path = candidate if candidate.is_file() else None
    elif merge is not None:
        path = Path(merge)
    if path is None:
        return LabelRelations.from_build(output)
    concepts = [concept for concept, _ in load_concepts(path, output)]
    return LabelRelations.from_build(output, concepts, path, sha256_of_file(path))
