"""The fields of COCO-format records the detector relies on, checked with one-line errors.

The checks run once, when a dataset's annotation index is built (``index.py``) or a ground-truth file is read
for evaluation, never per training step.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from scaledet.labelspace.box_checks import BOX_TOLERANCE_PX  # noqa: F401 - one tolerance for every reader
from scaledet.labelspace.io.errors import ScaledetError, one_line
from scaledet.labelspace.io.json_values import is_finite_number
from scaledet.labelspace.io.json_values import is_whole as is_int  # one check for every reader of JSON
from scaledet.labelspace.io.text_files import control_character


#: ``labelspace_key`` of a training set made by ``scaledet-labels unify``: categories map by their ``labels``.
UNIFIED_KEY = "unified"


@dataclass
class DatasetSpec:
    """One dataset of a config: where its files are and which labelspace dataset names its labels."""

    name: str
    annotations: str
    images: str
    labelspace_key: str | None = None
    ratio: float = 1.0
    evaluator: str | None = None  # coco | lvis | oid | oid-expanded; default from the labelspace key
    #: An eval dataset scored through translation: the build's dataset whose vocabulary the model predicts
    #: in here (``scaledet-labels translate``'s ``--from``); detections go into this dataset's categories
    #: through the build's concepts and hierarchy. None: the model predicts in this dataset's own labels.
    predicts_in: str | None = None
    check_images: bool = True  # check once, when the index is built, that every image file exists
    #: Image ``file_name``s must stay inside ``images`` (no absolute path, no ``..``) unless this is set:
    #: an annotation file from elsewhere must not make training read, or a crafted one probe, other files.
    allow_paths_outside_images: bool = False

    @property
    def key(self) -> str:
        return self.labelspace_key or self.name

    @property
    def unified(self) -> bool:
        """A ``scaledet-labels unify`` file: its categories name their labels by global id."""
        return self.key == UNIFIED_KEY




def read_json(path: Path, what: str):
    """A JSON document (a UTF-8 BOM allowed), with one-line errors naming the file."""
    import json

    if not path.is_file():
        raise ScaledetError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ScaledetError(f"{path}: malformed JSON ({one_line(err)})") from None
    except RecursionError:
        raise ScaledetError(f"{path}: JSON nested deeper than Python's reader allows (a {what} is a few "
                            "levels deep)") from None


def check_category(category, position: int, source: Path) -> None:
    if not isinstance(category, dict) or not is_int(category.get("id")) or not isinstance(category.get("name"), str):
        raise ScaledetError(f"{source}: categories[{position}] needs an integer 'id' and a text 'name'")


def check_image(image, position: int, source: Path) -> None:
    """The fields of an ``images`` record the detector uses; one line naming the record otherwise."""
    if not isinstance(image, dict) or not is_int(image.get("id")):
        raise ScaledetError(f"{source}: images[{position}] has no integer 'id'")
    for key in ("width", "height"):
        if not is_int(image.get(key)) or image[key] <= 0:
            raise ScaledetError(f"{source}: image {image['id']} has no positive integer '{key}' "
                                f"(found {image.get(key)!r})")
    name = image.get("file_name", image.get("coco_url"))
    if not isinstance(name, str) or not name:
        raise ScaledetError(f"{source}: image {image['id']} has neither a 'file_name' nor a 'coco_url'")
    if control_character(name) is not None:  # a NUL cannot be in any path; a newline breaks every list of them
        raise ScaledetError(f"{source}: image {image['id']} has a file_name with a control character ({name[:80]!r})")


def check_annotation(annotation, position: int, source: Path) -> None:
    """The fields of an ``annotations`` record the detector uses: ids and a 4-number ``bbox``."""
    if not isinstance(annotation, dict) or not is_int(annotation.get("id")):
        raise ScaledetError(f"{source}: annotations[{position}] has no integer 'id'")
    for key in ("image_id", "category_id"):
        if not is_int(annotation.get(key)):
            raise ScaledetError(f"{source}: annotation {annotation['id']} has no integer '{key}'")
    if annotation.get("iscrowd", 0) not in (0, 1):  # (True and False compare equal to 1 and 0)
        raise ScaledetError(f"{source}: annotation {annotation['id']} has iscrowd {str(annotation['iscrowd'])[:40]!r}; "
                            "expected 0 or 1")
    bbox = annotation.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(is_finite_number(v) for v in bbox):
        raise ScaledetError(f"{source}: annotation {annotation['id']} has bbox {bbox!r}; expected [x, y, width, height]")


def check_image_path(name: str, image_id, source: Path, spec: DatasetSpec) -> None:
    """An image path that stays inside the dataset's ``images`` folder: relative, without ``..``."""
    if spec.allow_paths_outside_images:
        return
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise ScaledetError(f"{source}: image {image_id} has file_name {name[:120]!r}, which leaves the images folder "
                            f"({spec.images}); set allow_paths_outside_images: true on dataset {spec.name!r} in the "
                            "config to read it anyway")


def image_file_name(image: dict) -> str:
    """COCO-style ``file_name``; LVIS v1 has only ``coco_url``, whose last two parts (``train2017/x.jpg``)
    are the path under a COCO image root (detectron2's convention)."""
    if "file_name" in image:
        return image["file_name"]
    if "coco_url" in image:
        return "/".join(image["coco_url"].split("/")[-2:])
    raise ScaledetError(f"image {image.get('id')}: neither 'file_name' nor 'coco_url'")


