"""LVIS federated box AP through faster-coco-eval, a maintained implementation of the LVIS rules.

The ``lvis`` package (0.5.3, its last release) calls ``np.float``, removed in NumPy 1.24, so it cannot run
on a current stack. faster-coco-eval's ``lvis_style`` applies the same federated rules as the LVIS API:

* a detection of a category neither annotated in the image nor in its ``neg_category_ids`` is ignored
  (the image was never checked for it);
* an unmatched detection of a category in the image's ``not_exhaustive_category_ids`` is ignored, not a
  false positive (not every instance was annotated);
* up to 300 detections per image; AP also by category frequency: APr (rare), APc, APf.

``LvisFixedEvaluator`` (``lvis-fixed``, ``--protocol fixed``) is the Fixed AP of Dave et al. 2021 ("Evaluating
Large-Vocabulary Object Detectors: The Devil is in the Details"): no per-image cap, and instead at most
10,000 detections per category over the whole dataset, so a rare class's detections are not crowded out of
an image by frequent ones. Users confuse the two, so every output names the protocol.

Categories are evaluated in groups (``coco.precision_in_groups``) so that LVIS val's 20k images × 1,203
classes fit in memory; AP and APr / APc / APf are then computed from the precision curves as the library's
``summarize`` does (equal to its one-pass numbers: ``tests/test_evaluators.py``).
"""
from __future__ import annotations

import contextlib
import io

import numpy as np

from scaledet.labelspace.io.errors import ScaledetError

from .coco import PAIRS_PER_PASS, coco_summary, percent, precision_in_groups
from .ground_truth import GroundTruth, standard_results

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
MAX_DETECTIONS = 300

#: Fixed AP's budget: detections per category over the dataset.
FIXED_AP_PER_CLASS = 10_000


class LvisEvaluator:
    name = "lvis"
    metric_names = METRIC_NAMES
    protocol = "lvis-federated"
    #: what bounds the detections scored: the LVIS API's per-image cap
    fixed_ap = False

    def __init__(self, pairs_per_pass: int = PAIRS_PER_PASS) -> None:
        self.pairs_per_pass = pairs_per_pass  # categories in groups, as CocoEvaluator (memory bounded)

    def evaluate(self, ground_truth: GroundTruth, results: list[dict]) -> dict[str, float]:
        from faster_coco_eval import COCO

        missing = [c["id"] for c in ground_truth.document["categories"] if c.get("frequency") not in ("r", "c", "f")]
        if missing:
            raise ScaledetError(f"{ground_truth.path}: category {missing[0]} has no LVIS 'frequency' (r, c or f); "
                                "is this an LVIS file? (use --evaluator coco otherwise)")
        if not results:
            return {name: 0.0 for name in METRIC_NAMES}
        if self.fixed_ap:
            results = _top_per(results, "category_id", FIXED_AP_PER_CLASS)
            per_image = max(len(results), 1)  # no per-image cap
        else:
            results = _top_per(results, "image_id", MAX_DETECTIONS)
            per_image = MAX_DETECTIONS
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(ground_truth.document)
            precision, params = precision_in_groups(gt, gt.loadRes(standard_results(results)), self.pairs_per_pass,
                                                    lvis_style=True, max_detections=per_image)
        metrics = dict(zip(METRIC_NAMES, coco_summary(precision, params, per_image)))
        frequency = {c["id"]: c["frequency"] for c in ground_truth.document["categories"]}
        order = np.asarray([frequency[c] for c in sorted(gt.getCatIds())])
        for name, group in (("APr", "r"), ("APc", "c"), ("APf", "f")):
            metrics[name] = coco_summary(precision, params, per_image, np.flatnonzero(order == group))[0]
        return {name: percent(value) for name, value in metrics.items()}


def _top_per(results: list[dict], key: str, limit: int) -> list[dict]:
    """The ``limit`` highest-scoring detections of each ``image_id`` (the LVIS API's per-image cap) or each
    ``category_id`` over the dataset (Fixed AP's budget)."""
    groups: dict[int, list[dict]] = {}
    for result in results:
        groups.setdefault(result[key], []).append(result)
    kept = []
    for detections in groups.values():
        kept.extend(sorted(detections, key=lambda d: -d["score"])[:limit])
    return kept


class LvisFixedEvaluator(LvisEvaluator):
    """LVIS's federated rules with Fixed AP's detection budget (module docstring)."""

    name = "lvis-fixed"
    protocol = "lvis-fixed-ap (10,000 detections per category, no per-image cap)"
    fixed_ap = True
