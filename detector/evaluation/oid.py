"""The OpenImages detection challenge metric: the number OpenImages results are published with.

Rules (the challenge's evaluation protocol):

* **IoU 0.5 only**; AP per class is the area under the precision/recall curve with precision made
  monotonically decreasing; the mean is over classes with at least one ground-truth box.
* **Hierarchy**: every ground-truth box also counts for all ancestors of its class, and so does every
  detection (``expand_detections``, as multi-dataset detectors that predict leaf classes are evaluated).
  A verified-present image label is expanded to its ancestors, a verified-absent one to its descendants.
  The hierarchy is the one the label space bundles (``oid``: ``bbox_labels_600_hierarchy.json``).
* **Verified labels only**: a class is evaluated on an image only if the image carries a verified label
  for it (present or absent; a box implies present). Detections of other classes there are ignored.
* **Group-of boxes**: a detection that matches no ordinary box but lies inside a group-of box
  (intersection over the detection's area ≥ 0.5) is not a false positive; each group-of box with at least
  one such detection counts once as a true positive, at the highest score among them. A group-of box with
  none is one missed object.

Ground truth is ``convert-oid`` output: categories with ``mid``, annotations with ``isgroupof``, images
with ``pos_category_ids`` / ``neg_category_ids`` (the verified image-level labels).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from scaledet.labelspace.errors import ScaledetError

from .ground_truth import GroundTruth

METRIC_NAMES = ("AP50",)
IOU_THRESHOLD = 0.5


def bundled_oid_parents() -> dict[str, list[str]]:
    """MID → parent MIDs of the OpenImages hierarchy, from the label space's bundled ``oid`` taxonomy."""
    from scaledet.labelspace.builtin import load_builtin

    (taxonomy,) = load_builtin("oid")
    return {c.local_id: list(c.parents) for c in taxonomy.categories}


class OpenImagesEvaluator:
    name = "oid"
    metric_names = METRIC_NAMES

    def __init__(self, parents: dict[str, list[str]] | None = None, expand_detections: bool = True) -> None:
        self.parents = parents
        self.expand_detections = expand_detections

    def evaluate(self, ground_truth: GroundTruth, results: list[dict]) -> dict[str, float]:
        per_class = self.per_class_ap(ground_truth, results)
        values = [ap for ap in per_class.values() if ap is not None]
        return {"AP50": round(100 * float(np.mean(values)), 3) if values else 0.0}

    # ------------------------------------------------------------------ hierarchy
    def _relatives(self, ground_truth: GroundTruth) -> tuple[dict[int, set[int]], dict[int, set[int]]]:
        """Ancestors and descendants of every category, as category ids of this file."""
        parents = self.parents if self.parents is not None else bundled_oid_parents()
        id_of_mid = {}
        for category in ground_truth.document["categories"]:
            mid = category.get("mid")
            if not isinstance(mid, str):
                raise ScaledetError(f"{ground_truth.path}: category {category['id']} has no 'mid' (convert OpenImages "
                                    "CSVs with 'scaledet convert-oid')")
            if mid not in parents:
                raise ScaledetError(f"{ground_truth.path}: category {category['id']} ({mid} {category['name']!r}) is not "
                                    "in the OpenImages hierarchy")
            id_of_mid[mid] = category["id"]
        ancestors: dict[int, set[int]] = {}
        for mid, category_id in id_of_mid.items():
            found, stack = set(), list(parents.get(mid, []))
            while stack:
                parent = stack.pop()
                if parent in id_of_mid and id_of_mid[parent] not in found:
                    found.add(id_of_mid[parent])
                stack.extend(parents.get(parent, []))
            ancestors[category_id] = found
        descendants: dict[int, set[int]] = defaultdict(set)
        for child, above in ancestors.items():
            for ancestor in above:
                descendants[ancestor].add(child)
        return ancestors, descendants

    # ------------------------------------------------------------------ evaluation
    def per_class_ap(self, ground_truth: GroundTruth, results: list[dict]) -> dict[int, float | None]:
        ancestors, descendants = self._relatives(ground_truth)
        boxes: dict[tuple[int, int], list[tuple[list[float], bool]]] = defaultdict(list)
        verified: dict[int, set[int]] = defaultdict(set)
        for annotation in ground_truth.document["annotations"]:
            group = bool(annotation.get("isgroupof", annotation.get("iscrowd", 0)))
            for category in {annotation["category_id"], *ancestors[annotation["category_id"]]}:
                boxes[(annotation["image_id"], category)].append((annotation["bbox"], group))
                verified[annotation["image_id"]].add(category)
        for image in ground_truth.document["images"]:
            for category in image.get("pos_category_ids", []):
                verified[image["id"]].update({category, *ancestors.get(category, ())})
            for category in image.get("neg_category_ids", []):
                verified[image["id"]].update({category, *descendants.get(category, ())})
        detections: dict[tuple[int, int], list[tuple[list[float], float]]] = defaultdict(list)
        for result in results:
            categories = {result["category_id"]}
            if self.expand_detections:
                categories |= ancestors.get(result["category_id"], set())
            for category in categories:
                if category in verified[result["image_id"]]:
                    detections[(result["image_id"], category)].append((result["bbox"], float(result["score"])))
        scores: dict[int, list[float]] = defaultdict(list)
        hits: dict[int, list[bool]] = defaultdict(list)
        positives: dict[int, int] = defaultdict(int)
        for (image_id, category), gt in boxes.items():
            positives[category] += len(gt)
        for key in set(boxes) | set(detections):
            s, h = match_image(detections.get(key, []), boxes.get(key, []))
            scores[key[1]].extend(s)
            hits[key[1]].extend(h)
        return {c["id"]: (average_precision(scores[c["id"]], hits[c["id"]], positives[c["id"]])
                          if positives[c["id"]] else None)
                for c in ground_truth.document["categories"]}


def _xyxy(boxes: list[list[float]]) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([array[:, :2], array[:, :2] + array[:, 2:]], axis=1)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    return width * height


def _area(a: np.ndarray) -> np.ndarray:
    return (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])


def match_image(detections: list[tuple[list[float], float]],
                ground_truth: list[tuple[list[float], bool]]) -> tuple[list[float], list[bool]]:
    """Scores and true/false flags of one class on one image (group-of boxes contribute one entry each)."""
    if not detections:
        return [], []
    order = np.argsort([-score for _, score in detections], kind="stable")
    det = _xyxy([detections[i][0] for i in order])
    det_scores = [detections[i][1] for i in order]
    ordinary = _xyxy([b for b, group in ground_truth if not group])
    grouped = _xyxy([b for b, group in ground_truth if group])
    scores: list[float] = []
    hits: list[bool] = []
    unmatched = np.ones(len(det), dtype=bool)
    if len(ordinary):
        inter = _intersection(det, ordinary)
        iou = inter / (_area(det)[:, None] + _area(ordinary)[None, :] - inter)
        taken = np.zeros(len(ordinary), dtype=bool)
        for d in range(len(det)):
            best = int(np.argmax(iou[d]))
            if iou[d, best] >= IOU_THRESHOLD:
                unmatched[d] = False
                scores.append(det_scores[d])
                hits.append(not taken[best])
                taken[best] = True
    if len(grouped):
        inter = _intersection(det, grouped)
        ioa = inter / np.maximum(_area(det)[:, None], 1e-12)
        best_in_group = np.full(len(grouped), -np.inf)
        for d in np.flatnonzero(unmatched):
            g = int(np.argmax(ioa[d]))
            if ioa[d, g] >= IOU_THRESHOLD:
                unmatched[d] = False
                best_in_group[g] = max(best_in_group[g], det_scores[d])
        for score in best_in_group[np.isfinite(best_in_group)]:
            scores.append(float(score))
            hits.append(True)
    for d in np.flatnonzero(unmatched):
        scores.append(det_scores[d])
        hits.append(False)
    return scores, hits


def average_precision(scores: list[float], hits: list[bool], positives: int) -> float:
    """Area under the precision/recall curve, precision made monotonically decreasing (VOC style)."""
    if not scores:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    true = np.asarray(hits, dtype=np.float64)[order]
    tp, fp = np.cumsum(true), np.cumsum(1 - true)
    precision = tp / (tp + fp)
    recall = tp / positives
    recall = np.concatenate([[0.0], recall, [recall[-1]]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    changes = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[changes] - recall[changes - 1]) * precision[changes]))
