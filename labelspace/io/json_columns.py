"""JSON text for columns of numbers, a block of rows at a time, without a Python call per number.

``unify`` writes tens of millions of box records. Formatting each with an f-string and ``round`` cost more
than parsing the input did; here every field of every row is one column of bytes in a ``rows × width``
matrix (digits right-aligned, the unused positions :data:`SKIP`), the fields and the constant text between
them are concatenated side by side, and the bytes that are not :data:`SKIP` are the text, in row order.

The text is what Python's own formatting gives: an integer as ``str``, a value rounded to two decimals as
``repr(round(value, 2))`` (``12.35``, ``100.0``, ``-0.0``), which is what ``json.dumps`` writes for it.
"""
from __future__ import annotations

import numpy as np

#: A byte that never occurs in JSON text: a matrix position with nothing to write
SKIP = 0
#: Hundredths up to this are written here; larger values (never a box in an image) go through ``repr``
_EXACT_HUNDREDTHS = 10**15


def integer_field(values: np.ndarray) -> np.ndarray:
    """``len(values) × width`` uint8: each non-negative integer's digits, right-aligned after SKIPs."""
    values = np.asarray(values, dtype=np.int64)
    if len(values) == 0:
        return np.zeros((0, 1), dtype=np.uint8)
    width = len(str(int(values.max())))
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    field = ((values[:, None] // powers) % 10 + ord("0")).astype(np.uint8)
    leading = values[:, None] < powers  # positions above the number's first digit ...
    leading[:, -1] = False  # ... but zero is "0"
    field[leading] = SKIP
    return field


def hundredths(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each value rounded to hundredths as an int64, whether the rounded value is negative, ``-0.0``
    included). Rounding is half to even on the exact value, as Python's ``round(value, 2)``: exact for
    float32 values (``value × 100`` is exact in float64); other values close to a half go through
    ``round`` itself."""
    single = np.asarray(values).dtype == np.float32
    values = np.asarray(values, dtype=np.float64)
    scaled = values * 100
    rounded = np.rint(scaled)
    if not single:  # value × 100 may be inexact: where that could move a half, Python rounds it
        near_half = np.abs(np.abs(scaled - np.floor(scaled)) - 0.5) <= np.abs(scaled) * 4e-16 + 1e-300
        for i in np.flatnonzero(near_half).tolist():
            rounded[i] = np.rint(round(float(values[i]), 2) * 100)
    return rounded.astype(np.int64), np.signbit(rounded)


def two_decimal_field(scaled: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """``len × width`` uint8: ``repr`` of the float nearest to ``scaled / 100`` (``scaled`` in hundredths):
    the whole part, a point, the tenths, and the hundredths unless they are 0."""
    magnitude = np.abs(scaled)
    count = len(magnitude)
    tenths = ((magnitude // 10) % 10 + ord("0")).astype(np.uint8)
    last = magnitude % 10
    hundredth = np.where(last == 0, SKIP, last + ord("0")).astype(np.uint8)
    sign = np.where(negative, ord("-"), SKIP).astype(np.uint8)
    return np.concatenate([sign[:, None], integer_field(magnitude // 100), np.full((count, 1), ord("."), np.uint8),
                           tenths[:, None], hundredth[:, None]], axis=1)


def exact_hundredths(scaled: np.ndarray) -> bool:
    """Whether :func:`two_decimal_field` writes these as ``repr`` would (it does below 10¹³ in value)."""
    return not len(scaled) or int(np.abs(scaled).max()) < _EXACT_HUNDREDTHS


def rows_matrix(pieces: list, count: int) -> np.ndarray:
    """The pieces (a ``count × w`` field, or constant ``bytes`` repeated on every row) side by side."""
    columns = [np.broadcast_to(np.frombuffer(piece, dtype=np.uint8), (count, len(piece)))
               if isinstance(piece, bytes) else piece for piece in pieces]
    return np.concatenate(columns, axis=1)


def text_of(matrix: np.ndarray) -> bytes:
    """The bytes of a rows matrix that are not SKIP, row after row."""
    return matrix[matrix != SKIP].tobytes()


def integer_lists(mask: np.ndarray) -> list[str]:
    """Per row of a boolean matrix, the 1-based column numbers of its True cells as JSON list items
    (``"1,5,7"``; ``""`` for none): LVIS's ``neg_category_ids`` of a block of images at once."""
    rows, columns = np.nonzero(mask)
    if not len(rows):
        return [""] * len(mask)
    matrix = rows_matrix([integer_field(columns + 1), b","], len(columns))
    kept = matrix != SKIP
    text = matrix[kept].tobytes().decode("ascii")
    ends = np.cumsum(np.bincount(rows, weights=kept.sum(axis=1), minlength=len(mask)).astype(np.int64))
    starts = np.concatenate([[0], ends[:-1]])
    return [text[s:e - 1] if e > s else "" for s, e in zip(starts.tolist(), ends.tolist())]
