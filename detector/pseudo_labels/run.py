"""The two streamed passes over a unified file's images: calibrate the thresholds on exhaustive cells, then
write the file again with pseudo boxes in the cells that may receive them."""
from __future__ import annotations

import csv
import io
import json
from array import array
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from scaledet.labelspace.box_overlap import iou_matrix
from scaledet.labelspace.io.atomic import StagedFiles
from scaledet.labelspace.io.digests import sha256_of_file
from scaledet.labelspace.io.errors import ScaledetError
from scaledet.labelspace.io.made_paths import MadePaths
from scaledet.labelspace.io.temporaries import temporary_file_name
from scaledet.labelspace.io.text_files import csv_cell, stream_json_items
from scaledet.labelspace.unify import UNIFIED_FILE, UNIFY_FORMAT

from .cells import ImageCells, may_receive
from .tables import BoxTable, read_annotation_boxes
from .thresholds import MATCH_IOU, Calibration, CategoryThreshold, choose_thresholds, match_detections

PSEUDO_CSV = "pseudo_labels.csv"
PSEUDO_KIND = "pseudo-labelled training set"
FORMATS = ("coco", "yolo")
YOLO_NOTE = ("YOLO has no ignore: the pseudo boxes are written as ordinary boxes, and every class's missing "
             "boxes are trained as background")


@dataclass
class PseudoLabelReport:
    """What a run did: images read, boxes added, cells (image × category) filled, each category's threshold,
    the categories that got none, and the files written."""

    images: int = 0
    boxes_added: int = 0
    cells_filled: int = 0
    thresholds: dict[int, CategoryThreshold] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # category names without a threshold
    written: list[Path] = field(default_factory=list)


@dataclass
class UnifiedFile:
    """What the passes need of the input file, read once: its categories, its ``scaledet`` record and its
    boxes (a flat table)."""

    path: Path
    categories: list[dict]
    meta: dict
    boxes: BoxTable
    largest_annotation_id: int

    @staticmethod
    def read_meta(path: Path) -> dict:
        """The file's ``scaledet`` record, checked: a unify output with every state in its lists."""
        if not path.is_file():
            raise ScaledetError(f"--unified {path}: not found")
        meta = next(iter(stream_json_items(path, "scaledet")), None)
        if not isinstance(meta, dict) or meta.get("format") != UNIFY_FORMAT:
            raise ScaledetError(f"--unified {path}: not a 'scaledet-labels unify' file (no scaledet.format "
                                f"{UNIFY_FORMAT})")
        if not meta.get("explicit_negatives", True):
            raise ScaledetError(f"--unified {path}: a --compact file lists only what its sources said; pseudo-label "
                                "reads every cell's state from the lists: unify again without --compact")
        return meta

    @staticmethod
    def read_categories(path: Path) -> list[dict]:
        categories = list(stream_json_items(path, "categories.item"))
        ids = [c.get("id") if isinstance(c, dict) else None for c in categories]
        if ids != list(range(1, len(categories) + 1)):
            raise ScaledetError(f"--unified {path}: category ids are not 1..{len(categories)} as unify writes them")
        return categories

    @classmethod
    def read(cls, path: Path) -> "UnifiedFile":
        meta = cls.read_meta(path)
        categories = cls.read_categories(path)
        boxes, largest = read_annotation_boxes(path, {c["id"] for c in categories})
        return cls(path, categories, meta, boxes, largest)

    def images(self) -> Iterator[dict]:
        for position, image in enumerate(stream_json_items(self.path, "images.item")):
            if not isinstance(image, dict) or not isinstance(image.get("id"), int):
                raise ScaledetError(f"{self.path}: images[{position}] has no integer id")
            yield image


def _progress(iterable, total: int, description: str, show: bool):
    if not show:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=description, unit="img", leave=False)


def calibrate(unified: UnifiedFile, detections: BoxTable, show_progress: bool = False) -> tuple[Calibration, int]:
    """Pass 1: every detection on an exhaustive cell, matched; each category's exhaustive images and boxes.
    Also the number of images; every detection must name an image of the file."""
    calibration = Calibration(len(unified.categories))
    boxes = unified.boxes
    seen = array("q")  # image ids, 8 bytes each: not one Python int per image
    for image in _progress(unified.images(), unified.meta.get("images") or 0, "calibrate", show_progress):
        seen.append(image["id"])
        own = boxes.of(image["id"])
        cells = ImageCells.of(image, boxes.categories[own])
        exhaustive = cells.exhaustive()
        calibration.images[exhaustive] += 1
        box_categories = boxes.categories[own]
        counted = np.isin(box_categories, exhaustive) & ~boxes.crowd[own]
        np.add.at(calibration.boxes, box_categories[counted], 1)
        found = detections.of(image["id"])
        if found.start == found.stop:
            continue
        det_categories = detections.categories[found]
        for category in np.intersect1d(np.unique(det_categories), exhaustive):
            mine = det_categories == category
            theirs = box_categories == category
            outcomes = match_detections(detections.xywh[found][mine], detections.scores[found][mine],
                                        boxes.xywh[own][theirs], boxes.crowd[own][theirs])
            calibration.add(int(category), detections.scores[found][mine], outcomes)
    check_detection_images(seen, detections, unified.path)
    return calibration, len(seen)


def check_detection_images(seen: array, detections: BoxTable, path: Path) -> None:
    """Every detection names an image of the file read (``seen``: its image ids), each id once."""
    known = np.sort(np.frombuffer(seen, dtype=np.int64)) if seen else np.zeros(0, np.int64)
    if len(np.unique(known)) != len(known):
        raise ScaledetError(f"{path}: an image id appears twice")
    position = np.clip(np.searchsorted(known, detections.image_ids), 0, max(len(known) - 1, 0))
    stray = (known[position] != detections.image_ids) if len(known) else np.ones(len(detections), bool)
    if np.any(stray):
        raise ScaledetError(f"the teacher's detections name image {int(detections.image_ids[np.argmax(stray)])}, "
                            f"which is not in {path}; are they of another file?")


def check_same_categories(unified: UnifiedFile, calibration: UnifiedFile) -> None:
    """A calibration file must name the same labels in the same categories: thresholds go by category id."""
    if [c.get("labels") for c in unified.categories] != [c.get("labels") for c in calibration.categories]:
        raise ScaledetError(f"--calibration {calibration.path}: its categories are not those of {unified.path}; "
                            "unify both with the same build, sources and --space")


def select_pseudo_boxes(image: dict, cells: ImageCells, existing: np.ndarray, existing_categories: np.ndarray,
                        detections: np.ndarray, categories: np.ndarray, scores: np.ndarray,
                        thresholds: np.ndarray, concept_of: np.ndarray) -> list[tuple[int, list[float], float]]:
    """(category id, clipped xywh, score) of the detections one image receives: above their category's
    threshold, in a cell that may receive boxes, inside the image, and off every box of their concept
    (IoU < 0.5), existing or accepted before them (best score first). ``concept_of[category id]`` is the
    build's concept: in a union file ``coco/person`` and ``o365/Person`` are two categories of one concept,
    and one person gets one box."""
    confident = np.flatnonzero(scores >= thresholds[categories])
    allowed = confident[may_receive(cells.states(categories[confident].astype(np.int64)))]
    allowed = allowed[np.argsort(-scores[allowed], kind="stable")]
    width, height = float(image.get("width") or 0), float(image.get("height") or 0)
    taken: dict[int, list[np.ndarray]] = {}
    existing_concepts = concept_of[existing_categories]
    chosen = []
    for k in allowed:
        category = int(categories[k])
        concept = int(concept_of[category])
        x, y, w, h = (float(v) for v in detections[k])
        x1, y1 = max(x, 0.0), max(y, 0.0)
        x2, y2 = (min(x + w, width) if width else x + w), (min(y + h, height) if height else y + h)
        if x2 - x1 <= 0 or y2 - y1 <= 0:
            continue
        box = np.asarray([[x1, y1, x2 - x1, y2 - y1]], dtype=np.float32)
        if concept not in taken:
            taken[concept] = list(existing[existing_concepts == concept])
        if taken[concept] and iou_matrix(box, np.asarray(taken[concept], dtype=np.float32)).max() >= MATCH_IOU:
            continue
        taken[concept].append(box[0])
        chosen.append((category, box[0].tolist(), float(scores[k])))
    return chosen


def category_concepts(unified: "UnifiedFile") -> np.ndarray:
    """The build's concept of each category id (its first label's; index 0 unused), from the build and merge
    the unified file was made with: the detector never decides itself which labels name one thing."""
    from scaledet.labelspace.label_states import relations_for_build
    from scaledet.labelspace.outputs import LabelSpaceOutput

    build, merge = Path(str(unified.meta.get("build"))), unified.meta.get("merge_file")
    try:
        relations = relations_for_build(LabelSpaceOutput.load(build, with_embeddings=False),
                                        Path(merge) if merge else None)
    except (ScaledetError, OSError) as error:
        raise ScaledetError(f"--unified {unified.path}: its build {build} (which says which categories are one "
                            f"concept) cannot be read: {str(error)[:200]}") from None
    index_of = {g: i for i, g in enumerate(relations.global_ids)}
    concepts = np.full(len(unified.categories) + 1, -1, dtype=np.int64)
    for category in unified.categories:
        labels = [index_of.get(g) for g in category.get("labels") or ()]
        if not labels or labels[0] is None:
            raise ScaledetError(f"--unified {unified.path}: category {category['id']} names labels that are not in "
                                f"its build {build}")
        concepts[category["id"]] = relations.concept[labels[0]]
    return concepts


def pseudo_record(annotation_id: int, image_id: int, category: int, box: list[float], score: float) -> dict:
    x, y, w, h = (round(v, 2) for v in box)
    return {"id": annotation_id, "image_id": image_id, "category_id": category, "bbox": [x, y, w, h],
            "area": round(w * h, 2), "iscrowd": 0, "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
            "pseudo": True, "score": round(score, 4)}


def pseudo_label(unified: UnifiedFile | Path, detections: BoxTable, to: Path, teacher: str,
                 precision: float | None = 0.9, threshold: float | None = None, fmt: str = "coco",
                 show_progress: bool = False, say: Callable[[str], None] = lambda text: None,
                 calibration_file: UnifiedFile | Path | None = None,
                 calibration_detections: BoxTable | None = None) -> PseudoLabelReport:
    """Write ``to/unified.json`` (or a YOLO dataset) and ``to/pseudo_labels.csv``; see the package doc.
    ``unified`` is the input file, or what :meth:`UnifiedFile.read` read of it. Thresholds are measured on
    the exhaustive cells of ``calibration_file`` (a held-out split, unified the same way) with the
    teacher's ``calibration_detections`` there; without one, on the input file's own."""
    if fmt not in FORMATS:
        raise ScaledetError(f"--format {fmt!r}: choose coco or yolo")
    unified = unified if isinstance(unified, UnifiedFile) else UnifiedFile.read(Path(unified))
    unified_path = unified.path
    report = PseudoLabelReport()
    concept_of = category_concepts(unified)
    calibrated_on = unified_path
    if calibration_file is not None:
        held_out = calibration_file if isinstance(calibration_file, UnifiedFile) else UnifiedFile.read(Path(calibration_file))
        check_same_categories(unified, held_out)
        calibrated_on = held_out.path
        say(f"calibrating on the exhaustive cells of {held_out.path}")
        calibration, _ = calibrate(held_out, calibration_detections, show_progress)
    else:
        say("calibrating on the exhaustive cells of the file itself")
        calibration, report.images = calibrate(unified, detections, show_progress)
    report.thresholds = choose_thresholds(calibration, precision, threshold)
    names = [c.get("name", str(c["id"])) for c in unified.categories]
    report.skipped = [names[c - 1] for c, t in report.thresholds.items() if not np.isfinite(t.threshold)]
    limits = np.full(len(unified.categories) + 1, np.inf, dtype=np.float64)
    for category, chosen in report.thresholds.items():
        limits[category] = chosen.threshold
    writer = _YoloWriter(to, unified) if fmt == "yolo" else _CocoWriter(to, unified)
    staged = StagedFiles()
    added: dict[tuple[int, str], int] = {}
    next_id = unified.largest_annotation_id + 1
    seen = array("q")
    try:
        for image in _progress(unified.images(), report.images or unified.meta.get("images") or 0, "pseudo-label",
                               show_progress):
            seen.append(image["id"])
            own = unified.boxes.of(image["id"])
            cells = ImageCells.of(image, unified.boxes.categories[own])
            found = detections.of(image["id"])
            chosen = select_pseudo_boxes(image, cells, unified.boxes.xywh[own], unified.boxes.categories[own],
                                         detections.xywh[found], detections.categories[found],
                                         detections.scores[found], limits, concept_of) if found.start != found.stop else []
            records = []
            for category, box, score in chosen:
                records.append(pseudo_record(next_id, image["id"], category, box, score))
                next_id += 1
                key = (category, "+".join(image.get("sources") or ["?"]))
                added[key] = added.get(key, 0) + 1
            filled = sorted({r["category_id"] for r in records})
            report.cells_filled += len(filled)
            report.boxes_added += len(records)
            if filled:
                image = {**image, "not_exhaustive_category_ids":
                         sorted(set(image.get("not_exhaustive_category_ids") or []) | set(filled))}
            writer.add_image(image, own, records)
        check_detection_images(seen, detections, unified_path)
        report.images = len(seen)
        meta = {**unified.meta, "boxes": int(unified.meta.get("boxes") or len(unified.boxes)) + report.boxes_added,
                "pseudo_labels": {"from": str(unified_path.resolve()), "from_sha256": sha256_of_file(unified_path),
                                  "teacher": teacher, "precision": None if threshold is not None else precision,
                                  "calibrated_on": str(calibrated_on.resolve()),
                                  "threshold": threshold, "boxes": report.boxes_added, "cells": report.cells_filled}}
        writer.finish(meta, staged)
        staged.write_text(to / PSEUDO_CSV, thresholds_csv(report.thresholds, names, added, calibration))
        report.written = staged.commit()  # together: a failure before leaves an earlier run's files as they were
    except BaseException:
        staged.discard()
        writer.undo()
        raise
    return report


def thresholds_csv(thresholds: dict[int, CategoryThreshold], names: list[str], added: dict[tuple[int, str], int],
                   calibration: Calibration) -> str:
    """One row per category: threshold, status, what was measured on its exhaustive cells, boxes added per
    source (an image two sources share counts under both names joined by ``+``)."""
    sources = sorted({source for _, source in added})
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    out.writerow(["category_id", "name", "threshold", "status", "exhaustive_images", "exhaustive_boxes",
                  "teacher_detections", "precision", "recall", "boxes_added", *(f"added {s}" for s in sources)])

    def number(value: float) -> str:
        return "" if not np.isfinite(value) else f"{value:.4f}"

    def exact(value: float) -> str:  # a threshold is compared with scores: written as it is, not rounded
        return "" if not np.isfinite(value) else repr(float(value))

    for category, chosen in thresholds.items():
        per_source = [added.get((category, s), 0) for s in sources]
        out.writerow([category, csv_cell(names[category - 1]), exact(chosen.threshold), chosen.status,
                      int(calibration.images[category]), int(calibration.boxes[category]), chosen.detections,
                      number(chosen.precision), number(chosen.recall), sum(per_source), *per_source])
    return buffer.getvalue()


class _CocoWriter:
    """The new unified file, assembled from streamed parts: images, the input's annotations as they were,
    then the pseudo boxes. An input whose images lie under its own ``images/`` folder gets a link to it,
    so the new folder is an image root as the old one was."""

    def __init__(self, to: Path, unified: UnifiedFile) -> None:
        self.to, self.unified = to, unified
        self.parts = [temporary_file_name(to / "images.json"), temporary_file_name(to / "pseudo.json")]
        self.handles = [open(p, "w", encoding="utf-8") for p in self.parts]
        self.first = [True, True]
        self.made = MadePaths(to)

    def _write(self, part: int, record: dict) -> None:
        self.handles[part].write(("" if self.first[part] else ",") + json.dumps(record, separators=(",", ":"),
                                                                                 ensure_ascii=False))
        self.first[part] = False

    def add_image(self, image: dict, own: slice, records: list[dict]) -> None:
        self._write(0, image)
        for record in records:
            self._write(1, record)

    def _link_images(self) -> None:
        source = self.unified.path.parent / "images"
        link = self.to / "images"
        if source.is_dir() and not link.exists() and not link.is_symlink():
            os.symlink(source.resolve(), link, target_is_directory=True)
            self.made.add(link)

    def finish(self, meta: dict, staged: StagedFiles) -> None:
        for handle in self.handles:
            handle.close()
        info = next(iter(stream_json_items(self.unified.path, "info")), None)

        def assemble(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8") as out:
                out.write('{"info":' + json.dumps(info if info is not None else {}, ensure_ascii=False) + ',"images":[')
                with open(self.parts[0], encoding="utf-8") as part:
                    shutil.copyfileobj(part, out)
                out.write('],"annotations":[')
                first = True
                for annotation in stream_json_items(self.unified.path, "annotations.item"):
                    out.write(("" if first else ",") + json.dumps(annotation, separators=(",", ":"), ensure_ascii=False))
                    first = False
                if not self.first[1]:
                    out.write("" if first else ",")
                    with open(self.parts[1], encoding="utf-8") as part:
                        shutil.copyfileobj(part, out)
                out.write('],"categories":' + json.dumps(self.unified.categories, ensure_ascii=False))
                out.write(',"scaledet":' + json.dumps(meta, ensure_ascii=False) + "}\n")

        try:
            staged.write(self.to / UNIFIED_FILE, assemble)
        finally:
            self._discard()
        self._link_images()

    def _discard(self) -> None:
        for handle in self.handles:
            try:
                handle.close()
            except OSError:
                pass
        for part in self.parts:
            part.unlink(missing_ok=True)

    def undo(self) -> None:
        self._discard()
        self.made.undo()


class _YoloWriter:
    """An Ultralytics dataset: each image linked (never copied) at its own path under ``images/``, one label
    file per image with its ordinary and pseudo boxes alike (YOLO has no ignore), ``data.yaml``. The links
    are per file: Ultralytics resolves the image folder's path, and labels must sit beside that path."""

    def __init__(self, to: Path, unified: UnifiedFile) -> None:
        self.to, self.unified = to, unified
        if not (unified.path.parent / "images").is_dir():
            raise ScaledetError(f"--format yolo: the images of {unified.path} are not under "
                                f"{unified.path.parent / 'images'}; make the unified file with --images so that "
                                "labels can sit beside linked images")
        self.made = MadePaths(to)

    def add_image(self, image: dict, own: slice, records: list[dict]) -> None:
        name = str(image.get("file_name") or "")
        parts = Path(name).parts
        if not parts or parts[0] != "images" or ".." in parts:
            raise ScaledetError(f"--format yolo: image {image['id']} has file_name {name[:120]!r}, not one under "
                                "images/ (make the unified file with --images)")
        width, height = float(image.get("width") or 0), float(image.get("height") or 0)
        if width <= 0 or height <= 0:
            raise ScaledetError(f"--format yolo: image {image['id']} has no width and height")
        boxes = self.unified.boxes
        rows = [(int(c), [float(v) for v in b]) for c, b, crowd in
                zip(boxes.categories[own], boxes.xywh[own], boxes.crowd[own]) if not crowd]
        rows += [(r["category_id"], r["bbox"]) for r in records]
        target = (self.unified.path.parent / name).resolve()
        if not target.is_file():
            raise ScaledetError(f"--format yolo: image {image['id']}: {self.unified.path.parent / name} not found")
        link = self.to / name
        self.made.make_dirs(link.parent)
        if link.is_symlink():
            link.unlink()
        os.symlink(target, link)
        self.made.add(link)
        label = self.to / "labels" / Path(*parts[1:]).with_suffix(".txt")
        self.made.make_dirs(label.parent)
        label.write_text("".join(f"{c - 1} {(x + w / 2) / width:.6f} {(y + h / 2) / height:.6f} {w / width:.6f} "
                                 f"{h / height:.6f}\n" for c, (x, y, w, h) in rows), encoding="utf-8")
        self.made.add(label)

    def finish(self, meta: dict, staged: StagedFiles) -> None:
        names = "".join(f"  {c['id'] - 1}: {json.dumps(c.get('name', str(c['id'])), ensure_ascii=False)}\n"
                        for c in self.unified.categories)
        staged.write_text(self.to / "data.yaml", f"path: {json.dumps(str(self.to.resolve()))}\n"
                          f"train: images\nval: images\nnames:\n{names}")

    def undo(self) -> None:
        self.made.undo()
