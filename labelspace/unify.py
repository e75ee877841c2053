"""``scaledet-labels unify``: one training set from several annotation files, for any detector.

The categories are the build's labels of the sources' datasets (``--space union``: ``coco/person`` and
``o365/Person`` stay apart) or their concepts (``--space concepts``, from ``merge``). Each category carries
a ``name`` in plain words (``category_names.py``: never a global id, qualified in words where two would
coincide), ``labels`` (its members' global ids), ``synonyms``, and LVIS's ``image_count`` and
``frequency``. A category with an LVIS member keeps what the LVIS source file says of it (``frequency``,
``image_count``, ``synset``, ``synonyms`` in LVIS's order): LVIS's r / c / f groups come from its training
set, which no other file can recount. Only the other categories get computed values: ``image_count`` is the
number of images of the unified file with a box of the category, and ``frequency`` groups it as LVIS does
(r ≤ 10 images < c ≤ 100 < f). Annotations are remapped; every box also gets a box-shaped polygon, since
detectron2's LVIS loader requires one.

What each image says about each category (``label_states.py``) goes into LVIS's own fields:
``neg_category_ids`` (negative), ``not_exhaustive_category_ids`` (present but not every instance boxed,
or present with no box of that category), unknown = in neither and without boxes. By default the lists are
explicit: every state is written, so a reader that knows only LVIS's fields (the LVIS API, faster-coco-eval,
detectron2, mmdetection, Detic's federated loss) gets the numbers and the training signal scaledet gets.
``--compact`` writes only the lists the sources gave, plus each source's protocol in ``scaledet.sources``,
from which scaledet recomputes the rest (``complete_label_lists``); other readers then score an exhaustive
source's images without their negatives.

An image that two sources annotate (LVIS annotates COCO's images) is one image, found by its file's base
name: its states combine (present in any source wins over negative; each such disagreement is counted and
listed in ``conflicts.csv``), and a box that both give for one category (IoU ≥ 0.7) is kept once.

``coverage.csv`` (:mod:`.coverage`) counts, for each concept and each source, the images in which the
concept is positive, partial, negative and unknown, and its boxes: which dataset teaches what, where.

With ``--images KEY=ROOT`` each image is linked (never copied) under ``OUT/images/KEY/``: its path under
ROOT is the source's ``file_name``, or for LVIS v1 (which has none) ``coco_url``'s split folder and name
(``ROOT/val2017/000000266409.jpg``). ``file_name`` and ``coco_url`` then become ``images/KEY/NAME``, which
detectron2's ``load_lvis_json`` (image root ``OUT/images/``), Detic's ``custom_load_lvis_json`` and
Ultralytics (image root ``OUT``) all resolve. Without ``--images``, ``file_name`` is that path under the
source's own root.

Memory stays bounded: sources are read one at a time into flat arrays (``unify_sources.py``), images and
annotations are streamed to disk as they are made, and only images shared by sources are held until all
sources are read. ``--format yolo`` writes an Ultralytics dataset instead (``data.yaml``, ``labels/``,
images linked, not copied); YOLO's loss cannot express unknown, so the classes that some source annotates
only partly are printed and written to ``partial_classes.txt``.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .io.errors import OutputError, ScaledetError, os_error_words
from .io.made_paths import MadePaths
from .box_overlap import iou_matrix
from .category_names import label_qualifiers, unique_names
from .coverage import COVERAGE_FILE, CoverageCounter, concept_names
from .label_states import (EXHAUSTIVE, NEGATIVE, PARTIAL, POSITIVE, UNKNOWN, DatasetCoverage, LabelRelations,
                           combine_states, image_states, relations_for_build)
from .io.text_files import csv_cell
from .unify_blocks import (ImageBlock, annotation_records, block_category_states, block_compact_states,
                           block_state_lists, boxed_categories, image_records, images_per_block,
                           offsets_of)
from .unify_sources import LIST_FIELDS, LabelLookup, SourceData, image_key, read_source

UNIFY_FORMAT = "scaledet.unified/1"
UNIFIED_FILE = "unified.json"
SPACES = ("union", "concepts")
FORMATS = ("coco", "yolo")
#: LVIS's frequency groups by the number of training images of a category
RARE_MAX, COMMON_MAX = 10, 100
DUPLICATE_IOU = 0.7
CONFLICTS_LISTED = 10_000
#: The readers a ``--compact`` file misleads: they know only LVIS's per-image lists, not ``scaledet.sources``
COMPACT_MISREADERS = "the LVIS API, faster-coco-eval, detectron2, mmdetection and Detic"


@dataclass
class OutputSpace:
    """The categories written: member union indices per category, and each union label's category (-1
    when the label is not written)."""

    names: list[str]
    members: list[list[int]]
    category_of: np.ndarray


def output_space(output, relations: LabelRelations, keys: list[str], space: str, names: list[str]) -> OutputSpace:
    """``union``: one category per label of the sources' datasets, named by the label's name; ``concepts``:
    one per concept of them, named by the merge's concept name (``names`` holds one name per label)."""
    wanted = [j for j in range(len(relations.global_ids)) if relations.datasets[relations.dataset_of[j]] in keys]
    category_of = np.full(len(relations.global_ids), -1, dtype=np.int64)
    if space == "union":
        for c, j in enumerate(wanted):
            category_of[j] = c
        return OutputSpace([names[j] for j in wanted], [[j] for j in wanted], category_of)
    by_concept: dict[int, int] = {}
    members: list[list[int]] = []
    for j in wanted:
        c = by_concept.setdefault(int(relations.concept[j]), len(members))
        if c == len(members):
            members.append([])
        members[c].append(j)
        category_of[j] = c
    return OutputSpace([names[m[0]] for m in members], members, category_of)


@dataclass
class UnifyReport:
    images: int = 0
    shared_images: int = 0
    boxes: int = 0
    duplicates: int = 0
    conflicts: int = 0
    partial_classes: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


@dataclass
class _Image:
    """One output image before it is written: its boxes (union labels and categories) and what its sources
    said of it, from which its states are computed when it is written (after sources that share it are
    combined)."""

    sources: list[str]
    coverages: list[DatasetCoverage]
    file_name: str
    coco_url: str | None
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray  # union index of each box's label
    categories: np.ndarray
    concepts: np.ndarray  # the build's concept of each box's label: duplicates across sources are found by it
    crowd: np.ndarray
    lists: dict[str, np.ndarray]  # the sources' explicit lists, as union indices
    states: np.ndarray | None = None  # one source's label states, computed once for coverage.csv

    def label_states(self) -> np.ndarray:
        """The image's label states: a single source's as computed when it was read, a combined image's
        from all its sources."""
        if self.states is not None and len(self.sources) == 1:
            return self.states
        return image_states(self.coverages, self.labels, self.lists)


def category_states(states: np.ndarray, space: OutputSpace) -> np.ndarray:
    """A category's state from its members': present (POSITIVE over PARTIAL) if any member is present,
    else NEGATIVE if any is, else UNKNOWN."""
    result = np.full(len(space.names), UNKNOWN, dtype=np.int8)
    written = space.category_of >= 0
    categories, member_states = space.category_of[written], states[written]
    for value in (NEGATIVE, PARTIAL, POSITIVE):  # later values win
        result[categories[member_states == value]] = value
    return result


def merge_images(first: _Image, second: _Image) -> tuple[_Image, int, int]:
    """One image from two sources: (the image, boxes dropped as duplicates, conflicting categories)."""
    keep = []
    for k in range(len(second.categories)):
        same = first.boxes[first.concepts == second.concepts[k]]
        keep.append(not (len(same) and np.max(iou_matrix(second.boxes[k][None], same)) >= DUPLICATE_IOU))
    keep = np.asarray(keep, dtype=bool) if keep else np.zeros(0, dtype=bool)
    conflicts = combine_states(first.label_states(), second.label_states())[1]
    merged = _Image(first.sources + second.sources, first.coverages + second.coverages, first.file_name,
                    first.coco_url, first.width, first.height,
                    np.concatenate([first.boxes, second.boxes[keep]]),
                    np.concatenate([first.labels, second.labels[keep]]),
                    np.concatenate([first.categories, second.categories[keep]]),
                    np.concatenate([first.concepts, second.concepts[keep]]),
                    np.concatenate([first.crowd, second.crowd[keep]]),
                    {f: np.union1d(first.lists[f], second.lists[f]) for f in LIST_FIELDS})
    return merged, int((~keep).sum()), conflicts


def state_lists(category_state: np.ndarray, boxed: np.ndarray) -> tuple[list[int], list[int]]:
    """(neg_category_ids, not_exhaustive_category_ids) of an image from its category states: present
    categories without a box of their own are not exhaustive too."""
    negatives = np.flatnonzero(category_state == NEGATIVE)
    partial = category_state >= POSITIVE  # present: not exhaustive unless boxed ...
    partial[boxed] = category_state[boxed] == PARTIAL  # ... and a boxed one only when its state says so
    return (negatives + 1).tolist(), (np.flatnonzero(partial) + 1).tolist()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def source_image(root: Path, name: str, coco_url: str | None, output: Path, flag: str) -> Path:
    """The file an image of a source names under its ``--images`` root: ``ROOT/file_name``, else COCO's
    split layout from ``coco_url`` (``ROOT/val2017/NAME``), else ``ROOT/NAME``. A name that leaves the root
    (absolute, ``..``) and an image that already lies in the output folder (linking it would replace it with
    a link to itself) are refused in one line."""
    candidates = [name]
    if coco_url:
        candidates.append("/".join(coco_url.split("/")[-2:]))
    candidates.append(name.split("/")[-1])
    for relative in dict.fromkeys(candidates):
        parts = Path(relative).parts
        if "\0" in relative or not relative or Path(relative).is_absolute() or ".." in parts:
            raise ScaledetError(f"{flag}: image {relative[:120]!r} is not a path inside the image folder")
        candidate = root / relative
        if candidate.is_file():
            target = candidate.resolve()
            if _inside(target, output.resolve()):
                raise ScaledetError(f"{flag}: image {candidate} already lies in the output folder {output}; name "
                                    "the folder the images came from (unify links them, it never moves them)")
            return target
    tried = " or ".join(str(root / r) for r in dict.fromkeys(candidates))
    raise ScaledetError(f"{flag}: image {name[:120]} not found (looked for {tried[:400]})")


class _Writer:
    """Where output images go: a COCO/LVIS JSON assembled from streamed parts, or a YOLO dataset."""

    def __init__(self, to: Path, space: OutputSpace, fmt: str, image_dirs: dict[str, Path], compact: bool,
                 global_ids: list[str], category_synonyms: list[list[str]]) -> None:
        from .io.temporaries import temporary_file_name

        self.to, self.space, self.fmt, self.compact = to, space, fmt, compact
        self.space_ids, self.space_synonyms = global_ids, category_synonyms
        self.category_facts: dict[int, dict] = {}
        self.image_dirs = image_dirs
        self.image_count = np.zeros(len(space.names), dtype=np.int64)
        self.next_image, self.next_box = 1, 1
        self.parts = [temporary_file_name(to / "images.json"), temporary_file_name(to / "annotations.json")]
        self.handles = [open(p, "w", encoding="utf-8") for p in self.parts] if fmt == "coco" else []
        self.links: set[Path] = set()
        self.made = MadePaths(to)  # links and folders this run made: removed again if it fails

    def path_of(self, source: str, file_name: str, coco_url: str | None) -> tuple[str, str | None]:
        """(file_name, coco_url): with --images, the link under ``images/KEY/`` (one folder per source, so
        detectron2's ``coco_url``-based path resolves with image_root ``DIR/images/``)."""
        if source not in self.image_dirs:
            return file_name, coco_url
        flat = file_name.replace("/", "__")
        link = self.to / "images" / source / flat
        if link not in self.links:
            target = source_image(self.image_dirs[source], file_name, coco_url, self.to,
                                  f"--images {source}={self.image_dirs[source]}")
            self.made.make_dirs(link.parent)
            if link.is_symlink():
                link.unlink()
            elif link.exists():
                raise ScaledetError(f"{link}: exists and is not a link that unify made; move it away and run again")
            os.symlink(target, link)
            self.made.add(link)
            self.links.add(link)
        return f"images/{source}/{flat}", f"images/{source}/{flat}"

    def write_block(self, block: ImageBlock) -> int:
        """Write a block of images and their boxes; the number of boxes written."""
        if not block.size:
            return 0
        paths = [self.path_of(sources[0], name, url)
                 for sources, name, url in zip(block.sources, block.file_names, block.coco_urls)]
        categories = len(self.space.names)
        boxed = boxed_categories(block, categories)
        self.image_count += boxed.sum(axis=0)
        if self.fmt == "yolo":
            for row, (file_name, _) in enumerate(paths):
                self._write_yolo(block, row, file_name)
        else:
            states = block_compact_states(block) if self.compact else block.states
            negatives, partial = block_state_lists(block_category_states(states, self.space.category_of, categories),
                                                   boxed)
            images, annotations = self.handles
            images.write(("," if self.next_image > 1 else "")
                         + image_records(block, self.next_image, paths, negatives, partial))
            if len(block.labels):
                annotations.write(("," if self.next_box > 1 else "")
                                  + annotation_records(block, self.next_image, self.next_box).decode("ascii"))
        self.next_image += block.size
        self.next_box += len(block.labels)
        return len(block.labels)

    def _write_yolo(self, block: ImageBlock, row: int, file_name: str) -> None:
        label = self.to / "labels" / Path(file_name).relative_to("images").with_suffix(".txt")
        self.made.make_dirs(label.parent)
        start, stop = int(block.box_offsets[row]), int(block.box_offsets[row + 1])
        width, height = int(block.widths[row]), int(block.heights[row])
        lines = [f"{c} {(x + w / 2) / width:.6f} {(y + h / 2) / height:.6f} {w / width:.6f} {h / height:.6f}\n"
                 for (x, y, w, h), c, crowd in zip(block.boxes[start:stop].tolist(),
                                                   block.categories[start:stop].tolist(),
                                                   block.crowd[start:stop].tolist())
                 if not crowd]
        label.write_text("".join(lines), encoding="utf-8")
        self.made.add(label)

    def categories(self) -> list[dict]:
        """The category records: source facts where an LVIS source gave them, computed values elsewhere."""
        records = []
        for c, name in enumerate(self.space.names):
            facts = next((self.category_facts[j] for j in self.space.members[c] if j in self.category_facts), {})
            count = int(self.image_count[c])
            record = {"id": c + 1, "name": name, "labels": [self.space_ids[j] for j in self.space.members[c]],
                      "synonyms": self.space_synonyms[c], "image_count": count,
                      "frequency": "r" if count <= RARE_MAX else "c" if count <= COMMON_MAX else "f"}
            record.update(facts)
            records.append(record)
        return records

    def finish(self, meta: dict, staged) -> None:
        """Stage the dataset's index file (``data.yaml`` or ``unified.json``): ``staged`` (an
        :class:`~.io.atomic.StagedFiles`) renames it into place with the run's other files."""
        if self.fmt == "yolo":
            names = "".join(f"  {c}: {json.dumps(n, ensure_ascii=False)}\n" for c, n in enumerate(self.space.names))
            staged.write_text(self.to / "data.yaml", f"path: {json.dumps(str(self.to.resolve()))}\n"
                              f"train: images\nval: images\nnames:\n{names}")
            return
        for handle in self.handles:
            handle.close()

        def assemble(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8") as out:
                out.write('{"info":' + json.dumps({"description": "scaledet-labels unify"}) + ',"images":[')
                with open(self.parts[0], encoding="utf-8") as part:
                    shutil.copyfileobj(part, out)
                out.write('],"annotations":[')
                with open(self.parts[1], encoding="utf-8") as part:
                    shutil.copyfileobj(part, out)
                out.write('],"categories":' + json.dumps(self.categories(), ensure_ascii=False))
                out.write(',"scaledet":' + json.dumps(meta, ensure_ascii=False) + "}\n")

        try:
            staged.write(self.to / UNIFIED_FILE, assemble)
        finally:
            self.discard()

    def discard(self) -> None:
        for handle in self.handles:
            try:
                handle.close()
            except OSError:
                pass  # a full disk fails the last flush too; the part is removed below either way
        for part in self.parts:
            part.unlink(missing_ok=True)

    def undo(self) -> None:
        """A failed run: remove the links, label files and folders it made, newest first."""
        self.discard()
        self.made.undo()


def category_synonyms(space: OutputSpace, names: list[str], synonyms: list) -> list[list[str]]:
    """Each category's texts in order: each member's name, then its synonyms (no repeats)."""
    result = []
    for members in space.members:
        texts = [text for j in members for text in (names[j], *(synonyms[j] if synonyms[j] is not None else ()))]
        result.append(list(dict.fromkeys(texts)))
    return result


def partial_classes(space: OutputSpace, coverages: dict[str, DatasetCoverage]) -> list[str]:
    """Categories some source cannot vouch for on all its images: it does not annotate them exhaustively
    (LVIS, OpenImages) or does not cover their concept at all."""
    partial = []
    for c, members in enumerate(space.members):
        for coverage in coverages.values():
            covered = any(coverage.follow[j] >= 0 for j in members)
            if not covered or coverage.protocol != EXHAUSTIVE:
                partial.append(space.names[c])
                break
    return partial


def unify(build: Path, sources: list[tuple[str, Path]], image_dirs: dict[str, Path], to: Path,
          space_name: str = "union", fmt: str = "coco", compact: bool = False,
          merge: str | Path | None = "auto", say: Callable[[str], None] = lambda text: None) -> UnifyReport:
    from .outputs import LabelSpaceOutput

    output = LabelSpaceOutput.load(build, with_embeddings=False)
    relations = relations_for_build(output, merge)
    keys = [key for key, _ in sources]
    for key in keys:
        if key not in relations.datasets:
            raise ScaledetError(f"--annotations {key}=…: {key!r} is not a dataset of {build} "
                                f"(it has {', '.join(relations.datasets)})")
    if len(set(keys)) != len(keys):
        raise ScaledetError("--annotations: each dataset key once")
    for key in image_dirs:
        if key not in keys:
            raise ScaledetError(f"--images {key}=…: no --annotations for {key!r}")
    if fmt == "yolo" and set(image_dirs) != set(keys):
        raise ScaledetError("--format yolo needs --images KEY=DIR for every source (labels sit beside linked images)")
    if space_name == "concepts" and relations.merge_file is None:
        raise ScaledetError(f"--space concepts: {build} has no merge/merged.parquet; run 'scaledet-labels merge' "
                            "first or give --merge")
    label_names = output.labels.column("name").to_pylist()
    names = label_names
    if space_name == "concepts":
        from .merge_io import load_concepts

        names = [name for _, name in load_concepts(Path(relations.merge_file), output)]
    space = output_space(output, relations, keys, space_name, names)
    qualifiers = label_qualifiers(output)
    local_ids = output.labels.column("local_id").to_pylist()
    firsts = [m[0] for m in space.members]
    space.names = unique_names([space.names[c] for c in range(len(firsts))], [qualifiers[j] for j in firsts],
                               [relations.datasets[relations.dataset_of[j]] for j in firsts],
                               [str(local_ids[j]) for j in firsts])
    shared = _shared_image_keys(sources)
    if relations.merge_file is not None:
        from .merge_io import load_concepts

        per_label = [name for _, name in load_concepts(Path(relations.merge_file), output)]
    else:
        per_label = relations.global_ids
    counter = CoverageCounter(relations, concept_names(relations, per_label))
    writer = _Writer(to, space, fmt, image_dirs, compact, relations.global_ids,
                     category_synonyms(space, label_names, output.labels.column("synonyms").to_pylist()))
    report, held, coverages, conflicts = UnifyReport(), {}, {}, []
    lookup = LabelLookup(output)
    from .io.atomic import StagedFiles

    staged = StagedFiles()
    per_block = images_per_block(len(relations.global_ids))
    try:
        for key, path in sources:
            say(f"reading {key}: {path}")
            data = read_source(key, path, lookup)
            coverage = relations.coverage(key, data.protocol)
            coverages[key] = coverage
            counter.start(key)
            counter.add_boxes(key, data.labels.astype(np.int64))
            for label, facts in data.category_facts.items():
                writer.category_facts.setdefault(label, facts)
            for start in range(0, data.num_images, per_block):
                block = _source_block(data, start, min(start + per_block, data.num_images), coverage, space)
                counter.add_block(key, block.states)
                names = [data.image_key(image) for image in range(start, start + block.size)] if shared else []
                held_rows = [row for row, name in enumerate(names) if hash(name) in shared]
                for row in held_rows:
                    name, item = names[row], _image_of(block, row, coverage)
                    if name not in held:
                        held[name] = item
                        continue
                    merged, dropped, disagreements = merge_images(held[name], item)
                    held[name] = merged
                    report.duplicates += dropped
                    if disagreements:
                        report.conflicts += disagreements
                        if len(conflicts) < CONFLICTS_LISTED:
                            conflicts.append((name, "+".join(merged.sources), disagreements))
                if held_rows:
                    block = block.take(np.setdiff1d(np.arange(block.size), held_rows))
                report.boxes += writer.write_block(block)
                report.images += block.size
            del data
        waiting = list(held.values())
        for start in range(0, len(waiting), per_block):
            report.boxes += writer.write_block(_images_block(waiting[start:start + per_block]))
        report.images += len(waiting)
        report.shared_images += sum(len(item.sources) > 1 for item in waiting)
        meta = {"format": UNIFY_FORMAT, "build": str(Path(build).resolve()), "space": space_name,
                "merge_file": relations.merge_file, "merge_sha256": relations.merge_sha256,
                "explicit_negatives": not compact,
                "sources": {key: {"path": str(path), "protocol": coverages[key].protocol} for key, path in sources},
                "images": report.images, "boxes": report.boxes, "duplicate_boxes_dropped": report.duplicates,
                "state_conflicts": report.conflicts}
        writer.finish(meta, staged)
        if conflicts:
            buffer = io.StringIO()
            rows = [(csv_cell(name), csv_cell(sources), count) for name, sources, count in conflicts]
            csv.writer(buffer, lineterminator="\n").writerows([("image", "sources", "categories in conflict"), *rows])
            staged.write_text(to / "conflicts.csv", buffer.getvalue())
        staged.write_text(to / COVERAGE_FILE, counter.csv_text())
        report.partial_classes = partial_classes(space, coverages)
        if fmt == "yolo":
            staged.write_text(to / "partial_classes.txt", "".join(f"{name}\n" for name in report.partial_classes))
        report.written = staged.commit()  # all files at once: a failure before leaves an earlier run's files
    except BaseException as err:
        staged.discard()
        writer.undo()
        if isinstance(err, OSError) and err.filename is None:  # a write to a part file: say which output
            raise OutputError(f"{to / UNIFIED_FILE}: cannot be written ({os_error_words(err)}); nothing of this "
                              "run is left") from None
        raise
    return report


def _source_block(data: SourceData, start: int, stop: int, coverage: DatasetCoverage,
                  space: OutputSpace) -> ImageBlock:
    """Images ``start:stop`` of one source as a block, with that source's label states."""
    first, last = int(data.first_box[start]), int(data.first_box[stop - 1] + data.box_count[stop - 1])
    box_offsets = np.concatenate([data.first_box[start:stop], [last]]).astype(np.int64) - first
    labels = data.labels[first:last].astype(np.int64)
    lists = {}
    for list_field, (offsets, values) in data.lists.items():
        lists[list_field] = (offsets[start:stop + 1] - offsets[start],
                             values[offsets[start]:offsets[stop]].astype(np.int64))
    states = coverage.block_states((box_offsets, labels), lists["neg_category_ids"],
                                   lists["not_exhaustive_category_ids"], lists["pos_category_ids"])
    return ImageBlock([[data.key]] * (stop - start), data.file_names[start:stop], data.coco_urls[start:stop],
                      data.widths[start:stop], data.heights[start:stop], box_offsets, data.boxes[first:last],
                      labels, space.category_of[labels], data.crowd[first:last], lists, states)


def _image_of(block: ImageBlock, row: int, coverage: DatasetCoverage) -> _Image:
    """One image of a one-source block, held until the other sources that annotate it are read."""
    start, stop = int(block.box_offsets[row]), int(block.box_offsets[row + 1])
    labels = block.labels[start:stop]
    lists = {f: values[offsets[row]:offsets[row + 1]] for f, (offsets, values) in block.lists.items()}
    return _Image(list(block.sources[row]), [coverage], block.file_names[row], block.coco_urls[row],
                  int(block.widths[row]), int(block.heights[row]), block.boxes[start:stop].copy(), labels,
                  block.categories[start:stop], coverage.relations.concept[labels], block.crowd[start:stop].copy(),
                  lists, block.states[row].copy())


def _images_block(images: list[_Image]) -> ImageBlock:
    """Held images (combined where sources share them) as one block, each with its combined states."""
    def concatenated(arrays: list[np.ndarray], dtype, shape=(0,)) -> np.ndarray:
        return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(shape, dtype=dtype)

    lists = {f: (offsets_of(np.array([len(image.lists[f]) for image in images], dtype=np.int64)),
                 concatenated([image.lists[f] for image in images], np.int64)) for f in LIST_FIELDS}
    return ImageBlock([image.sources for image in images], [image.file_name for image in images],
                      [image.coco_url for image in images], np.array([image.width for image in images]),
                      np.array([image.height for image in images]),
                      offsets_of(np.array([len(image.labels) for image in images], dtype=np.int64)),
                      concatenated([image.boxes for image in images], np.float32, (0, 4)),
                      concatenated([image.labels for image in images], np.int64),
                      concatenated([image.categories for image in images], np.int64),
                      concatenated([image.crowd for image in images], np.uint8),
                      lists, np.stack([image.label_states() for image in images]))


def _shared_image_keys(sources: list[tuple[str, Path]]) -> set[int]:
    """``hash()`` of the names of images that more than one source annotates, read from the image lists
    alone. 64-bit hashes in NumPy arrays, not a dict of every name: a few bytes per image at any scale (a
    collision only makes an image wait for the end, never merges two)."""
    from array import array

    from .io.text_files import stream_json_items

    per_source = []
    for key, path in sources:
        hashes = array("q")
        if path.is_dir():
            hashes.extend(hash(image_key(p.name, None)) for p in (path / "labels").rglob("*.txt"))
        else:
            hashes.extend(hash(image_key(i.get("file_name"), i.get("coco_url")) if isinstance(i, dict) else "")
                          for i in stream_json_items(path, "images.item", ScaledetError, "malformed or truncated JSON"))
        per_source.append(np.unique(np.frombuffer(hashes, dtype=np.int64)) if hashes else np.zeros(0, np.int64))
    if len(per_source) < 2:
        return set()
    everything = np.sort(np.concatenate(per_source))
    return set(everything[1:][everything[1:] == everything[:-1]].tolist())


def complete_label_lists(document: dict, say: Callable[[str], None] = lambda text: None) -> dict:
    """A ``--compact`` unified document with its per-image lists made explicit, as ``unify`` writes them by
    default: each image's states from its ``sources``' protocols (``scaledet.sources``) and the build the
    file was made from. Any other document is returned as it is. Evaluation calls this, so that a compact
    file scores as its explicit twin does."""
    meta = document.get("scaledet") if isinstance(document, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != UNIFY_FORMAT or meta.get("explicit_negatives", True):
        return document
    from .outputs import LabelSpaceOutput

    build = Path(str(meta.get("build")))
    try:
        output = LabelSpaceOutput.load(build, with_embeddings=False)
    except (ScaledetError, OSError) as error:
        raise ScaledetError(f"a compact unified file (made with --compact) names its negatives through the build "
                            f"it was made from, {build}, which cannot be read ({str(error)[:160]}); unify "
                            "again without --compact") from None
    merge = meta.get("merge_file")
    relations = relations_for_build(output, Path(merge) if merge else None)
    index_of = {g: i for i, g in enumerate(relations.global_ids)}
    categories = document["categories"]
    category_of = np.full(len(relations.global_ids), -1, dtype=np.int64)
    members = []
    for position, category in enumerate(categories):
        labels = [index_of[g] for g in category.get("labels", ()) if g in index_of]
        if not labels or category["id"] != position + 1:
            raise ScaledetError(f"unified file: category {category.get('id')} does not match its build {build}")
        category_of[labels] = position
        members.append(np.asarray(labels, dtype=np.int64))
    space = OutputSpace([c["name"] for c in categories], [m.tolist() for m in members], category_of)
    coverages = {key: relations.coverage(key, value["protocol"]) for key, value in meta["sources"].items()}
    boxed_of: dict[int, set[int]] = {}
    for annotation in document["annotations"]:
        boxed_of.setdefault(annotation["image_id"], set()).add(annotation["category_id"] - 1)

    def union_labels(category_ids) -> np.ndarray:
        found = [members[c - 1] for c in category_ids]
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)

    say("a compact unified file: its lists are completed from scaledet.sources and the build")
    images = []
    for image in document["images"]:
        boxed = np.asarray(sorted(boxed_of.get(image["id"], ())), dtype=np.int64)
        annotated = union_labels((boxed + 1).tolist())
        # a compact file writes a source's present-but-unboxed labels (OpenImages' verified present) as not
        # exhaustive: without a box they are read back as verified present
        not_exhaustive = union_labels(image.get("not_exhaustive_category_ids", ()))
        lists = {"neg_category_ids": union_labels(image.get("neg_category_ids", ())),
                 "not_exhaustive_category_ids": np.intersect1d(not_exhaustive, annotated),
                 "pos_category_ids": np.setdiff1d(not_exhaustive, annotated)}
        states = image_states([coverages[s] for s in image["sources"]], annotated, lists)
        negatives, partial = state_lists(category_states(states, space), boxed)
        images.append({**image, "neg_category_ids": negatives, "not_exhaustive_category_ids": partial})
    return {**document, "images": images, "scaledet": {**meta, "explicit_negatives": True, "completed_from": "sources"}}
