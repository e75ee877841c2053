"""What a box must be, for every reader of annotation files: training's index, ``unify`` and evaluation.

One set of rules, so that a file ``unify`` accepts is one that training accepts: a box is four finite numbers
``[x, y, width, height]`` with positive width and height, inside its image (up to :data:`BOX_TOLERANCE_PX`,
for exporters' rounding), which also keeps every value within what a float32 and JSON can hold; ``iscrowd``
(and OpenImages' ``isgroupof``) is 0 or 1.
"""
from __future__ import annotations

from .io.json_values import is_finite_number

#: Boxes may poke out of their image by this many pixels (rounding in exporters) before it is an error.
BOX_TOLERANCE_PX = 1.0
FLAG_FIELDS = ("iscrowd", "isgroupof")


def box_problem(bbox, width: int, height: int) -> str | None:
    """Why ``bbox`` cannot be a box of a ``width`` × ``height`` image, or None."""
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(is_finite_number(v) for v in bbox):
        return f"has bbox {str(bbox)[:60]}; expected [x, y, width, height]"
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return f"has bbox {str(bbox)[:60]}, of zero or negative size"
    if x < -BOX_TOLERANCE_PX or y < -BOX_TOLERANCE_PX or x + w > width + BOX_TOLERANCE_PX \
            or y + h > height + BOX_TOLERANCE_PX:
        return f"has bbox {str(bbox)[:60]}, outside its {width}×{height} image"
    return None


def flag_problem(annotation: dict) -> str | None:
    """Why the annotation's ``iscrowd`` / ``isgroupof`` is not 0 or 1, or None (absent is 0)."""
    for key in FLAG_FIELDS:
        if annotation.get(key, 0) not in (0, 1):  # True and False compare equal to 1 and 0
            return f"has {key} {repr(annotation[key])[:40]}; expected 0 or 1"
    return None
