"""Ground-truth files and detection results, read and checked before any evaluator sees them.

A results file that does not belong to the ground truth (an image or category id it does not have) is a
one-line error naming the id, not a silent AP of 0 or an evaluator's traceback.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from scaledet.labelspace.io.errors import ScaledetError
from scaledet.labelspace.unify import complete_label_lists

from ..data.records import check_annotation, check_category, check_image, read_json


@dataclass
class GroundTruth:
    path: Path
    document: dict

    @property
    def category_ids(self) -> set[int]:
        return {c["id"] for c in self.document["categories"]}

    @property
    def image_ids(self) -> set[int]:
        return {i["id"] for i in self.document["images"]}


def read_ground_truth(path: str | Path) -> GroundTruth:
    path = Path(path)
    document = read_json(path, "annotation file")
    for key in ("images", "annotations", "categories"):
        if not isinstance(document, dict) or not isinstance(document.get(key), list):
            raise ScaledetError(f"{path}: missing '{key}' list (not a COCO-format annotation file)")
    for position, category in enumerate(document["categories"]):
        check_category(category, position, path)
    for position, image in enumerate(document["images"]):
        check_image(image, position, path)
    for position, annotation in enumerate(document["annotations"]):
        check_annotation(annotation, position, path)
    check_unique_ids(document, path)
    return GroundTruth(path, complete_label_lists(document))


def check_unique_ids(document: dict, path: Path) -> None:
    """Evaluators index images, annotations and categories by id: two records with one id (files
    concatenated by hand) collapse into one and give a silently different AP, so they are refused."""
    for key in ("images", "annotations", "categories"):
        seen: set = set()
        for record in document.get(key) or ():
            identity = record.get("id") if isinstance(record, dict) else None
            if identity is not None and identity in seen:
                raise ScaledetError(f"{path}: {key[:-1]} id {str(identity)[:20]} appears twice in '{key}' "
                                    "(evaluators would keep one of them)")
            seen.add(identity)


def check_result_objects(results, source: str) -> list[dict]:
    """A results file's shape, before anything reads its fields: a JSON list of objects."""
    if not isinstance(results, list):
        raise ScaledetError(f"{source}: detection results are a JSON list of objects")
    for position, result in enumerate(results):
        if not isinstance(result, dict):
            raise ScaledetError(f"{source}: result #{position} is not an object")
    return results


def check_results(results, ground_truth: GroundTruth, source: str) -> list[dict]:
    """COCO results format: a list of ``{image_id, category_id, bbox: [x, y, w, h], score}``, every id
    one of the ground truth's."""
    images, categories = ground_truth.image_ids, ground_truth.category_ids
    for position, result in enumerate(check_result_objects(results, source)):
        bbox, score = result.get("bbox"), result.get("score")
        if (not isinstance(bbox, list) or len(bbox) != 4
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)):
            raise ScaledetError(f"{source}: result #{position} has bbox {bbox!r}; expected [x, y, width, height]")
        if not isinstance(score, (int, float)) or not math.isfinite(score):
            raise ScaledetError(f"{source}: result #{position} has no numeric 'score'")
        if result.get("image_id") not in images:
            raise ScaledetError(f"{source}: image_id {result.get('image_id')!r} (result #{position}) is not in "
                                f"{ground_truth.path}; are these results of another dataset?")
        if result.get("category_id") not in categories:
            raise ScaledetError(f"{source}: category_id {result.get('category_id')!r} (result #{position}) is not "
                                f"in {ground_truth.path}; are these results of another dataset?")
    return results


RESULT_FIELDS = ("image_id", "category_id", "bbox", "score")


def standard_results(results: list[dict]) -> list[dict]:
    """New dicts of the COCO results format's four fields. pycocotools' ``loadRes`` adds ``area``, ``id``,
    ``iscrowd`` and a box polygon to the dicts it is given: handing it copies keeps the caller's list (and
    the results files written from it) in the standard form."""
    return [{k: r[k] for k in RESULT_FIELDS if k in r} for r in results]
