"""OpenImages box CSVs → COCO-format JSON, so OpenImages trains and evaluates like every other dataset.

Input: ``*-annotations-bbox.csv`` (``ImageID, Source, LabelName, Confidence, XMin, XMax, YMin, YMax,
IsOccluded, IsTruncated, IsGroupOf, ...``, coordinates normalised to [0, 1]), the class descriptions
CSV, and the image folder (``<ImageID>.jpg``; sizes are read from the image headers). Categories get ids
1..N in the class-description order and keep their MID in a ``mid`` field, which is how the detector maps
them to the labelspace's ``oid`` labels. What the challenge metric needs is kept: each box's ``IsGroupOf``
as ``isgroupof``, and, from an optional ``*-human-imagelabels-boxable.csv`` (``ImageID, Source, LabelName,
Confidence``), each image's verified labels as ``pos_category_ids`` (confidence 1) and
``neg_category_ids`` (confidence 0). An image with verified labels and no box is kept: the challenge
metric counts detections there as false positives on its verified-absent classes. ``IsGroupOf`` boxes are
also ``iscrowd`` (ignored in training, as in COCO). Coordinates must be finite, within [0, 1] and not
inverted; anything else is a one-line error naming the CSV line.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Iterator

from PIL import Image

from scaledet.labelspace.atomic import atomic_write_text
from scaledet.labelspace.errors import ScaledetError, one_line
from scaledet.labelspace.readers import read_openimages_csv

REQUIRED_COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax")
#: Written first in every output, so that a later run recognises the file as its own by its first bytes.
INFO = {"description": "OpenImages boxes converted by scaledet convert-oid"}


def check_convert_out(out: Path, force: bool = False, inputs: tuple[Path, ...] = ()) -> None:
    """``--out`` may be new or an earlier convert-oid output; any other file only with ``--force``, and
    never one of the command's own input files, ``--force`` or not."""
    if out.is_dir():
        raise ScaledetError(f"--out {out}: is a directory; give the JSON file to write")
    for source in inputs:
        if source is not None and out.exists() and Path(source).exists() and out.resolve() == Path(source).resolve():
            raise ScaledetError(f"--out {out}: is the input {source} itself; an output never replaces its input, "
                                "even with --force; name another file")
    if not out.exists() or force:
        return
    try:
        with open(out, "rb") as handle:
            head = handle.read(256).decode("utf-8", errors="replace")
    except OSError:
        head = ""
    if json.dumps(INFO) not in head:
        raise ScaledetError(f"--out {out}: exists and was not written by convert-oid; choose another file or add --force")


def _image_size(path: Path, where: str) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            image.verify()
            return image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ScaledetError(f"{where}: image {path} is not a readable image ({one_line(err, 100)})") from None


def convert_openimages(boxes_csv: Path, classes_csv: Path, image_dir: Path, out_json: Path,
                       image_extension: str = ".jpg", image_labels_csv: Path | None = None) -> dict[str, int]:
    taxonomy = read_openimages_csv("oid", classes_csv)
    category_of = {c.local_id: i + 1 for i, c in enumerate(taxonomy.categories)}
    images: dict[str, dict] = {}
    annotations = []
    rows = _csv_rows(boxes_csv, REQUIRED_COLUMNS, "*-annotations-bbox.csv")
    _read_boxes(rows, boxes_csv, category_of, image_dir, image_extension, images, annotations)
    if image_labels_csv is not None:
        _add_image_labels(image_labels_csv, images, category_of, image_dir, image_extension)
    document = {"info": INFO, "images": list(images.values()), "annotations": annotations,
                "categories": [{"id": category_of[c.local_id], "name": c.name, "mid": c.local_id}
                               for c in taxonomy.categories]}
    out_json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_json, json.dumps(document))
    return {"images": len(images), "annotations": len(annotations), "categories": len(category_of)}


def _csv_rows(path: Path, required: tuple[str, ...], kind: str) -> Iterator[tuple[int, dict]]:
    """(line number, row) of an OpenImages CSV. A missing file or column, a short row, bytes that are not
    UTF-8 and malformed CSV are each one line naming the file (and the line)."""
    if not path.is_file():
        raise ScaledetError(f"{path}: file not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise ScaledetError(f"{path}: missing column {missing[0]} (an OpenImages {kind})")
            for line, row in enumerate(reader, start=2):
                if any(row.get(c) is None for c in required):
                    raise ScaledetError(f"{path}:{line}: short row ({len([v for v in row.values() if v is not None])} "
                                        f"of {len(reader.fieldnames)} columns)")
                yield line, row
    except UnicodeDecodeError as err:
        raise ScaledetError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except csv.Error as err:
        raise ScaledetError(f"{path}: malformed CSV ({one_line(err)})") from None


def _image_entry(images: dict[str, dict], image_id: str, image_dir: Path, image_extension: str,
                 where: str, why: str) -> dict:
    """The output image of OpenImages ``image_id``, added on first sight with its size read from the file."""
    image = images.get(image_id)
    if image is None:
        path = image_dir / f"{image_id}{image_extension}"
        if not path.is_file():
            raise ScaledetError(f"{where}: image {path} not found ({why})")
        width, height = _image_size(path, where)
        image = {"id": len(images) + 1, "file_name": path.name, "width": width, "height": height}
        images[image_id] = image
    return image


def _normalised_box(row: dict, where: str) -> tuple[float, float, float, float]:
    """(XMin, XMax, YMin, YMax): finite, within [0, 1], min ≤ max; else one line naming the CSV line."""
    try:
        x1, x2, y1, y2 = (float(row[c]) for c in ("XMin", "XMax", "YMin", "YMax"))
    except ValueError:
        raise ScaledetError(f"{where}: non-numeric box coordinates") from None
    if not all(math.isfinite(v) for v in (x1, x2, y1, y2)):
        raise ScaledetError(f"{where}: box coordinates must be finite numbers")
    if not all(0.0 <= v <= 1.0 for v in (x1, x2, y1, y2)):
        raise ScaledetError(f"{where}: box coordinates must lie in [0, 1] (OpenImages normalises them by the image size)")
    if x1 > x2 or y1 > y2:
        raise ScaledetError(f"{where}: inverted box (XMin > XMax or YMin > YMax)")
    return x1, x2, y1, y2


def _read_boxes(rows: Iterator[tuple[int, dict]], boxes_csv: Path, category_of: dict[str, int], image_dir: Path,
                image_extension: str, images: dict[str, dict], annotations: list[dict]) -> None:
    for line, row in rows:
        mid = row["LabelName"]
        if mid not in category_of:
            continue  # a class outside the given class list
        where = f"{boxes_csv}:{line}"
        x1, x2, y1, y2 = _normalised_box(row, where)
        image = _image_entry(images, row["ImageID"], image_dir, image_extension, where, "it has boxes")
        x1, x2 = x1 * image["width"], x2 * image["width"]
        y1, y2 = y1 * image["height"], y2 * image["height"]
        group = int(row.get("IsGroupOf", "0") == "1")
        annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "category_id": category_of[mid],
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                            "iscrowd": group, "isgroupof": group})


def _add_image_labels(path: Path, images: dict[str, dict], category_of: dict[str, int], image_dir: Path,
                      image_extension: str) -> None:
    """Verified image-level labels: present (confidence 1) or absent (0). An image with labels of the class
    list and no box is added, so that the challenge metric sees its verified-absent classes."""
    rows = _csv_rows(path, ("ImageID", "LabelName", "Confidence"), "*-imagelabels*.csv")
    for image in images.values():
        image["pos_category_ids"], image["neg_category_ids"] = [], []
    for line, row in rows:
        if row["LabelName"] not in category_of:
            continue
        if row["Confidence"] not in ("0", "1"):
            raise ScaledetError(f"{path}:{line}: Confidence {row['Confidence']!r}; expected 0 or 1")
        image = _image_entry(images, row["ImageID"], image_dir, image_extension, f"{path}:{line}",
                             "it has verified labels")
        image.setdefault("pos_category_ids", [])
        image.setdefault("neg_category_ids", [])
        key = "pos_category_ids" if row["Confidence"] == "1" else "neg_category_ids"
        image[key].append(category_of[row["LabelName"]])
