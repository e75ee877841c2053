"""Per-category score thresholds measured on exhaustive cells.

Where a category is exhaustively annotated (every instance boxed, or verified absent), each teacher
detection of it is a true positive (IoU ≥ 0.5 with a box not matched yet, best score first, as COCO
matches) or a false positive; one on a crowd box is neither. The threshold of a category is the lowest
score at which the precision of the detections scoring at least that much still reaches the target: the
most boxes a precision target allows. Its recall there is the share of the exhaustive cells' boxes found.
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass, field

import numpy as np

from scaledet.labelspace.box_overlap import iou_matrix

MATCH_IOU = 0.5
#: why a category gets no pseudo boxes, or where its threshold came from (``pseudo_labels.csv``'s status)
CALIBRATED, FIXED = "calibrated", "fixed threshold"
NO_EXHAUSTIVE = "no exhaustive images"
NO_DETECTIONS = "no teacher detections on its exhaustive images"
NOT_REACHED = "precision not reached"


def match_detections(detections: np.ndarray, scores: np.ndarray, boxes: np.ndarray,
                     crowd: np.ndarray) -> np.ndarray:
    """int8 per detection: 1 true positive, 0 false positive, -1 ignored (on a crowd box only)."""
    outcome = np.zeros(len(detections), dtype=np.int8)
    if len(detections) == 0:
        return outcome
    order = np.argsort(-scores, kind="stable")
    ordinary, crowded = boxes[~crowd], boxes[crowd]
    overlaps = iou_matrix(detections[order], ordinary)
    crowd_overlaps = iou_matrix(detections[order], crowded)
    taken = np.zeros(len(ordinary), dtype=bool)
    for rank, detection in enumerate(order):
        if len(ordinary):
            candidates = np.where(taken, -1.0, overlaps[rank])
            best = int(np.argmax(candidates))
            if candidates[best] >= MATCH_IOU:
                taken[best] = True
                outcome[detection] = 1
                continue
        if len(crowded) and crowd_overlaps[rank].max() >= MATCH_IOU:
            outcome[detection] = -1
    return outcome


@dataclass
class Calibration:
    """Detections on exhaustive cells, per category: (category, score, outcome), and the boxes and images
    those cells hold."""

    num_categories: int
    categories: array = field(default_factory=lambda: array("i"))
    scores: array = field(default_factory=lambda: array("d"))
    outcomes: array = field(default_factory=lambda: array("b"))
    boxes: np.ndarray = None  # per category id (index = id): ordinary boxes on exhaustive cells
    images: np.ndarray = None  # per category id: images where it is exhaustive

    def __post_init__(self) -> None:
        self.boxes = np.zeros(self.num_categories + 1, dtype=np.int64)
        self.images = np.zeros(self.num_categories + 1, dtype=np.int64)

    def add(self, category: int, scores: np.ndarray, outcomes: np.ndarray) -> None:
        self.categories.extend([category] * len(scores))
        self.scores.extend(scores.astype(np.float64).tolist())
        self.outcomes.extend(outcomes.tolist())

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.frombuffer(self.categories, dtype=np.int32) if self.categories else np.zeros(0, np.int32),
                np.frombuffer(self.scores, dtype=np.float64) if self.scores else np.zeros(0, np.float64),
                np.frombuffer(self.outcomes, dtype=np.int8) if self.outcomes else np.zeros(0, np.int8))


@dataclass
class CategoryThreshold:
    threshold: float  # inf: no pseudo boxes
    status: str
    precision: float = float("nan")
    recall: float = float("nan")
    detections: int = 0  # teacher detections on exhaustive cells


def measured_at(scores: np.ndarray, outcomes: np.ndarray, boxes: int, threshold: float) -> tuple[float, float]:
    """(precision, recall) of the detections scoring ≥ ``threshold``; NaN where undefined."""
    kept = (scores >= threshold) & (outcomes >= 0)
    found = int(np.sum(outcomes[kept] == 1))
    precision = found / int(kept.sum()) if kept.any() else float("nan")
    return precision, (found / boxes if boxes else float("nan"))


def precision_threshold(scores: np.ndarray, outcomes: np.ndarray, boxes: int, target: float) -> float | None:
    """The lowest score at which the precision of detections scoring at least that much is ≥ ``target``
    (None when no score reaches it). Ties are kept together: a threshold keeps every detection of its score."""
    counted = outcomes >= 0
    scores, outcomes = scores[counted], outcomes[counted]
    if len(scores) == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    scores, hits = scores[order], (outcomes[order] == 1)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    group_end = np.append(scores[1:] != scores[:-1], True)  # the last detection of each distinct score
    reaching = np.flatnonzero(group_end & (precision >= target))
    return float(scores[reaching[-1]]) if len(reaching) else None


def choose_thresholds(calibration: Calibration, precision: float | None, fixed: float | None) -> dict[int, CategoryThreshold]:
    """Every category id's threshold: ``fixed`` for all when given (measured where possible), else
    calibrated to ``precision``; categories that cannot be calibrated get none (∞) and say why."""
    categories, scores, outcomes = calibration.columns()
    order = np.argsort(categories, kind="stable")
    categories, scores, outcomes = categories[order], scores[order], outcomes[order]
    starts = np.searchsorted(categories, np.arange(calibration.num_categories + 2))
    chosen = {}
    for category in range(1, calibration.num_categories + 1):
        part = slice(starts[category], starts[category + 1])
        own_scores, own_outcomes = scores[part], outcomes[part]
        boxes, images = int(calibration.boxes[category]), int(calibration.images[category])
        if fixed is not None:
            p, r = measured_at(own_scores, own_outcomes, boxes, fixed) if images else (float("nan"), float("nan"))
            chosen[category] = CategoryThreshold(fixed, FIXED, p, r, len(own_scores))
        elif images == 0:
            chosen[category] = CategoryThreshold(float("inf"), NO_EXHAUSTIVE)
        elif len(own_scores) == 0:
            chosen[category] = CategoryThreshold(float("inf"), NO_DETECTIONS)
        else:
            threshold = precision_threshold(own_scores, own_outcomes, boxes, precision)
            if threshold is None:
                chosen[category] = CategoryThreshold(float("inf"), NOT_REACHED, detections=len(own_scores))
            else:
                p, r = measured_at(own_scores, own_outcomes, boxes, threshold)
                chosen[category] = CategoryThreshold(threshold, CALIBRATED, p, r, len(own_scores))
    return chosen
