"""Evidence: does training on ``scaledet pseudo-label``'s boxes help, in the multi-dataset benchmark's world?

    python benchmarks/pseudo_labels.py [--seeds 8] [--iterations 100] [--precision 0.9] [--out docs/results/pseudo_labels]

The four upstream datasets of ``benchmarks/multidataset.py`` are unified (``scaledet-labels unify``, union
space, explicit lists). Their images hold objects that another dataset labels and they do not: ``geo``
ignores stars (``things`` labels them), ``things`` ignores triangles (``geo`` labels them), ``paint`` names
only red and blue circles and squares. Per seed:

1. **federated**: the detector trained on the unified file with the federated hard loss (the same settings
   as the multidataset benchmark's runs);
2. **teacher**: that run's checkpoint detects every training image and every image of a held-out
   validation split of the same four datasets (unified the same way); ``pseudo-label`` keeps, per
   category, the detections above the threshold that reaches ``--precision`` on the category's exhaustive
   cells of the validation split (``--calibration``), in unknown and partial cells only;
3. **student**: trained like (1), with the same seed, on the pseudo-labelled file (``pseudo_labels:
   {hard_weight: --hard-weight}``).

Every run is scored with pycocotools on every test split, each split labelled in full in its own
vocabulary. The table gives the paired difference student − federated of AP50 per test split, with its 95 %
t-interval over seeds (``benchmarks/paired.py``). The precision of the pseudo boxes is measured twice: as
``pseudo-label`` measured it on the validation split's exhaustive cells (``pseudo_labels.csv``), and against the world itself (every
object the generator drew, named by the category's dataset as that dataset names it; IoU ≥ 0.5).
Writes ``OUT/pseudo_labels.md`` and ``OUT/pseudo_labels.json``.
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # multidataset.py, paired.py

from multidataset import (DOWNSTREAM, RUNS, UPSTREAM, Run, add_world_arguments, build_spaces,  # noqa: E402
                          default_threads, machine_settings, make_world, train_and_evaluate)

FEDERATED = next(r for r in RUNS if r.scope == "federated")
STUDENT = Run("student", FEDERATED.datasets, FEDERATED.soft_weight, FEDERATED.scope)


def make_validation_split(work: Path, images: int, size: int) -> None:
    """A split of the four upstream datasets that neither training nor testing sees (its own seed)."""
    from scaledet.detector.synthetic import upstream_datasets, write_coco_dataset

    for spec in upstream_datasets():
        if not (work / spec.name / "val" / "annotations.json").is_file():
            write_coco_dataset(spec, work / spec.name / "val", images, size, seed=4)


def unify_upstream(work: Path, split: str) -> Path:
    from scaledet.labelspace.unify import unify

    out = work / f"unified-{split}"
    if not (out / "unified.json").is_file():
        out.mkdir(parents=True, exist_ok=True)
        unify(work / "spaces" / "+".join(FEDERATED.datasets),
              [(n, work / n / split / "annotations.json") for n in UPSTREAM],
              {n: work / n / split / "images" for n in UPSTREAM}, out)
    return out / "unified.json"


def world_truth(work: Path, train_images: int, size: int) -> dict[tuple[str, int], list]:
    """(dataset, image id) → every object the generator drew there (shape, colour, box), re-rendered from
    the seeds ``make_world`` used: the truth no annotation file holds."""
    from scaledet.detector.synthetic import render_image, upstream_datasets

    truth = {}
    for spec in upstream_datasets():
        rng = random.Random(f"{spec.name}-0")
        for image_id in range(1, train_images + 1):
            _, objects = render_image(rng, spec, size)
            truth[(spec.name, image_id)] = objects
    return truth


def true_precision(pseudo_file: Path, truth: dict, work: Path) -> tuple[int, int]:
    """(pseudo boxes that cover an object the category's own dataset would name so, pseudo boxes)."""
    from scaledet.detector.synthetic import upstream_datasets

    labeler = {spec.name: spec.labeler for spec in upstream_datasets()}
    document = json.loads(pseudo_file.read_text())
    label_of = {c["id"]: c["labels"][0] for c in document["categories"]}
    source_id = {}
    for name in UPSTREAM:
        source = json.loads((work / name / "train" / "annotations.json").read_text())
        for image in source["images"]:
            source_id[f"images/{name}/{image['file_name']}"] = (name, image["id"])
    where = {i["id"]: source_id.get(i["file_name"]) for i in document["images"]}
    right = total = 0
    for annotation in document["annotations"]:
        if not annotation.get("pseudo"):
            continue
        total += 1
        dataset, name = label_of[annotation["category_id"]].split("/", 1)
        x, y, w, h = annotation["bbox"]
        for obj in truth.get(where[annotation["image_id"]], []):
            ox, oy, ow, oh = obj.box
            inter = max(0.0, min(x + w, ox + ow) - max(x, ox)) * max(0.0, min(y + h, oy + oh) - max(y, oy))
            if labeler[dataset](obj.shape, obj.colour) == name and inter / (w * h + ow * oh - inter) >= 0.5:
                right += 1
                break
    return right, total


def calibrated_precision(csv_path: Path) -> tuple[float, int]:
    """The precision pseudo-label measured on exhaustive cells, weighted by each category's detections
    there, and the number of categories with a threshold."""
    rows = [r for r in csv.DictReader(csv_path.open()) if r["status"] == "calibrated"]
    weights = [int(r["teacher_detections"]) for r in rows]
    if not rows or sum(weights) == 0:
        return float("nan"), 0
    return sum(float(r["precision"]) * w for r, w in zip(rows, weights)) / sum(weights), len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_world_arguments(parser)
    parser.add_argument("--val-images", type=int, default=16, help="per dataset, for the thresholds")
    parser.add_argument("--calibrate-on", choices=("val", "train"), default="val",
                        help="the split whose exhaustive cells set the thresholds (train: the teacher's own images)")
    parser.add_argument("--precision", type=float, default=0.9)
    parser.add_argument("--hard-weight", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path("docs/results/pseudo_labels"))
    args = parser.parse_args()
    args.runs = None
    torch.set_num_threads(args.threads or default_threads())
    work = args.work or Path(tempfile.mkdtemp(prefix="scaledet-pseudo-"))
    started = time.perf_counter()
    from scaledet.detector.data import DatasetSpec
    from scaledet.detector.pseudo_labels import pseudo_label
    from scaledet.detector.pseudo_labels.run import PSEUDO_CSV, UnifiedFile
    from scaledet.detector.pseudo_labels.tables import read_detections
    from scaledet.detector.pseudo_labels.teacher import teacher_results
    from scaledet.labelspace.encoders import MiniLMEncoder

    make_world(work, args.train_images, args.test_images, args.size)
    build_spaces(work, MiniLMEncoder(), [FEDERATED])
    make_validation_split(work, args.val_images, args.size)
    unified, held_out = UnifiedFile.read(unify_upstream(work, "train")), UnifiedFile.read(unify_upstream(work, "val"))
    truth = world_truth(work, args.train_images, args.size)
    categories = {c["id"] for c in unified.categories}

    def entry(path: Path) -> list:
        return [DatasetSpec("unified", str(path), str(path.parent), labelspace_key="unified")]

    results, pseudo_stats = [], []
    for seed in range(args.seeds):
        baseline = train_and_evaluate(FEDERATED, seed, work, args, entry(unified.path))
        results.append({**baseline, "run": "federated"})
        out = work / f"pseudo-{seed}"
        checkpoint = Path(baseline["checkpoint"])
        parts, _ = teacher_results(unified, checkpoint, unified.path.parent, out, torch.device("cpu"))
        calibration = {}
        if args.calibrate_on == "val":
            held_out_parts, _ = teacher_results(held_out, checkpoint, held_out.path.parent, out, torch.device("cpu"),
                                                folder_name="teacher-calibration")
            calibration = {"calibration_file": held_out,
                           "calibration_detections": read_detections(held_out_parts, categories, "teacher")}
        pseudo_label(unified, read_detections(parts, categories, "teacher"), out, f"checkpoint {checkpoint}",
                     precision=args.precision, **calibration)
        right, total = true_precision(out / "unified.json", truth, work)
        measured, calibrated = calibrated_precision(out / PSEUDO_CSV)
        pseudo_stats.append({"seed": seed, "boxes": total, "true_positives": right,
                             "true_precision": right / total if total else None,
                             "measured_precision": measured, "categories_with_threshold": calibrated})
        student = train_and_evaluate(STUDENT, seed, work, args, entry(out / "unified.json"),
                                     {"hard_weight": args.hard_weight})
        results.append({**student, "run": "student"})
        print(f"seed {seed}: {total} pseudo boxes, true precision {pseudo_stats[-1]['true_precision']}, "
              f"AP50 federated {[round(baseline['scores'][d]['AP50'], 1) for d in UPSTREAM]} student "
              f"{[round(student['scores'][d]['AP50'], 1) for d in UPSTREAM]}", file=sys.stderr, flush=True)

    from paired import paired_interval, verdict

    by_run = {(r["run"], r["seed"]): r["scores"] for r in results}
    seeds = list(range(args.seeds))
    paired = {d: paired_interval([by_run[("student", s)][d]["AP50"] for s in seeds],
                                 [by_run[("federated", s)][d]["AP50"] for s in seeds]) for d in UPSTREAM + DOWNSTREAM}
    settings = {**machine_settings(args), "precision": args.precision, "hard_weight": args.hard_weight,
                "calibrated_on": args.calibrate_on,
                "wall_minutes": round((time.perf_counter() - started) / 60, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pseudo_labels.json").write_text(json.dumps({"settings": settings, "results": results,
                                                             "pseudo_boxes": pseudo_stats, "paired": paired}, indent=1))
    header = ["question"] + UPSTREAM + [f"{d}*" for d in DOWNSTREAM]
    row = ["pseudo labels (student − federated)"] + [verdict(paired[d]).replace(": ", "<br>")
                                                      for d in UPSTREAM + DOWNSTREAM]
    boxes = sum(p["boxes"] for p in pseudo_stats)
    right = sum(p["true_positives"] for p in pseudo_stats)
    measured = [p["measured_precision"] for p in pseudo_stats if p["measured_precision"] == p["measured_precision"]]
    body = [f"Settings: {', '.join(f'{k} {v}' for k, v in settings.items())}.", "",
            f"| {' | '.join(header)} |", "|" + "---|" * len(header), f"| {' | '.join(row)} |", "",
            f"Pseudo boxes: {boxes} over {args.seeds} seeds ({boxes / max(args.seeds, 1):.0f} per seed); precision "
            f"against the world {right / boxes if boxes else float('nan'):.3f}; precision pseudo-label measured on "
            f"the {args.calibrate_on} split's exhaustive cells {sum(measured) / len(measured) if measured else float('nan'):.3f} "
            "(mean over seeds)."]
    (args.out / "pseudo_labels.md").write_text("\n".join(body) + "\n")
    print("\n".join(body))


if __name__ == "__main__":
    main()
