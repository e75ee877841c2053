"""Open-vocabulary inference: any vocabulary is text embeddings made with the checkpoint's encoder."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from scaledet.labelspace import builtin
from scaledet.labelspace.io.atomic import atomic_write_json
from scaledet.labelspace.cache import EmbeddingCache
from scaledet.labelspace.io.output_dirs import mark_output_dir, record_output_files, refuse_shadowing
from scaledet.labelspace.embed import embed_prompt_names
from scaledet.labelspace.encoders import build_encoder, clip_arch_of
from scaledet.labelspace.io.errors import ScaledetError
from scaledet.labelspace.prompts import normalize_name, prompt_name
from scaledet.labelspace.io.text_files import check_name_text

from .data import image_file_name, read_image
from .drawing import ClassColours, draw_detections
from .vocabulary import Vocabulary


def encode_vocabulary(names: list[str], state: dict, clip_weights: str | None = None,
                      display_names: list[str] | None = None, category_ids: list[int] | None = None) -> Vocabulary:
    """Embed class names with the checkpoint's encoder and templates (through the embedding cache)."""
    info = state["labelspace"]
    encoder = build_encoder(info["encoder_name"], clip_weights=clip_weights,
                            clip_arch=clip_arch_of(info["encoder_identity"]))
    if encoder.identity != info["encoder_identity"]:
        raise ScaledetError(f"the checkpoint was trained with encoder {info['encoder_identity'][:48]}…, "
                            f"this machine's {info['encoder_name']} is {encoder.identity[:48]}…")
    cache = EmbeddingCache(encoder.identity, encoder.dim)
    embeddings, _ = embed_prompt_names(names, tuple(info["templates"]), encoder, cache=cache)
    return Vocabulary(display_names or names, torch.from_numpy(embeddings), category_ids)


def vocabulary_from_text(text: str, state: dict, clip_weights: str | None = None) -> Vocabulary:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ScaledetError(f"--vocab {text!r}: no class names (give them comma-separated)")
    for name in names:
        check_name_text(name, "--vocab")
    return encode_vocabulary([normalize_name(n) for n in names], state, clip_weights, names)


def vocabulary_from_dataset(key: str, state: dict, clip_weights: str | None = None) -> Vocabulary:
    categories = [c for taxonomy in builtin.load_builtin(key) for c in taxonomy.categories]
    numeric = all(c.local_id.isdigit() for c in categories)
    return encode_vocabulary([prompt_name(c) for c in categories], state, clip_weights, [c.name for c in categories],
                             [int(c.local_id) for c in categories] if numeric else None)


@torch.no_grad()
def predict_images(model, images: list[Path], vocabulary: Vocabulary, device: torch.device,
                   score_threshold: float = 0.3, one_label_per_box: bool = False) -> list[dict]:
    """Detections of ``vocabulary`` in each image. ``one_label_per_box`` keeps only each proposal's
    best-scoring label, as Detic's demo draws, and suppresses overlapping boxes across labels: one caption
    per object instead of every label above the threshold (a model trained on a disjoint union scores
    synonyms alike, so boxes otherwise carry several)."""
    model.roi_heads.set_vocabulary(vocabulary.embeddings.to(device))
    model.roi_heads.score_thresh = score_threshold  # the model keeps what the user asked to see
    model.roi_heads.one_label_per_proposal = one_label_per_box
    predictions = []
    for path in images:
        if not path.is_file():
            raise ScaledetError(f"{path}: image not found")
        tensor = read_image(path).to(device)
        try:
            output = model([tensor])[0]
        except ScaledetError as err:
            raise ScaledetError(f"{path}: {err}") from None
        detections = [
            {"label": vocabulary.names[label], "category_id": vocabulary.category_id(label), "score": round(score, 4),
             "box": [round(v, 1) for v in box]}
            for box, score, label in zip(output["boxes"].tolist(), output["scores"].tolist(), output["labels"].tolist())
            if score >= score_threshold
        ]
        predictions.append({"image": str(path), "width": tensor.shape[2], "height": tensor.shape[1],
                            "detections": detections})
    return predictions


PREDICT_KIND = "predictions"


def drawing_names(images: list[str]) -> list[str]:
    """One PNG name per input image, never the same twice: ``a/img.png`` and ``b/img.png`` become
    ``img.detections.png`` and ``img-2.detections.png``."""
    names, used = [], set()
    for image in images:
        stem = Path(image).stem or "image"
        name, n = f"{stem}.detections.png", 1
        while name in used:
            n += 1
            name = f"{stem}-{n}.detections.png"
        used.add(name)
        names.append(name)
    return names


@dataclass
class AnnotatedImage:
    """An input image as a COCO-format file lists it: its ``image_id`` and its ground-truth boxes."""

    image_id: int
    boxes: list[dict]  # {label, box as x1 y1 x2 y2}


def annotated_images(images: list[Path], annotations: Path) -> list[AnnotatedImage]:
    """Each input image's id and ground truth in ``annotations`` (read once), matched by file name: the ids
    make results scorable against the file, the boxes the drawings' ground-truth panel. An image the file
    does not list is an error."""
    from .evaluation.ground_truth import read_ground_truth

    document = read_ground_truth(annotations).document
    names = {category["id"]: category["name"] for category in document["categories"]}
    by_name = {Path(image_file_name(image)).name: image["id"] for image in document["images"]}
    boxes: dict = {}
    for annotation in document["annotations"]:
        x, y, w, h = annotation["bbox"]
        boxes.setdefault(annotation["image_id"], []).append(
            {"label": names.get(annotation["category_id"], str(annotation["category_id"])), "box": [x, y, x + w, y + h]})
    found = []
    for path in images:
        if path.name not in by_name:
            raise ScaledetError(f"{path}: no image named {path.name!r} in {annotations}")
        found.append(AnnotatedImage(by_name[path.name], boxes.get(by_name[path.name], [])))
    return found


def coco_results(predictions: list[dict], image_ids: list[int]) -> list[dict]:
    """Detections in the COCO results format: ``image_id``, ``category_id``, ``bbox`` as xywh, ``score``."""
    results = []
    for prediction, image_id in zip(predictions, image_ids):
        for detection in prediction["detections"]:
            x1, y1, x2, y2 = detection["box"]
            results.append({"image_id": image_id, "category_id": detection["category_id"],
                            "bbox": [x1, y1, round(x2 - x1, 1), round(y2 - y1, 1)], "score": detection["score"]})
    return results


def write_predictions(predictions: list[dict], out_dir: Path, coco_image_ids: list[int] | None = None,
                      vocabulary: list[str] = (), ground_truth: list[list[dict]] | None = None) -> list[Path]:
    """``detections.json``, one drawing per image (colours in ``vocabulary`` order; with ``ground_truth``, a
    ground-truth panel beside), and with ``coco_image_ids`` the COCO results file."""
    names = drawing_names([p["image"] for p in predictions])
    refuse_shadowing([out_dir / n for n in (*names, "detections.json", "results.json")],
                     [Path(p["image"]) for p in predictions], "--out")
    out_dir.mkdir(parents=True, exist_ok=True)
    mark_output_dir(out_dir, PREDICT_KIND)
    written = []
    colours = ClassColours(list(vocabulary) or [d["label"] for p in predictions for d in p["detections"]])
    for index, (prediction, name) in enumerate(zip(predictions, names)):
        png = out_dir / name
        draw_detections(Path(prediction["image"]), prediction["detections"], png, colours,
                        ground_truth=None if ground_truth is None else ground_truth[index])
        prediction["drawing"] = name
        written.append(png)
    json_path = atomic_write_json(out_dir / "detections.json", predictions)
    if coco_image_ids is not None:
        written.append(atomic_write_json(out_dir / "results.json", coco_results(predictions, coco_image_ids)))
    record_output_files(out_dir, [json_path, *written])
    return [json_path, *written]
