"""Blocks of images for ``unify``: states, LVIS lists and box records for thousands of images at once.

``unify`` once computed each image's states, lists and box text one image at a time, and at Objects365
scale that per-image Python work took longer than reading the files. Here an image block holds its images'
boxes and lists as columns (CSR: an offset per image), its label states as an images × labels matrix
(:meth:`~.label_states.DatasetCoverage.block_states`), and writes its JSON with :mod:`.io.json_columns`. The
rules are the per-image functions' (``DatasetCoverage.states``, ``unify.category_states``,
``unify.state_lists``) applied to every row; ``tests/test_unify.py`` checks that each row is what they give.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from .io.json_columns import (exact_hundredths, hundredths, integer_field, integer_lists, rows_matrix, text_of,
                              two_decimal_field)
from .label_states import NEGATIVE, PARTIAL, POSITIVE, STATE_OF_RANK, STATE_RANK, csr_cells

#: Images × labels per block: a block's matrices and lists (an Objects365 image is negative for ~360
#: categories) stay a few tens of MB whatever the size of the build
BLOCK_CELLS = 1 << 20


Lists = tuple[np.ndarray, np.ndarray]  # (offsets, values): one list per image


def images_per_block(labels: int) -> int:
    return max(64, BLOCK_CELLS // max(labels, 1))


@dataclass
class ImageBlock:
    """Images ready to be written: their facts, their boxes grouped by image (``box_offsets``), the
    sources' explicit label lists and each image's label states (images × labels)."""

    sources: list[list[str]]
    file_names: list[str]
    coco_urls: list[str | None]
    widths: np.ndarray
    heights: np.ndarray
    box_offsets: np.ndarray
    boxes: np.ndarray        # M × 4 float32, xywh
    labels: np.ndarray       # M union indices
    categories: np.ndarray   # M output categories
    crowd: np.ndarray        # M 0/1
    lists: dict[str, Lists]
    states: np.ndarray       # images × labels int8

    @property
    def size(self) -> int:
        return len(self.file_names)

    @property
    def box_rows(self) -> np.ndarray:
        """The image (row) of each box."""
        return np.repeat(np.arange(self.size), np.diff(self.box_offsets))

    def take(self, rows: np.ndarray) -> "ImageBlock":
        """The block of these rows only (in the order given)."""
        boxes = _gather(self.box_offsets, rows)
        return ImageBlock([self.sources[r] for r in rows.tolist()], [self.file_names[r] for r in rows.tolist()],
                          [self.coco_urls[r] for r in rows.tolist()], self.widths[rows], self.heights[rows],
                          offsets_of(np.diff(self.box_offsets)[rows]), self.boxes[boxes], self.labels[boxes],
                          self.categories[boxes], self.crowd[boxes],
                          {f: (offsets_of(np.diff(offsets)[rows]), values[_gather(offsets, rows)])
                           for f, (offsets, values) in self.lists.items()}, self.states[rows])


def offsets_of(lengths: np.ndarray) -> np.ndarray:
    """CSR offsets (N + 1) of N lists of these lengths."""
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def _gather(offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The positions of the values of ``rows`` in a CSR list, row after row."""
    starts, lengths = offsets[rows], offsets[rows + 1] - offsets[rows]
    return np.arange(lengths.sum()) + np.repeat(starts - np.cumsum(lengths) + lengths, lengths)


def block_category_states(states: np.ndarray, category_of: np.ndarray, categories: int) -> np.ndarray:
    """``unify.category_states`` of every row: each category's best member state (images × categories)."""
    written = np.flatnonzero(category_of >= 0)
    order = written[np.argsort(category_of[written], kind="stable")]
    starts = np.searchsorted(category_of[order], np.arange(categories))
    ranks = np.maximum.reduceat(STATE_RANK[states[:, order]], starts, axis=1) if len(order) else \
        np.zeros((len(states), categories), dtype=np.int8)
    return STATE_OF_RANK[ranks]


def block_compact_states(block: ImageBlock) -> np.ndarray:
    """``unify.compact_states`` of every row: only what the sources said, no protocol's implications."""
    states = np.zeros_like(block.states)
    states[csr_cells(block.lists["neg_category_ids"])] = NEGATIVE
    states[csr_cells(block.lists["pos_category_ids"])] = PARTIAL
    boxed = (block.box_rows, block.labels)
    states[boxed] = POSITIVE
    rows, labels = csr_cells(block.lists["not_exhaustive_category_ids"])
    also_boxed = states[rows, labels] == POSITIVE
    states[rows[also_boxed], labels[also_boxed]] = PARTIAL
    return states


def boxed_categories(block: ImageBlock, categories: int) -> np.ndarray:
    """images × categories: whether the image has a box of the category."""
    boxed = np.zeros((block.size, categories), dtype=bool)
    boxed[block.box_rows, block.categories] = True
    return boxed


def block_state_lists(category_states: np.ndarray, boxed: np.ndarray) -> tuple[list[str], list[str]]:
    """``unify.state_lists`` of every row, as JSON list items: (neg_category_ids, not_exhaustive_category_ids)."""
    negatives = category_states == NEGATIVE
    partial = np.where(boxed, category_states == PARTIAL, category_states >= POSITIVE)
    return integer_lists(negatives), integer_lists(partial)


def image_records(block: ImageBlock, first_id: int, paths: list[tuple[str, str | None]], negatives: list[str],
                  partial: list[str]) -> str:
    """The images' JSON records, comma-separated, with the keys in the order ``json.dumps`` of the record
    dict wrote them."""
    sources_text: dict[tuple, str] = {}
    records = []
    for row, (file_name, coco_url) in enumerate(paths):
        sources = tuple(block.sources[row])
        if sources not in sources_text:
            sources_text[sources] = json.dumps(list(sources), separators=(",", ":"))
        url = "" if coco_url is None else f',"coco_url":{json.dumps(coco_url)}'
        records.append(f'{{"id":{first_id + row},"file_name":{json.dumps(file_name)},"width":{block.widths[row]},'
                       f'"height":{block.heights[row]},"sources":{sources_text[sources]},'
                       f'"neg_category_ids":[{negatives[row]}],"not_exhaustive_category_ids":[{partial[row]}]{url}}}')
    return ",".join(records)


def annotation_records(block: ImageBlock, first_image_id: int, first_box_id: int) -> bytes:
    """The boxes' JSON records, comma-separated: id, image, category, ``bbox`` and ``area`` rounded to two
    decimals, ``iscrowd``, and the box as a polygon (detectron2's LVIS loader needs one), its corners in
    two decimals too."""
    count = len(block.labels)
    if count == 0:
        return b""
    xywh, negative = hundredths(block.boxes)
    rounded = xywh / 100.0  # the float round(value, 2) returns
    area, area_negative = hundredths(rounded[:, 2] * rounded[:, 3])
    right, bottom = xywh[:, 0] + xywh[:, 2], xywh[:, 1] + xywh[:, 3]
    if not (exact_hundredths(xywh) and exact_hundredths(area) and exact_hundredths(right)
            and exact_hundredths(bottom)):
        return _annotation_records_one_by_one(block, first_image_id, first_box_id)
    x, y, w, h = (two_decimal_field(xywh[:, i], negative[:, i]) for i in range(4))
    x2, y2 = two_decimal_field(right, right < 0), two_decimal_field(bottom, bottom < 0)
    matrix = rows_matrix([
        b'{"id":', integer_field(np.arange(first_box_id, first_box_id + count)),
        b',"image_id":', integer_field(block.box_rows + first_image_id),
        b',"category_id":', integer_field(block.categories + 1),
        b',"bbox":[', x, b",", y, b",", w, b",", h, b'],"area":', two_decimal_field(area, area_negative),
        b',"iscrowd":', integer_field(block.crowd.astype(np.int64)),
        b',"segmentation":[[', x, b",", y, b",", x2, b",", y, b",", x2, b",", y2, b",", x, b",", y2, b"]]},"],
        count)
    return text_of(matrix)[:-1]


def _annotation_records_one_by_one(block: ImageBlock, first_image_id: int, first_box_id: int) -> bytes:
    """The same records for values too large for the columns (never a box of a real image)."""
    lines = []
    for k, ((bx, by, bw, bh), row, category, crowd) in enumerate(zip(
            block.boxes.tolist(), block.box_rows.tolist(), block.categories.tolist(), block.crowd.tolist())):
        x, y, w, h = round(bx, 2), round(by, 2), round(bw, 2), round(bh, 2)
        lines.append(f'{{"id":{first_box_id + k},"image_id":{first_image_id + row},"category_id":{category + 1},'
                     f'"bbox":[{x},{y},{w},{h}],"area":{round(w * h, 2)},"iscrowd":{int(crowd)},'
                     f'"segmentation":[[{x},{y},{x + w},{y},{x + w},{y + h},{x},{y + h}]]}}')
    return ",".join(lines).encode("ascii")
