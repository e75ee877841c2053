"""Per-dataset COCO mAP with pycocotools.

A dataset is evaluated in its own label space, as ScaleDet evaluates each upstream and downstream
dataset: the classifier scores only that dataset's labels (a subset of the union, or new text
embeddings for an unseen vocabulary), and detections are written back with the dataset's own category
ids. LVIS-style evaluation is not used: the ``lvis`` package (0.5.3, its latest release) installs but
calls ``np.float``, which NumPy removed in 1.24, so it fails at evaluation time. LVIS files are scored
with COCOeval, which ignores LVIS's federated ``neg_category_ids`` / ``not_exhaustive_category_ids``
(docs/detector.md).
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch

from scaledet.labelspace.atomic import atomic_write_json

from .data import CocoDetectionDataset

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


@torch.no_grad()
def detect_dataset(model, dataset: CocoDetectionDataset, text_embeddings: torch.Tensor, device: torch.device,
                   batch_size: int = 4, progress: bool = False) -> list[dict]:
    """COCO-format results for every image; ``text_embeddings`` are the rows of the dataset's labels in
    the order of ``dataset.coco['categories']``."""
    model.eval()
    model.roi_heads.set_vocabulary(text_embeddings.to(device))
    category_ids = [c["id"] for c in dataset.coco["categories"]]
    results = []
    indices = range(0, len(dataset), batch_size)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc=f"eval {dataset.spec.name}", unit="batch", leave=False)
    for start in indices:
        items = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
        outputs = model([image.to(device) for image, _ in items])
        for (_, target), output in zip(items, outputs):
            for box, score, label in zip(output["boxes"].tolist(), output["scores"].tolist(), output["labels"].tolist()):
                x1, y1, x2, y2 = box
                results.append({"image_id": int(target["image_id"]), "category_id": category_ids[label],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    return results


def coco_map(annotation_file: str | Path, results: list[dict]) -> dict[str, float]:
    """pycocotools bbox evaluation; AP values in percent (COCO's ``stats[0:6]``)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not results:
        return {name: 0.0 for name in METRIC_NAMES}
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(annotation_file))
        detections = ground_truth.loadRes(results)
        evaluator = COCOeval(ground_truth, detections, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: round(100 * max(0.0, float(v)), 3) for name, v in zip(METRIC_NAMES, evaluator.stats[:6])}


def evaluate_dataset(model, dataset: CocoDetectionDataset, union_embeddings: torch.Tensor, device: torch.device,
                     batch_size: int = 4, progress: bool = False) -> dict[str, float]:
    """mAP of one dataset in its own label space: the rows of ``union_embeddings`` (the labelspace the
    dataset was opened with) of its categories, in its category order."""
    text_embeddings = union_embeddings[dataset.category_union_indices()]
    results = detect_dataset(model, dataset, text_embeddings, device, batch_size, progress)
    return coco_map(dataset.annotation_file, results)


def write_results(path: Path, table: dict[str, dict[str, float]]) -> None:
    atomic_write_json(path, table)
