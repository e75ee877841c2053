"""Checks of values read from JSON annotation files, shared by every reader of them.

JSON's ``true`` is a Python ``bool``, which is an ``int``: ``category_id: true`` must not pass for category 1.
"""
from __future__ import annotations

import math
from pathlib import Path

from .errors import ScaledetError


def is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def category_ids_as_labels(values, union_of: dict, path: Path, image_id, field: str) -> list[int]:
    """An image's list of category ids (LVIS ``neg_category_ids``, OpenImages ``pos_category_ids``, …) as
    union indices; anything but a list of the file's category ids is one line naming the image and field."""
    if not isinstance(values, list):
        raise ScaledetError(f"{path}: image {image_id}: '{field}' is not a list of category ids")
    labels = []
    for category_id in values:
        union = union_of.get(category_id) if is_whole(category_id) else None
        if union is None:
            raise ScaledetError(f"{path}: image {image_id}: '{field}' names category id "
                                f"{str(category_id)[:20]}, which is not in 'categories'")
        labels.append(union)
    return labels
