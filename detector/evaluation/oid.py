"""The OpenImages detection challenge metric, computed as the official evaluator computes it.

The official path is the TensorFlow Object Detection API's ``oid_hierarchical_labels_expansion`` on the
ground-truth CSVs, then ``OpenImagesDetectionChallengeEvaluator`` (``object_detection_evaluation.py``,
``per_image_evaluation.py``, ``metrics.py``). Its rules, all reproduced here:

* **Ground truth is expanded, detections are not.** Every ground-truth box is copied to each ancestor of its
  class, once for every place that ancestor holds in the hierarchy tree (the expansion script lists an
  ancestor once per occurrence, so a class reachable through two copies of ``Kitchen utensil`` gives two
  ``Kitchen utensil`` boxes). A verified-present image label is expanded to its ancestors, a
  verified-absent one to its descendants. A detector must output parent classes itself;
  ``OpenImagesExpandedEvaluator`` (``oid-expanded``) copies detections up too, which is *not* the
  challenge's protocol and is named so in every output.
* **Verified classes only.** On each image only classes with a box or a verified image label (present or
  absent) are evaluated; detections of other classes there are dropped, and so are detections on images
  the ground truth does not have.
* **Per image and class**: detections with no area are dropped, the rest sorted by score (at most 10,000
  kept). Stage 1 matches each detection, best score first, to the ordinary box of highest IoU; IoU ≥ 0.5 on a
  box not yet taken is a true positive, anything else stays a false positive. Stage 2 gives every detection
  that is not a true positive (duplicates included) its chance against the group-of boxes: intersection over
  the detection's area ≥ 0.5 with the group-of box it overlaps most makes it no longer count. Each group-of
  box with such detections is one true positive at the highest of their scores (when that score is > 0);
  a group-of box without any is one missed object.
* **AP** per class is VOC's area under the precision/recall curve with precision made monotonically
  decreasing; the mean is over classes with at least one ground-truth box (a class with boxes but no
  detections scores 0). Only the order of detections of exactly equal score may differ from the official
  tool (its sort is not stable), so ties can move AP slightly.

Ground truth is ``convert-oid`` output: categories with ``mid``, annotations with ``isgroupof``, images
with ``pos_category_ids`` / ``neg_category_ids`` (the verified image-level labels).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from functools import lru_cache

import numpy as np

from scaledet.labelspace.io.errors import ScaledetError

from .ground_truth import GroundTruth

METRIC_NAMES = ("AP50",)
IOU_THRESHOLD = 0.5
#: The official evaluator keeps at most this many detections per class and image (NMS at IoU 1.0 is off).
MAX_DETECTIONS_PER_CLASS_AND_IMAGE = 10_000
CHALLENGE_PROTOCOL = "openimages-challenge"
EXPANDED_PROTOCOL = "openimages-challenge+expanded-detections (not the challenge's protocol)"


def bundled_oid_parents() -> dict[str, list[str]]:
    """MID → parent MIDs of the OpenImages hierarchy, from the label space's bundled ``oid`` taxonomy."""
    from scaledet.labelspace.builtin import load_builtin

    (taxonomy,) = load_builtin("oid")
    return {c.local_id: list(c.parents) for c in taxonomy.categories}


def ancestor_multiplicity(parents: dict[str, list[str]]) -> dict[str, Counter]:
    """MID → Counter of ancestor MID → how many ground-truth copies the official expansion makes.

    The expansion walks the hierarchy *tree*, in which a class with two parents appears twice with its whole
    subtree; each occurrence of an ancestor adds one copy. The number of occurrences of a node is its number
    of paths to the root, so that is the multiplicity (checked against the official enumeration on all 601
    classes of ``bbox_labels_600_hierarchy.json``)."""

    @lru_cache(maxsize=None)
    def occurrences(mid: str) -> int:
        above = parents.get(mid, [])
        return 1 if not above else sum(occurrences(p) for p in above)

    result: dict[str, Counter] = {}
    for mid in parents:
        seen: set[str] = set()
        stack = list(parents[mid])
        while stack:
            parent = stack.pop()
            if parent not in seen:
                seen.add(parent)
                stack.extend(parents.get(parent, []))
        result[mid] = Counter({ancestor: occurrences(ancestor) for ancestor in seen})
    return result


class OpenImagesEvaluator:
    """The challenge metric, as the official evaluator computes it (see the module docstring)."""

    name = "oid"
    metric_names = METRIC_NAMES
    protocol = CHALLENGE_PROTOCOL
    expand_detections = False

    def __init__(self, parents: dict[str, list[str]] | None = None) -> None:
        self.parents = parents

    def evaluate(self, ground_truth: GroundTruth, results: list[dict]) -> dict[str, float]:
        per_class = self.per_class_ap(ground_truth, results)
        values = [ap for ap in per_class.values() if ap is not None]
        return {"AP50": round(100 * float(np.mean(values)), 3) if values else 0.0}

    # ------------------------------------------------------------------ hierarchy
    def _relatives(self, ground_truth: GroundTruth) -> tuple[dict[int, Counter], dict[int, set[int]]]:
        """Ancestors (with the official copy counts) and descendants of every category, as ids of this file.
        Hierarchy nodes that are not categories of the file are climbed through."""
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
        multiplicity = ancestor_multiplicity(parents)
        ancestors: dict[int, Counter] = {
            category_id: Counter({id_of_mid[a]: n for a, n in multiplicity[mid].items() if a in id_of_mid})
            for mid, category_id in id_of_mid.items()}
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
            own = annotation["category_id"]
            for category, copies in (Counter({own: 1}) + ancestors[own]).items():
                boxes[(annotation["image_id"], category)].extend([(annotation["bbox"], group)] * copies)
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
                categories |= set(ancestors.get(result["category_id"], ()))
            for category in categories:
                if category in verified.get(result["image_id"], ()):
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


class OpenImagesExpandedEvaluator(OpenImagesEvaluator):
    """The challenge rules with every detection also copied to the ancestors of its class: how detectors
    that predict only leaf classes are sometimes reported. Not the challenge's protocol; its numbers are
    not comparable with published OpenImages results."""

    name = "oid-expanded"
    protocol = EXPANDED_PROTOCOL
    expand_detections = True


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
    """Scores and true/false flags of one class on one image, in the official two stages (module docstring).
    Detections inside a group-of box leave the list; each group-of box they hit adds one true positive."""
    det = _xyxy([box for box, _ in detections])
    keep = (det[:, 0] < det[:, 2]) & (det[:, 1] < det[:, 3])  # the official evaluator drops boxes with no area
    det_scores = np.asarray([score for _, score in detections], dtype=np.float64)[keep]
    order = np.argsort(-det_scores, kind="stable")[:MAX_DETECTIONS_PER_CLASS_AND_IMAGE]
    det, det_scores = det[keep][order], det_scores[order]
    if not len(det):
        return [], []
    ordinary = _xyxy([b for b, group in ground_truth if not group])
    grouped = _xyxy([b for b, group in ground_truth if group])
    true_positive = np.zeros(len(det), dtype=bool)
    in_group = np.zeros(len(det), dtype=bool)
    if len(ordinary):
        inter = _intersection(det, ordinary)
        iou = inter / (_area(det)[:, None] + _area(ordinary)[None, :] - inter)
        taken = np.zeros(len(ordinary), dtype=bool)
        for d, best in enumerate(np.argmax(iou, axis=1)):
            if iou[d, best] >= IOU_THRESHOLD and not taken[best]:
                true_positive[d] = taken[best] = True
    group_scores = np.zeros(len(grouped))
    if len(grouped):
        ioa = _intersection(det, grouped) / _area(det)[:, None]
        for d, best in enumerate(np.argmax(ioa, axis=1)):
            if not true_positive[d] and ioa[d, best] >= IOU_THRESHOLD:
                in_group[d] = True
                group_scores[best] = max(group_scores[best], det_scores[d])
    hit_groups = group_scores[group_scores > 0]
    return ([*det_scores[~in_group].tolist(), *hit_groups.tolist()],
            [*true_positive[~in_group].tolist(), *[True] * len(hit_groups)])


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
