"""``scaledet-labels unify`` at Objects365 + OpenImages scale: wall time and peak memory of the whole command.

    python benchmarks/unify.py [--fraction 1.0] [--compact-fraction 0.01] [--work DIR]

1. Builds the ``o365`` + ``oid`` label space (through the embedding cache).
2. Generates two annotation files: one shaped like Objects365 v2 train (``benchmarks/data.py``'s generator:
   365 categories, 14.6 boxes per image; ``--fraction 1`` = 1.74M images / 25.4M boxes) and one shaped like
   ``scaledet convert-oid`` output of OpenImages v6 train (601 classes with ``mid``, 8.4 boxes per image,
   a tenth group-of, verified present / absent image labels; ``--fraction 1`` = 1.74M images / 14.6M boxes).
3. Runs ``scaledet-labels unify`` on both as its own process under ``/usr/bin/time`` (wall, peak RSS): the
   default file (every image's full lists, which any LVIS reader scores right) at ``--fraction``, and
   ``--compact`` at ``--compact-fraction`` (0 skips it), so the two sizes can be compared.
4. Beside it, on the same files in the same run, the script unify replaces, as UniDet's dataset scripts do
   it: ``json.load`` each file, give every category an id in the union and renumber images and boxes,
   ``json.dump`` (``--naive-fraction``, 0 skips it; it holds both files in memory).
Prints a table; the goal is a peak of at most 2 GiB at full size. docs/labelspace.md holds measured rows.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from data import BOXES_PER_IMAGE as O365_BOXES_PER_IMAGE
from data import FULL_IMAGES as O365_IMAGES
from data import write_o365_like
from measure import measured
from tables import table

REPO = Path(__file__).resolve().parents[1]
OID_IMAGES = 1_743_042
OID_BOXES_PER_IMAGE = 14_610_229 / OID_IMAGES


def write_oid_like(path: Path, images: int, seed: int = 1) -> int:
    """Stream a convert-oid-shaped file: 601 categories with ``mid``, verified image labels, group-of boxes."""
    from scaledet.labelspace.builtin import load_builtin

    rng = random.Random(seed)
    (taxonomy,) = load_builtin("oid")
    boxes = 0
    with open(path, "w") as out:
        out.write('{"info": {"description": "OpenImages-shaped, generated"}, "categories": ')
        out.write(json.dumps([{"id": i + 1, "name": c.name, "mid": c.local_id} for i, c in enumerate(taxonomy.categories)]))
        out.write(', "images": [')
        count = len(taxonomy.categories)
        for i in range(1, images + 1):
            positives = rng.sample(range(1, count + 1), 3)
            negatives = [c for c in rng.sample(range(1, count + 1), 6) if c not in positives]
            out.write(("," if i > 1 else "") + f'{{"id": {i}, "file_name": "{i:016x}.jpg", "width": 1024, '
                      f'"height": 768, "pos_category_ids": {positives}, "neg_category_ids": {negatives}}}')
        out.write('], "annotations": [')
        for i in range(1, images + 1):
            for _ in range(int(OID_BOXES_PER_IMAGE) + (rng.random() < OID_BOXES_PER_IMAGE % 1)):
                boxes += 1
                x, y = rng.uniform(0, 900), rng.uniform(0, 650)
                w, h = rng.uniform(4, 1024 - x), rng.uniform(4, 768 - y)
                group = int(rng.random() < 0.1)
                out.write(("," if boxes > 1 else "") + f'{{"id": {boxes}, "image_id": {i}, "category_id": '
                          f'{rng.randint(1, count)}, "bbox": [{x:.2f}, {y:.2f}, {w:.2f}, {h:.2f}], '
                          f'"area": {w * h:.1f}, "iscrowd": {group}, "isgroupof": {group}}}')
        out.write("]}")
    return boxes


#: The script a user writes first: both files in memory, ids remapped, one json.dump (no label states,
#: no checks, no image paths).
NAIVE_SCRIPT = r"""
import json, sys
out, *sources = sys.argv[1:]
categories, images, annotations = [], [], []
for path in sources:
    document = json.load(open(path))
    category_of, image_of = {}, {}
    for category in document["categories"]:
        category_of[category["id"]] = len(categories) + 1
        categories.append({**category, "id": len(categories) + 1})
    for image in document["images"]:
        image_of[image["id"]] = len(images) + 1
        images.append({**image, "id": len(images) + 1})
    for annotation in document["annotations"]:
        annotations.append({**annotation, "id": len(annotations) + 1, "image_id": image_of[annotation["image_id"]],
                            "category_id": category_of[annotation["category_id"]]})
    del document
json.dump({"images": images, "annotations": annotations, "categories": categories}, open(out, "w"))
"""


def seconds(wall: float) -> str:
    return f"{wall:.1f} s" if wall < 100 else f"{wall:.0f} s"


def run_naive(o365: Path, oid: Path, out: Path) -> tuple[float, float]:
    return measured([sys.executable, "-c", NAIVE_SCRIPT, str(out), str(o365), str(oid)])


def run_unify(build: Path, o365: Path, oid: Path, to: Path, *extra: str) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of the command as a user runs it."""
    script = Path(sys.executable).with_name("scaledet-labels")
    return measured([str(script), "unify", "--labelspace", str(build), "--annotations", f"o365={o365}",
                     f"oid={oid}", "--out", str(to), "-q", *extra])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=1.0, help="of Objects365 v2 and OpenImages v6 train")
    parser.add_argument("--compact-fraction", type=float, default=0.01, help="size for --compact (0: skip)")
    parser.add_argument("--naive-fraction", type=float, default=None,
                        help="size for the naive script (default: --fraction; 0 skips it)")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="scaledet-unify-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    build = work / "labelspace"
    if not (build / "manifest.json").is_file():
        subprocess.run([str(Path(sys.executable).with_name("scaledet-labels")), "build", "--datasets", "o365", "oid",
                        "--out", str(build), "-q"], check=True)
    rows = []
    runs = [(args.fraction, ())] + ([(args.compact_fraction, ("--compact",))] if args.compact_fraction > 0 else [])
    for fraction, extra in runs:
        tag = f"{fraction:g}"
        o365, oid = work / f"o365-{tag}.json", work / f"oid-{tag}.json"
        o365_images, oid_images = max(1, round(O365_IMAGES * fraction)), max(1, round(OID_IMAGES * fraction))
        if not o365.is_file():
            write_o365_like(o365, o365_images)
        if not oid.is_file():
            write_oid_like(oid, oid_images)
        out = work / f"unified-{tag}{'-compact' if extra else ''}"
        wall, peak = run_unify(build, o365, oid, out, *extra, "--force")
        meta = json.loads(subprocess.run([sys.executable, "-c", (
            "import ijson, json, sys; f = open(sys.argv[1], 'rb'); "
            "print(json.dumps(next(ijson.items(f, 'scaledet'))))"), str(out / "unified.json")],
            capture_output=True, text=True, check=True).stdout)
        size = (out / "unified.json").stat().st_size / 2**30
        rows.append(("unify --compact" if extra else "unify (full lists)", f"{o365_images + oid_images:,}",
                     f"{meta['boxes']:,}", seconds(wall), f"{peak:,.0f} MiB", f"{size:.2f} GiB"))
        print(table(rows, ("command", "images", "boxes", "wall", "peak RSS", "output")), flush=True)
        naive_fraction = args.fraction if args.naive_fraction is None else args.naive_fraction
        if not extra and naive_fraction == fraction and naive_fraction > 0:
            wall, peak = run_naive(o365, oid, work / f"naive-{tag}.json")
            rows.append(("naive script (json.load, remap, json.dump)", f"{o365_images + oid_images:,}",
                         f"{meta['boxes']:,}", seconds(wall), f"{peak:,.0f} MiB",
                         f"{(work / f'naive-{tag}.json').stat().st_size / 2**30:.2f} GiB"))
            print(table(rows, ("command", "images", "boxes", "wall", "peak RSS", "output")), flush=True)
    per_box = rows[0]
    print(f"\ndefault file at --fraction {args.fraction:g}; full size is Objects365 v2 train + OpenImages v6 train "
          f"({O365_IMAGES + OID_IMAGES:,} images, ~{round(O365_IMAGES * O365_BOXES_PER_IMAGE + OID_IMAGES * OID_BOXES_PER_IMAGE):,} "
          f"boxes); goal: peak ≤ 2 GiB. Work folder: {work}  ({per_box[0]})")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
