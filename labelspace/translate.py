"""One dataset's labels in another dataset's words: ``scaledet-labels translate``.

Other tools ask their users for a hand-written class dictionary to remap results between taxonomies. A
build already holds that mapping: its concepts (``merge``, with the decisions of an edited ``review.csv``
applied) and its hierarchy, lifted through concepts (:mod:`.label_states`). For each label of the source
dataset, the target gets:

* ``same concept``: the target's label of the label's concept (``coco/car`` ↔ ``oid/Car``);
* ``coarser``: where the target has no label of the concept, its label of the nearest ancestor concept,
  walked one hierarchy step at a time (``oid/Limousine`` → ``oid/Car`` ≡ ``coco/car``);
* ``unmapped``: neither. Its boxes are dropped and counted.

A finer target label is never used: a ``car`` box does not say which kind of car.

Annotation files keep their images, annotations and every field of theirs; category ids are rewritten and
each image's label lists are written for the target from what the source says of the image
(:func:`~.label_states.DatasetCoverage.states`): a target label is negative where the source's protocol
makes its concept (or an ancestor of it) absent, not exhaustive where it is present but not every instance
of it is boxed (a coarser label filled only from its finer boxes). So the LVIS API, faster-coco-eval and
``scaledet eval`` score the translated file by what the source actually annotated, as they score a
``unify`` output.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .box_overlap import iou_matrix
from .io.errors import ScaledetError
from .label_states import POSITIVE, LabelRelations, relations_for_build
from .unify import OutputSpace, category_states, state_lists

SAME, COARSER, UNMAPPED = "same concept", "coarser", "unmapped"
TRANSLATION_FILE = "translation.csv"
TRANSLATION_COLUMNS = ("from", "to", "how", "boxes")
#: the ``info`` of a translated annotation file: how translate recognises its own earlier output
TRANSLATED_INFO = {"description": "scaledet-labels translate"}
#: the two inputs, told apart by shape: a results file is a bare list (so a translated one is recognised as
#: translate's own by the translation.csv beside it), an annotation file an object
RESULTS, ANNOTATIONS = "results", "annotations"


@dataclass
class Translator:
    """The mapping of every source label of a build to a target label (``-1`` unmapped), with how."""

    relations: LabelRelations
    source: str
    target: str
    target_labels: np.ndarray          # union indices of the target dataset's labels, in build order
    target_of: np.ndarray              # union index → union index of its target label, -1 when none
    how: dict[int, str]                # source union index → SAME / COARSER / UNMAPPED
    category_ids: np.ndarray           # union index of a target label → its category id in the output
    boxes: dict[int, int] = field(default_factory=dict)  # source union index → boxes translated (or dropped)
    #: detections dropped as another source label's detection of the same object under one target label
    duplicates: int = 0

    def rows(self) -> list[tuple[str, str, str, int]]:
        """``translation.csv``: one row per source label, in build order."""
        ids = self.relations.global_ids
        return [(ids[j], ids[self.target_of[j]] if self.target_of[j] >= 0 else "", how, self.boxes.get(j, 0))
                for j, how in self.how.items()]

    def counts(self) -> dict[str, int]:
        """Boxes (or detections) by how they were translated."""
        totals = {SAME: 0, COARSER: 0, UNMAPPED: 0}
        for j, count in self.boxes.items():
            totals[self.how[j]] += count
        return totals

    def output_space(self) -> OutputSpace:
        """The target's labels as the categories of a translated annotation file: one per label, and only
        the target's own labels speak for their state (a finer source label's negative says nothing of the
        coarser target label it is mapped to)."""
        category_of = np.full(len(self.relations.global_ids), -1, dtype=np.int64)
        category_of[self.target_labels] = np.arange(len(self.target_labels))
        return OutputSpace([self.relations.global_ids[j] for j in self.target_labels],
                           [[int(j)] for j in self.target_labels], category_of)


def _nearest_target(concept: int, parents: list[set[int]], target_members: dict[int, int]) -> int:
    """The target label of the nearest ancestor concept that has one (breadth first, one hierarchy step
    at a time; among ancestors at one distance, the target label that comes first in the build), or -1."""
    seen, frontier = {concept}, parents[concept]
    while frontier:
        found = [target_members[c] for c in frontier if c in target_members]
        if found:
            return min(found)
        seen |= frontier
        frontier = {p for c in frontier for p in parents[c]} - seen
    return -1


def output_category_ids(local_ids: list[str]) -> np.ndarray:
    """The target's own category ids where they are numbers (COCO, LVIS, Objects365); otherwise (OpenImages
    names classes by MID) 1 … K in build order, with the MID kept in each category's ``mid``."""
    if all(local.isdigit() for local in local_ids):
        return np.asarray([int(local) for local in local_ids], dtype=np.int64)
    return np.arange(1, len(local_ids) + 1, dtype=np.int64)


def make_translator(output, source: str, target: str, merge: str | Path | None = "auto") -> Translator:
    """The translation of ``source``'s labels into ``target``'s through the build's concepts and hierarchy."""
    relations = relations_for_build(output, merge)
    for flag, key in (("--from", source), ("--to", target)):
        if key not in relations.datasets:
            raise ScaledetError(f"{flag} {key}: not a dataset of {output.directory} (it has "
                                f"{', '.join(relations.datasets)})")
    if source == target:
        raise ScaledetError(f"--from and --to are both {source}; name two datasets")
    if relations.merge_file is None:
        raise ScaledetError(f"{output.directory}: no concept merges (merge/merged.parquet); run 'scaledet-labels "
                            f"merge --labelspace {output.directory}' first, so labels of one concept map onto "
                            "each other")
    source_labels = np.flatnonzero(relations.dataset_of == relations.datasets.index(source))
    target_labels = np.flatnonzero(relations.dataset_of == relations.datasets.index(target))
    target_members: dict[int, int] = {}
    for j in target_labels:
        target_members.setdefault(int(relations.concept[j]), int(j))
    target_of = np.full(len(relations.global_ids), -1, dtype=np.int64)
    target_of[target_labels] = target_labels
    how: dict[int, str] = {}
    for j in source_labels:
        concept = int(relations.concept[j])
        if concept in target_members:
            target_of[j], how[int(j)] = target_members[concept], SAME
            continue
        nearest = _nearest_target(concept, relations.parent_concepts, target_members)
        target_of[j], how[int(j)] = nearest, COARSER if nearest >= 0 else UNMAPPED
    local_ids = output.labels.column("local_id").to_pylist()
    category_ids = np.zeros(len(relations.global_ids), dtype=np.int64)
    category_ids[target_labels] = output_category_ids([local_ids[j] for j in target_labels])
    return Translator(relations, source, target, target_labels, target_of, how, category_ids)


def input_kind(path: Path) -> str:
    """``results`` (a JSON list of detections) or ``annotations`` (an object with ``images``), from the
    file's first byte that is not white space."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError as err:
        raise ScaledetError(f"{path}: cannot be read ({err.strerror})") from None
    if head[:1] == b"[":
        return RESULTS
    if head[:1] == b"{":
        return ANNOTATIONS
    raise ScaledetError(f"{path}: neither a COCO results file (a JSON list) nor an annotation file (a JSON object)")


def source_category_ids(translator: Translator, output) -> tuple[list[int], list[int]]:
    """(the source's union indices in build order, the ``category_id`` a results file gives each): the
    source's own ids where they are numbers, else 1 … K in build order (as :func:`output_category_ids`
    numbers a target)."""
    local_ids = output.labels.column("local_id").to_pylist()
    source_labels = list(translator.how)
    return source_labels, output_category_ids([local_ids[j] for j in source_labels]).tolist()


def source_category_lookup(translator: Translator, output) -> dict[int, int]:
    """A results file's ``category_id`` → source union index (:func:`source_category_ids`)."""
    labels, ids = source_category_ids(translator, output)
    return dict(zip(ids, labels))


def _detections(path: Path) -> Iterator[dict]:
    from .io.text_files import stream_json_items

    for position, detection in enumerate(stream_json_items(path, "item", ScaledetError, "malformed or truncated JSON")):
        if not isinstance(detection, dict) or "category_id" not in detection:
            raise ScaledetError(f"{path}: results[{position}] is not a detection with a 'category_id'")
        yield detection


def translate_results(translator: Translator, output, path: Path, write: Callable[[str], None]) -> int:
    """Stream a COCO results file, rewriting ``category_id``; unmapped detections are dropped. Returns the
    number of detections written."""
    written = 0
    for detection in translated_detections(translator, output, _detections(path), str(path)):
        write(("," if written else "") + json.dumps(detection, separators=(",", ":")))
        written += 1
    return written


def target_categories(translator: Translator, output) -> list[dict]:
    """The target dataset's category records from the build: its ids and names, and where the build has
    them LVIS's ``synset``, ``synonyms`` (LVIS's order) and ``frequency``, OpenImages' ``mid``."""
    columns = output.labels.select(["local_id", "name", "synonyms", "synset", "frequency", "supercategory"]).to_pylist()
    records = []
    for j in translator.target_labels:
        row = columns[j]
        record = {"id": int(translator.category_ids[j]), "name": row["name"]}
        if not row["local_id"].isdigit():
            record["mid"] = row["local_id"]
        for key in ("supercategory", "synset", "frequency"):
            if row[key]:
                record[key] = row[key]
        if row["synonyms"]:
            record["synonyms"] = list(row["synonyms"])
        records.append(record)
    return records


def translate_annotations(translator: Translator, output, path: Path, write: Callable[[str], None]) -> tuple[int, int]:
    """Stream an annotation file into the target's categories: (images, boxes) written."""
    from .io.text_files import stream_json_items
    from .unify_sources import LabelLookup, read_source

    lookup = LabelLookup(output)
    data = read_source(translator.source, path, lookup)  # every record checked as unify checks it
    coverage = translator.relations.coverage(translator.source, data.protocol)
    space = translator.output_space()
    ids = translator.category_ids[translator.target_labels]
    had_positive_lists = "pos_category_ids" in data.lists and len(data.lists["pos_category_ids"][1]) > 0
    # the arrays above hold what the states need; the file is streamed again to keep every field it has
    union_of = {}
    for category in stream_json_items(path, "categories.item", ScaledetError, "malformed or truncated JSON"):
        union_of[category["id"]] = lookup.index(translator.source, str(category.get("mid") or category["id"]),
                                                category["name"], str(path))
    write('{"info":' + json.dumps(TRANSLATED_INFO) + ',"images":[')
    for image, record in enumerate(stream_json_items(path, "images.item", ScaledetError, "malformed JSON")):
        start, count = int(data.first_box[image]), int(data.box_count[image])
        labels = data.labels[start:start + count].astype(np.int64)
        states = coverage.states(labels, negatives=data.image_list("neg_category_ids", image),
                                 not_exhaustive=data.image_list("not_exhaustive_category_ids", image),
                                 verified_present=data.image_list("pos_category_ids", image))
        mapped = translator.target_of[labels]
        boxed = np.unique(space.category_of[mapped[mapped >= 0]])
        category_state = category_states(states, space)
        negatives, partial = state_lists(category_state, boxed)
        fields = {"neg_category_ids": ids[np.asarray(negatives, dtype=np.int64) - 1].tolist(),
                  "not_exhaustive_category_ids": ids[np.asarray(partial, dtype=np.int64) - 1].tolist()}
        if had_positive_lists:
            present = np.setdiff1d(np.flatnonzero(category_state >= POSITIVE), boxed)
            fields["pos_category_ids"] = ids[present].tolist()
        write(("," if image else "") + json.dumps({**record, **fields}, separators=(",", ":"), ensure_ascii=False))
    write('],"annotations":[')
    boxes = 0
    for annotation in stream_json_items(path, "annotations.item", ScaledetError, "malformed JSON"):
        label = union_of[annotation["category_id"]]
        translator.boxes[label] = translator.boxes.get(label, 0) + 1
        target = translator.target_of[label]
        if target < 0:
            continue
        write(("," if boxes else "") + json.dumps({**annotation, "category_id": int(translator.category_ids[target])},
                                                  separators=(",", ":"), ensure_ascii=False))
        boxes += 1
    meta = {"from": translator.source, "to": translator.target, "build": str(Path(output.directory).resolve()),
            "merge_file": translator.relations.merge_file, "merge_sha256": translator.relations.merge_sha256,
            "source": str(path), "source_protocol": data.protocol}
    write('],"categories":' + json.dumps(target_categories(translator, output), ensure_ascii=False)
          + ',"scaledet_translation":' + json.dumps(meta, ensure_ascii=False) + "}\n")
    return data.num_images, boxes


def translation_csv(translator: Translator) -> str:
    from .io.text_files import csv_cell

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TRANSLATION_COLUMNS)
    writer.writerows((csv_cell(a), csv_cell(b), how, count) for a, b, how, count in translator.rows())
    return buffer.getvalue()


def _is_translation_csv(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.readline().strip() == ",".join(TRANSLATION_COLUMNS)
    except OSError:
        return False


def _is_translated(path: Path) -> bool:
    """An earlier translate output: an annotation file opening with translate's ``info``, or a results list
    with translate's ``translation.csv`` beside it."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(256).decode("utf-8", errors="replace")
    except OSError:
        return False
    if head.startswith('{"info":' + json.dumps(TRANSLATED_INFO)):
        return True
    return head.startswith("[") and _is_translation_csv(path.parent / TRANSLATION_FILE)


def check_translate_out(out: Path, source: Path, force: bool) -> None:
    """``--out`` is new or an earlier translate output, never the input; ``translation.csv`` beside it is
    new or translate's own. Anything else only with ``--force``."""
    from .io.output_dirs import refuse_unsafe_output

    refuse_unsafe_output(out, "--out")
    if out.is_dir():
        raise ScaledetError(f"--out {out}: is a directory; give the file to write")
    if out.exists() and source.exists() and out.resolve() == source.resolve():
        raise ScaledetError(f"--out {out}: is the input itself; an output never replaces its input, even with "
                            "--force; name another file")
    table = out.parent / TRANSLATION_FILE
    if force:
        return
    if out.exists() and not _is_translated(out):
        raise ScaledetError(f"--out {out}: exists and was not written by translate; choose another file or add --force")
    if table.exists() and not _is_translation_csv(table):
        raise ScaledetError(f"--out {out}: {table} beside it exists and was not written by translate; choose "
                            "another folder or add --force")


@dataclass
class TranslateReport:
    kind: str
    items: int
    written: int
    counts: dict[str, int]
    unmapped_labels: list[str]
    paths: list[Path]
    duplicates: int = 0  # detections dropped: another source label's of the same object and target label


def translate_file(build: Path, source: str, target: str, path: Path, out: Path,
                   merge: str | Path | None = "auto") -> TranslateReport:
    """Translate ``path`` (results or annotations, recognised by shape) into ``out`` and write
    ``translation.csv`` beside it; both appear whole or not at all."""
    from .io.atomic import StagedFiles
    from .outputs import LabelSpaceOutput

    if not path.is_file():
        raise ScaledetError(f"{path}: not found")
    output = LabelSpaceOutput.load(build, with_embeddings=False)
    translator = make_translator(output, source, target, merge)
    kind = input_kind(path)
    counted: dict[str, int] = {}

    def produce(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            if kind == RESULTS:
                handle.write("[")
                counted["written"] = translate_results(translator, output, path, handle.write)
                handle.write("]\n")
                counted["items"] = sum(translator.boxes.values())
            else:
                counted["items"], counted["written"] = translate_annotations(translator, output, path, handle.write)

    out.parent.mkdir(parents=True, exist_ok=True)
    staged = StagedFiles()
    try:
        staged.write(out, produce)
        staged.write_text(out.parent / TRANSLATION_FILE, translation_csv(translator))
        written = staged.commit()
    finally:
        staged.discard()
    unmapped = sorted(translator.relations.global_ids[j] for j, count in translator.boxes.items()
                      if count and translator.how[j] == UNMAPPED)
    return TranslateReport(kind, counted["items"], counted["written"], translator.counts(), unmapped, written,
                           translator.duplicates)


def translated_detections(translator: Translator, output, detections, where: str) -> Iterator[dict]:
    """Detections in the source's ids → the target's, unmapped ones left out (counted in the translator).

    Two source labels that become one target label (``car`` and ``truck`` → ``vehicle``) can name one object
    twice; a target evaluator would count the second as a false positive. Within each image (detections
    of one image come together, as detectors write them), a detection is dropped when a better-scored one
    from *another* source label has the same target label and IoU ≥ ``DUPLICATE_IOU``; detections of one
    source label are left as the detector's own NMS left them."""
    lookup = source_category_lookup(translator, output)
    group: list[tuple[dict, int]] = []
    for detection in detections:
        category = detection.get("category_id")
        label = lookup.get(category) if isinstance(category, int) and not isinstance(category, bool) else None
        if label is None:
            raise ScaledetError(f"{where}: category_id {str(category)[:20]} is not a category of {translator.source}")
        translator.boxes[label] = translator.boxes.get(label, 0) + 1
        target = translator.target_of[label]
        if target < 0:
            continue
        if group and group[0][0].get("image_id") != detection.get("image_id"):
            yield from _without_cross_label_duplicates(translator, group)
            group = []
        group.append(({**detection, "category_id": int(translator.category_ids[target])}, label))
    yield from _without_cross_label_duplicates(translator, group)


DUPLICATE_IOU = 0.5


def _box(detection: dict) -> list[float] | None:
    box = detection.get("bbox")
    if isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box) and box[2] > 0 \
            and box[3] > 0:
        return [float(v) for v in box]
    return None


def _without_cross_label_duplicates(translator: Translator, group: list[tuple[dict, int]]) -> Iterator[dict]:
    """One image's translated detections in their order, less those another source label already gave."""
    by_target: dict[int, list[int]] = {}
    for position, (detection, _) in enumerate(group):
        by_target.setdefault(detection["category_id"], []).append(position)
    dropped: set[int] = set()
    for positions in by_target.values():
        if len({group[p][1] for p in positions}) < 2:
            continue  # one source label: nothing to merge
        boxes = {p: box for p in positions if (box := _box(group[p][0])) is not None}
        row = {p: i for i, p in enumerate(boxes)}
        boxed = np.asarray(list(boxes.values()), dtype=np.float64).reshape(-1, 4)
        overlap = iou_matrix(boxed, boxed)
        kept: list[int] = []
        for p in sorted(positions, key=lambda q: -float(group[q][0].get("score") or 0.0)):
            if p in row and any(group[k][1] != group[p][1] and k in row and overlap[row[p], row[k]] >= DUPLICATE_IOU
                                for k in kept):
                dropped.add(p)
                continue
            kept.append(p)
    translator.duplicates += len(dropped)
    for position, (detection, _) in enumerate(group):
        if position not in dropped:
            yield detection


def dataset_of_categories(output, categories: list[dict], where: str) -> str:
    """The build's dataset whose labels are exactly what ``categories`` (an annotation file's) name: the
    vocabulary a cross-taxonomy evaluation scores in, when ``--to`` is not given."""
    from .unify_sources import LabelLookup

    lookup = LabelLookup(output)
    matching = []
    for dataset in output.datasets:
        try:
            for category in categories:
                lookup.index(dataset, str(category.get("mid") or category.get("id")), str(category.get("name")), where)
        except ScaledetError:
            continue
        matching.append(dataset)
    if len(matching) != 1:
        found = f"it matches {', '.join(matching)}" if matching else "no dataset of the build names all its categories"
        raise ScaledetError(f"{where}: which dataset's vocabulary this is cannot be told ({found}); give --to KEY")
    return matching[0]


def retarget(translator: Translator, output, categories: list[dict], where: str) -> None:
    """Translate into an annotation file's own category ids: each of ``categories`` is found among the
    target's labels by id and name; a source label whose target label the file does not have becomes
    unmapped (a subset of a dataset's categories, an ODinW split, is scored only on what it has)."""
    from .unify_sources import LabelLookup

    lookup = LabelLookup(output)
    ids = np.zeros(len(translator.relations.global_ids), dtype=np.int64)
    for category in categories:
        label = lookup.index(translator.target, str(category.get("mid") or category.get("id")),
                             str(category.get("name")), where)
        ids[label] = int(category["id"])
    translator.category_ids = ids
    for j, how in list(translator.how.items()):
        if translator.target_of[j] >= 0 and ids[translator.target_of[j]] == 0:
            translator.target_of[j], translator.how[j] = -1, UNMAPPED


def describe(translator: Translator) -> dict:
    """What a cross-taxonomy score names: the translation and what it dropped."""
    counts = translator.counts()
    return {"from": translator.source, "to": translator.target, "merge_file": translator.relations.merge_file,
            "detections": sum(counts.values()), "same_concept": counts[SAME], "coarser": counts[COARSER],
            "unmapped": counts[UNMAPPED], "duplicates_merged": translator.duplicates}
