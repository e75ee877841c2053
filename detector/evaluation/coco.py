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


class CocoEvaluator:
    """AP averaged over IoU 0.50:0.95, at 0.50 and 0.75, and by object size; 100 detections per image."""

    name = "coco"
    metric_names = METRIC_NAMES
    protocol = "coco"

    def evaluate(self, ground_truth: GroundTruth, results: list[dict]) -> dict[str, float]:
        from faster_coco_eval import COCOeval_faster

        if not results:
            return {name: 0.0 for name in METRIC_NAMES}
        with contextlib.redirect_stdout(io.StringIO()):
            gt = coco_ground_truth(ground_truth)
            evaluator = COCOeval_faster(gt, gt.loadRes(standard_results(results)), iouType="bbox",
                                        print_function=lambda *a, **k: None)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        return {name: percent(v) for name, v in zip(METRIC_NAMES, evaluator.stats[:6])}


def percent(value: float) -> float | None:
    """A COCO statistic in percent; the evaluators' -1 (no ground truth in that slice, e.g. no large objects)
    becomes None (JSON null), not a misleading 0."""
    return None if value < 0 else round(100 * float(value), 3)
