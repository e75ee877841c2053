"""Boxes and detections as flat arrays grouped by image: an Objects365-sized file never becomes one Python
object per box."""
from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from scaledet.labelspace.io.errors import ScaledetError
from scaledet.labelspace.io.text_files import stream_json_items


@dataclass
class BoxTable:
    """Boxes sorted by image id: ``xywh`` (M × 4 float32), ``categories`` (int32), ``scores`` (float32; NaN
    for annotations), ``crowd`` (bool). ``of(image_id)`` is the slice of one image."""

    image_ids: np.ndarray
    xywh: np.ndarray
    categories: np.ndarray
    scores: np.ndarray
    crowd: np.ndarray

    @classmethod
    def from_columns(cls, image_ids: array, xywh: array, categories: array, scores: array, crowd: array) -> "BoxTable":
        ids = np.frombuffer(image_ids, dtype=np.int64) if image_ids else np.zeros(0, np.int64)
        order = np.argsort(ids, kind="stable")
        boxes = np.frombuffer(xywh, dtype=np.float32).reshape(-1, 4) if xywh else np.zeros((0, 4), np.float32)
        return cls(ids[order], boxes[order], (np.frombuffer(categories, dtype=np.int32) if categories
                                              else np.zeros(0, np.int32))[order],
                   (np.frombuffer(scores, dtype=np.float64) if scores else np.zeros(0, np.float64))[order],
                   (np.frombuffer(crowd, dtype=np.uint8) if crowd else np.zeros(0, np.uint8))[order].astype(bool))

    def __len__(self) -> int:
        return len(self.image_ids)

    def of(self, image_id: int) -> slice:
        start = int(np.searchsorted(self.image_ids, image_id, side="left"))
        stop = int(np.searchsorted(self.image_ids, image_id, side="right"))
        return slice(start, stop)


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_annotation_boxes(path: Path, category_ids: set[int]) -> tuple[BoxTable, int]:
    """A unified file's annotations as a table, and the largest annotation id (pseudo boxes number on)."""
    ids, xywh, categories, scores, crowd = array("q"), array("f"), array("i"), array("d"), array("B")
    largest = 0
    for position, annotation in enumerate(stream_json_items(path, "annotations.item")):
        box = annotation.get("bbox") if isinstance(annotation, dict) else None
        if (not isinstance(box, list) or len(box) != 4 or not all(_finite_number(v) for v in box)
                or annotation.get("category_id") not in category_ids or not isinstance(annotation.get("id"), int)
                or not isinstance(annotation.get("image_id"), int)):
            raise ScaledetError(f"{path}: annotation #{position} is not an annotation of this file (id, image_id, "
                                "category_id of its categories, bbox [x, y, w, h])")
        largest = max(largest, annotation["id"])
        ids.append(annotation["image_id"])
        xywh.extend(box)
        categories.append(annotation["category_id"])
        score = annotation.get("score")
        scores.append(float(score) if annotation.get("pseudo") and _finite_number(score) else float("nan"))
        crowd.append(1 if annotation.get("iscrowd") else 0)
    return BoxTable.from_columns(ids, xywh, categories, scores, crowd), largest


def read_detections(paths: list[Path], category_ids: set[int], flag: str) -> BoxTable:
    """COCO results files (JSON lists of ``{image_id, category_id, bbox, score}``) in the unified file's
    categories, streamed into one table; each malformed result is one line naming its file and position."""
    ids, xywh, categories, scores, crowd = array("q"), array("f"), array("i"), array("d"), array("B")
    for path in paths:
        _read_results(path, category_ids, flag, ids, xywh, categories, scores, crowd)
    return BoxTable.from_columns(ids, xywh, categories, scores, crowd)


def _read_results(path: Path, category_ids: set[int], flag: str, ids: array, xywh: array, categories: array,
                  scores: array, crowd: array) -> None:
    top_level_is_list = False
    for position, result in enumerate(_results(path, flag)):
        top_level_is_list = True
        if not isinstance(result, dict):
            raise ScaledetError(f"{flag} {path}: result #{position} is not an object")
        box, score = result.get("bbox"), result.get("score")
        if not isinstance(box, list) or len(box) != 4 or not all(_finite_number(v) for v in box):
            raise ScaledetError(f"{flag} {path}: result #{position} has bbox {str(box)[:80]}; expected [x, y, width, "
                                "height]")
        if not _finite_number(score):
            raise ScaledetError(f"{flag} {path}: result #{position} has no numeric 'score'")
        if result.get("category_id") not in category_ids:
            raise ScaledetError(f"{flag} {path}: category_id {str(result.get('category_id'))[:40]} (result "
                                f"#{position}) is not a category of the unified file; the teacher must detect in "
                                "its categories")
        if not isinstance(result.get("image_id"), int) or isinstance(result.get("image_id"), bool):
            raise ScaledetError(f"{flag} {path}: result #{position} has no integer image_id")
        ids.append(result["image_id"])
        xywh.extend(box)
        categories.append(result["category_id"])
        scores.append(score)
        crowd.append(0)
    if not top_level_is_list:
        _check_list(path, flag)


def _results(path: Path, flag: str) -> Iterable:
    if not path.is_file():
        raise ScaledetError(f"{flag} {path}: not found")
    return stream_json_items(path, "item", ScaledetError, "malformed results JSON")


def _check_list(path: Path, flag: str) -> None:
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"["):
        raise ScaledetError(f"{flag} {path}: detection results are a JSON list of objects")
