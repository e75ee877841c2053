"""Running the detector over an evaluation dataset and scoring it with the dataset's evaluator.

A dataset is evaluated in its own label space, as ScaleDet evaluates each upstream and downstream
dataset: the classifier scores only that dataset's labels (a subset of the union, or new text
embeddings for an unseen vocabulary), and detections are written back with the dataset's own category
ids, in the COCO results format, so that any official tool can re-check them.
"""
from __future__ import annotations

from pathlib import Path

import torch

from scaledet.labelspace.unify import complete_label_lists

from ..data import CocoDetectionDataset, to_float
from . import build_evaluator, default_evaluator_name
from .coco import CocoEvaluator
from .ground_truth import GroundTruth, check_unique_ids, read_ground_truth
from .lvis import MAX_DETECTIONS as LVIS_MAX_DETECTIONS


@torch.no_grad()
def detect_dataset(model, dataset: CocoDetectionDataset, text_embeddings: torch.Tensor, device: torch.device,
                   batch_size: int = 4, progress: bool = False, category_ids: list[int] | None = None) -> list[dict]:
    """COCO-format results for every image; ``text_embeddings`` are the rows of the dataset's labels in
    the order of the dataset's categories (or of another vocabulary, with its ``category_ids``)."""
    model.eval()
    model.roi_heads.set_vocabulary(text_embeddings.to(device))
    category_ids = category_ids or [c["id"] for c in dataset.categories]
    results = []
    indices = range(0, len(dataset), batch_size)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc=f"eval {dataset.spec.name}", unit="batch", leave=False)
    for start in indices:
        items = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
        outputs = model([to_float(image.to(device)) for image, _ in items])
        for (_, target), output in zip(items, outputs):
            for box, score, label in zip(output["boxes"].tolist(), output["scores"].tolist(), output["labels"].tolist()):
                x1, y1, x2, y2 = box
                results.append({"image_id": int(target["image_id"]), "category_id": category_ids[label],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    return results


def translated_vocabulary(dataset: CocoDetectionDataset, build: str | Path | None, merge: str | Path | None = "auto"):
    """For an entry with ``predicts_in``: (the translator into the entry's categories, the build's output,
    the union indices of the vocabulary predicted in, their category ids as the translator reads them)."""
    from scaledet.labelspace.io.errors import ScaledetError
    from scaledet.labelspace.outputs import LabelSpaceOutput
    from scaledet.labelspace.translate import make_translator, retarget, source_category_ids

    if build is None:
        raise ScaledetError(f"dataset {dataset.spec.name}: predicts_in needs the build to translate with")
    output = LabelSpaceOutput.load(build, with_embeddings=False)
    where = f"dataset {dataset.spec.name} (predicts_in {dataset.spec.predicts_in})"
    try:
        translator = make_translator(output, dataset.spec.predicts_in, dataset.spec.key, merge)
    except ScaledetError as error:
        raise ScaledetError(f"{where}: {error}") from None
    retarget(translator, output, dataset.categories, where)
    return (translator, output, *source_category_ids(translator, output))


def coco_map(annotation_file: str | Path, results: list[dict]) -> dict[str, float]:
    """COCO box AP of ``results`` against a COCO-format file (percent)."""
    return CocoEvaluator().evaluate(read_ground_truth(annotation_file), results)


def evaluator_of(dataset: CocoDetectionDataset):
    """The evaluator a dataset entry names, else the one its labelspace key implies."""
    name = dataset.spec.evaluator or default_evaluator_name(dataset.spec.key)
    return build_evaluator(name, f"dataset {dataset.spec.name}: evaluator")


def evaluate_dataset(model, dataset: CocoDetectionDataset, union_embeddings: torch.Tensor, device: torch.device,
                     batch_size: int = 4, progress: bool = False, build: str | Path | None = None,
                     translations: dict | None = None, merge: str | Path | None = "auto") -> tuple[dict[str, float], list[dict]]:
    """(metrics, raw detections) of one dataset in its own label space: the rows of ``union_embeddings``
    (the labelspace the dataset was opened with) of its categories, in its category order. An entry with
    ``predicts_in`` is detected in that dataset's vocabulary of ``build`` and translated into its own
    categories (:func:`translated_vocabulary`); what the translation did goes into ``translations``."""
    evaluator = evaluator_of(dataset)
    text_embeddings, category_ids, translator = union_embeddings[dataset.category_union_indices()], None, None
    if dataset.spec.predicts_in:
        translator, output, labels, category_ids = translated_vocabulary(dataset, build, merge)
        text_embeddings = union_embeddings[torch.as_tensor(labels)]
    previous = model.roi_heads.detections_per_img
    if evaluator.name in ("lvis", "lvis-fixed"):
        model.roi_heads.detections_per_img = max(previous, LVIS_MAX_DETECTIONS)
    try:
        results = detect_dataset(model, dataset, text_embeddings, device, batch_size, progress, category_ids)
    finally:
        model.roi_heads.detections_per_img = previous
    if translator is not None:
        from scaledet.labelspace.translate import describe, translated_detections

        results = list(translated_detections(translator, output, results, f"dataset {dataset.spec.name}"))
        if translations is not None:
            translations[dataset.spec.name] = describe(translator)
    check_unique_ids(dataset.coco, dataset.annotation_file)
    ground_truth = GroundTruth(dataset.annotation_file, complete_label_lists(dataset.coco))
    return evaluator.evaluate(ground_truth, results), results
