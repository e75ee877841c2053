"""Reading the annotation files ``scaledet-labels unify`` combines, into flat arrays (never one Python object
per box, so an Objects365-sized file fits in a bounded amount of memory).

A source is a dataset key of the build and one of:

* a COCO-format JSON: LVIS files (``neg_category_ids`` / ``not_exhaustive_category_ids``) and the output of
  ``scaledet convert-oid`` (``mid`` categories, ``pos_category_ids`` / ``neg_category_ids``) are recognised
  by their fields, whatever their key;
* an Ultralytics YOLO dataset folder: ``data.yaml`` with ``names``, label files ``labels/**/NAME.txt``
  (``class cx cy w h``, normalised) beside ``images/**/NAME.<ext>``; image sizes come from the image headers.

Every category is mapped to its union index in the build (by local id, checked by name); a class the build
does not have, an id absent from the file's categories and a YOLO class out of range are one-line errors
naming the file and the record.
"""
from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .box_checks import BOX_TOLERANCE_PX, box_problem, flag_problem
from .io.errors import ScaledetError
from .io.json_values import category_ids_as_labels, is_whole
from .label_states import protocol_of_file
from .io.text_files import stream_json_items

LIST_FIELDS = ("neg_category_ids", "not_exhaustive_category_ids", "pos_category_ids")
#: What an LVIS category record says of itself, kept in the unified file as the source gives it: LVIS's
#: r / c / f groups come from its *training* set's image counts, which no other file can recompute.
CATEGORY_FACTS = ("synset", "synonyms", "def", "frequency", "image_count", "instance_count")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class SourceData:
    """One source, as arrays. Images in file order; boxes grouped by image (``first_box``, ``box_count``)."""

    key: str
    path: Path
    protocol: str
    file_names: list[str]
    coco_urls: list[str | None]
    widths: np.ndarray
    heights: np.ndarray
    first_box: np.ndarray
    box_count: np.ndarray
    boxes: np.ndarray          # M × 4 float32, xywh pixels
    labels: np.ndarray         # M int32 union index
    crowd: np.ndarray          # M uint8
    #: field → (offsets N + 1, union indices): each image's explicit label lists, in CSR form
    lists: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: union index → the facts an LVIS-style category record gives (``frequency``, ``image_count``,
    #: ``synset``, ``synonyms`` in the file's order, …): kept as the source wrote them
    category_facts: dict[int, dict] = field(default_factory=dict)

    @property
    def num_images(self) -> int:
        return len(self.file_names)

    def image_list(self, list_field: str, image: int) -> np.ndarray:
        offsets, values = self.lists[list_field]
        return values[offsets[image]:offsets[image + 1]]

    def image_key(self, image: int) -> str:
        """What identifies an image across sources (:func:`image_key`)."""
        return image_key(self.file_names[image], self.coco_urls[image])


def image_key(file_name: str | None, coco_url: str | None) -> str:
    """The stem of the image's file, from ``coco_url`` when there is one (LVIS v0.5 calls COCO's
    ``000000266409.jpg`` ``COCO_val2014_000000266409.jpg`` in ``file_name`` but keeps COCO's URL), else
    from ``file_name``: ``000000266409`` for COCO, LVIS and a YOLO label file ``000000266409.txt`` alike."""
    text = coco_url.split("/")[-1] if coco_url else (file_name or "")
    base = text.rsplit("/", 1)[-1]
    if base in ("", ".", ".."):  # what pathlib normalises away: its rule, at its cost
        return Path(text).stem
    dot = base.rfind(".")
    return base[:dot] if 0 < dot < len(base) - 1 else base  # Path(text).stem, without building a Path


class LabelLookup:
    """(dataset, local id, name) → union index of a build, as the detector maps annotation files."""

    def __init__(self, output) -> None:
        from .prompts import normalize_name

        self._normalize = normalize_name
        rows = output.labels.select(["dataset", "local_id", "name"]).to_pylist()
        self.by_local = {(r["dataset"], r["local_id"]): i for i, r in enumerate(rows)}
        self.by_name = {(r["dataset"], normalize_name(r["name"])): i for i, r in enumerate(rows)}
        self.names = [r["name"] for r in rows]
        self.directory = output.directory

    def index(self, dataset: str, local_id: str, name: str, where: str) -> int:
        found = self.by_local.get((dataset, local_id))
        if found is not None and self._normalize(self.names[found]) == self._normalize(name):
            return found
        found = self.by_name.get((dataset, self._normalize(name)))
        if found is not None:
            return found
        raise ScaledetError(f"{where}: class {local_id} {name!r} is not a label of dataset {dataset!r} in "
                            f"{self.directory}")


def read_source(key: str, path: Path, lookup: LabelLookup) -> SourceData:
    if path.is_dir():
        return _read_yolo(key, path, lookup)
    if not path.is_file():
        raise ScaledetError(f"--annotations {key}={path}: not found")
    return _read_coco(key, path, lookup)


def _items(path: Path, prefix: str):
    return stream_json_items(path, prefix, ScaledetError, "malformed or truncated JSON")


def _read_coco(key: str, path: Path, lookup: LabelLookup) -> SourceData:
    categories, union_of, facts = [], {}, {}
    for position, category in enumerate(_items(path, "categories.item")):
        if not isinstance(category, dict) or "id" not in category or not isinstance(category.get("name"), str):
            raise ScaledetError(f"{path}: categories[{position}] needs an 'id' and a 'name'")
        local = str(category.get("mid") or category["id"])
        union_of[category["id"]] = lookup.index(key, local, category["name"], str(path))
        categories.append({k: category[k] for k in ("id", "name", "mid") if k in category})
        if category.get("frequency") in ("r", "c", "f"):
            facts[union_of[category["id"]]] = {k: category[k] for k in CATEGORY_FACTS if k in category}
    if not categories:
        raise ScaledetError(f"{path}: no 'categories' (not a COCO-format annotation file)")
    file_names, coco_urls, widths, heights, ids = [], [], array("i"), array("i"), array("q")
    values = {f: array("i") for f in LIST_FIELDS}
    offsets = {f: array("q", [0]) for f in LIST_FIELDS}
    fields: set[str] = set()
    for position, image in enumerate(_items(path, "images.item")):
        if not isinstance(image, dict) or not is_whole(image.get("id")):
            raise ScaledetError(f"{path}: images[{position}] has no integer 'id'")
        for side in ("width", "height"):
            if not is_whole(image.get(side)) or image[side] <= 0:
                raise ScaledetError(f"{path}: image {image['id']} has no positive whole '{side}'")
        name, url = image.get("file_name"), image.get("coco_url")
        if not isinstance(name, str) and not isinstance(url, str):
            raise ScaledetError(f"{path}: image {image['id']} has neither a 'file_name' nor a 'coco_url'")
        # LVIS v1 has no file_name: its coco_url names COCO's split folder (…/val2017/000000266409.jpg), and
        # that relative path is what an image root of COCO's layout resolves
        file_names.append(name if isinstance(name, str) else "/".join(url.split("/")[-2:]))
        coco_urls.append(url if isinstance(url, str) else None)
        ids.append(image["id"])
        widths.append(image["width"])
        heights.append(image["height"])
        for list_field in LIST_FIELDS:
            given = image.get(list_field)
            if given is not None:
                fields.add(list_field)
                values[list_field].extend(category_ids_as_labels(given, union_of, path, image["id"], list_field))
            offsets[list_field].append(len(values[list_field]))
    order = np.argsort(np.frombuffer(ids, dtype=np.int64), kind="stable")
    sorted_ids = np.frombuffer(ids, dtype=np.int64)[order]
    box_image, xywh, labels, crowd = _read_annotations(path, union_of, sorted_ids, order, widths, heights)
    data = _grouped(key, path, protocol_of_file(categories, fields), file_names, coco_urls, widths, heights,
                    box_image, xywh, labels, crowd)
    data.lists = {f: (np.frombuffer(offsets[f], dtype=np.int64),
                      np.frombuffer(values[f], dtype=np.int32) if values[f] else np.zeros(0, np.int32))
                  for f in LIST_FIELDS}
    data.category_facts = facts
    return data


def _annotation_problem(path: Path, position: int, annotation, union_of: dict, sorted_ids: np.ndarray,
                        order: np.ndarray, widths: array, heights: array) -> str | None:
    """The one-line error of one annotation record, or None: every rule, in the order they are reported."""
    if not isinstance(annotation, dict) or not is_whole(annotation.get("image_id")):
        return f"{path}: annotations[{position}] has no integer 'image_id'"
    if union_of.get(annotation.get("category_id")) is None:
        return (f"{path}: annotations[{position}] has category_id {str(annotation.get('category_id'))[:20]}, which "
                "is not in 'categories'")
    found = int(np.searchsorted(sorted_ids, annotation["image_id"]))
    if found >= len(sorted_ids) or sorted_ids[found] != annotation["image_id"]:
        return f"{path}: annotations[{position}] refers to image id {annotation['image_id']}, which is not in 'images'"
    image = int(order[found])
    problem = box_problem(annotation.get("bbox"), widths[image], heights[image]) or flag_problem(annotation)
    if problem is not None:  # what training's index refuses, refused here too (box_checks.py)
        return f"{path}: annotations[{position}] (image {annotation['image_id']}) {problem}"
    return None


#: Boxes whose float32 values come this close to a limit are checked again exactly (float64, as read)
_NEAR_LIMIT_PX = 1e-3
_NEAR_LIMIT_RELATIVE = 1e-6


#: Boxes checked on the columns per block: the float64 temporaries of one block (about 50 bytes a box) stay
#: small, where the whole of Objects365's 25 million boxes at once took 1.8 GB
_CHECK_BLOCK = 1 << 20


def _check_columns(raw_ids: np.ndarray, xywh: np.ndarray, sorted_ids: np.ndarray, order: np.ndarray,
                   widths: np.ndarray, heights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One pass over the columns, a block at a time: (the positions of the boxes that may break a rule, each
    box's image as its position in the file's image list). A box may break a rule when its image is unknown,
    a value is not finite, a side is ≤ 0, or an edge is outside the image or within float32's rounding of
    its limit: a superset of what :func:`_annotation_problem` refuses, so that only these are checked one by
    one. An image position is meaningful only for a known image id (an unknown one is always refused)."""
    positions = np.zeros(len(raw_ids), dtype=np.int32)
    if len(raw_ids) == 0:
        return np.zeros(0, dtype=np.int64), positions
    if len(sorted_ids) == 0:  # no images: every box names an unknown one
        return np.arange(len(raw_ids)), positions
    found = []
    for start in range(0, len(raw_ids), _CHECK_BLOCK):
        ids = raw_ids[start:start + _CHECK_BLOCK]
        at = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
        suspect = sorted_ids[at] != ids
        image = order[at]
        positions[start:start + len(ids)] = image
        boxes = xywh[start:start + _CHECK_BLOCK].astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            suspect |= ~np.isfinite(boxes).all(axis=1) | (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)
            for axis, sizes in ((0, widths), (1, heights)):
                low, high = boxes[:, axis], boxes[:, axis] + boxes[:, axis + 2]
                margin = _NEAR_LIMIT_PX + _NEAR_LIMIT_RELATIVE * np.abs(high)
                limit = sizes[image].astype(np.float64)
                suspect |= (low < -BOX_TOLERANCE_PX + margin) | (high > limit + BOX_TOLERANCE_PX - margin)
        found.append(np.flatnonzero(suspect) + start)
    return np.concatenate(found), positions


def _read_annotations(path: Path, union_of: dict, sorted_ids: np.ndarray, order: np.ndarray, widths: array,
                      heights: array) -> tuple[np.ndarray, array, array, array]:
    """The file's annotations as columns (image position, xywh float32, union index, crowd).

    Per box, only what the columns cannot hold is checked in Python (a record, an integer image id, a
    known category, four plain numbers, 0/1 flags). The rest (image lookup, finiteness, size, inside the
    image) runs on the columns at once; the few boxes it finds suspect are read again and checked exactly
    (:func:`_annotation_problem`), so every error is the same line, for the first bad record, as a check of
    each box in turn would give."""
    raw_ids, xywh, labels, crowd = array("q"), array("f"), array("i"), array("B")
    plain = (int, float)
    width_column, height_column = np.frombuffer(widths, dtype=np.int32), np.frombuffer(heights, dtype=np.int32)

    def columns() -> tuple[np.ndarray, np.ndarray]:
        return (np.frombuffer(raw_ids, dtype=np.int64) if raw_ids else np.zeros(0, np.int64),
                np.frombuffer(xywh, dtype=np.float32).reshape(-1, 4) if xywh else np.zeros((0, 4), np.float32))

    for position, annotation in enumerate(_items(path, "annotations.item")):
        fast = type(annotation) is dict
        if fast:
            image_id, bbox = annotation.get("image_id"), annotation.get("bbox")
            union = union_of.get(annotation.get("category_id"))
            iscrowd, isgroupof = annotation.get("iscrowd", 0), annotation.get("isgroupof", 0)
            fast = (type(image_id) is int and union is not None and type(bbox) is list and len(bbox) == 4
                    and type(bbox[0]) in plain and type(bbox[1]) in plain and type(bbox[2]) in plain
                    and type(bbox[3]) in plain and iscrowd in (0, 1) and isgroupof in (0, 1))
        if not fast:  # an unusual record: checked exactly now, and the first error of the file so far raised
            if _annotation_problem(path, position, annotation, union_of, sorted_ids, order, widths, heights):
                ids, boxes = columns()
                suspects, _ = _check_columns(ids, boxes, sorted_ids, order, width_column, height_column)
                _raise_first_problem(path, set(suspects.tolist()) | {position}, union_of, sorted_ids, order,
                                     widths, heights)
            image_id, bbox = annotation["image_id"], annotation["bbox"]
            union = union_of[annotation["category_id"]]
            iscrowd, isgroupof = annotation.get("iscrowd", 0), annotation.get("isgroupof", 0)
        before = len(xywh)
        try:
            xywh.extend(bbox)
        except (OverflowError, TypeError):  # an int beyond a float: refused below, exactly
            del xywh[before:]  # extend stops midway: what it appended goes
            xywh.extend((math.inf, 0.0, 0.0, 0.0))
        raw_ids.append(image_id)
        labels.append(union)
        crowd.append(1 if iscrowd or isgroupof else 0)
    ids, boxes = columns()
    suspects, positions = _check_columns(ids, boxes, sorted_ids, order, width_column, height_column)
    if len(suspects):
        _raise_first_problem(path, set(suspects.tolist()), union_of, sorted_ids, order, widths, heights)
    return positions, xywh, labels, crowd


def _raise_first_problem(path: Path, positions: set[int], union_of: dict, sorted_ids: np.ndarray,
                         order: np.ndarray, widths: array, heights: array) -> None:
    """Read the records at ``positions`` again, in file order, and raise the first one's error; suspects
    that pass the exact check (a box at float32's rounding of a limit) are accepted."""
    last = max(positions)
    for position, annotation in enumerate(_items(path, "annotations.item")):
        if position in positions:
            problem = _annotation_problem(path, position, annotation, union_of, sorted_ids, order, widths, heights)
            if problem is not None:
                raise ScaledetError(problem)
        if position >= last:
            return


def _read_yolo(key: str, folder: Path, lookup: LabelLookup) -> SourceData:
    from PIL import Image

    data_yaml = folder / "data.yaml"
    if not data_yaml.is_file():
        raise ScaledetError(f"--annotations {key}={folder}: a YOLO dataset folder needs a data.yaml")
    from .readers import read_yolo_yaml

    taxonomy = read_yolo_yaml(key, data_yaml)
    union_of = [lookup.index(key, c.local_id, c.name, str(data_yaml)) for c in taxonomy.categories]
    label_root = folder / "labels"
    if not label_root.is_dir():
        raise ScaledetError(f"{folder}: no labels/ folder beside data.yaml")
    file_names, widths, heights = [], array("i"), array("i")
    box_image, xywh, labels = array("i"), array("f"), array("i")
    for label_file in sorted(label_root.rglob("*.txt")):
        relative = label_file.relative_to(label_root).with_suffix("")
        image_path = next((folder / "images" / relative.with_suffix(s) for s in IMAGE_SUFFIXES
                           if (folder / "images" / relative.with_suffix(s)).is_file()), None)
        if image_path is None:
            raise ScaledetError(f"{label_file}: no image images/{relative}.* beside it")
        try:
            with Image.open(image_path) as image:
                width, height = image.size
        except (OSError, Image.DecompressionBombError) as err:
            raise ScaledetError(f"{image_path}: not a readable image ({str(err)[:80]})") from None
        position = len(file_names)
        file_names.append(str(image_path.relative_to(folder / "images")))
        widths.append(width)
        heights.append(height)
        for line_number, class_id, (cx, cy, w, h) in _yolo_boxes(label_file, len(union_of), data_yaml):
            box = [(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height]
            problem = box_problem(box, width, height)
            if problem is not None:
                raise ScaledetError(f"{label_file}:{line_number}: {problem.replace('has bbox', 'box')}")
            box_image.append(position)
            xywh.extend(box)
            labels.append(union_of[class_id])
    if not file_names:
        raise ScaledetError(f"{label_root}: no label files")
    crowd = array("B", bytes(len(labels)))
    data = _grouped(key, folder, "exhaustive", file_names, [None] * len(file_names), widths, heights,
                    box_image, xywh, labels, crowd)
    data.lists = {f: (np.zeros(len(file_names) + 1, np.int64), np.zeros(0, np.int32)) for f in LIST_FIELDS}
    return data


def _yolo_boxes(label_file: Path, classes: int, data_yaml: Path):
    """(line number, class, normalised cx cy w h) of each box of a YOLO label file, read as Ultralytics
    reads it: ``class cx cy w h``, or, when any line has more than six values, every line a segmentation
    polygon ``class x1 y1 x2 y2 …`` whose box is the polygon's extent (Ultralytics' ``segments2boxes``)."""
    try:
        text = label_file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ScaledetError(f"{label_file}: not UTF-8 text (a YOLO label file holds 'class cx cy w h' lines)") from None
    rows = [(number, line.split()) for number, line in enumerate(text.splitlines(), start=1) if line.split()]
    polygons = any(len(parts) > 6 for _, parts in rows)
    for number, parts in rows:
        where = f"{label_file}:{number}"
        if len(parts) < 5 or (polygons and len(parts) % 2 == 0):
            expected = "'class x1 y1 x2 y2 x3 y3 …' (a polygon)" if polygons else "'class cx cy w h'"
            raise ScaledetError(f"{where}: expected {expected}, found {len(parts)} values")
        try:
            class_id, values = int(parts[0]), [float(v) for v in parts[1:]]
        except ValueError:
            raise ScaledetError(f"{where}: not numbers") from None
        if not 0 <= class_id < classes:
            raise ScaledetError(f"{where}: class {class_id} out of range ({data_yaml} names {classes} classes)")
        if not all(math.isfinite(v) for v in values):
            raise ScaledetError(f"{where}: values that are not finite numbers")
        if polygons:
            xs, ys = values[0::2], values[1::2]
            x1, x2, y1, y2 = min(xs), max(xs), min(ys), max(ys)
            cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
        else:
            cx, cy, w, h = values[:4]
        if w <= 0 or h <= 0:
            raise ScaledetError(f"{where}: box {cx:g} {cy:g} {w:g} {h:g} is not a finite box of positive size")
        yield number, class_id, (cx, cy, w, h)


def _grouped(key, path, protocol, file_names, coco_urls, widths, heights, box_image, xywh, labels, crowd) -> SourceData:
    images = np.frombuffer(box_image, dtype=np.int32) if len(box_image) else np.zeros(0, np.int32)
    count = np.bincount(images, minlength=len(file_names)).astype(np.int64)
    boxes = np.frombuffer(xywh, dtype=np.float32).reshape(-1, 4) if xywh else np.zeros((0, 4), np.float32)
    label_column = np.frombuffer(labels, dtype=np.int32) if labels else np.zeros(0, np.int32)
    crowd_column = np.frombuffer(crowd, dtype=np.uint8) if crowd else np.zeros(0, np.uint8)
    if len(images) > 1 and bool((images[1:] < images[:-1]).any()):  # grouped by image unless the file was
        order = np.argsort(images, kind="stable")  # (stable: an image's boxes keep their file order)
        boxes, label_column, crowd_column = boxes[order], label_column[order], crowd_column[order]
    return SourceData(
        key, path, protocol, file_names, coco_urls,
        np.frombuffer(widths, dtype=np.int32).copy(), np.frombuffer(heights, dtype=np.int32).copy(),
        np.cumsum(count) - count, count, boxes, label_column, crowd_column)
