"""COCO-format detection data mapped onto the unified label space.

Each training or evaluation dataset is a COCO-style JSON plus an image folder, tied to a labelspace
dataset key; every annotation's category is mapped to its union index through the labelspace build
(by local id, checked by name). Problems are found when the dataset is opened, not mid-training: a
missing image file, a box outside its image or with zero area, an unknown category, each a one-line
error naming the file and the image / annotation id.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from scaledet.labelspace.errors import ScaledetError, one_line

from .vocabulary import UnifiedLabelSpace

#: Boxes may poke out of their image by this many pixels (rounding in exporters) before it is an error.
BOX_TOLERANCE_PX = 1.0


@dataclass
class DatasetSpec:
    """One dataset of a config: where its files are and which labelspace dataset names its labels."""

    name: str
    annotations: str
    images: str
    labelspace_key: str | None = None
    ratio: float = 1.0
    evaluator: str | None = None  # coco | lvis | oid; default from the labelspace key

    @property
    def key(self) -> str:
        return self.labelspace_key or self.name


@dataclass
class ImageRecord:
    image_id: int
    path: Path
    width: int
    height: int
    boxes: np.ndarray  # n × 4, xyxy pixels
    labels: np.ndarray  # n, union indices


class CocoDetectionDataset(torch.utils.data.Dataset):
    """Images and their boxes with union-index labels; ``__getitem__`` gives (image tensor, target)."""

    def __init__(self, spec: DatasetSpec, labelspace: UnifiedLabelSpace, train: bool = True) -> None:
        self.spec = spec
        self.train = train
        self.annotation_file = Path(spec.annotations)
        self.image_root = Path(spec.images)
        labelspace.require_dataset(spec.key, f"dataset {spec.name}")
        self.label_mask = labelspace.dataset_mask(spec.key)
        self.coco = self._read_json()
        self.category_to_union = self._map_categories(labelspace)
        self.records = self._build_records()

    # ------------------------------------------------------------------ opening and checking
    def _read_json(self) -> dict:
        if not self.annotation_file.is_file():
            raise ScaledetError(f"{self.annotation_file}: annotation file not found (dataset {self.spec.name})")
        try:
            coco = json.loads(self.annotation_file.read_text(encoding="utf-8-sig"))
        except (ValueError, UnicodeDecodeError) as err:
            raise ScaledetError(f"{self.annotation_file}: malformed JSON ({one_line(err)})") from None
        for key in ("images", "annotations", "categories"):
            if not isinstance(coco, dict) or not isinstance(coco.get(key), list):
                raise ScaledetError(f"{self.annotation_file}: missing '{key}' list")
        return coco

    def _map_categories(self, labelspace: UnifiedLabelSpace) -> dict[int, int]:
        where = str(self.annotation_file)
        mapping = {}
        for position, category in enumerate(self.coco["categories"]):
            check_category(category, position, self.annotation_file)
            local_id = str(category.get("mid") or category["id"])
            mapping[category["id"]] = labelspace.union_index(self.spec.key, local_id, category["name"], where)
        return mapping

    def _build_records(self) -> list[ImageRecord]:
        per_image: dict[int, list[dict]] = {}
        for position, annotation in enumerate(self.coco["annotations"]):
            check_annotation(annotation, position, self.annotation_file)
            per_image.setdefault(annotation["image_id"], []).append(annotation)
        records = []
        missing = []
        for position, image in enumerate(self.coco["images"]):
            check_image(image, position, self.annotation_file)
            path = self.image_root / image_file_name(image)
            if not path.is_file():
                missing.append(path)
                continue
            width, height = int(image["width"]), int(image["height"])
            boxes, labels = [], []
            for annotation in per_image.get(image["id"], []):
                if annotation.get("iscrowd", 0):
                    continue
                boxes.append(self._checked_box(annotation, image, width, height))
                if annotation["category_id"] not in self.category_to_union:
                    raise ScaledetError(f"{self.annotation_file}: annotation {annotation['id']} has unknown "
                                        f"category_id {annotation['category_id']}")
                labels.append(self.category_to_union[annotation["category_id"]])
            if self.train and not boxes:
                continue  # images without boxes teach the RoI head nothing in this detector
            records.append(ImageRecord(image["id"], path, width, height,
                                       np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64)))
        if missing:
            raise ScaledetError(f"{self.image_root}: {len(missing)} image(s) of {self.annotation_file} missing on disk, "
                                f"e.g. {missing[0]}")
        if not records:
            raise ScaledetError(f"{self.annotation_file}: no images with boxes")
        return records

    def _checked_box(self, annotation: dict, image: dict, width: int, height: int) -> list[float]:
        x, y, w, h = (float(v) for v in annotation["bbox"])
        where = f"{self.annotation_file}: annotation {annotation['id']} (image {image['id']} {image_file_name(image)})"
        if w <= 0 or h <= 0:
            raise ScaledetError(f"{where}: box {annotation['bbox']} has zero or negative area")
        tol = BOX_TOLERANCE_PX
        if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
            raise ScaledetError(f"{where}: box {annotation['bbox']} lies outside the {width}×{height} image")
        return [max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h)]

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.records)

    def category_union_indices(self) -> list[int]:
        """Union index of each category, in the file's category order (the order results are written in)."""
        return [self.category_to_union[c["id"]] for c in self.coco["categories"]]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        record = self.records[index]
        tensor = read_image(record.path)
        target = {
            "boxes": torch.from_numpy(record.boxes.copy()),
            "labels": torch.from_numpy(record.labels + 1),  # torchvision: 0 is background
            "label_mask": self.label_mask,
            "image_id": torch.tensor(record.image_id),
        }
        return tensor, target


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def check_category(category, position: int, source: Path) -> None:
    if not isinstance(category, dict) or not _is_int(category.get("id")) or not isinstance(category.get("name"), str):
        raise ScaledetError(f"{source}: categories[{position}] needs an integer 'id' and a text 'name'")


def check_image(image, position: int, source: Path) -> None:
    """The fields of an ``images`` record the detector uses; one line naming the record otherwise."""
    if not isinstance(image, dict) or not _is_int(image.get("id")):
        raise ScaledetError(f"{source}: images[{position}] has no integer 'id'")
    for key in ("width", "height"):
        if not _is_int(image.get(key)) or image[key] <= 0:
            raise ScaledetError(f"{source}: image {image['id']} has no positive integer '{key}' "
                                f"(found {image.get(key)!r})")
    name = image.get("file_name", image.get("coco_url"))
    if not isinstance(name, str) or not name:
        raise ScaledetError(f"{source}: image {image['id']} has neither a 'file_name' nor a 'coco_url'")


def check_annotation(annotation, position: int, source: Path) -> None:
    """The fields of an ``annotations`` record the detector uses: ids and a 4-number ``bbox``."""
    if not isinstance(annotation, dict) or not _is_int(annotation.get("id")):
        raise ScaledetError(f"{source}: annotations[{position}] has no integer 'id'")
    for key in ("image_id", "category_id"):
        if not _is_int(annotation.get(key)):
            raise ScaledetError(f"{source}: annotation {annotation['id']} has no integer '{key}'")
    bbox = annotation.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        raise ScaledetError(f"{source}: annotation {annotation['id']} has bbox {bbox!r}; expected [x, y, width, height]")


def image_file_name(image: dict) -> str:
    """COCO-style ``file_name``; LVIS v1 has only ``coco_url``, whose last two parts (``train2017/x.jpg``)
    are the path under a COCO image root (detectron2's convention)."""
    if "file_name" in image:
        return image["file_name"]
    if "coco_url" in image:
        return "/".join(image["coco_url"].split("/")[-2:])
    raise ScaledetError(f"image {image.get('id')}: neither 'file_name' nor 'coco_url'")


def read_image_array(path: Path) -> np.ndarray:
    """An image file as H × W × 3 uint8 RGB; a missing, corrupt or truncated file is a one-line error
    naming it (PIL's own messages often do not)."""
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise ScaledetError(f"{path}: image not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ScaledetError(f"{path}: not a readable image ({one_line(err, 100)})") from None


def read_image(path: Path) -> torch.Tensor:
    """An image file as a 3 × H × W float tensor in [0, 1], the input torchvision's detectors take."""
    return torch.from_numpy(read_image_array(path)).permute(2, 0, 1).float().div_(255.0)
