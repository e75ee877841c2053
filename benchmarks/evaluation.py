"""Box AP at Objects365-val scale: ``scaledet eval --results`` beside pycocotools and faster-coco-eval.

    python benchmarks/evaluation.py [--scale 1.0] [--detections-per-image 100] [--limit 1800]
                                    [--evaluators scaledet pycocotools faster-coco-eval] [--keep DIR]

Objects365 v2's validation set has 80,000 images and about 1.24M boxes of 365 classes; a detector evaluated
on it submits up to 100 detections per image. This writes a ground-truth file of that shape (``--scale``
multiplies the image count) and a results file whose detections lie near the ground truth (moved, resized,
some relabelled) or anywhere, then times three processes on the same two files, each as a user runs it,
under ``/usr/bin/time`` (wall time, peak RSS):

* ``scaledet eval --results R --annotations G --evaluator coco --json`` (reading and checking both files,
  then faster-coco-eval);
* pycocotools called directly (``COCO``, ``loadRes``, ``COCOeval``), the official evaluator;
* faster-coco-eval called directly (``COCO``, ``loadRes``, ``COCOeval_faster``).

Each prints AP and AP50; the table shows them so that the three can be seen to agree. A process the kernel
kills for memory, or that runs past ``--limit`` seconds, is a row that says so.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from tables import table

VAL_IMAGES = 80_000
BOXES_PER_IMAGE = 15.5  # 1.24M boxes over 80k images
CLASSES = 365

#: A library called directly, as its README shows: ground truth, loadRes, evaluate, accumulate, summarize.
CALLED_DIRECTLY = """
import json, sys
{imports}
gt = COCO(sys.argv[1]); evaluator = {evaluator}(gt, gt.loadRes(sys.argv[2]), "bbox")
evaluator.evaluate(); evaluator.accumulate(); evaluator.summarize()
print(json.dumps({{"AP": round(100 * evaluator.stats[0], 3), "AP50": round(100 * evaluator.stats[1], 3)}}))
"""
PYCOCOTOOLS = CALLED_DIRECTLY.format(imports="from pycocotools.coco import COCO\nfrom pycocotools.cocoeval import COCOeval",
                                     evaluator="COCOeval")
FASTER_COCO_EVAL = CALLED_DIRECTLY.format(imports="from faster_coco_eval import COCO, COCOeval_faster",
                                          evaluator="COCOeval_faster")


def write_files(directory: Path, images: int, detections_per_image: int, seed: int = 0) -> tuple[Path, Path, int, int]:
    """Ground truth and results of Objects365-val's shape, streamed to disk; (gt, results, boxes, detections)."""
    rng = random.Random(seed)
    gt_path, results_path = directory / "val.json", directory / "results.json"
    boxes = detections = 0
    with gt_path.open("w") as gt, results_path.open("w") as results:
        gt.write('{"categories": [' + ",".join(f'{{"id": {c}, "name": "class {c}"}}' for c in range(1, CLASSES + 1)))
        gt.write('], "images": [' + ",".join(f'{{"id": {i}, "width": 1024, "height": 768, "file_name": "{i}.jpg"}}'
                                             for i in range(1, images + 1)))
        gt.write('], "annotations": [')
        results.write("[")
        for image in range(1, images + 1):
            written = 0
            for _ in range(max(0, round(rng.gauss(BOXES_PER_IMAGE, 6)))):
                w, h = rng.uniform(8, 400), rng.uniform(8, 300)
                x, y = rng.uniform(0, 1024 - w), rng.uniform(0, 768 - h)
                category = rng.randint(1, CLASSES)
                boxes += 1
                gt.write(("," if boxes > 1 else "") + f'{{"id": {boxes}, "image_id": {image}, "category_id": {category}, '
                         f'"bbox": [{x:.1f}, {y:.1f}, {w:.1f}, {h:.1f}], "area": {w * h:.1f}, "iscrowd": 0}}')
                if rng.random() < 0.85 and written < detections_per_image:
                    label = category if rng.random() < 0.8 else rng.randint(1, CLASSES)
                    box = [x + rng.uniform(-0.15, 0.15) * w, y + rng.uniform(-0.15, 0.15) * h,
                           w * rng.uniform(0.8, 1.2), h * rng.uniform(0.8, 1.2)]
                    results.write(("," if detections else "") + json.dumps(
                        {"image_id": image, "category_id": label, "bbox": [round(v, 1) for v in box],
                         "score": round(rng.random(), 4)}))
                    detections += 1
                    written += 1
            while written < detections_per_image:
                w, h = rng.uniform(8, 400), rng.uniform(8, 300)
                results.write(("," if detections else "") + json.dumps(
                    {"image_id": image, "category_id": rng.randint(1, CLASSES),
                     "bbox": [round(rng.uniform(0, 1024 - w), 1), round(rng.uniform(0, 768 - h), 1), round(w, 1),
                              round(h, 1)], "score": round(rng.random() * 0.5, 4)}))
                detections += 1
                written += 1
        gt.write("]}")
        results.write("]")
    return gt_path, results_path, boxes, detections


def timed(command: list[str], limit: float) -> tuple[float, float, dict | None]:
    """(wall seconds, peak RSS MiB, the JSON it printed last) of one process; None for a process the kernel
    killed for memory, or stopped at ``limit`` seconds (the row then says so)."""
    done = subprocess.run(["/usr/bin/time", "-f", "%e %M", "timeout", "-s", "KILL", str(int(limit)), *command],
                          capture_output=True, text=True)
    wall, peak_kb = done.stderr.strip().splitlines()[-1].split()
    if done.returncode != 0:
        if "signal 9" in done.stderr or done.returncode in (124, 137):
            return float(wall), int(peak_kb) / 1024, None
        raise SystemExit(f"{' '.join(command[:3])} … failed:\n{done.stderr[-3000:]}")
    printed = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
    return float(wall), int(peak_kb) / 1024, printed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of Objects365-val's 80,000 images")
    parser.add_argument("--detections-per-image", type=int, default=100)
    parser.add_argument("--keep", type=Path, help="write the files here and keep them")
    parser.add_argument("--limit", type=float, default=1800, help="seconds each evaluator may run")
    parser.add_argument("--evaluators", nargs="+", default=["scaledet", "pycocotools", "faster-coco-eval"],
                        choices=["scaledet", "pycocotools", "faster-coco-eval"],
                        help="which to run (at full scale the one-pass libraries need more memory than 24 GiB)")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        run(args, args.keep)
        return
    with tempfile.TemporaryDirectory(prefix="scaledet-eval-bench-") as folder:
        run(args, Path(folder))


def run(args: argparse.Namespace, directory: Path) -> None:
    images = max(1, round(VAL_IMAGES * args.scale))
    gt, results, boxes, detections = write_files(directory, images, args.detections_per_image)
    print(f"{images:,} images, {boxes:,} boxes, {detections:,} detections "
          f"({gt.stat().st_size / 2**20:,.0f} + {results.stat().st_size / 2**20:,.0f} MiB of JSON)", flush=True)
    scaledet = str(Path(sys.executable).with_name("scaledet"))
    commands = {
        "scaledet eval --results --evaluator coco": [scaledet, "eval", "--results", str(results), "--annotations",
                                                     str(gt), "--evaluator", "coco", "--json"],
        "pycocotools (COCOeval)": [sys.executable, "-c", PYCOCOTOOLS, str(gt), str(results)],
        "faster-coco-eval (COCOeval_faster)": [sys.executable, "-c", FASTER_COCO_EVAL, str(gt), str(results)],
    }
    rows = []
    for name, command in commands.items():
        if name.split()[0] not in args.evaluators:
            continue
        wall, peak, printed = timed(command, args.limit)
        if printed is None:
            why = "stopped at the time limit" if wall >= args.limit - 1 else "killed for memory"
            rows.append((name, f"{wall:,.1f}", f"{peak:,.0f}", why, ""))
            print(f"  {name}: {why} after {wall:,.1f} s at {peak:,.0f} MiB", flush=True)
            continue
        rows.append((name, f"{wall:,.1f}", f"{peak:,.0f}", f"{printed['AP']:.3f}", f"{printed['AP50']:.3f}"))
        print(f"  {name}: {wall:,.1f} s, {peak:,.0f} MiB", flush=True)
    print(f"\nbox AP at {args.scale:g} × Objects365-val ({images:,} images, {boxes:,} boxes, {detections:,} detections)")
    print(table(rows, ("evaluator (a whole process)", "wall s", "peak RSS MiB", "AP", "AP50")))


if __name__ == "__main__":
    main()
