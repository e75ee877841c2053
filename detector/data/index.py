"""A columnar, memory-mapped index of a COCO-format annotation file, built once and shared by every process.

Parsing a large annotation file with ``json.load`` costs every torchrun rank and every DataLoader worker
the whole file in Python objects: about 30 GiB and 12 minutes per process for Objects365 v2 train. Instead,
the first open streams the file with ijson (never the whole JSON in memory) into flat arrays:

    images     image_ids int64, widths / heights int32, first_box int64, box_count / ordinary_count int32,
               name_offsets int64 (N + 1) into names.bin (UTF-8 file names)
    boxes      boxes float32 (M × 4, xyxy pixels, sorted by image), labels int32 (union index), crowd uint8,
               pseudo_scores float32 (a ``scaledet pseudo-label`` box's teacher score; NaN for an annotation)
    lists      list_offsets int64 (N + 1) into list_labels int32 (union index) / list_kinds uint8: each image's
               explicit label lists (LVIS ``neg_category_ids`` / ``not_exhaustive_category_ids``, OpenImages
               ``pos_category_ids`` / ``neg_category_ids``), read by the label states (``label_states.py``)
    meta.json  the source file (path, size, mtime, sha256 of its content), the dataset key, the labelspace's
               label ids digest, the categories in file order with their union index, counts, the file's
               annotation protocol (exhaustive, federated or verified)

Every later open, in any process, maps those files (``np.load(mmap_mode="r")``): the cost is the mapping,
not the dataset's size, and the operating system shares the pages among processes.

The index lives under the labelspace cache root, ``<cache>/index/<key>/``. The key is made from the
file's path, size and modification time, the dataset key, the labelspace's label ids, the image folder and
the format version, so a changed annotation file or label space gets a new index without the file being
read again to find the old one; the content's sha256 is recorded in ``meta.json``, and a sampled sha256
(``weights_hash.sampled_sha256``) is checked at every open, so a file rewritten in place with its size and time kept
is indexed again. The checks that used to
run at every start (unknown category, malformed record, zero-area or out-of-image box, image missing on
disk) run once, at build time, with one-line errors naming the file and the record. An index is written
into a staging folder and renamed into place, so a half-written index is never found; one that is
damaged afterwards (a missing or truncated column) is reported and rebuilt.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scaledet.labelspace.io.cache_dir import cache_root
from scaledet.labelspace.io.errors import ScaledetError, one_line
from scaledet.labelspace.io.json_values import category_ids_as_labels
from scaledet.labelspace.label_states import protocol_of_file
from scaledet.labelspace.io.digests import sha256_of_file
from scaledet.labelspace.io.digests import sampled_sha256
from scaledet.labelspace.io.sealed_json import is_sealed, seal
from scaledet.labelspace.io.text_files import check_list_or_absent, stream_json_items

from .records import (BOX_TOLERANCE_PX, DatasetSpec, check_annotation, check_category, check_image, check_image_path,
                      image_file_name)

INDEX_VERSION = 4
META_DIGEST_KEY = "meta_sha256"  # meta.json carries the sha256 of the rest of its content
COLUMNS = {  # name → (dtype, columns per row or 0 for a vector)
    "image_ids": (np.int64, 0), "widths": (np.int32, 0), "heights": (np.int32, 0), "first_box": (np.int64, 0),
    "box_count": (np.int32, 0), "ordinary_count": (np.int32, 0), "name_offsets": (np.int64, 0),
    "boxes": (np.float32, 4), "labels": (np.int32, 0), "crowd": (np.uint8, 0), "pseudo_scores": (np.float32, 0),
    "names": (np.uint8, 0), "list_offsets": (np.int64, 0), "list_labels": (np.int32, 0), "list_kinds": (np.uint8, 0),
    "source_bits": (np.uint16, 0),
}
#: A unified file's images name up to this many sources (one bit each in ``source_bits``).
MAX_UNIFIED_SOURCES = 16
#: The per-image label lists an annotation file may carry, and their code in ``list_kinds``.
IMAGE_LISTS = {"neg_category_ids": 1, "not_exhaustive_category_ids": 2, "pos_category_ids": 3}


class IndexDamaged(Exception):
    """An index folder that cannot be trusted; the caller rebuilds it."""


@dataclass
class AnnotationIndex:
    """The mapped columns of one annotation file (see the module docstring)."""

    directory: Path
    meta: dict
    columns: dict[str, np.ndarray]

    def __getattr__(self, name: str) -> np.ndarray:
        columns = self.__dict__.get("columns", {})
        if name in columns:
            return columns[name]
        raise AttributeError(name)

    @property
    def num_images(self) -> int:
        return int(self.meta["images"])

    def image_lists(self, image: int) -> dict[str, np.ndarray]:
        """The image's explicit label lists as union indices, keyed as in the annotation file."""
        start, stop = self.columns["list_offsets"][image], self.columns["list_offsets"][image + 1]
        labels = np.asarray(self.columns["list_labels"][start:stop], dtype=np.int64)
        kinds = np.asarray(self.columns["list_kinds"][start:stop])
        return {field: labels[kinds == code] for field, code in IMAGE_LISTS.items()}

    @property
    def protocol(self) -> str:
        return self.meta["protocol"]

    def file_name(self, image: int) -> str:
        start, stop = self.columns["name_offsets"][image], self.columns["name_offsets"][image + 1]
        return bytes(self.columns["names"][start:stop]).decode("utf-8")

    @classmethod
    def open(cls, directory: Path) -> "AnnotationIndex":
        try:
            meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
            if not is_sealed(meta, META_DIGEST_KEY):  # before any key is used: a flipped union index
                raise IndexDamaged("meta.json carries no checksum or does not match it")
            if meta.get("version") != INDEX_VERSION:
                raise IndexDamaged("another index version")
            columns = {name: np.load(directory / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                       for name in COLUMNS}
        except IndexDamaged:
            raise
        except Exception as err:  # noqa: BLE001 - a missing, truncated or garbled column
            raise IndexDamaged(one_line(err, 100)) from None
        n, m = meta.get("images"), meta.get("boxes")
        expected = {"image_ids": (n,), "widths": (n,), "heights": (n,), "first_box": (n,), "box_count": (n,),
                    "ordinary_count": (n,), "name_offsets": (n + 1,) if isinstance(n, int) else None,
                    "boxes": (m, 4), "labels": (m,), "crowd": (m,), "pseudo_scores": (m,), "names": (meta.get("name_bytes"),),
                    "list_offsets": (n + 1,) if isinstance(n, int) else None,
                    "list_labels": (meta.get("list_entries"),), "list_kinds": (meta.get("list_entries"),),
                    "source_bits": (n,)}
        for name, (dtype, _) in COLUMNS.items():
            if columns[name].dtype != dtype or columns[name].shape != expected[name]:
                raise IndexDamaged(f"{name}.npy has shape {columns[name].shape}, expected {expected[name]}")
        digests = meta.get("column_sha256")
        if not isinstance(digests, dict):
            raise IndexDamaged("no column checksums (an index of an older scaledet)")
        for name in COLUMNS:
            if digests.get(name) != _column_digest(directory / f"{name}.npy", meta):
                raise IndexDamaged(f"{name}.npy does not match the checksum recorded when it was built")
        return cls(directory, meta, columns)


#: Index columns up to this size in all are checked whole (sha256) at every open; larger indexes (Objects365's
#: is ~0.6 GB) are checked by sampled windows, and each image's boxes are checked when it is read.
FULL_CHECK_BYTES = 256 << 20


def _column_digest(path: Path, meta: dict) -> str:
    """sha256 of a column file, whole when the index is small, else of its size and three 1 MiB windows."""
    small = meta.get("boxes", 0) * 16 + meta.get("images", 0) * 64 + meta.get("name_bytes", 0) <= FULL_CHECK_BYTES
    return ("sha256:" + sha256_of_file(path)) if small else ("sampled:" + sampled_sha256(path))


# --------------------------------------------------------------------------- finding and building
def index_key(spec: DatasetSpec, label_ids_digest: str, check_images: bool) -> str:
    path = Path(spec.annotations).resolve()
    stat = path.stat()
    parts = [str(INDEX_VERSION), str(path), str(stat.st_size), str(stat.st_mtime_ns), spec.key, label_ids_digest,
             str(Path(spec.images).resolve()), str(check_images), str(spec.allow_paths_outside_images)]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def open_index(spec: DatasetSpec, labelspace, label_ids_digest: str, check_images: bool = True,
               say=None) -> AnnotationIndex:
    """The index of ``spec``'s annotation file, built (under a lock, by one process) if needed."""
    say = say or _say
    annotation_file = Path(spec.annotations)
    if not annotation_file.is_file():
        raise ScaledetError(f"{annotation_file}: annotation file not found (dataset {spec.name})")
    directory = cache_root() / "index" / index_key(spec, label_ids_digest, check_images)
    for attempt in range(2):
        if directory.is_dir():
            try:
                index = AnnotationIndex.open(directory)
                if index.meta.get("sample_sha256") != sampled_sha256(annotation_file):
                    raise IndexDamaged("its source file's content changed since it was indexed")
                return index
            except IndexDamaged as err:
                say(f"warning: annotation index {directory} of {annotation_file} is damaged ({err}); rebuilding it")
                shutil.rmtree(directory, ignore_errors=True)
        directory.parent.mkdir(parents=True, exist_ok=True)
        with open(directory.parent / f".{directory.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the other ranks wait here, then find the index built
            if not directory.is_dir():
                say(f"indexing {annotation_file} (once; later opens map {directory})")
                build_index(spec, labelspace, directory, label_ids_digest, check_images)
    return AnnotationIndex.open(directory)


def _say(text: str) -> None:
    """Notes for a person at a terminal (an index build can take minutes); warnings always."""
    if text.startswith("warning:") or sys.stderr.isatty():
        print(text, file=sys.stderr)


def _items(path: Path, prefix: str):
    return stream_json_items(path, prefix, ScaledetError, "malformed or truncated JSON")


def _map_categories(path: Path, spec: DatasetSpec, labelspace) -> list[dict]:
    """Each category with its union index (and, in a unified file, the union indices of all its labels:
    a concept category has several)."""
    categories = []
    for position, category in enumerate(_items(path, "categories.item")):
        check_category(category, position, path)
        if spec.unified:
            labels = category.get("labels")
            if not isinstance(labels, list) or not labels:
                raise ScaledetError(f"{path}: category {category['id']} has no 'labels' (labelspace_key: unified is "
                                    "for files written by 'scaledet-labels unify')")
            members = [labelspace.global_index(g, f"{path}: category {category['id']}") for g in labels]
            categories.append({"id": category["id"], "name": category["name"], "mid": None, "union": members[0],
                               "members": members})
            continue
        local_id = str(category.get("mid") or category["id"])
        union = labelspace.union_index(spec.key, local_id, category["name"], str(path))
        categories.append({"id": category["id"], "name": category["name"], "mid": category.get("mid"), "union": union})
    if not categories:
        raise ScaledetError(f"{path}: no 'categories' (not a COCO-format annotation file)")
    return categories


def build_index(spec: DatasetSpec, labelspace, directory: Path, label_ids_digest: str,
                check_images: bool = True) -> None:
    """Stream the file into columns (three passes: categories, images, annotations) and write them."""
    started = time.perf_counter()
    path = Path(spec.annotations)
    before = path.stat()
    categories = _map_categories(path, spec, labelspace)
    union_of = {c["id"]: c["union"] for c in categories}

    image_ids, widths, heights = array("q"), array("i"), array("i")
    names, name_offsets = bytearray(), array("q", [0])
    list_labels, list_kinds, list_offsets = array("i"), array("B"), array("q", [0])
    list_fields: set[str] = set()
    source_bits, source_names = array("H"), {}
    for position, image in enumerate(_items(path, "images.item")):
        check_image(image, position, path)
        image_ids.append(image["id"])
        widths.append(image["width"])
        heights.append(image["height"])
        file_name = image_file_name(image)
        check_image_path(file_name, image["id"], path, spec)
        names += file_name.encode("utf-8")
        name_offsets.append(len(names))
        for field, code in IMAGE_LISTS.items():
            values = image.get(field)
            if values is None:
                continue
            list_fields.add(field)
            labels = category_ids_as_labels(values, union_of, path, image["id"], field)
            list_labels.extend(labels)
            list_kinds.extend([code] * len(labels))
        list_offsets.append(len(list_labels))
        source_bits.append(_source_bits(image, source_names, path) if spec.unified else 0)
    if not image_ids:
        raise ScaledetError(f"{path}: no 'images' (not a COCO-format annotation file)")
    ids = np.frombuffer(image_ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    if np.any(sorted_ids[1:] == sorted_ids[:-1]):
        duplicate = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]][0]
        raise ScaledetError(f"{path}: image id {duplicate} appears twice")

    box_image, xywh, labels, crowd, pseudo = array("q"), array("f"), array("i"), array("B"), array("f")
    for position, annotation in enumerate(_items(path, "annotations.item")):
        check_annotation(annotation, position, path)
        x, y, w, h = annotation["bbox"]
        if w <= 0 or h <= 0:
            raise ScaledetError(f"{path}: annotation {annotation['id']} (image {annotation['image_id']}): box "
                                f"{annotation['bbox']} has zero or negative area")
        union = union_of.get(annotation["category_id"])
        if union is None:
            raise ScaledetError(f"{path}: annotation {annotation['id']} has unknown category_id "
                                f"{annotation['category_id']}")
        box_image.append(annotation["image_id"])
        xywh.extend((x, y, w, h))
        labels.append(union)
        crowd.append(1 if annotation.get("iscrowd", 0) else 0)
        pseudo.append(_pseudo_score(annotation, path))

    if not box_image:
        check_list_or_absent(path, "annotations")
    raw_images = np.frombuffer(box_image, dtype=np.int64) if box_image else np.zeros(0, np.int64)
    found = np.searchsorted(sorted_ids, raw_images)
    found = np.clip(found, 0, len(sorted_ids) - 1)
    unknown = sorted_ids[found] != raw_images
    if np.any(unknown):
        first = int(np.flatnonzero(unknown)[0])
        raise ScaledetError(f"{path}: annotation #{first} refers to image id {int(raw_images[first])}, which is not "
                            "in 'images'")
    # int32 positions and orders (images < 2**31) keep the peak of a 25M-box file near 1 GiB over the baseline
    positions = order[found].astype(np.int32)
    del raw_images, found, box_image, unknown
    box_order = np.argsort(positions, kind="stable").astype(np.int32)
    boxes = np.frombuffer(xywh, dtype=np.float32).reshape(-1, 4)[box_order] if len(xywh) else np.zeros((0, 4), np.float32)
    del xywh
    positions = positions[box_order]
    widths_np, heights_np = np.frombuffer(widths, dtype=np.int32), np.frombuffer(heights, dtype=np.int32)
    for axis, sizes in ((0, widths_np), (1, heights_np)):  # one coordinate at a time, then xywh → xyxy in place
        limit = sizes[positions]
        outside = (boxes[:, axis] < -BOX_TOLERANCE_PX) | (boxes[:, axis] + boxes[:, axis + 2] > limit + BOX_TOLERANCE_PX)
        if np.any(outside):
            _report_outside_box(path, int(box_order[np.flatnonzero(outside)[0]]), widths_np, heights_np, ids)
        boxes[:, axis + 2] += boxes[:, axis]
        np.minimum(boxes[:, axis + 2], limit, out=boxes[:, axis + 2])
        np.maximum(boxes[:, axis], 0, out=boxes[:, axis])
        del limit, outside
    xyxy = boxes
    crowd_np = np.frombuffer(crowd, dtype=np.uint8)[box_order] if len(crowd) else np.zeros(0, np.uint8)
    del crowd
    labels_np = np.frombuffer(labels, dtype=np.int32)[box_order] if len(labels) else np.zeros(0, np.int32)
    pseudo_np = np.frombuffer(pseudo, dtype=np.float32)[box_order] if len(pseudo) else np.zeros(0, np.float32)
    del labels, pseudo, box_order
    count = np.bincount(positions, minlength=len(ids)).astype(np.int32)
    ordinary = (count - np.bincount(positions, weights=crowd_np, minlength=len(ids))).astype(np.int32)
    del positions
    first_box = (np.cumsum(count, dtype=np.int64) - count).astype(np.int64)
    offsets = np.frombuffer(name_offsets, dtype=np.int64)
    names_np = np.frombuffer(bytes(names), dtype=np.uint8)
    if check_images:
        _check_images_exist(spec, names_np, offsets)
    after = path.stat()
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise ScaledetError(f"{path}: changed while it was being indexed; run again once it is complete")
    columns = {"image_ids": ids, "widths": widths_np, "heights": heights_np, "first_box": first_box,
               "box_count": count, "ordinary_count": ordinary, "name_offsets": offsets, "boxes": xyxy,
               "labels": labels_np, "crowd": crowd_np, "pseudo_scores": pseudo_np, "names": names_np,
               "list_offsets": np.frombuffer(list_offsets, dtype=np.int64),
               "list_labels": np.frombuffer(list_labels, dtype=np.int32) if list_labels else np.zeros(0, np.int32),
               "list_kinds": np.frombuffer(list_kinds, dtype=np.uint8) if list_kinds else np.zeros(0, np.uint8),
               "source_bits": np.frombuffer(source_bits, dtype=np.uint16)}
    meta = {"version": INDEX_VERSION, "source": str(path.resolve()), "size": after.st_size,
            "mtime_ns": after.st_mtime_ns, "sha256": sha256_of_file(path), "sample_sha256": sampled_sha256(path),
            "dataset": spec.key,
            "label_ids_sha256": label_ids_digest, "image_root": str(Path(spec.images).resolve()),
            "checked_images": check_images, "images": len(ids), "boxes": int(len(labels_np)),
            "name_bytes": int(len(names_np)), "categories": categories, "list_entries": len(list_labels),
            "protocol": protocol_of_file(categories, list_fields),
            "sources": list(source_names), "source_protocols": _source_protocols(path) if spec.unified else {},
            "seconds": round(time.perf_counter() - started, 3)}
    _write_atomically(directory, columns, meta)


def _pseudo_score(annotation: dict, path: Path) -> float:
    """A pseudo box's teacher score (``"pseudo": true`` needs a ``score`` in [0, 1]); NaN for an annotation."""
    if annotation.get("pseudo") is not True:
        return float("nan")
    score = annotation.get("score")
    if not isinstance(score, (int, float)) or isinstance(score, bool) or not 0.0 <= score <= 1.0:
        raise ScaledetError(f"{path}: annotation {annotation['id']} is a pseudo box without a 'score' in [0, 1]")
    return float(score)


def _source_bits(image: dict, names: dict[str, int], path: Path) -> int:
    """The bitmask of a unified file's image ``sources`` (each new key gets the next bit)."""
    sources = image.get("sources")
    if not isinstance(sources, list) or not sources or not all(isinstance(s, str) for s in sources):
        raise ScaledetError(f"{path}: image {image['id']} has no 'sources' list (not a 'scaledet-labels unify' file)")
    bits = 0
    for source in sources:
        if source not in names:
            if len(names) == MAX_UNIFIED_SOURCES:
                raise ScaledetError(f"{path}: more than {MAX_UNIFIED_SOURCES} sources")
            names[source] = len(names)
        bits |= 1 << names[source]
    return bits


def _source_protocols(path: Path) -> dict[str, str]:
    """``scaledet.sources`` of a unified file: each source's annotation protocol."""
    for meta in _items(path, "scaledet"):
        sources = meta.get("sources") if isinstance(meta, dict) else None
        if isinstance(sources, dict):
            return {key: value.get("protocol") for key, value in sources.items() if isinstance(value, dict)}
    raise ScaledetError(f"{path}: no 'scaledet.sources' record (not a 'scaledet-labels unify' file)")


def _report_outside_box(path: Path, raw_position: int, widths, heights, ids) -> None:
    """Only on the error path: find the offending annotation again to name its id and image."""
    for position, annotation in enumerate(_items(path, "annotations.item")):
        if position == raw_position:
            image = int(np.flatnonzero(ids == annotation["image_id"])[0])
            raise ScaledetError(f"{path}: annotation {annotation['id']} (image {annotation['image_id']}): box "
                                f"{annotation['bbox']} lies outside the {int(widths[image])}×{int(heights[image])} image")
    raise ScaledetError(f"{path}: a box lies outside its image")


def _check_images_exist(spec: DatasetSpec, names: np.ndarray, offsets: np.ndarray) -> None:
    root = Path(spec.images)
    missing, first = 0, None
    for i in range(len(offsets) - 1):
        file_name = bytes(names[offsets[i]:offsets[i + 1]]).decode("utf-8")
        if not os.path.isfile(root / file_name):
            missing += 1
            first = first or root / file_name
    if missing:
        raise ScaledetError(f"{root}: {missing} image(s) of {spec.annotations} missing on disk, e.g. {first}")


def _write_atomically(directory: Path, columns: dict[str, np.ndarray], meta: dict) -> None:
    from scaledet.labelspace.io.temporaries import make_temporary_dir

    staging = make_temporary_dir(directory, "building")
    try:
        for name, values in columns.items():
            np.save(staging / f"{name}.npy", np.ascontiguousarray(values, dtype=COLUMNS[name][0]))
        meta = {**meta, "column_sha256": {name: _column_digest(staging / f"{name}.npy", meta) for name in columns}}
        (staging / "meta.json").write_text(json.dumps(seal(meta, META_DIGEST_KEY)), encoding="utf-8")
        os.replace(staging, directory)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise ScaledetError(f"{directory}: the annotation index cannot be written ({one_line(err)})") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
