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
import re
from array import array
from pathlib import Path
from typing import Iterator, TextIO

import numpy as np
from PIL import Image

from scaledet.labelspace.box_checks import box_problem
from scaledet.labelspace.io.errors import ScaledetError, one_line
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
    """Convert, streaming: boxes go to a temporary file as they are read, and what is held per image is
    its ImageID, size and verified labels in flat arrays (about 150 bytes an image), never a dict per box.
    OpenImages v6 train's 14.6M boxes so stay in bounded memory (``benchmarks/convert_oid.py``)."""
    from scaledet.labelspace.io.atomic import atomic_write
    from scaledet.labelspace.io.temporaries import remove_stale_temporaries, temporary_file_name

    taxonomy = read_openimages_csv("oid", classes_csv)
    category_of = {c.local_id: i + 1 for i, c in enumerate(taxonomy.categories)}
    images = _Images(image_dir, image_extension)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_json.parent, prefix=f".{out_json.stem}.")  # a killed run's (up to GBs)
    boxes_part = temporary_file_name(out_json.with_name(out_json.name + ".annotations"))
    try:
        with open(boxes_part, "w", encoding="utf-8") as part:
            boxes = _write_boxes(_csv_rows(boxes_csv, REQUIRED_COLUMNS, "*-annotations-bbox.csv"), boxes_csv,
                                 category_of, images, part)
        labels = _image_labels(image_labels_csv, images, category_of) if image_labels_csv is not None else None
        categories = [{"id": category_of[c.local_id], "name": c.name, "mid": c.local_id} for c in taxonomy.categories]
        atomic_write(out_json, lambda tmp: _write_document(tmp, images, labels, boxes_part, categories))
    finally:
        boxes_part.unlink(missing_ok=True)
    return {"images": len(images.ids), "annotations": boxes, "categories": len(category_of)}


class _Images:
    """The output images in order of first sight: ImageID → position, and sizes read from the files."""

    def __init__(self, image_dir: Path, image_extension: str) -> None:
        self.image_dir, self.image_extension = image_dir, image_extension
        self.ids: dict[str, int] = {}
        self.widths, self.heights = array("i"), array("i")

    def position(self, image_id: str, where: str, why: str) -> int:
        """The 0-based position of ``image_id``, added on first sight with its size read from its file."""
        position = self.ids.get(image_id)
        if position is None:
            if not IMAGE_ID.fullmatch(image_id):
                raise ScaledetError(f"{where}: ImageID {image_id[:60]!r} is not a plain name (letters, digits, _ "
                                    "and -); it names the image file")
            path = self.image_dir / f"{image_id}{self.image_extension}"
            if not path.is_file():
                raise ScaledetError(f"{where}: image {path} not found ({why})")
            width, height = _image_size(path, where)
            position = self.ids[image_id] = len(self.ids)
            self.widths.append(width)
            self.heights.append(height)
        return position


#: OpenImages ImageIDs are 16 hex digits; any name of letters, digits, ``_`` and ``-`` is read, nothing
#: that could leave the image folder (``../x``, ``/etc/x``).
IMAGE_ID = re.compile(r"[A-Za-z0-9_-]+")
#: How IsGroupOf is spelled: OpenImages writes 0 / 1; exports of it write true / false too.
GROUP_OF = {"0": 0, "1": 1, "false": 0, "true": 1, "": 0}


def _write_boxes(rows: Iterator[tuple[int, dict]], boxes_csv: Path, category_of: dict[str, int],
                 images: _Images, part: TextIO) -> int:
    """Write each box as a JSON object (comma-separated) to ``part``; returns how many."""
    count = 0
    for line, row in rows:
        mid = row["LabelName"]
        if mid not in category_of:
            continue  # a class outside the given class list
        where = f"{boxes_csv}:{line}"
        x1, x2, y1, y2 = _normalised_box(row, where)
        position = images.position(row["ImageID"], where, "it has boxes")
        width, height = images.widths[position], images.heights[position]
        bbox = [x1 * width, y1 * height, (x2 - x1) * width, (y2 - y1) * height]
        problem = box_problem(bbox, width, height)
        if problem is not None:
            raise ScaledetError(f"{where}: {problem.replace('has bbox', 'box')}")
        group = GROUP_OF.get(str(row.get("IsGroupOf") or "").strip().lower())
        if group is None:
            raise ScaledetError(f"{where}: IsGroupOf {str(row['IsGroupOf'])[:20]!r}; expected 0 or 1")
        count += 1
        part.write(("," if count > 1 else "") + json.dumps(
            {"id": count, "image_id": position + 1, "category_id": category_of[mid], "bbox": bbox,
             "area": bbox[2] * bbox[3], "iscrowd": group, "isgroupof": group}))
    return count


def _image_labels(path: Path, images: _Images, category_of: dict[str, int]) -> tuple[np.ndarray, ...]:
    """Verified image-level labels, present (confidence 1) or absent (0), as (image positions, category
    ids, present) arrays sorted by image. An image with labels of the class list and no box is added, so
    that the challenge metric sees its verified-absent classes."""
    positions, categories, present = array("i"), array("i"), array("b")
    for line, row in _csv_rows(path, ("ImageID", "LabelName", "Confidence"), "*-imagelabels*.csv"):
        if row["LabelName"] not in category_of:
            continue
        if row["Confidence"] not in ("0", "1"):
            raise ScaledetError(f"{path}:{line}: Confidence {row['Confidence']!r}; expected 0 or 1")
        positions.append(images.position(row["ImageID"], f"{path}:{line}", "it has verified labels"))
        categories.append(category_of[row["LabelName"]])
        present.append(row["Confidence"] == "1")
    positions_array = np.frombuffer(positions, dtype=np.int32) if len(positions) else np.zeros(0, np.int32)
    order = np.argsort(positions_array, kind="stable")  # each image's labels in file order
    return (positions_array[order], np.frombuffer(categories, dtype=np.int32)[order] if len(categories) else
            np.zeros(0, np.int32), np.frombuffer(present, dtype=np.int8)[order] if len(present) else np.zeros(0, np.int8))


def _write_document(path: Path, images: _Images, labels: tuple[np.ndarray, ...] | None, boxes_part: Path,
                    categories: list[dict]) -> None:
    """The COCO document, ``info`` first (a later run recognises its own output by its first bytes), the
    images one by one, then the boxes copied from their temporary part."""
    import shutil

    with open(path, "w", encoding="utf-8") as out:
        out.write('{"info": ' + json.dumps(INFO) + ', "images": [')
        if labels is not None:
            label_images, label_categories, label_present = labels
            bounds = np.searchsorted(label_images, np.arange(len(images.ids) + 1))
        for position, image_id in enumerate(images.ids):
            image = {"id": position + 1, "file_name": f"{image_id}{images.image_extension}",
                     "width": images.widths[position], "height": images.heights[position]}
            if labels is not None:
                start, stop = bounds[position], bounds[position + 1]
                present = label_present[start:stop].astype(bool)
                image["pos_category_ids"] = label_categories[start:stop][present].tolist()
                image["neg_category_ids"] = label_categories[start:stop][~present].tolist()
            out.write(("," if position else "") + json.dumps(image))
        out.write('], "annotations": [')
        with open(boxes_part, encoding="utf-8") as part:
            shutil.copyfileobj(part, out, 1 << 20)
        out.write('], "categories": ' + json.dumps(categories) + "}")


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
