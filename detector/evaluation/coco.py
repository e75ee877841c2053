"""COCO box AP, computed by faster-coco-eval: the official COCO evaluator's algorithm (pycocotools'
``COCOeval``) in C++, the one evaluation library the project depends on (it also serves LVIS).

Its numbers are pycocotools': ``tests/test_evaluators.py`` scores random cases with both (pycocotools is a
``dev`` extra for that check) and ``benchmarks/evaluation.py`` compares them at Objects365-val scale. Ground
truth that omits fields the evaluator requires but the format leaves optional (``iscrowd`` in LVIS v1 and
many exports, ``area``) gets COCO's defaults (not crowd; the box area) instead of a ``KeyError``.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np

from .ground_truth import GroundTruth, standard_results

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def coco_ground_truth(ground_truth: GroundTruth):
    """A ``COCO`` object (faster-coco-eval's, pycocotools' interface) built from the document, with the
    optional fields filled in."""
    from faster_coco_eval import COCO

    document = dict(ground_truth.document)
    document["annotations"] = [
        {**a, "iscrowd": int(a.get("iscrowd", 0) or 0), "area": a.get("area", a["bbox"][2] * a["bbox"][3])}
        for a in document["annotations"]
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = document
        coco.createIndex()
    return coco


#: Image × category pairs evaluated in one pass. The evaluator keeps a record per pair while it evaluates
#: (faster-coco-eval as pycocotools: ~1 KB each), so Objects365 val (80,000 images × 365 classes) in one
#: pass needs more than 24 GB; in passes of this many pairs it stays near 1.5 GB, with the same numbers.
PAIRS_PER_PASS = 1_500_000


class CocoEvaluator:
    """AP averaged over IoU 0.50:0.95, at 0.50 and 0.75, and by object size; 100 detections per image.

    The categories are evaluated in groups, so that memory is bounded by ``pairs_per_pass`` image ×
    category pairs, not by images × categories. Each category's precision curve depends on that category
    alone, so the curves of all groups, put side by side, are those of one pass, and COCO's summary (the
    mean over the entries that are not -1) is computed from them as ``COCOeval.summarize`` does."""

    name = "coco"
    metric_names = METRIC_NAMES
    protocol = "coco"

    def __init__(self, pairs_per_pass: int = PAIRS_PER_PASS) -> None:
        self.pairs_per_pass = pairs_per_pass

    def evaluate(self, ground_truth: GroundTruth, results: list[dict]) -> dict[str, float]:
        if not results:
            return {name: 0.0 for name in METRIC_NAMES}
        with contextlib.redirect_stdout(io.StringIO()):
            gt = coco_ground_truth(ground_truth)
            precision, params = precision_in_groups(gt, gt.loadRes(standard_results(results)), self.pairs_per_pass)
        stats = coco_summary(precision, params)
        return {name: percent(v) for name, v in zip(METRIC_NAMES, stats)}


def precision_in_groups(gt, detections, pairs_per_pass: int, lvis_style: bool = False,
                        max_detections: int | None = None) -> tuple[np.ndarray, object]:
    """faster-coco-eval's precision array (IoU × recall × category × area × max detections) over every
    category of ``gt``, evaluated a group of categories at a time (at most ``pairs_per_pass`` image ×
    category pairs each), and the parameters it was computed with. Categories come out sorted by id."""
    from faster_coco_eval import COCOeval_faster

    categories = sorted(gt.getCatIds())
    per_pass = max(1, pairs_per_pass // max(1, len(gt.getImgIds())))
    curves, params = [], None
    for start in range(0, len(categories), per_pass):
        evaluator = COCOeval_faster(gt, detections, iouType="bbox", lvis_style=lvis_style,
                                    print_function=lambda *a, **k: None)
        if max_detections is not None:
            evaluator.params.maxDets = [max_detections]
        evaluator.params.catIds = categories[start:start + per_pass]
        evaluator.evaluate()
        evaluator.accumulate()
        curves.append(np.asarray(evaluator.eval["precision"]))
        params = evaluator.params
        del evaluator
    return np.concatenate(curves, axis=2), params


def coco_summary(precision: np.ndarray, params, max_detections: int = 100,
                 categories: np.ndarray | None = None) -> list[float]:
    """The first six numbers of ``COCOeval.summarize`` from its precision array (IoU × recall × category ×
    area × max detections): AP, AP50, AP75, APs, APm, APl at ``max_detections`` per image, over all
    categories or the positions ``categories`` (LVIS's APr / APc / APf take the AP of a frequency group);
    -1 where a slice has no entry that is not -1."""
    area = {label: i for i, label in enumerate(params.areaRngLbl)}
    detections = list(params.maxDets).index(max_detections)
    thresholds = np.asarray(params.iouThrs)
    if categories is not None:
        precision = precision[:, :, categories]

    def mean(values: np.ndarray) -> float:
        kept = values[values > -1]
        return -1.0 if kept.size == 0 else float(np.mean(kept))

    def at(iou: float | None, region: str) -> float:
        rows = precision if iou is None else precision[np.flatnonzero(np.isclose(thresholds, iou))]
        return mean(rows[:, :, :, area[region], detections])

    return [at(None, "all"), at(0.5, "all"), at(0.75, "all"), at(None, "small"), at(None, "medium"),
            at(None, "large")]


def percent(value: float) -> float | None:
    """A COCO statistic in percent; the evaluators' -1 (no ground truth in that slice, e.g. no large objects)
    becomes None (JSON null), not a misleading 0."""
    return None if value < 0 else round(100 * float(value), 3)
