"""A COCO-format dataset tied to a labelspace key, served from its memory-mapped annotation index.

Each training or evaluation dataset is a COCO-style JSON plus an image folder; every category is mapped to
its union index through the labelspace build (by local id, checked by name). Problems are found when the
index is built, not mid-training (``index.py``). ``__getitem__`` returns a uint8 image and its target; it
is what DataLoader workers run, so it touches only mapped arrays and the image file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scaledet.labelspace.io.errors import ScaledetError

from ..vocabulary import UnifiedLabelSpace
from .images import read_image_uint8
from .index import AnnotationIndex, open_index
from .records import DatasetSpec, read_json
from .transforms import InputConfig, augment


class CocoDetectionDataset(torch.utils.data.Dataset):
    """Images and their boxes with union-index labels. Training keeps the images with at least one
    ordinary (non-crowd) box; evaluation keeps all."""

    def __init__(self, spec: DatasetSpec, labelspace: UnifiedLabelSpace, train: bool = True,
                 input_config: InputConfig | None = None) -> None:
        from ..vocabulary import labelspace_ids_digest

        self.spec = spec
        self.train = train
        self.input = input_config or InputConfig()
        self.annotation_file = Path(spec.annotations)
        self.image_root = Path(spec.images)
        if not spec.unified:
            labelspace.require_dataset(spec.key, f"dataset {spec.name}")
        self.index: AnnotationIndex = open_index(spec, labelspace, labelspace_ids_digest(labelspace),
                                                 check_images=spec.check_images)
        if spec.unified:  # its labels: every member of every category
            self.members = {c["union"]: np.asarray(c["members"], dtype=np.int64) for c in self.categories}
            self.label_mask = torch.zeros(labelspace.num_labels, dtype=torch.bool)
            self.label_mask[np.concatenate(list(self.members.values()))] = True
        else:
            self.label_mask = labelspace.dataset_mask(spec.key)
        counts = self.index.ordinary_count if train else None
        self.images = np.flatnonzero(np.asarray(counts) > 0) if train else np.arange(self.index.num_images)
        if len(self.images) == 0:
            raise ScaledetError(f"{self.annotation_file}: no images with boxes")
        self._coco: dict | None = None
        self.coverage = None  # set by use_label_states: per-image label states in the targets
        self.pseudo_weight, self.pseudo_min_score = 1.0, 0.0  # set by use_pseudo_labels

    def use_pseudo_labels(self, hard_weight: float, min_score: float) -> None:
        """How ``scaledet pseudo-label``'s boxes train: each target's ``box_weights`` give a pseudo box
        ``hard_weight`` (an annotation 1); pseudo boxes scoring below ``min_score`` are dropped."""
        self.pseudo_weight, self.pseudo_min_score = float(hard_weight), float(min_score)

    def use_label_states(self, relations) -> None:
        """Add each image's label states (``label_states`` in the target) for the federated hard loss,
        from the coverage tables in ``relations`` (:class:`~scaledet.labelspace.label_states.LabelRelations`):
        this dataset's, or for a unified file those of the sources each image came from."""
        if not self.spec.unified:
            self.coverage = [relations.coverage(self.spec.key, self.index.protocol)]
            return
        protocols = self.index.meta["source_protocols"]
        for source in self.index.meta["sources"]:
            if source not in relations.datasets or source not in protocols:
                raise ScaledetError(f"{self.annotation_file}: source {source!r} is not a dataset of the build or has "
                                    "no protocol in scaledet.sources (was it unified with another build?)")
        self.coverage = [relations.coverage(source, protocols[source]) for source in self.index.meta["sources"]]

    def _coverages(self, image: int) -> list:
        if not self.spec.unified:
            return self.coverage
        bits = int(self.index.source_bits[image])
        return [c for bit, c in enumerate(self.coverage) if bits >> bit & 1]

    def _members(self, labels: np.ndarray) -> np.ndarray:
        """A unified file names a concept category by its first label: every member counts."""
        if not self.spec.unified or not len(labels):
            return labels
        return np.concatenate([self.members.get(int(label), np.asarray([label])) for label in labels])

    def label_states(self, image: int) -> np.ndarray:
        """The int8 state of every union label on index image ``image`` (``labelspace/label_states.py``);
        an image of several sources combines theirs (present in any wins over negative)."""
        from scaledet.labelspace.label_states import image_states

        lists = {k: self._members(v) for k, v in self.index.image_lists(image).items()}
        annotated = self._members(np.asarray(self.index.labels[self._box_slice(image)], dtype=np.int64))
        return image_states(self._coverages(image), annotated, lists)

    def own_labels(self, image: int) -> torch.Tensor:
        """The labels an image's annotations speak for: its dataset's, or in a unified file its sources'."""
        if not self.spec.unified or self.coverage is None:
            return self.label_mask
        own = np.zeros(len(self.label_mask), dtype=bool)
        for coverage in self._coverages(image):
            own |= coverage.own
        return torch.from_numpy(own)

    # ------------------------------------------------------------------ what evaluation needs
    @property
    def coco(self) -> dict:
        """The whole annotation document, read only when an evaluator needs it (evaluation sets are small)."""
        if self._coco is None:
            self._coco = read_json(self.annotation_file, "annotation file")
        return self._coco

    @property
    def categories(self) -> list[dict]:
        return self.index.meta["categories"]

    def category_union_indices(self) -> list[int]:
        """Union index of each category, in the file's category order (the order results are written in)."""
        return [c["union"] for c in self.categories]

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.images)

    def image_labels(self) -> list[np.ndarray]:
        """Per image (in dataset order), the union labels of its ordinary boxes: for repeat-factor sampling."""
        out = []
        for image in self.images:
            boxes = self._box_slice(int(image))
            out.append(np.asarray(self.index.labels[boxes])[np.asarray(self.index.crowd[boxes]) == 0])
        return out

    def _box_slice(self, image: int) -> slice:
        first = int(self.index.first_box[image])
        return slice(first, first + int(self.index.box_count[image]))

    def item(self, index: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """(uint8 image, target); with a ``generator``, the training augmentation drawn from it."""
        image = int(self.images[index])
        boxes_slice = self._box_slice(image)
        ordinary = np.asarray(self.index.crowd[boxes_slice]) == 0
        raw = np.array(self.index.boxes[boxes_slice])
        if not (np.isfinite(raw).all() and (raw[:, 2] > raw[:, 0]).all() and (raw[:, 3] > raw[:, 1]).all()):
            raise ScaledetError(f"annotation index {self.index.directory} of {self.annotation_file} is damaged (image "
                                f"{int(self.index.image_ids[image])} has a box that is not x1 < x2, y1 < y2); delete "
                                "that folder and run again: it is rebuilt from the annotation file")
        scores = np.asarray(self.index.pseudo_scores[boxes_slice])
        pseudo = ~np.isnan(scores)
        ordinary &= ~pseudo | (np.nan_to_num(scores) >= self.pseudo_min_score)
        boxes = torch.from_numpy(raw[ordinary])
        labels = torch.from_numpy(np.array(self.index.labels[boxes_slice], dtype=np.int64)[ordinary])
        weights = torch.from_numpy(np.where(pseudo[ordinary], self.pseudo_weight, 1.0).astype(np.float32))
        tensor = read_image_uint8(self.image_root / self.index.file_name(image))
        height, width = int(self.index.heights[image]), int(self.index.widths[image])
        if tensor.shape[-2:] != (height, width):
            raise ScaledetError(f"{self.image_root / self.index.file_name(image)}: is {tensor.shape[-1]}×"
                                f"{tensor.shape[-2]}, {self.annotation_file} says {width}×{height}")
        if generator is not None:  # the augmentation may drop boxes: it carries their positions
            tensor, boxes, kept = augment(tensor, boxes, torch.arange(len(labels)), self.input, generator)
            labels, weights = labels[kept], weights[kept]
        target = {"boxes": boxes, "labels": labels + 1,  # torchvision: 0 is background
                  "box_weights": weights, "label_mask": self.label_mask,
                  "image_id": torch.tensor(int(self.index.image_ids[image]))}
        if self.coverage is not None:
            target["label_states"] = torch.from_numpy(self.label_states(image))
            target["label_mask"] = self.own_labels(image)
        return tensor, target

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        return self.item(index)
