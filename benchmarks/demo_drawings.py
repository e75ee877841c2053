"""What a newcomer reads in ``scaledet demo``'s drawings: is each shape named right first?

    python benchmarks/demo_drawings.py [--demo runs/demo] [--images 100] [--seed 2] [--all-labels]

The demo's checkpoint detects the vocabulary its drawings use (``circle, square, triangle, star``, given as
text, at the drawings' score threshold and with one label per box, as drawn) on fresh images of its two
datasets, rendered by the demo's generator at the demo's image size with ``--seed``. The default seed 2 is
one the demo never uses (it trains on seed 0 and tests on seed 1), so the images are held out from every
choice made with the demo's test split; ``--seed 1 --images 50`` measures the demo's own test images.

Every shape the generator drew counts, including those the annotations leave out (``geo`` never labels
stars, ``things`` never labels triangles): the drawings show them too. Per shape:

* right first: the highest-scoring detection overlapping the object by IoU ≥ 0.5 has the object's name;
* missed: no detection overlaps it by IoU ≥ 0.5 (counted as not right);
* wrong labels: the other names among the detections overlapping it by IoU ≥ 0.5, per object.

``--all-labels`` scores every label above the threshold instead, as ``scaledet predict`` does by default.
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

import torch
from torchvision.ops import box_convert, box_iou

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tables.py

from tables import table  # noqa: E402

SHAPES = ("circle", "square", "triangle", "star")


def held_out_world(folder: Path, images: int, seed: int, size: int) -> dict[str, list[tuple[Path, list]]]:
    """Dataset → (image file, every object the generator drew in it), rendered again from the same seed:
    ``write_coco_dataset`` draws the images, and a second generator with its seed replays their objects."""
    from scaledet.detector.demo import DATASETS
    from scaledet.detector.synthetic import render_image, upstream_datasets, write_coco_dataset

    world = {}
    for spec in upstream_datasets():
        if spec.name not in DATASETS:
            continue
        write_coco_dataset(spec, folder / spec.name, images, size, seed=seed)
        replay = random.Random(f"{spec.name}-{seed}")  # write_coco_dataset's generator, from the start
        world[spec.name] = [(folder / spec.name / "images" / f"{spec.name}_{k:05d}.png",
                             render_image(replay, spec, size)[1]) for k in range(1, images + 1)]
    return world


def drawing_quality(demo: Path, images: int = 100, seed: int = 2, all_labels: bool = False) -> dict[str, Counter]:
    """Shape → counts of ``objects``, ``right``, ``missed`` and ``wrong_labels`` (see the module docstring)."""
    from scaledet.detector.checkpoint import load_model_from_checkpoint
    from scaledet.detector.demo import DRAWING_VOCABULARY, DemoSettings
    from scaledet.detector.predict import predict_images, vocabulary_from_text

    settings = DemoSettings()
    device = torch.device("cpu")
    model, state = load_model_from_checkpoint(demo / "train" / "model_final.pth", device)
    vocabulary = vocabulary_from_text(DRAWING_VOCABULARY, state)
    counts = {shape: Counter() for shape in SHAPES}
    with tempfile.TemporaryDirectory(prefix="scaledet-drawings-") as scratch:
        for entries in held_out_world(Path(scratch), images, seed, settings.image_size).values():
            predictions = predict_images(model.eval(), [path for path, _ in entries], vocabulary, device,
                                         score_threshold=settings.score_threshold, one_label_per_box=not all_labels)
            for (_, objects), prediction in zip(entries, predictions):
                detections = prediction["detections"]
                drawn_boxes = box_convert(torch.tensor([o.box for o in objects]).reshape(-1, 4), "xywh", "xyxy")
                overlaps = box_iou(drawn_boxes, torch.tensor([d["box"] for d in detections]).reshape(-1, 4))
                for drawn, row in zip(objects, overlaps):
                    near = [d for d, overlap in zip(detections, row.tolist()) if overlap >= 0.5]
                    count = counts[drawn.shape]
                    count["objects"] += 1
                    if not near:
                        count["missed"] += 1
                        continue
                    count["right"] += max(near, key=lambda d: d["score"])["label"] == drawn.shape
                    count["wrong_labels"] += len({d["label"] for d in near} - {drawn.shape})
    return counts


def quality_table(counts: dict[str, Counter]) -> str:
    total = sum(counts.values(), Counter())
    rows = []
    for name, count in [*counts.items(), ("all", total)]:
        objects = max(count["objects"], 1)
        rows.append((name, count["objects"], f"{100 * count['right'] / objects:.0f} %", count["missed"],
                     f"{count['wrong_labels'] / objects:.2f}"))
    return table(rows, ("shape", "objects", "right first", "missed", "wrong labels per object"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"), help="a 'scaledet demo' output folder")
    parser.add_argument("--images", type=int, default=100, help="images per dataset")
    parser.add_argument("--seed", type=int, default=2, help="the generator's seed (the demo trains on 0, tests on 1)")
    parser.add_argument("--all-labels", action="store_true", help="every label above the threshold, not one per box")
    args = parser.parse_args()
    if not (args.demo / "train" / "model_final.pth").is_file():
        sys.exit(f"error: {args.demo}: no train/model_final.pth (run 'scaledet demo --out {args.demo}' first)")
    counts = drawing_quality(args.demo, args.images, args.seed, args.all_labels)
    mode = "every label above the threshold" if args.all_labels else "one label per box, as drawn"
    print(f"{args.demo}: {args.images} images per dataset, generator seed {args.seed}, {mode}")
    print(quality_table(counts))


if __name__ == "__main__":
    main()
