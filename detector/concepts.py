"""One detection per concept: predictions over a union vocabulary, folded by a build's concept merges.

Over the union of several datasets, one object is found once per dataset that names it: ``coco/person``,
``o365/Person`` and ``oid/Person`` boxes on the same person. ``scaledet-labels merge`` says which labels are
one concept (``merge/merged.parquet``); here the detections of one concept that overlap (IoU at least
``iou``) become the highest-scoring one, labelled with the concept and listing the labels that fired. The
merges are read, never re-derived: the labelspace output stays the detector's only source of semantics.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision.ops import batched_nms, box_iou

from scaledet.labelspace.io.errors import ScaledetError
from scaledet.labelspace.merge_io import MERGED_FILE, load_concepts
from scaledet.labelspace.outputs import LabelSpaceOutput


def concepts_of_build(build: Path) -> dict[str, tuple[str, str]]:
    """global id → (concept id, concept name), from ``BUILD/merge/merged.parquet``."""
    path = Path(build) / "merge" / MERGED_FILE
    if not path.is_file():
        raise ScaledetError(f"{build}: no concept merges ({path} is missing); run 'scaledet-labels merge --labelspace {build}' first")
    output = LabelSpaceOutput.load(build, with_embeddings=False)
    return dict(zip(output.global_ids, load_concepts(path, output)))


def fold_detections(detections: list[dict], concepts: dict[str, tuple[str, str]], iou: float = 0.5) -> list[dict]:
    """Keep, among overlapping detections of one concept, the best; label it with the concept."""
    if not detections:
        return []
    concept_ids = sorted({concepts[d["label"]][0] for d in detections})
    group = torch.tensor([concept_ids.index(concepts[d["label"]][0]) for d in detections])
    boxes = torch.tensor([d["box"] for d in detections], dtype=torch.float32)
    scores = torch.tensor([d["score"] for d in detections], dtype=torch.float32)
    keep = batched_nms(boxes, scores, group, iou).tolist()
    overlaps = box_iou(boxes[keep], boxes)
    folded = []
    for row, index in enumerate(keep):
        members = [j for j in range(len(detections)) if group[j] == group[index] and overlaps[row, j] >= iou]
        concept, name = concepts[detections[index]["label"]]
        folded.append({**detections[index], "label": name, "concept": concept,
                       "labels": sorted({detections[j]["label"] for j in members})})
    return folded
