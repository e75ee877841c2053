"""``scaledet convert-oid`` at OpenImages v6 train scale: wall time and peak memory of the whole command.

    python benchmarks/convert_oid.py [--fraction 1.0] [--naive-fraction 0.05] [--work DIR]

1. Generates an OpenImages-v6-train-shaped CSV set: ``class-descriptions-boxable.csv`` (the built-in 601
   classes), ``*-annotations-bbox.csv`` (``--fraction 1`` = 1,743,042 images, 14,610,229 boxes, a tenth
   group-of), and ``*-human-imagelabels-boxable.csv`` (five verified labels an image, present or absent).
   Each image is a symbolic link to one small JPEG (sizes are read from image headers; a link costs one
   inode an image, not a file's blocks).
2. Runs ``scaledet convert-oid`` as its own process under ``/usr/bin/time`` (wall, peak RSS), and beside
   it, at ``--naive-fraction`` (0 skips it), the script convert-oid replaced, which a user writes first: a
   dict per box and per image, then one ``json.dump``.
Prints a table; the goal is a peak under 2 GiB at full size. docs/detector.md holds measured rows.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

from measure import measured
from tables import table

FULL_IMAGES = 1_743_042
FULL_BOXES = 14_610_229
LABELS_PER_IMAGE = 5

#: The script a user writes before finding convert-oid: everything in dicts, then one json.dump.
NAIVE_SCRIPT = r"""
import csv, json, sys
from PIL import Image
boxes_csv, classes_csv, image_dir, labels_csv, out = sys.argv[1:]
mids = [row[0] for row in csv.reader(open(classes_csv))]
category_of = {mid: i + 1 for i, mid in enumerate(mids)}
images, annotations = {}, []
def image(image_id):
    if image_id not in images:
        with Image.open(f"{image_dir}/{image_id}.jpg") as im:
            width, height = im.size
        images[image_id] = {"id": len(images) + 1, "file_name": f"{image_id}.jpg", "width": width,
                            "height": height, "pos_category_ids": [], "neg_category_ids": []}
    return images[image_id]
for row in csv.DictReader(open(boxes_csv)):
    im = image(row["ImageID"])
    x1, x2 = float(row["XMin"]) * im["width"], float(row["XMax"]) * im["width"]
    y1, y2 = float(row["YMin"]) * im["height"], float(row["YMax"]) * im["height"]
    annotations.append({"id": len(annotations) + 1, "image_id": im["id"], "category_id": category_of[row["LabelName"]],
                        "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                        "iscrowd": int(row["IsGroupOf"]), "isgroupof": int(row["IsGroupOf"])})
for row in csv.DictReader(open(labels_csv)):
    key = "pos_category_ids" if row["Confidence"] == "1" else "neg_category_ids"
    image(row["ImageID"])[key].append(category_of[row["LabelName"]])
json.dump({"images": list(images.values()), "annotations": annotations,
           "categories": [{"id": i + 1, "mid": m} for i, m in enumerate(mids)]}, open(out, "w"))
"""


def write_csv_set(folder: Path, images: int, seed: int = 0) -> int:
    """The three CSVs and the image folder; returns the number of boxes."""
    from PIL import Image

    from scaledet.labelspace.builtin import load_builtin

    rng = random.Random(seed)
    (taxonomy,) = load_builtin("oid")
    mids = [c.local_id for c in taxonomy.categories]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "class-descriptions-boxable.csv", "w") as out:
        out.writelines(f"{c.local_id},{c.name}\n" for c in taxonomy.categories)
    image_dir = folder / "images"
    image_dir.mkdir(exist_ok=True)
    Image.new("RGB", (1024, 768), "grey").save(folder / "template.jpg", quality=50)
    per_image = FULL_BOXES / FULL_IMAGES
    boxes = 0
    with open(folder / "train-annotations-bbox.csv", "w") as box_file, \
            open(folder / "train-human-imagelabels-boxable.csv", "w") as label_file:
        box_file.write("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,"
                       "IsDepiction,IsInside\n")
        label_file.write("ImageID,Source,LabelName,Confidence\n")
        for index in range(images):
            image_id = f"{index:016x}"
            link = image_dir / f"{image_id}.jpg"
            if not link.exists():
                link.symlink_to(folder / "template.jpg")
            lines = []
            for _ in range(int(per_image) + (rng.random() < per_image % 1)):
                x1, y1 = rng.uniform(0, 0.9), rng.uniform(0, 0.9)
                x2, y2 = rng.uniform(x1 + 0.01, 1.0), rng.uniform(y1 + 0.01, 1.0)
                lines.append(f"{image_id},xclick,{rng.choice(mids)},1,{x1:.6f},{x2:.6f},{y1:.6f},{y2:.6f},0,0,"
                             f"{int(rng.random() < 0.1)},0,0\n")
            boxes += len(lines)
            box_file.writelines(lines)
            label_file.writelines(f"{image_id},verification,{mid},{int(rng.random() < 0.5)}\n"
                                  for mid in rng.sample(mids, LABELS_PER_IMAGE))
    return boxes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=1.0, help="of OpenImages v6 train")
    parser.add_argument("--naive-fraction", type=float, default=0.05, help="size for the naive script (0: skip)")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="scaledet-convert-oid-bench-"))
    rows = []
    runs = [("scaledet convert-oid", args.fraction)]
    if args.naive_fraction > 0:
        runs += [("scaledet convert-oid", args.naive_fraction), ("naive script (dicts + json.dump)", args.naive_fraction)]
    for name, fraction in runs:
        folder = work / f"oid-{fraction:g}"
        images = max(1, round(FULL_IMAGES * fraction))
        if not (folder / "train-human-imagelabels-boxable.csv").is_file():
            boxes = write_csv_set(folder, images)
            (folder / "boxes.txt").write_text(str(boxes))
        boxes = int((folder / "boxes.txt").read_text())
        out = folder / ("naive.json" if name.startswith("naive") else "converted.json")
        out.unlink(missing_ok=True)
        inputs = [str(folder / "train-annotations-bbox.csv"), str(folder / "class-descriptions-boxable.csv"),
                  str(folder / "images"), str(folder / "train-human-imagelabels-boxable.csv"), str(out)]
        if name.startswith("naive"):
            command = [sys.executable, "-c", NAIVE_SCRIPT, *inputs]
        else:
            command = [str(Path(sys.executable).with_name("scaledet")), "convert-oid", "--boxes", inputs[0],
                       "--classes", inputs[1], "--images", inputs[2], "--image-labels", inputs[3], "--out", inputs[4]]
        wall, peak = measured(command)
        rows.append((name, f"{images:,}", f"{boxes:,}", f"{wall:.0f} s", f"{peak:,.0f} MiB",
                     f"{out.stat().st_size / 2**30:.2f} GiB"))
        print(table(rows, ("command", "images", "boxes", "wall", "peak RSS", "output")), flush=True)
    print(f"\nfull size is OpenImages v6 train ({FULL_IMAGES:,} images, {FULL_BOXES:,} boxes); goal: peak < 2 GiB. "
          f"Work folder: {work}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
